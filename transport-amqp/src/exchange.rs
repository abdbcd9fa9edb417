//! How a channel's exchange is declared: a fanout exchange with the settings of kombu's
//! `Exchange(name, type="fanout", durable=False)` (not auto-deleted, not internal, no
//! arguments), so that python-socketio / Flask-SocketIO and Sidecast share it, with the
//! durability of [`crate::AmqpOptions::durable_exchanges`].

use lapin::options::ExchangeDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};

/// Declares the fanout exchange `name` on `channel`. RabbitMQ refuses (and closes the channel)
/// when it exists with other settings.
pub(crate) async fn declare(channel: &Channel, name: &str, durable: bool) -> lapin::Result<()> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}
