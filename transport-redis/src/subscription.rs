//! The task behind each [`Subscription`](sidecast_core::Subscription): it reads the
//! subscription's pub/sub connection into the subscription's queue and replaces the connection
//! whenever it breaks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use redis::Msg;
use redis::aio::{PubSubSink, PubSubStream};
use sidecast_core::supervision::{PartId, PumpEnd, Shutdown};
use sidecast_core::{BrokerMessage, ChannelSpec, Delivery, SubscriptionSender};
use tokio::time::{Instant, MissedTickBehavior, interval, interval_at, timeout};

use crate::connection::RedisState;
use crate::publisher;

/// The prefix of the subscriptions' probe channels. Messages on channels with it are never
/// delivered to consumers (a pattern subscription may match other subscriptions' probes).
pub(crate) const PROBE_PREFIX: &str = "sidecast:probe:";

/// A probe channel no other subscription uses: the prefix, the process, its start and a count.
pub(crate) fn probe_channel() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{PROBE_PREFIX}{}.{started}.{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

/// How often a subscription task checks, while its channels are quiet, whether its consumer
/// dropped the [`Subscription`](sidecast_core::Subscription) (then it closes its Redis
/// connection). Busy subscriptions notice at the next message.
const CONSUMER_CHECK: Duration = Duration::from_millis(250);

/// The task behind one subscription: reads its pub/sub connection into the subscription's
/// queue and replaces the connection whenever it breaks.
pub(crate) async fn run(
    state: Arc<RedisState>,
    id: PartId,
    specs: Arc<[ChannelSpec]>,
    probe: Arc<str>,
    tx: SubscriptionSender,
    mut connection: (u64, (PubSubSink, PubSubStream)),
    mut shutdown: Shutdown,
) {
    // However the task ends, its connection stops counting: a subscription dropped during an
    // outage must not keep the broker "reconnecting".
    let _part = state.parts.board().part(id);
    loop {
        let (epoch, pubsub) = &mut connection;
        let failure = match pump(&state, &tx, *epoch, &probe, pubsub, &mut shutdown).await {
            PumpEnd::Shutdown | PumpEnd::ConsumerGone => return,
            PumpEnd::Lost(failure) => failure,
        };
        if state.parts.board().is_closed() {
            return;
        }
        state.parts.lost(id, &failure);
        // The server probably went away for the publish connection too: have it checked now
        // rather than at the next publish, so that publishes fail fast and health is complete.
        state.check_publisher.notify_one();
        state.suspect_master();
        let reconnected = state
            .reconnect(
                id,
                state.options.backoff_max,
                &mut shutdown,
                || tx.is_closed(),
                || state.open_pubsub(&specs),
            )
            .await;
        match reconnected {
            Some(fresh) => {
                connection = fresh;
                state.parts.restored(id);
            }
            None => return,
        }
    }
}

/// Forwards messages from one pub/sub connection until it breaks, goes silent, the consumer
/// leaves or the broker shuts down. Never waits for the consumer: [`SubscriptionSender::deliver`]
/// drops and counts what does not fit.
///
/// Liveness: every `probe_interval` it publishes on its probe channel (through the publish
/// connection) and expects the probe back before the next interval. A connection can answer
/// `PING` and still deliver nothing (subscriptions lost behind a proxy that reconnected its
/// upstream, for example); such a silent connection is given up, logged and counted.
async fn pump(
    state: &RedisState,
    tx: &SubscriptionSender,
    epoch: u64,
    probe: &str,
    (sink, stream): &mut (PubSubSink, PubSubStream),
    shutdown: &mut Shutdown,
) -> PumpEnd {
    let keepalive_every = state.options.keepalive_interval;
    let mut keepalive = interval_at(Instant::now() + keepalive_every, keepalive_every);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut consumer_check = interval(CONSUMER_CHECK);
    consumer_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let ping_timeout = state.options.publish_timeout;
    let probe_every = state.options.probe_interval;
    let mut probe_tick = interval_at(Instant::now() + probe_every, probe_every);
    probe_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Whether a probe was sent and has not come back yet.
    let mut outstanding = false;
    loop {
        // Biased: shutdown first, then messages. Under steady traffic the timers may starve,
        // which is fine: traffic proves the connection alive, and a gone consumer shows up as
        // Delivery::Closed.
        tokio::select! {
            biased;
            () = shutdown.signalled() => return PumpEnd::Shutdown,
            // A demoted master keeps the connection open: leave it for the new one.
            () = state.master_moved(epoch) => {
                return PumpEnd::Lost(format!(
                    "the master moved to {}",
                    state.master_addr().unwrap_or_default()
                ));
            }
            message = stream.next() => match message {
                Some(message) => {
                    let message = to_broker_message(&message);
                    if message.channel.starts_with(PROBE_PREFIX) {
                        if message.channel == probe {
                            outstanding = false;
                        }
                        continue;
                    }
                    if tx.deliver(message) == Delivery::Closed {
                        return PumpEnd::ConsumerGone;
                    }
                }
                None => return PumpEnd::Lost("the server closed the connection".to_owned()),
            },
            _ = consumer_check.tick() => {
                if tx.is_closed() {
                    return PumpEnd::ConsumerGone;
                }
            }
            _ = keepalive.tick() => {
                match timeout(ping_timeout, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return PumpEnd::Lost(format!("PING failed: {e}")),
                    Err(_elapsed) => {
                        return PumpEnd::Lost(format!("no answer to PING within {ping_timeout:?}"));
                    }
                }
            }
            _ = probe_tick.tick() => {
                if outstanding {
                    state.count_silent();
                    tracing::warn!(
                        url = %state.url, probe,
                        "redis subscription is silent: its probe did not come back within \
                         {probe_every:?}; rebuilding it"
                    );
                    return PumpEnd::Lost(format!(
                        "silent: the probe did not come back within {probe_every:?}"
                    ));
                }
                // A publish that fails (the publish connection is down) proves nothing about
                // this connection: no probe is outstanding then.
                outstanding = publisher::publish(state, probe, b"probe").await.is_ok();
            }
        }
    }
}

fn to_broker_message(message: &Msg) -> BrokerMessage {
    let channel = match message.get_channel::<Vec<u8>>() {
        Ok(bytes) => String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        Err(_) => message.get_channel_name().to_owned(),
    };
    BrokerMessage {
        channel,
        pattern: message.get_pattern::<Option<String>>().ok().flatten(),
        payload: Bytes::copy_from_slice(message.get_payload_bytes()),
    }
}
