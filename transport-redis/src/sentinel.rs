//! Asking a Redis Sentinel set: [`Master`], the current master and its epoch; [`resolve`], asking
//! the sentinels; [`is_master`], checking the answer. The tasks that re-resolve (when asked, on the
//! sentinels' `+switch-master`, and every [`CHECK_EVERY`]) are in [`crate::failover`].
//!
//! The redis crate's `SentinelClient` finds a master when asked for a connection but never
//! notices a failover, and `ConnectionManager` reconnects to the address it was built with (see
//! decision 0029), so the broker keeps the master's address itself: every connection records
//! the epoch of the master it was opened to and is dropped when the epoch changes, whether or not
//! it failed (a demoted master keeps its connections open and answers `PING`).

use std::time::Duration;

use redis::{AsyncConnectionConfig, Client, Value};
use sidecast_core::BrokerError;
use sidecast_core::broker::SentinelUrl;
use tokio::time::timeout;

use crate::error;

/// The longest the broker goes without asking the sentinels where the master is: the periodic
/// check behind `+switch-master` (which a broken sentinel connection can miss).
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The shortest time between two resolutions, however often connections fail meanwhile.
pub(crate) const MIN_SPACING: Duration = Duration::from_millis(100);

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
