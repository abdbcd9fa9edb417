//! The queue and task behind each [`Subscription`](sidecast_core::Subscription):
//! [`open_consumer`] declares its exchanges and a new queue bound to them; [`run`] forwards the
//! deliveries and, whenever the consumer breaks, builds a new queue and consumer.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use sidecast_core::supervision::{PartId, PumpEnd, Shutdown};
use sidecast_core::{BrokerError, BrokerMessage, Delivery, SubscriptionSender};
use tokio::sync::watch;
use tokio::time::{sleep, timeout};

use crate::CLOSE_WAIT;
use crate::connection::{AmqpConnection, AmqpState};
use crate::error::{self, Doing};
use crate::exchange;

/// A subscription's channel and consumer on one connection.
pub(crate) struct Consuming {
    generation: u64,
    channel: Channel,
    consumer: Consumer,
}

/// Declares the exchanges and a new exclusive, auto-delete, server-named queue bound to
/// them on a new channel of `link`, and starts consuming from it, within the connect
/// time-out.
pub(crate) async fn open_consumer(
    state: &AmqpState,
    link: &AmqpConnection,
    exchanges: &[String],
) -> Result<Consuming, BrokerError> {
    let first = exchanges.first().map_or("", String::as_str);
    let setup = async {
        let channel = link
            .connection
            .create_channel()
            .await
            .map_err(|e| state.failed(e, Doing::Using(first)))?;
        for name in exchanges {
            exchange::declare(&channel, name, state.options.durable_exchanges)
                .await
                .map_err(|e| state.failed(e, Doing::Declaring(name)))?;
        }
        // Server-named: a new name on every (re)connection, so a restarted RabbitMQ never
        // sees a redeclaration of a queue it no longer knows.
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| state.failed(e, Doing::Using(first)))?;
        for exchange in exchanges {
            channel
                .queue_bind(
                    queue.name().clone(),
                    exchange.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| state.failed(e, Doing::Using(exchange)))?;
        }
        // no_ack: RabbitMQ considers a message delivered once sent. Acknowledgements would
        // buy nothing: the queue is exclusive and dies with the connection, so nothing
        // unacknowledged could ever be redelivered, and overflow is dropped by design.
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    exclusive: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| state.failed(e, Doing::Using(first)))?;
        tracing::trace!(queue = %queue.name(), ?exchanges, "amqp subscription consuming");
        Ok(Consuming {
            generation: link.generation,
            channel,
            consumer,
        })
    };
    let after = state.options.connect_timeout;
    // On failure or time-out the channel is dropped, which closes it (and its queue).
    match timeout(after, setup).await {
        Ok(result) => result,
        Err(_elapsed) => Err(error::timeout(after)),
    }
}

/// The task behind one [`Subscription`]: forwards its consumer's deliveries into the
/// subscription's queue and, whenever the consumer breaks, builds a new queue and consumer
/// (on the same connection if it still works, else on the next one).
pub(crate) async fn run(
    state: Arc<AmqpState>,
    id: PartId,
    exchanges: Arc<[String]>,
    tx: SubscriptionSender,
    mut consuming: Consuming,
    mut shutdown: Shutdown,
) {
    // However the task ends, its queue stops counting: a subscription dropped during an outage
    // must not keep the broker "reconnecting".
    let _part = state.parts.board().part(id);
    let mut links = state.connection.subscribe();
    loop {
        let failure = match pump(&tx, &mut consuming, &mut shutdown, &mut links).await {
            PumpEnd::Shutdown => return,
            PumpEnd::ConsumerGone => {
                // Closing the channel cancels the consumer, and RabbitMQ deletes the
                // auto-delete queue at once rather than when the connection ends.
                let closing = consuming.channel.close(200, "subscription dropped".into());
                let _ = timeout(CLOSE_WAIT, closing).await;
                return;
            }
            PumpEnd::Lost(failure) => failure,
        };
        if state.parts.board().is_closed() {
            return;
        }
        state.parts.lost(id, &failure);
        // The connection probably went away for everybody: have it checked now.
        state.check.notify_one();
        match reconsume(&state, id, &exchanges, &tx, &mut shutdown, &mut links).await {
            Some(fresh) => {
                consuming = fresh;
                state.parts.restored(id);
            }
            None => return,
        }
    }
}

/// Builds a new queue and consumer, waiting for a live connection and retrying with backoff.
/// `None` when the broker shuts down or the consumer left.
async fn reconsume(
    state: &AmqpState,
    id: PartId,
    exchanges: &[String],
    tx: &SubscriptionSender,
    shutdown: &mut Shutdown,
    links: &mut watch::Receiver<Option<Arc<AmqpConnection>>>,
) -> Option<Consuming> {
    let backoff = state.backoff();
    let mut attempt: u32 = 0;
    loop {
        attempt = attempt.saturating_add(1);
        state.parts.board().attempt(id, attempt);
        let link = wait_for_connection(state, || tx.closed(), shutdown, links).await?;
        match open_consumer(state, &link, exchanges).await {
            Ok(consuming) => return Some(consuming),
            Err(e) => tracing::debug!(
                url = %state.url, subscription = id, attempt, error = %e,
                "amqp subscription setup failed"
            ),
        }
        // The connection works but the setup failed (a channel error, a time-out): back off
        // rather than hammer RabbitMQ. A lost connection shows up in wait_for_link instead.
        tokio::select! {
            () = shutdown.signalled() => return None,
            () = tx.closed() => return None,
            () = sleep(backoff.delay(attempt)) => {}
        }
    }
}

/// The current connection once it is up. `None` when the broker shuts down or the consumer
/// left meanwhile (`gone` completes: a subscription sender's `closed()`).
pub(crate) async fn wait_for_connection<Gone: Future<Output = ()>>(
    state: &AmqpState,
    gone: impl Fn() -> Gone,
    shutdown: &mut Shutdown,
    links: &mut watch::Receiver<Option<Arc<AmqpConnection>>>,
) -> Option<Arc<AmqpConnection>> {
    loop {
        let current = links.borrow_and_update().clone();
        if let Some(link) = current {
            if link.connection.status().connected() {
                return Some(link);
            }
            // Dead but not yet replaced: make sure the supervisor knows.
            state.check.notify_one();
        }
        tokio::select! {
            () = shutdown.signalled() => return None,
            changed = links.changed() => if changed.is_err() {
                return None;
            },
            () = gone() => return None,
        }
    }
}

/// Forwards deliveries from one consumer until it breaks, the consumer leaves, the connection
/// is replaced or the broker shuts down. Never waits for the consumer:
/// [`SubscriptionSender::deliver`] drops and counts what does not fit.
async fn pump(
    tx: &SubscriptionSender,
    consuming: &mut Consuming,
    shutdown: &mut Shutdown,
    links: &mut watch::Receiver<Option<Arc<AmqpConnection>>>,
) -> PumpEnd {
    loop {
        // Biased: shutdown first, then deliveries. Under steady traffic the later branches may
        // starve, which is fine: a gone consumer shows up as Delivery::Closed, and a lost
        // connection as an error of the consumer.
        tokio::select! {
            biased;
            () = shutdown.signalled() => return PumpEnd::Shutdown,
            delivery = consuming.consumer.next() => match delivery {
                Some(Ok(delivery)) => {
                    let message = BrokerMessage {
                        channel: delivery.exchange.to_string(),
                        pattern: None,
                        payload: Bytes::from(delivery.data),
                    };
                    if tx.deliver(message) == Delivery::Closed {
                        return PumpEnd::ConsumerGone;
                    }
                }
                Some(Err(e)) => return PumpEnd::Lost(format!("the consumer failed: {e}")),
                None => {
                    return PumpEnd::Lost(
                        "the consumer was cancelled (connection or channel closed, or queue \
                         deleted)"
                            .to_owned(),
                    );
                }
            },
            changed = links.changed() => {
                // Normally the consumer reports a lost connection itself; this covers a
                // connection replaced without the consumer being told.
                let replaced = changed.is_err()
                    || links
                        .borrow_and_update()
                        .as_ref()
                        .is_some_and(|link| link.generation != consuming.generation);
                if replaced {
                    return PumpEnd::Lost("the connection was replaced".to_owned());
                }
            }
            // The consumer dropped its Subscription while the channel is quiet.
            () = tx.closed() => return PumpEnd::ConsumerGone,
        }
    }
}
