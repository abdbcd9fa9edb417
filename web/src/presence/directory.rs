//! The read side ([`SocketDirectory`]) over this node's presence replica: every socket of the
//! cluster and the changes as they are applied.

use tokio::sync::broadcast;

use crate::presence::convert::record;
use crate::presence::tracker::Presence;
use crate::presence::view::{NodeSummary, SocketDirectory, SocketRecord, ViewChange};

impl SocketDirectory for Presence {
    fn sockets(&self) -> Vec<SocketRecord> {
        self.replica()
            .sockets()
            .map(|(node, entry)| record(node, entry.clone()))
            .collect()
    }

    fn nodes(&self) -> Vec<NodeSummary> {
        let mut nodes: Vec<NodeSummary> = self
            .replica()
            .nodes()
            .into_iter()
            .map(|(node, sockets, last_seen_ms)| NodeSummary {
                node,
                sockets,
                last_seen_ms,
            })
            .collect();
        if !nodes.iter().any(|n| n.node == self.node_id) {
            // This node, before its first socket.
            nodes.push(NodeSummary {
                node: self.node_id.clone(),
                sockets: 0,
                last_seen_ms: sidecast_core::envelope::now_millis(),
            });
        }
        nodes
    }

    fn changes(&self) -> broadcast::Receiver<ViewChange> {
        self.view_changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt;
    use rust_socketio::asynchronous::ClientBuilder;
    use sidecast_core::Config;
    use sidecast_core::config::{BrokerKind, PolicyKind, PolicyList};

    use crate::presence::view::ViewChange;

    /// With the full directory on, every socket is in the view with all its rooms and its
    /// handshake, without its cookie and authorization headers; presence rooms stay off.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_full_directory_lists_every_socket_with_its_rooms_and_handshake() {
        let mut config = Config::default();
        config.broker.kind = BrokerKind::Memory;
        config.recovery.enabled = false;
        config.auth.policy = PolicyList::One(PolicyKind::AllowAll);
        // The transport is looked at again on every heartbeat.
        config.presence.heartbeat_ms = 100;
        let node = crate::Sidecast::builder()
            .config(config)
            .full_directory(true)
            .build()
            .await
            .unwrap();
        let directory = node.socket_directory().expect("the full directory is on");
        let mut changes = directory.changes();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/ws/socket.io/", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(crate::serve(listener, node.clone(), async move {
            let _ = stopped.await;
        }));
        let client = ClientBuilder::new(url)
            .reconnect(false)
            .opening_header("Cookie", "a=b")
            .opening_header("Authorization", "Bearer secret")
            .opening_header("X-Shown", "yes")
            .on("noop", |_, _| async {}.boxed())
            .connect()
            .await
            .unwrap();
        let record = match tokio::time::timeout(Duration::from_secs(10), changes.recv())
            .await
            .unwrap()
            .unwrap()
        {
            ViewChange::SocketConnected(record) => record,
            other => panic!("{other:?}"),
        };
        assert_eq!(record.node, node.node_id());
        assert_eq!(record.nsp, "/");
        assert_eq!(record.user.as_deref(), Some("anonymous"));
        assert!(
            record.rooms.contains("user:anonymous"),
            "{:?}",
            record.rooms
        );
        assert!(!record.rooms.contains(&record.sid), "own-id room left out");
        let handshake = record.handshake.clone().unwrap();
        let headers = &handshake["headers"];
        assert_eq!(headers["x-shown"], "yes", "{handshake}");
        assert!(headers.get("cookie").is_none() && headers.get("authorization").is_none());
        for key in [
            "address", "query", "issued", "secure", "time", "url", "xdomain",
        ] {
            assert!(handshake.get(key).is_some(), "{key}: {handshake}");
        }
        assert_eq!(handshake["address"], "127.0.0.1");
        assert_eq!(directory.sockets().len(), 1);
        assert_eq!(directory.nodes()[0].sockets, 1);
        // The client starts with polling and upgrades: the record follows.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while directory.sockets()[0].transport != "websocket" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                directory.sockets()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Not a presence room: the presence API stays off.
        assert!(node.presence("/", "user:anonymous").is_none());

        client.disconnect().await.unwrap();
        loop {
            let change = tokio::time::timeout(Duration::from_secs(10), changes.recv())
                .await
                .unwrap()
                .unwrap();
            if let ViewChange::SocketDisconnected { sid, reason, .. } = change {
                assert_eq!(sid, record.sid);
                assert_eq!(reason, "client namespace disconnect");
                break;
            }
        }
        assert!(directory.sockets().is_empty());
        let _ = stop.send(());
        served.await.unwrap().unwrap();
    }
}
