//! Sessions: every request carries a [`tower_sessions::Session`], whatever the store.
//!
//! * `cookie` (default): the session data lives in a signed cookie, like Flask's session. Nothing
//!   is stored server-side, so any node that shares `session.secret` accepts it.
//! * `memory`: tower-sessions' in-process store behind a signed session-id cookie.
//! * `redis`: a shared server-side store (see the `redis` feature).
//!
//! Handlers and the Socket.IO connect middleware read the user with [`session_user`].

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, CookieJar, Key, SameSite};
use sidecast_core::config::{SessionConfig, SessionStoreKind};
use tokio::sync::Mutex;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

use crate::error::StartError;

/// The session key holding the logged-in user, as in the original (`session['user']`).
pub const USER_KEY: &str = "user";

/// The user of a session, if any. A store failure reads as "no user" and is logged: refusing is
/// the safe answer.
pub async fn session_user(session: Option<&Session>) -> Option<String> {
    let session = session?;
    match session.get::<String>(USER_KEY).await {
        Ok(user) => user,
        Err(e) => {
            tracing::warn!(error = %e, "session store failed; treating the request as logged out");
            None
        }
    }
}

/// The key that signs session cookies: derived from `session.secret`, or random per process.
pub(crate) fn signing_key(config: &SessionConfig) -> Key {
    if config.secret.is_empty() {
        tracing::warn!(
            "session.secret is empty: using a random key for this process; sessions end on \
             restart and are not accepted by other nodes. Set session.secret (SIDECAST_SESSION__SECRET) \
             to the same value on every node"
        );
        Key::generate()
    } else {
        Key::derive_from(config.secret.expose().as_bytes())
    }
}

/// The session layer chosen by configuration, ready to wrap a router.
#[derive(Clone)]
pub(crate) enum Sessions {
    /// Stateless signed cookies.
    Cookie(Arc<CookieSessions>),
    /// A server-side store behind a signed session-id cookie.
    Store {
        store: Arc<dyn SessionStoreHandle>,
        key: Key,
        name: String,
        secure: bool,
    },
}

impl Sessions {
    /// Picks the store `session.store` names. `redis` is the Redis store when this build and
    /// configuration provide one.
    pub(crate) fn from_config(
        config: &SessionConfig,
        redis: Option<Arc<dyn SessionStoreHandle>>,
    ) -> Result<Self, StartError> {
        let key = signing_key(config);
        let store: Arc<dyn SessionStoreHandle> = match config.store {
            SessionStoreKind::Cookie => {
                return Ok(Self::Cookie(Arc::new(CookieSessions {
                    key,
                    name: config.cookie_name.clone(),
                    secure: config.secure,
                })));
            }
            SessionStoreKind::Memory => Arc::new(MemoryStore::default()),
            SessionStoreKind::Redis => redis.ok_or_else(|| {
                StartError::NotCompiled(
                    "session.store = \"redis\" needs the `redis` cargo feature of sidecast-web \
                     and a Redis URL (session.url, or broker.url with broker.kind = \"redis\"); \
                     or choose session.store = \"cookie\""
                        .to_owned(),
                )
            })?,
        };
        Ok(Self::Store {
            store,
            key,
            name: config.cookie_name.clone(),
            secure: config.secure,
        })
    }

    /// Wraps `router` (which must already contain the Socket.IO layer), so that both HTTP
    /// handlers and socket handshakes see the session.
    pub(crate) fn apply<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        let name: Arc<str> = match self {
            Self::Cookie(settings) => Arc::from(settings.name.as_str()),
            Self::Store { name, .. } => Arc::from(name.as_str()),
        };
        // Outermost: the session layer sees the unquoted cookie and its Set-Cookie is re-encoded.
        let router = match self {
            Self::Cookie(settings) => router.layer(middleware::from_fn_with_state(
                settings.clone(),
                cookie_sessions,
            )),
            Self::Store {
                store,
                key,
                name,
                secure,
            } => router.layer(
                SessionManagerLayer::new(DynStore(store.clone()))
                    .with_name(name.clone())
                    .with_http_only(true)
                    .with_same_site(tower_sessions::cookie::SameSite::Lax)
                    .with_secure(*secure)
                    .with_signed(key.clone()),
            ),
        };
        router.layer(middleware::from_fn_with_state(
            name,
            crate::identity::session_cookie::session_cookie_values,
        ))
    }
}

/// A session store chosen at run time (the Redis store lives behind a cargo feature).
pub(crate) trait SessionStoreHandle: SessionStore {}

impl<T: SessionStore> SessionStoreHandle for T {}

#[derive(Debug, Clone)]
struct DynStore(Arc<dyn SessionStoreHandle>);

#[async_trait]
impl SessionStore for DynStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.0.create(record).await
    }
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.0.save(record).await
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.0.load(id).await
    }
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.0.delete(id).await
    }
}

/// Settings of the stateless cookie session layer.
#[derive(Debug)]
pub(crate) struct CookieSessions {
    key: Key,
    name: String,
    secure: bool,
}

/// The store behind one request's cookie session: it holds the record decoded from the cookie,
/// and receives the record to write back.
#[derive(Debug, Default)]
struct RequestStore {
    record: Mutex<Option<Record>>,
}

/// The id every cookie session uses inside its own one-record store; it never leaves the server.
const COOKIE_SESSION_ID: Id = Id(1);

#[async_trait]
impl SessionStore for RequestStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        record.id = COOKIE_SESSION_ID;
        *self.record.lock().await = Some(record.clone());
        Ok(())
    }
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        *self.record.lock().await = Some(record.clone());
        Ok(())
    }
    async fn load(&self, _id: &Id) -> session_store::Result<Option<Record>> {
        Ok(self.record.lock().await.clone())
    }
    async fn delete(&self, _id: &Id) -> session_store::Result<()> {
        *self.record.lock().await = None;
        Ok(())
    }
}

/// The middleware of the `cookie` store: decodes the signed cookie into a [`Session`] before the
/// request and writes the session back into the cookie after it, when it changed.
async fn cookie_sessions(
    axum::extract::State(settings): axum::extract::State<Arc<CookieSessions>>,
    mut request: Request,
    next: Next,
) -> Response {
    let record = record_from_cookies(
        request
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok()),
        &settings.name,
        &settings.key,
    );
    let had_cookie = record.is_some();
    let store = Arc::new(RequestStore {
        record: Mutex::new(record),
    });
    let session = Session::new(had_cookie.then_some(COOKIE_SESSION_ID), store.clone(), None);
    request.extensions_mut().insert(session.clone());

    let mut response = next.run(request).await;

    if !session.is_modified() {
        return response;
    }
    let cookie = if session.is_empty().await {
        if !had_cookie {
            return response;
        }
        let mut removal = Cookie::new(settings.name.clone(), "");
        removal.make_removal();
        removal
    } else {
        if let Err(e) = session.save().await {
            tracing::error!(error = %e, "cannot save cookie session");
            return response;
        }
        let Some(value) = store.record.lock().await.as_ref().map(encode_record) else {
            return response;
        };
        Cookie::new(settings.name.clone(), value)
    };
    match HeaderValue::from_str(&set_cookie(cookie, &settings.key, settings.secure)) {
        Ok(value) => {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        Err(e) => tracing::error!(error = %e, "session cookie is not a valid header"),
    }
    response
}

/// The session record the `Cookie` header values `headers` carry in the cookie `name` signed with
/// `key`. A cookie whose signature does not verify is ignored, exactly as if there were none.
pub(crate) fn record_from_cookies<'h>(
    headers: impl Iterator<Item = &'h str>,
    name: &str,
    key: &Key,
) -> Option<Record> {
    let mut jar = CookieJar::new();
    for value in headers {
        for cookie in Cookie::split_parse_encoded(value.to_owned()).flatten() {
            jar.add_original(cookie);
        }
    }
    jar.signed(key)
        .get(name)
        .and_then(|c| decode_record(c.value()))
}

/// The `Set-Cookie` header value of `cookie` (the session's value, or its removal), signed
/// with `key`, with the session cookie's attributes.
pub(crate) fn set_cookie(mut cookie: Cookie<'static>, key: &Key, secure: bool) -> String {
    cookie.set_path("/");
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Lax);
    cookie.set_secure(secure);
    let mut out = CookieJar::new();
    out.signed_mut(key).add(cookie);
    out.delta()
        .map(|cookie| cookie.encoded().to_string())
        .next()
        .unwrap_or_default()
}

/// Session data as cookie-safe text: base64url of its JSON.
fn encode_record(record: &Record) -> String {
    encode_data(&record.data)
}

/// Session data (a record's `data`) as cookie-safe text: base64url of its JSON.
pub(crate) fn encode_data(data: &std::collections::HashMap<String, serde_json::Value>) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(data).unwrap_or_default())
}

/// The record of a session cookie's (verified) value.
fn decode_record(value: &str) -> Option<Record> {
    let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
    let data = serde_json::from_slice(&bytes).ok()?;
    Some(Record {
        id: COOKIE_SESSION_ID,
        data,
        // Browser-session cookies: the record lives as long as the cookie.
        expiry_date: time_far_future(),
    })
}

fn time_far_future() -> tower_sessions::cookie::time::OffsetDateTime {
    tower_sessions::cookie::time::OffsetDateTime::now_utc()
        + tower_sessions::cookie::time::Duration::days(365)
}
