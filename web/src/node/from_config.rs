//! What the configuration names, built: the auth policy (`auth.policy`), the broker
//! (`broker.kind`) and the session layer with its store (`session.store`).

use std::sync::Arc;

use sidecast_auth::{
    AllowAll, AnyOf, FlaskSessionAuth, HttpAuth, JwtAuth, SessionAuth, SessionRooms, TokenAuth,
};
use sidecast_core::config::{BrokerKind, PolicyKind};
use sidecast_core::{AuthPolicy, BrokerError, Config, MemoryBroker, SharedBroker};

use crate::error::StartError;
use crate::identity::session::{SessionStoreHandle, Sessions};

/// Builds the auth policy `auth.policy` names, with [`SessionRooms`] after it when
/// `auth.session_rooms` lists room patterns.
pub fn policy_from_config(config: &Config) -> Result<Arc<dyn AuthPolicy>, StartError> {
    let build = |kind: PolicyKind| -> Result<Box<dyn AuthPolicy>, StartError> {
        Ok(match kind {
            PolicyKind::Session => Box::new(SessionAuth),
            PolicyKind::Token => Box::new(TokenAuth::new(
                config
                    .auth
                    .tokens
                    .iter()
                    .map(|(name, token)| (token.expose().to_owned(), name.clone())),
            )),
            PolicyKind::AllowAll => Box::new(AllowAll),
            PolicyKind::FlaskSession => Box::new(FlaskSessionAuth::new(&config.auth.flask_session)),
            PolicyKind::Jwt => {
                let jwt = Arc::new(JwtAuth::from_config(&config.auth.jwt)?);
                // Fetched at start, so that the first tokens need not wait for the JWKS.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let prefetch = jwt.clone();
                    runtime.spawn(async move { prefetch.prefetch().await });
                }
                Box::new(SharedPolicy(jwt))
            }
            PolicyKind::Http => Box::new(HttpAuth::from_config(&config.auth.http)?),
        })
    };
    let mut policies: Vec<Box<dyn AuthPolicy>> = config
        .auth
        .policy
        .kinds()
        .iter()
        .map(|k| build(*k))
        .collect::<Result<_, _>>()?;
    if !config.auth.session_rooms.is_empty() {
        // Last, so that a refusal names the configured policy's reason first.
        policies.push(Box::new(SessionRooms::new(
            config.auth.session_rooms.iter().cloned(),
        )));
    }
    Ok(if policies.len() == 1 {
        Arc::from(policies.remove(0))
    } else {
        Arc::new(AnyOf::new(policies))
    })
}

/// A policy shared with a start-up task.
struct SharedPolicy<P>(Arc<P>);

#[async_trait::async_trait]
impl<P: AuthPolicy> AuthPolicy for SharedPolicy<P> {
    async fn authorize(
        &self,
        req: &sidecast_core::AuthRequest<'_>,
    ) -> Result<sidecast_core::Principal, sidecast_core::AuthError> {
        self.0.authorize(req).await
    }
}

/// The start error for a broker error, with the configuration key that fixes it: the
/// transports word their errors in their own terms (`AmqpOptions::durable_exchanges`, "the
/// URL"); the configuration is this layer's.
pub(crate) fn broker_start_error(error: BrokerError) -> StartError {
    #[cfg(feature = "amqp")]
    {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(cause) = source {
            if cause.is::<sidecast_transport_amqp::ExchangeMismatch>() {
                return StartError::BrokerSetting {
                    error,
                    fix: "if the exchange is durable, set broker.durable_exchanges = true \
                          (SIDECAST_BROKER__DURABLE_EXCHANGES=true)",
                };
            }
            if let Some(mismatch) = cause.downcast_ref::<sidecast_transport_amqp::HistoryMismatch>()
            {
                // The fix is a static string: take it before `error` moves.
                let fix = history_fix(mismatch.setting());
                return StartError::BrokerSetting { error, fix };
            }
            source = cause.source();
        }
    }
    match error {
        // The transports speak of "the URL"; here it has a name.
        BrokerError::Config { .. }
        | BrokerError::Rejected { .. }
        | BrokerError::Unavailable { .. } => StartError::BrokerSetting {
            error,
            fix: "the broker's URL is broker.url (SIDECAST_BROKER__URL)",
        },
        error => StartError::Broker(error),
    }
}

/// The configuration key behind an AMQP history option that differs from the stream queue's.
#[cfg(feature = "amqp")]
fn history_fix(setting: &str) -> &'static str {
    match setting {
        "history.max_age" => {
            "every node must use the stream's retention: set recovery.max_age_secs \
             (SIDECAST_RECOVERY__MAX_AGE_SECS) to the other nodes' value, or delete the \
             sidecast.history.<channel> queue"
        }
        "history.max_bytes" => {
            "every node must use the stream's retention: set recovery.max_bytes \
             (SIDECAST_RECOVERY__MAX_BYTES) to the other nodes' value, or delete the \
             sidecast.history.<channel> queue"
        }
        _ => {
            "delete the sidecast.history.<channel> queue (it was declared with other \
             arguments), or use another broker.channel"
        }
    }
}

/// A transport's connect result as a shared broker.
#[cfg(any(feature = "redis", feature = "amqp"))]
fn connected<B: sidecast_core::Broker>(
    result: Result<B, BrokerError>,
) -> Result<SharedBroker, AttemptError> {
    Ok(Arc::new(result?))
}

/// Connects the broker `broker.kind` names; the error names the configuration key that fixes
/// it.
pub async fn connect_broker(config: &Config) -> Result<SharedBroker, StartError> {
    open_broker(config)
        .await
        .map_err(AttemptError::into_start_error)
}

/// Connects the broker `broker.kind` names, telling an unavailable broker (worth waiting for)
/// from a permanent error.
pub(crate) async fn open_broker(config: &Config) -> Result<SharedBroker, AttemptError> {
    match config.broker.kind {
        BrokerKind::Memory => Ok(Arc::new(MemoryBroker::with_retention(
            config.broker.subscription_capacity,
            config.recovery.retention(),
        ))),
        #[cfg(feature = "redis")]
        BrokerKind::Redis => {
            let mut options = sidecast_transport_redis::RedisOptions::from_config(&config.broker);
            options.history = config.recovery.retention();
            // On a Redis Cluster, with recovery off Sidecast's own channel is sharded pub/sub:
            // its messages stay on the channel's slot instead of crossing every node (decision
            // 31). Ignored on a single Redis and on Sentinel. Ingress and control channels stay
            // classic: unchanged emitters and tools PUBLISH there.
            if !config.recovery.enabled {
                options.sharded_channels = vec![config.broker.channel.clone()];
            }
            connected(sidecast_transport_redis::RedisBroker::connect(options).await)
        }
        #[cfg(feature = "amqp")]
        BrokerKind::Amqp => {
            let mut options = sidecast_transport_amqp::AmqpOptions::from_config(&config.broker);
            options.history = config.recovery.retention();
            connected(sidecast_transport_amqp::AmqpBroker::connect(options).await)
        }
        #[allow(unreachable_patterns)]
        kind => Err(AttemptError::Permanent(StartError::NotCompiled(format!(
            "broker.kind = \"{kind}\" is not compiled into this build; rebuild with the cargo \
             feature `{kind}` (cargo build -p sidecast --features {kind}), or choose another \
             broker.kind"
        )))),
    }
}

/// The session layer `[session]` configures, with the Redis store when it names one.
pub(crate) fn sessions(config: &Config) -> Result<Sessions, StartError> {
    Sessions::from_config(&config.session, redis_session_store(config)?)
}

/// The Redis session store, when `session.store = "redis"` and this build has Redis.
#[cfg(feature = "redis")]
fn redis_session_store(config: &Config) -> Result<Option<Arc<dyn SessionStoreHandle>>, StartError> {
    use sidecast_core::config::SessionStoreKind;
    if config.session.store != SessionStoreKind::Redis {
        return Ok(None);
    }
    let url = if !config.session.url.is_empty() {
        config.session.url.clone()
    } else if config.broker.kind == BrokerKind::Redis {
        config.broker.effective_url().to_owned()
    } else {
        return Err(StartError::SessionStore(
            "session.store = \"redis\" needs session.url (SIDECAST_SESSION__URL) when the broker \
             is not Redis"
                .to_owned(),
        ));
    };
    let timeout = std::time::Duration::from_millis(config.session.timeout_ms);
    let store = crate::RedisSessionStore::new(&url, timeout).map_err(|e| {
        StartError::SessionStore(format!(
            "session.url = {}: {e}",
            sidecast_core::broker::redact_url(&url)
        ))
    })?;
    Ok(Some(Arc::new(store)))
}

/// Without Redis in this build there is no Redis store; [`Sessions::from_config`] says which
/// feature `session.store = "redis"` needs.
#[cfg(not(feature = "redis"))]
fn redis_session_store(
    _config: &Config,
) -> Result<Option<Arc<dyn SessionStoreHandle>>, StartError> {
    Ok(None)
}

/// Why a start attempt failed.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// The broker is unavailable: the start waits and tries again.
    Transient(BrokerError),
    /// Retrying cannot help (a bad URL, refused credentials, a mismatched setting, a broker kind
    /// this build lacks): the start fails at once.
    Permanent(StartError),
}

impl From<BrokerError> for AttemptError {
    fn from(error: BrokerError) -> Self {
        if error.is_transient() {
            Self::Transient(error)
        } else {
            Self::Permanent(broker_start_error(error))
        }
    }
}

impl From<StartError> for AttemptError {
    fn from(error: StartError) -> Self {
        Self::Permanent(error)
    }
}

impl AttemptError {
    /// The start error: today's words for a broker that does not answer (naming `broker.url`).
    pub(crate) fn into_start_error(self) -> StartError {
        match self {
            Self::Transient(error) => broker_start_error(error),
            Self::Permanent(error) => error,
        }
    }
}
