//! An out-of-tree Sidecast broker: [`NatsBroker`], a [`Broker`] over NATS core pub/sub with the
//! async-nats client.
//!
//! This crate is written the way a third party would write a transport: it uses nothing of
//! Sidecast but `sidecast-core`'s public API, and proves itself with the public conformance suite
//! (`sidecast-core` feature `testing`) against a real `nats-server` (see `tests/`).
//!
//! ```no_run
//! use bytes::Bytes;
//! use sidecast_core::{Broker, ChannelSpec};
//! use sidecast_example_nats::{NatsBroker, NatsOptions};
//!
//! # async fn example() -> Result<(), sidecast_core::BrokerError> {
//! let broker = NatsBroker::connect(NatsOptions::new("nats://127.0.0.1:4222")).await?;
//! let mut events = broker.subscribe(&[ChannelSpec::exact("sidecast")]).await?;
//! broker
//!     .publish("sidecast", Bytes::from_static(br#"{"v":1,"event":"message","data":"Hi"}"#))
//!     .await?;
//! while let Some(message) = events.recv().await {
//!     println!("{}: {:?}", message.channel, message.payload);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Plugged into Sidecast like any broker: `Sidecast::builder().config(config).broker(Arc::new(broker))`.

mod error;
mod health;
mod options;
mod subject;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Subscriber};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::SelectAll;
use sidecast_core::{
    Broker, BrokerError, BrokerHealth, BrokerMessage, ChannelSpec, Delivery, Subscription,
    SubscriptionSender,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

pub use options::NatsOptions;

use error::BACKEND;
use health::Link;

/// How long [`Broker::close`] lets subscriptions forward what the server had already sent them
/// (async-nats drains the connection) before it ends them anyway.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How long [`Broker::close`] waits for each subscription task once told to stop. They stop at
/// once; the bound only guards against a stuck task.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A [`Broker`] over NATS core pub/sub (no JetStream).
///
/// Channels are NATS subjects, unchanged: a channel must be a literal subject (no whitespace, no
/// empty `.`-separated token, no `*` or `>` token), otherwise publishing or subscribing to it
/// fails with [`BrokerError::Unsupported`]. Sidecast's own channels (`sidecast`,
/// `sidecast:control`) are literal subjects.
///
/// # Delivery contract
///
/// * **At-most-once.** Core NATS keeps nothing: a message published while a subscriber is
///   disconnected is lost to it, and the server acknowledges nothing. [`Broker::publish`] returns
///   once the message was written and flushed to the live connection's socket; that is all core
///   NATS can confirm, so a message flushed just before the connection breaks can be lost
///   although `publish` returned `Ok`. A message that overflows a slow consumer's queue
///   ([`NatsOptions::subscription_capacity`]) is dropped, logged and counted
///   ([`Subscription::dropped`]).
/// * **Order** is kept per publisher: one `NatsBroker` (and its clones) is one NATS connection,
///   and NATS delivers one connection's messages in order.
/// * **Echo.** A broker's subscriptions receive what it publishes itself (NATS `echo` is on).
/// * **Patterns** ([`ChannelSpec::Pattern`]) are refused with [`BrokerError::Unsupported`]:
///   NATS wildcards match whole `.`-separated tokens (`*` one token, `>` the rest), which is not
///   what Redis-style globs mean (`*` any characters, `?`, `[..]`), and a translation that is
///   right for some patterns and silently wrong for others would be worse than none. Sidecast
///   itself subscribes to exact channels only.
/// * **Size.** A payload larger than the server's `max_payload` (1 MiB by default in
///   nats-server) is refused with [`BrokerError::Rejected`].
///
/// # Connections and outages
///
/// All publishes and subscriptions share one NATS connection. async-nats reconnects by itself
/// (the first attempt at once, then with capped exponential backoff and jitter,
/// [`NatsOptions::backoff_min`] to [`NatsOptions::backoff_max`], forever) and re-subscribes every
/// live subscription: the [`Subscription`] streams callers hold never notice, except for the
/// messages lost meanwhile. [`Broker::health`] reports [`BrokerHealth::Reconnecting`] with the
/// attempt number and the time the connection was lost, then [`BrokerHealth::Connected`] again.
/// The loss and the recovery are logged once each (`warn`, then `info`); async-nats logs its own
/// events as well (target `async_nats`).
///
/// While the connection is down, [`Broker::publish`] and [`Broker::subscribe`] fail at once with
/// a transient [`BrokerError::Unavailable`]. Otherwise they are bounded by
/// [`NatsOptions::publish_timeout`] ([`BrokerError::Timeout`]); a publish that timed out because
/// the connection broke meanwhile may still be sent once the client reconnects, so a caller that
/// retries may deliver twice.
///
/// # Lifetime
///
/// Clones share the connection. [`Broker::close`] (on any clone) drains the connection, so that
/// every subscription stream forwards what the server had already sent it and then ends, and
/// makes later calls fail with [`BrokerError::Closed`]. During an outage async-nats cannot drain:
/// the streams end at once, and the client's own connection task, which cannot be stopped from
/// outside, keeps trying to reconnect until the server is back and then closes. Dropping the last
/// clone without closing ends the streams too. Dropping a [`Subscription`] unsubscribes its
/// subjects at once.
#[derive(Clone)]
pub struct NatsBroker {
    inner: Arc<Inner>,
}

/// Owned by the `NatsBroker` clones only, so that dropping the last clone stops the subscription
/// tasks (which hold neither this nor the client).
struct Inner {
    client: Client,
    link: Arc<Link>,
    options: NatsOptions,
    /// `true` once the subscription tasks must stop at once: after close's grace period, or
    /// when the last handle is dropped.
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: end the subscription tasks (their streams end), which drops
        // their async-nats subscribers; with the client gone too, async-nats closes.
        self.shutdown.send_replace(true);
    }
}

impl std::fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBroker")
            .field("url", &self.inner.link.url)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl NatsBroker {
    /// Connects to the server (one attempt, bounded by [`NatsOptions::connect_timeout`]); from
    /// then on async-nats keeps the connection up by itself.
    ///
    /// # Errors
    ///
    /// * [`BrokerError::Config`]: the URL or an option is invalid.
    /// * [`BrokerError::Unavailable`] / [`BrokerError::Timeout`] (transient): the server cannot
    ///   be reached or did not complete the handshake in time.
    /// * [`BrokerError::Rejected`]: the server refused the credentials.
    pub async fn connect(options: NatsOptions) -> Result<Self, BrokerError> {
        validate(&options)?;
        let url = sidecast_core::broker::redact_url(&options.url);
        let link = Arc::new(Link::new(
            url.clone(),
            options.backoff_min,
            options.backoff_max,
        ));
        let on_event = Arc::clone(&link);
        let on_backoff = Arc::clone(&link);
        let connecting = ConnectOptions::new()
            .name(&options.name)
            .connection_timeout(options.connect_timeout)
            .ping_interval(options.ping_interval)
            // Reconnect forever: an outage ends when the server is back, not after N attempts.
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempt| on_backoff.backoff(attempt))
            .event_callback(move |event| {
                let link = Arc::clone(&on_event);
                async move { link.on_event(event) }
            })
            .connect(options.url.as_str());
        // connection_timeout bounds each attempt; this bounds the whole call (DNS included).
        let client = match timeout(options.connect_timeout * 2, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(error::connect(e, &url, options.connect_timeout)),
            Err(_) => return Err(error::timeout(options.connect_timeout * 2)),
        };
        link.connected();
        tracing::debug!(%url, "connected to nats");
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                link,
                options,
                shutdown: watch::Sender::new(false),
                tasks: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The server URL, password redacted.
    pub fn url(&self) -> &str {
        &self.inner.link.url
    }

    /// The underlying async-nats client, for what this broker does not cover (request/reply,
    /// JetStream, statistics). Publishing through it bypasses [`Broker::close`].
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Fails fast, without touching the network, unless the connection is up.
    fn ensure_connected(&self) -> Result<(), BrokerError> {
        if self.inner.link.is_closed() {
            return Err(BrokerError::Closed);
        }
        match self.inner.client.connection_state() {
            State::Connected => Ok(()),
            State::Pending | State::Disconnected => Err(error::reconnecting(
                &self.inner.link.url,
                self.inner.link.attempt(),
            )),
        }
    }

    /// An error of async-nats' command channel: it is closed once the connection was drained.
    fn send_failed(&self, source: impl std::error::Error + Send + Sync + 'static) -> BrokerError {
        if self.inner.link.is_closed() {
            BrokerError::Closed
        } else {
            error::unavailable(&self.inner.link.url, source)
        }
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        // A poisoned lock only means a panic elsewhere while holding it; the list stays valid.
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Options that would make the transport misbehave rather than fail: zero time-outs fail every
/// call, a zero backoff reconnects in a busy loop, a zero ping interval panics tokio's interval.
fn validate(options: &NatsOptions) -> Result<(), BrokerError> {
    let zero = |name: &str| {
        Err(BrokerError::Config {
            backend: BACKEND,
            reason: format!("{name} must be greater than zero"),
        })
    };
    if options.connect_timeout.is_zero() {
        return zero("connect_timeout");
    }
    if options.publish_timeout.is_zero() {
        return zero("publish_timeout");
    }
    if options.backoff_min.is_zero() {
        return zero("backoff_min");
    }
    if options.ping_interval.is_zero() {
        return zero("ping_interval");
    }
    if options.subscription_capacity == 0 {
        return zero("subscription_capacity");
    }
    if options.backoff_max < options.backoff_min {
        return Err(BrokerError::Config {
            backend: BACKEND,
            reason: "backoff_max must not be smaller than backoff_min".to_owned(),
        });
    }
    Ok(())
}

#[async_trait]
impl Broker for NatsBroker {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        if self.inner.link.is_closed() {
            return Err(BrokerError::Closed);
        }
        subject::check(channel)?;
        self.ensure_connected()?;
        let client = &self.inner.client;
        let max = client.max_payload();
        if payload.len() > max {
            return Err(BrokerError::rejected(
                BACKEND,
                format!(
                    "a payload of {} bytes exceeds the server's max_payload of {max} bytes",
                    payload.len()
                ),
            ));
        }
        let after = self.inner.options.publish_timeout;
        let sent = timeout(after, async {
            // Hands the message to async-nats' connection task...
            client
                .publish(channel.to_owned(), payload)
                .await
                .map_err(|e| match e.kind() {
                    async_nats::client::PublishErrorKind::Send => self.send_failed(e),
                    _ => BrokerError::rejected(BACKEND, e),
                })?;
            // ...and waits until it was written to the socket: the "accepted" point of core
            // NATS, which acknowledges nothing.
            client.flush().await.map_err(|e| self.send_failed(e))
        })
        .await;
        match sent {
            Ok(result) => result,
            Err(_elapsed) => Err(error::timeout(after)),
        }
    }

    async fn subscribe(&self, channels: &[ChannelSpec]) -> Result<Subscription, BrokerError> {
        if self.inner.link.is_closed() {
            return Err(BrokerError::Closed);
        }
        if channels.is_empty() {
            return Err(BrokerError::Unsupported {
                backend: BACKEND,
                what: "a subscription to no channel (name at least one channel)".to_owned(),
            });
        }
        let mut subjects: Vec<&str> = Vec::with_capacity(channels.len());
        for spec in channels {
            match spec {
                ChannelSpec::Exact(name) => {
                    subject::check(name)?;
                    // One NATS subscription per subject: naming a channel twice must not
                    // deliver its messages twice.
                    if !subjects.contains(&name.as_str()) {
                        subjects.push(name);
                    }
                }
                ChannelSpec::Pattern(glob) => {
                    return Err(BrokerError::Unsupported {
                        backend: BACKEND,
                        what: format!(
                            "pattern subscriptions ({glob:?}): NATS wildcards match whole \
                             `.`-separated tokens, not Redis-style globs; subscribe to exact \
                             channels"
                        ),
                    });
                }
            }
        }
        self.ensure_connected()?;

        let client = &self.inner.client;
        let after = self.inner.options.publish_timeout;
        let subscribed = timeout(after, async {
            let mut subscribers = SelectAll::new();
            for subject in &subjects {
                let subscriber = client
                    .subscribe((*subject).to_owned())
                    .await
                    .map_err(|e| self.send_failed(e))?;
                subscribers.push(subscriber);
            }
            // The SUBs are on the wire: the server routes to them whatever it reads from this
            // connection afterwards (other connections' messages, a moment later).
            client.flush().await.map_err(|e| self.send_failed(e))?;
            Ok(subscribers)
        })
        .await;
        // On failure the subscribers made so far are dropped, which unsubscribes them.
        let subscribers = match subscribed {
            Ok(result) => result?,
            Err(_elapsed) => return Err(error::timeout(after)),
        };

        let (tx, subscription) = Subscription::bounded(self.inner.options.subscription_capacity);
        let task = tokio::spawn(forward(subscribers, tx, self.inner.shutdown.subscribe()));
        let mut tasks = self.tasks();
        // Forget the tasks of dropped subscriptions, so that the list does not grow forever.
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
        Ok(subscription)
    }

    fn health(&self) -> BrokerHealth {
        self.inner
            .link
            .health(&self.inner.client.connection_state())
    }

    async fn close(&self) {
        let inner = &self.inner;
        let first = inner.link.close();
        let connected = inner.client.connection_state() == State::Connected;
        if first {
            // Unsubscribes everything, flushes what was published, then closes the connection;
            // each async-nats subscriber ends after the messages it already received. It only
            // queues a command, but bound it in case the command queue is full (an outage).
            let _ = timeout(DRAIN_GRACE, inner.client.drain()).await;
        }
        let mut tasks = std::mem::take(&mut *self.tasks());
        if connected {
            let deadline = tokio::time::Instant::now() + DRAIN_GRACE;
            for task in &mut tasks {
                let _ = tokio::time::timeout_at(deadline, task).await;
            }
        }
        // Whatever did not end with the drain (an outage: async-nats cannot drain until the
        // server is back) ends now.
        inner.shutdown.send_replace(true);
        for task in tasks {
            if !task.is_finished() && timeout(CLOSE_WAIT, task).await.is_err() {
                tracing::warn!(url = %inner.link.url, "a nats subscription task did not stop within {CLOSE_WAIT:?}");
            }
        }
        if first {
            tracing::debug!(url = %inner.link.url, "nats broker closed");
        }
    }
}

/// A subscription's task: forwards the messages of its async-nats subscribers to the consumer,
/// without ever waiting for it ([`SubscriptionSender::deliver`]), until the consumer drops the
/// [`Subscription`], the connection is drained, or the broker stops it.
async fn forward(
    mut subscribers: SelectAll<Subscriber>,
    tx: SubscriptionSender,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            // Also completes (with an error) if the broker was dropped.
            _ = shutdown.wait_for(|stop| *stop) => break,
            () = tx.closed() => break,
            message = subscribers.next() => {
                let Some(message) = message else {
                    // Every subscriber ended: the connection was drained.
                    break;
                };
                let message = BrokerMessage {
                    channel: message.subject.to_string(),
                    pattern: None,
                    payload: message.payload,
                };
                if tx.deliver(message) == Delivery::Closed {
                    break;
                }
            }
        }
    }
    // Dropping the subscribers unsubscribes them; dropping `tx` ends the consumer's stream.
}
