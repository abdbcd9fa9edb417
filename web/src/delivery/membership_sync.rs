//! Remembered memberships for nodes that keep them in memory on a broker other nodes share
//! (RabbitMQ without a Redis session store, decision 19): a node that starts asks the running
//! nodes, on `<channel>:memberships`, and takes the first answer of a node that has its own,
//! under the room operations it received meanwhile ([`LocalMemberships::synced`]). A node that
//! nobody answers within [`ANSWER_WAIT`] starts with what it learnt (it is probably the first
//! one; an answer slower than that, from a busy peer, is missed and logged).
//!
//! With recovery on, room operations travel through the history (decision 34), and an answer
//! carries the answering node's history position, read under the same lock as its memberships.
//! The starting node applies the history's room operations between that position and its own
//! start position over the answer: an operation the answering node had not applied yet when it
//! answered is not missed. Operations after the starting node's own position are in its journal.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sidecast_core::envelope::now_millis;
use sidecast_core::{BrokerError, ChannelSpec, Offset, SharedBroker, Signer, Subscription, rooms};
use tokio::task::JoinHandle;

use crate::delivery::memberships::{self, ANSWER_WAIT, LocalMemberships, Membership};
use crate::delivery::recovery::Recovery;

/// The channel nodes exchange memberships on.
pub(crate) fn channel(base: &str) -> String {
    format!("{base}:memberships")
}

/// A message on the memberships channel.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// Node `node` started and asks for the memberships.
    Request {
        /// The starting node's id.
        node: String,
    },
    /// Node `from` answers node `to`.
    Answer {
        /// The node asked for.
        to: String,
        /// The answering node.
        from: String,
        /// `(namespace, user, rooms)` of every user remembered in a room.
        memberships: Vec<Membership>,
        /// The answering node's history position when it read `memberships` (recovery on);
        /// absent from nodes without a history (and from older nodes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<String>,
    },
}

/// What the task needs.
pub(crate) struct Sync {
    pub(crate) broker: SharedBroker,
    pub(crate) channel: String,
    pub(crate) node_id: String,
    pub(crate) store: Arc<LocalMemberships>,
    pub(crate) signer: Option<Arc<Signer>>,
    /// The node's recovery (history position), when recovery is on.
    pub(crate) recovery: Option<Arc<Recovery>>,
}

impl Sync {
    /// Subscribes to the memberships channel and asks the running nodes; the returned task
    /// takes the first answer, then answers the nodes that start later, until the broker closes
    /// the subscription.
    pub(crate) async fn start(self) -> Result<JoinHandle<()>, BrokerError> {
        let subscription = self
            .broker
            .subscribe(&[ChannelSpec::exact(self.channel.clone())])
            .await?;
        // After subscribing: the answer cannot be missed.
        self.publish(&Message::Request {
            node: self.node_id.clone(),
        })
        .await?;
        Ok(tokio::spawn(self.run(subscription)))
    }

    async fn run(self, mut subscription: Subscription) {
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        let mut waiting = true;
        loop {
            let received = if waiting {
                match tokio::time::timeout_at(deadline, subscription.recv()).await {
                    Ok(received) => received,
                    Err(_elapsed) => {
                        waiting = false;
                        self.store.synced(None);
                        tracing::info!(
                            "no running node answered for the remembered memberships within \
                             {ANSWER_WAIT:?}: this node starts with what it learnt since it \
                             subscribed"
                        );
                        continue;
                    }
                }
            } else {
                subscription.recv().await
            };
            let Some(message) = received else {
                return;
            };
            match self.open(&message.payload) {
                Some(Message::Answer {
                    to,
                    from,
                    memberships,
                    position,
                }) if waiting && to == self.node_id => {
                    waiting = false;
                    tracing::info!(from = %from, users = memberships.len(), "remembered memberships received from a running node");
                    let memberships = self.catch_up(memberships, position).await;
                    self.store.synced(Some(memberships));
                }
                Some(Message::Request { node }) if node != self.node_id => {
                    // Read under the position's lock: the relay records the history's room
                    // operations while it holds it, so the snapshot is the state at `position`.
                    let (snapshot, position) = match &self.recovery {
                        Some(recovery) => {
                            let position = recovery.position().await;
                            (self.store.snapshot(), Some(position.as_str().to_owned()))
                        }
                        None => (self.store.snapshot(), None),
                    };
                    // Only a node that has its own answers: an empty answer would win the race.
                    if let Some(memberships) = snapshot {
                        let answer = Message::Answer {
                            to: node,
                            from: self.node_id.clone(),
                            memberships,
                            position,
                        };
                        if let Err(e) = self.publish(&answer).await {
                            tracing::warn!(error = %e, "could not answer a starting node with the remembered memberships");
                        }
                    }
                }
                Some(_) => {}
                None => {
                    tracing::debug!(channel = %self.channel, "memberships message dropped (unreadable or badly signed)");
                }
            }
        }
    }

    /// `memberships` as of the answering node's `position`, brought up to this node's start
    /// position with the history's room operations in between (those after it are in the
    /// store's journal). When the answering node was ahead, the journal repeats operations the
    /// snapshot holds; replayed in history order over it they end where the history did.
    async fn catch_up(
        &self,
        memberships: Vec<Membership>,
        position: Option<String>,
    ) -> Vec<Membership> {
        let (Some(recovery), Some(position)) = (&self.recovery, position) else {
            return memberships;
        };
        let answered_at = Offset::new(position);
        if answered_at >= *recovery.started_at() {
            return memberships;
        }
        match recovery
            .operations_between(&answered_at, recovery.started_at())
            .await
        {
            Ok(operations) => {
                let caught_up = LocalMemberships::from_snapshot(memberships);
                for operation in &operations {
                    // A local store does not fail.
                    let _ = memberships::record(&caught_up, operation).await;
                }
                tracing::debug!(
                    operations = operations.len(),
                    "room operations between the answer's history position and this node's applied"
                );
                caught_up.snapshot().unwrap_or_default()
            }
            Err(e) => {
                tracing::warn!(error = %e, after = %answered_at, "could not read the room operations between the remembered memberships' history position and this node's; starting with the memberships as they were answered");
                memberships
            }
        }
    }

    async fn publish(&self, message: &Message) -> Result<(), BrokerError> {
        let json = serde_json::to_vec(message).unwrap_or_default();
        let payload = match &self.signer {
            Some(signer) => signer.seal(&json, now_millis()),
            None => json,
        };
        self.broker
            .publish(&self.channel, Bytes::from(payload))
            .await
    }

    /// The message, verified when the bus is signed.
    fn open(&self, payload: &[u8]) -> Option<Message> {
        decode(payload, self.signer.as_deref(), now_millis())
    }
}

/// A message of the memberships channel received at `now_ms`, verified when the bus is signed
/// (`signer`); `None` when it is unreadable or badly signed, or an answer names a namespace, user
/// or room that no room operation could have (a faulty or hostile node: its memberships would
/// put users' next sockets in rooms no operation validated).
pub fn decode(payload: &[u8], signer: Option<&Signer>, now_ms: u64) -> Option<Message> {
    let message: Message = match signer {
        None => serde_json::from_slice(payload).ok()?,
        Some(signer) => serde_json::from_slice(&signer.open(payload, now_ms).ok()?).ok()?,
    };
    if let Message::Answer { memberships, .. } = &message {
        let valid = |(namespace, user, rooms): &Membership| {
            namespace.starts_with('/')
                && !user.is_empty()
                && rooms::validate_room(&format!("user:{user}")).is_ok()
                && rooms.iter().all(|room| rooms::validate_room(room).is_ok())
        };
        if !memberships.iter().all(valid) {
            return None;
        }
    }
    Some(message)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;
    use sidecast_core::MemoryBroker;
    use sidecast_core::codec::control::{self, Control};
    use sidecast_core::config::RecoveryConfig;

    use super::*;
    use crate::delivery::memberships::MembershipStore;
    use crate::metrics::Metrics;

    const CHANNEL: &str = "sidecast";

    async fn recovery(broker: &SharedBroker) -> Arc<Recovery> {
        let (recovery, _subscription) = Recovery::start(
            broker,
            CHANNEL,
            None,
            Duration::from_secs(60),
            &RecoveryConfig::default(),
            Arc::new(Metrics::new()),
        )
        .await
        .unwrap()
        .unwrap();
        recovery
    }

    fn sync(
        broker: &SharedBroker,
        node: &str,
        store: &Arc<LocalMemberships>,
        recovery: Arc<Recovery>,
    ) -> Sync {
        Sync {
            broker: broker.clone(),
            channel: channel(CHANNEL),
            node_id: node.to_owned(),
            store: store.clone(),
            signer: None,
            recovery: Some(recovery),
        }
    }

    fn join(user: &str, room: &str) -> Bytes {
        Bytes::from(control::encode(&Control::Join {
            rooms: vec![format!("user:{user}")],
            namespace: "/".to_owned(),
            except: Vec::new(),
            join: vec![room.to_owned()],
        }))
    }

    /// An answer is taken only when every membership could come from validated room operations:
    /// a namespace with `/`, a user, and valid room names (the invariant of the
    /// `membership_sync` fuzz target; before, a node put users' next sockets in whatever rooms
    /// an answer named).
    #[test]
    fn answers_naming_rooms_no_operation_could_are_refused() {
        let answer = |memberships: Value| {
            serde_json::to_vec(&serde_json::json!({
                "kind": "answer", "to": "b", "from": "a", "memberships": memberships,
            }))
            .unwrap()
        };
        let good = answer(serde_json::json!([["/", "alice", ["game:1"]]]));
        assert!(matches!(
            decode(&good, None, 0),
            Some(Message::Answer { memberships, .. }) if memberships.len() == 1
        ));
        let long = "x".repeat(rooms::MAX_ROOM_LEN + 1);
        for bad in [
            serde_json::json!([["/", "alice", ["game:1", "a\u{0007}b"]]]),
            serde_json::json!([["/", "alice", [""]]]),
            serde_json::json!([["/", "alice", [long]]]),
            serde_json::json!([["chat", "alice", ["game:1"]]]),
            serde_json::json!([["/", "", ["game:1"]]]),
            serde_json::json!([["/", "alice\n", ["game:1"]]]),
        ] {
            assert_eq!(decode(&answer(bad.clone()), None, 0), None, "{bad}");
        }
        let signer = Signer::new("k", Duration::from_secs(60));
        assert_eq!(
            decode(&good, Some(&signer), 0),
            None,
            "unsigned on a signed bus"
        );
        let sealed = signer.seal(&good, 1_000);
        assert!(decode(&sealed, Some(&signer), 1_000).is_some());
    }

    /// The window decision 34 left: a join appended before node B started (so B's relay starts
    /// after it) that node A had not applied yet when it answered B. B reads it from the history
    /// between A's position and its own.
    #[tokio::test]
    async fn a_starting_node_applies_the_operations_between_the_answer_and_its_start() {
        let broker: SharedBroker = Arc::new(MemoryBroker::new(64));
        let history = broker.history().unwrap();
        history.append(CHANNEL, join("bob", "lobby")).await.unwrap();
        // Node A's relay is not running: its position stays where it started, before the join
        // below, as a node's that lags behind the history.
        let a_store = Arc::new(LocalMemberships::default());
        a_store
            .add("/", "bob", &["lobby".to_owned()])
            .await
            .unwrap();
        let _a = sync(&broker, "a", &a_store, recovery(&broker).await)
            .start()
            .await
            .unwrap();
        history
            .append(CHANNEL, join("alice", "game:1"))
            .await
            .unwrap();

        let b_store = Arc::new(LocalMemberships::syncing());
        let _b = sync(&broker, "b", &b_store, recovery(&broker).await)
            .start()
            .await
            .unwrap();

        assert!(b_store.wait_synced().await);
        assert_eq!(
            b_store.rooms_of("/", "alice").await.unwrap(),
            vec!["game:1".to_owned()]
        );
        assert_eq!(
            b_store.rooms_of("/", "bob").await.unwrap(),
            vec!["lobby".to_owned()]
        );
        // A still lacks it (its relay is not running): the operation reached B from the history,
        // not through A's answer.
        assert!(a_store.rooms_of("/", "alice").await.unwrap().is_empty());
    }
}
