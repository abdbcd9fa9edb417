//! A Rust Socket.IO client nobody here wrote (`rust_socketio` 0.6, async), written as its users
//! write it, against `sidecast serve` in its default configuration (recovery on), on a real
//! Redis and a real RabbitMQ (`broker.kind = "amqp"`), each websocket only and on the default
//! transport (polling, then upgrade).
//!
//! Unchanged, a `message` handler that takes one argument decodes every event, and the catch-all
//! (`on_any`) sees exactly the published arguments and no event of Sidecast's own. Opted in with
//! `auth: {"offset": ...}`, the handler takes the offset as a second argument, a report
//! (`sidecast:recovery`) arrives, and a reconnect with the last offset replays what was missed.
//! Events are published as the original app's page does: `POST /api/` with the session of
//! `GET /login`.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../web/tests/common/mod.rs"]
mod sio;

use std::time::Duration;

use common::{Served, serve};
use futures_util::FutureExt;
use futures_util::future::join_all;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::{Value, json};
use sidecast_testkit::{RabbitMqServer, RedisServer};
use sio::{login_at as login, post_json};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// How long one awaited delivery or connect may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// The reserved event of recovery.
const RECOVERY: &str = "sidecast:recovery";

/// A node on `kind` at `url`, configured by environment only, on a channel of its own.
fn node(kind: &str, url: &str, label: &str) -> Served {
    let channel = sidecast_testkit::unique_channel(label);
    serve(
        &["--bind", "127.0.0.1:0"],
        &[
            ("SIDECAST_BROKER__KIND", kind),
            ("SIDECAST_BROKER__URL", url),
            ("SIDECAST_BROKER__CHANNEL", &channel),
        ],
    )
}

/// `POST /api/` `{"channel": "message", "body": body}` with the session, expecting 200.
async fn post(base: &str, cookie: &str, body: Value) {
    let response = post_json(base, cookie, json!({"channel": "message", "body": body})).await;
    assert_eq!(response.status(), 200, "POST /api/ {body}");
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": true})
    );
}

/// The object body: it must arrive as one argument, an object.
fn object() -> Value {
    json!({"text": "héllo ✓", "n": 42, "ok": true, "none": null, "list": [1, "two", {"three": 3}]})
}

/// What the client's callbacks saw.
enum Seen {
    Connected,
    /// The `message` handler: the arguments it decoded, or why they did not decode.
    Handler(Result<Vec<Value>, String>),
    /// The catch-all: the event name and its exact arguments.
    Any(String, Vec<Value>),
}

/// One client under test and what it saw, in arrival order.
struct Probe {
    label: String,
    transport: TransportType,
    opted_in: bool,
    tx: mpsc::UnboundedSender<Seen>,
    rx: mpsc::UnboundedReceiver<Seen>,
    client: Option<Client>,
    handler: Vec<Result<Vec<Value>, String>>,
    any: Vec<(String, Vec<Value>)>,
}

impl Probe {
    fn new(websocket_only: bool, opted_in: bool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (label, transport) = if websocket_only {
            ("websocket only", TransportType::Websocket)
        } else {
            ("default transport", TransportType::Any)
        };
        Self {
            label: label.to_owned(),
            transport,
            opted_in,
            tx,
            rx,
            client: None,
            handler: Vec::new(),
            any: Vec::new(),
        }
    }

    /// Connects to `socket_url` with the session `cookie` and `auth`; returns once connected.
    async fn connect(&mut self, socket_url: &str, cookie: &str, auth: Option<Value>) {
        let (connected, handler, any) = (self.tx.clone(), self.tx.clone(), self.tx.clone());
        let opted_in = self.opted_in;
        let mut builder = ClientBuilder::new(socket_url)
            .transport_type(self.transport.clone())
            .reconnect(false)
            .opening_header("Cookie", cookie)
            .on(rust_socketio::Event::Connect, move |_, _| {
                let _ = connected.send(Seen::Connected);
                async {}.boxed()
            })
            // The handler an app writes: its arguments decoded into the types it expects.
            .on("message", move |payload, _| {
                let args = match payload {
                    Payload::Text(values) => Value::Array(values),
                    other => json!([format!("{other:?}")]),
                };
                let decoded = if opted_in {
                    serde_json::from_value::<(Value, String)>(args)
                        .map(|(data, offset)| vec![data, Value::String(offset)])
                } else {
                    serde_json::from_value::<(Value,)>(args).map(|(data,)| vec![data])
                };
                let _ = handler.send(Seen::Handler(decoded.map_err(|e| e.to_string())));
                async {}.boxed()
            })
            .on_any(move |event, payload, _| {
                let values = match payload {
                    Payload::Text(values) => values,
                    other => vec![Value::String(format!("{other:?}"))],
                };
                let _ = any.send(Seen::Any(event.as_str().to_owned(), values));
                async {}.boxed()
            });
        if let Some(auth) = auth {
            builder = builder.auth(auth);
        }
        self.client = Some(builder.connect().await.unwrap());
        self.until("connected", |_| false, true).await;
    }

    /// Pulls what the callbacks saw until `done(self)` holds (or, with `connect`, until the
    /// next connect); fails the test after [`DEADLINE`].
    async fn until(&mut self, what: &str, done: impl Fn(&Self) -> bool, connect: bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done(self) {
            let seen = timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.rx.recv(),
            )
            .await;
            match seen {
                Ok(Some(Seen::Connected)) if connect => return,
                Ok(Some(Seen::Connected)) => {}
                Ok(Some(Seen::Handler(result))) => self.handler.push(result),
                Ok(Some(Seen::Any(event, args))) => self.any.push((event, args)),
                Ok(None) | Err(_) => panic!(
                    "{}: no {what} within {DEADLINE:?}; seen: handler {:?}, any {:?}",
                    self.label, self.handler, self.any
                ),
            }
        }
    }

    /// Until an event whose first argument is `data` arrived.
    async fn until_data(&mut self, data: &Value) {
        let what = format!("event {data}");
        self.until(
            &what,
            |p| p.any.iter().any(|(_, args)| args.first() == Some(data)),
            false,
        )
        .await;
    }

    /// Until the `n`-th recovery report arrived.
    async fn until_report(&mut self, n: usize) {
        let what = format!("recovery report #{n}");
        self.until(
            &what,
            |p| p.any.iter().filter(|(e, _)| e == RECOVERY).count() >= n,
            false,
        )
        .await;
    }

    /// The last argument of the last event: the offset an opted-in app keeps.
    fn last_offset(&self) -> Value {
        self.any
            .last()
            .and_then(|(_, args)| args.last().cloned())
            .unwrap_or_default()
    }

    async fn disconnect(&mut self) {
        if let Some(client) = self.client.take() {
            client.disconnect().await.unwrap();
        }
    }
}

/// A websocket-only and a default-transport probe.
fn probes(opted_in: bool) -> [Probe; 2] {
    [Probe::new(true, opted_in), Probe::new(false, opted_in)]
}

/// Unchanged clients: one argument per event, exactly the published list, nothing else.
async fn unchanged(kind: &str, url: &str) {
    let node = node(kind, url, "unchanged-rust");
    let cookie = login(&node.base).await;
    let url = node.socket_url();
    let mut probes = probes(false);
    join_all(probes.iter_mut().map(|p| p.connect(&url, &cookie, None))).await;
    let bodies = [json!("hi"), object(), json!("end")];
    for body in &bodies {
        post(&node.base, &cookie, body.clone()).await;
    }
    let end = json!("end");
    join_all(probes.iter_mut().map(|p| p.until_data(&end))).await;
    for p in &mut probes {
        let expected: Vec<_> = bodies
            .iter()
            .map(|b| ("message".to_owned(), vec![b.clone()]))
            .collect();
        assert_eq!(
            p.any, expected,
            "{}: on_any saw exactly the published events",
            p.label
        );
        let expected: Vec<_> = bodies.iter().map(|b| Ok(vec![b.clone()])).collect();
        assert_eq!(
            p.handler, expected,
            "{}: the one-argument handler decoded every event",
            p.label
        );
        p.disconnect().await;
    }
}

/// Opted-in clients: offsets last, the report, and what was missed across a reconnect.
async fn opted_in(kind: &str, url: &str) {
    let node = node(kind, url, "opted-in-rust");
    let cookie = login(&node.base).await;
    let url = node.socket_url();
    let mut probes = probes(true);
    join_all(probes.iter_mut().map(|p| async {
        p.connect(&url, &cookie, Some(json!({"offset": ""}))).await;
        p.until_report(1).await;
    }))
    .await;
    post(&node.base, &cookie, json!("one")).await;
    join_all(probes.iter_mut().map(|p| async {
        p.until_data(&json!("one")).await;
        p.disconnect().await;
    }))
    .await;
    for body in ["two", "three"] {
        post(&node.base, &cookie, json!(body)).await;
    }
    join_all(probes.iter_mut().map(|p| async {
        // What an opted-in app keeps: the last argument of the last event it got ("one").
        let offset = p.last_offset();
        p.connect(&url, &cookie, Some(json!({"offset": offset})))
            .await;
        p.until_report(2).await;
    }))
    .await;
    post(&node.base, &cookie, object()).await;
    let object = object();
    join_all(probes.iter_mut().map(|p| p.until_data(&object))).await;
    for p in &mut probes {
        assert_recovered_across_reconnect(p);
        p.disconnect().await;
    }
}

/// Whether `value` is the offset of a history entry on the brokers tested here: 20 digits
/// (RabbitMQ) or two such numbers joined by `-` (Redis). Stricter than the web tests'
/// `is_offset`, which also takes "0" (an empty history): an event always has an entry's offset.
fn is_offset(value: &Value) -> bool {
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    value.as_str().is_some_and(|s| match s.split_once('-') {
        Some((a, b)) => digits(a) && digits(b),
        None => digits(s),
    })
}

/// The first report (`new`, from "0"), "one", then "two" and "three" replayed before the report `recovered` 2,
/// then the object live; every item with its offset last, offsets increasing, the second report
/// starting from the offset of "three"; the handler got each message with its offset.
fn assert_recovered_across_reconnect(p: &Probe) {
    let shape: Vec<_> = p
        .any
        .iter()
        .map(|(e, args)| (e.as_str(), args[..args.len().saturating_sub(1)].to_vec()))
        .collect();
    let msg = |v: Value| ("message", vec![v]);
    assert_eq!(
        shape,
        [
            (RECOVERY, vec![json!({"status": "new", "recovered": 0})]),
            msg(json!("one")),
            msg(json!("two")),
            msg(json!("three")),
            (
                RECOVERY,
                vec![json!({"status": "recovered", "recovered": 2})]
            ),
            msg(object()),
        ],
        "{}: events, replay and reports (offsets left out)",
        p.label
    );
    let offsets: Vec<&Value> = p.any.iter().filter_map(|(_, args)| args.last()).collect();
    // The node's channel is new: the socket went live on an empty history, written "0".
    assert_eq!(
        offsets[0],
        &json!("0"),
        "{}: the first report starts from the empty history",
        p.label
    );
    let rest: Vec<&str> = offsets[1..]
        .iter()
        .map(|o| {
            assert!(is_offset(o), "{}: {o} is not an offset", p.label);
            o.as_str().unwrap_or_default()
        })
        .collect();
    let [one, two, three, reported, object_offset] = rest[..] else {
        panic!("{}: offsets {rest:?}", p.label)
    };
    assert!(
        one < two && two < three && three < object_offset,
        "{}: offsets increase: {rest:?}",
        p.label
    );
    assert_eq!(
        reported, three,
        "{}: the report starts from the last replayed event",
        p.label
    );
    let messages: Vec<_> = p
        .any
        .iter()
        .filter(|(e, _)| e == "message")
        .map(|(_, args)| Ok(args.clone()))
        .collect();
    assert_eq!(
        p.handler, messages,
        "{}: the handler took (data, offset)",
        p.label
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_rust_client_on_redis_gets_exactly_the_published_arguments() {
    let redis = RedisServer::start().await;
    unchanged("redis", redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_rust_client_on_rabbitmq_gets_exactly_the_published_arguments() {
    let rabbit = RabbitMqServer::shared().await;
    unchanged("amqp", rabbit.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opted_in_rust_client_on_redis_recovers_across_a_reconnect() {
    let redis = RedisServer::start().await;
    opted_in("redis", redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opted_in_rust_client_on_rabbitmq_recovers_across_a_reconnect() {
    let rabbit = RabbitMqServer::shared().await;
    opted_in("amqp", rabbit.url()).await;
}
