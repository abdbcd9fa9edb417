//! Memberships that outlive sockets: a join addressed to `user:<name>` (with no `except`) is
//! remembered, so that the sockets that user connects later, on any node, join the same rooms,
//! until a leave addressed to `user:<name>` or a `close_room`.
//!
//! Where they are kept: in Redis when the broker is Redis or `session.store = "redis"` (shared by
//! the nodes, and by nodes started later); otherwise in each node's memory, learnt from the bus
//! like every room operation (the memory broker has one node; on RabbitMQ without a Redis session
//! store, every running node knows them, a node started later does not: docs/decisions/
//! 0019-memberships.md).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sidecast_core::codec::control::Control;

/// The user of a `user:<name>` room.
fn user_of(room: &str) -> Option<&str> {
    room.strip_prefix("user:").filter(|u| !u.is_empty())
}

/// Where remembered memberships live.
#[async_trait]
pub(crate) trait MembershipStore: Send + Sync + 'static {
    /// `user` is in `rooms` of `namespace` from now on.
    async fn add(&self, namespace: &str, user: &str, rooms: &[String]) -> Result<(), String>;
    /// `user` is no longer in `rooms`.
    async fn remove(&self, namespace: &str, user: &str, rooms: &[String]) -> Result<(), String>;
    /// Nobody is in `rooms` any more.
    async fn close(&self, namespace: &str, rooms: &[String]) -> Result<(), String>;
    /// The rooms `user` is in.
    async fn rooms_of(&self, namespace: &str, user: &str) -> Result<Vec<String>, String>;
}

/// A shared handle on the node's store.
pub(crate) type SharedMemberships = Arc<dyn MembershipStore>;

/// Records what a room operation changes in the remembered memberships.
pub(crate) async fn record(store: &dyn MembershipStore, operation: &Control) -> Result<(), String> {
    match operation {
        Control::Join {
            rooms,
            namespace,
            except,
            join,
        } if except.is_empty() => {
            for user in rooms.iter().filter_map(|r| user_of(r)) {
                store.add(namespace, user, join).await?;
            }
        }
        Control::Leave {
            rooms,
            namespace,
            leave,
            ..
        } => {
            for user in rooms.iter().filter_map(|r| user_of(r)) {
                store.remove(namespace, user, leave).await?;
            }
        }
        Control::CloseRoom { rooms, namespace } => store.close(namespace, rooms).await?,
        _ => {}
    }
    Ok(())
}

/// Memberships in this process.
#[derive(Debug, Default)]
pub(crate) struct LocalMemberships {
    /// (namespace, user) → rooms.
    users: Mutex<HashMap<(String, String), BTreeSet<String>>>,
}

impl LocalMemberships {
    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), BTreeSet<String>>> {
        // A panic while holding the lock leaves consistent sets behind: keep going.
        self.users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl MembershipStore for LocalMemberships {
    async fn add(&self, namespace: &str, user: &str, rooms: &[String]) -> Result<(), String> {
        self.users()
            .entry((namespace.to_owned(), user.to_owned()))
            .or_default()
            .extend(rooms.iter().cloned());
        Ok(())
    }

    async fn remove(&self, namespace: &str, user: &str, rooms: &[String]) -> Result<(), String> {
        let mut users = self.users();
        let key = (namespace.to_owned(), user.to_owned());
        if let Some(set) = users.get_mut(&key) {
            for room in rooms {
                set.remove(room);
            }
            if set.is_empty() {
                users.remove(&key);
            }
        }
        Ok(())
    }

    async fn close(&self, namespace: &str, rooms: &[String]) -> Result<(), String> {
        self.users().retain(|(ns, _), set| {
            if ns == namespace {
                for room in rooms {
                    set.remove(room);
                }
            }
            !set.is_empty()
        });
        Ok(())
    }

    async fn rooms_of(&self, namespace: &str, user: &str) -> Result<Vec<String>, String> {
        Ok(self
            .users()
            .get(&(namespace.to_owned(), user.to_owned()))
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default())
    }
}

/// Memberships in Redis, shared by every node: per user a set of rooms
/// (`<channel>:memberships:user:["<namespace>","<user>"]`), and per room a set of users
/// (`<channel>:memberships:room:["<namespace>","<room>"]`) for `close_room`. Every node applies
/// every operation, so each write happens once per node; they are idempotent, and each node
/// writes in bus order, so the last write is that of the last operation.
#[cfg(feature = "redis")]
#[derive(Clone)]
pub(crate) struct RedisMemberships {
    connection: redis::aio::ConnectionManager,
    prefix: String,
    timeout: std::time::Duration,
}

#[cfg(feature = "redis")]
impl RedisMemberships {
    /// A store on the Redis at `url`, under keys starting with `<channel>:memberships:`. The
    /// connection is made lazily; every operation is bounded by `timeout`.
    pub(crate) fn new(
        url: &str,
        channel: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, redis::RedisError> {
        Ok(Self {
            connection: crate::redis_sessions::lazy_connection(url, timeout)?,
            prefix: format!("{channel}:memberships:"),
            timeout,
        })
    }

    /// A key whose parts cannot run into each other (JSON quoting).
    fn key(&self, kind: &str, namespace: &str, name: &str) -> String {
        let parts = serde_json::to_string(&(namespace, name)).unwrap_or_default();
        format!("{}{kind}:{parts}", self.prefix)
    }

    /// One atomic pipeline that applies the set command `command` (`SADD` or `SREM`) to both
    /// sides of the memberships: the user's set of rooms, and each room's set of users.
    fn both_ways(
        &self,
        command: &str,
        namespace: &str,
        user: &str,
        rooms: &[String],
    ) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd(command)
            .arg(self.key("user", namespace, user))
            .arg(rooms)
            .ignore();
        for room in rooms {
            pipe.cmd(command)
                .arg(self.key("room", namespace, room))
                .arg(user)
                .ignore();
        }
        pipe
    }

    /// Runs `pipe` within the time-out. A connection that broke while Redis was away fails its
    /// first command and reconnects in the background: that failure is retried once (within a
    /// second time-out), so that the first membership after an outage is not lost.
    async fn run<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, String> {
        let mut connection = self.connection.clone();
        let mut retried = false;
        loop {
            match tokio::time::timeout(self.timeout, pipe.query_async(&mut connection)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if !retried && (e.is_connection_dropped() || e.is_io_error()) => {
                    retried = true;
                }
                Ok(Err(e)) => return Err(format!("redis membership store: {e}")),
                Err(_) => {
                    return Err(format!(
                        "redis membership store did not answer within {:?}",
                        self.timeout
                    ));
                }
            }
        }
    }
}

#[cfg(feature = "redis")]
#[async_trait]
impl MembershipStore for RedisMemberships {
    async fn add(&self, namespace: &str, user: &str, rooms: &[String]) -> Result<(), String> {
        self.run::<()>(&self.both_ways("SADD", namespace, user, rooms))
            .await
    }

    async fn remove(&self, namespace: &str, user: &str, rooms: &[String]) -> Result<(), String> {
        self.run::<()>(&self.both_ways("SREM", namespace, user, rooms))
            .await
    }

    async fn close(&self, namespace: &str, rooms: &[String]) -> Result<(), String> {
        for room in rooms {
            let key = self.key("room", namespace, room);
            let (users,): (Vec<String>,) = self.run(redis::pipe().smembers(&key)).await?;
            let mut pipe = redis::pipe();
            pipe.atomic();
            for user in &users {
                pipe.srem(self.key("user", namespace, user), room).ignore();
            }
            pipe.del(&key).ignore();
            self.run::<()>(&pipe).await?;
        }
        Ok(())
    }

    async fn rooms_of(&self, namespace: &str, user: &str) -> Result<Vec<String>, String> {
        let (rooms,): (Vec<String>,) = self
            .run(redis::pipe().smembers(self.key("user", namespace, user)))
            .await?;
        Ok(rooms)
    }
}

/// The store the configuration calls for: Redis when the broker is Redis or the session store is
/// (the cluster's shared state), else this process.
///
/// `configured_broker` is false when the node was given its broker in code
/// ([`crate::SidecastBuilder::broker`]): `broker.kind` then says nothing about it.
pub(crate) fn from_config(
    config: &sidecast_core::Config,
    configured_broker: bool,
) -> Result<SharedMemberships, crate::StartError> {
    #[cfg(feature = "redis")]
    {
        use sidecast_core::config::{BrokerKind, SessionStoreKind};
        let url = if configured_broker && config.broker.kind == BrokerKind::Redis {
            Some(config.broker.effective_url().to_owned())
        } else if config.session.store == SessionStoreKind::Redis && !config.session.url.is_empty()
        {
            Some(config.session.url.clone())
        } else {
            None
        };
        if let Some(url) = url {
            let timeout = std::time::Duration::from_millis(config.session.timeout_ms);
            let store =
                RedisMemberships::new(&url, &config.broker.channel, timeout).map_err(|e| {
                    crate::StartError::SessionStore(format!(
                        "membership store at {}: {e}",
                        sidecast_core::broker::redact_url(&url)
                    ))
                })?;
            return Ok(Arc::new(store));
        }
    }
    let _ = (config, configured_broker);
    Ok(Arc::new(LocalMemberships::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_memberships_follow_joins_leaves_and_closes() {
        let store = LocalMemberships::default();
        let join = |rooms: &[&str], join: &[&str], except: &[&str]| Control::Join {
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            namespace: "/".into(),
            except: except.iter().map(|r| r.to_string()).collect(),
            join: join.iter().map(|r| r.to_string()).collect(),
        };
        record(&store, &join(&["user:alice", "game:9"], &["g1", "g2"], &[]))
            .await
            .unwrap();
        // Not remembered: addressed to a room that is not a user's, or with `except`.
        record(&store, &join(&["game:9"], &["g3"], &[]))
            .await
            .unwrap();
        record(&store, &join(&["user:bob"], &["g4"], &["x"]))
            .await
            .unwrap();
        assert_eq!(store.rooms_of("/", "alice").await.unwrap(), ["g1", "g2"]);
        assert!(store.rooms_of("/", "bob").await.unwrap().is_empty());
        assert!(store.rooms_of("/chat", "alice").await.unwrap().is_empty());
        record(
            &store,
            &Control::Leave {
                rooms: vec!["user:alice".into()],
                namespace: "/".into(),
                except: vec![],
                leave: vec!["g1".into()],
            },
        )
        .await
        .unwrap();
        assert_eq!(store.rooms_of("/", "alice").await.unwrap(), ["g2"]);
        record(
            &store,
            &Control::CloseRoom {
                rooms: vec!["g2".into()],
                namespace: "/".into(),
            },
        )
        .await
        .unwrap();
        assert!(store.rooms_of("/", "alice").await.unwrap().is_empty());
    }
}
