//! `[log]`: the log filter and the format of log lines.

use serde::{Deserialize, Serialize};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `RUST_LOG`-style filter, such as `"info"` or `"sidecast_web=debug,info"`. The `RUST_LOG`
    /// environment variable, when set, wins.
    pub filter: String,
    /// `"text"` or `"json"`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            // lapin logs every lost connection at ERROR; the AMQP transport already logs each
            // outage once, with the fix.
            filter: "info,lapin=off".to_owned(),
            format: LogFormat::default(),
        }
    }
}
