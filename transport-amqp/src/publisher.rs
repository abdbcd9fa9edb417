//! The publishing channel of a connection: [`Publishing`] keeps it open in confirm mode,
//! publishes to an exchange, declared once per channel ([`Publishing::publish`]), or straight
//! to a (history) queue ([`Publishing::publish_to_queue`]), and waits for RabbitMQ's confirm.

use std::collections::HashSet;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};
use sidecast_core::BrokerError;

use crate::error::{self, Doing};
use crate::exchange;

/// How a publish reports what went wrong: implemented by the broker's shared state
/// ([`crate::connection::AmqpState`]). A trait rather than that type, because the state holds
/// the connections and their publishing channels: publishing does not depend on it.
pub(crate) trait Failures {
    /// `error`, met while `doing`, as a [`BrokerError`]; has the connection checked when the
    /// error says that it may be gone.
    fn failed(&self, error: lapin::Error, doing: Doing<'_>) -> BrokerError;

    /// The broker's URL, password redacted, for the errors publishing makes itself.
    fn url(&self) -> &str;
}

/// Where a message goes.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// A channel's fanout exchange, with an empty routing key.
    Exchange(&'a str),
    /// A queue, through the default exchange (routing key = the queue), `mandatory`.
    Queue(&'a str),
}

impl<'a> Target<'a> {
    /// What a failure to send there was doing, for the error's hint.
    fn doing(self) -> Doing<'a> {
        match self {
            Self::Exchange(exchange) => Doing::Using(exchange),
            Self::Queue(queue) => Doing::History(queue),
        }
    }
}

/// A channel in confirm mode and the exchanges declared on it.
struct Publisher {
    channel: Channel,
    /// Exchanges already declared through this channel: declaring is a round trip, so it is
    /// done once per exchange and channel, not per message.
    declared: HashSet<String>,
}

impl Publisher {
    /// A new channel in confirm mode.
    async fn open(connection: &Connection) -> lapin::Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            declared: HashSet::new(),
        })
    }
}

/// The publishing channel of one connection; reopened when RabbitMQ closed it (after a channel
/// error).
pub(crate) struct Publishing {
    /// Whether exchanges are declared durable ([`crate::AmqpOptions::durable_exchanges`]).
    durable_exchanges: bool,
    /// `None` until reopened. A tokio mutex, held while a message is *sent* (not while its
    /// confirm is awaited), which keeps publishes in call order without serialising the round
    /// trips.
    slot: tokio::sync::Mutex<Option<Publisher>>,
}

impl Publishing {
    /// Opens the publishing channel of `connection`.
    pub(crate) async fn open(
        connection: &Connection,
        durable_exchanges: bool,
    ) -> lapin::Result<Self> {
        let publisher = Publisher::open(connection).await?;
        Ok(Self {
            durable_exchanges,
            slot: tokio::sync::Mutex::new(Some(publisher)),
        })
    }

    /// Declares `exchange` (once per channel) and publishes `payload` to it, then waits for
    /// RabbitMQ's confirm.
    pub(crate) async fn publish(
        &self,
        connection: &Connection,
        report: &impl Failures,
        exchange: &str,
        payload: &[u8],
    ) -> Result<(), BrokerError> {
        // Two tries at most: NOT_FOUND means the exchange vanished (an operator deleted it)
        // after it was declared on this channel. The message was certainly not routed, so
        // declaring again and retrying cannot deliver it twice.
        let mut retried = false;
        loop {
            let confirm = self
                .send(
                    connection,
                    report,
                    Target::Exchange(exchange),
                    payload,
                    BasicProperties::default(),
                )
                .await?;
            match confirm.await {
                Ok(Confirmation::Ack(_) | Confirmation::NotRequested) => return Ok(()),
                Ok(Confirmation::Nack(_)) => {
                    return Err(error::unavailable(
                        report.url(),
                        "RabbitMQ could not take the message (negative publisher confirm)"
                            .to_owned(),
                    ));
                }
                Err(e) if !retried && error::reply_code(&e) == Some(404) => {
                    tracing::debug!(exchange, "amqp exchange vanished, declaring it again");
                    retried = true;
                }
                Err(e) => return Err(report.failed(e, Doing::Using(exchange))),
            }
        }
    }

    /// Publishes `payload` with `properties` straight to `queue` (the default exchange, routing
    /// key = the queue, `mandatory`), then waits for RabbitMQ's confirm. A queue that does not
    /// exist (RabbitMQ returns the message) is a transient error: the caller declares it again.
    pub(crate) async fn publish_to_queue(
        &self,
        connection: &Connection,
        report: &impl Failures,
        queue: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BrokerError> {
        let confirm = self
            .send(
                connection,
                report,
                Target::Queue(queue),
                payload,
                properties,
            )
            .await?;
        match confirm.await {
            Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => Ok(()),
            Ok(Confirmation::Ack(Some(_returned))) => Err(error::unavailable(
                report.url(),
                format!("the history queue {queue:?} does not exist (was it deleted?)"),
            )),
            Ok(Confirmation::Nack(_)) => Err(error::unavailable(
                report.url(),
                format!(
                    "RabbitMQ could not store the entry in the history queue {queue:?} \
                     (negative publisher confirm)"
                ),
            )),
            Err(e) => Err(report.failed(e, Doing::History(queue))),
        }
    }

    /// Sends `payload` to `target` on the channel (opened again if RabbitMQ closed it; an
    /// exchange declared first, once per channel) and returns the confirm to wait for. A channel
    /// that failed is dropped: RabbitMQ closes a channel after a failed declaration.
    async fn send(
        &self,
        connection: &Connection,
        report: &impl Failures,
        target: Target<'_>,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<PublisherConfirm, BrokerError> {
        let mut slot = self.slot.lock().await;
        let publisher = match &mut *slot {
            Some(publisher) if publisher.channel.status().connected() => publisher,
            // Never opened, or closed by RabbitMQ after a channel error: a new one.
            other => other.insert(
                Publisher::open(connection)
                    .await
                    .map_err(|e| report.failed(e, target.doing()))?,
            ),
        };
        let (exchange, routing_key, options) = match target {
            Target::Exchange(exchange) => {
                if !publisher.declared.contains(exchange) {
                    let declared =
                        exchange::declare(&publisher.channel, exchange, self.durable_exchanges)
                            .await;
                    if let Err(e) = declared {
                        *slot = None;
                        return Err(report.failed(e, Doing::Declaring(exchange)));
                    }
                    publisher.declared.insert(exchange.to_owned());
                }
                (exchange, "", BasicPublishOptions::default())
            }
            Target::Queue(queue) => (
                "",
                queue,
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
            ),
        };
        let sent = publisher
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                payload,
                properties,
            )
            .await;
        // The lock is released on return: the next publish may be sent while this one's
        // confirm is on its way.
        sent.map_err(|e| {
            *slot = None;
            report.failed(e, target.doing())
        })
    }
}
