//! The close check: what a broker does after [`Broker::close`], its history included.

use bytes::Bytes;
use tokio::time::timeout;

use sidecast_core::broker::{Broker, BrokerError, BrokerHealth, ChannelSpec, Offset};

use super::MakeBroker;
use super::history::{append_numbered, expect_entries, subscribe_from};
use super::support::{DEADLINE, assert_ends, await_subscribed, publish, subscribe};
use crate::unique_channel;

/// `close()`: the broker reports [`BrokerHealth::Closed`], its subscription streams end (after
/// what was already queued), later publishes and subscribes fail with [`BrokerError::Closed`],
/// and closing again is harmless. A broker with a history: its history subscriptions end too,
/// and later appends fail with [`BrokerError::Closed`].
pub async fn close<M: MakeBroker>(make_broker: &M) {
    let broker = make_broker.make().await;
    assert_eq!(broker.health(), BrokerHealth::Connected);
    let channel = unique_channel("close");
    let mut sub = subscribe(&broker, &[ChannelSpec::exact(&channel)]).await;
    await_subscribed(&broker, &mut sub, &channel).await;
    publish(&broker, &channel, "before close").await;
    let mut history_sub = match broker.history() {
        Some(history) => {
            let appended = append_numbered(history, &channel, "before close", 1).await;
            let mut history_sub = subscribe_from(history, &channel, &Offset::START).await;
            expect_entries(&mut history_sub, &appended).await;
            Some(history_sub)
        }
        None => None,
    };

    timeout(DEADLINE, broker.close())
        .await
        .unwrap_or_else(|_| panic!("close() did not return within {DEADLINE:?}"));
    assert_eq!(broker.health(), BrokerHealth::Closed, "health after close");
    assert_ends(&mut sub).await;
    if let (Some(history), Some(history_sub)) = (broker.history(), history_sub.as_mut()) {
        match timeout(DEADLINE, history_sub.recv()).await {
            Ok(None) => {}
            Ok(Some(entry)) => panic!("a history entry arrived after close: {entry:?}"),
            Err(_) => panic!("the history subscription did not end within {DEADLINE:?} of close()"),
        }
        match history.append(&channel, Bytes::from_static(b"late")).await {
            Err(BrokerError::Closed) => {}
            other => panic!("append after close must fail with Closed, got {other:?}"),
        }
    }

    match broker.publish(&channel, Bytes::from_static(b"late")).await {
        Err(BrokerError::Closed) => {}
        other => panic!("publish after close must fail with Closed, got {other:?}"),
    }
    match broker.subscribe(&[ChannelSpec::exact(&channel)]).await {
        Err(BrokerError::Closed) => {}
        Err(e) => panic!("subscribe after close must fail with Closed, got: {e}"),
        Ok(_) => panic!("subscribe after close must fail with Closed, but it succeeded"),
    }
    timeout(DEADLINE, broker.close())
        .await
        .unwrap_or_else(|_| panic!("a second close() did not return within {DEADLINE:?}"));
    assert_eq!(broker.health(), BrokerHealth::Closed);
}
