//! [`RedisSessionStore`]: server-side sessions in Redis, shared by every node (`session.store =
//! "redis"`).

use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use sidecast_transport_redis::RedisLink;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

/// Keys are `sidecast:session:<id>`; each expires with its session.
const PREFIX: &str = "sidecast:session:";

/// A connection to the Redis at `url` (or, for a `redis+sentinel://` address, to the current
/// master, followed across failovers), made lazily (a node starts even while Redis is down),
/// whose connects and answers are bounded by `timeout` and which retries once, so that an
/// operation fails quickly while Redis is away. Shared by the session and the membership stores.
pub(crate) fn lazy_connection(
    url: &str,
    timeout: Duration,
) -> Result<RedisLink, redis::RedisError> {
    RedisLink::new(url, timeout)
}

/// A tower-sessions store on Redis.
///
/// Every operation is bounded by a short time-out: with Redis down, a socket connect or a
/// request is refused quickly (as logged out / 503) instead of hanging.
#[derive(Clone)]
pub struct RedisSessionStore {
    connection: RedisLink,
    timeout: Duration,
}

impl std::fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisSessionStore {
    /// A store on the Redis at `url`. The connection is made lazily, so a node starts even while
    /// Redis is down; operations fail (quickly) until it is back.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, redis::RedisError> {
        Ok(Self {
            connection: lazy_connection(url, timeout)?,
            timeout,
        })
    }

    /// Runs one Redis operation under the time-out.
    async fn run<T>(
        &self,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> session_store::Result<T> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(session_store::Error::Backend(format!(
                "redis session store: {e}"
            ))),
            Err(_) => Err(session_store::Error::Backend(format!(
                "redis session store did not answer within {:?}",
                self.timeout
            ))),
        }
    }
}

fn key(id: &Id) -> String {
    format!("{PREFIX}{id}")
}

fn encode(record: &Record) -> session_store::Result<(String, i64)> {
    let json =
        serde_json::to_string(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
    Ok((json, record.expiry_date.unix_timestamp()))
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // SET NX: a colliding id (astronomically unlikely) gets a new id instead of overwriting
        // someone else's session.
        loop {
            let (json, expires) = encode(record)?;
            let mut conn = self.connection.clone();
            let created: Option<String> = self
                .run(
                    redis::cmd("SET")
                        .arg(key(&record.id))
                        .arg(json)
                        .arg("EXAT")
                        .arg(expires)
                        .arg("NX")
                        .query_async(&mut conn),
                )
                .await?;
            if created.is_some() {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let (json, expires) = encode(record)?;
        let mut conn = self.connection.clone();
        self.run(
            redis::cmd("SET")
                .arg(key(&record.id))
                .arg(json)
                .arg("EXAT")
                .arg(expires)
                .query_async::<()>(&mut conn),
        )
        .await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let mut conn = self.connection.clone();
        let json: Option<String> = self.run(conn.get(key(id))).await?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| session_store::Error::Decode(e.to_string()))
        })
        .transpose()
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let mut conn = self.connection.clone();
        self.run(conn.del::<_, ()>(key(id))).await
    }
}
