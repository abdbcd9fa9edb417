//! [`Emitter`]: publish Socket.IO events from any Rust program through the broker.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::broker::{BrokerError, Offset, SharedBroker};
use crate::codec::control::{self, Control, InvalidControl};
use crate::codec::native;
use crate::envelope::{Envelope, InvalidEnvelope, now_millis};
use crate::ingress::{EncodeError, python_socketio};
use crate::signing::Signer;

/// Publishes events that every Sidecast node subscribed to the same broker channel emits to its
/// Socket.IO clients.
///
/// Cheap to clone. [`Emitter::to`], [`Emitter::except`] and [`Emitter::of`] return narrowed copies,
/// as in socket.io's emitters:
///
/// ```
/// # async fn demo() -> Result<(), sidecast_core::EmitError> {
/// use std::sync::Arc;
/// use sidecast_core::{Emitter, MemoryBroker};
///
/// let emitter = Emitter::new(Arc::new(MemoryBroker::default()), "sidecast");
/// emitter.emit("message", "Hi").await?;
/// emitter.to("user:Gonzalo").emit("message", serde_json::json!({"unread": 3})).await?;
/// # Ok(()) }
/// ```
///
/// [`Emitter::python_socketio`] publishes in python-socketio's format instead, for Flask-SocketIO
/// servers that still run during a migration.
///
/// When the broker offers a history ([`crate::Broker::history`]), events in Sidecast's own format
/// are appended to it (they get an offset, nodes catch up on them after an outage and clients
/// recover them) instead of being published over pub/sub: `Ok` then means the history holds the
/// event. Nodes run with `recovery.enabled = false` read pub/sub only: an emitter for them is
/// made with [`Emitter::with_history`]`(false)`. Room operations go the same way as events: into
/// the history when events do (as control entries, see [`control::is_control`]), so that every
/// node applies them in order with the events around them; over pub/sub otherwise.
#[derive(Debug, Clone)]
pub struct Emitter {
    broker: SharedBroker,
    channel: String,
    format: Format,
    namespace: String,
    rooms: Vec<String>,
    except: Vec<String>,
    origin: Option<String>,
    signer: Option<Arc<Signer>>,
    /// Append events to the broker's history, when it has one.
    history: bool,
}

/// The format an [`Emitter`] writes.
#[derive(Debug, Clone)]
enum Format {
    /// Sidecast's own ([`native`]).
    Native,
    /// python-socketio's message-queue format, with this emitter's `host_id`.
    PythonSocketio { host_id: String },
}

/// Why an event could not be emitted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The event is not valid (empty or reserved name, bad namespace).
    #[error(transparent)]
    Invalid(#[from] InvalidEnvelope),
    /// The data could not be turned into JSON.
    #[error("event data is not JSON-serializable: {0}")]
    Data(#[from] serde_json::Error),
    /// The broker did not accept the message.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The event cannot be written in the emitter's format (python-socketio has no `except`).
    #[error(transparent)]
    Format(#[from] EncodeError),
    /// The room operation is not valid (bad room names, too many rooms, nothing to join).
    #[error(transparent)]
    Control(#[from] InvalidControl),
    /// Room operations are published in Sidecast's own format only.
    #[error("room operations are published in Sidecast's own format; use Emitter::new for them")]
    ControlUnsupported,
}

impl Emitter {
    /// An emitter publishing Sidecast's own format on `channel` (`broker.channel`).
    pub fn new(broker: SharedBroker, channel: impl Into<String>) -> Self {
        Self {
            broker,
            channel: channel.into(),
            format: Format::Native,
            namespace: "/".to_owned(),
            rooms: Vec::new(),
            except: Vec::new(),
            origin: None,
            signer: None,
            history: true,
        }
    }

    /// An emitter publishing python-socketio's message-queue format (as python-socketio 5.15.1 and
    /// later write it) on `channel` — `flask-socketio` for Flask-SocketIO — so that Flask-SocketIO
    /// / python-socketio servers, and Sidecast nodes with a `python-socketio` ingress on that
    /// channel, emit the events to their clients. On AMQP the channel is the fanout exchange
    /// kombu declares.
    ///
    /// The format has no `except` (sending fails with [`EmitError::Format`]) and cannot be signed:
    /// [`Emitter::signed`] has no effect on it.
    ///
    /// ```
    /// # async fn demo() -> Result<(), sidecast_core::EmitError> {
    /// use std::sync::Arc;
    /// use sidecast_core::{Emitter, MemoryBroker};
    ///
    /// let flask = Emitter::python_socketio(Arc::new(MemoryBroker::default()), "flask-socketio");
    /// flask.to("user:Gonzalo").emit("message", "Hi").await?;
    /// # Ok(()) }
    /// ```
    pub fn python_socketio(broker: SharedBroker, channel: impl Into<String>) -> Self {
        let mut e = Self::new(broker, channel);
        // python-socketio's host ids are UUIDs in hex; servers skip messages with their own.
        e.format = Format::PythonSocketio {
            host_id: uuid::Uuid::new_v4().simple().to_string(),
        };
        e
    }

    /// A copy that signs every message (`broker.signing_key`), as nodes that verify require.
    pub fn signed(&self, signer: Arc<Signer>) -> Self {
        let mut e = self.clone();
        e.signer = Some(signer);
        e
    }

    /// A copy that appends its events to the broker's history (`true`, the default, which has an
    /// effect only when the broker offers one) or publishes them over pub/sub (`false`, for nodes
    /// run with `recovery.enabled = false`).
    pub fn with_history(&self, history: bool) -> Self {
        let mut e = self.clone();
        e.history = history;
        e
    }

    /// A copy that also targets `room` (sockets in any of the rooms receive the event).
    pub fn to(&self, room: impl Into<String>) -> Self {
        let mut e = self.clone();
        e.rooms.push(room.into());
        e
    }

    /// A copy that leaves out the sockets in `room`.
    pub fn except(&self, room: impl Into<String>) -> Self {
        let mut e = self.clone();
        e.except.push(room.into());
        e
    }

    /// A copy that targets the namespace `namespace` instead of `/`.
    pub fn of(&self, namespace: impl Into<String>) -> Self {
        let mut e = self.clone();
        e.namespace = namespace.into();
        e
    }

    /// A copy that marks its messages with an origin (a node id or program name).
    pub fn with_origin(&self, origin: impl Into<String>) -> Self {
        let mut e = self.clone();
        e.origin = Some(origin.into());
        e
    }

    /// The broker this emitter publishes through.
    pub fn broker(&self) -> &SharedBroker {
        &self.broker
    }

    /// Emits `event` with one argument.
    pub async fn emit(&self, event: &str, data: impl Serialize) -> Result<(), EmitError> {
        self.emit_args(event, vec![serde_json::to_value(data)?])
            .await
    }

    /// Emits `event` with any number of arguments.
    pub async fn emit_args(&self, event: &str, args: Vec<Value>) -> Result<(), EmitError> {
        let mut envelope = Envelope::with_args(event, args).stamped();
        envelope.namespace.clone_from(&self.namespace);
        envelope.rooms.clone_from(&self.rooms);
        envelope.except.clone_from(&self.except);
        envelope.origin.clone_from(&self.origin);
        self.send(&envelope).await
    }

    /// Publishes a complete envelope as it is.
    pub async fn send(&self, envelope: &Envelope) -> Result<(), EmitError> {
        self.send_for_offset(envelope).await.map(drop)
    }

    /// Publishes a complete envelope as [`Emitter::send`] does, and returns the offset the
    /// broker's history assigned to it (`None` when it travelled over pub/sub: no history, the
    /// python-socketio format, or [`Emitter::with_history`]`(false)`).
    pub async fn send_for_offset(&self, envelope: &Envelope) -> Result<Option<Offset>, EmitError> {
        envelope.validate()?;
        match &self.format {
            Format::Native => {
                let payload = self.sealed(native::encode(envelope));
                if self.history
                    && let Some(history) = self.broker.history()
                {
                    return Ok(Some(history.append(&self.channel, payload).await?));
                }
                self.broker.publish(&self.channel, payload).await?;
            }
            Format::PythonSocketio { host_id } => {
                let payload = python_socketio::encode(envelope, host_id)?;
                // Never signed: python-socketio servers read the message as it is.
                self.broker
                    .publish(&self.channel, Bytes::from(payload))
                    .await?;
            }
        }
        Ok(None)
    }

    /// Makes the sockets this emitter addresses ([`Emitter::to`], [`Emitter::except`],
    /// [`Emitter::of`]; everyone in the namespace when it names no room) join `room`, on every
    /// node:
    ///
    /// ```
    /// # async fn demo() -> Result<(), sidecast_core::EmitError> {
    /// # let emitter = sidecast_core::Emitter::new(std::sync::Arc::new(sidecast_core::MemoryBroker::default()), "sidecast");
    /// emitter.to("user:alice").join("game:1").await?;
    /// emitter.to("game:1").emit("move", [3, 4]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn join(&self, room: impl Into<String>) -> Result<(), EmitError> {
        self.join_all(vec![room.into()]).await
    }

    /// Like [`Emitter::join`], for several rooms in one operation.
    pub async fn join_all(&self, rooms: Vec<String>) -> Result<(), EmitError> {
        self.control(Control::Join {
            rooms: self.rooms.clone(),
            namespace: self.namespace.clone(),
            except: self.except.clone(),
            join: rooms,
        })
        .await
    }

    /// Makes the sockets this emitter addresses leave `room`, on every node.
    pub async fn leave(&self, room: impl Into<String>) -> Result<(), EmitError> {
        self.leave_all(vec![room.into()]).await
    }

    /// Like [`Emitter::leave`], for several rooms in one operation.
    pub async fn leave_all(&self, rooms: Vec<String>) -> Result<(), EmitError> {
        self.control(Control::Leave {
            rooms: self.rooms.clone(),
            namespace: self.namespace.clone(),
            except: self.except.clone(),
            leave: rooms,
        })
        .await
    }

    /// Disconnects the sockets in the rooms this emitter addresses, on every node. With a
    /// `reason`, each receives it as the event [`crate::rooms::DISCONNECT_REASON_EVENT`] first.
    /// The emitter must name a room ([`Emitter::to`]): nothing disconnects everybody.
    pub async fn disconnect(&self, reason: Option<&str>) -> Result<(), EmitError> {
        self.control(Control::Disconnect {
            rooms: self.rooms.clone(),
            namespace: self.namespace.clone(),
            except: self.except.clone(),
            reason: reason.map(str::to_owned),
        })
        .await
    }

    /// Makes every socket of the namespace leave `room`, on every node.
    pub async fn close_room(&self, room: impl Into<String>) -> Result<(), EmitError> {
        self.control(Control::CloseRoom {
            rooms: vec![room.into()],
            namespace: self.namespace.clone(),
        })
        .await
    }

    /// Publishes a room operation, after the checks every node applies: appended to the history
    /// of this emitter's channel when its events are (a control entry), published on the
    /// control channel that goes with it ([`control::channel`]) otherwise.
    pub async fn control(&self, operation: Control) -> Result<(), EmitError> {
        self.control_for_offset(operation).await.map(drop)
    }

    /// Publishes a room operation as [`Emitter::control`] does, and returns the offset the
    /// broker's history assigned to it (`None` when it travelled over pub/sub).
    pub async fn control_for_offset(
        &self,
        operation: Control,
    ) -> Result<Option<Offset>, EmitError> {
        if !matches!(self.format, Format::Native) {
            return Err(EmitError::ControlUnsupported);
        }
        operation.validate()?;
        if self.history
            && let Some(history) = self.broker.history()
        {
            let payload = self.sealed(control::encode(&operation));
            return Ok(Some(history.append(&self.channel, payload).await?));
        }
        self.publish_raw(
            &control::channel(&self.channel),
            control::encode(&operation),
        )
        .await?;
        Ok(None)
    }

    /// Publishes an already encoded message on `channel`, signed when this emitter signs. Only
    /// the broker can refuse it: nothing is validated or encoded here.
    pub async fn publish_raw(&self, channel: &str, message: Vec<u8>) -> Result<(), BrokerError> {
        self.broker.publish(channel, self.sealed(message)).await
    }

    /// `message`, signed when this emitter signs.
    fn sealed(&self, message: Vec<u8>) -> Bytes {
        Bytes::from(match &self.signer {
            Some(signer) => signer.seal(&message, now_millis()),
            None => message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Broker, ChannelSpec, MemoryBroker, Subscription};
    use serde_json::json;
    use std::sync::Arc;

    /// A memory broker and a subscription to `channel` on it.
    async fn listening(channel: &str) -> (MemoryBroker, Subscription) {
        let broker = MemoryBroker::default();
        let sub = broker
            .subscribe(&[ChannelSpec::exact(channel)])
            .await
            .unwrap();
        (broker, sub)
    }

    #[tokio::test]
    async fn emits_native_envelopes_on_the_channel() {
        let (broker, mut sub) = listening("sidecast").await;
        let emitter = Emitter::new(Arc::new(broker.clone()), "sidecast").with_history(false);
        emitter
            .to("user:a")
            .except("b")
            .of("/chat")
            .emit("message", "Hi")
            .await
            .unwrap();
        let msg = sub.recv().await.unwrap();
        let e = native::decode(&msg.payload).unwrap();
        assert_eq!(e.event, "message");
        assert_eq!(e.data, vec![json!("Hi")]);
        assert_eq!(e.rooms, vec!["user:a".to_owned()]);
        assert_eq!(e.except, vec!["b".to_owned()]);
        assert_eq!(e.namespace, "/chat");
        assert!(e.ts.is_some());
        assert!(matches!(
            emitter.emit("disconnect", 1).await,
            Err(EmitError::Invalid(_))
        ));
        broker.close().await;
        assert!(matches!(
            emitter.emit("m", 1).await,
            Err(EmitError::Broker(BrokerError::Closed))
        ));
        assert!(matches!(
            emitter.publish_raw("sidecast", b"raw".to_vec()).await,
            Err(BrokerError::Closed)
        ));
    }

    #[tokio::test]
    async fn appends_to_the_history_when_the_broker_has_one() {
        let (broker, mut sub) = listening("sidecast").await;
        let signer = Arc::new(Signer::new("k", std::time::Duration::from_secs(60)));
        let emitter = Emitter::new(Arc::new(broker.clone()), "sidecast").signed(signer.clone());
        let envelope = Envelope::new("message", json!("Hi"));
        let first = emitter.send_for_offset(&envelope).await.unwrap().unwrap();
        let second = emitter.send_for_offset(&envelope).await.unwrap().unwrap();
        assert!(first < second, "offsets increase: {first} < {second}");
        let history = broker.history().unwrap();
        let crate::Replay::Entries(entries) = history
            .read_after("sidecast", &Offset::START, 10)
            .await
            .unwrap()
        else {
            panic!("no entries");
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].offset, first);
        let opened = signer
            .open_entry(
                &entries[0].payload,
                now_millis(),
                std::time::Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(native::decode(&opened).unwrap().event, "message");
        // Not published as well: a node would deliver it twice.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), sub.recv())
                .await
                .is_err()
        );
        let python = Emitter::python_socketio(Arc::new(broker.clone()), "flask-socketio");
        assert_eq!(python.send_for_offset(&envelope).await.unwrap(), None);
    }

    #[tokio::test]
    async fn appends_room_operations_to_the_history_with_the_events() {
        let (broker, mut sub) = listening("sidecast:control").await;
        let emitter = Emitter::new(Arc::new(broker.clone()), "sidecast").to("user:alice");
        let join = emitter.control_for_offset(Control::Join {
            rooms: vec!["user:alice".into()],
            namespace: "/".into(),
            except: vec![],
            join: vec!["game:1".into()],
        });
        let joined = join.await.unwrap().unwrap();
        emitter.emit("move", 1).await.unwrap();
        let history = broker.history().unwrap();
        let crate::Replay::Entries(entries) = history
            .read_after("sidecast", &Offset::START, 10)
            .await
            .unwrap()
        else {
            panic!("no entries");
        };
        assert_eq!(entries.len(), 2, "the join, then the event");
        assert_eq!(entries[0].offset, joined);
        assert!(control::is_control(&entries[0].payload));
        assert!(matches!(
            control::decode(&entries[0].payload).unwrap(),
            Control::Join { .. }
        ));
        assert!(!control::is_control(&entries[1].payload));
        // Not published as well: a node would apply it twice.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), sub.recv())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn publishes_room_operations_on_the_control_channel() {
        let (broker, mut sub) = listening("sidecast:control").await;
        let emitter = Emitter::new(Arc::new(broker.clone()), "sidecast").with_history(false);
        let alice = emitter.to("user:alice");
        alice.join("game:1").await.unwrap();
        alice
            .leave_all(vec!["game:1".into(), "game:2".into()])
            .await
            .unwrap();
        alice.disconnect(Some("bye")).await.unwrap();
        emitter.of("/chat").close_room("game:1").await.unwrap();
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(control::decode(&sub.recv().await.unwrap().payload).unwrap());
        }
        assert_eq!(
            got,
            vec![
                Control::Join {
                    rooms: vec!["user:alice".into()],
                    namespace: "/".into(),
                    except: vec![],
                    join: vec!["game:1".into()],
                },
                Control::Leave {
                    rooms: vec!["user:alice".into()],
                    namespace: "/".into(),
                    except: vec![],
                    leave: vec!["game:1".into(), "game:2".into()],
                },
                Control::Disconnect {
                    rooms: vec!["user:alice".into()],
                    namespace: "/".into(),
                    except: vec![],
                    reason: Some("bye".into()),
                },
                Control::CloseRoom {
                    rooms: vec!["game:1".into()],
                    namespace: "/chat".into(),
                },
            ]
        );
        // Refused before anything is published.
        assert!(matches!(
            emitter.disconnect(None).await,
            Err(EmitError::Control(_))
        ));
        assert!(matches!(emitter.join("").await, Err(EmitError::Control(_))));
        assert!(matches!(
            Emitter::python_socketio(Arc::new(broker.clone()), "flask-socketio")
                .join("r")
                .await,
            Err(EmitError::ControlUnsupported)
        ));
    }

    #[tokio::test]
    async fn emits_python_socketio_messages_unsigned() {
        use crate::ingress::{Decoded, python_socketio};
        let (broker, mut sub) = listening("flask-socketio").await;
        let signer = Arc::new(Signer::new("key", std::time::Duration::from_secs(60)));
        let emitter =
            Emitter::python_socketio(Arc::new(broker.clone()), "flask-socketio").signed(signer);
        emitter
            .to("user:a")
            .emit_args("move", vec![json!(3), json!(4)])
            .await
            .unwrap();
        let msg = sub.recv().await.unwrap();
        let wire: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(wire["method"], "emit");
        assert_eq!(wire["data"], json!([3, 4]));
        assert_eq!(wire["room"], "user:a");
        assert_eq!(wire["host_id"].as_str().unwrap().len(), 32);
        let Decoded::Event(e) = python_socketio::decode("flask-socketio", &msg.payload).unwrap()
        else {
            panic!("not an event");
        };
        assert_eq!(e.data, vec![json!(3), json!(4)]);
        assert!(matches!(
            emitter.except("x").emit("m", 1).await,
            Err(EmitError::Format(_))
        ));
    }
}
