//! Queue options through the HTTP API against a real PostgreSQL: ttl, maxWaitTimeSeconds,
//! maxSize (also under concurrent pushes), priority with namespace pops, retry limits with the
//! dead-letter queue and its retry route, encryption at rest, and retention under load.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, until};

const KEY: &str = "8f1c0e7a5b2d4f6081a3c5e7092b4d6f8e0a2c4e6081a3c5e7092b4d6f8e0a2c";

async fn dlq(s: &Server, query: &str) -> Value {
    s.get_json(&format!("/api/v1/dlq?{query}")).await
}

#[tokio::test]
async fn ttl_and_max_wait_move_old_messages_to_the_dlq_and_never_deliver_them() {
    let s = Server::start("opt_ttl", &[]).await;
    s.configure("ttl-q", json!({"ttl": 1})).await;
    s.configure("ttl-drop", json!({"ttl": 1, "deadLetterQueue": false}))
        .await;
    s.configure("wait-q", json!({"maxWaitTimeSeconds": 1}))
        .await;
    for q in ["ttl-q", "ttl-drop", "wait-q"] {
        assert_eq!(
            s.try_push(q, "p", &[json!({"old": 1}), json!({"old": 2})])
                .await
                .status,
            201
        );
    }
    // Both periods are one second: the first two messages of each queue are now past them.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for q in ["ttl-q", "ttl-drop", "wait-q"] {
        assert_eq!(
            s.try_push(q, "p", &[json!({"fresh": true})]).await.status,
            201
        );
        let got = s.pop(&format!("/api/v1/pop/queue/{q}?batch=10")).await;
        assert_eq!(
            got.len(),
            1,
            "{q}: only the fresh message is delivered: {got:?}"
        );
        assert_eq!(got[0]["data"], json!({"fresh": true}));
        s.ack(&got[0], "completed").await;
        assert!(
            s.pop(&format!("/api/v1/pop/queue/{q}?batch=10"))
                .await
                .is_empty()
        );
    }
    let d = dlq(&s, "queue=ttl-q").await;
    assert_eq!(d["total"], 2, "{d}");
    for m in d["messages"].as_array().unwrap() {
        assert_eq!(m["errorMessage"], "expired");
        assert!(m["data"]["old"].is_number(), "{m}");
    }
    assert_eq!(
        dlq(&s, "queue=ttl-drop").await["total"],
        0,
        "DLQ off: dropped"
    );
    let d = dlq(&s, "queue=wait-q").await;
    assert_eq!(d["total"], 2);
    assert_eq!(d["messages"][0]["errorMessage"], "max wait time exceeded");

    // A retried message's ttl counts from the retry: it is delivered, not expired again (the
    // same one-second margin as the fresh message above).
    let d = dlq(&s, "queue=ttl-q").await;
    let dead = &d["messages"][0];
    let path = format!(
        "/api/v1/messages/{}/{}/retry",
        dead["partitionId"].as_str().unwrap(),
        dead["transactionId"].as_str().unwrap()
    );
    assert_eq!(s.post(&path, &json!({})).await.status, 200);
    let got = s.pop("/api/v1/pop/queue/ttl-q?batch=10").await;
    assert_eq!(
        data_of(&got),
        [dead["data"].clone()],
        "delivered after the retry"
    );
    assert_eq!(dlq(&s, "queue=ttl-q").await["total"], 1);
}

fn data_of(messages: &[Value]) -> Vec<Value> {
    messages.iter().map(|m| m["data"].clone()).collect()
}

#[tokio::test]
async fn max_size_refuses_whole_pushes_with_429_and_frees_room_as_messages_are_consumed() {
    let s = Server::start("opt_maxsize", &[]).await;
    s.configure("small", json!({"maxSize": 3})).await;
    assert_eq!(
        s.try_push("small", "a", &[json!(1), json!(2)]).await.status,
        201
    );
    let r = s.try_push("small", "b", &[json!(3), json!(4)]).await;
    r.assert_error(429, "queue_full");
    assert_eq!(r.json()["queue"], "small");
    let q = s
        .get("/api/v1/resources/queues/small")
        .await
        .unwrap()
        .json();
    assert_eq!(
        q["totals"]["total"], 2,
        "nothing of the refused push is stored"
    );
    assert_eq!(s.try_push("small", "b", &[json!(3)]).await.status, 201);
    s.try_push("small", "a", &[json!(5)])
        .await
        .assert_error(429, "queue_full");
    // Consuming frees room.
    let got = s.pop("/api/v1/pop/queue/small/partition/a?batch=10").await;
    assert_eq!(got.len(), 2);
    s.ack(&got[1], "completed").await;
    assert_eq!(
        s.try_push("small", "a", &[json!(6), json!(7)]).await.status,
        201
    );
    // Other queues are not affected.
    assert_eq!(
        s.try_push("other", "a", &vec![json!(1); 10]).await.status,
        201
    );
}

#[tokio::test]
async fn max_size_holds_under_concurrent_pushes_to_many_partitions() {
    let s = Server::start("opt_maxsize_race", &[]).await;
    s.configure("race", json!({"maxSize": 10})).await;
    let port = s.port;
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            tokio::spawn(async move {
                let c = Server::client(port);
                let body = json!({"items": [{"queue": "race", "partition": format!("p{i}"), "payload": i}]});
                c.post("/api/v1/push", &body).await.unwrap().status
            })
        })
        .collect();
    let mut ok = 0;
    let mut full = 0;
    for t in tasks {
        match t.await.unwrap() {
            201 => ok += 1,
            429 => full += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, full), (10, 20));
    let q = s.get("/api/v1/resources/queues/race").await.unwrap().json();
    assert_eq!(q["totals"]["total"], 10);
}

#[tokio::test]
async fn namespace_pops_serve_higher_priority_queues_first() {
    let s = Server::start("opt_priority", &[]).await;
    s.configure("jobs.low", json!({"priority": 1})).await;
    s.configure("jobs.high", json!({"priority": 10})).await;
    s.configure("jobs.mid", json!({"priority": 5})).await;
    for q in ["jobs.low", "jobs.mid", "jobs.high"] {
        assert_eq!(
            s.try_push(q, "Default", &[json!({"q": q})]).await.status,
            201
        );
    }
    let mut order = Vec::new();
    for _ in 0..3 {
        let r = s.get("/api/v1/pop?namespace=jobs&batch=1").await.unwrap();
        assert_eq!(r.status, 200);
        let m = &r.json()["messages"][0];
        order.push(m["data"]["q"].as_str().unwrap().to_owned());
        s.ack(m, "completed").await;
    }
    assert_eq!(order, ["jobs.high", "jobs.mid", "jobs.low"]);
    let r = s.get("/api/v1/pop?task=low").await.unwrap();
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn retries_end_in_the_dlq_and_the_retry_route_delivers_again() {
    let s = Server::start("opt_dlq", &[]).await;
    s.configure("flaky", json!({"retryLimit": 1})).await;
    s.configure(
        "no-dlq",
        json!({"retryLimit": 0, "dlqAfterMaxRetries": false}),
    )
    .await;
    s.try_push("flaky", "p", &[json!({"n": 1}), json!({"n": 2})])
        .await;
    for round in 0..2 {
        let m = s.pop("/api/v1/pop/queue/flaky?batch=1").await;
        assert_eq!(m[0]["data"]["n"], 1, "round {round}");
        s.ack(&m[0], "failed").await;
    }
    // Out of retries: dead-lettered, and the next message comes.
    let m = s.pop("/api/v1/pop/queue/flaky?batch=1").await;
    assert_eq!(m[0]["data"]["n"], 2);
    s.ack(&m[0], "completed").await;
    let d = dlq(&s, "queue=flaky&consumerGroup=__QUEUE_MODE__").await;
    assert_eq!(d["total"], 1);
    let dead = &d["messages"][0];
    assert_eq!(dead["errorMessage"], "boom");
    assert_eq!(dead["retryCount"], 2);
    assert_eq!(dead["data"], json!({"n": 1}));
    assert_eq!(dlq(&s, "queue=flaky&consumerGroup=other").await["total"], 0);

    let path = format!(
        "/api/v1/messages/{}/{}/retry",
        dead["partitionId"].as_str().unwrap(),
        dead["transactionId"].as_str().unwrap()
    );
    assert_eq!(s.post(&path, &json!({})).await.status, 200);
    s.post(&path, &json!({}))
        .await
        .assert_error(404, "not_found");
    let m = s.pop("/api/v1/pop/queue/flaky?batch=10").await;
    assert_eq!(m.len(), 1);
    assert_eq!(
        m[0]["data"],
        json!({"n": 1}),
        "delivered again after the retry"
    );
    assert_eq!(dlq(&s, "queue=flaky").await["total"], 0);

    // dlqAfterMaxRetries off: dropped after the limit, not dead-lettered.
    s.try_push("no-dlq", "p", &[json!(1), json!(2)]).await;
    let m = s.pop("/api/v1/pop/queue/no-dlq?batch=1").await;
    s.ack(&m[0], "failed").await;
    let m = s.pop("/api/v1/pop/queue/no-dlq?batch=1").await;
    assert_eq!(m[0]["data"], 2);
    assert_eq!(dlq(&s, "queue=no-dlq").await["total"], 0);
}

/// A dead-letter retry redelivers to the group that dead-lettered the message and to groups
/// that had not reached it, never to a group that had completed it.
#[tokio::test]
async fn a_dlq_retry_goes_to_the_groups_that_did_not_settle_the_message() {
    let s = Server::start("opt_dlq_groups", &[]).await;
    s.configure("fan", json!({"retryLimit": 0})).await;
    s.try_push("fan", "p", &[json!("m1"), json!("m2")]).await;
    let pop_group = |group: &'static str| {
        let s = &s;
        async move {
            s.pop(&format!(
                "/api/v1/pop/queue/fan?consumerGroup={group}&batch=10"
            ))
            .await
        }
    };
    let data = data_of;
    let ack_group = |m: Value, group: &'static str, status: &'static str| {
        let s = &s;
        async move {
            let r = s
                .post(
                    "/api/v1/ack",
                    &json!({"transactionId": m["transactionId"], "partitionId": m["partitionId"],
                            "leaseId": m["leaseId"], "status": status, "error": "boom",
                            "consumerGroup": group}),
                )
                .await;
            assert_eq!(r.json()[0]["success"], true, "{}", r.json());
        }
    };
    // billing completes both; analytics dead-letters m1 and completes m2.
    let got = pop_group("billing").await;
    assert_eq!(data(&got), [json!("m1"), json!("m2")]);
    ack_group(got[1].clone(), "billing", "completed").await;
    let got = pop_group("analytics").await;
    ack_group(got[0].clone(), "analytics", "failed").await;
    let got = pop_group("analytics").await;
    assert_eq!(data(&got), [json!("m2")], "m1 is in the DLQ");
    ack_group(got[0].clone(), "analytics", "completed").await;
    let dead = dlq(&s, "queue=fan").await;
    assert_eq!(dead["total"], 1);
    assert_eq!(dead["messages"][0]["consumerGroup"], "analytics");

    let retry = |dead: Value| {
        let s = &s;
        async move {
            let path = format!(
                "/api/v1/messages/{}/{}/retry",
                dead["messages"][0]["partitionId"].as_str().unwrap(),
                dead["messages"][0]["transactionId"].as_str().unwrap()
            );
            assert_eq!(s.post(&path, &json!({})).await.status, 200);
        }
    };
    retry(dead).await;
    s.try_push("fan", "p", &[json!("m3")]).await;

    // analytics gets m1 again and dead-letters it a second time; a second retry, before billing
    // has popped again, must still leave billing out.
    let got = s
        .pop("/api/v1/pop/queue/fan?consumerGroup=analytics&batch=1")
        .await;
    assert_eq!(
        data(&got),
        [json!("m1")],
        "analytics dead-lettered m1: it gets it again"
    );
    ack_group(got[0].clone(), "analytics", "failed").await;
    retry(dlq(&s, "queue=fan").await).await;

    assert_eq!(
        data(&pop_group("billing").await),
        [json!("m3")],
        "billing completed m1: it does not get it again"
    );
    assert_eq!(
        data(&pop_group("analytics").await),
        [json!("m3"), json!("m1")],
        "analytics gets m1 again after the second retry"
    );
    assert_eq!(
        data(&pop_group("late").await),
        [json!("m2"), json!("m3"), json!("m1")],
        "a group that starts later gets every message once"
    );
}

#[tokio::test]
async fn retry_delay_holds_redelivery() {
    let s = Server::start("opt_retry_delay", &[]).await;
    s.configure("slow", json!({"retryDelay": 1000})).await;
    s.try_push("slow", "p", &[json!(1)]).await;
    let m = s.pop("/api/v1/pop/queue/slow").await;
    let failed_at = Instant::now();
    s.ack(&m[0], "failed").await;
    assert!(
        s.pop("/api/v1/pop/queue/slow").await.is_empty(),
        "held for retryDelay"
    );
    s.pop_within(Duration::from_secs(5), "/api/v1/pop/queue/slow")
        .await;
    assert!(failed_at.elapsed() >= Duration::from_millis(1000));
}

async fn db_payload_columns(db: &queen_wire::Config) -> Vec<(bool, bool)> {
    use queen_wire::Client;
    let conn = queen_wire::Connection::connect(db).await.unwrap();
    let rows = conn
        .query_sql(
            "SELECT payload IS NULL AS plain_gone, sealed IS NOT NULL AS sealed\n               FROM queen.messages ORDER BY position",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.get("plain_gone").unwrap(), r.get("sealed").unwrap()))
        .collect()
}

#[tokio::test]
async fn encryption_stores_ciphertext_decrypts_on_pop_and_refuses_without_the_right_key() {
    let db = queen_wire::embedded::test_config("opt_encryption")
        .await
        .unwrap();
    let s = Server::start_on(
        &db,
        support::buffer_dir("enc"),
        false,
        &[("QUEEN_ENCRYPTION_KEY", KEY)],
    )
    .await;
    s.configure("secret", json!({"encryptionEnabled": true}))
        .await;
    s.configure("rotating", json!({"encryptionEnabled": true}))
        .await;
    assert_eq!(
        s.try_push("rotating", "p", &[json!({"r": 1})]).await.status,
        201
    );
    let r = s
        .try_push("secret", "p", &[json!({"card": "4111"}), json!("two")])
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        db_payload_columns(&db).await,
        vec![(true, true), (true, true), (true, true)],
        "ciphertext only at rest"
    );
    let got = s.pop("/api/v1/pop/queue/secret?batch=1").await;
    assert_eq!(got[0]["data"], json!({"card": "4111"}));
    let detail = s
        .get(&format!(
            "/api/v1/messages/{}/{}",
            got[0]["partitionId"].as_str().unwrap(),
            got[0]["transactionId"].as_str().unwrap()
        ))
        .await
        .unwrap()
        .json();
    assert_eq!(detail["payload"], json!({"card": "4111"}));
    assert_eq!(detail["status"], "processing");
    s.ack(&got[0], "completed").await;
    drop(s);

    // A server with another key cannot read them: a clear error, nothing garbled.
    let other = KEY.replace('8', "9");
    let s = Server::start_on(
        &db,
        support::buffer_dir("enc2"),
        false,
        &[("QUEEN_ENCRYPTION_KEY", other.as_str())],
    )
    .await;
    s.get("/api/v1/pop/queue/secret")
        .await
        .unwrap()
        .assert_error(500, "decryption_failed");
    s.get("/api/v1/pop/queue/rotating?autoAck=true")
        .await
        .unwrap()
        .assert_error(500, "decryption_failed");
    drop(s);

    // A server with no key refuses pushes to the queue (and still serves other queues).
    let s = Server::start_on(&db, support::buffer_dir("enc3"), false, &[]).await;
    s.try_push("secret", "p", &[json!(3)])
        .await
        .assert_error(409, "encryption_key_missing");
    assert_eq!(s.try_push("plain", "p", &[json!(3)]).await.status, 201);
    assert_eq!(
        db_payload_columns(&db).await.len(),
        4,
        "the refused push stored nothing"
    );
    drop(s);

    // Key rotation: a new key, the old one as previous. What the old key sealed is read; new
    // messages are sealed with the new key only.
    let s = Server::start_on(
        &db,
        support::buffer_dir("enc4"),
        false,
        &[
            ("QUEEN_ENCRYPTION_KEY", other.as_str()),
            ("QUEEN_ENCRYPTION_KEY_PREVIOUS", KEY),
        ],
    )
    .await;
    // The failed pops above gave their claims back: the leased message is available at once
    // with no failed delivery counted, the autoAck one was not consumed.
    let got = s.pop("/api/v1/pop/queue/secret?batch=10").await;
    assert_eq!(data_of(&got), [json!("two")]);
    assert_eq!(got[0]["retryCount"], 0);
    let got = s.pop("/api/v1/pop/queue/rotating?batch=10").await;
    assert_eq!(data_of(&got), [json!({"r": 1})]);
    s.ack(&got[0], "completed").await;
    assert_eq!(
        s.try_push("rotating", "p", &[json!({"r": 2})]).await.status,
        201
    );
    drop(s);
    let s = Server::start_on(
        &db,
        support::buffer_dir("enc5"),
        false,
        &[("QUEEN_ENCRYPTION_KEY", KEY)],
    )
    .await;
    s.get("/api/v1/pop/queue/rotating")
        .await
        .unwrap()
        .assert_error(500, "decryption_failed");
}

#[tokio::test]
async fn retention_deletes_in_the_background_without_disturbing_traffic() {
    let s = Server::start("opt_retention", &[("RETENTION_INTERVAL", "100")]).await;
    s.configure(
        "short",
        json!({"retentionEnabled": true, "retentionSeconds": 1}),
    )
    .await;
    s.configure(
        "done",
        json!({"retentionEnabled": true, "completedRetentionSeconds": 1}),
    )
    .await;
    s.configure("kept", json!({"retentionSeconds": 1})).await; // not enabled
    // The traffic queue is itself under retention: committed messages are deleted from the
    // partition heads while producers append and consumers pop.
    s.configure(
        "busy",
        json!({"retentionEnabled": true, "completedRetentionSeconds": 1}),
    )
    .await;
    s.try_push(
        "short",
        "gone",
        &(0..300).map(|i| json!(i)).collect::<Vec<_>>(),
    )
    .await;
    s.try_push("kept", "p", &[json!(1)]).await;
    s.try_push("done", "p", &(0..4).map(|i| json!(i)).collect::<Vec<_>>())
        .await;
    let got = s.pop("/api/v1/pop/queue/done?batch=2").await;
    s.ack(&got[1], "completed").await; // commits the first two

    // Traffic on another queue while retention runs: every message exactly once.
    let port = s.port;
    let producers: Vec<_> = (0..4)
        .map(|p| {
            tokio::spawn(async move {
                let c = Server::client(port);
                for i in 0..50 {
                    let body = json!({"items": [{"queue": "busy", "partition": format!("p{p}"), "payload": {"p": p, "i": i}}]});
                    assert_eq!(c.post("/api/v1/push", &body).await.unwrap().status, 201);
                }
            })
        })
        .collect();
    let consumer = tokio::spawn(async move {
        let c = Server::client(port);
        let mut seen = std::collections::HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < 200 && Instant::now() < deadline {
            let r = c
                .get("/api/v1/pop/queue/busy?batch=20&wait=true&timeout=500")
                .await
                .unwrap();
            if r.status != 200 {
                continue;
            }
            let msgs = r.json()["messages"].as_array().unwrap().clone();
            for m in &msgs {
                assert!(
                    seen.insert((
                        m["data"]["p"].as_i64().unwrap(),
                        m["data"]["i"].as_i64().unwrap()
                    )),
                    "duplicate {m}"
                );
            }
            let acks: Vec<Value> = msgs
                .iter()
                .map(|m| json!({"transactionId": m["transactionId"], "partitionId": m["partitionId"], "leaseId": m["leaseId"], "status": "completed"}))
                .collect();
            assert_eq!(
                c.post("/api/v1/ack/batch", &json!({"acknowledgments": acks}))
                    .await
                    .unwrap()
                    .status,
                200
            );
        }
        seen.len()
    });
    for p in producers {
        p.await.unwrap();
    }

    let total = |q: &'static str| {
        let s = &s;
        async move {
            s.get(&format!("/api/v1/resources/queues/{q}"))
                .await
                .unwrap()
                .json()["totals"]["total"]
                .as_i64()
                .unwrap()
        }
    };
    until(Duration::from_secs(20), "retention of `short`", || async {
        total("short").await == 0
    })
    .await;
    until(
        Duration::from_secs(20),
        "completed retention of `done`",
        || async { total("done").await == 2 },
    )
    .await;
    // The emptied partition goes too (its queue keeps Default).
    until(
        Duration::from_secs(20),
        "empty partition cleanup",
        || async {
            let q = s
                .get("/api/v1/resources/queues/short")
                .await
                .unwrap()
                .json();
            q["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["name"] != "gone")
        },
    )
    .await;
    assert_eq!(
        consumer.await.unwrap(),
        200,
        "traffic was served exactly once"
    );
    until(
        Duration::from_secs(20),
        "completed retention of the traffic queue",
        || async { total("busy").await == 0 },
    )
    .await;
    assert_eq!(total("kept").await, 1, "retention is opt-in");
    let rest = s.pop("/api/v1/pop/queue/done?batch=10").await;
    assert_eq!(data_of(&rest), [json!(2), json!(3)]);
    // A push to the removed partition re-creates it.
    assert_eq!(
        s.try_push("short", "gone", &[json!("again")]).await.status,
        201
    );
    assert_eq!(
        s.pop("/api/v1/pop/queue/short/partition/gone").await[0]["data"],
        "again"
    );
}

#[tokio::test]
async fn delayed_processing_window_buffer_and_lease_time_take_effect() {
    let s = Server::start("opt_timing", &[]).await;
    s.configure("later", json!({"delayedProcessing": 1})).await;
    s.configure("quiet", json!({"windowBuffer": 1})).await;
    s.configure("short-lease", json!({"leaseTime": 1})).await;
    // Taken before the push: the message is created after this, so a delivery that respects
    // delayedProcessing comes at least a second after it.
    let before_push = Instant::now();
    s.try_push("later", "p", &[json!("d")]).await;
    s.try_push("quiet", "p", &[json!("w1"), json!("w2")]).await;
    s.try_push("short-lease", "p", &[json!("l")]).await;

    // Not yet: the message is younger than delayedProcessing, the partition not quiet for
    // windowBuffer.
    assert!(s.pop("/api/v1/pop/queue/later").await.is_empty());
    assert!(s.pop("/api/v1/pop/queue/quiet?batch=10").await.is_empty());
    let leased = s.pop("/api/v1/pop/queue/short-lease").await;
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0]["retryCount"], 0);

    s.pop_within(Duration::from_secs(5), "/api/v1/pop/queue/later")
        .await;
    assert!(before_push.elapsed() >= Duration::from_secs(1));
    // Each of the three becomes available at its own moment (its push, its last push, its
    // pop + 1 s): poll each until it comes.
    let w = s
        .pop_within(Duration::from_secs(5), "/api/v1/pop/queue/quiet?batch=10")
        .await;
    assert_eq!(w.len(), 2, "the whole backlog once the partition is quiet");
    // The lease of one second ran out without an ack: delivered again, counted as a failure.
    let again = s
        .pop_within(Duration::from_secs(5), "/api/v1/pop/queue/short-lease")
        .await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["transactionId"], leased[0]["transactionId"]);
    assert_eq!(again[0]["retryCount"], 1);
    assert_ne!(again[0]["leaseId"], leased[0]["leaseId"]);
    // The first holder's lease is dead: its ack is refused.
    let r = s
        .post(
            "/api/v1/ack",
            &json!({"transactionId": leased[0]["transactionId"], "partitionId": leased[0]["partitionId"],
                    "leaseId": leased[0]["leaseId"], "status": "completed"}),
        )
        .await;
    assert_eq!(r.json()[0]["success"], false, "{}", r.json());
    assert!(r.json()[0]["error"].as_str().unwrap().contains("lease"));
}

/// Every file of a buffer directory (its quarantine included), concatenated.
fn buffer_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(buffer_bytes(&path));
        } else {
            all.extend(std::fs::read(path).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_pushes_are_sealed_on_disk_and_stored_encrypted_on_replay() {
    let db = queen_wire::embedded::test_config("opt_encryption_buffer")
        .await
        .unwrap();
    let dir = support::buffer_dir("encbuf");
    let s = Server::start_on(&db, dir.clone(), false, &[("QUEEN_ENCRYPTION_KEY", KEY)]).await;
    s.configure("sealed", json!({"encryptionEnabled": true}))
        .await;
    let r = s
        .post("/api/v1/system/maintenance", &json!({"enabled": true}))
        .await;
    assert_eq!(r.json()["enabled"], true);
    let r = s
        .try_push(
            "sealed",
            "part-x",
            &[json!({"card": "4111-1111"}), json!({"n": 2})],
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()[0]["status"], "buffered");
    // Acknowledged means fsynced: the records are on disk now, and nothing of them is readable.
    let on_disk = buffer_bytes(&dir);
    assert!(!on_disk.is_empty());
    for plain in ["4111-1111", "sealed", "part-x"] {
        assert!(
            !contains(&on_disk, plain),
            "{plain:?} in plaintext in the buffer"
        );
    }
    s.kill();

    // A server that cannot open them refuses to start, and says why; the records stay.
    let other = KEY.replace('8', "9");
    // (A previous key alone is a configuration error of its own.)
    for env in [
        &[("QUEEN_ENCRYPTION_KEY", other.as_str())][..],
        &[],
        &[("QUEEN_ENCRYPTION_KEY_PREVIOUS", KEY)],
    ] {
        let (status, stderr) = Server::refused_start(&db, &dir, env);
        assert!(!status.success());
        assert!(stderr.contains("QUEEN_ENCRYPTION_KEY"), "{stderr}");
    }
    assert_eq!(
        buffer_bytes(&dir),
        on_disk,
        "the refused starts left the buffer alone"
    );

    // With the key they were written with (here as the previous key of a rotation), they are
    // replayed and stored as ciphertext.
    let s = Server::start_unready(
        &db,
        dir,
        &[
            ("QUEEN_ENCRYPTION_KEY", other.as_str()),
            ("QUEEN_ENCRYPTION_KEY_PREVIOUS", KEY),
        ],
    )
    .await;
    s.post("/api/v1/system/maintenance", &json!({"enabled": false}))
        .await;
    let got = s
        .pop_within(Duration::from_secs(5), "/api/v1/pop/queue/sealed?batch=10")
        .await;
    assert_eq!(
        data_of(&got),
        [json!({"card": "4111-1111"}), json!({"n": 2})]
    );
    assert_eq!(
        db_payload_columns(&db).await,
        vec![(true, true), (true, true)],
        "replayed into the queue as ciphertext"
    );
}
