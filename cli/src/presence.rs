//! `sidecast presence ROOM`: who is in a presence room, read from the bus outside any node.
//!
//! The command is a reader of the presence channel (`sidecast_core::presence::PresenceClient`):
//! it subscribes, asks every node for its state, and waits one heartbeat interval
//! (`presence.heartbeat_ms`, plus a margin): a node that is alive has answered or announced
//! itself by then, and one that announced itself is asked and answers within the wait.

use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use sidecast_core::Config;
use sidecast_core::presence::PresenceClient;

use crate::emit::refuse_memory;
use crate::{BrokerArg, with_broker};

/// `sidecast presence` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct PresenceArgs {
    /// The presence room.
    room: String,
    /// The namespace.
    #[arg(long, default_value = "/")]
    namespace: String,
    /// How long to wait for the nodes' answers, in milliseconds (default: presence.heartbeat_ms
    /// plus 500).
    #[arg(long, value_name = "MS")]
    wait_ms: Option<u64>,
    /// Message queue (broker.kind).
    #[arg(long, value_enum)]
    broker: Option<BrokerArg>,
}

/// Prints the room's presence as JSON (the answer of `GET /api/presence`).
pub(crate) async fn run(args: PresenceArgs, figment: Figment) -> anyhow::Result<()> {
    let config = Config::from_figment(&with_broker(figment, args.broker))?;
    refuse_memory(&config, "presence", "GET /api/presence")?;
    sidecast_core::rooms::validate_room(&args.room)
        .map_err(|e| anyhow::anyhow!("room {:?}: {e}", args.room))?;
    let presence = &config.presence;
    if !presence.rooms.is_empty()
        && !sidecast_core::presence::RoomFilter::new(&presence.rooms).tracks(&args.room, "")
    {
        anyhow::bail!(
            "room {:?} matches no pattern of presence.rooms ({:?}): its members are not tracked",
            args.room,
            presence.rooms
        );
    }
    let signer = (!config.broker.signing_key.is_empty()).then(|| {
        Arc::new(sidecast_core::Signer::new(
            config.broker.signing_key.expose(),
            Duration::from_millis(config.broker.signing_max_age_ms),
        ))
    });
    let broker = sidecast_web::connect_broker(&config).await?;
    let timeout =
        Duration::from_millis(presence.heartbeat_ms * u64::from(presence.missed_heartbeats));
    let client =
        PresenceClient::connect(broker.clone(), &config.broker.channel, signer, timeout).await?;
    let wait = Duration::from_millis(args.wait_ms.unwrap_or(presence.heartbeat_ms + 500));
    client.settle(wait).await;
    let room = client.room(&args.namespace, &args.room, presence.max_members);
    drop(client);
    broker.close().await;
    println!("{}", serde_json::to_string_pretty(&room)?);
    Ok(())
}
