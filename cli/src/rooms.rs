//! `sidecast rooms join|leave|disconnect|close`: publish one room operation through the
//! configured broker, for every node to apply to its own sockets.

use anyhow::bail;
use clap::Subcommand;
use figment::Figment;
use sidecast_core::codec::control::Control;
use sidecast_core::{Config, Emitter};

use crate::emit::{refuse_memory, signed};
use crate::{BrokerArg, with_broker};

/// The room operations.
#[derive(Debug, Subcommand)]
pub(crate) enum RoomsCommand {
    /// The sockets addressed by --to (everyone without it) join ROOM....
    Join {
        /// The rooms to join.
        #[arg(required = true, value_name = "ROOM")]
        rooms: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// The sockets addressed by --to (everyone without it) leave ROOM....
    Leave {
        /// The rooms to leave.
        #[arg(required = true, value_name = "ROOM")]
        rooms: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Disconnect the sockets in the rooms named by --to (at least one).
    Disconnect {
        #[command(flatten)]
        target: Target,
        /// A reason the clients receive (event `sidecast:disconnect`) before they are disconnected.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Every socket in ROOM... leaves it.
    Close {
        /// The rooms to close.
        #[arg(required = true, value_name = "ROOM")]
        rooms: Vec<String>,
        /// The namespace.
        #[arg(long, default_value = "/")]
        namespace: String,
        /// Message queue (broker.kind).
        #[arg(long, value_enum)]
        broker: Option<BrokerArg>,
    },
}

/// Which sockets an operation concerns, and through which broker it goes.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// Sockets in this room (repeatable): `user:<name>` is a user's sockets, a socket id one
    /// socket.
    #[arg(long = "to", value_name = "ROOM")]
    to: Vec<String>,
    /// Leave out the sockets in this room (repeatable).
    #[arg(long = "except", value_name = "ROOM")]
    except: Vec<String>,
    /// The namespace.
    #[arg(long, default_value = "/")]
    namespace: String,
    /// Message queue (broker.kind).
    #[arg(long, value_enum)]
    broker: Option<BrokerArg>,
}

impl Target {
    fn emitter(&self, emitter: Emitter) -> Emitter {
        let mut emitter = emitter.of(self.namespace.clone());
        for room in &self.to {
            emitter = emitter.to(room.clone());
        }
        for room in &self.except {
            emitter = emitter.except(room.clone());
        }
        emitter
    }
}

/// Publishes the operation once, then closes the broker connection.
pub(crate) async fn run(command: RoomsCommand, figment: Figment) -> anyhow::Result<()> {
    let broker_arg = match &command {
        RoomsCommand::Join { target, .. }
        | RoomsCommand::Leave { target, .. }
        | RoomsCommand::Disconnect { target, .. } => target.broker,
        RoomsCommand::Close { broker, .. } => *broker,
    };
    if let RoomsCommand::Disconnect { target, .. } = &command
        && target.to.is_empty()
    {
        bail!(
            "`sidecast rooms disconnect` needs --to ROOM (at least one): nothing disconnects every socket"
        );
    }
    let config = Config::from_figment(&with_broker(figment, broker_arg))?;
    refuse_memory(&config, "rooms", "POST /api/rooms")?;
    let broker = sidecast_web::connect_broker(&config).await?;
    let emitter = signed(
        &config,
        Emitter::new(broker.clone(), config.broker.channel.clone())
            .with_origin("sidecast-rooms")
            .with_history(config.recovery.enabled),
    );
    let result = match command {
        RoomsCommand::Join { rooms, target } => target.emitter(emitter).join_all(rooms).await,
        RoomsCommand::Leave { rooms, target } => target.emitter(emitter).leave_all(rooms).await,
        RoomsCommand::Disconnect { target, reason } => {
            target.emitter(emitter).disconnect(reason.as_deref()).await
        }
        RoomsCommand::Close {
            rooms, namespace, ..
        } => {
            emitter
                .control(Control::CloseRoom { rooms, namespace })
                .await
        }
    };
    broker.close().await;
    result?;
    Ok(())
}
