//! One test per rule of docs/semantics.md, against a real PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use queen_engine::{
    AckStatus, EngineConfig, PushStatus, QueueOptions, Subscription, TxOperation, TxResult,
};
use queen_wire::Timestamp;

const QM: &str = "__QUEUE_MODE__";

// §2 Ordering and visibility ------------------------------------------------------------------

#[tokio::test]
async fn partition_is_fifo_across_pushes() {
    let e = engine("fifo").await;
    for i in 0..5 {
        push(&e, "q", "p", &[&format!("{i}a"), &format!("{i}b")]).await;
    }
    let r = pop(&e, &pop_req("q", Some("p"), QM, 100)).await;
    assert_eq!(
        payloads(&r),
        vec!["0a", "0b", "1a", "1b", "2a", "2b", "3a", "3b", "4a", "4b"]
    );
    let positions: Vec<i64> = r.unwrap().messages.iter().map(|m| m.position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn new_partition_is_visible_to_any_partition_pop_at_once() {
    let e = engine("visible").await;
    push(&e, "q", "brand-new", &["x"]).await;
    let r = pop(&e, &pop_req("q", None, QM, 1))
        .await
        .expect("visible right after commit");
    assert_eq!(r.messages[0].partition, "brand-new");
}

#[tokio::test]
async fn delayed_processing_holds_messages_back() {
    let e = engine("delayed").await;
    configure(
        &e,
        "q",
        QueueOptions {
            delayed_processing: Some(1),
            ..Default::default()
        },
    )
    .await;
    push(&e, "q", "Default", &["later"]).await;
    assert!(
        pop(&e, &pop_req("q", None, QM, 1)).await.is_none(),
        "not before createdAt + 1 s"
    );
    // A waiting pop gets it once the delay has passed.
    let r = e
        .pop(&pop_req("q", None, QM, 1), Some(Duration::from_secs(5)))
        .await
        .unwrap();
    let r = r.expect("delivered after the delay");
    let age = Timestamp::now().0 - r.messages[0].created_at.0;
    assert!(age >= 1_000_000, "delivered {age} µs after creation");
}

#[tokio::test]
async fn window_buffer_waits_for_a_quiet_partition() {
    let e = engine("window").await;
    configure(
        &e,
        "q",
        QueueOptions {
            window_buffer: Some(1),
            ..Default::default()
        },
    )
    .await;
    push(&e, "q", "p", &["a"]).await;
    assert!(pop(&e, &pop_req("q", Some("p"), QM, 10)).await.is_none());
    push(&e, "q", "p", &["b"]).await;
    let r = e
        .pop(
            &pop_req("q", Some("p"), QM, 10),
            Some(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert_eq!(
        payloads(&r),
        vec!["a", "b"],
        "the backlog comes together once quiet"
    );
}

// §3 Leases, acks and retries ------------------------------------------------------------------

#[tokio::test]
async fn a_live_lease_blocks_its_partition_only() {
    let e = engine("lease").await;
    push(&e, "q", "p1", &["a", "b"]).await;
    push(&e, "q", "p2", &["c"]).await;
    let first = pop(&e, &pop_req("q", Some("p1"), QM, 1)).await.unwrap();
    assert_eq!(first.messages[0].payload, "\"a\"");
    assert!(first.lease_id.is_some());
    assert!(
        pop(&e, &pop_req("q", Some("p1"), QM, 1)).await.is_none(),
        "p1 is leased"
    );
    let other = pop(&e, &pop_req("q", None, QM, 1)).await.unwrap();
    assert_eq!(
        other.messages[0].partition, "p2",
        "other partitions go on in parallel"
    );
}

#[tokio::test]
async fn auto_ack_commits_in_the_pop() {
    let e = engine("autoack").await;
    push(&e, "q", "p", &["a", "b"]).await;
    let mut req = pop_req("q", Some("p"), QM, 1);
    req.auto_ack = true;
    let r = pop(&e, &req).await.unwrap();
    assert_eq!(r.lease_id, None);
    assert_eq!(r.messages[0].payload, "\"a\"");
    assert_eq!(
        payloads(&pop(&e, &req).await),
        vec!["b"],
        "no lease blocks the next pop"
    );
    assert!(pop(&e, &req).await.is_none());
}

#[tokio::test]
async fn completed_commits_up_to_the_message_and_releases_at_the_end() {
    let e = engine("commit").await;
    push(&e, "q", "p", &["a", "b", "c"]).await;
    let r = pop(&e, &pop_req("q", Some("p"), QM, 3)).await.unwrap();
    let out = e
        .ack(vec![ack_of(&r, 1, AckStatus::Completed)])
        .await
        .unwrap();
    assert!(out[0].success && !out[0].lease_released, "{out:?}");
    // Acking "b" completed "a" too: a completed ack of "a" is now a noop.
    let out = e
        .ack(vec![ack_of(&r, 0, AckStatus::Completed)])
        .await
        .unwrap();
    assert!(out[0].success && out[0].noop);
    let out = e
        .ack(vec![ack_of(&r, 2, AckStatus::Completed)])
        .await
        .unwrap();
    assert!(out[0].success && out[0].lease_released);
    assert!(pop(&e, &pop_req("q", Some("p"), QM, 3)).await.is_none());
}

#[tokio::test]
async fn failed_redelivers_from_the_message_and_counts() {
    let e = engine("failed").await;
    push(&e, "q", "p", &["a", "b", "c"]).await;
    let r = pop(&e, &pop_req("q", Some("p"), QM, 3)).await.unwrap();
    let out = e
        .ack(vec![
            ack_of(&r, 0, AckStatus::Completed),
            ack_of(&r, 1, AckStatus::Failed),
        ])
        .await
        .unwrap();
    assert!(out.iter().all(|o| o.success && o.lease_released), "{out:?}");
    let again = pop(&e, &pop_req("q", Some("p"), QM, 3)).await.unwrap();
    assert_eq!(payloads(&Some(again.clone())), vec!["b", "c"]);
    assert_eq!(again.messages[0].retry_count, 1);
    assert_eq!(again.messages[1].retry_count, 0);
}

#[tokio::test]
async fn a_nack_is_never_swallowed_by_a_later_success_in_the_same_call() {
    let e = engine("clamp").await;
    push(&e, "q", "p", &["a", "b", "c"]).await;
    let r = pop(&e, &pop_req("q", Some("p"), QM, 3)).await.unwrap();
    let out = e
        .ack(vec![
            ack_of(&r, 1, AckStatus::Failed),
            ack_of(&r, 2, AckStatus::Completed),
            ack_of(&r, 0, AckStatus::Completed),
        ])
        .await
        .unwrap();
    assert!(out.iter().all(|o| o.success), "{out:?}");
    assert_eq!(
        payloads(&pop(&e, &pop_req("q", Some("p"), QM, 3)).await),
        vec!["b", "c"]
    );
}

#[tokio::test]
async fn retry_limit_sends_to_the_dead_letter_queue_and_moves_on() {
    let e = engine("retrylimit").await;
    configure(
        &e,
        "q",
        QueueOptions {
            retry_limit: Some(1),
            ..Default::default()
        },
    )
    .await;
    push(&e, "q", "Default", &["poison", "next"]).await;
    for attempt in 0..2 {
        let r = pop(&e, &pop_req("q", None, QM, 1)).await.unwrap();
        assert_eq!(r.messages[0].payload, "\"poison\"");
        assert_eq!(r.messages[0].retry_count, attempt);
        let mut a = ack_of(&r, 0, AckStatus::Failed);
        a.error = Some("boom".into());
        let out = e.ack(vec![a]).await.unwrap();
        assert_eq!(out[0].dlq, attempt == 1, "{out:?}");
    }
    assert_eq!(
        payloads(&pop(&e, &pop_req("q", None, QM, 1)).await),
        vec!["next"]
    );
    let rows = queen_wire::Client::query_sql(
        e.pool(),
        "SELECT error_message, retry_count FROM queen.dead_letters",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<&str>("error_message").unwrap(), "boom");
    assert_eq!(rows[0].get::<i32>("retry_count").unwrap(), 2);
}

#[tokio::test]
async fn retry_does_not_count_and_dlq_moves_past_at_once() {
    let e = engine("retrydlq").await;
    configure(
        &e,
        "q",
        QueueOptions {
            retry_limit: Some(0),
            ..Default::default()
        },
    )
    .await;
    push(&e, "q", "Default", &["a", "b"]).await;
    for _ in 0..3 {
        let r = pop(&e, &pop_req("q", None, QM, 1)).await.unwrap();
        assert_eq!(r.messages[0].payload, "\"a\"");
        assert!(e.ack(vec![ack_of(&r, 0, AckStatus::Retry)]).await.unwrap()[0].success);
    }
    let r = pop(&e, &pop_req("q", None, QM, 1)).await.unwrap();
    let out = e.ack(vec![ack_of(&r, 0, AckStatus::Dlq)]).await.unwrap();
    assert!(out[0].success && out[0].dlq);
    assert_eq!(
        payloads(&pop(&e, &pop_req("q", None, QM, 1)).await),
        vec!["b"]
    );
}

#[tokio::test]
async fn late_nack_unknown_message_and_noop() {
    let e = engine("latenack").await;
    push(&e, "q", "p", &["a"]).await;
    let r = pop(&e, &pop_req("q", Some("p"), QM, 1)).await.unwrap();
    assert!(
        e.ack(vec![ack_of(&r, 0, AckStatus::Completed)])
            .await
            .unwrap()[0]
            .success
    );
    let mut again = ack_of(&r, 0, AckStatus::Completed);
    again.lease_id = None;
    let out = e.ack(vec![again.clone()]).await.unwrap();
    assert!(out[0].success && out[0].noop);
    again.status = AckStatus::Failed;
    let out = e.ack(vec![again.clone()]).await.unwrap();
    assert!(!out[0].success);
    assert!(
        out[0]
            .error
            .as_deref()
            .unwrap()
            .contains("already committed"),
        "{out:?}"
    );
    again.transaction_id = "no-such-message".into();
    again.status = AckStatus::Completed;
    let out = e.ack(vec![again]).await.unwrap();
    assert!(!out[0].success);
    assert!(
        out[0]
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("Message not found (unresolvable)"))
    );
}

#[tokio::test]
async fn a_stale_lease_is_fenced_off() {
    let e = engine("fence").await;
    push(&e, "q", "p", &["a", "b"]).await;
    let mut req = pop_req("q", Some("p"), QM, 2);
    req.lease_seconds = Some(1);
    let r = pop(&e, &req).await.unwrap();
    // Let the lease run out and another consumer take the partition.
    assert!(
        eventually(Duration::from_secs(5), || async {
            pop(&e, &pop_req("q", Some("p"), QM, 2)).await.is_some()
        })
        .await
    );
    let out = e
        .ack(vec![
            ack_of(&r, 0, AckStatus::Completed),
            ack_of(&r, 1, AckStatus::Completed),
        ])
        .await
        .unwrap();
    assert!(
        out.iter()
            .all(|o| !o.success && o.error.as_deref().unwrap().contains("lease")),
        "{out:?}"
    );
}

#[tokio::test]
async fn lease_expiry_counts_as_a_failed_delivery() {
    // The background sweeper is kept out of the way: this test settles leases explicitly.
    let e = engine_with(
        "expiry",
        EngineConfig {
            sweep_interval: Duration::from_secs(3600),
            listen: false,
            ..EngineConfig::default()
        },
    )
    .await;
    configure(
        &e,
        "q",
        QueueOptions {
            retry_limit: Some(1),
            ..Default::default()
        },
    )
    .await;
    push(&e, "q", "Default", &["crashes-consumer", "fine"]).await;
    let mut req = pop_req("q", None, QM, 1);
    req.lease_seconds = Some(1);
    let r = pop(&e, &req).await.expect("delivered");
    assert_eq!(
        (r.messages[0].payload.as_str(), r.messages[0].retry_count),
        ("\"crashes-consumer\"", 0)
    );
    // The consumer dies; the sweeper settles the lease once it has run out.
    assert!(
        eventually(Duration::from_secs(5), || async {
            e.sweep_expired_leases().await.unwrap() == 1
        })
        .await
    );
    let r = pop(&e, &req).await.expect("redelivered");
    assert_eq!(
        (r.messages[0].payload.as_str(), r.messages[0].retry_count),
        ("\"crashes-consumer\"", 1)
    );
    // It dies again. This time the next pop itself finds the expired lease and settles it: the
    // second failure exceeds retryLimit 1, so the poison message goes to the DLQ.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let next = loop {
        if let Some(r) = pop(&e, &req).await {
            break Some(r);
        }
        assert!(std::time::Instant::now() < deadline, "never redelivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(payloads(&next), vec!["fine"]);
    let dlq =
        queen_wire::Client::query_sql(e.pool(), "SELECT count(*) FROM queen.dead_letters", &[])
            .await
            .unwrap();
    assert_eq!(dlq[0].single::<i64>().unwrap(), 1);
}

#[tokio::test]
async fn lease_extend_and_its_errors() {
    // No background sweep: an expired lease stays recorded (and reported as expired) until
    // settled.
    let e = engine_with(
        "extend",
        EngineConfig {
            sweep_interval: Duration::from_secs(3600),
            listen: false,
            ..EngineConfig::default()
        },
    )
    .await;
    push(&e, "q", "p", &["a"]).await;
    let mut req = pop_req("q", Some("p"), QM, 1);
    req.lease_seconds = Some(30);
    let r = pop(&e, &req).await.unwrap();
    let lease = r.lease_id.unwrap();
    let ext = e.extend_lease(lease, Some(600)).await.unwrap();
    assert_eq!(ext.renewed, 1);
    assert!(ext.expires_at.unwrap().0 > r.lease_expires_at.unwrap().0 + 500_000_000);
    assert!(
        e.ack(vec![ack_of(&r, 0, AckStatus::Completed)])
            .await
            .unwrap()[0]
            .lease_released
    );
    let ext = e.extend_lease(lease, Some(10)).await.unwrap();
    assert_eq!(
        (ext.renewed, ext.error.as_deref()),
        (0, Some("Lease not found"))
    );
    push(&e, "q", "p", &["b"]).await;
    req.lease_seconds = Some(1);
    let r = pop(&e, &req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let ext = e.extend_lease(r.lease_id.unwrap(), Some(10)).await.unwrap();
    assert_eq!(ext.error.as_deref(), Some("Lease expired"));
}

#[tokio::test]
async fn retry_delay_holds_the_redelivery_back() {
    let e = engine("retrydelay").await;
    configure(
        &e,
        "q",
        QueueOptions {
            retry_delay: Some(800),
            ..Default::default()
        },
    )
    .await;
    push(&e, "q", "Default", &["a"]).await;
    let r = pop(&e, &pop_req("q", None, QM, 1)).await.unwrap();
    let t0 = std::time::Instant::now();
    e.ack(vec![ack_of(&r, 0, AckStatus::Failed)]).await.unwrap();
    assert!(
        pop(&e, &pop_req("q", None, QM, 1)).await.is_none(),
        "held back"
    );
    let again = e
        .pop(&pop_req("q", None, QM, 1), Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(again.is_some());
    assert!(t0.elapsed() >= Duration::from_millis(800));
}

// §4 Consumer groups and subscriptions ---------------------------------------------------------

#[tokio::test]
async fn groups_fan_out_and_queue_mode_competes() {
    let e = engine("fanout").await;
    push(&e, "q", "p", &["a", "b"]).await;
    for g in ["g1", "g2"] {
        let mut req = pop_req("q", None, g, 10);
        req.auto_ack = true;
        assert_eq!(
            payloads(&pop(&e, &req).await),
            vec!["a", "b"],
            "group {g} reads everything"
        );
    }
    let mut req = pop_req("q", None, QM, 10);
    req.auto_ack = true;
    assert_eq!(payloads(&pop(&e, &req).await), vec!["a", "b"]);
    assert!(
        pop(&e, &req).await.is_none(),
        "queue-mode consumers share one cursor"
    );
}

#[tokio::test]
async fn subscription_new_starts_at_the_end_and_is_remembered() {
    let e = engine("subnew").await;
    push(&e, "q", "old", &["before"]).await;
    let mut req = pop_req("q", None, "g", 10);
    req.auto_ack = true;
    req.subscription = Some(Subscription::New);
    assert!(pop(&e, &req).await.is_none());
    push(&e, "q", "old", &["after"]).await;
    push(&e, "q", "created-later", &["later-partition"]).await;
    req.subscription = None; // remembered per group and queue
    let mut got = payloads(&pop(&e, &req).await);
    got.extend(payloads(&pop(&e, &req).await));
    got.sort();
    assert_eq!(got, vec!["after", "later-partition"]);
}

#[tokio::test]
async fn subscription_from_a_timestamp() {
    let e = engine("subts").await;
    push(&e, "q", "p", &["old"]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let ts = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    push(&e, "q", "p", &["new"]).await;
    let mut req = pop_req("q", None, "g", 10);
    req.subscription = Some(Subscription::From(ts));
    assert_eq!(payloads(&pop(&e, &req).await), vec!["new"]);
    // Queue mode always starts at the beginning.
    assert_eq!(
        payloads(&pop(&e, &pop_req("q", None, QM, 10)).await),
        vec!["old", "new"]
    );
}

// §5 Exactly-once building blocks --------------------------------------------------------------

#[tokio::test]
async fn transaction_id_dedupes_per_partition_also_within_a_request() {
    let e = engine("dedupe").await;
    let out = e
        .push(vec![
            with_txid(item("q", "p", "1"), "t1"),
            with_txid(item("q", "p", "dup in request"), "t1"),
            with_txid(item("q", "other", "same id, other partition"), "t1"),
        ])
        .await
        .unwrap();
    assert_eq!(
        out.iter().map(|o| o.status.clone()).collect::<Vec<_>>(),
        vec![
            PushStatus::Queued,
            PushStatus::Duplicate,
            PushStatus::Queued
        ]
    );
    assert_eq!(out[1].message_id, out[0].message_id);
    let again = e
        .push(vec![with_txid(item("q", "p", "retry"), "t1")])
        .await
        .unwrap();
    assert_eq!(again[0].status, PushStatus::Duplicate);
    assert_eq!(again[0].message_id, out[0].message_id);
    let mut req = pop_req("q", Some("p"), QM, 10);
    req.auto_ack = true;
    assert_eq!(payloads(&pop(&e, &req).await), vec!["1"]);
}

#[tokio::test]
async fn transaction_is_atomic() {
    let e = engine("tx").await;
    push(&e, "in", "p", &["work"]).await;
    let r = pop(&e, &pop_req("in", Some("p"), QM, 1)).await.unwrap();
    let ok = e
        .transaction(
            vec![
                TxOperation::Ack(ack_of(&r, 0, AckStatus::Completed)),
                TxOperation::Push(vec![with_txid(item("out", "p", "result"), "r1")]),
            ],
            vec![r.lease_id.unwrap()],
        )
        .await
        .unwrap();
    assert!(ok.success, "{ok:?}");
    assert!(matches!(&ok.results[0], TxResult::Ack(a) if a.success));
    // Retrying the same transaction: the lease is gone and r1 is a duplicate: nothing applies.
    let retry = e
        .transaction(
            vec![TxOperation::Push(vec![
                with_txid(item("out", "p", "result"), "r1"),
                item("out", "p", "extra"),
            ])],
            vec![],
        )
        .await
        .unwrap();
    assert!(!retry.success);
    assert!(retry.error.unwrap().contains("duplicate"));
    let lease_gone = e
        .transaction(
            vec![TxOperation::Push(vec![item("out", "p", "x")])],
            vec![r.lease_id.unwrap()],
        )
        .await
        .unwrap();
    assert!(!lease_gone.success);
    let mut req = pop_req("out", None, QM, 10);
    req.auto_ack = true;
    assert_eq!(
        payloads(&pop(&e, &req).await),
        vec!["result"],
        "failed transactions left nothing"
    );
}

#[tokio::test]
async fn multi_partition_pop_shares_one_lease_and_caps_the_total() {
    let e = engine("multipart").await;
    for p in ["a", "b", "c"] {
        push(
            &e,
            "q",
            p,
            &[&format!("{p}1"), &format!("{p}2"), &format!("{p}3")],
        )
        .await;
    }
    let mut req = pop_req("q", None, QM, 5);
    req.partitions = 3;
    let r = pop(&e, &req).await.unwrap();
    assert_eq!(r.messages.len(), 5, "batch caps the total");
    assert!(r.partitions_claimed >= 2 && r.partitions_claimed <= 3);
    // Each partition's block is contiguous and in order.
    let mut blocks: Vec<(String, Vec<String>)> = Vec::new();
    for m in &r.messages {
        let p = m.payload.trim_matches('"').to_owned();
        match blocks.last_mut() {
            Some((name, v)) if *name == m.partition => v.push(p),
            _ => blocks.push((m.partition.clone(), vec![p])),
        }
    }
    assert_eq!(blocks.len(), r.partitions_claimed);
    for (name, v) in &blocks {
        let expected: Vec<String> = (1..=v.len()).map(|i| format!("{name}{i}")).collect();
        assert_eq!(v, &expected);
    }
    // One lease covers them all: acking each block's last message releases every partition.
    let acks = r.commit_all(AckStatus::Completed);
    assert_eq!(acks.len(), r.partitions_claimed);
    let out = e.ack(acks).await.unwrap();
    assert!(out.iter().all(|o| o.success && o.lease_released), "{out:?}");
}
