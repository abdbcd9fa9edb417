//! What the Redis address forms with several hosts (Sentinel, Cluster) share: the scheme that
//! says which form and whether TLS is on, credentials before the `@`, a comma-separated list of
//! `host:port`, and the URL of one of those hosts for the client library.

/// The parts of `scheme://[userinfo@]host:port[,host:port...][/path]`.
pub(crate) struct HostList<'a> {
    /// The scheme was the TLS one (the second of the pair).
    pub(crate) tls: bool,
    /// `user:password` as written (still percent-encoded); `None` when absent or empty.
    pub(crate) userinfo: Option<String>,
    /// The hosts, `(host, port)`, in the order written.
    pub(crate) hosts: Vec<(String, u16)>,
    /// Everything from the first `/` after the hosts (empty when there is none).
    pub(crate) path: &'a str,
}

/// What an address form calls itself and its hosts, for error messages.
pub(crate) struct Form {
    /// The schemes, plain then TLS, lower case.
    pub(crate) schemes: [&'static str; 2],
    /// The form's name with its article, e.g. "a Sentinel address".
    pub(crate) name: &'static str,
    /// What each host is, e.g. "sentinel" or "seed node".
    pub(crate) host: &'static str,
    /// The port of a host written without one.
    pub(crate) default_port: u16,
    /// How the form is written, with an example.
    pub(crate) written: &'static str,
}

impl Form {
    /// Whether `url` has one of this form's schemes (whether or not the rest is valid).
    pub(crate) fn matches(&self, url: &str) -> bool {
        url.split_once("://")
            .is_some_and(|(scheme, _)| self.schemes.contains(&scheme.to_ascii_lowercase().as_str()))
    }

    /// Splits `url`: `Ok(None)` when it has another scheme, an error saying what is wrong and
    /// how the form goes when it has this one but no valid host list. Never contains the
    /// password.
    pub(crate) fn split<'a>(&self, url: &'a str) -> Result<Option<HostList<'a>>, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Ok(None);
        };
        let scheme = scheme.to_ascii_lowercase();
        if !self.schemes.contains(&scheme.as_str()) {
            return Ok(None);
        }
        let written = self.written;
        if rest.contains('?') || rest.contains('#') {
            return Err(format!(
                "has a query or fragment, which {} does not take; write {written}",
                self.name
            ));
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo.to_owned()), hosts),
            None => (None, authority),
        };
        if hosts.is_empty() {
            return Err(format!("names no {}; write {written}", self.host));
        }
        let hosts = hosts
            .split(',')
            .map(|host| self.parse_host_port(host))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(HostList {
            tls: scheme == self.schemes[1],
            userinfo: userinfo.filter(|u| !u.is_empty()),
            hosts,
            path,
        }))
    }

    /// `host:port`, `host` (the default port) or `[v6]:port`.
    fn parse_host_port(&self, text: &str) -> Result<(String, u16), String> {
        let bad = || {
            format!(
                "has the {} address {text:?}; each is host:port; write {}",
                self.host, self.written
            )
        };
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
            }
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        if host.is_empty() || host.contains([':', '@', ' ']) && !text.starts_with('[') {
            return Err(bad());
        }
        let port = match port {
            None => self.default_port,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(bad)?,
        };
        Ok((host.to_owned(), port))
    }
}

/// `redis://[userinfo@]host:port{path}` (`rediss://` with `tls`), an IPv6 host in brackets.
/// With `userinfo`, for the client library only, never for a log.
pub(crate) fn node_url(
    tls: bool,
    userinfo: Option<&str>,
    host: &str,
    port: u16,
    path: &str,
) -> String {
    let scheme = if tls { "rediss" } else { "redis" };
    let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!("{scheme}://{userinfo}{host}:{port}{path}")
}
