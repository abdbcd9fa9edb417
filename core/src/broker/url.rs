//! Broker URLs as they may be logged and shown: with the password redacted.

/// Removes the password from a broker URL so that it can be logged and shown.
///
/// `redis://user:secret@host:6379` becomes `redis://user:***@host:6379`.
pub fn redact_url(url: &str) -> String {
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
    }
}
