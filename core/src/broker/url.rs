//! Broker URLs as they may be logged and shown: with the password redacted. [`BrokerUrl`] holds
//! one and shows it only that way; [`redact_url`] redacts a plain string.

use std::fmt;

/// A broker URL (`redis://user:password@host:6379/0`, `amqp://...`, `nats://...`) that never
/// shows its password: [`Debug`](fmt::Debug) and [`Display`](fmt::Display) print it redacted
/// (`redis://user:***@host:6379/0`), so that options holding one can derive `Debug` and be
/// logged. [`BrokerUrl::as_str`] gives the URL itself, for the client library that connects.
///
/// ```
/// use sidecast_core::BrokerUrl;
///
/// let url = BrokerUrl::new("amqp://node:s3cret@rabbit:5672/%2f");
/// assert_eq!(url.to_string(), "amqp://node:***@rabbit:5672/%2f");
/// assert_eq!(format!("{url:?}"), r#"BrokerUrl("amqp://node:***@rabbit:5672/%2f")"#);
/// assert_eq!(url.as_str(), "amqp://node:s3cret@rabbit:5672/%2f");
/// assert_eq!(url, "amqp://node:s3cret@rabbit:5672/%2f");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct BrokerUrl(String);

impl BrokerUrl {
    /// Wraps `url`, as written (password included).
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, password included: for the client library, never for a log.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL with its password redacted, as [`Display`](fmt::Display) shows it.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }

    /// The scheme (`redis`, `amqps`, ...), if the URL has one.
    pub fn scheme(&self) -> Option<&str> {
        self.0.split_once("://").map(|(scheme, _)| scheme)
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BrokerUrl").field(&self.redacted()).finish()
    }
}

impl From<String> for BrokerUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for BrokerUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl From<&String> for BrokerUrl {
    fn from(url: &String) -> Self {
        Self(url.clone())
    }
}

impl PartialEq<str> for BrokerUrl {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for BrokerUrl {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// The URLs of a list of several (`amqp://a,amqp://b`, the form `broker.url` takes for several
/// AMQP nodes): split at each comma that starts a new URL (one with a scheme), trimmed. A single
/// URL, including a Sentinel or Cluster address whose host list has commas
/// (`redis+sentinel://h1,h2/mymaster`), is one entry; empty entries are kept so that a check can
/// name them.
///
/// ```
/// use sidecast_core::broker::url_list;
///
/// assert_eq!(url_list("amqp://a, amqps://b"), ["amqp://a", "amqps://b"]);
/// assert_eq!(url_list("redis+sentinel://h1,h2/m"), ["redis+sentinel://h1,h2/m"]);
/// assert_eq!(url_list("amqp://a,,amqp://b"), ["amqp://a", "", "amqp://b"]);
/// ```
pub fn url_list(url: &str) -> Vec<&str> {
    let parts: Vec<&str> = url.split(',').map(str::trim).collect();
    // Several URLs only when every part after the first is a URL of its own (or empty, a
    // mistake to report); otherwise the commas belong to one URL's host list.
    let several = parts.len() > 1
        && parts[1..]
            .iter()
            .all(|part| part.is_empty() || part.contains("://"))
        && parts.iter().any(|part| part.contains("://"));
    if several { parts } else { vec![url.trim()] }
}

/// Removes the password from a broker URL so that it can be logged and shown; a list of several
/// URLs ([`url_list`]) has each one redacted.
///
/// `redis://user:secret@host:6379` becomes `redis://user:***@host:6379`.
pub fn redact_url(url: &str) -> String {
    let urls = url_list(url);
    if urls.len() > 1 {
        return urls
            .into_iter()
            .map(redact_one)
            .collect::<Vec<_>>()
            .join(",");
    }
    redact_one(url)
}

fn redact_one(url: &str) -> String {
    // Without a scheme (`user:pw@host`) the authority starts the string: redact it all the same.
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let prefix = scheme.map(|s| format!("{s}://")).unwrap_or_default();
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{prefix}{user}:***@{host}{path}")
            } else {
                format!("{prefix}***@{host}{path}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("redis://user:pw@h:1/0"),
            "redis://user:***@h:1/0"
        );
        assert_eq!(redact_url("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("user:pw@host:1/vh"), "user:***@host:1/vh");
        // A Sentinel address's host list is not a URL authority the url crate would parse.
        assert_eq!(
            redact_url("redis+sentinel://u:pw@h1:26379,h2:26379/0/mymaster"),
            "redis+sentinel://u:***@h1:26379,h2:26379/0/mymaster"
        );
        assert_eq!(
            redact_url("rediss+sentinel://:p@ss@[::1]:26379,h2/mymaster"),
            "rediss+sentinel://:***@[::1]:26379,h2/mymaster"
        );
        assert_eq!(
            redact_url("redis+cluster://u:pw@h1:7000,h2:7001,[::1]:7002"),
            "redis+cluster://u:***@h1:7000,h2:7001,[::1]:7002"
        );
        assert_eq!(
            redact_url("rediss+cluster://:hunter2@h1"),
            "rediss+cluster://:***@h1"
        );
    }

    #[test]
    fn lists_of_urls_are_split_and_each_one_redacted() {
        assert_eq!(url_list("amqp://h"), ["amqp://h"]);
        assert_eq!(
            url_list(" amqp://u:p@a:5672/%2f ,amqp://u:p@b "),
            ["amqp://u:p@a:5672/%2f", "amqp://u:p@b"]
        );
        assert_eq!(url_list("amqp://a,"), ["amqp://a", ""]);
        assert_eq!(
            url_list("redis+cluster://h1:7000,h2:7001"),
            ["redis+cluster://h1:7000,h2:7001"]
        );
        assert_eq!(
            redact_url("amqp://u:hunter2@a/%2f,amqps://v:s3cret@b:5671"),
            "amqp://u:***@a/%2f,amqps://v:***@b:5671"
        );
        let shown = BrokerUrl::new("amqp://u:hunter2@a, amqp://u:hunter2@b").to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn a_broker_url_shows_itself_redacted_only() {
        let url = BrokerUrl::from("redis://user:hunter2@h:1/0");
        for shown in [url.to_string(), format!("{url:?}"), url.redacted()] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("redis://user:***@h:1/0"), "{shown}");
        }
        assert_eq!(url.as_str(), "redis://user:hunter2@h:1/0");
        assert_eq!(url.scheme(), Some("redis"));
        assert_eq!(BrokerUrl::new("h:1").scheme(), None);
        assert_eq!(BrokerUrl::new("redis://h:1").to_string(), "redis://h:1");
    }
}
