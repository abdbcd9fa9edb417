//! [`PresenceClient`]: a reader of the presence channel for any Rust program, outside the web
//! nodes: it asks every node for its state, then follows their changes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::replica::{Event, Replica, RoomPresence};
use super::wire::{self, Message};
use crate::envelope::now_millis;
use crate::{BrokerError, ChannelSpec, SharedBroker, Signer};

/// Reads the cluster's presence from the bus.
///
/// ```no_run
/// # async fn run(broker: sidecast_core::SharedBroker) -> Result<(), sidecast_core::BrokerError> {
/// use std::time::Duration;
/// let client = sidecast_core::presence::PresenceClient::connect(broker, "sidecast", None, Duration::from_secs(5)).await?;
/// client.settle(Duration::from_millis(5250)).await; // one heartbeat: every node answered
/// let room = client.room("/", "chat:1", 100);
/// println!("{} users", room.user_count);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PresenceClient {
    replica: Arc<Mutex<Replica>>,
    events: broadcast::Sender<Event>,
    broker: SharedBroker,
    channel: String,
    signer: Option<Arc<Signer>>,
    task: JoinHandle<()>,
}

impl Drop for PresenceClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PresenceClient {
    /// Subscribes to the presence channel of the broker channel `base` and asks every node for
    /// its state. `timeout` is how long a silent node stays in the view (the nodes'
    /// `presence.heartbeat_ms` × `presence.missed_heartbeats`).
    pub async fn connect(
        broker: SharedBroker,
        base: &str,
        signer: Option<Arc<Signer>>,
        timeout: Duration,
    ) -> Result<Self, BrokerError> {
        let channel = super::channel(base);
        let me = format!("reader-{}", uuid::Uuid::new_v4());
        let replica = Arc::new(Mutex::new(Replica::new(
            me.clone(),
            u64::try_from(timeout.as_millis() / 3).unwrap_or(u64::MAX),
        )));
        let mut subscription = broker
            .subscribe(&[ChannelSpec::exact(channel.clone())])
            .await?;
        let (events, _) = broadcast::channel(1024);
        let task = {
            let replica = replica.clone();
            let events = events.clone();
            let broker = broker.clone();
            let channel = channel.clone();
            let signer = signer.clone();
            let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(timeout / 3);
                loop {
                    let (applied, ask) = tokio::select! {
                        message = subscription.recv() => {
                            let Some(message) = message else { return };
                            let Some(message) = wire::decode(&message.payload, signer.as_deref()) else {
                                continue;
                            };
                            let received = replica
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .receive(message, now_millis());
                            (received.events, received.ask)
                        }
                        _ = tick.tick() => {
                            let expired = replica
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .expire(now_millis(), timeout_ms);
                            (expired, None)
                        }
                    };
                    for event in applied {
                        let _ = events.send(event);
                    }
                    if let Some(node) = ask {
                        let request = Message::SnapshotRequest {
                            node: me.clone(),
                            to: Some(node),
                        };
                        let _ = broker
                            .publish(&channel, wire::encode(&request, signer.as_deref()))
                            .await;
                    }
                }
            })
        };
        let client = Self {
            replica,
            events,
            broker,
            channel,
            signer,
            task,
        };
        client.ask_everyone().await?;
        Ok(client)
    }

    /// Asks every node for its state again.
    pub async fn ask_everyone(&self) -> Result<(), BrokerError> {
        let me = self.lock().me().to_owned();
        let request = Message::SnapshotRequest { node: me, to: None };
        self.broker
            .publish(
                &self.channel,
                wire::encode(&request, self.signer.as_deref()),
            )
            .await
    }

    /// Waits `wait` for the nodes' answers (one heartbeat interval: a node that is alive has
    /// answered or announced itself by then).
    pub async fn settle(&self, wait: Duration) {
        tokio::time::sleep(wait).await;
    }

    /// Who is in `room` of namespace `nsp`, listing at most `max_members` users.
    pub fn room(&self, nsp: &str, room: &str, max_members: usize) -> RoomPresence {
        self.lock().room(nsp, room, max_members)
    }

    /// The nodes known: id, sockets, last heard of (milliseconds since the Unix epoch).
    pub fn nodes(&self) -> Vec<(String, usize, u64)> {
        self.lock().nodes()
    }

    /// The changes from now on: joins and leaves of users and sockets, nodes up and down.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Replica> {
        self.replica.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
