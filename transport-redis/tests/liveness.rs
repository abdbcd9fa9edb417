//! A subscription that goes silent — its connection answers `PING` but delivers nothing — is
//! found by its probe, rebuilt, logged and counted. The silence is made by a TCP proxy that
//! reconnects its upstream behind the client's back (as a proxy or load balancer in front of
//! Redis may): the new upstream connection has no subscriptions, yet answers.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sidecast_core::{Broker, ChannelSpec};
use sidecast_testkit::log::CapturedLog;
use sidecast_testkit::{RedisServer, eventually, unique_channel};
use sidecast_transport_redis::RedisOptions;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

/// A loopback TCP proxy to `upstream` that, on [`SwapProxy::swap`], drops every upstream
/// connection and opens a new one, keeping the client connections open.
struct SwapProxy {
    port: u16,
    swaps: watch::Sender<u64>,
}

impl SwapProxy {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (swaps, _) = watch::channel(0);
        let subscribe = swaps.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut swapped = subscribe.subscribe();
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    loop {
                        let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                            return;
                        };
                        let (mut up_read, mut up_write) = up.into_split();
                        swapped.borrow_and_update();
                        tokio::select! {
                            _ = tokio::io::copy(&mut client_read, &mut up_write) => return,
                            _ = tokio::io::copy(&mut up_read, &mut client_write) => return,
                            changed = swapped.changed() => if changed.is_err() { return },
                        }
                    }
                });
            }
        });
        Self { port, swaps }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Reconnects every upstream connection.
    fn swap(&self) {
        self.swaps.send_modify(|n| *n += 1);
    }
}

#[tokio::test]
async fn a_silent_subscription_is_rebuilt_logged_and_counted() {
    let (captured, _guard) = CapturedLog::set_default("info");
    let server = RedisServer::start_local().await;
    let proxy = SwapProxy::start(server.port()).await;
    let probe_interval = Duration::from_millis(200);
    let broker = Arc::new(
        common::connect(RedisOptions {
            probe_interval,
            ..common::options(&proxy.url())
        })
        .await,
    );
    let channel = unique_channel("liveness");
    let mut subscription = broker
        .subscribe(&[ChannelSpec::exact(&channel)])
        .await
        .unwrap();
    let report = || broker.connection_report().unwrap().silent_subscriptions;

    // A healthy subscription: probes come back, none is found silent, and consumers never see
    // them.
    broker
        .publish(&channel, Bytes::from_static(b"one"))
        .await
        .unwrap();
    let message = timeout(Duration::from_secs(5), subscription.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.payload, "one");
    sleep(probe_interval * 5).await;
    assert_eq!(report(), 0);
    assert!(
        timeout(Duration::from_millis(50), subscription.recv())
            .await
            .is_err(),
        "a probe reached the consumer"
    );

    // Silenced: the connection still answers PING, but its subscriptions are gone.
    proxy.swap();
    eventually("the silent subscription is counted", || report() == 1).await;
    assert_eq!(
        captured.count("redis subscription is silent: its probe did not come back"),
        1,
        "{}",
        captured.text()
    );

    // Meanwhile the broker reports the connection lost (the health /readyz answers from: 503
    // "reconnecting"), once, and restored once the subscription is rebuilt.
    eventually("the outage is reported", || {
        captured.count("redis connection lost, reconnecting") == 1
    })
    .await;

    // Rebuilt: it receives again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        broker
            .publish(&channel, Bytes::from_static(b"two"))
            .await
            .ok();
        if let Ok(Some(message)) = timeout(Duration::from_millis(200), subscription.recv()).await {
            assert_eq!(message.payload, "two");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the subscription was not rebuilt"
        );
    }
    assert_eq!(report(), 1);
    eventually("the connection is reported restored", || {
        captured.count("redis connection restored") == 1
    })
    .await;
    assert_eq!(broker.health(), sidecast_core::BrokerHealth::Connected);
    broker.close().await;
}
