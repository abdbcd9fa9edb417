//! A client that stops reading, and a flood of events paced on a client that does read.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use sidecast_core::Envelope;
use sidecast_core::codec::native;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{SioClient, TestServer};

/// A Socket.IO client over a raw websocket that connects with `cookie` and then never reads.
/// The raw websocket of a stalled client.
pub type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn stalled_client(server: &TestServer, cookie: &str) -> RawSocket {
    let url = format!(
        "{}?EIO=4&transport=websocket",
        server.socket_url().replace("http://", "ws://")
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with('0'), "engine.io open");
    ws.send(Message::text("40")).await.unwrap();
    // engine.io pings at once; answer until the Socket.IO connect is acknowledged.
    loop {
        let frame = ws.next().await.unwrap().unwrap();
        let text = frame.to_text().unwrap();
        if text == "2" {
            ws.send(Message::text("3")).await.unwrap();
            continue;
        }
        assert!(text.starts_with("40"), "{text}");
        break;
    }
    // From here on nobody reads: the server's writes pile up.
    ws
}

pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    kb * 1024
}

/// Events per batch: half the socket buffer of these tests, so that a reading client never
/// overflows while a stalled one does.
pub const BATCH: usize = 32;

/// Publishes `batches × BATCH` events of `size` bytes straight on the bus, pacing on `reader` so
/// that nothing but the stalled socket can fall behind.
pub async fn flood(server: &TestServer, reader: &mut SioClient, batches: usize, size: usize) {
    let filler = "x".repeat(size);
    for batch in 0..batches {
        for i in 0..BATCH {
            let envelope = Envelope::new("bulk", json!({"batch": batch, "i": i, "pad": filler}));
            server
                .state
                .broker()
                .publish("sidecast", Bytes::from(native::encode(&envelope)))
                .await
                .unwrap();
        }
        // The reading client gets every event of the batch, in order, despite the stalled one.
        for i in 0..BATCH {
            let (event, args) = reader.next_event().await;
            assert_eq!(event, "bulk");
            assert_eq!(args[0]["i"], json!(i));
            assert_eq!(args[0]["batch"], json!(batch));
        }
    }
}
