//! [`SentinelUrl`]: the Redis Sentinel address form
//! `redis+sentinel://[user:password@]host:port[,host:port...]/db/service_name`, as
//! python-socketio's `RedisManager` parses it, checked without any Redis client so that
//! configuration checks and every transport read it alike.

use std::fmt;

use super::host_list::{self, Form};

/// What a broker tells of its connections beyond [`crate::BrokerHealth`], as
/// [`crate::Broker::connection_report`] reports it. Figures are cumulative since the broker
/// connected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionReport {
    /// How many times the broker moved to a new primary (a Redis Sentinel master).
    pub failovers: u64,
    /// `host:port` of the primary in use now, when the broker follows one and knows it.
    pub primary: Option<String>,
    /// Subscriptions found silent (their liveness probe did not come back) and rebuilt.
    pub silent_subscriptions: u64,
}

/// The schemes of a Sentinel address: plain, and TLS to the sentinels and the master.
pub const SENTINEL_SCHEMES: [&str; 2] = ["redis+sentinel", "rediss+sentinel"];

/// The port of a sentinel written without one (Redis Sentinel's default).
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// A parsed `redis+sentinel://` (or `rediss+sentinel://`) address.
///
/// * The hosts are the **sentinels**; the master is asked from them by `service_name`.
/// * `user:password` are the **master's** credentials (the sentinels are asked without any),
///   as python-socketio and redis-py do with this form.
/// * The path is `/db/service_name`, or `/service_name` alone when it is not a number (db 0).
/// * `rediss+sentinel://` speaks TLS to the sentinels and to the master.
///
/// ```
/// use sidecast_core::broker::SentinelUrl;
///
/// let url = SentinelUrl::parse("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2/2/mymaster")
///     .unwrap()
///     .unwrap();
/// assert_eq!(url.sentinels, [("10.0.0.1".to_owned(), 26379), ("10.0.0.2".to_owned(), 26379)]);
/// assert_eq!((url.db, url.service.as_str()), (2, "mymaster"));
/// assert_eq!(url.master_url("10.0.0.3", 6379), "redis://:pw@10.0.0.3:6379/2");
/// assert!(SentinelUrl::parse("redis://h:6379").unwrap().is_none());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// `rediss+sentinel://`: TLS to the sentinels and to the master.
    pub tls: bool,
    /// The sentinels, `(host, port)`, in the order written.
    pub sentinels: Vec<(String, u16)>,
    /// The database number on the master (0 when not written).
    pub db: i64,
    /// The name the sentinels monitor the master under (`sentinel monitor <name> ...`).
    pub service: String,
    /// `user:password` as written (still percent-encoded), for the master only.
    userinfo: Option<String>,
}

impl fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("tls", &self.tls)
            .field("sentinels", &self.sentinels)
            .field("db", &self.db)
            .field("service", &self.service)
            .field("credentials", &self.userinfo.is_some())
            .finish()
    }
}

/// How a Sentinel address is written, for error messages.
const FORM: &str = "redis+sentinel://[user:password@]host:port[,host:port...]/db/service_name \
                    (or /service_name alone for db 0), e.g. \
                    redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/0/mymaster";

/// The Sentinel form, for [`host_list`].
const SENTINEL: Form = Form {
    schemes: SENTINEL_SCHEMES,
    name: "a Sentinel address",
    host: "sentinel",
    default_port: DEFAULT_SENTINEL_PORT,
    written: FORM,
};

impl SentinelUrl {
    /// Whether `url` has a Sentinel scheme (whether or not the rest is valid).
    pub fn is_sentinel(url: &str) -> bool {
        SENTINEL.matches(url)
    }

    /// Parses `url`: `Ok(None)` when it is not a Sentinel address (another scheme), an error
    /// saying what is wrong and how the form goes when it is one but malformed. The error never
    /// contains the password.
    pub fn parse(url: &str) -> Result<Option<Self>, String> {
        let Some(list) = SENTINEL.split(url)? else {
            return Ok(None);
        };
        let path = list.path;
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (db, service) = match parts.as_slice() {
            [""] => return Err(format!("names no service (master name); write {FORM}")),
            [one] => match one.parse::<i64>() {
                Ok(_) => {
                    return Err(format!(
                        "names a db but no service (master name); write {FORM}"
                    ));
                }
                Err(_) => (0, *one),
            },
            [db, service] | [db, service, ""] => {
                let db = if db.is_empty() {
                    0
                } else {
                    db.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                        format!("has the db {db:?}, which is not a number; write {FORM}")
                    })?
                };
                if service.is_empty() {
                    return Err(format!("names no service (master name); write {FORM}"));
                }
                (db, *service)
            }
            _ => {
                return Err(format!(
                    "has a path with more than /db/service_name; write {FORM}"
                ));
            }
        };
        Ok(Some(Self {
            tls: list.tls,
            sentinels: list.hosts,
            db,
            service: service.to_owned(),
            userinfo: list.userinfo,
        }))
    }

    /// The URL of one sentinel (`redis://host:port`, `rediss://` for TLS), without credentials.
    pub fn sentinel_url(&self, index: usize) -> Option<String> {
        let (host, port) = self.sentinels.get(index)?;
        Some(host_list::node_url(self.tls, None, host, *port, ""))
    }

    /// The URL of the master found at `host:port`: the credentials and db of this address.
    /// Contains the password: for the client library, never for a log.
    pub fn master_url(&self, host: &str, port: u16) -> String {
        let db = format!("/{}", self.db);
        host_list::node_url(self.tls, self.userinfo.as_deref(), host, port, &db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> SentinelUrl {
        SentinelUrl::parse(url).unwrap().unwrap()
    }

    #[test]
    fn python_socketio_forms() {
        let url = parsed("redis+sentinel://user:pw@h1:26379,h2:26380/3/mymaster");
        assert_eq!(
            url.sentinels,
            [("h1".to_owned(), 26379), ("h2".to_owned(), 26380)]
        );
        assert_eq!(url.db, 3);
        assert_eq!(url.service, "mymaster");
        assert!(!url.tls);
        assert_eq!(
            url.master_url("10.0.0.9", 6390),
            "redis://user:pw@10.0.0.9:6390/3"
        );
        assert_eq!(url.sentinel_url(1).unwrap(), "redis://h2:26380");

        let short = parsed("redis+sentinel://h1:26379/mymaster");
        assert_eq!((short.db, short.service.as_str()), (0, "mymaster"));
        assert_eq!(short.master_url("m", 1), "redis://m:1/0");

        let tls = parsed("rediss+sentinel://[::1]:5000,h/0/svc/");
        assert!(tls.tls);
        assert_eq!(
            tls.sentinels,
            [("::1".to_owned(), 5000), ("h".to_owned(), 26379)]
        );
        assert_eq!(tls.sentinel_url(0).unwrap(), "rediss://[::1]:5000");
        assert_eq!(tls.master_url("::2", 1), "rediss://[::2]:1/0");

        assert!(SentinelUrl::parse("redis://h:1/0").unwrap().is_none());
        assert!(SentinelUrl::is_sentinel("REDIS+SENTINEL://h/x"));
    }

    #[test]
    fn malformed_addresses_say_what_is_wrong() {
        for (url, says) in [
            ("redis+sentinel://h1:26379", "no service"),
            ("redis+sentinel://h1:26379/", "no service"),
            ("redis+sentinel://h1:26379/0", "no service"),
            ("redis+sentinel://h1:26379/0/", "no service"),
            ("redis+sentinel://h1:26379/x/svc", "not a number"),
            ("redis+sentinel://h1:26379/-1/svc", "not a number"),
            ("redis+sentinel:///svc", "no sentinel"),
            ("redis+sentinel://:pw@/svc", "no sentinel"),
            ("redis+sentinel://h1:x/svc", "sentinel address"),
            ("redis+sentinel://h1:26379,,h2/svc", "sentinel address"),
            ("redis+sentinel://h1:0/svc", "sentinel address"),
            ("redis+sentinel://h1/0/svc/more", "more than"),
            ("redis+sentinel://h1/svc?x=1", "query"),
        ] {
            let error = SentinelUrl::parse(url).unwrap_err();
            assert!(error.contains(says), "{url}: {error}");
            assert!(error.contains("redis+sentinel://"), "{url}: {error}");
        }
        let error = SentinelUrl::parse("redis+sentinel://u:hunter2@h:x/svc").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn debug_hides_the_credentials() {
        let shown = format!("{:?}", parsed("redis+sentinel://u:hunter2@h/svc"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
