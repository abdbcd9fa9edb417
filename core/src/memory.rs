//! [`MemoryBroker`]: an in-process broker for single-node deployments and tests, with an
//! in-process [`History`].

// The pub/sub side is here; `history` holds the history's logs and subscription tasks.
mod history;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;

use crate::broker::{
    Broker, BrokerError, BrokerHealth, BrokerMessage, ChannelSpec, Delivery, History,
    HistoryRetention, Subscription, SubscriptionSender,
};

use history::MemoryHistory;

/// The default queue size of a subscription.
pub const DEFAULT_CAPACITY: usize = 4_096;

/// A broker that lives in one process: every subscription of the same `MemoryBroker` (and its
/// clones) receives what is published on it, in publish order. Patterns follow Redis' glob rules.
///
/// Nothing crosses a process boundary: a `sidecast emit` in another process cannot reach it.
///
/// # History
///
/// [`Broker::history`] is an in-process [`History`]: offsets count up from 1 per channel (20
/// digits, see [`crate::broker::Offset::from_number`]), the retention bounds
/// ([`MemoryBroker::with_retention`]) are applied exactly, at every append and read, and the
/// entries are gone when the process ends. History subscriptions are tasks on the current tokio
/// runtime.
#[derive(Debug, Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    closed: AtomicBool,
    subscribers: Mutex<Vec<Subscriber>>,
    history: MemoryHistory,
}

#[derive(Debug)]
struct Subscriber {
    specs: Vec<ChannelSpec>,
    tx: SubscriptionSender,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl MemoryBroker {
    /// A broker whose subscriptions buffer at most `capacity` messages each, with the default
    /// [`HistoryRetention`].
    pub fn new(capacity: usize) -> Self {
        Self::with_retention(capacity, HistoryRetention::default())
    }

    /// A broker whose subscriptions buffer at most `capacity` messages (or history entries) each,
    /// and whose history keeps what `retention` allows.
    pub fn with_retention(capacity: usize, retention: HistoryRetention) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity,
                closed: AtomicBool::new(false),
                subscribers: Mutex::new(Vec::new()),
                history: MemoryHistory::new(retention, capacity),
            }),
        }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        // A poisoned lock only means another publisher panicked; the list itself is intact.
        let mut subscribers = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        subscribers.retain(|sub| {
            let Some(spec) = sub.specs.iter().find(|s| s.matches(channel)) else {
                return !sub.tx.is_closed();
            };
            let message = BrokerMessage {
                channel: channel.to_owned(),
                pattern: match spec {
                    ChannelSpec::Pattern(p) => Some(p.clone()),
                    ChannelSpec::Exact(_) => None,
                },
                payload: payload.clone(),
            };
            sub.tx.deliver(message) != Delivery::Closed
        });
        Ok(())
    }

    async fn subscribe(&self, channels: &[ChannelSpec]) -> Result<Subscription, BrokerError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        let (tx, subscription) = Subscription::bounded(self.inner.capacity);
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Subscriber {
                specs: channels.to_vec(),
                tx,
            });
        Ok(subscription)
    }

    fn health(&self) -> BrokerHealth {
        if self.inner.closed.load(Ordering::Acquire) {
            BrokerHealth::Closed
        } else {
            BrokerHealth::Connected
        }
    }

    fn history(&self) -> Option<&dyn History> {
        Some(&self.inner.history)
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.history.close();
        // Dropping the senders ends every subscription stream.
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
