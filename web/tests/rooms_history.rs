//! Room operations in the history (decision 34): with recovery on, a join, a leave or a closed
//! room is appended to the channel's history next to the events, so every node applies it in
//! order with them, a node that was cut off applies it when it resumes, and a recovering socket's
//! replay sees the memberships it gained or lost after its offset before the events that follow.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{ClientOptions, TestServer, broker_config, connect, memory_config, with_cookie};
use serde_json::{Value, json};
use sidecast_core::config::{BrokerKind, Config, PolicyKind, PolicyList};
use sidecast_testkit::RedisServer;
use tokio::net::{TcpListener, TcpStream};

/// The service token that may operate rooms in these tests.
const TOKEN: &str = "s3cret";

/// `config` with sessions and the service token [`TOKEN`], and a session secret every node
/// shares (a cookie issued by one node is accepted by the others).
fn with_token(mut config: Config) -> Config {
    config.auth.policy = PolicyList::Any(vec![PolicyKind::Session, PolicyKind::Token]);
    config.auth.tokens.insert("cron".into(), TOKEN.into());
    config.session.secret = "0123456789abcdef0123456789abcdef".into();
    config
}

/// `POST /api/rooms` with the service token, which must succeed.
async fn rooms(node: &TestServer, body: Value) {
    assert_eq!(
        node.post_rooms(None, Some(TOKEN), body).await,
        (200, json!({"status": true}))
    );
}

/// The bodies of the events before `done`, which must all be named `event`.
async fn bodies_until_done(client: &mut common::SioClient, event: &str) -> Vec<Value> {
    client
        .events_until("done")
        .await
        .into_iter()
        .map(|(name, args)| {
            assert_eq!(name, event, "only {event} arrives: {args:?}");
            args[0].clone()
        })
        .collect()
}

/// A TCP proxy on loopback in front of one address, whose link can be cut (every connection
/// closed, new ones refused) and restored: a node's broker link cut while the broker and the
/// other nodes keep running.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    /// Bumped on every cut: connections of an older generation close.
    generation: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let (open_in, generation_in) = (open.clone(), generation.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !open_in.load(Ordering::SeqCst) {
                    continue; // dropped: the link is cut
                }
                let target = target.clone();
                let mut cut = generation_in.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            open,
            generation,
            task,
        }
    }

    /// Closes every connection through the proxy and refuses new ones.
    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// The broker URL `url` (of a server on 127.0.0.1) through `proxy`, and the address the proxy
/// must forward to.
fn through(url: &str, proxy_port: u16) -> (String, String) {
    let at = url
        .find("127.0.0.1:")
        .expect("a broker on 127.0.0.1 (an external broker cannot be cut by these tests)")
        + "127.0.0.1:".len();
    let end = url[at..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(url.len(), |n| at + n);
    let target = format!("127.0.0.1:{}", &url[at..end]);
    (format!("{}{proxy_port}{}", &url[..at], &url[end..]), target)
}

/// A proxy in front of the broker at `url`, and the URL that goes through it.
async fn proxy_for(url: &str) -> (Proxy, String) {
    let (_, target) = through(url, 0);
    let proxy = Proxy::start(target).await;
    let (proxied, _) = through(url, proxy.port);
    (proxy, proxied)
}

/// Proxies in front of every URL of `urls` (one URL, or a RabbitMQ cluster's comma-separated
/// list), and the list through them: a node given it has its whole broker link cut at once.
struct Link {
    proxies: Vec<Proxy>,
    url: String,
}

impl Link {
    async fn start(urls: &str) -> Self {
        let mut proxies = Vec::new();
        let mut proxied = Vec::new();
        for url in sidecast_core::broker::url_list(urls) {
            let (proxy, through) = proxy_for(url).await;
            proxies.push(proxy);
            proxied.push(through);
        }
        Self {
            proxies,
            url: proxied.join(","),
        }
    }

    fn cut(&self) {
        self.proxies.iter().for_each(Proxy::cut);
    }

    fn restore(&self) {
        self.proxies.iter().for_each(Proxy::restore);
    }
}

/// A node's configuration on the RabbitMQ server `rabbit`, on a channel of its own.
#[cfg(feature = "amqp")]
fn amqp_config(rabbit: &sidecast_testkit::RabbitMqServer) -> Config {
    let mut config = broker_config(BrokerKind::Amqp, rabbit.url());
    config.broker.channel = sidecast_testkit::unique_channel("rooms");
    config
}

/// A join through one node and an emit to the joined room through another reach a client of a
/// third in that order, every time: both travel through the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_then_an_emit_through_different_nodes_arrive_in_order_on_a_third() {
    let redis = RedisServer::start().await;
    join_then_emit_in_order(broker_config(BrokerKind::Redis, redis.url())).await;
}

/// The same on RabbitMQ (one server).
#[cfg(feature = "amqp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rabbitmq_a_join_then_an_emit_through_different_nodes_arrive_in_order() {
    let rabbit = sidecast_testkit::RabbitMqServer::start_local().await;
    let config = amqp_config(&rabbit);
    join_then_emit_in_order(config).await;
}

/// Three nodes of `config`: joins through the first, emits through the second, one client of
/// the third receives every emit.
async fn join_then_emit_in_order(config: Config) {
    let config = with_token(config);
    let a = TestServer::start(config.clone()).await;
    let b = TestServer::start(config.clone()).await;
    let c = TestServer::start(config).await;
    let cookie = c.login().await;
    let mut client = c.client(&cookie).await;
    for n in 0..100 {
        let room = format!("game:{n}");
        rooms(
            &a,
            json!({"op": "join", "to": "user:Gonzalo", "rooms": room}),
        )
        .await;
        b.publish(
            &cookie,
            json!({"channel": "move", "body": n.to_string(), "to": room}),
        )
        .await;
    }
    b.publish(&cookie, json!({"channel": "done", "body": "0"}))
        .await;
    let expected: Vec<Value> = (0..100).map(|n| json!(n.to_string())).collect();
    assert_eq!(bodies_until_done(&mut client, "move").await, expected);
    for node in [a, b, c] {
        node.stop().await;
    }
}

/// Two nodes on one Redis, the second behind a [`Proxy`] whose link the test cuts, and a signed-in
/// client on the second that has received one event (so its history subscription runs).
struct CutNodes {
    _redis: RedisServer,
    proxy: Proxy,
    a: TestServer,
    b: TestServer,
    cookie: String,
    on_b: common::SioClient,
}

impl CutNodes {
    async fn start() -> Self {
        let redis = RedisServer::start().await;
        let (proxy, proxied) = proxy_for(redis.url()).await;
        let config = with_token(broker_config(BrokerKind::Redis, redis.url()));
        let mut behind = config.clone();
        behind.broker.url = Some(proxied);
        let a = TestServer::start(config).await;
        let b = TestServer::start(behind).await;
        let cookie = b.login().await;
        let mut on_b = b.client(&cookie).await;
        a.publish(&cookie, json!({"channel": "move", "body": "first"}))
            .await;
        assert_eq!(on_b.next_event().await.1[0], "first");
        Self {
            _redis: redis,
            proxy,
            a,
            b,
            cookie,
            on_b,
        }
    }
}

/// A node whose broker link is cut misses the joins made meanwhile through another node, and
/// applies them when it resumes, before the events that follow them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_from_the_broker_applies_the_joins_it_missed_on_resuming() {
    let CutNodes {
        _redis,
        proxy,
        a,
        b,
        cookie,
        mut on_b,
    } = CutNodes::start().await;

    proxy.cut();
    rooms(
        &a,
        json!({"op": "join", "to": "user:Gonzalo", "rooms": "game:1"}),
    )
    .await;
    a.publish(
        &cookie,
        json!({"channel": "move", "body": "in game:1", "to": "game:1"}),
    )
    .await;
    proxy.restore();
    a.publish(&cookie, json!({"channel": "done", "body": "0"}))
        .await;
    assert_eq!(
        bodies_until_done(&mut on_b, "move").await,
        vec![json!("in game:1")]
    );
    a.stop().await;
    b.stop().await;
}

/// `/logout` disconnects the user's sockets through the history too: a node cut from the broker
/// while the user logs out on another node disconnects them when it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_through_another_node_reaches_a_node_that_was_cut_off_on_resuming() {
    let CutNodes {
        _redis,
        proxy,
        a,
        b,
        cookie,
        mut on_b,
    } = CutNodes::start().await;

    proxy.cut();
    assert_eq!(common::logout_at(&a.base, &cookie).await.status(), 200);
    proxy.restore();
    assert_eq!(on_b.next_event().await.0, common::CLOSED);
    a.stop().await;
    b.stop().await;
}

/// Client options of Gonzalo's socket (`cookie`) asking for offsets from `offset`.
fn with_offset(cookie: &str, offset: &str) -> ClientOptions {
    ClientOptions {
        auth: Some(json!({ "offset": offset })),
        ..with_cookie(cookie)
    }
}

/// Gonzalo's socket asks for offsets, is joined to `room` through his user room, receives one
/// event to it (`body`) and goes away; the offset it saw last.
async fn in_a_room_then_away(server: &TestServer, cookie: &str, room: &str, body: &str) -> String {
    let mut client = connect(&server.socket_url(), with_offset(cookie, ""))
        .await
        .accepted();
    assert_eq!(client.recovery_report().await["status"], "new");
    rooms(
        server,
        json!({"op": "join", "to": "user:Gonzalo", "rooms": room}),
    )
    .await;
    server
        .publish(cookie, json!({"channel": "move", "body": body, "to": room}))
        .await;
    assert_eq!(client.next_event().await.1[0], body);
    let (_, seen) = client.disconnect_and_drain().await;
    seen.expect("an offset was seen")
}

/// Publishes the `done` event, then Gonzalo's socket comes back from offset `seen`.
async fn done_then_back(server: &TestServer, cookie: &str, seen: &str) -> common::SioClient {
    server
        .publish(cookie, json!({"channel": "done", "body": "0"}))
        .await;
    connect(&server.socket_url(), with_offset(cookie, seen))
        .await
        .accepted()
}

/// A socket that recovers from an offset is taken to be in the rooms it was in at that offset:
/// events to a room it joined later reach it only from the join on, events to a room it left
/// later only up to the leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovering_socket_gets_the_memberships_after_its_offset_before_the_events() {
    let server = TestServer::start(with_token(memory_config())).await;
    let cookie = server.login().await;
    let seen = in_a_room_then_away(&server, &cookie, "game:1", "in game:1").await;
    let to = |room: &str, body: &str| json!({"channel": "move", "body": body, "to": room});

    // While away: game:2 joined between two events to it, game:1 left between two events.
    server
        .publish(&cookie, to("game:2", "before the join"))
        .await;
    rooms(
        &server,
        json!({"op": "join", "to": "user:Gonzalo", "rooms": "game:2"}),
    )
    .await;
    server
        .publish(&cookie, to("game:2", "after the join"))
        .await;
    server
        .publish(&cookie, to("game:1", "before the leave"))
        .await;
    rooms(
        &server,
        json!({"op": "leave", "to": "user:Gonzalo", "rooms": "game:1"}),
    )
    .await;
    server
        .publish(&cookie, to("game:1", "after the leave"))
        .await;
    let mut back = done_then_back(&server, &cookie, &seen).await;
    assert_eq!(
        bodies_until_done(&mut back, "move").await,
        vec![json!("after the join"), json!("before the leave")]
    );
    assert_eq!(
        back.recovery_report().await,
        json!({"status": "recovered", "recovered": 3})
    );
    back.disconnect().await;
    server.stop().await;
}

/// A recovering socket gets no event of a room it is not in now and that an operation while it
/// was away closed (`close_room`) or made everyone in a shared room leave: neither says it had
/// been in the room, and a forged offset must not reach another user's events (decision 41).
/// Before, both counted as "it was in the room until then".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovering_socket_gets_no_event_of_a_room_closed_or_left_by_others() {
    let server = TestServer::start(with_token(memory_config())).await;
    let cookie = server.login().await;
    let seen = in_a_room_then_away(&server, &cookie, "lobby", "in the lobby").await;
    let to = |room: &str, body: &str| json!({"channel": "move", "body": body, "to": room});

    // While away: another user's events, then their room closed; a game's events, then everyone
    // in the lobby (Gonzalo too) made to leave the game, which Gonzalo never joined.
    server.publish(&cookie, to("user:bob", "for bob")).await;
    rooms(&server, json!({"op": "close_room", "rooms": "user:bob"})).await;
    server.publish(&cookie, to("game:9", "in game:9")).await;
    rooms(
        &server,
        json!({"op": "leave", "to": "lobby", "rooms": "game:9"}),
    )
    .await;
    server
        .publish(&cookie, to("lobby", "back in the lobby"))
        .await;
    let mut back = done_then_back(&server, &cookie, &seen).await;
    assert_eq!(
        bodies_until_done(&mut back, "move").await,
        vec![json!("back in the lobby")]
    );
    back.disconnect().await;
    server.stop().await;
}

/// `POST /api/` with the service token; the response.
async fn post(node: &TestServer, body: Value) -> reqwest::Response {
    let authorization = format!("Bearer {TOKEN}");
    common::post_api_with(&node.base, &[("authorization", &authorization)], body).await
}

/// Users of the load test, each with one socket; the first half on one node, the rest on the
/// other.
const USERS: usize = 6;
/// Rooms of the load test.
const ROOMS: usize = 4;
/// How long the load test cuts a node's broker link.
const CUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Joins, leaves and emits to rooms interleaved, through two nodes, at about 50 a second, while
/// one node's broker link is cut for two seconds: afterwards every event addressed to a room
/// reached exactly the sockets that were in it at that point of the history, and every socket is
/// in exactly the rooms the operations say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_with_a_link_cut_every_room_event_reaches_exactly_its_members() {
    let redis = RedisServer::start().await;
    load_with_a_cut(broker_config(BrokerKind::Redis, redis.url())).await;
}

/// The same on RabbitMQ (one server).
#[cfg(feature = "amqp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rabbitmq_under_load_with_a_link_cut_every_room_event_reaches_exactly_its_members() {
    let rabbit = sidecast_testkit::RabbitMqServer::start_local().await;
    let config = amqp_config(&rabbit);
    load_with_a_cut(config).await;
}

/// The same on a three-node RabbitMQ cluster, the history a stream with a replica on each
/// node: the two nodes are connected to different RabbitMQ nodes (each given every URL, the
/// second starting at the second node), and the second one's link to all three is cut.
#[cfg(feature = "amqp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_rabbitmq_cluster_under_load_with_a_link_cut_every_room_event_reaches_exactly_its_members()
 {
    let started = std::time::Instant::now();
    let cluster = sidecast_testkit::RabbitMqCluster::start().await;
    eprintln!(
        "three-node RabbitMQ cluster started in {:?}",
        started.elapsed()
    );
    let mut config = broker_config(BrokerKind::Amqp, &cluster.url_list());
    config.broker.channel = sidecast_testkit::unique_channel("rooms");
    load_with_a_cut(config).await;
}

/// The URLs of `list` starting at the second one (the first last): a node given it connects to
/// another RabbitMQ node of a cluster than one given `list`. One URL stays as it is.
fn from_the_second(list: &str) -> String {
    let mut urls = sidecast_core::broker::url_list(list);
    let by = 1.min(urls.len());
    urls.rotate_left(by);
    urls.join(",")
}

/// The load test on two nodes of `config`, the second one's broker link through proxies (and
/// on another node of a cluster).
async fn load_with_a_cut(config: Config) {
    let url = config.broker.url.clone().unwrap();
    let link = Link::start(&from_the_second(&url)).await;
    let mut config = with_token(config);
    for user in 0..USERS {
        config
            .auth
            .tokens
            .insert(format!("u{user}"), format!("token-{user}").as_str().into());
    }
    let mut behind = config.clone();
    behind.broker.url = Some(link.url.clone());
    let nodes = [
        TestServer::start(config).await,
        TestServer::start(behind).await,
    ];
    let mut clients = Vec::new();
    for user in 0..USERS {
        let node = &nodes[usize::from(user >= USERS / 2)];
        let options = ClientOptions {
            auth: Some(json!({ "token": format!("token-{user}"), "offset": "" })),
            ..Default::default()
        };
        let mut client = node.connect(options).await.accepted();
        // The report comes once the socket is live and in its rooms.
        client.recovery_report().await;
        clients.push(client);
    }

    // What the operations say: who is in which room, and who must receive each event.
    let mut members = [[false; ROOMS]; USERS];
    let mut expected: Vec<Vec<Value>> = vec![Vec::new(); USERS];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    // At most 50 operations a second (fewer on a busy machine: each is acknowledged before the
    // next, so that the order of the acknowledgements is the order of the history).
    let mut pace = tokio::time::interval(std::time::Duration::from_millis(20));
    let mut cut_at = None;
    for step in 0..300u64 {
        pace.tick().await;
        if step == 100 {
            link.cut();
            cut_at = Some(std::time::Instant::now());
        }
        if cut_at.is_some_and(|at| at.elapsed() >= CUT) {
            link.restore();
            cut_at = None;
        }
        // While node b is cut it answers 503: everything goes through node a.
        let cut = cut_at.is_some();
        let node = &nodes[usize::from(!cut && step % 2 == 1)];
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (user, room, kind) = (
            (seed % USERS as u64) as usize,
            ((seed >> 8) % ROOMS as u64) as usize,
            (seed >> 16) % 10,
        );
        if kind < 6 {
            let op = if kind < 4 { "join" } else { "leave" };
            let body =
                json!({"op": op, "to": format!("user:u{user}"), "rooms": format!("game:{room}")});
            // Node b may still be reconnecting after the cut: refused (503), so through node a.
            if node.post_rooms(None, Some(TOKEN), body.clone()).await.0 != 200 {
                rooms(&nodes[0], body).await;
            }
            members[user][room] = op == "join";
        } else {
            let body = format!("{step}");
            let event = json!({"channel": "move", "body": body, "to": format!("game:{room}")});
            let mut response = post(node, event.clone()).await;
            if response.status() == 503 {
                response = post(&nodes[0], event).await;
            }
            assert_eq!(response.status(), 200, "step {step}");
            for (user, rooms) in members.iter().enumerate() {
                if rooms[room] {
                    expected[user].push(json!(body));
                }
            }
        }
    }
    // Where everyone stands now: one event to each room, then the end.
    for room in 0..ROOMS {
        let body = format!("final game:{room}");
        let response = post(
            &nodes[0],
            json!({"channel": "move", "body": body, "to": format!("game:{room}")}),
        )
        .await;
        assert_eq!(response.status(), 200);
        for (user, rooms) in members.iter().enumerate() {
            if rooms[room] {
                expected[user].push(json!(body));
            }
        }
    }
    let done = post(&nodes[0], json!({"channel": "done", "body": "0"})).await;
    assert_eq!(done.status(), 200);
    for (user, client) in clients.iter_mut().enumerate() {
        assert_eq!(
            bodies_until_done(client, "move").await,
            expected[user],
            "user u{user}"
        );
    }
    for node in nodes {
        node.stop().await;
    }
}
