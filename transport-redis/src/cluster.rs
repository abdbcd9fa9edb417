//! Redis Cluster (`redis+cluster://` seed nodes): the command connection through the redis
//! crate's cluster client (it follows MOVED/ASK and refreshes the slot map itself), and what the
//! cluster client must not do: blocking history reads (`XREAD BLOCK`) and pub/sub go on plain
//! connections of their own, to the slot's primary and to any live node respectively.
//!
//! Why: a blocking read on the cluster client's shared per-node connection would hold up every
//! command queued behind it, and its replay of sharded subscriptions sends all channels in one
//! `SSUBSCRIBE` routed by the first (see decision 0031).

use redis::aio::{ConnectionLike, MultiplexedConnection, PubSubSink, PubSubStream};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, RedisResult, Value};
use sidecast_core::broker::ClusterUrl;

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The connection commands (publishes, appends, history reads) go through: one server's
/// multiplexed connection, or the cluster client's, which routes each command to the node that
/// serves its key.
#[derive(Clone)]
pub(crate) enum CommandConnection {
    /// One server (a single Redis, or the master a set of sentinels names).
    Server(MultiplexedConnection),
    /// A Redis Cluster.
    Cluster {
        connection: ClusterConnection,
        /// A key of this broker's own whose slot's primary takes every `PUBLISH` (see
        /// [`CommandConnection::publish`]).
        pin: Arc<str>,
    },
}

impl CommandConnection {
    /// A liveness check. On a Cluster the `PING` goes to one node at random: the redis crate
    /// would send a bare `PING` to every primary, and one primary down (while its replica is
    /// promoted) is the cluster client's to handle, not a reason to drop the whole connection.
    pub(crate) async fn ping(&mut self) -> RedisResult<()> {
        match self {
            Self::Server(connection) => redis::cmd("PING").query_async(connection).await,
            Self::Cluster { connection, .. } => connection
                .route_command(
                    redis::cmd("PING"),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                )
                .await
                .map(drop),
        }
    }

    /// Runs `publish` (`PUBLISH channel payload`). On a Cluster every publish of this broker goes
    /// to one node, the primary of its pin key's slot, rather than to the primary of each
    /// channel's slot: the node that takes a publish passes it to the others over the cluster
    /// bus, so publishes through several nodes could overtake each other on their way to a
    /// subscriber, and a broker keeps its publishes in order. (Brokers pin different slots, which
    /// spreads them over the primaries.)
    pub(crate) async fn publish(&mut self, publish: Cmd) -> RedisResult<Value> {
        match self {
            Self::Server(connection) => publish.query_async(connection).await,
            Self::Cluster { connection, pin } => {
                let route = Route::with_key(pin.as_bytes(), SlotAddr::Master);
                connection
                    .route_command(
                        publish,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await
            }
        }
    }
}

impl ConnectionLike for CommandConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Server(connection) => connection.req_packed_command(cmd),
            Self::Cluster { connection, .. } => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Server(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster { connection, .. } => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(connection) => connection.get_db(),
            Self::Cluster { connection, .. } => connection.get_db(),
        }
    }
}

/// A Redis Cluster as a [`crate::RedisBroker`] reaches it.
pub(crate) struct Cluster {
    url: ClusterUrl,
    client: ClusterClient,
    /// Where the next pub/sub connection starts looking for a live node, so that a subscription
    /// whose node died does not try that node first again.
    next_node: AtomicUsize,
    /// The pin key of [`CommandConnection::publish`]: random per broker.
    pin: Arc<str>,
}

impl Cluster {
    /// The cluster client of `url`; connects nothing yet.
    pub(crate) fn new(url: ClusterUrl, connect_timeout: Duration) -> RedisResult<Self> {
        // No response time-out from the crate: every operation is bounded by the broker's own
        // time-outs (publish, connect), which report the configured duration.
        let client = ClusterClientBuilder::new(url.seed_urls())
            .connection_timeout(connect_timeout)
            .build()?;
        // A random number without a dependency for it: std's hasher keys are random per process
        // and per RandomState.
        let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        Ok(Self {
            url,
            client,
            next_node: AtomicUsize::new(0),
            pin: format!("sidecast:publisher:{random:016x}").into(),
        })
    }

    /// The URL of the node at `host:port`, with the address's credentials and TLS.
    pub(crate) fn node_url(&self, host: &str, port: u16) -> String {
        self.url.node_url(host, port)
    }

    /// A new cluster connection, checked with a `PING` to one node.
    pub(crate) async fn connect(&self) -> RedisResult<CommandConnection> {
        let mut connection = CommandConnection::Cluster {
            connection: self.client.get_async_connection().await?,
            pin: Arc::clone(&self.pin),
        };
        connection.ping().await?;
        Ok(connection)
    }

    /// A plain connection to the primary that serves `key` now, as `command` (the cluster
    /// connection) sees the slot map, with no response time-out (the caller bounds each read).
    /// For blocking reads: a MOVED answer or a broken connection means the slot moved, and the
    /// caller asks again.
    pub(crate) async fn connect_primary_of(
        &self,
        command: &mut CommandConnection,
        key: &str,
    ) -> RedisResult<MultiplexedConnection> {
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(command)
            .await?;
        let (host, port) = slots(command)
            .await?
            .into_iter()
            .find(|range| range.first <= slot && slot <= range.last)
            .map(|range| range.primary)
            .ok_or_else(|| {
                redis::RedisError::from((
                    redis::ErrorKind::ClusterConnectionNotFound,
                    "no primary serves the slot",
                    format!("slot {slot}"),
                ))
            })?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        Client::open(self.url.node_url(&host, port))?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// A pub/sub connection to a live node, subscribed to `specs`. Classic pub/sub messages
    /// reach every node of a cluster, so any node will do: the nodes `command` knows (primaries
    /// and replicas) are tried first, then the seeds, starting after the node used last time.
    pub(crate) async fn open_pubsub(
        &self,
        command: Option<&mut CommandConnection>,
        exact: &[&str],
        patterns: &[&str],
    ) -> RedisResult<(PubSubSink, PubSubStream)> {
        let mut nodes = Vec::new();
        if let Some(command) = command
            && let Ok(ranges) = slots(command).await
        {
            for range in ranges {
                for node in std::iter::once(range.primary).chain(range.replicas) {
                    if !nodes.contains(&node) {
                        nodes.push(node);
                    }
                }
            }
        }
        for seed in &self.url.seeds {
            if !nodes.contains(seed) {
                nodes.push(seed.clone());
            }
        }
        let start = self.next_node.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for n in 0..nodes.len() {
            let (host, port) = &nodes[(start + n) % nodes.len()];
            match subscribe_at(&self.url.node_url(host, *port), exact, patterns).await {
                Ok(connection) => return Ok(connection),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Io, "no cluster node is known"))
        }))
    }
}

async fn subscribe_at(
    url: &str,
    exact: &[&str],
    patterns: &[&str],
) -> RedisResult<(PubSubSink, PubSubStream)> {
    let (mut sink, stream) = Client::open(url)?.get_async_pubsub().await?.split();
    if !exact.is_empty() {
        sink.subscribe(exact).await?;
    }
    if !patterns.is_empty() {
        sink.psubscribe(patterns).await?;
    }
    Ok((sink, stream))
}

/// A cluster connection made at first use, for the stores beside the broker
/// ([`crate::RedisLink`]): every command bounded by the store's time-out. Once made, the
/// cluster client keeps it connected (node by node) and follows the slot map.
pub(crate) struct LazyCluster {
    client: ClusterClient,
    connection: tokio::sync::OnceCell<ClusterConnection>,
}

impl LazyCluster {
    /// The cluster client of `url`; connects nothing yet.
    pub(crate) fn new(url: &ClusterUrl, timeout: Duration) -> RedisResult<Self> {
        let client = ClusterClientBuilder::new(url.seed_urls())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .build()?;
        Ok(Self {
            client,
            connection: tokio::sync::OnceCell::new(),
        })
    }

    /// The connection, made now if it was not yet (a failed attempt is tried again next time).
    pub(crate) async fn connection(&self) -> RedisResult<ClusterConnection> {
        self.connection
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}

/// One range of `CLUSTER SLOTS`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SlotRange {
    /// The first slot of the range.
    pub(crate) first: i64,
    /// The last slot of the range (inclusive).
    pub(crate) last: i64,
    /// The primary that serves it.
    pub(crate) primary: (String, u16),
    /// Its replicas.
    pub(crate) replicas: Vec<(String, u16)>,
}

/// `CLUSTER SLOTS` through `command` (one node's view of the slot map).
pub(crate) async fn slots(command: &mut CommandConnection) -> RedisResult<Vec<SlotRange>> {
    let reply: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(command)
        .await?;
    Ok(parse_slots(&reply))
}

/// The ranges of a `CLUSTER SLOTS` reply: `[[first, last, [host, port, id, ...], replicas...]]`.
/// Malformed parts are skipped: a range without a primary is one nobody serves now.
fn parse_slots(reply: &Value) -> Vec<SlotRange> {
    let Value::Array(ranges) = reply else {
        return Vec::new();
    };
    let node = |value: &Value| -> Option<(String, u16)> {
        let Value::Array(parts) = value else {
            return None;
        };
        let host = match parts.first()? {
            Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok()?,
            Value::SimpleString(text) => text.clone(),
            _ => return None,
        };
        let port = match parts.get(1)? {
            Value::Int(port) => u16::try_from(*port).ok()?,
            _ => return None,
        };
        // A node that does not know its own address announces an empty host.
        (!host.is_empty() && port > 0).then_some((host, port))
    };
    ranges
        .iter()
        .filter_map(|range| {
            let Value::Array(parts) = range else {
                return None;
            };
            let (Value::Int(first), Value::Int(last)) = (parts.first()?, parts.get(1)?) else {
                return None;
            };
            Some(SlotRange {
                first: *first,
                last: *last,
                primary: node(parts.get(2)?)?,
                replicas: parts.iter().skip(3).filter_map(node).collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn slot_ranges_are_read_with_their_nodes() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7000), bulk("id0")]),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7003), bulk("id3")]),
            ]),
            // A primary that does not know its address: nobody to connect to.
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                Value::Array(vec![bulk(""), Value::Int(7001)]),
            ]),
            Value::Nil,
        ]);
        assert_eq!(
            parse_slots(&reply),
            [SlotRange {
                first: 0,
                last: 5460,
                primary: ("127.0.0.1".to_owned(), 7000),
                replicas: vec![("127.0.0.1".to_owned(), 7003)],
            }]
        );
        assert!(parse_slots(&Value::Nil).is_empty());
    }
}
