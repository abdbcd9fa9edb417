//! [`Subscription`]: the bounded queue between a transport's reader and the consumer, where a
//! consumer that lags loses messages (dropped, counted and logged) instead of stalling the reader.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;

use super::BrokerMessage;

/// A stream of [`BrokerMessage`]s, fed by a transport through a bounded queue.
///
/// Create one with [`Subscription::bounded`]: the transport keeps the [`SubscriptionSender`] and
/// returns the `Subscription` to the caller. The stream ends when every sender is dropped (the
/// broker closed). Dropping the `Subscription` closes the queue, which tells the transport
/// ([`SubscriptionSender::is_closed`]) to stop feeding it.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<BrokerMessage>,
    dropped: Arc<AtomicU64>,
}

impl Subscription {
    /// A queue of at most `capacity` messages (at least 1) and its sending half.
    pub fn bounded(capacity: usize) -> (SubscriptionSender, Subscription) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        (
            SubscriptionSender {
                tx,
                dropped: Arc::clone(&dropped),
            },
            Subscription { rx, dropped },
        )
    }

    /// The next message, or `None` once the broker was closed.
    pub async fn recv(&mut self) -> Option<BrokerMessage> {
        self.rx.recv().await
    }

    /// Messages lost so far because this subscription's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Stream for Subscription {
    type Item = BrokerMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BrokerMessage>> {
        self.rx.poll_recv(cx)
    }
}

/// The transport's half of a [`Subscription`].
#[derive(Debug, Clone)]
pub struct SubscriptionSender {
    tx: mpsc::Sender<BrokerMessage>,
    dropped: Arc<AtomicU64>,
}

/// What became of a message handed to [`SubscriptionSender::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the consumer.
    Queued,
    /// The queue was full: the message was dropped and counted.
    Dropped,
    /// The consumer is gone; the transport should forget this sender.
    Closed,
}

impl SubscriptionSender {
    /// Queues a message without waiting: when the consumer lags and the queue is full, the message
    /// is dropped, counted and logged, so a slow consumer never stalls the transport's reader.
    pub fn deliver(&self, message: BrokerMessage) -> Delivery {
        match self.tx.try_send(message) {
            Ok(()) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Full(message)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Log the first drop and then every 1000th, so that a lagging consumer cannot
                // flood the log.
                if dropped == 1 || dropped.is_multiple_of(1000) {
                    tracing::warn!(
                        channel = %message.channel,
                        dropped,
                        capacity = self.tx.max_capacity(),
                        "subscriber lagging, message dropped"
                    );
                }
                Delivery::Dropped
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Closed,
        }
    }

    /// Whether the consumer dropped its [`Subscription`].
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Completes once the consumer dropped its [`Subscription`] (at once if it already did).
    ///
    /// A transport's reader task selects on this next to its backend's message stream, so that it
    /// unsubscribes as soon as the consumer goes away, even on a channel that stays quiet, without
    /// polling [`SubscriptionSender::is_closed`]. Cancel-safe.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Messages dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    #[tokio::test]
    async fn overflow_is_dropped_and_counted_not_blocking() {
        let (tx, mut sub) = Subscription::bounded(2);
        let msg = |n: u8| BrokerMessage {
            channel: "c".into(),
            pattern: None,
            payload: Bytes::from(vec![n]),
        };
        assert_eq!(tx.deliver(msg(1)), Delivery::Queued);
        assert_eq!(tx.deliver(msg(2)), Delivery::Queued);
        assert_eq!(tx.deliver(msg(3)), Delivery::Dropped);
        assert_eq!(sub.dropped(), 1);
        assert_eq!(sub.recv().await.unwrap().payload[0], 1);
        assert_eq!(sub.recv().await.unwrap().payload[0], 2);
        drop(sub);
        assert!(tx.is_closed());
        assert_eq!(tx.deliver(msg(4)), Delivery::Closed);
    }

    #[tokio::test]
    async fn closed_completes_when_the_consumer_drops() {
        let (tx, sub) = Subscription::bounded(1);
        let waiter = tokio::spawn({
            let tx = tx.clone();
            async move { tx.closed().await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "closed() completed with a live consumer"
        );
        drop(sub);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("closed() did not complete after the consumer dropped")
            .unwrap();
        // Already closed: completes at once.
        tx.closed().await;
    }
}
