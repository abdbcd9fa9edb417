//! The test kit's Redis Cluster: it starts healthy, and killing a primary promotes its replica.

use sidecast_testkit::RedisCluster;

#[tokio::test]
async fn a_killed_primary_is_replaced_by_its_replica() {
    let mut cluster = RedisCluster::start().await;
    let url = cluster.url();
    assert!(url.starts_with("redis+cluster://127.0.0.1:"), "{url}");
    assert_eq!(url.matches(',').count(), 2, "three seed nodes: {url}");

    let key = "{sidecast}:probe";
    let primary = cluster.primary_of(key).await;
    let written = cluster
        .cli(&primary, &["-c", "SET", key, "before"])
        .await
        .expect("SET on the primary");
    assert_eq!(written.trim(), "OK");
    // WAIT: the replica holds the key before its primary dies.
    let replicas = cluster
        .cli(&primary, &["WAIT", "1", "5000"])
        .await
        .expect("WAIT");
    assert_eq!(
        replicas.trim(),
        "1",
        "the primary's replica acknowledged the write"
    );

    let killed = cluster.kill_primary_of(key).await;
    assert_eq!(killed, primary);
    let promoted = cluster.wait_for_promotion(key, &killed).await;
    assert_ne!(promoted, killed);
    let read = cluster
        .cli(&promoted, &["GET", key])
        .await
        .expect("GET on the promoted replica");
    assert_eq!(read.trim(), "before", "the promoted replica has the write");
}
