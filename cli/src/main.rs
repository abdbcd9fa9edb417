//! The `sidecast` command: run a node, emit events from anywhere, inspect configuration, load-test.
//!
//! This file parses the command line and hands each subcommand to its module: [`serve`],
//! [`emit`], [`rooms`], [`presence`], [`show_config`], [`admin`] and [`bench`](mod@bench).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use figment::Figment;
use sidecast_core::Config;
use sidecast_core::config::BrokerKind;

mod admin;
mod bench;
mod emit;
mod presence;
mod rooms;
mod serve;
mod show_config;

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
    Serve(serve::ServeArgs),
    /// Emit an event to the connected clients of every node, through the message queue.
    Emit(emit::EmitArgs),
    /// Make sockets of every node join or leave rooms, disconnect them, or close rooms.
    #[command(subcommand)]
    Rooms(rooms::RoomsCommand),
    /// Who is in a presence room, on every node (read from the message queue).
    Presence(presence::PresenceArgs),
    /// Load-test a Socket.IO server (this one or any other): N clients, events at a rate, latency.
    Bench(bench::BenchArgs),
    /// Print the effective configuration, with secrets redacted.
    Config(show_config::ConfigArgs),
    /// Set up the Socket.IO Admin UI (`[admin]`): `sidecast admin hash-password`.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
}

/// The `--broker` flag of `serve` and `emit`: the message queue (broker.kind).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum BrokerArg {
    Memory,
    Redis,
    Amqp,
}

impl From<BrokerArg> for BrokerKind {
    fn from(kind: BrokerArg) -> Self {
        match kind {
            BrokerArg::Memory => BrokerKind::Memory,
            BrokerArg::Redis => BrokerKind::Redis,
            BrokerArg::Amqp => BrokerKind::Amqp,
        }
    }
}

/// `figment` with `--broker`, when given, over `broker.kind`.
fn with_broker(figment: Figment, broker: Option<BrokerArg>) -> Figment {
    match broker {
        Some(kind) => figment.merge(("broker.kind", BrokerKind::from(kind).as_str())),
        None => figment,
    }
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
    if let Command::Admin(command) = cli.command {
        // Needs no configuration.
        return admin::run(command);
    }
    let figment = Config::figment(cli.config.as_deref())?;
    match cli.command {
        Command::Serve(args) => serve::run(args, figment).await,
        Command::Emit(args) => emit::run(args, figment).await,
        Command::Rooms(command) => rooms::run(command, figment).await,
        Command::Presence(args) => presence::run(args, figment).await,
        Command::Bench(args) => bench::run(args, figment).await,
        Command::Config(args) => show_config::run(&args, &figment, cli.config.as_deref()).await,
        Command::Admin(_) => unreachable!("handled above"),
    }
}
