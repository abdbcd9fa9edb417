//! Errors: [`ApiError`] for HTTP answers (one place maps them to statuses), [`StartError`] for
//! building and starting a node.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sidecast_core::config::ConfigError;
use sidecast_core::{AuthError, BrokerError, RefusalKind};

/// Everything an HTTP endpoint can refuse with, mapped to a status and `{"error": ...}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request body is not declared as JSON (415).
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// The body is larger than `server.max_body_bytes` (413).
    #[error("request body is larger than {limit} bytes (server.max_body_bytes)")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not JSON (400).
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The JSON does not have the expected shape (422).
    #[error("{message}")]
    Schema {
        /// The offending field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The auth policy refused (401, 403) or failed (500).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The broker did not take the message (503 when transient, 500 otherwise).
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The session store failed (503).
    #[error("session store unavailable: {0}")]
    Session(String),
    /// The endpoint is turned off by configuration (404).
    #[error("{0}")]
    Disabled(&'static str),
    /// A browser page of another origin (403).
    #[error("origin {0} is not allowed; add it to server.allowed_origins if it should be")]
    ForeignOrigin(String),
    /// The principal publishes faster than `server.api_rate_limit` (429).
    #[error("rate limit reached (server.api_rate_limit); retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request will be accepted again.
        retry_after_secs: u64,
    },
}

impl ApiError {
    /// A 422 for `field`.
    pub fn schema(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Schema {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InvalidJson(_) => StatusCode::BAD_REQUEST,
            Self::Schema { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Auth(e) => match e.kind() {
                Some(RefusalKind::Unauthenticated) => StatusCode::UNAUTHORIZED,
                Some(RefusalKind::Forbidden) => StatusCode::FORBIDDEN,
                Some(RefusalKind::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::Broker(e) if e.is_transient() || matches!(e, BrokerError::Closed) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Broker(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Session(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Disabled(_) => StatusCode::NOT_FOUND,
            Self::ForeignOrigin(_) => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            Self::Schema { field, message } => json!({ "error": message, "field": field }),
            // Internal failures are logged in full but answered without details.
            Self::Auth(AuthError::Internal(e)) => {
                tracing::error!(error = %e, "auth policy failed");
                json!({ "error": "authorization failed" })
            }
            other => json!({ "error": other.to_string() }),
        };
        let retry_after = match &self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            // Outages are usually short: tell clients when to try again.
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(1),
            _ => None,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Why a node could not be built or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid: a key has a bad value, or keys contradict each other.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configuration names a broker or session store whose cargo feature is not compiled into
    /// this build; the message names the feature.
    #[error("{0}")]
    NotCompiled(String),
    /// The session store `[session]` names cannot be set up (no Redis URL, or an invalid one).
    #[error("{0}")]
    SessionStore(String),
    /// The broker could not be reached or subscribed to.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The broker refused something a configuration key controls: the transport's error, and
    /// the key (with its environment variable) that fixes it.
    #[error("{error}; in the configuration: {fix}")]
    BrokerSetting {
        /// The transport's error, worded in the transport's own options.
        error: BrokerError,
        /// The configuration key (and environment variable) that fixes it, e.g.
        /// `broker.durable_exchanges = true`.
        fix: &'static str,
    },
    /// A file named by the configuration could not be read.
    #[error("cannot read {key} = {path}: {source}")]
    File {
        /// The configuration key.
        key: &'static str,
        /// The path it names.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}
