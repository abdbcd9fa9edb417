//! Connection state recovery: offsets on every event, a reconnect with `auth: {offset}` gets
//! what it missed before live events (no gap, no duplicate), the recovery report, and nodes
//! catching up after a broker outage. Memory broker for one node, a real Redis for two.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{
    ClientOptions, SioClient, TestServer, broker_config, connect, login_at, memory_config,
    post_json, with_cookie,
};
use serde_json::json;
use sidecast_core::config::{BrokerKind, PolicyKind, PolicyList};
use sidecast_testkit::RedisServer;

/// Client options with a session cookie and `auth: {offset}`.
fn resuming(cookie: &str, offset: &str) -> ClientOptions {
    ClientOptions {
        auth: Some(json!({ "offset": offset })),
        ..with_cookie(cookie)
    }
}

/// Connects a client that asks for offsets (`auth: {offset: ""}`), as `/sidecast-recovery.js`
/// does on a first connect.
trait WithOffsets {
    async fn with_offsets(&self, cookie: &str) -> SioClient;
}

impl WithOffsets for TestServer {
    async fn with_offsets(&self, cookie: &str) -> SioClient {
        connect(&self.socket_url(), resuming(cookie, ""))
            .await
            .accepted()
    }
}

/// The `n` of every `count` event before `done`, failing on any other event.
async fn counts_until_done(client: &mut SioClient) -> Vec<u64> {
    client
        .events_until("done")
        .await
        .into_iter()
        .map(|(event, args)| {
            assert_eq!(event, "count", "only counts arrive: {args:?}");
            args[0].as_str().unwrap().parse::<u64>().unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_the_last_offset_gets_exactly_what_it_missed() {
    let mut config = memory_config();
    config.auth.policy = PolicyList::Any(vec![PolicyKind::Session, PolicyKind::Token]);
    config.auth.tokens.insert("bob".into(), "token-b".into());
    let server = TestServer::start(config).await;
    let cookie = server.login().await;
    let mut client = server.with_offsets(&cookie).await;
    let report = client.recovery_report().await;
    assert_eq!(report, json!({"status": "new", "recovered": 0}));
    let start = client.last_offset().expect("a starting offset");

    for n in 0..3 {
        server
            .publish(&cookie, json!({"channel": "count", "body": n.to_string()}))
            .await;
    }
    server
        .publish(&cookie, json!({"channel": "done", "body": "0"}))
        .await;
    assert_eq!(counts_until_done(&mut client).await, vec![0, 1, 2]);
    let seen = client.last_offset().unwrap();
    assert!(seen > start, "offsets grow: {start} < {seen}");
    client.disconnect().await;

    // Missed while away: to everyone, to the user's room, to another user's room.
    for n in 3..6 {
        server
            .publish(&cookie, json!({"channel": "count", "body": n.to_string()}))
            .await;
    }
    server
        .publish(
            &cookie,
            json!({"channel": "count", "body": "6", "to": "user:Gonzalo"}),
        )
        .await;
    server
        .publish(
            &cookie,
            json!({"channel": "count", "body": "99", "to": "user:bob"}),
        )
        .await;
    server
        .publish(&cookie, json!({"channel": "count", "body": "7"}))
        .await;

    let mut back = server.connect(resuming(&cookie, &seen)).await.accepted();
    server
        .publish(&cookie, json!({"channel": "count", "body": "8"}))
        .await;
    server
        .publish(&cookie, json!({"channel": "done", "body": "1"}))
        .await;
    assert_eq!(counts_until_done(&mut back).await, vec![3, 4, 5, 6, 7, 8]);
    assert_eq!(
        back.recovery_report().await,
        json!({"status": "recovered", "recovered": 5})
    );
    assert_eq!(server.state.metrics().recovery_count("recovered"), 1);
    back.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gap_and_no_duplicate_while_events_keep_coming() {
    let server = TestServer::start(memory_config()).await;
    let cookie = server.login().await;
    let mut client = server.with_offsets(&cookie).await;
    assert_eq!(client.recovery_report().await["status"], "new");
    let running = Arc::new(AtomicBool::new(true));
    // Publishes 0, 1, 2, ... as fast as the API answers, until told to stop.
    let publisher = {
        let base = server.base.clone();
        let cookie = cookie.clone();
        let running = running.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                let res = post_json(
                    &base,
                    &cookie,
                    json!({"channel": "count", "body": n.to_string()}),
                )
                .await;
                assert_eq!(res.status(), 200);
                n += 1;
            }
            n
        })
    };
    let count = |events: Vec<common::Event>| -> Vec<u64> {
        events
            .iter()
            .map(|(_, args)| args[0].as_str().unwrap().parse::<u64>().unwrap())
            .collect()
    };
    let mut received = Vec::new();
    // Three disconnect/reconnect rounds while the events keep coming.
    for _ in 0..3 {
        for _ in 0..20 {
            let event = client.next_event().await;
            received.extend(count(vec![event]));
        }
        let (rest, offset) = client.disconnect_and_drain().await;
        received.extend(count(rest));
        client = server
            .connect(resuming(&cookie, &offset.expect("an offset was seen")))
            .await
            .accepted();
        assert_eq!(client.recovery_report().await["status"], "recovered");
    }
    running.store(false, Ordering::Relaxed);
    let published = publisher.await.unwrap();
    server
        .publish(&cookie, json!({"channel": "done", "body": "0"}))
        .await;
    received.extend(counts_until_done(&mut client).await);
    let expected: Vec<u64> = (0..published).collect();
    let missing: Vec<u64> = expected
        .iter()
        .filter(|n| !received.contains(n))
        .copied()
        .collect();
    assert_eq!(
        received.len() as u64,
        published,
        "every event once; missing {missing:?}"
    );
    assert_eq!(received, expected, "in order, no gap, no duplicate");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_out_of_the_history_is_reported() {
    let mut config = memory_config();
    config.recovery.max_events = 5;
    let server = TestServer::start(config).await;
    let cookie = server.login().await;
    let mut client = server.with_offsets(&cookie).await;
    server
        .publish(&cookie, json!({"channel": "count", "body": "0"}))
        .await;
    client.next_event().await;
    let (_, seen) = client.disconnect_and_drain().await;
    // More than the history keeps: the client is told, and is live from the node's position.
    for n in 1..=10 {
        server
            .publish(&cookie, json!({"channel": "count", "body": n.to_string()}))
            .await;
    }
    let mut trimmed = server
        .connect(resuming(&cookie, &seen.unwrap()))
        .await
        .accepted();
    assert_eq!(
        trimmed.recovery_report().await,
        json!({"status": "trimmed", "recovered": 0})
    );
    server
        .publish(&cookie, json!({"channel": "count", "body": "11"}))
        .await;
    server
        .publish(&cookie, json!({"channel": "done", "body": "0"}))
        .await;
    assert_eq!(counts_until_done(&mut trimmed).await, vec![11]);

    for bad in ["not-an-offset", "99999999999999999999"] {
        let mut unknown = server.connect(resuming(&cookie, bad)).await.accepted();
        assert_eq!(
            unknown.recovery_report().await,
            json!({"status": "unknown", "recovered": 0}),
            "{bad}"
        );
        unknown.disconnect().await;
    }
    assert_eq!(server.state.metrics().recovery_count("unknown"), 2);
    trimmed.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_bus_recovers_events_older_than_the_signing_window() {
    let mut config = memory_config();
    config.broker.signing_key = "a-signing-key-of-some-length".into();
    // Entries are replayed long after the window a live message must arrive within.
    config.broker.signing_max_age_ms = 1;
    let server = TestServer::start(config).await;
    let cookie = server.login().await;
    let mut client = server.with_offsets(&cookie).await;
    client.recovery_report().await;
    let (_, start) = client.disconnect_and_drain().await;
    for n in 0..3 {
        server
            .publish(&cookie, json!({"channel": "count", "body": n.to_string()}))
            .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await; // older than the window
    let mut back = server
        .connect(resuming(&cookie, &start.unwrap()))
        .await
        .accepted();
    server
        .publish(&cookie, json!({"channel": "done", "body": "0"}))
        .await;
    assert_eq!(counts_until_done(&mut back).await, vec![0, 1, 2]);
    assert_eq!(server.state.metrics().dropped_count("bad_signature"), 0);
    server.stop().await;
}

/// Two nodes on one Redis: a client recovers on the other node, and a node whose Redis
/// connection dropped catches up: every acknowledged event reaches the clients of both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_clients_recover_on_any_node_and_nodes_catch_up() {
    let mut redis = RedisServer::start().await;
    if redis.is_external() {
        return; // an external Redis cannot be restarted by the test
    }
    let mut config = broker_config(BrokerKind::Redis, redis.url());
    // Both nodes accept the session cookie either one issued.
    config.session.secret = "0123456789abcdef0123456789abcdef".into();
    let a = TestServer::start(config.clone()).await;
    let b = TestServer::start(config).await;
    let cookie = login_at(&a.base).await;
    let mut on_a = connect(&a.socket_url(), resuming(&cookie, ""))
        .await
        .accepted();
    let mut on_b = connect(&b.socket_url(), resuming(&cookie, ""))
        .await
        .accepted();
    assert_eq!(on_a.recovery_report().await["status"], "new");
    assert_eq!(on_b.recovery_report().await["status"], "new");

    a.publish(&cookie, json!({"channel": "count", "body": "0"}))
        .await;
    assert_eq!(on_a.next_event().await.1[0], "0");
    assert_eq!(on_b.next_event().await.1[0], "0");
    let (_, seen) = on_a.disconnect_and_drain().await;
    for n in 1..=3 {
        a.publish(&cookie, json!({"channel": "count", "body": n.to_string()}))
            .await;
    }
    // The client of node a comes back on node b.
    let mut moved = connect(&b.socket_url(), resuming(&cookie, &seen.unwrap()))
        .await
        .accepted();
    assert_eq!(
        moved.recovery_report().await,
        json!({"status": "recovered", "recovered": 3})
    );

    // Redis restarts: events are refused (503) while it is down, and every event acknowledged
    // after it is back reaches both nodes' clients, in order.
    redis.restart().await;
    let mut acknowledged = vec![1, 2, 3];
    let deadline = std::time::Instant::now() + common::DEADLINE;
    let mut n = 4u64;
    while acknowledged.len() < 30 {
        assert!(
            std::time::Instant::now() < deadline,
            "node a did not come back"
        );
        let res = post_json(
            &a.base,
            &cookie,
            json!({"channel": "count", "body": n.to_string()}),
        )
        .await;
        match res.status().as_u16() {
            200 => acknowledged.push(n),
            503 => {}
            other => panic!("unexpected status {other}"),
        }
        n += 1;
    }
    a.publish(&cookie, json!({"channel": "done", "body": "0"}))
        .await;
    assert_eq!(counts_until_done(&mut moved).await, acknowledged);
    assert_eq!(counts_until_done(&mut on_b).await, acknowledged);
    moved.disconnect().await;
    on_b.disconnect().await;
    a.stop().await;
    b.stop().await;
}

/// Numbered `count` events posted without pause, alternately to each node, until stopped: what
/// every client must end up with is exactly the numbers acknowledged (200), in order.
struct Load {
    running: Arc<AtomicBool>,
    acknowledged: Arc<std::sync::Mutex<Vec<u64>>>,
    refused: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(bases: [String; 2], cookie: &str) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
        let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = {
            let (running, acknowledged, refused) =
                (running.clone(), acknowledged.clone(), refused.clone());
            let cookie = cookie.to_owned();
            tokio::spawn(async move {
                let mut n = 0u64;
                while running.load(Ordering::Relaxed) {
                    let base = &bases[usize::from(n % 2 == 1)];
                    let body = json!({"channel": "count", "body": n.to_string()});
                    match post_json(base, &cookie, body).await.status().as_u16() {
                        200 => acknowledged.lock().unwrap().push(n),
                        // Refused while the broker is away: the client may still get it (it can
                        // have been appended before the time-out), but need not.
                        503 => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("POST /api/ answered {other}"),
                    }
                    n += 1;
                }
            })
        };
        Self {
            running,
            acknowledged,
            refused,
            task,
        }
    }

    fn acknowledged(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Waits until `condition` holds for the load, within the test deadline.
    async fn until(&self, what: &str, condition: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while !condition(self) {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) -> Vec<u64> {
        self.running.store(false, Ordering::Relaxed);
        self.task.await.unwrap();
        Arc::try_unwrap(self.acknowledged)
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

/// Two nodes on `config`'s broker with two clients each (default transport asking for offsets,
/// and websocket-only not asking),
/// a publisher posting to both without pause, and `outage` in the middle: every acknowledged
/// event reaches all four clients once and in order (events refused with 503 may arrive too,
/// in their place, never twice).
async fn every_acknowledged_event_reaches_every_client(
    config: sidecast_core::Config,
    outage: impl AsyncFnOnce(&Load),
) {
    let a = TestServer::start(config.clone()).await;
    let b = TestServer::start(config).await;
    let cookie = login_at(&a.base).await;
    let mut clients = vec![
        a.with_offsets(&cookie).await,
        a.websocket_client(&cookie).await,
        b.with_offsets(&cookie).await,
        b.websocket_client(&cookie).await,
    ];
    // The websocket-only clients did not ask for offsets: they get no report, and every
    // acknowledged event all the same.
    for client in clients.iter_mut().step_by(2) {
        assert_eq!(client.recovery_report().await["status"], "new");
    }
    let load = Load::start([a.base.clone(), b.base.clone()], &cookie);
    load.until("events before the outage", |l| l.acknowledged() >= 50)
        .await;
    outage(&load).await;
    let back = load.acknowledged();
    load.until("events after the outage", |l| l.acknowledged() >= back + 50)
        .await;
    let refused = load.refused();
    let acknowledged = load.stop().await;
    a.publish(&cookie, json!({"channel": "done", "body": "0"}))
        .await;
    for (i, client) in clients.iter_mut().enumerate() {
        let received = counts_until_done(client).await;
        let mut sorted = received.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), received.len(), "client {i}: a duplicate");
        assert!(
            received.windows(2).all(|w| w[0] < w[1]),
            "client {i}: out of order"
        );
        let missing: Vec<u64> = acknowledged
            .iter()
            .filter(|n| received.binary_search(n).is_err())
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "client {i} lost acknowledged events {missing:?}"
        );
        eprintln!(
            "client {i}: {} acknowledged events all received ({} received, {refused} refused \
             during the outage)",
            acknowledged.len(),
            received.len()
        );
    }
    for client in clients {
        client.disconnect().await;
    }
    a.stop().await;
    b.stop().await;
}

/// Redis killed (`SIGKILL`) and restarted under load; Redis keeps its data across the crash
/// (`appendfsync always`), as a deployment that promises no loss must configure it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_reaches_every_client_across_a_redis_crash() {
    let mut redis =
        RedisServer::start_local_with_args(["--appendonly", "yes", "--appendfsync", "always"])
            .await;
    let mut config = broker_config(BrokerKind::Redis, redis.url());
    config.session.secret = "0123456789abcdef0123456789abcdef".into();
    every_acknowledged_event_reaches_every_client(config, async |load: &Load| {
        redis.stop().await;
        load.until("a refusal while Redis is down", |l| l.refused() > 0)
            .await;
        redis.restart().await;
    })
    .await;
}

/// RabbitMQ stopped and started again under load (an orderly restart: after a crash RabbitMQ
/// 3.10 keeps the stream unavailable, decision 20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_reaches_every_client_across_a_rabbitmq_restart() {
    let mut rabbit = sidecast_testkit::RabbitMqServer::start_local().await;
    let mut config = broker_config(BrokerKind::Amqp, rabbit.url());
    config.broker.channel = sidecast_testkit::unique_channel("recovery");
    config.session.secret = "0123456789abcdef0123456789abcdef".into();
    every_acknowledged_event_reaches_every_client(config, async |load: &Load| {
        rabbit.stop().await;
        load.until("a refusal while RabbitMQ is down", |l| l.refused() > 0)
            .await;
        rabbit.restart().await;
    })
    .await;
}

/// A history that refuses writes (Redis over `maxmemory`) makes `POST /api/` answer 503 with
/// `Retry-After`, never 200 for an event nobody will receive; once Redis takes writes again,
/// events flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_that_refuses_writes_is_a_503() {
    let redis = RedisServer::start_local().await;
    let server = TestServer::start(broker_config(BrokerKind::Redis, redis.url())).await;
    let cookie = server.login().await;
    let mut client = server.with_offsets(&cookie).await;
    client.recovery_report().await;
    assert_eq!(
        redis
            .command(&["CONFIG", "SET", "maxmemory", "1"])
            .await
            .unwrap(),
        "+OK"
    );
    let refused = post_json(
        &server.base,
        &cookie,
        json!({"channel": "count", "body": "lost"}),
    )
    .await;
    let (status, retry_after) = (
        refused.status(),
        refused.headers().get("retry-after").cloned(),
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.unwrap(), "1");
    assert!(
        body["error"].as_str().unwrap().contains("maxmemory"),
        "the reason names the cause: {body}"
    );
    assert_eq!(
        redis
            .command(&["CONFIG", "SET", "maxmemory", "0"])
            .await
            .unwrap(),
        "+OK"
    );
    server
        .publish(&cookie, json!({"channel": "count", "body": "0"}))
        .await;
    server
        .publish(&cookie, json!({"channel": "done", "body": "0"}))
        .await;
    assert_eq!(counts_until_done(&mut client).await, vec![0]);
    client.disconnect().await;
    server.stop().await;
}

/// A socket that asked for no offset gets every event published after its connect was
/// answered, also those delivered in the moment before the node brought it live: connects while
/// events flow without pause, each new socket checked from the first event posted after its
/// CONNECT reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_socket_gets_every_event_published_after_its_connect() {
    let server = TestServer::start(memory_config()).await;
    let cookie = server.login().await;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (base, cookie, next, running) = (
            server.base.clone(),
            cookie.clone(),
            next.clone(),
            running.clone(),
        );
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                let n = next.load(Ordering::SeqCst);
                let body = json!({"channel": "count", "body": n.to_string()});
                assert_eq!(post_json(&base, &cookie, body).await.status(), 200);
                next.store(n + 1, Ordering::SeqCst);
            }
        })
    };
    let mut sockets = Vec::new();
    for _ in 0..10 {
        let client = server.with_offsets(&cookie).await;
        // Posts that had not started when the connect was answered must all arrive.
        let from = next.load(Ordering::SeqCst) + 1;
        sockets.push((client, from));
    }
    running.store(false, Ordering::Relaxed);
    publisher.await.unwrap();
    server
        .publish(&cookie, json!({"channel": "done", "body": "0"}))
        .await;
    let last = next.load(Ordering::SeqCst);
    for (i, (mut client, from)) in sockets.into_iter().enumerate() {
        assert_eq!(client.recovery_report().await["status"], "new");
        let received = counts_until_done(&mut client).await;
        let expected: Vec<u64> = (from..last).collect();
        let tail: Vec<u64> = received.iter().copied().filter(|n| *n >= from).collect();
        assert_eq!(
            tail, expected,
            "socket {i}: a gap or a duplicate after its connect"
        );
        client.disconnect().await;
    }
    server.stop().await;
}

/// On Redis, an offset after the end of the history, up to the largest stream id (after which
/// Redis has no id to start an exclusive range from), is `unknown`, not a history failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_an_offset_after_the_history_is_unknown() {
    let redis = RedisServer::start().await;
    let server = TestServer::start(broker_config(BrokerKind::Redis, redis.url())).await;
    let cookie = server.login().await;
    server
        .publish(&cookie, json!({"channel": "count", "body": "0"}))
        .await;
    for future in [
        "18446744073709551615-00000000000000000000",
        "18446744073709551615-18446744073709551615",
    ] {
        let mut client = server.connect(resuming(&cookie, future)).await.accepted();
        assert_eq!(
            client.recovery_report().await,
            json!({"status": "unknown", "recovered": 0}),
            "{future}"
        );
        client.disconnect().await;
    }
    assert_eq!(server.state.metrics().recovery_count("unavailable"), 0);
    server.stop().await;
}

/// A RabbitMQ that blocks publishers (a disk alarm: its free-disk limit raised above what the
/// disk has) makes `POST /api/` answer 503, not 200; once the alarm clears, events flow again,
/// and every event that was acknowledged reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_disk_alarm_is_a_503() {
    let rabbit = sidecast_testkit::RabbitMqServer::start_local().await;
    let mut config = broker_config(BrokerKind::Amqp, rabbit.url());
    config.broker.channel = sidecast_testkit::unique_channel("disk-alarm");
    config.broker.publish_timeout_ms = 500;
    let server = TestServer::start(config).await;
    let cookie = server.login().await;
    let mut client = server.with_offsets(&cookie).await;
    client.recovery_report().await;

    let mut acknowledged = Vec::new();
    let mut n = 0u64;
    // Posts until the answer is `status`, keeping what was acknowledged.
    let mut post_until = async |status: u16, acknowledged: &mut Vec<u64>| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "POST /api/ never answered {status}"
            );
            let body = json!({"channel": "count", "body": n.to_string()});
            let answer = post_json(&server.base, &cookie, body)
                .await
                .status()
                .as_u16();
            match answer {
                200 => acknowledged.push(n),
                503 => {}
                other => panic!("POST /api/ answered {other}"),
            }
            n += 1;
            if answer == status {
                return;
            }
        }
    };
    post_until(200, &mut acknowledged).await;
    rabbit
        .ctl(&["set_disk_free_limit", "1000000GB"])
        .await
        .unwrap();
    post_until(503, &mut acknowledged).await;
    rabbit.ctl(&["set_disk_free_limit", "1MB"]).await.unwrap();
    post_until(200, &mut acknowledged).await;
    server
        .publish(&cookie, json!({"channel": "done", "body": "0"}))
        .await;
    let received = counts_until_done(&mut client).await;
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {received:?}"
    );
    let missing: Vec<u64> = acknowledged
        .iter()
        .filter(|n| !received.contains(n))
        .copied()
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    client.disconnect().await;
    server.stop().await;
}

/// Live-only events (plain publishes, not in the history) published while a socket recovers
/// reach it too: held while it replays, emitted when it goes live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_only_events_published_during_a_replay_reach_the_socket() {
    let server = TestServer::start(memory_config()).await;
    let cookie = server.login().await;
    let mut client = server.with_offsets(&cookie).await;
    client.recovery_report().await;
    let (_, from) = client.disconnect_and_drain().await;
    // A long replay: many events missed.
    for n in 0..2_000 {
        server
            .state
            .emitter()
            .emit("count", n.to_string())
            .await
            .unwrap();
    }
    // Published once the connect was answered: while the socket replays.
    let mut back = server
        .connect(resuming(&cookie, &from.unwrap()))
        .await
        .accepted();
    let broker = server.state.broker().clone();
    let plain = tokio::spawn(async move {
        for n in 0..20 {
            let message = format!(r#"{{"v":1,"event":"plain","data":{n}}}"#);
            broker
                .publish("sidecast", bytes::Bytes::from(message))
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
    });
    plain.await.unwrap();
    assert_eq!(back.recovery_report().await["recovered"], 2_000);
    let mut counts = 0;
    let mut plains = Vec::new();
    while counts < 2_000 || plains.len() < 20 {
        let (event, args) = back.next_event().await;
        match event.as_str() {
            "count" => counts += 1,
            "plain" => plains.push(args[0].as_u64().unwrap()),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        plains,
        (0..20).collect::<Vec<u64>>(),
        "every plain event, once, in order"
    );
    back.disconnect().await;
    server.stop().await;
}
