//! The database turns read-only under a running server (what a failover looks like from a
//! server still connected to the old primary, here made with `default_transaction_read_only`
//! on a private cluster), then takes writes again: pushes are never refused with a 500 — each is
//! stored or buffered — and once writes come back the buffer replays, and every message is
//! delivered exactly once.

#![allow(clippy::unwrap_used)]

#[path = "../wire/tests/servers/mod.rs"]
mod servers;
mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use servers::set_read_only;
use support::{Server, buffer_dir};

#[tokio::test]
async fn pushes_buffer_while_the_database_is_read_only_and_replay_after() {
    let Some(cluster) = queen_wire::embedded::private_test_cluster("read-only").unwrap() else {
        return;
    };
    let db = cluster.config("postgres");
    let s = Server::start_on(&db, buffer_dir("read_only"), false, &[]).await;
    let admin = queen_wire::Connection::connect(&db).await.unwrap();

    let mut sent = Vec::new();
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    let mut push = async |n: usize| {
        let payload = json!({ "n": n });
        let r = s
            .post(
                "/api/v1/push",
                &json!({ "items": [{ "queue": "ro", "partition": "p", "payload": payload }] }),
            )
            .await;
        assert_eq!(
            r.status,
            201,
            "push {n}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let status = r.json()[0]["status"].as_str().unwrap().to_owned();
        *statuses.entry(status.clone()).or_default() += 1;
        sent.push(payload);
        status
    };
    for n in 0..20 {
        assert_eq!(push(n).await, "queued");
    }

    set_read_only(&admin, true).await;
    // Until the server's sessions see the change, pushes are stored; after it, buffered.
    let mut n = 20;
    let deadline = Instant::now() + Duration::from_secs(20);
    while push(n).await != "buffered" {
        n += 1;
        assert!(Instant::now() < deadline, "no push was buffered");
    }
    for _ in 0..30 {
        n += 1;
        push(n).await;
    }
    let pending = s.get_json("/api/v1/status/buffers").await["pending"]
        .as_u64()
        .unwrap();
    assert!(pending > 0);
    // Pops take leases (writes): refused as unavailable, not as our failure.
    let r = s
        .get("/api/v1/pop/queue/ro/partition/p?batch=1&wait=false")
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));

    set_read_only(&admin, false).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let b = s.get_json("/api/v1/status/buffers").await;
        if b["pending"] == 0 && b["dbHealthy"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the buffer never drained: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut got: Vec<Value> = Vec::new();
    loop {
        let batch = s
            .pop("/api/v1/pop/queue/ro/partition/p?batch=100&autoAck=true")
            .await;
        if batch.is_empty() {
            break;
        }
        got.extend(batch.into_iter().map(|m| m["data"].clone()));
    }
    assert_eq!(
        got, sent,
        "every push delivered once, in order ({statuses:?})"
    );
}
