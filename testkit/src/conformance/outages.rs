//! What transports check when their backend goes away: a publish that must fail
//! ([`publish_error`]), the first delivery after an outage ([`first_delivery`]), and a history
//! reader across an outage ([`history_across_an_outage`]), of a test server that goes down and
//! comes back ([`Restartable`]). Not part of [`run_all`](super::run_all): they need a backend the
//! test can stop.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, timeout_at};

use sidecast_core::broker::{Broker, BrokerError, BrokerHealth, Offset, Subscription};

use super::history::{history_of, next_entry, subscribe_from};
use super::support::{DEADLINE, within_deadline};
use crate::unique_channel;

/// A test server that a test takes down and brings back: [`RedisServer`](crate::RedisServer)
/// (killed, like a crash) and [`RabbitMqServer`](crate::RabbitMqServer) (stopped in order).
pub trait Restartable {
    /// Takes the server down; returns once its port refuses connections.
    fn stop(&mut self) -> impl Future<Output = ()>;

    /// Starts the server again on the same port(s); returns once it answers.
    fn restart(&mut self) -> impl Future<Output = ()>;
}

/// [`Restartable`] by the server's own `stop` and `restart` methods.
macro_rules! restartable {
    ($server:ty) => {
        impl Restartable for $server {
            fn stop(&mut self) -> impl Future<Output = ()> {
                <$server>::stop(self)
            }

            fn restart(&mut self) -> impl Future<Output = ()> {
                <$server>::restart(self)
            }
        }
    };
}

restartable!(crate::RedisServer);
#[cfg(unix)]
restartable!(crate::RabbitMqServer);

/// The outage of [`history_across_an_outage`] on `server`: `outage(false)` stops it,
/// `outage(true)` restarts it.
pub fn stop_and_restart<S: Restartable>(server: &mut S) -> impl AsyncFnMut(bool) {
    async |up| {
        if up {
            server.restart().await;
        } else {
            server.stop().await;
        }
    }
}

/// Publishes on `channel` when that must fail (the server is down, paused, refuses): waits at
/// most [`DEADLINE`] and returns the error. Panics, naming `what`, if the publish succeeds or
/// hangs.
pub async fn publish_error<B: Broker + ?Sized>(
    broker: &B,
    channel: &str,
    what: &str,
) -> BrokerError {
    within_deadline(
        what,
        broker.publish(channel, Bytes::from_static(b"not delivered")),
    )
    .await
    .expect_err(&format!("{what} must fail"))
}

/// Publishes numbered messages (`after restart 1`, `after restart 2`, ...) on `channel` until
/// one of them arrives on `subscription`, and returns the moment it did: the first delivery after
/// an outage. A publish that fails (the publisher is still reconnecting) is retried; copies of
/// earlier numbers may still arrive afterwards.
///
/// Panics if nothing arrives within [`DEADLINE`], or if the subscription ends.
pub async fn first_delivery<P: Broker + ?Sized>(
    publisher: &P,
    subscription: &mut Subscription,
    channel: &str,
) -> Instant {
    let deadline = Instant::now() + DEADLINE;
    let mut n = 0u32;
    loop {
        assert!(
            Instant::now() < deadline,
            "no message delivered on {channel:?} within {DEADLINE:?} of the server coming back"
        );
        n += 1;
        let payload = format!("after restart {n}");
        if publisher
            .publish(channel, payload.clone().into())
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let window = Instant::now() + Duration::from_millis(100);
        while let Ok(message) = timeout_at(window, subscription.recv()).await {
            let message = message.expect("the stream must survive the outage");
            if message.payload == payload.as_bytes() {
                return Instant::now();
            }
        }
    }
}

/// A history reader on one broker while another appends, and the backend goes away and comes
/// back in the middle (`outage(false)` takes it down, `outage(true)` brings it back and returns
/// once it answers): every append that was acknowledged reaches the reader once and in order,
/// with the offset the writer got, after the reader resumed by itself within about a second
/// (its backoff is capped at 1 s). Appends during the outage must fail transiently. Not part of
/// [`run_all`](super::run_all): it needs a backend the test can stop; each transport runs it on its own server.
pub async fn history_across_an_outage<B: Broker>(
    writer: &B,
    reader: &B,
    mut outage: impl AsyncFnMut(bool),
) {
    const BEFORE: usize = 100;
    const DURING: usize = 20;
    const AFTER: usize = 100;
    let channel = unique_channel("history-outage");
    let mut sub = subscribe_from(history_of(reader), &channel, &Offset::START).await;
    let history = history_of(writer);

    let mut acknowledged: Vec<(Offset, String)> = Vec::new();
    let mut refused = 0;
    let mut n = 0;
    let mut append = async |acknowledged: &mut Vec<(Offset, String)>| {
        n += 1;
        let payload = format!("entry {n}");
        match within_deadline("append", history.append(&channel, payload.clone().into())).await {
            Ok(offset) => {
                acknowledged.push((offset, payload));
                true
            }
            Err(e) => {
                assert!(
                    e.is_transient(),
                    "an append in an outage fails transiently: {e}"
                );
                false
            }
        }
    };
    while acknowledged.len() < BEFORE {
        assert!(append(&mut acknowledged).await, "append before the outage");
    }
    outage(false).await;
    // The reader noticed, so that its resume time below is measured from a real outage.
    crate::await_reconnecting(reader, "the reader lost its connection", |_| true).await;
    for _ in 0..DURING {
        if !append(&mut acknowledged).await {
            refused += 1;
        }
    }
    outage(true).await;
    let back_up = Instant::now();
    crate::eventually("the reader resumed", || reader.health().is_connected()).await;
    let resumed_after = back_up.elapsed();
    let target = acknowledged.len() + AFTER;
    while acknowledged.len() < target {
        if !append(&mut acknowledged).await {
            refused += 1;
            crate::eventually("the writer connected again", || {
                writer.health().is_connected()
            })
            .await;
        }
    }

    for (i, (offset, payload)) in acknowledged.iter().enumerate() {
        let entry = next_entry(&mut sub).await;
        assert_eq!(
            (&entry.offset, entry.payload.as_ref()),
            (offset, payload.as_bytes()),
            "entry {i} of {} acknowledged: lost, duplicated or out of order",
            acknowledged.len()
        );
    }
    eprintln!(
        "history across an outage: {} acknowledged appends, {refused} refused during the outage, \
         all read once and in order; the reader resumed {resumed_after:?} after the backend \
         answered again",
        acknowledged.len(),
    );
    assert!(
        resumed_after < Duration::from_secs(2),
        "the history reader must resume within about a second of the backend answering (backoff \
         cap 1 s), took {resumed_after:?}"
    );
    assert_eq!(reader.health(), BrokerHealth::Connected);
    // Nothing else is queued: the next entry is the one appended next.
    assert!(append(&mut acknowledged).await, "append after the check");
    let (offset, payload) = acknowledged.last().expect("just appended");
    let entry = next_entry(&mut sub).await;
    assert_eq!(
        (&entry.offset, entry.payload.as_ref()),
        (offset, payload.as_bytes())
    );
}
