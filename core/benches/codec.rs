//! Envelope decode and encode: what the relay does once per broker message.
//!
//! `cargo bench -p sidecast-core --bench codec`. The payloads are what `POST /api/` publishes (a
//! small object body, the node's origin and a timestamp), a hand-typed `redis-cli` message, and a
//! 1 KiB body.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sidecast_core::Envelope;
use sidecast_core::codec::native;

fn payloads() -> Vec<(&'static str, Vec<u8>)> {
    let mut api = Envelope::new(
        "message",
        json!({"t": 1_764_100_000_123_456_u64, "seq": 4711}),
    );
    api.origin = Some("0b6f1c9e-2d7a-4c39-9a51-4f0e1d2c3b4a".to_owned());
    api.ts = Some(1_764_100_000_123);
    let mut large = Envelope::new("message", json!({"text": "x".repeat(1000), "seq": 1}));
    large.rooms = vec!["user:Gonzalo".to_owned()];
    vec![
        ("api_publish", native::encode(&api)),
        (
            "hand_typed",
            br#"{"v":1,"event":"message","data":"Hi"}"#.to_vec(),
        ),
        ("1KiB_body_to_room", native::encode(&large)),
    ]
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("native_decode");
    for (name, payload) in payloads() {
        group.throughput(Throughput::Bytes(payload.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| native::decode(black_box(&payload)).unwrap());
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("native_encode");
    for (name, payload) in payloads() {
        let envelope = native::decode(&payload).unwrap();
        group.bench_function(name, |b| b.iter(|| native::encode(black_box(&envelope))));
    }
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
