//! Memberships that outlive sockets: a join addressed to `user:<name>` (with no `except`) is
//! remembered, so that the sockets that user connects later, on any node, join the same rooms,
//! until a leave addressed to `user:<name>` or a `close_room`.
//!
//! Where they are kept: in Redis when the broker is Redis or `session.store = "redis"` (shared by
//! the nodes, and by nodes started later); otherwise in each node's memory, learnt from the bus
//! like every room operation (the memory broker has one node; on RabbitMQ without a Redis session
//! store, every running node knows them, and a node that starts asks the running nodes for them,
//! [`crate::delivery::membership_sync`]: docs/decisions/0019-memberships.md).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sidecast_core::codec::control::Control;

/// How long a starting node waits for the running nodes' memberships before it serves: an
/// answer takes a broker round trip or two.
pub(crate) const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

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
        // A join that leaves sockets out is not one a user's next sockets can repeat.
        Control::Join { except, .. } if !except.is_empty() => {}
        Control::Join {
            rooms,
            namespace,
            join,
            ..
        } => {
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

/// What a user is in: `(namespace, user)` → rooms.
type Users = HashMap<(String, String), BTreeSet<String>>;

/// One change to the memberships, as recorded; kept in the journal while the node waits for
/// the memberships of the running nodes ([`crate::delivery::membership_sync`]).
#[derive(Debug, Clone)]
enum Change {
    Add(String, String, Vec<String>),
    Remove(String, String, Vec<String>),
    Close(String, Vec<String>),
}

impl Change {
    fn apply(&self, users: &mut Users) {
        match self {
            Self::Add(namespace, user, rooms) => {
                users
                    .entry((namespace.clone(), user.clone()))
                    .or_default()
                    .extend(rooms.iter().cloned());
            }
            Self::Remove(namespace, user, rooms) => {
                let key = (namespace.clone(), user.clone());
                if let Some(set) = users.get_mut(&key) {
                    for room in rooms {
                        set.remove(room);
                    }
                    if set.is_empty() {
                        users.remove(&key);
                    }
                }
            }
            Self::Close(namespace, rooms) => users.retain(|(ns, _), set| {
                if ns == namespace {
                    for room in rooms {
                        set.remove(room);
                    }
                }
                !set.is_empty()
            }),
        }
    }
}

/// The memberships of one `(namespace, user)`, as one node tells another.
pub type Membership = (String, String, Vec<String>);

fn users_of(snapshot: Vec<Membership>) -> Users {
    snapshot
        .into_iter()
        .filter(|(_, _, rooms)| !rooms.is_empty())
        .map(|(ns, user, rooms)| ((ns, user), rooms.into_iter().collect()))
        .collect()
}

#[derive(Debug, Default)]
struct LocalState {
    users: Users,
    /// `Some` until the node has the running nodes' memberships (or knows there are none): every
    /// change since the node subscribed, to apply again over their snapshot.
    journal: Option<Vec<Change>>,
}

/// Memberships in this process.
#[derive(Debug)]
pub(crate) struct LocalMemberships {
    state: Mutex<LocalState>,
    /// Whether the node has the running nodes' memberships (or knows there are none): a socket
    /// that connects before waits for it, so that it joins the rooms its user is in.
    synced: tokio::sync::watch::Sender<bool>,
}

impl Default for LocalMemberships {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            synced: tokio::sync::watch::Sender::new(true),
        }
    }
}

impl LocalMemberships {
    /// A store that waits for the memberships of the running nodes: until
    /// [`LocalMemberships::synced`], it works as usual and keeps a journal of its changes.
    pub(crate) fn syncing() -> Self {
        Self {
            state: Mutex::new(LocalState {
                users: Users::new(),
                journal: Some(Vec::new()),
            }),
            synced: tokio::sync::watch::Sender::new(false),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LocalState> {
        // A panic while holding the lock leaves consistent sets behind: keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn change(&self, change: Change) {
        let mut state = self.state();
        change.apply(&mut state.users);
        if let Some(journal) = &mut state.journal {
            journal.push(change);
        }
    }

    /// Takes the memberships another node remembered (`None`: nobody answered) and applies the
    /// changes journaled since this node subscribed over them, in order. The snapshot was taken
    /// after the request, which was published after this node subscribed, so every change it
    /// lacks is in the journal, and the set changes replayed in bus order end where the bus
    /// did.
    pub(crate) fn synced(&self, snapshot: Option<Vec<Membership>>) {
        let mut state = self.state();
        let Some(journal) = state.journal.take() else {
            return;
        };
        self.synced.send_replace(true);
        if let Some(snapshot) = snapshot {
            let mut users = users_of(snapshot);
            for change in &journal {
                change.apply(&mut users);
            }
            state.users = users;
        }
    }

    /// Waits until the store has the running nodes' memberships (or knows there are none), at
    /// most twice the sync's own wait; whether it has.
    pub(crate) async fn wait_synced(&self) -> bool {
        let mut synced = self.synced.subscribe();
        let within = ANSWER_WAIT * 2;
        matches!(
            tokio::time::timeout(within, synced.wait_for(|synced| *synced)).await,
            Ok(Ok(_))
        )
    }

    /// A store that holds `snapshot`, synced: where a starting node applies the history's room
    /// operations that another node's snapshot lacks before it takes that snapshot.
    pub(crate) fn from_snapshot(snapshot: Vec<Membership>) -> Self {
        let store = Self::default();
        store.state().users = users_of(snapshot);
        store
    }

    /// What this node remembers, to hand to a node that starts; `None` while it waits for its
    /// own (its answer would be incomplete).
    pub(crate) fn snapshot(&self) -> Option<Vec<Membership>> {
        let state = self.state();
        state.journal.is_none().then(|| {
            state
                .users
                .iter()
                .map(|((ns, user), rooms)| {
                    (ns.clone(), user.clone(), rooms.iter().cloned().collect())
                })
                .collect()
        })
    }
}

#[async_trait]
impl MembershipStore for LocalMemberships {
    async fn add(&self, namespace: &str, user: &str, rooms: &[String]) -> Result<(), String> {
        self.change(Change::Add(
            namespace.to_owned(),
            user.to_owned(),
            rooms.to_vec(),
        ));
        Ok(())
    }

    async fn remove(&self, namespace: &str, user: &str, rooms: &[String]) -> Result<(), String> {
        self.change(Change::Remove(
            namespace.to_owned(),
            user.to_owned(),
            rooms.to_vec(),
        ));
        Ok(())
    }

    async fn close(&self, namespace: &str, rooms: &[String]) -> Result<(), String> {
        self.change(Change::Close(namespace.to_owned(), rooms.to_vec()));
        Ok(())
    }

    async fn rooms_of(&self, namespace: &str, user: &str) -> Result<Vec<String>, String> {
        // Bounded: the sync gives up after its own wait and marks the store synced then.
        if !self.wait_synced().await {
            return Err(
                "the remembered memberships of the running nodes did not arrive".to_owned(),
            );
        }
        Ok(self
            .state()
            .users
            .get(&(namespace.to_owned(), user.to_owned()))
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default())
    }
}

/// Memberships in Redis, shared by every node: per user a set of rooms
/// (`<channel>:memberships:user:["<namespace>","<user>"]`), and per room a set of users
/// (`<channel>:memberships:room:["<namespace>","<room>"]`) for `close_room`; on a Redis Cluster
/// `{<channel>:memberships}:user:...` and `{<channel>:memberships}:room:...`, one slot for all,
/// because one atomic pipeline writes a user's set and its rooms' sets. Every node applies
/// every operation, so each write happens once per node; they are idempotent, and each node
/// writes in bus order, so the last write is that of the last operation.
#[cfg(feature = "redis")]
#[derive(Clone)]
pub(crate) struct RedisMemberships {
    connection: sidecast_transport_redis::RedisLink,
    /// `<channel>:memberships`: the hash tag of every key on a Cluster.
    tag: String,
    /// Whether the store is a Redis Cluster.
    cluster: bool,
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
            connection: crate::identity::redis_sessions::lazy_connection(url, timeout)?,
            tag: format!("{channel}:memberships"),
            cluster: sidecast_core::broker::ClusterUrl::is_cluster(url),
            timeout,
        })
    }

    /// A key whose parts cannot run into each other (JSON quoting).
    fn key(&self, kind: &str, namespace: &str, name: &str) -> String {
        let parts = serde_json::to_string(&(namespace, name)).unwrap_or_default();
        sidecast_core::broker::slot_key("", &self.tag, &format!(":{kind}:{parts}"), self.cluster)
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
/// (the cluster's shared state), else this process. A store in this process on a broker that
/// other nodes may share (RabbitMQ, or a broker given in code) is also returned on its own: it
/// learns the running nodes' memberships at start ([`crate::delivery::membership_sync`]).
///
/// `configured_broker` is false when the node was given its broker in code
/// ([`crate::SidecastBuilder::broker`]): `broker.kind` then says nothing about it.
pub(crate) fn from_config(
    config: &sidecast_core::Config,
    configured_broker: bool,
) -> Result<(SharedMemberships, Option<Arc<LocalMemberships>>), crate::StartError> {
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
            return Ok((Arc::new(store), None));
        }
    }
    let alone =
        configured_broker && config.broker.kind == sidecast_core::config::BrokerKind::Memory;
    if alone {
        return Ok((Arc::new(LocalMemberships::default()), None));
    }
    let store = Arc::new(LocalMemberships::syncing());
    Ok((store.clone(), Some(store)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Adds, removes, closes and reads through `store`, as the relay does.
    #[cfg(feature = "redis")]
    async fn exercise(store: &RedisMemberships) {
        store
            .add("/", "alice", &strings(&["g1", "g2", "g3"]))
            .await
            .unwrap();
        store.add("/", "bob", &strings(&["g2"])).await.unwrap();
        store.remove("/", "alice", &strings(&["g1"])).await.unwrap();
        let mut rooms = store.rooms_of("/", "alice").await.unwrap();
        rooms.sort();
        assert_eq!(rooms, ["g2", "g3"]);
        store.close("/", &strings(&["g2"])).await.unwrap();
        assert_eq!(store.rooms_of("/", "alice").await.unwrap(), ["g3"]);
        assert!(store.rooms_of("/", "bob").await.unwrap().is_empty());
    }

    /// On a single Redis the key names are unchanged.
    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn redis_memberships_keep_their_key_names_on_a_single_redis() {
        let server = sidecast_testkit::RedisServer::start().await;
        let timeout = std::time::Duration::from_secs(2);
        let store = RedisMemberships::new(server.url(), "sidecast", timeout).unwrap();
        exercise(&store).await;
        assert_eq!(
            server
                .command(&["EXISTS", r#"sidecast:memberships:user:["/","alice"]"#])
                .await
                .unwrap(),
            ":1"
        );
    }

    /// On a Redis Cluster every membership key shares one slot (the atomic pipelines span a
    /// user's set and its rooms' sets) through the hash tag `{<channel>:memberships}`.
    #[cfg(feature = "redis")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_memberships_work_on_a_cluster_in_one_slot() {
        let cluster = sidecast_testkit::RedisCluster::start().await;
        let timeout = std::time::Duration::from_secs(2);
        let store = RedisMemberships::new(&cluster.url(), "sidecast", timeout).unwrap();
        exercise(&store).await;
        let key = r#"{sidecast:memberships}:user:["/","alice"]"#;
        let primary = cluster.primary_of(key).await;
        assert_eq!(
            cluster
                .cli(&primary, &["EXISTS", key])
                .await
                .unwrap()
                .trim(),
            "1"
        );
    }

    /// A node that starts applies what it journaled since it subscribed over the snapshot of a
    /// running node, whichever of them already holds those changes: it ends where the bus did.
    #[tokio::test]
    async fn a_snapshot_under_the_journal_ends_where_the_bus_did() {
        let store = LocalMemberships::syncing();
        // Received while waiting (and also in the snapshot: taken later).
        store
            .add("/", "alice", &strings(&["g1", "g2"]))
            .await
            .unwrap();
        store.remove("/", "alice", &strings(&["g1"])).await.unwrap();
        // Received while waiting, not in the snapshot (taken earlier on the other node).
        store.add("/", "bob", &strings(&["g3"])).await.unwrap();
        assert_eq!(store.snapshot(), None, "no answer while waiting");
        let snapshot = vec![
            ("/".to_owned(), "alice".to_owned(), strings(&["g2", "g9"])),
            ("/".to_owned(), "carol".to_owned(), strings(&["g3", "g4"])),
            ("/chat".to_owned(), "alice".to_owned(), strings(&["c1"])),
        ];
        store.synced(Some(snapshot));
        assert_eq!(store.rooms_of("/", "alice").await.unwrap(), ["g2", "g9"]);
        assert_eq!(store.rooms_of("/", "bob").await.unwrap(), ["g3"]);
        assert_eq!(store.rooms_of("/", "carol").await.unwrap(), ["g3", "g4"]);
        assert_eq!(store.rooms_of("/chat", "alice").await.unwrap(), ["c1"]);
        // Later changes apply as usual, and the node now answers others.
        store.close("/", &strings(&["g3"])).await.unwrap();
        assert!(store.rooms_of("/", "bob").await.unwrap().is_empty());
        let mut answer = store.snapshot().unwrap();
        answer.sort();
        assert_eq!(
            answer,
            vec![
                ("/".to_owned(), "alice".to_owned(), strings(&["g2", "g9"])),
                ("/".to_owned(), "carol".to_owned(), strings(&["g4"])),
                ("/chat".to_owned(), "alice".to_owned(), strings(&["c1"])),
            ]
        );
    }

    /// Nobody answered: the node keeps what it learnt while waiting.
    #[tokio::test]
    async fn without_an_answer_the_node_keeps_what_it_learnt() {
        let store = LocalMemberships::syncing();
        store.add("/", "alice", &strings(&["g1"])).await.unwrap();
        // A socket connecting meanwhile waits for the sync.
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            store.rooms_of("/", "alice"),
        )
        .await;
        assert!(waiting.is_err(), "rooms_of waits until the store is synced");
        store.synced(None);
        assert_eq!(store.rooms_of("/", "alice").await.unwrap(), ["g1"]);
        assert_eq!(store.snapshot().unwrap().len(), 1);
    }

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
