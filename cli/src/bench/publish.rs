//! The publishing side of a bench: the login, and events sent at a steady rate through
//! `POST /api/` or straight through the broker.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use sidecast_core::{Emitter, SharedBroker};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::client::now_micros;

/// How long one publish may take before it counts as failed.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET login_url` once; returns the `Cookie` header value made of the cookies it set.
pub(crate) async fn login(http: &reqwest::Client, login_url: &Url) -> anyhow::Result<String> {
    let response = http
        .get(login_url.clone())
        .send()
        .await
        .map_err(|e| unreachable_server(login_url, &e))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!(
            "the login URL {login_url} answered {status}: {}; check --login-url (Sidecast's demo \
             login is /login, enabled by auth.demo_login)",
            body.chars().take(200).collect::<String>()
        );
    }
    let cookies: Vec<&str> = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::trim)
        .filter(|v| v.contains('='))
        .collect();
    if cookies.is_empty() {
        bail!(
            "the login URL {login_url} answered {status} but set no cookie, so there is no session to connect with; use --token instead, or another --login-url"
        );
    }
    Ok(cookies.join("; "))
}

/// A readable reason for a request that did not reach the server.
pub(crate) fn unreachable_server(url: &Url, e: &reqwest::Error) -> anyhow::Error {
    let cause = std::error::Error::source(e)
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    if e.is_connect() {
        anyhow::anyhow!(
            "cannot connect to {url}{cause}; is the server running, and is --url right?"
        )
    } else if e.is_timeout() {
        anyhow::anyhow!("{url} did not answer in time{cause}")
    } else {
        anyhow::anyhow!("request to {url} failed: {e}{cause}")
    }
}

/// Where the bench's timestamped events come from: the server's HTTP API, or the broker.
pub(crate) enum EventSource {
    /// `POST {url}/api/` with the session cookie or bearer token.
    Http {
        client: reqwest::Client,
        url: Url,
        /// The event name as a JSON string, quotes included.
        channel_json: String,
    },
    /// Sidecast's native envelope, through the configured broker.
    Broker {
        emitter: Emitter,
        broker: SharedBroker,
        event: String,
    },
}

impl EventSource {
    /// An HTTP publisher with the credentials the clients use.
    pub(crate) fn http(
        api_url: Url,
        event: &str,
        cookie: Option<&str>,
        token: Option<&str>,
        max_in_flight: usize,
    ) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(cookie) = cookie {
            headers.insert(
                header::COOKIE,
                HeaderValue::from_str(cookie).context("the login cookie is not a valid header")?,
            );
        }
        if let Some(token) = token {
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}"))
                    .context("--token is not a valid header value")?,
            );
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(max_in_flight)
            .tcp_nodelay(true)
            .timeout(PUBLISH_TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self::Http {
            client,
            url: api_url,
            channel_json: serde_json::to_string(event)?,
        })
    }

    async fn publish(&self, seq: u64) -> Result<(), String> {
        match self {
            Self::Http {
                client,
                url,
                channel_json,
            } => {
                let t = now_micros();
                let body =
                    format!(r#"{{"channel":{channel_json},"body":{{"t":{t},"seq":{seq}}}}}"#);
                let response = client
                    .post(url.clone())
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| unreachable_server(url, &e).to_string())?;
                let status = response.status();
                // Read the body so that the connection goes back to the pool.
                let text = response.text().await.unwrap_or_default();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(http_refusal(url, status, &text))
                }
            }
            Self::Broker { emitter, event, .. } => {
                let t = now_micros();
                emitter
                    .emit(event, serde_json::json!({"t": t, "seq": seq}))
                    .await
                    .map_err(|e| format!("broker publish failed: {e}"))
            }
        }
    }

    /// Closes the broker connection of a broker publisher.
    pub(crate) async fn close(&self) {
        if let Self::Broker { broker, .. } = self {
            broker.close().await;
        }
    }
}

fn http_refusal(url: &Url, status: StatusCode, body: &str) -> String {
    let hint = match status.as_u16() {
        401 | 403 => "; give --login-url or --token so that publishing is authorized",
        404 | 405 => "; is --url the server's base URL (POST {url}/api/)?",
        429 => {
            "; the server rate-limits publishes (Sidecast: server.api_rate_limit, 0 turns it off)"
        }
        503 => "; the server's broker is unavailable",
        _ => "",
    };
    format!(
        "POST {url} answered {status}: {}{hint}",
        body.chars().take(200).collect::<String>()
    )
}

/// Counters of the publisher.
#[derive(Debug, Default)]
pub(crate) struct PublishStats {
    /// Publishes started.
    pub(crate) attempted: AtomicU64,
    /// Publishes the server (or broker) accepted.
    pub(crate) accepted: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) first_error: OnceLock<String>,
    /// Largest delay of a publish behind its schedule, µs (the generator falling behind).
    pub(crate) max_lag_us: AtomicU64,
}

/// Publishes `total` events at `rate` per second, `seq` 0, 1, ...; at most `max_in_flight` at a
/// time (when they are all busy, the schedule slips and `max_lag_us` shows it).
pub(crate) async fn run(
    publisher: Arc<EventSource>,
    stats: Arc<PublishStats>,
    rate: f64,
    total: u64,
    max_in_flight: usize,
) {
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for seq in 0..total {
        let due = start + Duration::from_secs_f64(seq as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let lag = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
        stats.max_lag_us.fetch_max(lag, Ordering::Relaxed);
        stats.attempted.fetch_add(1, Ordering::Relaxed);
        let publisher = Arc::clone(&publisher);
        let stats = Arc::clone(&stats);
        tasks.spawn(async move {
            match publisher.publish(seq).await {
                Ok(()) => {
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    let _ = stats.first_error.set(e);
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(permit);
        });
        // Forget finished publishes as we go, so that a long run does not keep them all.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}
