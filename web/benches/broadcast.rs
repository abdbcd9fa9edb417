//! The Socket.IO side of the hot path, in process: packet encode, and one broadcast to 1,000
//! sockets.
//!
//! `cargo bench -p sidecast-web --bench broadcast`. What is measured:
//!
//! * `packet_encode`: turning one event (`"message"`, one small object argument) into the Socket.IO
//!   text packet `2["message",{...}]`, as socketioxide does once per broadcast (common parser).
//! * `broadcast_1000/emit`: `io.emit(..)` to 1,000 connected sockets of a real socketioxide server,
//!   until every socket's writer task handed the packet on: the encode, the per-socket queueing and
//!   the 1,000 task wake-ups. The sockets are socketioxide's test-harness sockets (feature
//!   `__test_harness`), so there is no websocket framing and no system call: this is the server's
//!   in-process share of a delivery, not the kernel's.
//! * `broadcast_1000/decode_and_emit`: the same preceded by decoding the broker payload, i.e. what
//!   the relay does for each message it receives.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use sidecast_core::Envelope;
use sidecast_core::codec::native;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use socketioxide_core::packet::Packet;
use socketioxide_core::parser::Parse;
use socketioxide_parser_common::CommonParser;
use tokio::sync::mpsc::Receiver;

const SOCKETS: usize = 1_000;

fn body() -> Value {
    json!({"t": 1_764_100_000_123_456_u64, "seq": 4711})
}

fn packet_encode(c: &mut Criterion) {
    let body = body();
    c.bench_function("packet_encode", |b| {
        b.iter(|| {
            let parser = CommonParser;
            // A one-element tuple: spread as one Socket.IO argument, as the relay's `Args` does.
            let value = parser
                .encode_value(black_box(&(&body,)), Some("message"))
                .unwrap();
            parser.encode(Packet::event("/", value))
        });
    });
}

/// A server with `SOCKETS` connected test sockets, and their receiving ends.
fn server(rt: &tokio::runtime::Runtime) -> (SocketIo, Vec<Receiver<engineioxide::Packet>>) {
    rt.block_on(async {
        let (_svc, io) = SocketIo::builder().max_buffer_size(1024).build_svc();
        io.ns("/", async |_socket: SocketRef| {});
        // Each test socket waits 10 ms for its connect: create them all at once.
        let sockets =
            futures_util::future::join_all((0..SOCKETS).map(|_| io.new_dummy_sock("/", ()))).await;
        let mut receivers = Vec::with_capacity(SOCKETS);
        for (_tx, mut rx) in sockets {
            // The connect answer.
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("socket connected")
                .expect("connect packet");
            receivers.push(rx);
        }
        assert_eq!(io.sockets().len(), SOCKETS);
        (io, receivers)
    })
}

async fn drain(receivers: &mut [Receiver<engineioxide::Packet>]) {
    for rx in receivers {
        black_box(rx.recv().await.expect("packet"));
    }
}

fn broadcast(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (io, mut receivers) = server(&rt);
    let body = body();
    let mut envelope = Envelope::new("message", body.clone());
    envelope.origin = Some("0b6f1c9e-2d7a-4c39-9a51-4f0e1d2c3b4a".to_owned());
    envelope.ts = Some(1_764_100_000_123);
    let payload = native::encode(&envelope);

    let mut group = c.benchmark_group("broadcast_1000");
    group.throughput(Throughput::Elements(SOCKETS as u64));
    group.bench_function("emit", |b| {
        b.iter(|| {
            rt.block_on(async {
                io.emit("message", &(&body,)).await.unwrap();
                drain(&mut receivers).await;
            });
        });
    });
    group.bench_function("decode_and_emit", |b| {
        b.iter(|| {
            rt.block_on(async {
                let envelope = native::decode(black_box(&payload)).unwrap();
                let op = io.of(&envelope.namespace).unwrap();
                op.emit(&envelope.event, &(&envelope.data[0],))
                    .await
                    .unwrap();
                drain(&mut receivers).await;
            });
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = packet_encode, broadcast
}
criterion_main!(benches);
