//! [`HttpAuth`]: the `http` policy — Sidecast asks the application.
//!
//! For each connect (and each publish, with `auth.http.publish`) it POSTs a JSON request to
//! `auth.http.url`:
//!
//! ```json
//! {"action": "connect", "namespace": "/", "event": null, "rooms": [],
//!  "headers": {"cookie": "session=...", "authorization": "Bearer ..."},
//!  "token": "<auth.token of the Socket.IO connect, or the bearer token>",
//!  "peer": "203.0.113.7:51234"}
//! ```
//!
//! The application answers 200 `{"user": "alice", "rooms": ["team:7"]}` (rooms optional) to let
//! the caller in, or 401/403 `{"reason": "..."}` to refuse with a reason the client sees. Anything
//! else — a time-out, no connection, another status, an answer without a user — refuses with a
//! retryable reason (`unavailable, retry later`; 503 on `/api/`): never a hang, never an accept.
//! Failures are logged once per outage (and once when the application answers again) and counted
//! in `sidecast_auth_refusals_total{policy="http"}`. Nothing is cached: every connect asks.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use sidecast_core::config::{ConfigError, HttpAuthConfig};
use sidecast_core::{Action, AuthError, AuthPolicy, AuthRequest, ConnectHeaders, Principal};
use tokio::sync::Semaphore;

use crate::shared::{PRESENCE_NEEDS_A_TOKEN, ROOM_OPERATIONS_NEED_A_TOKEN, Refusals, string_array};

/// The name of the policy in configuration and metrics.
pub const HTTP_POLICY: &str = "http";

/// The longest reason from the application shown to a client.
const MAX_REASON_CHARS: usize = 200;

/// The longest answer read from the application.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The `http` policy: see the module documentation.
pub struct HttpAuth {
    url: String,
    client: reqwest::Client,
    timeout: Duration,
    slots: Arc<Semaphore>,
    publish: bool,
    /// Whether the application is failing now (the outage was logged).
    down: AtomicBool,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuth")
            .field("url", &sidecast_core::broker::redact_url(&self.url))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// This policy's refusals, named `http` in metrics.
const REFUSE: Refusals = Refusals::of(HTTP_POLICY);

impl HttpAuth {
    /// The policy `[auth.http]` configures.
    pub fn from_config(config: &HttpAuthConfig) -> Result<Self, ConfigError> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::Invalid(format!("`auth.http.url` cannot be used: {e}")))?;
        Ok(Self {
            url: config.url.clone(),
            client,
            timeout,
            slots: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            publish: config.publish,
            down: AtomicBool::new(false),
        })
    }

    /// The JSON request for `req`.
    fn request_body(req: &AuthRequest<'_>) -> Value {
        let (action, namespace, event, rooms): (&str, Option<&str>, Option<&str>, &[String]) =
            match req.action {
                Action::Connect { namespace } => ("connect", Some(namespace), None, &[]),
                Action::Publish { event, rooms } => ("publish", None, Some(event), rooms),
                _ => ("other", None, None, &[]),
            };
        let header = |name: http::HeaderName| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        json!({
            "action": action,
            "namespace": namespace,
            "event": event,
            "rooms": rooms,
            "headers": {
                "cookie": header(http::header::COOKIE),
                "authorization": header(http::header::AUTHORIZATION),
            },
            "token": req.token,
            "peer": req.peer.map(|p| p.to_string()),
        })
    }

    /// A failure of the application: logged once per outage, refused as retryable.
    fn outage(&self, code: &'static str, detail: impl std::fmt::Display) -> AuthError {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(url = %sidecast_core::broker::redact_url(&self.url), error = %detail, "the application's auth endpoint fails; connects are refused (retryable) until it answers");
        }
        REFUSE.unavailable(code, "the application cannot be asked right now")
    }

    /// Asks the application.
    async fn ask(&self, req: &AuthRequest<'_>) -> Result<Principal, AuthError> {
        // One budget for waiting for a slot and asking: the caller is answered within it.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let _slot = match tokio::time::timeout_at(deadline, self.slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            _ => return Err(self.outage("busy", "too many auth requests in flight")),
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining < self.timeout / 4 {
            // Too little time left to expect an answer: do not load the application for nothing.
            return Err(self.outage("busy", "too many auth requests in flight"));
        }
        let response = self
            .client
            .post(&self.url)
            .timeout(remaining)
            .json(&Self::request_body(req))
            .send()
            .await
            .map_err(|e| {
                let code = if e.is_timeout() {
                    "timeout"
                } else {
                    "unreachable"
                };
                self.outage(code, e.without_url())
            })?;
        let status = response.status().as_u16();
        let body = tokio::time::timeout(self.timeout, response.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let answered = match read_answer(status, &body) {
            Answer::Principal(principal) => Ok(principal),
            Answer::Refused(refusal) => Err(refusal),
            Answer::Unusable { code, detail } => return Err(self.outage(code, detail)),
        };
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(url = %sidecast_core::broker::redact_url(&self.url), "the application's auth endpoint answers again");
        }
        answered
    }
}

/// What an answer of the application's endpoint says.
#[doc(hidden)] // reached through `fuzzing`; not part of the API
#[derive(Debug)]
pub enum Answer {
    /// 200 with a `user` (and maybe `rooms`): the principal.
    Principal(Principal),
    /// 401 or 403: the refusal, with the application's reason.
    Refused(AuthError),
    /// Any other status, or a 200 without a `user` string: the endpoint is failing (`code`, the
    /// outage metric's label).
    Unusable {
        /// The label of the outage.
        code: &'static str,
        /// What was wrong, for the log.
        detail: String,
    },
}

/// Reads an answer of the application's endpoint: its status and body (JSON, at most
/// 64 KiB; a longer or unreadable body counts as none).
#[doc(hidden)] // reached through `fuzzing`; not part of the API
pub fn read_answer(status: u16, body: &[u8]) -> Answer {
    let body = Some(body)
        .filter(|b| b.len() <= MAX_ANSWER_BYTES)
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .unwrap_or(Value::Null);
    match status {
        200 => match body.get("user") {
            Some(Value::String(user)) if !user.is_empty() => {
                let rooms = string_array(body.get("rooms"));
                Answer::Principal(Principal::new(user.clone()).with_rooms(rooms))
            }
            _ => Answer::Unusable {
                code: "bad_answer",
                detail: "a 200 answer without a \"user\" string".to_owned(),
            },
        },
        401 => Answer::Refused(
            REFUSE.unauthenticated("unauthenticated", reason(&body, "not logged in")),
        ),
        403 => Answer::Refused(REFUSE.forbidden("forbidden", reason(&body, "not allowed"))),
        other => Answer::Unusable {
            code: "bad_status",
            detail: format!("HTTP {other}"),
        },
    }
}

/// The application's reason (`reason` or `error`), cut short and without control characters.
fn reason(body: &Value, default: &'static str) -> Cow<'static, str> {
    match body
        .get("reason")
        .or_else(|| body.get("error"))
        .and_then(Value::as_str)
    {
        Some(text) if !text.is_empty() => Cow::Owned(
            text.chars()
                .filter(|c| !c.is_control())
                .take(MAX_REASON_CHARS)
                .collect(),
        ),
        _ => Cow::Borrowed(default),
    }
}

#[async_trait]
impl AuthPolicy for HttpAuth {
    async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Principal, AuthError> {
        match req.action {
            Action::Connect { .. } => self.ask(req).await,
            Action::Publish { .. } if self.publish => self.ask(req).await,
            Action::Publish { .. } => Err(REFUSE.forbidden(
                "publish_not_enabled",
                "publishing is not asked of the application (auth.http.publish)",
            )),
            Action::Presence { .. } => Err(REFUSE.forbidden("presence", PRESENCE_NEEDS_A_TOKEN)),
            _ => Err(REFUSE.forbidden("action", ROOM_OPERATIONS_NEED_A_TOKEN)),
        }
    }

    /// What the application is sent: the cookies and `Authorization`.
    fn connect_headers(&self) -> ConnectHeaders {
        ConnectHeaders::Only(vec![http::header::COOKIE, http::header::AUTHORIZATION])
    }
}
