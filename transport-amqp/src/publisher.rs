//! The publishing channel: [`Publisher`], opened in confirm mode on each connection,
//! [`AmqpConnection::publish`], which declares the exchange once and waits for RabbitMQ's
//! confirm, and [`AmqpConnection::publish_to_queue`], the same straight to a (history) queue.

use std::collections::HashSet;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ExchangeKind, PublisherConfirm};
use sidecast_core::BrokerError;

use crate::connection::{AmqpConnection, AmqpState, exchange_options};
use crate::error::{self, Doing};

/// The publishing channel and the exchanges declared on it.
pub(crate) struct Publisher {
    channel: Channel,
    /// Exchanges already declared through this channel: declaring is a round trip, so it is
    /// done once per exchange and channel, not per message.
    declared: HashSet<String>,
}

impl AmqpConnection {
    /// Declares `exchange` (once per channel) and publishes `payload` to it, then waits for
    /// RabbitMQ's confirm.
    pub(crate) async fn publish(
        &self,
        state: &AmqpState,
        exchange: &str,
        payload: &[u8],
    ) -> Result<(), BrokerError> {
        // Two tries at most: NOT_FOUND means the exchange vanished (an operator deleted it)
        // after it was declared on this channel. The message was certainly not routed, so
        // declaring again and retrying cannot deliver it twice.
        let mut retried = false;
        loop {
            let confirm = {
                let mut slot = self.publisher.lock().await;
                let publisher = match &mut *slot {
                    Some(publisher) if publisher.channel.status().connected() => publisher,
                    // Never opened, or closed by RabbitMQ after a channel error: a new one.
                    other => other.insert(
                        open_publisher(&self.connection)
                            .await
                            .map_err(|e| state.failed(e, Doing::Using(exchange)))?,
                    ),
                };
                if !publisher.declared.contains(exchange) {
                    let declared = publisher
                        .channel
                        .exchange_declare(
                            exchange.into(),
                            ExchangeKind::Fanout,
                            exchange_options(state.options.durable_exchanges),
                            FieldTable::default(),
                        )
                        .await;
                    if let Err(e) = declared {
                        // RabbitMQ closes a channel after a failed declaration.
                        *slot = None;
                        return Err(state.failed(e, Doing::Declaring(exchange)));
                    }
                    publisher.declared.insert(exchange.to_owned());
                }
                let sent = publisher
                    .channel
                    .basic_publish(
                        exchange.into(),
                        "".into(),
                        BasicPublishOptions::default(),
                        payload,
                        BasicProperties::default(),
                    )
                    .await;
                match sent {
                    Ok(confirm) => confirm,
                    Err(e) => {
                        *slot = None;
                        return Err(state.failed(e, Doing::Using(exchange)));
                    }
                }
                // The lock is released here: the next publish may be sent while this one's
                // confirm is on its way.
            };
            match confirm.await {
                Ok(Confirmation::Ack(_) | Confirmation::NotRequested) => return Ok(()),
                Ok(Confirmation::Nack(_)) => {
                    return Err(error::unavailable(
                        &state.url,
                        "RabbitMQ could not take the message (negative publisher confirm)"
                            .to_owned(),
                    ));
                }
                Err(e) if !retried && error::reply_code(&e) == Some(404) => {
                    tracing::debug!(exchange, "amqp exchange vanished, declaring it again");
                    retried = true;
                }
                Err(e) => return Err(state.failed(e, Doing::Using(exchange))),
            }
        }
    }
}

impl AmqpConnection {
    /// Publishes `payload` with `properties` straight to `queue` (the default exchange, routing
    /// key = the queue, `mandatory`), then waits for RabbitMQ's confirm. A queue that does not
    /// exist (RabbitMQ returns the message) is a transient error: the caller declares it again.
    pub(crate) async fn publish_to_queue(
        &self,
        state: &AmqpState,
        queue: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BrokerError> {
        let confirm: PublisherConfirm = {
            let mut slot = self.publisher.lock().await;
            let publisher = match &mut *slot {
                Some(publisher) if publisher.channel.status().connected() => publisher,
                other => other.insert(
                    open_publisher(&self.connection)
                        .await
                        .map_err(|e| state.failed(e, Doing::History(queue)))?,
                ),
            };
            let sent = publisher
                .channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    payload,
                    properties,
                )
                .await;
            match sent {
                Ok(confirm) => confirm,
                Err(e) => {
                    *slot = None;
                    return Err(state.failed(e, Doing::History(queue)));
                }
            }
        };
        match confirm.await {
            Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => Ok(()),
            Ok(Confirmation::Ack(Some(_returned))) => Err(error::unavailable(
                &state.url,
                format!("the history queue {queue:?} does not exist (was it deleted?)"),
            )),
            Ok(Confirmation::Nack(_)) => Err(error::unavailable(
                &state.url,
                format!(
                    "RabbitMQ could not store the entry in the history queue {queue:?} \
                     (negative publisher confirm)"
                ),
            )),
            Err(e) => Err(state.failed(e, Doing::History(queue))),
        }
    }
}

/// A new channel in confirm mode.
pub(crate) async fn open_publisher(connection: &Connection) -> lapin::Result<Publisher> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(Publisher {
        channel,
        declared: HashSet::new(),
    })
}
