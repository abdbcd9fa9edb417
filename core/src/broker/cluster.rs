//! [`ClusterUrl`]: the Redis Cluster address form
//! `redis+cluster://[user:password@]host:port[,host:port...]` (seed nodes), checked without any
//! Redis client so that configuration checks and every transport read it alike; and
//! [`slot_key`], the one rule by which every key of a channel lands in one slot.

use std::fmt;

use super::host_list::{self, Form};

/// The schemes of a Cluster address: plain, and TLS to every node.
pub const CLUSTER_SCHEMES: [&str; 2] = ["redis+cluster", "rediss+cluster"];

/// The port of a seed node written without one (Redis' default).
pub const DEFAULT_CLUSTER_PORT: u16 = 6379;

/// A parsed `redis+cluster://` (or `rediss+cluster://`) address.
///
/// * The hosts are **seed nodes**: any reachable one tells the client the whole cluster.
/// * `user:password` are every node's credentials.
/// * No path but `/` or `/0` (a Redis Cluster has database 0 only), no query.
/// * `rediss+cluster://` speaks TLS to every node.
///
/// ```
/// use sidecast_core::broker::ClusterUrl;
///
/// let url = ClusterUrl::parse("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2")
///     .unwrap()
///     .unwrap();
/// assert_eq!(url.seeds, [("10.0.0.1".to_owned(), 7000), ("10.0.0.2".to_owned(), 6379)]);
/// assert_eq!(url.node_url("10.0.0.3", 7001), "redis://:pw@10.0.0.3:7001");
/// assert!(ClusterUrl::parse("redis://h:6379").unwrap().is_none());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    /// `rediss+cluster://`: TLS to every node.
    pub tls: bool,
    /// The seed nodes, `(host, port)`, in the order written.
    pub seeds: Vec<(String, u16)>,
    /// `user:password` as written (still percent-encoded).
    userinfo: Option<String>,
}

impl fmt::Debug for ClusterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterUrl")
            .field("tls", &self.tls)
            .field("seeds", &self.seeds)
            .field("credentials", &self.userinfo.is_some())
            .finish()
    }
}

/// How a Cluster address is written, for error messages.
const FORM: &str = "redis+cluster://[user:password@]host:port[,host:port...] (seed nodes), e.g. \
                    redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000";

/// The Cluster form, for [`host_list`].
const CLUSTER: Form = Form {
    schemes: CLUSTER_SCHEMES,
    name: "a Cluster address",
    host: "seed node",
    default_port: DEFAULT_CLUSTER_PORT,
    written: FORM,
};

impl ClusterUrl {
    /// Whether `url` has a Cluster scheme (whether or not the rest is valid).
    pub fn is_cluster(url: &str) -> bool {
        CLUSTER.matches(url)
    }

    /// Parses `url`: `Ok(None)` when it is not a Cluster address (another scheme), an error
    /// saying what is wrong and how the form goes when it is one but malformed. The error never
    /// contains the password.
    pub fn parse(url: &str) -> Result<Option<Self>, String> {
        let Some(list) = CLUSTER.split(url)? else {
            return Ok(None);
        };
        if !matches!(list.path, "" | "/" | "/0") {
            return Err(format!(
                "has the path {:?}, but a Redis Cluster has database 0 only; write {FORM}",
                list.path
            ));
        }
        Ok(Some(Self {
            tls: list.tls,
            seeds: list.hosts,
            userinfo: list.userinfo,
        }))
    }

    /// The URL of the node at `host:port` with this address's credentials (`redis://`, or
    /// `rediss://` for TLS). Contains the password: for the client library, never for a log.
    pub fn node_url(&self, host: &str, port: u16) -> String {
        host_list::node_url(self.tls, self.userinfo.as_deref(), host, port, "")
    }

    /// [`ClusterUrl::node_url`] of every seed, in the order written.
    pub fn seed_urls(&self) -> Vec<String> {
        self.seeds
            .iter()
            .map(|(host, port)| self.node_url(host, *port))
            .collect()
    }
}

/// The name of a key made of `head`, `tag` and `tail`, the one rule every Redis key builder
/// follows: on a Redis Cluster (`cluster`), `{head}{{tag}}{tail}`, whose hash tag (the part
/// between braces) puts every key with the same `tag` in one slot, so that they can be written
/// in one transaction; elsewhere `{head}{tag}{tail}`, the names a single Redis and Sentinel have
/// always used.
///
/// A channel's keys (its history stream, the keys kept beside it) take the channel as `tag`;
/// keys written together across channels take what they share.
///
/// Redis hashes the text between the first `{` and the next `}`: `head` must therefore not
/// contain `{` on a Cluster, and a `tag` containing `}` is hashed by its part before it (still
/// one slot for every key with that tag).
///
/// ```
/// use sidecast_core::broker::slot_key;
///
/// assert_eq!(slot_key("sidecast:history:", "news", "", true), "sidecast:history:{news}");
/// assert_eq!(slot_key("sidecast:history:", "news", "", false), "sidecast:history:news");
/// assert_eq!(slot_key("", "sidecast:memberships", ":user:x", true), "{sidecast:memberships}:user:x");
/// ```
pub fn slot_key(head: &str, tag: &str, tail: &str, cluster: bool) -> String {
    if cluster {
        format!("{head}{{{tag}}}{tail}")
    } else {
        format!("{head}{tag}{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> ClusterUrl {
        ClusterUrl::parse(url).unwrap().unwrap()
    }

    #[test]
    fn seed_lists() {
        let url = parsed("redis+cluster://user:pw@h1:7000,h2:7001,h3");
        assert_eq!(
            url.seeds,
            [
                ("h1".to_owned(), 7000),
                ("h2".to_owned(), 7001),
                ("h3".to_owned(), 6379)
            ]
        );
        assert!(!url.tls);
        assert_eq!(
            url.seed_urls(),
            [
                "redis://user:pw@h1:7000",
                "redis://user:pw@h2:7001",
                "redis://user:pw@h3:6379"
            ]
        );
        for trailing in ["redis+cluster://h:1/", "redis+cluster://h:1/0"] {
            assert_eq!(parsed(trailing).seeds, [("h".to_owned(), 1)]);
        }
        let tls = parsed("REDISS+CLUSTER://[::1]:7000,h");
        assert!(tls.tls);
        assert_eq!(tls.seed_urls(), ["rediss://[::1]:7000", "rediss://h:6379"]);
        assert!(ClusterUrl::parse("redis://h:1").unwrap().is_none());
        assert!(
            ClusterUrl::parse("redis+sentinel://h/svc")
                .unwrap()
                .is_none()
        );
        assert!(ClusterUrl::is_cluster("Redis+Cluster://h"));
        assert!(!ClusterUrl::is_cluster("redis://h"));
    }

    #[test]
    fn malformed_addresses_say_what_is_wrong() {
        for (url, says) in [
            ("redis+cluster://", "no seed node"),
            ("redis+cluster://:pw@", "no seed node"),
            ("redis+cluster://h1:x", "seed node address"),
            ("redis+cluster://h1:7000,,h2", "seed node address"),
            ("redis+cluster://h1:0", "seed node address"),
            ("redis+cluster://h1:70000", "seed node address"),
            ("redis+cluster://h1:7000/2", "database 0 only"),
            ("redis+cluster://h1:7000/0/x", "database 0 only"),
            ("redis+cluster://h1:7000?x=1", "query"),
        ] {
            let error = ClusterUrl::parse(url).unwrap_err();
            assert!(error.contains(says), "{url}: {error}");
            assert!(
                error.contains("redis+cluster://[user:password@]"),
                "{url}: {error}"
            );
        }
        let error = ClusterUrl::parse("redis+cluster://u:hunter2@h:x").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn debug_hides_the_credentials() {
        let shown = format!("{:?}", parsed("redis+cluster://u:hunter2@h1,h2"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("credentials: true"), "{shown}");
    }

    #[test]
    fn keys_share_the_channel_slot_on_a_cluster_only() {
        assert_eq!(slot_key("p:", "a:b", "", true), "p:{a:b}");
        assert_eq!(slot_key("p:", "a:b", ":epoch", true), "p:{a:b}:epoch");
        assert_eq!(slot_key("p:", "a:b", ":epoch", false), "p:a:b:epoch");
        assert_eq!(slot_key("", "room", "", true), "{room}");
    }
}
