//! The tasks that follow a Redis Sentinel master: [`watch`] re-resolves it (when a connection
//! asks, on the sentinels' `+switch-master`, and every [`CHECK_EVERY`]) and [`listen`] hears the
//! sentinels' announcements. Asking the sentinels is [`crate::sentinel`]'s; the current master and
//! its epoch are [`RedisState`]'s.

use std::sync::Arc;

use futures_util::StreamExt;
use redis::Client;
use sidecast_core::supervision::Shutdown;
use tokio::time::{Instant, sleep, timeout};

use crate::connection::RedisState;
use crate::sentinel::{CHECK_EVERY, MIN_SPACING};

/// The task that follows the master: re-resolves when a connection asks
/// ([`RedisState::suspect_master`]), when a sentinel announces `+switch-master`, and at least
/// every [`CHECK_EVERY`]; a new address becomes the current master (which drops every
/// connection to the old one).
pub(crate) async fn watch(state: Arc<RedisState>, mut shutdown: Shutdown) {
    let mut last = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.signalled() => return,
            () = state.resolve_now.notified() => {}
            () = sleep(CHECK_EVERY) => {}
        }
        if state.parts.board().is_closed() {
            return;
        }
        let since = last.elapsed();
        if since < MIN_SPACING {
            sleep(MIN_SPACING - since).await;
        }
        last = Instant::now();
        if let Err(e) = state.refresh_master().await {
            tracing::debug!(url = %state.url, error = %e, "could not ask the sentinels for the master");
        }
    }
}

/// The task that listens to the sentinels' `+switch-master` announcements (on one sentinel at a
/// time, moving to the next when its connection breaks) and has the master re-resolved at once.
pub(crate) async fn listen(state: Arc<RedisState>, mut shutdown: Shutdown) {
    let Some(url) = state.sentinel_url() else {
        return;
    };
    let count = url.sentinels.len();
    if count == 0 {
        return;
    }
    let mut index = 0;
    loop {
        if let Some(sentinel) = url.sentinel_url(index % count) {
            let subscribed = async {
                let mut pubsub = Client::open(sentinel.as_str())?.get_async_pubsub().await?;
                pubsub.subscribe("+switch-master").await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            match timeout(state.options.connect_timeout, subscribed).await {
                Ok(Ok(pubsub)) => {
                    // A switch may have happened while nobody listened.
                    state.resolve_now.notify_one();
                    let mut messages = pubsub.into_on_message();
                    loop {
                        tokio::select! {
                            () = shutdown.signalled() => return,
                            message = messages.next() => match message {
                                Some(message) => {
                                    tracing::debug!(
                                        sentinel = %sentinel,
                                        event = %String::from_utf8_lossy(message.get_payload_bytes()),
                                        "sentinel announced +switch-master"
                                    );
                                    state.resolve_now.notify_one();
                                }
                                None => break,
                            },
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(sentinel = %sentinel, error = %e, "cannot listen to sentinel")
                }
                Err(_elapsed) => tracing::debug!(sentinel = %sentinel, "sentinel did not answer"),
            }
        }
        index += 1;
        // The next sentinel at once; after a whole round without one, the periodic check covers
        // for the announcements while this waits.
        let pause = if index % count == 0 {
            state.options.backoff_max
        } else {
            state.options.backoff_min
        };
        tokio::select! {
            () = shutdown.signalled() => return,
            () = sleep(pause) => {}
        }
    }
}
