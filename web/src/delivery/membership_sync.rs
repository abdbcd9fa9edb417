//! Remembered memberships for nodes that keep them in memory on a broker other nodes share
//! (RabbitMQ without a Redis session store, decision 19): a node that starts asks the running
//! nodes, on `<channel>:memberships`, and takes the first answer of a node that has its own,
//! under the room operations it received meanwhile ([`LocalMemberships::synced`]). A node that
//! nobody answers within [`ANSWER_WAIT`] starts with what it learnt (it is probably the first
//! one; an answer slower than that, from a busy peer, is missed and logged).

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sidecast_core::envelope::now_millis;
use sidecast_core::{BrokerError, ChannelSpec, SharedBroker, Signer, Subscription};
use tokio::task::JoinHandle;

use crate::delivery::memberships::{ANSWER_WAIT, LocalMemberships, Membership};

/// The channel nodes exchange memberships on.
pub(crate) fn channel(base: &str) -> String {
    format!("{base}:memberships")
}

/// A message on the memberships channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Message {
    /// Node `node` started and asks for the memberships.
    Request { node: String },
    /// Node `from` answers node `to`.
    Answer {
        to: String,
        from: String,
        memberships: Vec<Membership>,
    },
}

/// What the task needs.
pub(crate) struct Sync {
    pub(crate) broker: SharedBroker,
    pub(crate) channel: String,
    pub(crate) node_id: String,
    pub(crate) store: Arc<LocalMemberships>,
    pub(crate) signer: Option<Arc<Signer>>,
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
                }) if waiting && to == self.node_id => {
                    waiting = false;
                    tracing::info!(from = %from, users = memberships.len(), "remembered memberships received from a running node");
                    self.store.synced(Some(memberships));
                }
                Some(Message::Request { node }) if node != self.node_id => {
                    // Only a node that has its own answers: an empty answer would win the race.
                    if let Some(memberships) = self.store.snapshot() {
                        let answer = Message::Answer {
                            to: node,
                            from: self.node_id.clone(),
                            memberships,
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
        match &self.signer {
            None => serde_json::from_slice(payload).ok(),
            Some(signer) => {
                let inner = signer.open(payload, now_millis()).ok()?;
                serde_json::from_slice(&inner).ok()
            }
        }
    }
}
