//! Serving a node and stopping it: [`serve`] with its graceful, jittered shutdown,
//! [`Sidecast::shutdown`], and the broker-health watcher that feeds `/metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sidecast_core::{BrokerHealth, SharedBroker};
use socketioxide::SocketIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::delivery::handshake;
use crate::error::StartError;
use crate::metrics::Metrics;
use crate::{Sidecast, app};

/// How often the broker's health is sampled for `/metrics`.
const HEALTH_SAMPLE: Duration = Duration::from_millis(500);

/// Serves the node on `listener` until `shutdown` resolves, then shuts down gracefully: it stops
/// accepting connections, closes the sockets' transports after a random delay within
/// `server.shutdown_jitter_ms` (their clients reconnect to the other nodes), lets in-flight
/// requests finish, and closes the broker — all within `server.shutdown_timeout_ms`, after which
/// remaining connections are cut.
///
/// A node still starting (its broker unavailable, decision 21) is served meanwhile; if its
/// start fails for good (a permanent broker error, or `broker.start_timeout_ms` passed), it
/// shuts down the same way and the start error is returned.
///
/// Accepted connections get `TCP_NODELAY`, so that each event's small frame leaves at once.
pub async fn serve(
    listener: TcpListener,
    state: Sidecast,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let server_config = &state.inner.config.server;
    let timeout = Duration::from_millis(server_config.shutdown_timeout_ms);
    let jitter = Duration::from_millis(server_config.shutdown_jitter_ms);
    let router = app(state.clone());
    let (begin_tx, begin_rx) = tokio::sync::oneshot::channel::<()>();
    let listener = axum::serve::ListenerExt::tap_io(listener, handshake::tune_accepted);
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown({
        let state = state.clone();
        async move {
            // A start that fails for good (decision 21) stops the node like a signal does.
            tokio::select! {
                () = shutdown => {}
                () = start_failed(&state) => {}
            }
            let _ = begin_tx.send(());
        }
    });
    let mut server = tokio::spawn(server.into_future());
    let result = tokio::select! {
        // The server stopped by itself: an I/O error.
        joined = &mut server => joined.map_err(std::io::Error::other).and_then(|r| r),
        Ok(()) = begin_rx => {
            tracing::info!(?timeout, ?jitter, "shutting down: closing sockets");
            let closing = tokio::spawn(close_sockets(state.inner.io.clone(), jitter));
            let result = match tokio::time::timeout(timeout, &mut server).await {
                Ok(joined) => joined.map_err(std::io::Error::other).and_then(|r| r),
                Err(_) => {
                    tracing::warn!(?timeout, "graceful shutdown timed out; cutting connections");
                    server.abort();
                    Ok(())
                }
            };
            closing.abort();
            result
        }
    };
    state.shutdown().await;
    if let Some(failure) = state.inner.startup.take_failure() {
        return Err(failure);
    }
    result.map_err(StartError::Io)
}

/// Resolves when the node's start has failed for good; never when it started.
async fn start_failed(state: &Sidecast) {
    if state.inner.startup.settled().await != crate::node::start::Phase::Failed {
        std::future::pending::<()>().await;
    }
}

impl Sidecast {
    /// Disconnects every socket, stops a start still in progress, closes the broker and waits
    /// for the relay to stop.
    pub async fn shutdown(&self) {
        self.inner.io.clone().close().await;
        // First, so that no broker is bound after it was closed.
        self.inner.startup.abort().await;
        self.inner.watcher.abort();
        if let Some(presence) = &self.inner.presence {
            // Before the broker closes: the other nodes drop this one's sockets at once.
            crate::presence::sync::stop(presence).await;
        }
        self.inner.broker.close().await;
        if let Some(relay) = self.inner.startup.take_relay() {
            // The relay ends when the broker closes its subscription.
            let _ = relay.await;
        }
    }
}

/// Closes every socket's transport after a random delay within `jitter`.
///
/// Closing the transport (not a Socket.IO disconnect, after which clients do not reconnect)
/// makes clients reconnect, through the load balancer, to the nodes that remain. The random delay
/// spreads the reconnections of a fleet restarted together; clients add their own randomized
/// reconnection delay (socket.io-client: 1 s ± 50 %). socketioxide closes transports for all
/// sockets at once, so the spread is per node, not per socket.
async fn close_sockets(io: SocketIo, jitter: Duration) {
    let jitter_ms = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
    tokio::time::sleep(Duration::from_millis(rand::random_range(0..=jitter_ms))).await;
    io.close().await;
}

/// Samples the broker's health into the `broker_up` gauge and counts lost connections, until the
/// broker is closed.
pub(crate) fn watch_broker(broker: SharedBroker, metrics: Arc<Metrics>) -> JoinHandle<()> {
    tokio::spawn(async move {
        // A node that is still starting counts no lost connection when its broker answers.
        let mut was_up = broker.health().is_connected();
        let mut tick = tokio::time::interval(HEALTH_SAMPLE);
        loop {
            tick.tick().await;
            let health = broker.health();
            if health == BrokerHealth::Closed {
                metrics.broker_up.set(0);
                return;
            }
            let up = health.is_connected();
            metrics.broker_up.set(i64::from(up));
            if was_up && !up {
                metrics.broker_reconnects.inc();
            }
            was_up = up;
        }
    })
}
