//! Validation: [`ConfigError`], and the rules serde cannot express (values that depend on each
//! other, across sections too), each refusal naming the key and the fix.

use std::path::PathBuf;

use super::{BrokerKind, Config, IngressFormat, PolicyKind, Secret};

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file given with `--config` does not exist.
    #[error("config file {} not found; check the path given with --config", .0.display())]
    FileNotFound(PathBuf),
    /// A key is unknown or has a bad value; figment's message names the key and the file.
    #[error("invalid configuration: {0}; see docs/configuration.md for every key and its values")]
    Invalid(String),
}

impl Config {
    /// The rules of `[presence]`.
    fn validate_presence(&self) -> Result<(), ConfigError> {
        let bad =
            |key: &str, why: String| Err(ConfigError::Invalid(format!("`presence.{key}` {why}")));
        let presence = &self.presence;
        if let Some(pattern) = presence.rooms.iter().find(|p| {
            p.is_empty() || p.len() > crate::rooms::MAX_ROOM_LEN || p.chars().any(char::is_control)
        }) {
            return bad(
                "rooms",
                format!(
                    "has {pattern:?}; a pattern is a room name with `*`, `?` or `[...]`, such as \
                     \"chat:*\", at most {} bytes, without control characters",
                    crate::rooms::MAX_ROOM_LEN
                ),
            );
        }
        if presence.max_members == 0 {
            return bad(
                "max_members",
                "must be at least 1; the default is 100".to_owned(),
            );
        }
        if presence.max_info_bytes > 64 * 1024 {
            return bad(
                "max_info_bytes",
                format!(
                    "is {}; at most 65536 bytes (every node keeps every entry), the default is 2048",
                    presence.max_info_bytes
                ),
            );
        }
        if presence.heartbeat_ms < 100 || presence.heartbeat_ms > 600_000 {
            return bad(
                "heartbeat_ms",
                format!(
                    "is {}; it must be between 100 and 600000 milliseconds, the default is 5000",
                    presence.heartbeat_ms
                ),
            );
        }
        if presence.missed_heartbeats == 0 {
            return bad(
                "missed_heartbeats",
                "must be at least 1; the default is 3 (a node is dropped after 3 missed \
                 heartbeats)"
                    .to_owned(),
            );
        }
        if presence.diff_interval_ms > 10_000 {
            return bad(
                "diff_interval_ms",
                format!(
                    "is {}; at most 10000 milliseconds, the default is 200",
                    presence.diff_interval_ms
                ),
            );
        }
        Ok(())
    }

    /// Checks the rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid(format!("`{key}` {why}")));
        if !self.server.socketio_path.starts_with('/') || self.server.socketio_path.len() < 2 {
            return bad(
                "server.socketio_path",
                "must be an absolute path other than `/`, such as \"/ws/socket.io\"",
            );
        }
        if self.server.namespaces.is_empty() {
            return bad(
                "server.namespaces",
                "must name at least one namespace; the default is [\"/\"]",
            );
        }
        if let Some(ns) = self.server.namespaces.iter().find(|ns| {
            !ns.starts_with('/')
                || ns.len() > crate::rooms::MAX_ROOM_LEN
                || ns.chars().any(char::is_control)
        }) {
            return bad(
                "server.namespaces",
                &format!(
                    "has {ns:?}; a namespace starts with `/`, such as \"/\" or \"/chat\", and has \
                     no control characters"
                ),
            );
        }
        if let Some(ns) = self
            .server
            .namespaces
            .iter()
            .enumerate()
            .find(|(i, ns)| self.server.namespaces[..*i].contains(ns))
            .map(|(_, ns)| ns)
        {
            return bad(
                "server.namespaces",
                &format!("lists {ns:?} twice; list each namespace once"),
            );
        }
        if self.recovery.enabled && self.recovery.max_age_secs == 0 {
            return bad(
                "recovery.max_age_secs",
                "must be at least 1 second; the default is 120 (or set recovery.enabled = false)",
            );
        }
        if self.recovery.enabled && (self.recovery.max_events == 0 || self.recovery.max_replay == 0)
        {
            return bad(
                "recovery.max_events",
                "and recovery.max_replay must be at least 1; the defaults are 10000",
            );
        }
        self.validate_presence()?;
        if self.broker.channel.is_empty() {
            return bad(
                "broker.channel",
                "must not be empty; the default is \"sidecast\"",
            );
        }
        if !self.session.secret.is_empty() && self.session.secret.expose().len() < 32 {
            return bad(
                "session.secret",
                "must be at least 32 bytes long; generate one with `openssl rand -hex 32`",
            );
        }
        if self.auth.policy.kinds().is_empty() {
            return bad(
                "auth.policy",
                "needs at least one policy: \"session\", \"token\", \"jwt\", \"http\", \"flask-session\" or \"allow-all\"",
            );
        }
        if self.auth.policy.kinds().contains(&PolicyKind::Token) && self.auth.tokens.is_empty() {
            return bad(
                "auth.tokens",
                "is empty but auth.policy includes \"token\"; add `[auth.tokens] name = \"token\"`",
            );
        }
        if self.auth.policy.kinds().contains(&PolicyKind::AllowAll)
            && !self.server.bind.ip().is_loopback()
            && !self.auth.allow_all_public
        {
            return bad(
                "auth.policy",
                &format!(
                    "is \"allow-all\" on the public address {}: anybody who can reach it could \
                     connect and publish. Bind to 127.0.0.1, choose another policy, or set \
                     auth.allow_all_public = true if that is really intended",
                    self.server.bind
                ),
            );
        }
        self.validate_flask_session()?;
        self.validate_jwt()?;
        self.validate_http_auth()?;
        if self.auth.tokens.values().any(Secret::is_empty) {
            return bad("auth.tokens", "has an empty token; give every name a token");
        }
        if let Some(pattern) = self.auth.session_rooms.iter().find(|p| {
            p.is_empty() || p.len() > crate::rooms::MAX_ROOM_LEN || p.chars().any(char::is_control)
        }) {
            return bad(
                "auth.session_rooms",
                &format!(
                    "has the pattern {pattern:?}; give room patterns of 1 to {} bytes without \
                     control characters, such as \"game:*\" or \"team:{{user}}\"",
                    crate::rooms::MAX_ROOM_LEN
                ),
            );
        }
        if self.server.socket_buffer == 0 {
            return bad("server.socket_buffer", "must be at least 1");
        }
        if self.server.shutdown_jitter_ms > self.server.shutdown_timeout_ms {
            return bad(
                "server.shutdown_jitter_ms",
                "must not be larger than server.shutdown_timeout_ms",
            );
        }
        if self.broker.subscription_capacity == 0 {
            return bad("broker.subscription_capacity", "must be at least 1");
        }
        self.validate_sentinel_urls()?;
        self.validate_min_replicas()?;
        self.validate_cluster_urls()?;
        // After the Sentinel and Cluster checks, whose errors say more about a Redis URL given
        // with kind = "amqp".
        self.validate_amqp_urls()?;
        self.validate_admin()?;
        self.validate_ingress()
    }

    /// `[admin]`, when enabled: a bcrypt `password_hash` (never a password), a user name, a
    /// namespace of its own, origins that are origins, and limits that let the UI work.
    fn validate_admin(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid(format!("`{key}` {why}")));
        let admin = &self.admin;
        if !admin.enabled {
            return Ok(());
        }
        if let Err(why) = super::check_bcrypt_hash(admin.password_hash.expose()) {
            return bad(
                "admin.password_hash",
                &format!("{why}; {}", super::HASH_HOWTO),
            );
        }
        if admin.username.is_empty() {
            return bad(
                "admin.username",
                "must not be empty; it is the name the Admin UI logs in with",
            );
        }
        let ns = &admin.namespace;
        if !ns.starts_with('/') || ns.len() < 2 || ns.chars().any(char::is_control) {
            return bad(
                "admin.namespace",
                &format!("is {ns:?}; give a namespace of its own such as \"/admin\""),
            );
        }
        if self.server.namespaces.contains(ns) {
            return bad(
                "admin.namespace",
                &format!(
                    "is {ns:?}, which server.namespaces serves to applications; the admin \
                     namespace must be one no application socket uses"
                ),
            );
        }
        if let Some(origin) = admin
            .allowed_origins
            .iter()
            .find(|o| !(o.starts_with("http://") || o.starts_with("https://")) || o.contains('*'))
        {
            return bad(
                "admin.allowed_origins",
                &format!(
                    "has {origin:?}; list full origins such as \"https://admin.socket.io\" (no \
                     wildcards: the UI sends credentials)"
                ),
            );
        }
        if admin.max_connections == 0 {
            return bad("admin.max_connections", "must be at least 1");
        }
        if admin.login_attempts_per_minute == 0 || admin.actions_per_minute == 0 {
            return bad(
                "admin.login_attempts_per_minute",
                "and admin.actions_per_minute must be at least 1",
            );
        }
        if !(100..=10_000).contains(&admin.stats_interval_ms) {
            return bad(
                "admin.stats_interval_ms",
                "must be from 100 to 10000 (the UI marks a node unhealthy after 10 s without \
                 stats); the default is 2000",
            );
        }
        if admin.session_ttl_secs == 0 {
            return bad(
                "admin.session_ttl_secs",
                "must be at least 1; the default is 86400 (24 h)",
            );
        }
        Ok(())
    }

    /// `broker.url` with several URLs (a list, or commas): only for `kind = "amqp"`, and each
    /// entry an `amqp://` or `amqps://` URL with a host and a numeric port if any. The entry is
    /// named by its place; the URL is shown redacted. The rest of an AMQP URL (vhost, query) is
    /// the transport's to check when it starts.
    fn validate_amqp_urls(&self) -> Result<(), ConfigError> {
        let Some(url) = self.broker.url.as_deref() else {
            return Ok(());
        };
        let urls = crate::broker::url_list(url);
        let fix = "give amqp://user:password@host:port/vhost or amqps://..., one per list entry \
                   (broker.url = [\"amqp://...\", \"amqp://...\"]) or separated by commas \
                   (SIDECAST_BROKER__URL)";
        if urls.len() > 1 && self.broker.kind != BrokerKind::Amqp {
            return Err(ConfigError::Invalid(format!(
                "`broker.url` has {} URLs but broker.kind is \"{}\": several URLs are for \
                 kind = \"amqp\" (the nodes of a RabbitMQ cluster); a Redis Sentinel or \
                 Cluster takes its hosts in one URL (redis+sentinel://h1,h2/name, \
                 redis+cluster://h1,h2)",
                urls.len(),
                self.broker.kind
            )));
        }
        if self.broker.kind != BrokerKind::Amqp {
            return Ok(());
        }
        for (index, entry) in urls.iter().enumerate() {
            let which = if urls.len() > 1 {
                format!("entry {} of {} of `broker.url`", index + 1, urls.len())
            } else {
                "`broker.url`".to_owned()
            };
            if let Err(why) = check_amqp_url(entry) {
                return Err(ConfigError::Invalid(format!(
                    "{which} ({:?}) {why}; {fix} (key broker.url, or SIDECAST_BROKER__URL)",
                    crate::broker::redact_url(entry)
                )));
            }
        }
        Ok(())
    }

    /// `broker.url` and `session.url` when they are Sentinel addresses
    /// (`redis+sentinel://...`): hosts, db and service name are checked here, before anything
    /// connects. Other Redis URLs are the client library's to check at connect time.
    fn validate_sentinel_urls(&self) -> Result<(), ConfigError> {
        self.validate_redis_urls(
            "a Redis Sentinel address",
            crate::broker::SentinelUrl::is_sentinel,
            |url| crate::broker::SentinelUrl::parse(url).map(|_| ()),
        )
    }

    /// `broker.url` and `session.url` when they are Redis Cluster addresses
    /// (`redis+cluster://...`): the seed nodes and the path are checked here, before anything
    /// connects.
    fn validate_cluster_urls(&self) -> Result<(), ConfigError> {
        self.validate_redis_urls(
            "a Redis Cluster address",
            crate::broker::ClusterUrl::is_cluster,
            |url| crate::broker::ClusterUrl::parse(url).map(|_| ()),
        )
    }

    /// `broker.url` and `session.url` where `is_form` says they are of one Redis address form
    /// (`what`): `broker.kind` must be Redis, and `parse` must accept them. The error names the
    /// key, its environment variable and the fix, with the URL's password redacted.
    fn validate_redis_urls(
        &self,
        what: &str,
        is_form: fn(&str) -> bool,
        parse: fn(&str) -> Result<(), String>,
    ) -> Result<(), ConfigError> {
        let broker_url = self.broker.url.as_deref().unwrap_or_default();
        for (key, env, url) in [
            ("broker.url", "SIDECAST_BROKER__URL", broker_url),
            (
                "session.url",
                "SIDECAST_SESSION__URL",
                self.session.url.as_str(),
            ),
        ] {
            if !is_form(url) {
                continue;
            }
            if key == "broker.url" && self.broker.kind != BrokerKind::Redis {
                return Err(ConfigError::Invalid(format!(
                    "`broker.url` is {what} but broker.kind is not \"redis\"; set broker.kind = \
                     \"redis\" (or SIDECAST_BROKER__KIND) or give a URL of the chosen broker"
                )));
            }
            if let Err(why) = parse(url) {
                return Err(ConfigError::Invalid(format!(
                    "`{key}` ({}) {why} (key {key}, or {env})",
                    crate::broker::redact_url(url)
                )));
            }
        }
        Ok(())
    }

    /// The rules of `[[broker.ingress]]`.
    /// `[auth.jwt]`, when `auth.policy` includes `jwt`. The key material itself (the PEM file,
    /// the JWKS) is checked when the policy is built (`sidecast config --check` does that too).
    fn validate_jwt(&self) -> Result<(), ConfigError> {
        let bad =
            |key: &str, why: &str| Err(ConfigError::Invalid(format!("`auth.jwt.{key}` {why}")));
        if !self.auth.policy.kinds().contains(&PolicyKind::Jwt) {
            return Ok(());
        }
        let jwt = &self.auth.jwt;
        if jwt.algorithms.is_empty() {
            return bad(
                "algorithms",
                "is empty; list the algorithms your issuer signs with, such as [\"HS256\"] or [\"RS256\"]",
            );
        }
        const HMAC: [&str; 3] = ["HS256", "HS384", "HS512"];
        const PUBLIC: [&str; 7] = [
            "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
        ];
        for alg in &jwt.algorithms {
            if alg.eq_ignore_ascii_case("none") {
                return bad(
                    "algorithms",
                    "lists \"none\": unsigned tokens are never accepted; remove it",
                );
            }
            if !HMAC.contains(&alg.as_str()) && !PUBLIC.contains(&alg.as_str()) {
                return bad(
                    "algorithms",
                    &format!(
                        "lists {alg:?}, which is not one of {HMAC:?} or {PUBLIC:?} (names are case-sensitive)"
                    ),
                );
            }
        }
        let hmac = jwt.algorithms.iter().any(|a| HMAC.contains(&a.as_str()));
        let public = jwt.algorithms.iter().any(|a| PUBLIC.contains(&a.as_str()));
        if hmac && public {
            return bad(
                "algorithms",
                "mixes HMAC (HS*) and public-key algorithms: a public key must never be usable as an HMAC secret; configure one kind",
            );
        }
        if hmac && jwt.secret.is_empty() {
            return bad(
                "secret",
                "is empty but auth.jwt.algorithms are HMAC (HS*); set the shared secret (SIDECAST_AUTH__JWT__SECRET)",
            );
        }
        if hmac && (!jwt.public_key_file.is_empty() || !jwt.jwks_url.is_empty()) {
            return bad(
                "algorithms",
                "are HMAC (HS*) but a public_key_file or jwks_url is set; use RS256/ES256/... with public keys",
            );
        }
        if public {
            match (jwt.public_key_file.is_empty(), jwt.jwks_url.is_empty()) {
                (true, true) => {
                    return bad(
                        "public_key_file",
                        "and auth.jwt.jwks_url are both empty; give the PEM file of the issuer's public key, or its JWKS URL",
                    );
                }
                (false, false) => {
                    return bad(
                        "jwks_url",
                        "and auth.jwt.public_key_file are both set; use one of them",
                    );
                }
                _ => {}
            }
            if !jwt.secret.is_empty() {
                return bad(
                    "secret",
                    "is set but auth.jwt.algorithms are public-key ones; remove it",
                );
            }
        }
        if !(jwt.jwks_url.is_empty()
            || jwt.jwks_url.starts_with("https://")
            || jwt.jwks_url.starts_with("http://"))
        {
            return bad(
                "jwks_url",
                "must be an http:// or https:// URL, such as \"https://issuer.example.com/.well-known/jwks.json\"",
            );
        }
        if jwt.user_claim.is_empty() {
            return bad("user_claim", "is empty; the default is \"sub\"");
        }
        for (key, value) in [
            ("jwks_refresh_secs", jwt.jwks_refresh_secs),
            ("jwks_min_interval_secs", jwt.jwks_min_interval_secs),
            ("jwks_timeout_ms", jwt.jwks_timeout_ms),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if jwt.max_token_bytes < 256 {
            return bad(
                "max_token_bytes",
                "must be at least 256; the default is 8192",
            );
        }
        Ok(())
    }

    /// `[auth.http]`, when `auth.policy` includes `http`.
    fn validate_http_auth(&self) -> Result<(), ConfigError> {
        let bad =
            |key: &str, why: &str| Err(ConfigError::Invalid(format!("`auth.http.{key}` {why}")));
        if !self.auth.policy.kinds().contains(&PolicyKind::Http) {
            return Ok(());
        }
        let http = &self.auth.http;
        if !(http.url.starts_with("http://") || http.url.starts_with("https://")) {
            return bad(
                "url",
                "must be the application's http:// or https:// endpoint that answers auth \
                 requests, such as \"http://127.0.0.1:5000/sidecast/auth\" \
                 (SIDECAST_AUTH__HTTP__URL)",
            );
        }
        if http.timeout_ms == 0 {
            return bad("timeout_ms", "must be at least 1; the default is 2000");
        }
        if http.max_concurrency == 0 {
            return bad("max_concurrency", "must be at least 1; the default is 64");
        }
        Ok(())
    }

    /// `[auth.flask_session]`, when `auth.policy` includes `flask-session`.
    fn validate_flask_session(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| {
            Err(ConfigError::Invalid(format!(
                "`auth.flask_session.{key}` {why}"
            )))
        };
        if !self.auth.policy.kinds().contains(&PolicyKind::FlaskSession) {
            return Ok(());
        }
        let flask = &self.auth.flask_session;
        if flask.secret_key.is_empty() {
            return bad(
                "secret_key",
                "is empty but auth.policy includes \"flask-session\"; set it to the Flask \
                 application's SECRET_KEY (SIDECAST_AUTH__FLASK_SESSION__SECRET_KEY)",
            );
        }
        if flask.fallback_keys.iter().any(Secret::is_empty) {
            return bad(
                "fallback_keys",
                "has an empty key; list the Flask application's SECRET_KEY_FALLBACKS, or none",
            );
        }
        for (key, value) in [
            ("cookie_name", &flask.cookie_name),
            ("user_key", &flask.user_key),
        ] {
            if value.is_empty() {
                return bad(key, "is empty; the defaults are \"session\" and \"user\"");
            }
        }
        if flask
            .cookie_name
            .bytes()
            .any(|b| !b.is_ascii_graphic() || b"()<>@,;:\\\"/[]?={}".contains(&b))
        {
            return bad(
                "cookie_name",
                "is not a valid cookie name; use Flask's SESSION_COOKIE_NAME (default \"session\")",
            );
        }
        if flask.max_age_secs == 0 {
            return bad(
                "max_age_secs",
                "must be at least 1; Flask's PERMANENT_SESSION_LIFETIME default is 2678400 (31 days)",
            );
        }
        Ok(())
    }

    /// `broker.min_replicas` and `broker.replica_timeout_ms` (decision 30): replicas are waited
    /// for on Redis' history appends only, so the setting needs Redis and recovery on; the wait
    /// must end before the publish time-out that bounds the whole append.
    fn validate_min_replicas(&self) -> Result<(), ConfigError> {
        let broker = &self.broker;
        let bad = |key: &str, why: String| Err(ConfigError::Invalid(format!("`{key}` {why}")));
        if broker.min_replicas == 0 {
            return Ok(());
        }
        if broker.kind != BrokerKind::Redis {
            return bad(
                "broker.min_replicas",
                format!(
                    "is {} with broker.kind = \"{}\": it applies to Redis only (RabbitMQ streams \
                     confirm once a quorum of replicas holds a message); set it to 0",
                    broker.min_replicas, broker.kind
                ),
            );
        }
        if !self.recovery.enabled {
            return bad(
                "broker.min_replicas",
                format!(
                    "is {} with recovery.enabled = false: events then travel over pub/sub, which \
                     keeps nothing that replicas could acknowledge; turn recovery on or set \
                     broker.min_replicas = 0",
                    broker.min_replicas
                ),
            );
        }
        if broker.replica_timeout_ms == 0 || broker.replica_timeout_ms >= broker.publish_timeout_ms
        {
            return bad(
                "broker.replica_timeout_ms",
                format!(
                    "is {} but must be at least 1 and below broker.publish_timeout_ms ({}), which \
                     bounds the whole append; for example 500 with the default publish time-out",
                    broker.replica_timeout_ms, broker.publish_timeout_ms
                ),
            );
        }
        Ok(())
    }

    fn validate_ingress(&self) -> Result<(), ConfigError> {
        let broker = &self.broker;
        let control = crate::codec::control::channel(&broker.channel);
        let mut seen: Vec<&str> = Vec::new();
        for (i, ingress) in broker.ingress.iter().enumerate() {
            let key = format!("broker.ingress[{i}]");
            let bad = |why: String| Err(ConfigError::Invalid(format!("`{key}` {why}")));
            let channel = ingress.channel();
            if channel.is_empty() {
                return bad(format!(
                    "has an empty channel; leave `channel` out for the default of {} (\"{}\")",
                    ingress.format,
                    ingress.format.default_channel()
                ));
            }
            if ingress.format == IngressFormat::NodeEmitter && broker.kind == BrokerKind::Amqp {
                return bad(
                    "is \"node-emitter\", which needs Redis: @socket.io/redis-emitter publishes \
                     with Redis PUBLISH on channels matched by a pattern, which AMQP has no \
                     equivalent of. Remove this ingress, or run the nodes on Redis \
                     (broker.kind = \"redis\")"
                        .to_owned(),
                );
            }
            if channel == broker.channel || channel == control {
                return bad(format!(
                    "uses the channel \"{channel}\", which carries Sidecast's own messages; give \
                     the ingress the channel its emitters publish on"
                ));
            }
            if seen.contains(&channel) {
                return bad(format!(
                    "repeats the channel \"{channel}\"; a channel carries one format, list it once"
                ));
            }
            seen.push(channel);
        }
        if !broker.ingress.is_empty()
            && !broker.signing_key.is_empty()
            && !broker.ingress_unsigned_ok
        {
            return Err(ConfigError::Invalid(
                "`broker.ingress` cannot be signed, but broker.signing_key is set: messages on the \
                 ingress channels are not verified, so anybody who can publish on them reaches the \
                 sockets. Set broker.ingress_unsigned_ok = true to accept that (for example when \
                 only trusted programs can reach the broker), or remove the ingress"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// What is wrong with one AMQP URL, if anything this side of connecting can tell.
fn check_amqp_url(url: &str) -> Result<(), &'static str> {
    if url.is_empty() {
        return Err("is empty");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("has no scheme");
    };
    if !matches!(scheme, "amqp" | "amqps") {
        return Err("is not an AMQP URL (the scheme must be amqp or amqps)");
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    // `[::1]:5672`: the port follows the bracket.
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => return Err("has an unclosed `[` in its host"),
        },
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if port.is_some_and(|port| port.parse::<u16>().is_err()) {
        return Err("has a port that is not a number from 0 to 65535");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::PolicyList;

    #[test]
    #[allow(clippy::result_large_err)]
    fn flask_session_keys_from_the_environment_and_their_checks() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SIDECAST_AUTH__POLICY", "flask-session");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(
                e.contains("auth.flask_session.secret_key")
                    && e.contains("SIDECAST_AUTH__FLASK_SESSION__SECRET_KEY"),
                "{e}"
            );
            jail.set_env(
                "SIDECAST_AUTH__FLASK_SESSION__SECRET_KEY",
                "your_secret_key",
            );
            jail.set_env("SIDECAST_AUTH__FLASK_SESSION__USER_KEY", "_user_id");
            let c = Config::load(None).unwrap();
            assert_eq!(c.auth.flask_session.user_key, "_user_id");
            assert!(!c.redacted().to_toml().contains("your_secret_key"));
            jail.set_env("SIDECAST_AUTH__FLASK_SESSION__COOKIE_NAME", "a;b");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("auth.flask_session.cookie_name"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn jwt_keys_and_algorithms_are_checked() {
        let refusal = |f: &dyn Fn(&mut Config)| {
            let mut c = Config::default();
            c.auth.policy = PolicyList::One(PolicyKind::Jwt);
            f(&mut c);
            c.validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(refusal(&|_| {}).contains("auth.jwt.secret"));
        assert!(refusal(&|c| c.auth.jwt.secret = "s".into()).is_empty());
        let mixed = refusal(&|c| {
            c.auth.jwt.secret = "s".into();
            c.auth.jwt.algorithms = vec!["HS256".into(), "RS256".into()];
        });
        assert!(mixed.contains("mixes HMAC"), "{mixed}");
        let none = refusal(&|c| c.auth.jwt.algorithms = vec!["none".into()]);
        assert!(none.contains("never accepted"), "{none}");
        let no_key = refusal(&|c| c.auth.jwt.algorithms = vec!["RS256".into()]);
        assert!(no_key.contains("public_key_file"), "{no_key}");
        let url = refusal(&|c| {
            c.auth.jwt.algorithms = vec!["ES256".into()];
            c.auth.jwt.jwks_url = "ftp://x".into();
        });
        assert!(url.contains("auth.jwt.jwks_url"), "{url}");
    }

    #[test]
    fn http_auth_needs_a_url() {
        let mut c = Config::default();
        c.auth.policy = PolicyList::Any(vec![PolicyKind::Http, PolicyKind::Session]);
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("auth.http.url") && e.contains("SIDECAST_AUTH__HTTP__URL"),
            "{e}"
        );
        c.auth.http.url = "http://127.0.0.1:5000/sidecast/auth".into();
        c.validate().unwrap();
        c.auth.http.max_concurrency = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_concurrency")
        );
    }

    #[test]
    fn namespaces_and_session_rooms_name_the_key() {
        for (namespaces, ok) in [
            (vec!["/"], true),
            (vec!["/", "/chat"], true),
            (vec![], false),
            (vec!["chat"], false),
            (vec!["/", "/"], false),
        ] {
            let mut c = Config::default();
            c.server.namespaces = namespaces.iter().map(|n| n.to_string()).collect();
            match c.validate() {
                Ok(()) => assert!(ok, "{namespaces:?}"),
                Err(e) => {
                    assert!(!ok, "{namespaces:?}");
                    assert!(e.to_string().contains("server.namespaces"), "{e}");
                }
            }
        }
        let mut c = Config::default();
        c.auth.session_rooms = vec!["game:*".into(), String::new()];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("auth.session_rooms")
        );
    }

    #[test]
    fn sentinel_urls_are_checked_and_name_the_key() {
        let mut c = Config::default();
        c.broker.url = Some("redis+sentinel://u:pw@h1:26379,h2:26379/0/mymaster".into());
        c.session.url = "redis+sentinel://h1/mymaster".into();
        assert!(c.validate().is_ok(), "{:?}", c.validate());
        for (broker, session, says) in [
            (
                "redis+sentinel://u:hunter2@h1:26379,h2:x/0/mymaster",
                "",
                "sentinel address",
            ),
            ("redis+sentinel://u:hunter2@h1:26379/0", "", "no service"),
            ("redis+sentinel://u:hunter2@h1/zero/svc", "", "not a number"),
            ("redis://h:1", "redis+sentinel://:hunter2@h1/", "no service"),
        ] {
            let mut c = Config::default();
            c.broker.url = Some(broker.into());
            c.session.url = session.into();
            let e = c.validate().unwrap_err().to_string();
            let key = if session.is_empty() {
                "session.url"
            } else {
                "broker.url"
            };
            assert!(!e.contains(&format!("`{key}`")), "{e}");
            assert!(
                e.contains(says) && e.contains("redis+sentinel://[user:password@]"),
                "{e}"
            );
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn min_replicas_needs_redis_recovery_and_a_shorter_wait() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SIDECAST_BROKER__MIN_REPLICAS", "1");
            jail.set_env("SIDECAST_BROKER__REPLICA_TIMEOUT_MS", "250");
            let c = Config::load(None).unwrap();
            assert_eq!(
                (c.broker.min_replicas, c.broker.replica_timeout_ms),
                (1, 250)
            );
            jail.set_env("SIDECAST_BROKER__REPLICA_TIMEOUT_MS", "2000");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(
                e.contains("broker.replica_timeout_ms") && e.contains("publish_timeout_ms"),
                "{e}"
            );
            jail.set_env("SIDECAST_BROKER__REPLICA_TIMEOUT_MS", "250");
            jail.set_env("SIDECAST_RECOVERY__ENABLED", "false");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(
                e.contains("broker.min_replicas") && e.contains("recovery.enabled"),
                "{e}"
            );
            jail.set_env("SIDECAST_RECOVERY__ENABLED", "true");
            jail.set_env("SIDECAST_BROKER__KIND", "memory");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("Redis only"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn cluster_urls_are_checked_and_name_the_key() {
        let mut c = Config::default();
        c.broker.url = Some("redis+cluster://u:pw@h1:7000,h2:7000,h3".into());
        c.session.url = "rediss+cluster://h1:7000".into();
        assert!(c.validate().is_ok(), "{:?}", c.validate());
        for (broker, session, says) in [
            (
                "redis+cluster://u:hunter2@h1:7000,h2:x",
                "",
                "seed node address",
            ),
            ("redis+cluster://u:hunter2@h1:7000/3", "", "database 0 only"),
            ("redis+cluster://:hunter2@", "", "no seed node"),
            (
                "redis://h:1",
                "redis+cluster://:hunter2@h1/1",
                "database 0 only",
            ),
        ] {
            let mut c = Config::default();
            c.broker.url = Some(broker.into());
            if !session.is_empty() {
                c.session.url = session.into();
            }
            let e = c.validate().unwrap_err().to_string();
            let key = if session.is_empty() {
                "broker.url"
            } else {
                "session.url"
            };
            assert!(e.contains(&format!("`{key}`")), "{e}");
            assert!(
                e.contains(says) && e.contains("redis+cluster://[user:password@]"),
                "{e}"
            );
            assert!(!e.contains("hunter2"), "{e}");
        }
        let mut c = Config::default();
        c.broker.kind = BrokerKind::Amqp;
        c.broker.url = Some("redis+cluster://h1:7000".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("broker.kind"), "{e}");
    }

    #[test]
    fn admin_needs_a_bcrypt_hash_and_a_namespace_of_its_own() {
        let hash = "$2b$04$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
        let mut c = Config::default();
        c.admin.password_hash = "not a hash".into();
        c.validate().unwrap();
        c.admin.enabled = true;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("admin.password_hash") && e.contains("sidecast admin hash-password"),
            "{e}"
        );
        c.admin.password_hash = "".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("not set") && e.contains("htpasswd"), "{e}");
        c.admin.password_hash = hash.into();
        c.validate().unwrap();
        c.admin.namespace = "/".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("admin.namespace"), "{e}");
        c.admin.namespace = "/admin".into();
        c.server.namespaces.push("/admin".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("server.namespaces"), "{e}");
        c.server.namespaces.pop();
        c.admin.allowed_origins = vec!["*".into()];
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("admin.allowed_origins"), "{e}");
        c.admin.allowed_origins = vec!["https://admin.socket.io".into()];
        c.validate().unwrap();
        c.admin.stats_interval_ms = 60_000;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("admin.stats_interval_ms")
        );
    }

    #[test]
    fn missing_explicit_file_and_rules() {
        let err = Config::load(Some(Path::new("/nonexistent/s.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::FileNotFound(_)));
        let mut c = Config::default();
        c.session.secret = "short".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("session.secret")
        );
        let mut c = Config::default();
        c.auth.policy = PolicyList::One(PolicyKind::Token);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("auth.tokens")
        );
    }

    #[test]
    fn presence_settings_are_checked() {
        let refusal = |f: &dyn Fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        let e = refusal(&|c| c.presence.rooms = vec![String::new()]);
        assert!(e.contains("presence.rooms") && e.contains("chat:*"), "{e}");
        let e = refusal(&|c| c.presence.max_members = 0);
        assert!(e.contains("presence.max_members"), "{e}");
        let e = refusal(&|c| c.presence.heartbeat_ms = 10);
        assert!(
            e.contains("presence.heartbeat_ms") && e.contains("5000"),
            "{e}"
        );
        let e = refusal(&|c| c.presence.missed_heartbeats = 0);
        assert!(e.contains("presence.missed_heartbeats"), "{e}");
        let e = refusal(&|c| c.presence.max_info_bytes = 1 << 20);
        assert!(e.contains("presence.max_info_bytes"), "{e}");
        let mut c = Config::default();
        c.presence.rooms = vec!["chat:*".into()];
        c.validate().unwrap();
        assert!(c.presence.enabled());
    }
}
