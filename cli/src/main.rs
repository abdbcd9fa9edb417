//! The `sidecast` command: run a node, emit events from anywhere, inspect configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use figment::Figment;
use sidecast_core::config::{BrokerKind, IngressFormat, LogFormat};
use sidecast_core::{Config, Emitter};

mod bench;

/// Push real-time events to browsers over Socket.IO, from anywhere.
#[derive(Debug, Parser)]
#[command(name = "sidecast", version, about)]
struct Cli {
    /// Configuration file (default: ./sidecast.toml when it exists).
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a server node.
    Serve {
        /// Address to listen on (server.bind).
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
        /// Message queue (broker.kind).
        #[arg(long, value_enum)]
        broker: Option<Kind>,
        /// Log format (log.format).
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
    },
    /// Emit an event to the connected clients of every node, through the message queue.
    Emit {
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
        broker: Option<Kind>,
        /// Message format: Sidecast's own, or python-socketio's, which Flask-SocketIO /
        /// python-socketio servers (5.15.1 or later) read from their message queue.
        #[arg(long, value_enum, default_value_t = WireFormat::Native)]
        format: WireFormat,
        /// Channel (AMQP: exchange) to publish on. Default: broker.channel; with
        /// `--format python-socketio`, the channel of the python-socketio `[[broker.ingress]]`,
        /// else `flask-socketio`.
        #[arg(long, value_name = "CHANNEL")]
        channel: Option<String>,
    },
    /// Load-test a Socket.IO server (this one or any other): N clients, events at a rate, latency.
    Bench(bench::BenchArgs),
    /// Print the effective configuration, with secrets redacted.
    Config {
        /// Only validate: exit non-zero with the key, the file and the fix when invalid.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Memory,
    Redis,
    Amqp,
}

impl From<Kind> for BrokerKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Memory => BrokerKind::Memory,
            Kind::Redis => BrokerKind::Redis,
            Kind::Amqp => BrokerKind::Amqp,
        }
    }
}

/// The format `sidecast emit` publishes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WireFormat {
    /// Sidecast's own JSON format (docs/protocol.md).
    Native,
    /// python-socketio / Flask-SocketIO's message-queue format.
    PythonSocketio,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let figment = Config::figment(cli.config.as_deref())?;
    match cli.command {
        Command::Serve {
            bind,
            broker,
            log_format,
        } => {
            let mut figment = with_broker(figment, broker);
            if let Some(bind) = bind {
                figment = figment.merge(("server.bind", bind));
            }
            if let Some(format) = log_format {
                let name = match format {
                    LogFormatArg::Text => "text",
                    LogFormatArg::Json => "json",
                };
                figment = figment.merge(("log.format", name));
            }
            serve(Config::from_figment(&figment)?).await
        }
        Command::Emit {
            event,
            data,
            json,
            to,
            namespace,
            broker,
            format,
            channel,
        } => {
            let config = Config::from_figment(&with_broker(figment, broker))?;
            let target = Target {
                format,
                channel,
                rooms: to,
                namespace,
            };
            emit(config, &event, &data, json, target).await
        }
        Command::Bench(args) => bench::run(args, figment).await,
        Command::Config { check } => {
            let config = Config::from_figment(&figment)?;
            if check {
                let source = cli
                    .config
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "defaults, sidecast.toml and SIDECAST_* variables".into());
                println!("configuration is valid ({source})");
            } else {
                // Show the URL in effect even when it comes from the broker kind's default.
                let mut shown = config.redacted();
                shown.broker.url = Some(config.redacted_broker_url());
                print!("{}", shown.to_toml());
            }
            Ok(())
        }
    }
}

fn with_broker(figment: Figment, broker: Option<Kind>) -> Figment {
    match broker {
        Some(kind) => figment.merge(("broker.kind", BrokerKind::from(kind).as_str())),
        None => figment,
    }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.filter))
        .unwrap_or_else(|e| {
            eprintln!(
                "warning: log.filter = {:?} is invalid ({e}); using \"info\"",
                config.log.filter
            );
            EnvFilter::new("info")
        });
    // Logs go to stderr so that stdout stays for command output; colours only on a terminal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(&config);
    let bind = config.server.bind;
    let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| {
        format!("cannot listen on {bind}; choose another address with --bind or server.bind")
    })?;
    let address = listener.local_addr()?;
    let state = sidecast_web::Sidecast::builder()
        .config(config)
        .build()
        .await?;
    tracing::info!(
        url = %format!("http://{address}/"),
        broker = %state.config().broker.kind,
        socketio_path = %state.config().server.socketio_path,
        "listening"
    );
    sidecast_web::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Where and how `sidecast emit` publishes.
struct Target {
    format: WireFormat,
    channel: Option<String>,
    rooms: Vec<String>,
    namespace: String,
}

async fn emit(
    config: Config,
    event: &str,
    data: &str,
    json: bool,
    target: Target,
) -> anyhow::Result<()> {
    if config.broker.kind == BrokerKind::Memory {
        bail!(
            "broker.kind is \"memory\": its events stay inside one process, so `sidecast emit` \
             cannot reach a server running elsewhere. Run the server and `emit` with the same \
             shared broker, e.g. SIDECAST_BROKER__KIND=redis SIDECAST_BROKER__URL=redis://127.0.0.1:6379 \
             (or [broker] kind/url in sidecast.toml), or publish through the server's POST /api/"
        );
    }
    let value = if json {
        serde_json::from_str(data).with_context(|| {
            format!("DATA is not valid JSON ({data:?}); quote it for the shell or drop --json to send it as a string")
        })?
    } else {
        serde_json::Value::String(data.to_owned())
    };
    let broker = sidecast_web::connect_broker(&config).await?;
    let mut emitter = match target.format {
        WireFormat::Native => Emitter::new(
            broker.clone(),
            target
                .channel
                .unwrap_or_else(|| config.broker.channel.clone()),
        ),
        WireFormat::PythonSocketio => {
            let channel = target.channel.unwrap_or_else(|| {
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
            Emitter::python_socketio(broker.clone(), channel)
        }
    }
    .of(target.namespace)
    .with_origin("sidecast-emit");
    for room in target.rooms {
        emitter = emitter.to(room);
    }
    if target.format == WireFormat::Native && !config.broker.signing_key.is_empty() {
        // Nodes with a signing key drop unsigned messages.
        emitter = emitter.signed(std::sync::Arc::new(sidecast_core::Signer::new(
            config.broker.signing_key.expose(),
            std::time::Duration::from_millis(config.broker.signing_max_age_ms),
        )));
    }
    let result = emitter.emit(event, value).await;
    broker.close().await;
    result?;
    Ok(())
}
