//! Following a Redis Sentinel master: [`Master`], the current master and its epoch; [`resolve`],
//! asking the sentinels; [`watch`], the task that re-resolves (when asked, on the sentinels'
//! `+switch-master`, and every [`CHECK_EVERY`]) and moves every connection to a new master.
//!
//! The redis crate's `SentinelClient` finds a master when asked for a connection but never
//! notices a failover, and `ConnectionManager` reconnects to the address it was built with (see
//! decision 0029), so the broker keeps the master's address itself: every connection records
//! the epoch of the master it was opened to and is dropped when the epoch changes, whether or not
//! it failed (a demoted master keeps its connections open and answers `PING`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::{AsyncConnectionConfig, Client, Value};
use sidecast_core::BrokerError;
use sidecast_core::broker::SentinelUrl;
use sidecast_core::supervision::Shutdown;
use tokio::time::{Instant, sleep, timeout};

use crate::connection::RedisState;
use crate::error;

/// The longest the broker goes without asking the sentinels where the master is: the periodic
/// check behind `+switch-master` (which a broken sentinel connection can miss).
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The shortest time between two resolutions, however often connections fail meanwhile.
const MIN_SPACING: Duration = Duration::from_millis(100);

/// The current master of a Sentinel address.
#[derive(Clone)]
pub(crate) struct Master {
    /// Counts master changes; connections opened to this master carry it.
    pub(crate) epoch: u64,
    /// `host:port` as the sentinels give it.
    pub(crate) addr: String,
    /// A client for it (with the address's credentials and db).
    pub(crate) client: Client,
}

/// Where the master is, as the first sentinel that knows says: `(host, port)`.
///
/// # Errors
///
/// [`BrokerError::Unavailable`] (transient) when no sentinel answers or none knows the service.
pub(crate) async fn resolve(
    url: &SentinelUrl,
    redacted: &str,
    connect_timeout: Duration,
) -> Result<(String, u16), BrokerError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(None)
        .set_response_timeout(None);
    let mut failures = Vec::new();
    for index in 0..url.sentinels.len() {
        let Some(sentinel) = url.sentinel_url(index) else {
            continue;
        };
        let asked = async {
            let client = Client::open(sentinel.as_str())?;
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&url.service)
                .query_async::<Value>(&mut connection)
                .await
        };
        match timeout(connect_timeout, asked).await {
            Ok(Ok(Value::Array(parts))) => match parts.as_slice() {
                [host, port] => {
                    let host = redis::from_redis_value_ref::<String>(host).ok();
                    let port = redis::from_redis_value_ref::<String>(port)
                        .ok()
                        .and_then(|p| p.parse::<u16>().ok());
                    if let (Some(host), Some(port)) = (host, port) {
                        return Ok((host, port));
                    }
                    failures.push(format!("{sentinel}: malformed answer"));
                }
                _ => failures.push(format!("{sentinel}: malformed answer")),
            },
            Ok(Ok(Value::Nil)) => failures.push(format!(
                "{sentinel}: does not monitor a master named {:?}",
                url.service
            )),
            Ok(Ok(_)) => failures.push(format!("{sentinel}: malformed answer")),
            Ok(Err(e)) => failures.push(format!("{sentinel}: {e}")),
            Err(_elapsed) => {
                failures.push(format!("{sentinel}: no answer within {connect_timeout:?}"))
            }
        }
    }
    Err(BrokerError::unavailable(
        error::BACKEND,
        redacted,
        format!(
            "no sentinel gave the address of master {:?} ({}); check that the sentinels run and \
             monitor it under that name (`sentinel monitor {} <host> <port> <quorum>`)",
            url.service,
            failures.join("; "),
            url.service
        ),
    ))
}

/// Whether the server behind `connection` says it is a master (`ROLE`). An ACL user that may not
/// run `ROLE` (it is in `@admin`) cannot check: the sentinels' word is taken then.
pub(crate) async fn is_master(
    connection: &mut redis::aio::MultiplexedConnection,
) -> redis::RedisResult<bool> {
    let role: Value = match redis::cmd("ROLE").query_async(connection).await {
        Ok(role) => role,
        Err(e) if e.code() == Some("NOPERM") => return Ok(true),
        Err(e) => return Err(e),
    };
    Ok(match role {
        Value::Array(parts) => parts
            .first()
            .and_then(|first| redis::from_redis_value_ref::<String>(first).ok())
            .is_some_and(|role| role == "master"),
        _ => false,
    })
}

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
