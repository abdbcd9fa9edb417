//! Shared test support: a node on a free loopback port and a real Socket.IO client
//! (rust_socketio, a third-party implementation of the protocol).
#![allow(dead_code, unreachable_pub)]

pub mod failover;
pub mod python;
pub mod stall;

use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::Value;
use sidecast_core::Config;
use sidecast_core::config::BrokerKind;
use sidecast_web::Sidecast;
use tokio::sync::{mpsc, oneshot};

/// How long any single awaited condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A configuration for tests: memory broker, random port.
pub fn memory_config() -> Config {
    let mut config = Config::default();
    config.broker.kind = BrokerKind::Memory;
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config
}

/// A test configuration ([`memory_config`]) on the broker `kind` at `url`.
pub fn broker_config(kind: BrokerKind, url: &str) -> Config {
    let mut config = memory_config();
    config.broker.kind = kind;
    config.broker.url = Some(url.to_owned());
    config
}

/// A running node, stopped on drop.
pub struct TestServer {
    pub base: String,
    pub state: Sidecast,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), sidecast_web::StartError>>>,
}

impl TestServer {
    /// Builds and serves a node from `config`.
    pub async fn start(config: Config) -> Self {
        Self::start_with(sidecast_web::Sidecast::builder().config(config)).await
    }

    /// Serves a node from a prepared builder.
    pub async fn start_with(builder: sidecast_web::SidecastBuilder) -> Self {
        let state = builder.build().await.expect("node builds");
        let listener = tokio::net::TcpListener::bind(state.config().server.bind)
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(sidecast_web::serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        Self {
            base,
            state,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Starts a node from `config`, signs in at `GET /login` and connects one client with that
    /// session: how most tests begin. Returns the node, the `Cookie` value and the client.
    pub async fn start_signed_in(config: Config) -> (Self, String, SioClient) {
        let server = Self::start(config).await;
        let cookie = server.login().await;
        let client = server.client(&cookie).await;
        (server, cookie, client)
    }

    /// Connects a client with `options` and waits until this node accepted or refused it.
    pub async fn connect(&self, options: ClientOptions) -> Connect {
        connect(&self.socket_url(), options).await
    }

    /// Connects a client that sends the session `cookie`, failing the test if it is refused.
    pub async fn client(&self, cookie: &str) -> SioClient {
        client_at(&self.socket_url(), cookie).await
    }

    /// Connects a websocket-only client (no polling upgrade) that sends the session `cookie`,
    /// failing the test if it is refused.
    pub async fn websocket_client(&self, cookie: &str) -> SioClient {
        let options = ClientOptions {
            websocket_only: true,
            ..with_cookie(cookie)
        };
        connect(&self.socket_url(), options).await.accepted()
    }

    /// `GET path` on this node; the response, whatever its status.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{path}", self.base)).await.unwrap()
    }

    /// `GET path` on this node, expecting 200; the body as text.
    pub async fn get_text(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.text().await.unwrap()
    }

    /// A request to `path` (starting with `/`) on this node.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new().request(method, format!("{}{path}", self.base))
    }

    /// The Socket.IO URL of this node.
    pub fn socket_url(&self) -> String {
        format!("{}{}/", self.base, self.state.config().server.socketio_path)
    }

    /// `GET /login`; returns the `Cookie` header value to send back.
    pub async fn login(&self) -> String {
        let response = reqwest::get(format!("{}/login", self.base)).await.unwrap();
        assert_eq!(response.status(), 200);
        let cookie = session_cookie(&response);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, serde_json::json!({"name": "Gonzalo"}));
        cookie
    }

    /// `POST /api/` with a raw body and content type; returns status and JSON answer.
    pub async fn post_api(
        &self,
        cookie: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("{}/api/", self.base))
            .body(body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("answer is not JSON: {status} {text:?}"));
        (status, value)
    }

    /// `POST /api/` with a JSON body, expecting success.
    pub async fn publish(&self, cookie: &str, body: Value) {
        let (status, answer) = self
            .post_api(Some(cookie), Some("application/json"), body.to_string())
            .await;
        assert_eq!((status, answer), (200, serde_json::json!({"status": true})));
    }

    /// Publishes a `message` event with `body` through `POST /api/` and asserts that `client`
    /// receives it next: proof that the node's publish and delivery path works.
    pub async fn round_trip(&self, cookie: &str, client: &mut SioClient, body: &str) {
        self.publish(
            cookie,
            serde_json::json!({"channel": "message", "body": body}),
        )
        .await;
        assert_eq!(
            client.next_event().await,
            ("message".to_owned(), vec![Value::from(body)])
        );
    }

    /// `POST /api/` while the broker is down: asserts the fast 503 with `Retry-After` (never a
    /// hang or a 500) and returns the JSON answer.
    pub async fn publish_in_outage(&self, cookie: &str) -> Value {
        let response = post_json(
            &self.base,
            cookie,
            serde_json::json!({"channel": "message", "body": "lost"}),
        )
        .await;
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        response.json().await.unwrap()
    }

    /// `POST /api/rooms` with `body`, a cookie and a bearer token when given; status and JSON
    /// answer.
    pub async fn post_rooms(
        &self,
        cookie: Option<&str>,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let mut request = self
            .request(reqwest::Method::POST, "/api/rooms")
            .json(&body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Stops the node gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("node stops in time")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The pseudo-event recorded when the server closes the socket.
pub const CLOSED: &str = "__closed__";

/// One received event: name and arguments.
pub type Event = (String, Vec<Value>);

/// A connected Socket.IO client that records every event it receives and the recovery reports
/// (`sidecast:recovery`) apart. A client that asked for offsets (an `offset` key in its `auth`)
/// records events without the offset that comes as their last argument (kept in
/// [`SioClient::last_offset`]); any other client records the arguments exactly as they came.
pub struct SioClient {
    pub client: Client,
    /// Everything received, in order, with the offset it carried.
    received: mpsc::UnboundedReceiver<(Event, Option<String>)>,
    /// Pulled from `received` while looking for the other kind.
    events: std::collections::VecDeque<Event>,
    reports: std::collections::VecDeque<Event>,
    /// The offset of the last offset-carrying item pulled from `received`.
    last_offset: Option<String>,
}

/// The reserved event that tells a socket where its recovery left it.
pub const RECOVERY_EVENT: &str = "sidecast:recovery";

/// Whether `value` is an offset of the brokers tested here (20 digits, two such numbers joined
/// by `-`, or `"0"`, the start of an empty history), as recovery appends to every event of a
/// socket that asked for offsets.
pub fn is_offset(value: &Value) -> bool {
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    value.as_str().is_some_and(|s| {
        s == "0"
            || match s.split_once('-') {
                Some((a, b)) => digits(a) && digits(b),
                None => digits(s),
            }
    })
}

/// How a connect attempt ended.
pub enum Connect {
    Accepted(SioClient),
    Refused(String),
}

impl Connect {
    pub fn accepted(self) -> SioClient {
        match self {
            Connect::Accepted(c) => c,
            Connect::Refused(reason) => panic!("connect refused: {reason}"),
        }
    }

    pub fn refused(self) -> String {
        match self {
            Connect::Accepted(_) => panic!("connect was accepted"),
            Connect::Refused(reason) => reason,
        }
    }
}

/// Client options that send a session cookie.
pub fn with_cookie(cookie: &str) -> ClientOptions {
    ClientOptions {
        cookie: Some(cookie.to_owned()),
        ..Default::default()
    }
}

/// The `Cookie` header value that sends back the cookie a response sets.
pub fn session_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("set-cookie")
        .expect("the response sets a cookie")
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Connects a client to the Socket.IO URL `url` with the session `cookie`, failing the test if
/// it is refused.
pub async fn client_at(url: &str, cookie: &str) -> SioClient {
    connect(url, with_cookie(cookie)).await.accepted()
}

/// Connects a client to `url` with `cookie`, expecting a refusal; returns its reason.
pub async fn refused_at(url: &str, cookie: &str) -> String {
    connect(url, with_cookie(cookie)).await.refused()
}

/// Client options that send `token` in the Socket.IO `auth` payload (`{"token": ...}`).
pub fn with_token(token: &str) -> ClientOptions {
    ClientOptions {
        auth: Some(serde_json::json!({ "token": token })),
        ..Default::default()
    }
}

/// `GET {base}/login`; returns the `Cookie` header value to send back.
pub async fn login_at(base: &str) -> String {
    let response = reqwest::get(format!("{base}/login")).await.unwrap();
    assert_eq!(response.status(), 200);
    session_cookie(&response)
}

/// `GET {base}/logout` with the session `cookie`, expecting success.
pub async fn logout_at(base: &str, cookie: &str) -> reqwest::Response {
    let response = reqwest::Client::new()
        .get(format!("{base}/logout"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
}

/// `POST {base}/api/` with a JSON body and a session cookie.
pub async fn post_json(base: &str, cookie: &str, body: Value) -> reqwest::Response {
    post_api_with(base, &[("cookie", cookie)], body).await
}

/// `POST {base}/api/` with a JSON body and the given request headers (credentials, origin).
pub async fn post_api_with(base: &str, headers: &[(&str, &str)], body: Value) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/api/"))
        .json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// Polls `{base}/readyz` until it answers `status`, for at most `within`; returns when it did.
pub async fn await_ready(base: &str, status: u16, within: Duration) -> std::time::Instant {
    let deadline = std::time::Instant::now() + within;
    loop {
        let got = reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status()
            .as_u16();
        if got == status {
            return std::time::Instant::now();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Options of a test client.
#[derive(Default, Clone)]
pub struct ClientOptions {
    pub cookie: Option<String>,
    pub auth: Option<Value>,
    pub websocket_only: bool,
    pub headers: Vec<(String, String)>,
    /// The namespace to connect to; `/` when `None`.
    pub namespace: Option<String>,
}

/// Connects a client and waits until the server accepted or refused it.
pub async fn connect(url: &str, options: ClientOptions) -> Connect {
    let (event_tx, received) = mpsc::unbounded_channel::<(Event, Option<String>)>();
    let (state_tx, mut state_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let connected_tx = state_tx.clone();
    let close_tx = event_tx.clone();
    // Only a socket that asked for offsets gets them; any other keeps every argument.
    let with_offsets = options
        .auth
        .as_ref()
        .is_some_and(|auth| auth.get("offset").is_some());
    let mut builder = ClientBuilder::new(url)
        .reconnect(false)
        .transport_type(if options.websocket_only {
            TransportType::Websocket
        } else {
            TransportType::Any
        })
        .on(rust_socketio::Event::Connect, move |_, _| {
            let _ = connected_tx.send(Ok(()));
            async {}.boxed()
        })
        .on(rust_socketio::Event::Error, move |payload, _| {
            let text = match payload {
                Payload::Text(values) => values
                    .first()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .unwrap_or_default(),
                other => format!("{other:?}"),
            };
            let _ = state_tx.send(Err(text));
            async {}.boxed()
        })
        .on(rust_socketio::Event::Close, move |_, _| {
            // Recorded as an event so that tests can await a disconnect like any event.
            let _ = close_tx.send(((CLOSED.to_owned(), Vec::new()), None));
            async {}.boxed()
        })
        .on_any(move |event, payload, _| {
            let mut values = match payload {
                Payload::Text(values) => values,
                other => vec![Value::String(format!("{other:?}"))],
            };
            let offset = if with_offsets && values.last().is_some_and(is_offset) {
                values.pop().and_then(|v| v.as_str().map(str::to_owned))
            } else {
                None
            };
            let _ = event_tx.send(((event.as_str().to_owned(), values), offset));
            async {}.boxed()
        });
    if let Some(namespace) = &options.namespace {
        builder = builder.namespace(namespace.as_str());
    }
    if let Some(cookie) = &options.cookie {
        builder = builder.opening_header("Cookie", cookie.as_str());
    }
    if let Some(auth) = options.auth {
        builder = builder.auth(auth);
    }
    for (k, v) in options.headers {
        builder = builder.opening_header(k, v.as_str());
    }
    let client = match builder.connect().await {
        Ok(client) => client,
        Err(e) => return Connect::Refused(format!("transport error: {e}")),
    };
    match tokio::time::timeout(DEADLINE, state_rx.recv()).await {
        Ok(Some(Ok(()))) => Connect::Accepted(SioClient {
            client,
            received,
            events: Default::default(),
            reports: Default::default(),
            last_offset: None,
        }),
        Ok(Some(Err(reason))) => {
            let _ = client.disconnect().await;
            Connect::Refused(reason)
        }
        Ok(None) | Err(_) => panic!("no connect or connect_error within {DEADLINE:?}"),
    }
}

impl SioClient {
    /// Pulls the next received item into `events` or `reports`, failing the test when none
    /// arrives within the deadline.
    async fn pull(&mut self) {
        let item = tokio::time::timeout(DEADLINE, self.received.recv())
            .await
            .expect("an event arrives in time")
            .expect("client still running");
        self.keep(item);
    }

    fn keep(&mut self, (event, offset): (Event, Option<String>)) {
        if offset.is_some() {
            self.last_offset = offset;
        }
        if event.0 == RECOVERY_EVENT {
            self.reports.push_back(event);
        } else {
            self.events.push_back(event);
        }
    }

    /// The next event (recovery reports apart), failing the test when none arrives within the
    /// deadline.
    pub async fn next_event(&mut self) -> Event {
        loop {
            if let Some(event) = self.events.pop_front() {
                return event;
            }
            self.pull().await;
        }
    }

    /// Receives events until one named `marker` arrives; returns the events before it.
    /// Used to prove that nothing else was delivered: events are ordered, so everything emitted
    /// before the marker has arrived by then.
    pub async fn events_until(&mut self, marker: &str) -> Vec<Event> {
        let mut before = Vec::new();
        loop {
            let event = self.next_event().await;
            if event.0 == marker {
                return before;
            }
            before.push(event);
        }
    }

    /// The next recovery report (`{"status", "recovered"}`), failing the test when none arrives
    /// within the deadline.
    pub async fn recovery_report(&mut self) -> Value {
        loop {
            if let Some((_, mut values)) = self.reports.pop_front() {
                return values.pop().unwrap_or_default();
            }
            self.pull().await;
        }
    }

    /// How many recovery reports (`sidecast:recovery`) have been pulled so far and not read.
    pub fn unread_reports(&self) -> usize {
        self.reports.len()
    }

    /// The offset of the last event or recovery report received, in the order they arrived.
    pub fn last_offset(&self) -> Option<String> {
        self.last_offset.clone()
    }

    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
    }

    /// Disconnects, then returns the events that had arrived but were not read yet, and the
    /// offset of the last of them (what a client would reconnect with).
    pub async fn disconnect_and_drain(mut self) -> (Vec<Event>, Option<String>) {
        let _ = self.client.disconnect().await;
        while let Ok(item) = self.received.try_recv() {
            self.keep(item);
        }
        let rest = self.events.drain(..).filter(|e| e.0 != CLOSED).collect();
        (rest, self.last_offset.clone())
    }
}
