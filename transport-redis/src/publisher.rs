//! The publish connection at work: [`publish`] through it, and [`supervise`] it (check it, and
//! replace it when it dies).

use std::future::Future;
use std::sync::Arc;

use sidecast_core::BrokerError;
use sidecast_core::supervision::Shutdown;
use tokio::time::{sleep, timeout};

use crate::cluster::CommandConnection;
use crate::connection::{PUBLISHER, RedisState};
use crate::error;

/// Publishes `payload` on `channel` through the publish connection, failing fast while it is
/// down.
pub(crate) async fn publish(
    state: &RedisState,
    channel: &str,
    payload: &[u8],
) -> Result<(), BrokerError> {
    // The number of receivers does not matter: pub/sub has no notion of "undelivered".
    if state.is_sharded(channel) {
        // To the primary of the channel's slot, where its sharded subscribers listen.
        let command = redis::cmd("SPUBLISH").arg(channel).arg(payload).to_owned();
        let _receivers: redis::Value = query(state, |mut connection| async move {
            command.query_async(&mut connection).await
        })
        .await?;
        return Ok(());
    }
    let command = redis::cmd("PUBLISH").arg(channel).arg(payload).to_owned();
    let _receivers = query(state, |mut connection| async move {
        connection.publish(command).await
    })
    .await?;
    Ok(())
}

/// Runs `operation` on the publish connection, bounded by the publish time-out: fails fast while
/// the connection is down, and reports a connection that died on the way. Publishes and the
/// history's commands (`XADD`, `XRANGE`, ...) share it.
pub(crate) async fn query<T, Fut>(
    state: &RedisState,
    operation: impl FnOnce(CommandConnection) -> Fut,
) -> Result<T, BrokerError>
where
    Fut: Future<Output = redis::RedisResult<T>>,
{
    // Fail fast during an outage: no connection attempt, no waiting for one.
    let Some((generation, connection)) = state.publisher_slot().clone() else {
        return Err(error::reconnecting(
            &state.url,
            state.parts.board().reconnect_attempt(),
        ));
    };
    let after = state.options.publish_timeout;
    match timeout(after, operation(connection)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            let demoted = matches!(e.code(), Some("READONLY" | "MASTERDOWN"));
            if state.is_cluster() {
                // The cluster client reconnects to each node and follows the slot map itself:
                // one primary down is no reason to drop the connection to all the others. The
                // supervisor checks that the cluster still answers at all.
                state.check_publisher.notify_one();
            } else if demoted
                || e.is_unrecoverable_error()
                || e.is_io_error()
                || e.is_connection_dropped()
            {
                // With Sentinel, a READONLY or MASTERDOWN answer means this server is no longer
                // the master (or lost it): the connection must go to the new one.
                state.suspect_master();
                // The connection is dead: mark it so right away, so that health says so
                // and the next calls fail fast, and let the supervisor replace it. No
                // retry here: the command may have reached Redis before the connection
                // broke, and a retry could deliver it twice.
                state.publisher_lost(generation, &e);
            }
            Err(error::map(e, &state.url))
        }
        Err(_elapsed) => {
            // A slow server or a connection that died silently: the supervisor's PING
            // tells which.
            state.check_publisher.notify_one();
            Err(error::timeout(after))
        }
    }
}

/// Owns the health of the publish connection.
///
/// In RESP2 a multiplexed connection does not announce that it died, so the supervisor checks
/// it with `PING` when asked (a publish failed, a subscription lost its connection) and every
/// keep-alive interval, and replaces it when the check fails. Meanwhile the slot is empty and
/// publishes fail fast.
pub(crate) async fn supervise(state: Arc<RedisState>, mut shutdown: Shutdown) {
    let keepalive = state.options.keepalive_interval;
    let ping_timeout = state.options.publish_timeout;
    loop {
        tokio::select! {
            () = shutdown.signalled() => return,
            () = state.check_publisher.notified() => {}
            () = state.master_moved(state.publisher_epoch()) => {}
            () = sleep(keepalive) => {}
        }
        if state.parts.board().is_closed() {
            return;
        }
        // A new master: the connection to the old one goes, however healthy it looks (a demoted
        // master keeps its connections and answers PING).
        if state.publisher_epoch() != state.epoch() {
            let current = state
                .publisher_slot()
                .as_ref()
                .map(|(generation, _)| *generation);
            if let Some(generation) = current {
                let moved = format!(
                    "the master moved to {}",
                    state.master_addr().unwrap_or_default()
                );
                state.publisher_lost(generation, &moved);
            }
        }
        // A failed publish may have emptied the slot already; otherwise check the connection.
        let current = state.publisher_slot().clone();
        if let Some((generation, mut connection)) = current {
            let failure = match timeout(ping_timeout, connection.ping()).await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => error::map(e, &state.url).to_string(),
                Err(_elapsed) => format!("no answer to PING within {ping_timeout:?}"),
            };
            state.publisher_lost(generation, &failure);
        }
        if state.parts.board().is_closed() || state.publisher_slot().is_some() {
            continue;
        }
        let reconnected = state
            .reconnect(
                PUBLISHER,
                state.options.backoff_max,
                &mut shutdown,
                || false,
                || state.connect_command_at(),
            )
            .await;
        match reconnected {
            Some(connection) => {
                state.install_publisher(connection);
                state.parts.restored(PUBLISHER);
            }
            None => return,
        }
    }
}
