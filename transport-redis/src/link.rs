//! [`RedisLink`]: a lazily made command connection for stores beside the broker (sessions,
//! memberships) that, with a `redis+sentinel://` address, follows the master.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use sidecast_core::broker::{ClusterUrl, SentinelUrl, redact_url};
use tokio::time::Instant;

use crate::cluster::LazyCluster;
use crate::sentinel::{self, CHECK_EVERY};

/// A command connection to one Redis server or, for a `redis+sentinel://` address, to the
/// current master of a Sentinel set. Made lazily (nothing connects until the first command, so
/// that an application starts while Redis is down); every connect and answer is bounded by the
/// time-out given, with one retry.
///
/// With Sentinel, the master is asked from the sentinels before the first command, again at
/// most 5 s after the last time, and at once after a command failed on the
/// connection or was answered `READONLY` / `MASTERDOWN`; when it moved, the connection to the
/// old master is dropped, even though a demoted master still answers. A command whose connection
/// broke is sent once more when the sentinels then name another master (the old one is gone or
/// demoted); any other failure during the switch reaches the caller.
///
/// Clones share the connection. It implements redis' [`ConnectionLike`], so commands and
/// pipelines run on it with `query_async(&mut link)`.
///
/// With a `redis+cluster://` address the redis crate's cluster client is used (made at the
/// first command): it routes each command by its key and follows the slot map. A pipeline's
/// keys must then share one slot (see [`sidecast_core::broker::slot_key`]).
#[derive(Clone)]
pub struct RedisLink {
    inner: Arc<Inner>,
    db: i64,
}

enum Inner {
    Single(ConnectionManager),
    /// A Redis Cluster: the cluster client routes each command by its key.
    Cluster(Box<LazyCluster>),
    Sentinel {
        url: SentinelUrl,
        redacted: String,
        timeout: Duration,
        current: Mutex<Option<Current>>,
    },
}

#[derive(Clone)]
struct Current {
    addr: String,
    connection: ConnectionManager,
    /// When the sentinels were last asked; `None`: ask before the next command.
    checked: Option<Instant>,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("RedisLink");
        if let Inner::Sentinel {
            redacted, current, ..
        } = self.inner.as_ref()
        {
            let master = current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map(|c| c.addr.clone());
            debug.field("url", redacted).field("master", &master);
        }
        debug.finish_non_exhaustive()
    }
}

fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(timeout)
}

impl RedisLink {
    /// A link to `url` (`redis://`, `rediss://`, `redis+sentinel://`, `rediss+sentinel://`),
    /// bounded by `timeout`. Connects nothing yet.
    ///
    /// # Errors
    ///
    /// The URL is malformed (the message says how the form goes; the password is redacted).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RedisError> {
        match ClusterUrl::parse(url) {
            Ok(Some(cluster)) => {
                if cluster.tls {
                    let _ = rustls::crypto::ring::default_provider().install_default();
                }
                return Ok(Self {
                    db: 0,
                    inner: Arc::new(Inner::Cluster(Box::new(LazyCluster::new(
                        &cluster, timeout,
                    )?))),
                });
            }
            Ok(None) => {}
            Err(why) => {
                return Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "invalid Redis Cluster address",
                    format!("{} {why}", redact_url(url)),
                )));
            }
        }
        match SentinelUrl::parse(url) {
            Ok(Some(sentinel)) => {
                if sentinel.tls {
                    let _ = rustls::crypto::ring::default_provider().install_default();
                }
                Ok(Self {
                    db: sentinel.db,
                    inner: Arc::new(Inner::Sentinel {
                        url: sentinel,
                        redacted: redact_url(url),
                        timeout,
                        current: Mutex::new(None),
                    }),
                })
            }
            Ok(None) => {
                let client = Client::open(url)?;
                let db = client.get_connection_info().redis_settings().db();
                let connection =
                    ConnectionManager::new_lazy_with_config(client, manager_config(timeout))?;
                Ok(Self {
                    inner: Arc::new(Inner::Single(connection)),
                    db,
                })
            }
            Err(why) => Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "invalid Redis Sentinel address",
                format!("{} {why}", redact_url(url)),
            ))),
        }
    }

    /// `host:port` of the master in use (Sentinel only, once asked).
    pub fn master(&self) -> Option<String> {
        match self.inner.as_ref() {
            Inner::Single(_) | Inner::Cluster(_) => None,
            Inner::Sentinel { current, .. } => current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map(|c| c.addr.clone()),
        }
    }

    /// The connection to use now: the master's, asking the sentinels first when it is time.
    async fn connection(&self) -> RedisResult<ConnectionManager> {
        let (url, redacted, timeout, current) = match self.inner.as_ref() {
            Inner::Single(connection) => return Ok(connection.clone()),
            Inner::Cluster(_) => {
                return Err(RedisError::from((
                    ErrorKind::Client,
                    "a cluster link has no single-server connection",
                )));
            }
            Inner::Sentinel {
                url,
                redacted,
                timeout,
                current,
            } => (url, redacted, *timeout, current),
        };
        let known = current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(known) = &known
            && known
                .checked
                .is_some_and(|checked| checked.elapsed() < CHECK_EVERY)
        {
            return Ok(known.connection.clone());
        }
        let (host, port) = match sentinel::resolve(url, redacted, timeout).await {
            Ok(found) => found,
            // The sentinels are unreachable: keep using the master we know, if any.
            Err(e) => {
                return match known {
                    Some(known) => Ok(known.connection),
                    None => Err(RedisError::from((
                        ErrorKind::Io,
                        "no sentinel answered",
                        e.to_string(),
                    ))),
                };
            }
        };
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut slot = current.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_mut() {
            Some(same) if same.addr == addr => {
                same.checked = Some(Instant::now());
                Ok(same.connection.clone())
            }
            _ => {
                let client = Client::open(url.master_url(&host, port))?;
                let connection =
                    ConnectionManager::new_lazy_with_config(client, manager_config(timeout))?;
                // The broker logs the failover itself (once per failover, at warn); the stores
                // following it are detail.
                if let Some(old) = slot.as_ref() {
                    tracing::debug!(
                        url = %redacted, old = %old.addr, new = %addr,
                        "store connection moved to the new redis master"
                    );
                }
                *slot = Some(Current {
                    addr,
                    connection: connection.clone(),
                    checked: Some(Instant::now()),
                });
                Ok(connection)
            }
        }
    }

    /// After a failed command: with Sentinel, when the failure says the server may no longer
    /// be the master, ask the sentinels before the next command. Returns whether the failure
    /// came from the connection itself (the command never got an answer).
    fn after(&self, result: &RedisResult<impl Sized>) -> bool {
        let Err(e) = result else { return false };
        let Inner::Sentinel { current, .. } = self.inner.as_ref() else {
            return false;
        };
        let broken = e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal();
        if (broken || e.is_timeout() || matches!(e.code(), Some("READONLY" | "MASTERDOWN")))
            && let Some(known) = current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
        {
            known.checked = None;
        }
        broken
    }

    /// Runs `op` on the master's connection. With Sentinel, a command whose connection broke is
    /// sent once more if the sentinels now name another master: the old one is gone, and a
    /// command that failed to reach it is sent where it belongs.
    async fn run<T, Fut>(&self, op: impl Fn(ConnectionManager) -> Fut) -> RedisResult<T>
    where
        Fut: Future<Output = RedisResult<T>>,
    {
        let connection = self.connection().await?;
        let result = op(connection).await;
        if !self.after(&result) {
            return result;
        }
        let before = self.master();
        let fresh = self.connection().await?;
        if self.master() == before {
            return result;
        }
        let retried = op(fresh).await;
        self.after(&retried);
        retried
    }
}

impl ConnectionLike for RedisLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            if let Inner::Cluster(cluster) = self.inner.as_ref() {
                return cluster.connection().await?.req_packed_command(cmd).await;
            }
            self.run(|mut c| async move { c.req_packed_command(cmd).await })
                .await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            if let Inner::Cluster(cluster) = self.inner.as_ref() {
                return cluster
                    .connection()
                    .await?
                    .req_packed_commands(pipeline, offset, count)
                    .await;
            }
            self.run(|mut c| async move { c.req_packed_commands(pipeline, offset, count).await })
                .await
        })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}
