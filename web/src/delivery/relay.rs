//! The node's one delivery path: broker subscription → verify → decode → emit to sockets.
//!
//! Sidecast's own channel and its control channel carry signed messages when signing is on;
//! ingress channels (`[[broker.ingress]]`) carry other emitters' formats, which cannot be signed,
//! and are decoded by their codec.

use std::sync::Arc;

use sidecast_core::codec::{control, native};
use sidecast_core::config::{IngressConfig, IngressFormat, SlowClientPolicy};
use sidecast_core::envelope::now_millis;
use sidecast_core::ingress::{Decoded, IngressError, node_emitter, python_socketio};
use sidecast_core::{
    BrokerMessage, ChannelSpec, Envelope, HistorySubscription, SharedBroker, SignatureError,
    Signer, Subscription,
};
use socketioxide::SocketIo;
use tokio::task::JoinHandle;

use crate::delivery::emit;
use crate::delivery::memberships::{MembershipStore, SharedMemberships};
use crate::metrics::{Metrics, Source};

/// What the relay needs to know about the bus.
pub(crate) struct Bus {
    pub(crate) channel: String,
    pub(crate) control_channel: String,
    pub(crate) signer: Option<Arc<Signer>>,
    pub(crate) slow_client: SlowClientPolicy,
    /// Channels in other emitters' formats (`broker.ingress`).
    pub(crate) ingress: Vec<Ingress>,
    /// The history's side of delivery, when recovery is on.
    pub(crate) recovery: Option<Arc<crate::delivery::recovery::Recovery>>,
    /// Cluster-wide presence, told which sockets a room operation changed.
    pub(crate) presence: Option<Arc<crate::presence::tracker::Presence>>,
}

/// One ingress channel: what to subscribe to and how to decode what arrives.
pub(crate) struct Ingress {
    format: IngressFormat,
    spec: ChannelSpec,
    /// The Node emitter's request channels (`<key>-request#*`: room operations), not its events.
    requests: bool,
}

impl Ingress {
    /// The ingress channels of `broker.ingress`; a `node-emitter` ingress also has its request
    /// channels.
    pub(crate) fn from_config(ingress: &[IngressConfig]) -> Vec<Ingress> {
        let mut channels = Vec::new();
        for i in ingress {
            channels.push(Ingress {
                format: i.format,
                spec: i.channel_spec(),
                requests: false,
            });
            if i.format == IngressFormat::NodeEmitter {
                channels.push(Ingress {
                    format: i.format,
                    spec: ChannelSpec::pattern(node_emitter::request_pattern(i.channel())),
                    requests: true,
                });
            }
        }
        channels
    }
}

impl Bus {
    /// The ingress channel `channel` belongs to, if any.
    fn ingress(&self, channel: &str) -> Option<&Ingress> {
        self.ingress.iter().find(|i| i.spec.matches(channel))
    }
}

/// Subscribes to Sidecast's event and control channels and to the ingress channels. Done before
/// the node is started (crate::node::start) and accepts publishes, so that an event published right
/// after start-up is not lost.
pub(crate) async fn subscribe(
    broker: &SharedBroker,
    bus: &Bus,
) -> Result<Subscription, sidecast_core::BrokerError> {
    let mut channels = vec![
        ChannelSpec::exact(bus.channel.clone()),
        ChannelSpec::exact(bus.control_channel.clone()),
    ];
    channels.extend(bus.ingress.iter().map(|i| i.spec.clone()));
    let subscription = broker.subscribe(&channels).await?;
    for ingress in &bus.ingress {
        tracing::info!(format = %ingress.format, channel = %ingress.spec, "ingress subscribed");
    }
    if bus.signer.is_some() && !bus.ingress.is_empty() {
        // Configuration refuses this combination unless broker.ingress_unsigned_ok is set.
        tracing::warn!(
            "broker.signing_key is set, but ingress channels cannot be signed: their messages are \
             emitted unverified (broker.ingress_unsigned_ok = true)"
        );
    }
    Ok(subscription)
}

/// The kinds of dropped bus messages already logged: a publisher that keeps sending bad
/// messages fills the counters, not the log.
#[derive(Debug, Default)]
struct Warned(std::collections::HashSet<(&'static str, &'static str)>);

impl Warned {
    /// Whether this is the first drop of `kind` from `source` (a format, "native", "control").
    fn first(&mut self, source: &'static str, kind: &'static str) -> bool {
        self.0.insert((source, kind))
    }
}

/// Runs until the broker closes the subscription (and the history subscription, with recovery
/// on: its entries are delivered by [`crate::delivery::recovery::Recovery::spawn_relay`]).
pub(crate) fn spawn(
    mut subscription: Subscription,
    history: Option<HistorySubscription>,
    bus: Bus,
    io: SocketIo,
    metrics: Arc<Metrics>,
    memberships: SharedMemberships,
) -> JoinHandle<()> {
    let history_relay = match (&bus.recovery, history) {
        (Some(recovery), Some(history)) => Some(recovery.clone().spawn_relay(
            history,
            io.clone(),
            bus.slow_client,
            memberships.clone(),
            bus.presence.clone(),
        )),
        _ => None,
    };
    tokio::spawn(async move {
        let mut relay = Relay {
            bus: &bus,
            io: &io,
            metrics: &metrics,
            memberships: &*memberships,
            lagging: std::collections::HashSet::new(),
            warned: Warned::default(),
        };
        while let Some(message) = subscription.recv().await {
            relay.handle(message).await;
            metrics.subscription_overflow(subscription.dropped());
        }
        tracing::debug!("broker subscription ended; relay stopped");
        if let Some(history_relay) = history_relay {
            let _ = history_relay.await;
        }
    })
}

/// The relay's state while it reads the subscription.
struct Relay<'a> {
    bus: &'a Bus,
    io: &'a SocketIo,
    metrics: &'a Metrics,
    memberships: &'a dyn MembershipStore,
    /// Sockets that overflowed under the `disconnect` policy and are not gone yet.
    lagging: std::collections::HashSet<socketioxide::socket::Sid>,
    /// Kinds of dropped messages already warned about: each is logged once, then counted.
    warned: Warned,
}

impl Relay<'_> {
    /// One message of the subscription: an ingress format, a room operation or an event.
    async fn handle(&mut self, message: BrokerMessage) {
        let bus = self.bus;
        let metrics = self.metrics;
        if message.channel != bus.channel
            && let Some(ingress) = bus.ingress(&message.channel)
        {
            return self.handle_ingress(ingress, &message).await;
        }
        let verified;
        let payload: &[u8] = match &bus.signer {
            None => &message.payload,
            Some(signer) => match signer.open(&message.payload, now_millis()) {
                Ok(inner) => {
                    verified = inner;
                    &verified
                }
                Err(e) => {
                    let reason = match e {
                        SignatureError::Unsigned => "unsigned",
                        _ => "bad_signature",
                    };
                    metrics.dropped(reason);
                    if self.warned.first("signed bus", reason) {
                        tracing::warn!(channel = %message.channel, reason, error = %e, "bus message dropped; further drops of this kind are counted in sidecast_events_dropped_total and logged at debug level");
                    } else {
                        tracing::debug!(channel = %message.channel, reason, error = %e, "bus message dropped");
                    }
                    return;
                }
            },
        };
        if message.channel == bus.control_channel {
            metrics
                .bus_received
                .get_or_create(&Source { source: "control" })
                .inc();
            self.apply_control(payload).await;
            return;
        }
        metrics
            .bus_received
            .get_or_create(&Source { source: "native" })
            .inc();
        let envelope = match native::decode(payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                metrics.dropped("undecodable");
                if self.warned.first("native", "undecodable") {
                    tracing::warn!(channel = %message.channel, error = %e, "undecodable message dropped; further ones are counted in sidecast_events_dropped_total and logged at debug level");
                } else {
                    tracing::debug!(channel = %message.channel, error = %e, "undecodable message dropped");
                }
                return;
            }
        };
        self.deliver(&envelope).await;
    }

    /// A message on an ingress channel: never signed, decoded by its format's codec.
    async fn handle_ingress(&mut self, ingress: &Ingress, message: &BrokerMessage) {
        let metrics = self.metrics;
        let format = ingress.format;
        metrics
            .bus_received
            .get_or_create(&Source {
                source: format.as_str(),
            })
            .inc();
        let decoded = match format {
            IngressFormat::PythonSocketio => {
                python_socketio::decode(&message.channel, &message.payload)
            }
            IngressFormat::NodeEmitter if ingress.requests => {
                node_emitter::decode_request(&message.channel, &message.payload)
            }
            IngressFormat::NodeEmitter => {
                node_emitter::decode(&message.channel, &message.payload).map(Decoded::Event)
            }
        };
        match decoded {
            Ok(Decoded::Event(envelope)) => self.deliver(&envelope).await,
            Ok(Decoded::Control(operation)) => {
                self.apply_operation(&operation).await;
            }
            Ok(Decoded::NotAnEvent { kind }) => {
                metrics.dropped("not_an_event");
                tracing::debug!(%format, channel = %message.channel, kind, "ingress message is not an event; ignored");
            }
            Ok(other) => {
                metrics.dropped("not_an_event");
                tracing::debug!(%format, channel = %message.channel, ?other, "ingress message not understood; ignored");
            }
            Err(e) => {
                metrics.dropped(e.reason());
                let kind = match &e {
                    IngressError::UnsupportedRequest { kind, .. } => kind,
                    other => other.reason(),
                };
                if self.warned.first(format.as_str(), kind) {
                    tracing::warn!(%format, channel = %message.channel, reason = e.reason(), error = %e, "ingress message dropped; further ones of this kind are counted in sidecast_events_dropped_total and logged at debug level");
                } else {
                    tracing::debug!(%format, channel = %message.channel, reason = e.reason(), error = %e, "ingress message dropped");
                }
            }
        }
    }

    /// Emits a decoded event that did not come from the history to this node's sockets.
    async fn deliver(&mut self, envelope: &Envelope) {
        let (bus, io) = (self.bus, self.io);
        let Some(recovery) = &bus.recovery else {
            let lagging = &mut self.lagging;
            emit::deliver_emit(io, self.metrics, bus.slow_client, lagging, envelope, None).await;
            return;
        };
        // With recovery on, an event that is not in the history (an ingress format, a plain
        // publish) carries the position of the last history entry before it: a client that
        // reconnects from there misses no history entry and gets none twice.
        let position = recovery.position().await;
        // Sockets that are recovering skip live events; this one is not in the history their
        // replay reads, so it is held for them until they go live.
        recovery.hold_for_recovering(io, envelope);
        let delivery = Some(recovery.delivery(&position));
        let lagging = &mut self.lagging;
        emit::deliver_emit(
            io,
            self.metrics,
            bus.slow_client,
            lagging,
            envelope,
            delivery,
        )
        .await;
    }

    /// Applies a room operation of the control channel to this node's sockets.
    async fn apply_control(&mut self, payload: &[u8]) {
        let metrics = self.metrics;
        let operation = match control::decode(payload) {
            Ok(operation) => operation,
            Err(e) => {
                metrics.dropped("undecodable");
                if self.warned.first("control", "undecodable") {
                    tracing::warn!(error = %e, "undecodable control message dropped; further ones are counted in sidecast_events_dropped_total and logged at debug level");
                } else {
                    tracing::debug!(error = %e, "undecodable control message dropped");
                }
                return;
            }
        };
        self.apply_operation(&operation).await;
    }

    /// Applies a decoded room operation (native or ingress) to this node's sockets.
    async fn apply_operation(&self, operation: &control::Control) {
        emit::apply_operation(
            self.io,
            self.metrics,
            self.memberships,
            self.bus.presence.as_deref(),
            operation,
        )
        .await;
    }
}
