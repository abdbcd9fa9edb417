//! `sidecast emit`: publish one event through the configured broker, in Sidecast's format or
//! python-socketio's, for every node (or Flask-SocketIO server) to emit to its clients.

use anyhow::{Context, bail};
use clap::ValueEnum;
use figment::Figment;
use sidecast_core::config::{BrokerKind, IngressFormat};
use sidecast_core::{Config, Emitter, SharedBroker};

use crate::{BrokerArg, with_broker};

/// Options of `sidecast emit`: the event, and where and how it is published.
#[derive(Debug, clap::Args)]
pub(crate) struct EmitArgs {
    /// The event name clients listen to, such as `message`.
    event: String,
    /// The event data: a string, or JSON with --json.
    data: String,
    /// Parse DATA as JSON (an object, a number, a list...).
    #[arg(long)]
    json: bool,
    /// Only to sockets in this room (repeatable); `user:<name>` reaches one user.
    #[arg(long = "to", value_name = "ROOM")]
    to: Vec<String>,
    /// The namespace.
    #[arg(long, default_value = "/")]
    namespace: String,
    /// Message queue (broker.kind).
    #[arg(long, value_enum)]
    broker: Option<BrokerArg>,
    /// Message format: Sidecast's own, or python-socketio's, which Flask-SocketIO /
    /// python-socketio servers (5.15.1 or later) read from their message queue.
    #[arg(long, value_enum, default_value_t = WireFormat::Native)]
    format: WireFormat,
    /// Channel (AMQP: exchange) to publish on. Default: broker.channel; with
    /// `--format python-socketio`, the channel of the python-socketio `[[broker.ingress]]`,
    /// else `flask-socketio`.
    #[arg(long, value_name = "CHANNEL")]
    channel: Option<String>,
}

/// The format `sidecast emit` publishes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WireFormat {
    /// Sidecast's own JSON format (docs/protocol.md).
    Native,
    /// python-socketio / Flask-SocketIO's message-queue format.
    PythonSocketio,
}

/// Publishes the event once, then closes the broker connection.
pub(crate) async fn run(args: EmitArgs, figment: Figment) -> anyhow::Result<()> {
    let config = Config::from_figment(&with_broker(figment, args.broker))?;
    refuse_memory(&config, "emit", "POST /api/")?;
    let data = &args.data;
    let value = if args.json {
        serde_json::from_str(data).with_context(|| {
            format!("DATA is not valid JSON ({data:?}); quote it for the shell or drop --json to send it as a string")
        })?
    } else {
        serde_json::Value::String(data.clone())
    };
    let broker = sidecast_web::connect_broker(&config).await?;
    let result = emitter(&config, broker.clone(), &args)
        .emit(&args.event, value)
        .await;
    broker.close().await;
    result?;
    Ok(())
}

/// The emitter `--format`, `--channel`, `--to` and `--namespace` ask for, signed when the nodes
/// verify signatures.
fn emitter(config: &Config, broker: SharedBroker, args: &EmitArgs) -> Emitter {
    let mut emitter = match args.format {
        WireFormat::Native => Emitter::new(
            broker,
            args.channel
                .clone()
                .unwrap_or_else(|| config.broker.channel.clone()),
        )
        // Through the history when the nodes deliver from it (recovery.enabled).
        .with_history(config.recovery.enabled),
        WireFormat::PythonSocketio => {
            let channel = args.channel.clone().unwrap_or_else(|| {
                config
                    .broker
                    .ingress
                    .iter()
                    .find(|i| i.format == IngressFormat::PythonSocketio)
                    .map_or(IngressFormat::PythonSocketio.default_channel(), |i| {
                        i.channel()
                    })
                    .to_owned()
            });
            Emitter::python_socketio(broker, channel)
        }
    }
    .of(args.namespace.clone())
    .with_origin("sidecast-emit");
    for room in &args.to {
        emitter = emitter.to(room.clone());
    }
    if args.format == WireFormat::Native {
        emitter = signed(config, emitter);
    }
    emitter
}

/// Refuses the memory broker, whose messages cannot leave this process: `command` could reach no
/// server; `instead` names the server's HTTP endpoint that can.
pub(crate) fn refuse_memory(config: &Config, command: &str, instead: &str) -> anyhow::Result<()> {
    if config.broker.kind == BrokerKind::Memory {
        bail!(
            "broker.kind is \"memory\": its messages stay inside one process, so `sidecast {command}` \
             cannot reach a server running elsewhere. Run the server and `{command}` with the same \
             shared broker, e.g. SIDECAST_BROKER__KIND=redis SIDECAST_BROKER__URL=redis://127.0.0.1:6379 \
             (or [broker] kind/url in sidecast.toml), or go through the server's {instead}"
        );
    }
    Ok(())
}

/// `emitter`, signing when the nodes verify signatures (`broker.signing_key`): they drop unsigned
/// messages.
pub(crate) fn signed(config: &Config, emitter: Emitter) -> Emitter {
    if config.broker.signing_key.is_empty() {
        return emitter;
    }
    emitter.signed(std::sync::Arc::new(sidecast_core::Signer::new(
        config.broker.signing_key.expose(),
        std::time::Duration::from_millis(config.broker.signing_max_age_ms),
    )))
}
