//! `sidecast serve`: run a node until Ctrl-C or SIGTERM, logging to stderr.

use anyhow::Context;
use clap::ValueEnum;
use figment::Figment;
use sidecast_core::Config;
use sidecast_core::config::LogFormat;

use crate::{BrokerArg, with_broker};

/// Options of `sidecast serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (server.bind).
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Message queue (broker.kind).
    #[arg(long, value_enum)]
    broker: Option<BrokerArg>,
    /// Log format (log.format).
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
}

/// The `--log-format` flag (log.format).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

/// Applies the flags over `figment`, then serves.
pub(crate) async fn run(args: ServeArgs, figment: Figment) -> anyhow::Result<()> {
    let mut figment = with_broker(figment, args.broker);
    if let Some(bind) = args.bind {
        figment = figment.merge(("server.bind", bind));
    }
    if let Some(format) = args.log_format {
        let name = match format {
            LogFormatArg::Text => "text",
            LogFormatArg::Json => "json",
        };
        figment = figment.merge(("log.format", name));
    }
    serve(Config::from_figment(&figment)?).await
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
