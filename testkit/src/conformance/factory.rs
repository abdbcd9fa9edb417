//! Broker factories: [`MakeBroker`], what every check takes to make its brokers (nodes),
//! [`Connect`], one that connects with a transport's options, and [`WithServer`], one that owns
//! the test server its brokers connect to.

use std::future::Future;

use sidecast_core::broker::Broker;

/// A factory of brokers connected to one backend: every call returns a new broker value, as a new
/// node would create.
///
/// Implemented for every `Fn() -> Fut` where `Fut: Future<Output = B>` and `B: Broker`, so a
/// closure is enough. A factory may also hand out handles to one shared in-process backend
/// (clones of one [`sidecast_core::MemoryBroker`]); see [`run_all`](super::run_all) for what that implies.
pub trait MakeBroker {
    /// The broker type made.
    type Broker: Broker;

    /// A fresh broker, connected. Panics (test code) if it cannot connect.
    fn make(&self) -> impl Future<Output = Self::Broker>;
}

impl<F, Fut, B> MakeBroker for F
where
    F: Fn() -> Fut,
    Fut: Future<Output = B>,
    B: Broker,
{
    type Broker = B;

    fn make(&self) -> impl Future<Output = B> {
        self()
    }
}

/// A factory that connects a new broker from a copy of the same options at each call, with the
/// transport's `connect` function, and panics with the error when that fails (test code):
/// `Connect::new(options, RedisBroker::connect)`.
#[derive(Debug, Clone)]
pub struct Connect<O, F> {
    options: O,
    connect: F,
}

impl<O, F> Connect<O, F> {
    /// A factory calling `connect(options.clone())`.
    pub fn new(options: O, connect: F) -> Self {
        Self { options, connect }
    }

    /// The options each broker is connected with.
    pub fn options(&self) -> &O {
        &self.options
    }
}

impl<O, F, Fut, B, E> MakeBroker for Connect<O, F>
where
    O: Clone,
    F: Fn(O) -> Fut,
    Fut: Future<Output = Result<B, E>>,
    B: Broker,
    E: std::fmt::Display,
{
    type Broker = B;

    async fn make(&self) -> B {
        (self.connect)(self.options.clone())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"))
    }
}

/// A broker factory together with the test server its brokers connect to, so that the server
/// lives as long as the factory: `WithServer::new(RedisServer::start().await, Redis::on)` is one
/// expression for [`conformance_tests!`](crate::conformance_tests).
#[derive(Debug)]
pub struct WithServer<S, M> {
    server: S,
    make: M,
}

impl<S, M: MakeBroker> WithServer<S, M> {
    /// `server` and the factory that `factory` makes for it.
    pub fn new(server: S, factory: impl FnOnce(&S) -> M) -> Self {
        let make = factory(&server);
        Self { server, make }
    }

    /// The server.
    pub fn server(&self) -> &S {
        &self.server
    }
}

impl<S, M: MakeBroker> MakeBroker for WithServer<S, M> {
    type Broker = M::Broker;

    fn make(&self) -> impl Future<Output = M::Broker> {
        self.make.make()
    }
}
