//! An out-of-tree Sidecast broker: [`NatsBroker`], a [`Broker`] over NATS core pub/sub with the
//! async-nats client.
//!
//! This crate is written the way a third party would write a transport: it uses nothing of
//! Sidecast but `sidecast-core`'s public API, and proves itself with the public conformance suite
//! (`sidecast-testkit`) against a real `nats-server` (see `tests/`).
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

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Subscriber};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::SelectAll;
use sidecast_core::supervision::{Shutdown, Tasks};
use sidecast_core::{
    Broker, BrokerError, BrokerHealth, BrokerMessage, ChannelSpec, Delivery, Subscription,
    SubscriptionSender,
};
use tokio::time::timeout;

pub use options::NatsOptions;

use error::BACKEND;
use health::ConnectionHealth;

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
    client: Client,
    health: Arc<ConnectionHealth>,
    options: Arc<NatsOptions>,
    /// The subscription tasks, which hold neither this nor the client. Owned by the `NatsBroker`
    /// clones only: dropping the last clone stops them (their streams end), which drops their
    /// async-nats subscribers; with the client gone too, async-nats closes. They are stopped at
    /// once after close's grace period too.
    tasks: Arc<Tasks>,
}

impl std::fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBroker")
            .field("url", &self.health.url)
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
        options.validate()?;
        let url = options.url.redacted();
        let health = Arc::new(ConnectionHealth::new(
            options.url.clone(),
            options.backoff_min,
            options.backoff_max,
        ));
        let on_event = Arc::clone(&health);
        let on_backoff = Arc::clone(&health);
        let connecting = ConnectOptions::new()
            .name(&options.name)
            .connection_timeout(options.connect_timeout)
            .ping_interval(options.ping_interval)
            // Reconnect forever: an outage ends when the server is back, not after N attempts.
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempt| on_backoff.backoff(attempt))
            .event_callback(move |event| {
                let health = Arc::clone(&on_event);
                async move { health.on_event(event) }
            })
            .connect(options.url.as_str());
        // connection_timeout bounds each attempt; this bounds the whole call (DNS included).
        let client = match timeout(options.connect_timeout * 2, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(error::connect(e, &url, options.connect_timeout)),
            Err(_) => return Err(error::timeout(options.connect_timeout * 2)),
        };
        health.connected();
        tracing::debug!(%url, "connected to nats");
        Ok(Self {
            client,
            health,
            options: Arc::new(options),
            tasks: Arc::new(Tasks::new()),
        })
    }

    /// The server URL, password redacted.
    pub fn url(&self) -> &str {
        &self.health.url
    }

    /// The underlying async-nats client, for what this broker does not cover (request/reply,
    /// JetStream, statistics). Publishing through it bypasses [`Broker::close`].
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Fails fast, without touching the network, unless the connection is up.
    fn ensure_connected(&self) -> Result<(), BrokerError> {
        if self.health.is_closed() {
            return Err(BrokerError::Closed);
        }
        match self.client.connection_state() {
            State::Connected => Ok(()),
            State::Pending | State::Disconnected => {
                Err(error::reconnecting(&self.health.url, self.health.attempt()))
            }
        }
    }

    /// An error of async-nats' command channel: it is closed once the connection was drained.
    fn send_failed(&self, source: impl std::error::Error + Send + Sync + 'static) -> BrokerError {
        if self.health.is_closed() {
            BrokerError::Closed
        } else {
            error::unavailable(&self.health.url, source)
        }
    }
}

#[async_trait]
impl Broker for NatsBroker {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        if self.health.is_closed() {
            return Err(BrokerError::Closed);
        }
        subject::check(channel)?;
        self.ensure_connected()?;
        let client = &self.client;
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
        let after = self.options.publish_timeout;
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
        if self.health.is_closed() {
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

        let client = &self.client;
        let after = self.options.publish_timeout;
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

        let (tx, subscription) = Subscription::bounded(self.options.subscription_capacity);
        self.tasks
            .spawn(forward(subscribers, tx, self.tasks.shutdown()));
        Ok(subscription)
    }

    fn health(&self) -> BrokerHealth {
        self.health.health(&self.client.connection_state())
    }

    async fn close(&self) {
        let first = self.health.close();
        let connected = self.client.connection_state() == State::Connected;
        if first {
            // Unsubscribes everything, flushes what was published, then closes the connection;
            // each async-nats subscriber ends after the messages it already received. It only
            // queues a command, but bound it in case the command queue is full (an outage).
            let _ = timeout(DRAIN_GRACE, self.client.drain()).await;
        }
        if connected {
            self.tasks.join(DRAIN_GRACE).await;
        }
        // Whatever did not end with the drain (an outage: async-nats cannot drain until the
        // server is back) ends now.
        self.tasks.stop();
        let late = self.tasks.join(CLOSE_WAIT).await;
        if late > 0 {
            tracing::warn!(url = %self.health.url, late, "nats subscription tasks did not stop within {CLOSE_WAIT:?}");
        }
        if first {
            tracing::debug!(url = %self.health.url, "nats broker closed");
        }
    }
}

/// A subscription's task: forwards the messages of its async-nats subscribers to the consumer,
/// without ever waiting for it ([`SubscriptionSender::deliver`]), until the consumer drops the
/// [`Subscription`], the connection is drained, or the broker stops it.
async fn forward(
    mut subscribers: SelectAll<Subscriber>,
    tx: SubscriptionSender,
    mut shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            biased;
            // Also completes if the broker was dropped.
            () = shutdown.signalled() => break,
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
