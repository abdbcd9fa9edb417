//! A custom [`AuthPolicy`]: trust the user name a reverse proxy puts in a header, but only on
//! requests that come from the proxy itself.
//!
//! Behind an authenticating proxy (oauth2-proxy, an SSO gateway, nginx with `auth_request`), the
//! proxy logs users in and forwards `X-Forwarded-User`. Anybody who can reach Sidecast directly
//! could send that header too, so the policy accepts it only from the proxy's addresses.
//!
//! Run: `cargo run -p sidecast-web --example proxy_auth`, then
//! `curl -H 'X-Forwarded-User: alice' -H 'content-type: application/json'
//!  -d '{"channel":"message","body":"Hi"}' http://127.0.0.1:5000/api/`.

use std::net::IpAddr;

use async_trait::async_trait;
use axum::http::HeaderName;
use sidecast_core::config::BrokerKind;
use sidecast_core::{AuthError, AuthPolicy, AuthRequest, Config, ConnectHeaders, Principal};

/// Accepts the user named by `header` on requests from one of `trusted_proxies`.
#[derive(Debug, Clone)]
pub struct ProxyHeaderAuth {
    /// The header the proxy sets, such as `x-forwarded-user`.
    pub header: HeaderName,
    /// Addresses of the proxies; requests from anywhere else are refused.
    pub trusted_proxies: Vec<IpAddr>,
}

#[async_trait]
impl AuthPolicy for ProxyHeaderAuth {
    async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Principal, AuthError> {
        let from_proxy = req
            .peer
            .is_some_and(|peer| self.trusted_proxies.contains(&peer.ip()));
        if !from_proxy {
            // Say as little as possible to a client that bypassed the proxy.
            return Err(AuthError::unauthenticated("not through the login proxy"));
        }
        let user = req
            .headers
            .get(&self.header)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| AuthError::unauthenticated("the proxy sent no user"))?;
        Ok(Principal::new(user))
    }

    /// Only the proxy's header: a node keeps just that one for each socket.
    fn connect_headers(&self) -> ConnectHeaders {
        ConnectHeaders::Only(vec![self.header.clone()])
    }
}

#[allow(dead_code)] // The tests use the policy without running the server.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::default();
    config.broker.kind = BrokerKind::Memory;
    let policy = ProxyHeaderAuth {
        header: HeaderName::from_static("x-forwarded-user"),
        trusted_proxies: vec!["127.0.0.1".parse()?],
    };
    let state = sidecast_web::Sidecast::builder()
        .config(config)
        .auth(policy)
        .build()
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
    println!("listening on http://127.0.0.1:5000/");
    sidecast_web::serve(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
