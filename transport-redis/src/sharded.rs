//! Sharded pub/sub on a Redis Cluster (`SPUBLISH` / `SSUBSCRIBE`) for the channels named in
//! [`crate::RedisOptions::sharded_channels`]: the task behind the sharded part of a
//! subscription.
//!
//! A sharded message stays on its slot's primary (and replicas) instead of crossing every node,
//! so a subscriber must listen on the primary of each channel's slot, and `SSUBSCRIBE` takes
//! channels of one slot only. The task therefore opens one connection per primary that owns one
//! of its channels, sends one `SSUBSCRIBE` per slot, and starts over (on the primaries that own
//! the slots now) when a connection breaks, when a server says it dropped a shard channel
//! (`sunsubscribe`: the slot moved away), when a check of the slot map every
//! [`OWNER_CHECK`] finds another owner (a demoted primary keeps its connections), or when a
//! connection's probe does not come back (a private shard channel in the slot of one of its
//! channels, published every `probe_interval`, as classic subscriptions do). The redis
//! crate's own cluster pub/sub replay is not used: it re-sends every shard channel in one
//! `SSUBSCRIBE` routed by the first (decision 0031).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, Value};
use sidecast_core::supervision::{PartId, PumpEnd, Shutdown};
use sidecast_core::{BrokerError, BrokerMessage, Delivery, SubscriptionSender};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::{Instant, MissedTickBehavior, interval, interval_at, timeout};

use crate::cluster::{self, CommandConnection};
use crate::connection::RedisState;
use crate::error;

/// How often the slot owners of a sharded subscription's channels are checked.
pub(crate) const OWNER_CHECK: Duration = Duration::from_secs(1);

/// The reconnect backoff cap: a sharded subscription tries the new owner at least this often.
const RESUBSCRIBE_WITHIN: Duration = Duration::from_secs(1);

/// `host:port` of a node.
type Node = (String, u16);

/// The sharded connections of one subscription, as made by [`subscribe`].
pub(crate) struct Sharded {
    /// Which node serves each channel, as found when subscribing.
    owners: BTreeMap<String, Node>,
    /// One connection per owning node (kept open: dropping one closes it).
    connections: Vec<MultiplexedConnection>,
    /// Every connection's pushes: messages, confirmations, `sunsubscribe`, disconnections.
    pushes: UnboundedReceiver<PushInfo>,
    /// Pushes that came in while the confirmations were awaited: handled first.
    early: Vec<PushInfo>,
    /// One probe channel per connection (in the slot of one of its channels), when one could
    /// be made.
    probes: Vec<String>,
}

/// The part of `key` Redis hashes: the text between the first `{` and the next `}` when that is
/// not empty, else the whole key.
fn hashed_part(key: &str) -> &str {
    key.find('{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.find('}')
                .filter(|len| *len > 0)
                .map(|len| &rest[..len])
        })
        .unwrap_or(key)
}

/// Which node serves each of `channels` now, as the cluster connection sees the slot map.
async fn owners(
    command: &mut CommandConnection,
    channels: &[String],
) -> redis::RedisResult<BTreeMap<String, (i64, Node)>> {
    let slots = cluster::slots(command).await?;
    let mut owners = BTreeMap::new();
    for channel in channels {
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(channel)
            .query_async(command)
            .await?;
        let owner = slots
            .iter()
            .find(|range| range.first <= slot && slot <= range.last)
            .map(|range| range.primary.clone())
            .ok_or_else(|| {
                redis::RedisError::from((
                    redis::ErrorKind::ClusterConnectionNotFound,
                    "no primary serves the slot of a shard channel",
                    format!("slot {slot}"),
                ))
            })?;
        owners.insert(channel.clone(), (slot, owner));
    }
    Ok(owners)
}

/// Subscribes to `channels` on the primaries that serve their slots now: returns once every
/// server confirmed every channel, so messages published afterwards are received.
pub(crate) async fn subscribe(
    state: &RedisState,
    channels: &[String],
) -> Result<Sharded, BrokerError> {
    let (Some(cluster), Some((_, mut command))) = (state.cluster(), state.publisher_slot().clone())
    else {
        return Err(error::reconnecting(
            &state.url,
            state.parts.board().reconnect_attempt(),
        ));
    };
    let after = state.options.connect_timeout;
    let attempt = async {
        let found = owners(&mut command, channels).await?;
        // node -> slot -> channels: one connection per node, one SSUBSCRIBE per slot.
        let mut plan: BTreeMap<Node, BTreeMap<i64, Vec<String>>> = BTreeMap::new();
        for (channel, (slot, node)) in &found {
            plan.entry(node.clone())
                .or_default()
                .entry(*slot)
                .or_default()
                .push(channel.clone());
        }
        let (sender, mut pushes) = unbounded_channel();
        let mut connections = Vec::with_capacity(plan.len());
        let mut probes = Vec::new();
        for ((host, port), slots) in &mut plan {
            // The connection's probe: a private channel hashed like one of its channels, so that
            // it lands in that slot (checked: a channel with a stray `}` may not allow it).
            if let Some((slot, channels)) = slots.iter_mut().next() {
                let probe = format!(
                    "{{{}}}{}",
                    hashed_part(&channels[0]),
                    crate::subscription::probe_channel()
                );
                let probe_slot: i64 = redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(&probe)
                    .query_async(&mut command)
                    .await?;
                if probe_slot == *slot {
                    channels.push(probe.clone());
                    probes.push(probe);
                }
            }
            // RESP3: a multiplexed connection passes pushes (messages, confirmations) to the
            // sender, and stays usable for PING.
            let url = format!("{}?protocol=resp3", cluster.node_url(host, *port));
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(None)
                .set_response_timeout(None)
                .set_push_sender(sender.clone());
            let mut connection = Client::open(url)?
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            for channels in slots.values() {
                // SSUBSCRIBE is answered by pushes only; the PING behind it gives the request
                // its one reply, and an error (MOVED, CROSSSLOT) comes in its place.
                let mut pipe = redis::pipe();
                pipe.cmd("SSUBSCRIBE").arg(channels).cmd("PING");
                redis::aio::ConnectionLike::req_packed_commands(&mut connection, &pipe, 0, 1)
                    .await?
                    .into_iter()
                    .try_for_each(|value| match value {
                        Value::ServerError(e) => Err(redis::RedisError::from(e)),
                        _ => Ok(()),
                    })?;
            }
            connections.push(connection);
        }
        // Every channel confirmed (a `ssubscribe` push each) before messages count.
        let mut unconfirmed: BTreeSet<&String> = found.keys().chain(&probes).collect();
        let mut early = Vec::new();
        while !unconfirmed.is_empty() {
            let Some(push) = pushes.recv().await else {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "a shard channel connection closed while subscribing",
                )));
            };
            match push.kind {
                PushKind::SSubscribe => {
                    if let Some(channel) = push.data.first().and_then(text) {
                        unconfirmed.remove(&channel);
                    }
                }
                PushKind::Disconnection => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "a shard channel connection closed while subscribing",
                    )));
                }
                _ => early.push(push),
            }
        }
        let owners = found
            .into_iter()
            .map(|(channel, (_, node))| (channel, node))
            .collect();
        Ok(Sharded {
            owners,
            connections,
            pushes,
            early,
            probes,
        })
    };
    match timeout(after, attempt).await {
        Ok(Ok(sharded)) => Ok(sharded),
        Ok(Err(e)) => Err(error::map(e, &state.url)),
        Err(_elapsed) => Err(error::timeout(after)),
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// The task behind the sharded part of one subscription: forwards messages, and subscribes
/// anew on the current owners whenever [`pump`] finds the subscription broken or stale.
pub(crate) async fn run(
    state: Arc<RedisState>,
    id: PartId,
    channels: Arc<[String]>,
    tx: SubscriptionSender,
    mut sharded: Sharded,
    mut shutdown: Shutdown,
) {
    let _part = state.parts.board().part(id);
    loop {
        let failure = match pump(&state, &tx, &channels, &mut sharded, &mut shutdown).await {
            PumpEnd::Shutdown | PumpEnd::ConsumerGone => return,
            PumpEnd::Lost(failure) => failure,
        };
        if state.parts.board().is_closed() {
            return;
        }
        tracing::debug!(url = %state.url, reason = %failure, "sharded subscription resubscribes");
        state.parts.lost(id, &failure);
        let reconnected = state
            .reconnect(
                id,
                RESUBSCRIBE_WITHIN,
                &mut shutdown,
                || tx.is_closed(),
                || subscribe(&state, &channels),
            )
            .await;
        match reconnected {
            Some(fresh) => {
                sharded = fresh;
                state.parts.restored(id);
            }
            None => return,
        }
    }
}

/// Forwards shard messages until a connection breaks, a server drops a channel, a slot owner
/// changes, the consumer leaves or the broker shuts down.
async fn pump(
    state: &RedisState,
    tx: &SubscriptionSender,
    channels: &[String],
    sharded: &mut Sharded,
    shutdown: &mut Shutdown,
) -> PumpEnd {
    let mut check = interval_at(Instant::now() + OWNER_CHECK, OWNER_CHECK);
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let keepalive_every = state.options.keepalive_interval;
    let mut keepalive = interval_at(Instant::now() + keepalive_every, keepalive_every);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut consumer_check = interval(Duration::from_millis(250));
    consumer_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let ping_timeout = state.options.publish_timeout;
    let probe_every = state.options.probe_interval;
    let mut probe_tick = interval_at(Instant::now() + probe_every, probe_every);
    probe_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The probes sent that have not come back yet.
    let mut outstanding: BTreeSet<String> = BTreeSet::new();
    let mut early = std::mem::take(&mut sharded.early).into_iter();
    loop {
        tokio::select! {
            biased;
            () = shutdown.signalled() => return PumpEnd::Shutdown,
            push = async { match early.next() {
                Some(push) => Some(push),
                None => sharded.pushes.recv().await,
            } } => {
                let Some(push) = push else {
                    return PumpEnd::Lost("the shard channel connections closed".to_owned());
                };
                match push.kind {
                    PushKind::SMessage => {
                        let Some(message) = to_broker_message(&push) else { continue };
                        if sharded.probes.contains(&message.channel) {
                            outstanding.remove(&message.channel);
                            continue;
                        }
                        if tx.deliver(message) == Delivery::Closed {
                            return PumpEnd::ConsumerGone;
                        }
                    }
                    PushKind::SUnsubscribe => {
                        let channel = push.data.first().and_then(text).unwrap_or_default();
                        return PumpEnd::Lost(format!(
                            "the server dropped the shard channel {channel:?} (its slot moved)"
                        ));
                    }
                    PushKind::Disconnection => {
                        return PumpEnd::Lost("a shard channel connection closed".to_owned());
                    }
                    _ => {}
                }
            }
            _ = check.tick() => {
                let Some((_, mut command)) = state.publisher_slot().clone() else { continue };
                // A failed check proves nothing (the cluster connection may be switching too);
                // a broken connection shows itself.
                if let Ok(Ok(now)) = timeout(ping_timeout, owners(&mut command, channels)).await {
                    let moved = now
                        .iter()
                        .find(|(channel, (_, node))| sharded.owners.get(*channel) != Some(node));
                    if let Some((channel, (_, node))) = moved {
                        return PumpEnd::Lost(format!(
                            "the slot of shard channel {channel:?} is now served by {}:{}",
                            node.0, node.1
                        ));
                    }
                }
            }
            _ = consumer_check.tick() => {
                if tx.is_closed() {
                    return PumpEnd::ConsumerGone;
                }
            }
            _ = probe_tick.tick() => {
                if let Some(probe) = outstanding.first() {
                    state.count_silent();
                    tracing::warn!(
                        url = %state.url, probe = %probe,
                        "redis sharded subscription is silent: its probe did not come back \
                         within {probe_every:?}; rebuilding it"
                    );
                    return PumpEnd::Lost(format!(
                        "silent: the probe did not come back within {probe_every:?}"
                    ));
                }
                for probe in &sharded.probes {
                    let command = redis::cmd("SPUBLISH").arg(probe).arg("probe").to_owned();
                    let sent: Result<Value, _> = crate::publisher::query(state, |mut c| async move {
                        command.query_async(&mut c).await
                    })
                    .await;
                    // A publish that fails (the cluster connection is switching) proves nothing
                    // about this subscription: no probe is outstanding then.
                    if sent.is_ok() {
                        outstanding.insert(probe.clone());
                    }
                }
            }
            _ = keepalive.tick() => {
                for connection in &mut sharded.connections {
                    match timeout(ping_timeout, redis::cmd("PING").query_async::<()>(connection)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return PumpEnd::Lost(format!("PING failed: {e}")),
                        Err(_elapsed) => {
                            return PumpEnd::Lost(format!("no answer to PING within {ping_timeout:?}"));
                        }
                    }
                }
            }
        }
    }
}

/// An `smessage` push (`[channel, payload]`) as a broker message.
fn to_broker_message(push: &PushInfo) -> Option<BrokerMessage> {
    let [channel, payload, ..] = push.data.as_slice() else {
        return None;
    };
    let payload = match payload {
        Value::BulkString(bytes) => Bytes::copy_from_slice(bytes),
        _ => return None,
    };
    Some(BrokerMessage {
        channel: text(channel)?,
        pattern: None,
        payload,
    })
}
