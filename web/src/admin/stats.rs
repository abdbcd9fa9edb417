//! Every node's `server_stats`, through the broker: each node publishes its own figures on
//! `<broker.channel>:admin` every `admin.stats_interval_ms`, and relays every node's (its own
//! included) to the admin sockets connected to it. So one UI, connected to any node, sees every
//! node under its own `serverId`, on Redis, RabbitMQ or the memory broker alike.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sidecast_core::envelope::now_millis;
use sidecast_core::{ChannelSpec, SharedBroker, Signer};
use socketioxide::{SocketIo, TransportType};
use tokio::task::JoinHandle;

/// The channel the nodes' stats travel on.
pub(crate) fn channel(base: &str) -> String {
    format!("{base}:admin")
}

/// A message on the stats channel: `{"v": 1, "kind": "server_stats", "stats": {...}}`, `stats`
/// being the UI's `server_stats` object as is.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StatsMessage {
    /// The format's version, 1.
    pub(crate) v: u32,
    /// `"server_stats"`; other kinds are ignored (room for later ones).
    pub(crate) kind: String,
    /// The figures.
    pub(crate) stats: Value,
}

/// What the task needs.
pub(crate) struct Stats {
    pub(crate) io: SocketIo,
    pub(crate) broker: SharedBroker,
    pub(crate) channel: String,
    pub(crate) signer: Option<Arc<Signer>>,
    /// The namespaces whose sockets are counted (`server.namespaces`).
    pub(crate) app_namespaces: Vec<String>,
    /// The admin namespace, whose sockets receive every node's stats.
    pub(crate) admin_namespace: String,
    pub(crate) server_id: String,
    pub(crate) interval: Duration,
}

impl Stats {
    /// Waits for the node's start (`started` resolves `false` if it failed), subscribes to the
    /// stats channel, then publishes this node's stats on every tick and relays what arrives,
    /// until the broker closes the subscription (the node's shutdown).
    pub(crate) fn spawn(
        self,
        started: impl Future<Output = bool> + Send + 'static,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            if !started.await {
                return;
            }
            let mut subscription = match self
                .broker
                .subscribe(&[ChannelSpec::exact(self.channel.clone())])
                .await
            {
                Ok(subscription) => subscription,
                Err(e) => {
                    tracing::error!(channel = %self.channel, error = %e, "the admin stats channel could not be subscribed; the Admin UI sees no server_stats from this node");
                    return;
                }
            };
            let began = Instant::now();
            let mut ticks = tokio::time::interval(self.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => self.publish(began).await,
                    received = subscription.recv() => {
                        let Some(message) = received else { return };
                        self.relay(&message.payload).await;
                    }
                }
            }
        })
    }

    /// This node's figures, as the UI's `server_stats`.
    pub(crate) fn figures(&self, began: Instant) -> Value {
        let mut clients = 0_usize;
        let mut polling = 0_usize;
        let mut namespaces = Vec::with_capacity(self.app_namespaces.len());
        for name in &self.app_namespaces {
            let sockets = self.io.of(name).map(|op| op.sockets()).unwrap_or_default();
            clients += sockets.len();
            polling += sockets
                .iter()
                .filter(|s| s.transport_type() == TransportType::Polling)
                .count();
            namespaces.push(json!({"name": name, "socketsCount": sockets.len()}));
        }
        json!({
            "serverId": self.server_id,
            "hostname": hostname(),
            "pid": std::process::id(),
            "uptime": began.elapsed().as_secs_f64().round(),
            "clientsCount": clients,
            "pollingClientsCount": polling,
            "aggregatedEvents": [],
            "namespaces": namespaces,
        })
    }

    async fn publish(&self, began: Instant) {
        let message = StatsMessage {
            v: 1,
            kind: "server_stats".to_owned(),
            stats: self.figures(began),
        };
        let json = serde_json::to_vec(&message).unwrap_or_default();
        let payload = match &self.signer {
            Some(signer) => signer.seal(&json, now_millis()),
            None => json,
        };
        if let Err(e) = self
            .broker
            .publish(&self.channel, Bytes::from(payload))
            .await
        {
            // The next tick tries again; the UI marks the node unhealthy after 10 s.
            tracing::debug!(channel = %self.channel, error = %e, "admin stats not published");
        }
    }

    async fn relay(&self, payload: &[u8]) {
        let Some(stats) = decode(payload, self.signer.as_deref(), now_millis()) else {
            tracing::debug!(channel = %self.channel, "admin stats message dropped (unreadable or badly signed)");
            return;
        };
        if let Some(admins) = self.io.of(&self.admin_namespace) {
            let _ = admins.emit("server_stats", &stats).await;
        }
    }
}

/// The `server_stats` object of a stats channel message received at `now_ms`, verified when the
/// bus is signed (`signer`); `None` when it is unreadable, badly signed, of another version or
/// kind, or its stats are not an object.
pub fn decode(payload: &[u8], signer: Option<&Signer>, now_ms: u64) -> Option<Value> {
    let opened;
    let json = match signer {
        None => payload,
        Some(signer) => {
            opened = signer.open(payload, now_ms).ok()?;
            &opened
        }
    };
    serde_json::from_slice::<StatsMessage>(json)
        .ok()
        .filter(|m| m.v == 1 && m.kind == "server_stats" && m.stats.is_object())
        .map(|m| m.stats)
}

/// The machine's name, as the UI shows it (`os.hostname()` in socket.io).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}
