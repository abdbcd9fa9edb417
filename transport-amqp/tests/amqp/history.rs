//! The history on RabbitMQ stream queues beyond the conformance suite: a RabbitMQ restart under
//! a history subscription, a consumer that lags, and a node whose retention differs from the
//! queue's.
//!
//! The restart test stops RabbitMQ, so it starts a private server (`RabbitMqServer::start_local`),
//! even when `SIDECAST_TEST_AMQP_URL` is set.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use sidecast_core::{Broker, BrokerError, HistoryRetention, Offset};
use sidecast_testkit::conformance::{
    history_across_an_outage, history_of, history_waits_for_a_slow_consumer, stop_and_restart,
    within_deadline,
};
use sidecast_testkit::{RabbitMqServer, unique_channel};
use sidecast_transport_amqp::{AmqpOptions, HistoryMismatch};

use crate::common::{connect, options};

/// A history reader on one node while another node appends, and RabbitMQ is stopped and
/// restarted in the middle (an orderly restart, as in an upgrade or a rolling restart; after a
/// `SIGKILL`, RabbitMQ 3.10.8 keeps a single node's stream queue "down or inaccessible", see
/// decision 20): every append that was acknowledged reaches the reader once, in
/// order, after it resumed from the offset after its last one by itself, within about a second
/// of RabbitMQ answering although the reader's reconnect backoff is the default (up to 5 s).
#[tokio::test]
async fn history_reader_gets_every_acknowledged_entry_across_a_rabbitmq_restart() {
    let mut server = RabbitMqServer::start_local().await;
    let writer = connect(options(server.url())).await;
    // The default backoff (100 ms doubling to 5 s): the history subscription caps it at 1 s.
    let reader = connect(AmqpOptions {
        history: options(server.url()).history,
        history_segment_bytes: options(server.url()).history_segment_bytes,
        ..AmqpOptions::new(server.url())
    })
    .await;
    history_across_an_outage(&writer, &reader, stop_and_restart(&mut server)).await;
}

/// A history subscription whose consumer reads nothing for a while loses nothing: the reader
/// waits while the queue is full (RabbitMQ waits for acknowledgements, the entries wait in the
/// stream), unlike pub/sub, which drops (`conformance::history_waits_for_a_slow_consumer`).
#[tokio::test]
async fn history_subscription_waits_for_a_slow_consumer() {
    let server = RabbitMqServer::shared().await;
    let broker = connect(AmqpOptions {
        subscription_capacity: 8,
        ..options(server.url())
    })
    .await;
    history_waits_for_a_slow_consumer(&broker, 8).await;
}

/// The `HistoryMismatch` under an error, if any.
fn mismatch(error: &BrokerError) -> Option<&HistoryMismatch> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(mismatch) = cause.downcast_ref::<HistoryMismatch>() {
            return Some(mismatch);
        }
        source = cause.source();
    }
    None
}

/// A node configured with another retention or segment size than the one that declared a
/// channel's stream queue is refused with a [`HistoryMismatch`] naming the setting, and so is
/// one whose history queue name is taken by a queue that is not a stream. The first node keeps
/// working.
#[tokio::test]
async fn other_retention_is_refused_naming_the_setting() {
    let server = RabbitMqServer::shared().await;
    let first = connect(options(server.url())).await;
    let channel = unique_channel("history-mismatch");
    within_deadline("append", history_of(&first).append(&channel, "one".into()))
        .await
        .expect("the first node declares the queue");

    let base = options(server.url());
    let differing = [
        (
            "history.max_age",
            AmqpOptions {
                history: HistoryRetention {
                    max_age: Duration::from_secs(60),
                    ..base.history
                },
                ..base.clone()
            },
        ),
        (
            "history.max_bytes",
            AmqpOptions {
                history: HistoryRetention {
                    max_bytes: 128 << 10,
                    ..base.history
                },
                ..base.clone()
            },
        ),
        (
            "history_segment_bytes",
            AmqpOptions {
                history_segment_bytes: 16 << 10,
                ..base.clone()
            },
        ),
    ];
    for (setting, options) in differing {
        let other = connect(options).await;
        let error = within_deadline("append", history_of(&other).append(&channel, "two".into()))
            .await
            .expect_err("a node with another retention must be refused");
        assert!(
            !error.is_transient(),
            "{setting}: a refusal, not an outage: {error}"
        );
        let found = mismatch(&error)
            .unwrap_or_else(|| panic!("{setting}: no HistoryMismatch under {error}"));
        assert_eq!(found.setting(), setting, "{error}");
        assert!(
            error.to_string().contains(setting),
            "the message names {setting}: {error}"
        );
        let refused = within_deadline(
            "subscribe_from",
            history_of(&other).subscribe_from(&channel, &Offset::START),
        )
        .await
        .expect_err("subscribing is refused the same way");
        assert_eq!(
            mismatch(&refused).map(HistoryMismatch::setting),
            Some(setting)
        );
        other.close().await;
    }
    within_deadline(
        "append",
        history_of(&first).append(&channel, "three".into()),
    )
    .await
    .expect("the first node keeps appending");

    // A classic queue, declared by another client, where the history queue of a channel
    // would be.
    let taken = unique_channel("history-taken");
    let queue = format!("{}{taken}", base.history_queue_prefix);
    let raw = Connection::connect(server.url(), ConnectionProperties::default())
        .await
        .expect("a plain lapin connection");
    let raw_channel = raw.create_channel().await.expect("a channel");
    raw_channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declaring a classic queue");
    let error = within_deadline("append", history_of(&first).append(&taken, "x".into()))
        .await
        .expect_err("a classic queue is not a history");
    assert_eq!(
        mismatch(&error).map(HistoryMismatch::setting),
        Some("history_queue_prefix"),
        "{error}"
    );
}

/// A channel's stream queue deleted and declared again (the documented way out of a stuck
/// single-node stream) starts its offsets at 0 again. A node whose history subscription was
/// 20 entries into the old stream recognises the new one, reads it from its start (all 40 new
/// entries, in order, none skipped), and counts the loss; a client's offset from the old
/// stream reads `Replay::Unknown`, never entries of the new stream after that number.
#[tokio::test]
async fn a_stream_declared_again_is_read_from_its_start_and_old_offsets_are_unknown() {
    let server = RabbitMqServer::shared().await;
    let writer = connect(options(server.url())).await;
    let reader = connect(options(server.url())).await;
    let channel = unique_channel("history-redeclared");
    let mut subscription = within_deadline(
        "subscribe",
        history_of(&reader).subscribe_from(&channel, &Offset::START),
    )
    .await
    .expect("subscribe");
    let mut last_old = None;
    for i in 0..20 {
        within_deadline(
            "append",
            history_of(&writer).append(&channel, format!("old-{i}").into()),
        )
        .await
        .expect("append to the first stream");
        let entry = within_deadline("delivery", subscription.recv())
            .await
            .expect("the subscription delivers");
        assert_eq!(entry.payload, format!("old-{i}").as_bytes());
        last_old = Some(entry.offset);
    }
    let last_old = last_old.expect("20 entries");
    assert_eq!(history_of(&reader).losses_detected(), 0);

    // The operator's fix: the queue deleted, then declared again by the next append.
    let admin = Connection::connect(server.url(), ConnectionProperties::default())
        .await
        .expect("connect to delete the queue");
    let admin_channel = admin.create_channel().await.expect("channel");
    let queue = format!(
        "{}{channel}",
        AmqpOptions::new(server.url()).history_queue_prefix
    );
    admin_channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await
        .expect("delete the stream queue");

    for i in 0..40 {
        within_deadline(
            "append",
            history_of(&writer).append(&channel, format!("new-{i}").into()),
        )
        .await
        .expect("append to the new stream");
    }
    for i in 0..40 {
        let entry = within_deadline("delivery", subscription.recv())
            .await
            .expect("the subscription delivers the new stream");
        assert_eq!(
            String::from_utf8_lossy(&entry.payload),
            format!("new-{i}"),
            "the new stream is read from its start"
        );
    }
    assert!(
        history_of(&reader).losses_detected() >= 1,
        "the renewed stream is counted as a loss"
    );
    let replay = within_deadline(
        "read_after",
        history_of(&reader).read_after(&channel, &last_old, 100),
    )
    .await
    .expect("read after an offset of the old stream");
    assert!(
        matches!(replay, sidecast_core::Replay::Unknown),
        "an offset of the old stream must be unknown, got {replay:?}"
    );
    admin.close(200, "done".into()).await.expect("close");
}

/// `stream_replicas` (`x-initial-cluster-size`) is applied at the first declaration only:
/// RabbitMQ places no more replicas than the cluster has (3, the default, works on one node),
/// and a queue declared without it (by an earlier version) or with another count is still
/// accepted, so that nodes can be upgraded or reconfigured one by one.
#[tokio::test]
async fn stream_replicas_are_capped_and_not_compared_with_an_existing_queue() {
    let server = RabbitMqServer::shared().await;
    let base = options(server.url());
    assert_eq!(base.stream_replicas, 3, "the default");
    let first = connect(base.clone()).await;
    let channel = unique_channel("history-replicas");
    within_deadline("append", history_of(&first).append(&channel, "one".into()))
        .await
        .expect("3 replicas asked on a single node: RabbitMQ places one");

    let other = connect(AmqpOptions {
        stream_replicas: 1,
        ..base.clone()
    })
    .await;
    within_deadline("append", history_of(&other).append(&channel, "two".into()))
        .await
        .expect("another replica count is not compared");

    // A queue declared as before this setting existed: the same arguments without it.
    let admin = Connection::connect(server.url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let admin_channel = admin.create_channel().await.expect("channel");
    let older = unique_channel("history-replicas-older");
    let mut arguments = FieldTable::default();
    arguments
        .insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("stream".into()),
        )
        .insert(
            "x-max-age".into(),
            lapin::types::AMQPValue::LongString(
                format!("{}s", base.history.max_age.as_secs()).into(),
            ),
        )
        .insert(
            "x-max-length-bytes".into(),
            lapin::types::AMQPValue::LongLongInt(i64::try_from(base.history.max_bytes).unwrap()),
        )
        .insert(
            "x-stream-max-segment-size-bytes".into(),
            lapin::types::AMQPValue::LongLongInt(
                i64::try_from(base.history_segment_bytes).unwrap(),
            ),
        );
    admin_channel
        .queue_declare(
            format!("{}{older}", base.history_queue_prefix)
                .as_str()
                .into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .expect("declare the queue as an earlier version did");
    within_deadline("append", history_of(&first).append(&older, "three".into()))
        .await
        .expect("a queue declared without x-initial-cluster-size is accepted");
    admin.close(200, "done".into()).await.expect("close");
}

/// Appends in flight when RabbitMQ closes every connection (the node a Sidecast node was
/// connected to went away): each append either returns `Ok`, and then its entry is in the
/// history and reaches a history subscription exactly once, or fails; none returns `Ok` for an
/// entry that is missing, and nothing is appended twice (an append is never retried by the
/// transport: an `Ok` is its own message read back from the stream).
#[tokio::test]
async fn appends_in_flight_when_connections_are_closed_are_confirmed_or_failed_never_doubled() {
    use std::collections::{HashMap, HashSet};
    use std::sync::{Arc, Mutex};

    let server = RabbitMqServer::start_local().await;
    // A history large enough that nothing is trimmed: the test reads all of it.
    let roomy = AmqpOptions {
        history: HistoryRetention {
            max_bytes: 64 << 20,
            ..options(server.url()).history
        },
        history_segment_bytes: 8 << 20,
        ..options(server.url())
    };
    let writer = Arc::new(connect(roomy.clone()).await);
    let reader = connect(roomy).await;
    let channel = unique_channel("history-in-flight");
    let mut subscription = within_deadline(
        "subscribe",
        history_of(&reader).subscribe_from(&channel, &Offset::START),
    )
    .await
    .expect("subscribe");

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(0_usize));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (writer, channel) = (Arc::clone(&writer), channel.clone());
        let (acknowledged, failed) = (Arc::clone(&acknowledged), Arc::clone(&failed));
        let stop = Arc::clone(&stop);
        workers.push(tokio::spawn(async move {
            let mut i = 0_u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let payload = format!("w{worker}-{i}");
                match history_of(writer.as_ref())
                    .append(&channel, payload.clone().into())
                    .await
                {
                    Ok(_) => acknowledged.lock().unwrap().push(payload),
                    Err(_) => {
                        *failed.lock().unwrap() += 1;
                        // A failure comes fast while the connection is down: do not spin.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    // Cut while appends are in flight: after some were acknowledged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no appends acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let closed = server
        .ctl(&["close_all_connections", "-p", "/", "cut under test"])
        .await
        .expect("close every connection");
    eprintln!("rabbitmqctl: {closed}");
    // Appends go on after the cut until some more were acknowledged on the new connection.
    let before = acknowledged.lock().unwrap().len();
    while acknowledged.lock().unwrap().len() < before + 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no appends acknowledged after the cut"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in workers {
        within_deadline("appends", worker).await.expect("worker");
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let failed = *failed.lock().unwrap();
    assert!(
        failed > 0,
        "the cut must have failed some appends ({} acknowledged)",
        acknowledged.len()
    );

    // Every acknowledged entry is in the history, and no entry is there twice.
    let replay = within_deadline(
        "read_after",
        history_of(&reader).read_after(&channel, &Offset::START, 10_000),
    )
    .await
    .expect("read the history");
    let sidecast_core::Replay::Entries(entries) = replay else {
        panic!("the whole history, got {replay:?}");
    };
    let mut stored: HashMap<String, usize> = HashMap::new();
    for entry in &entries {
        *stored
            .entry(String::from_utf8_lossy(&entry.payload).into_owned())
            .or_default() += 1;
    }
    for payload in &acknowledged {
        assert_eq!(
            stored.get(payload),
            Some(&1),
            "{payload} was acknowledged: it must be in the history once"
        );
    }
    assert!(
        stored.values().all(|&n| n == 1),
        "nothing appended twice: {stored:?}"
    );

    // The subscription, cut as well, delivers each acknowledged entry once.
    let mut missing: HashSet<String> = acknowledged.iter().cloned().collect();
    let mut delivered = HashSet::new();
    while !missing.is_empty() {
        let entry = within_deadline("delivery", subscription.recv())
            .await
            .expect("the subscription resumes");
        let payload = String::from_utf8_lossy(&entry.payload).into_owned();
        assert!(
            delivered.insert(payload.clone()),
            "{payload} delivered twice"
        );
        missing.remove(&payload);
    }
    eprintln!(
        "{} acknowledged, {failed} failed, {} stored",
        acknowledged.len(),
        entries.len()
    );
}
