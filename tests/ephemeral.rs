//! Ephemeral queues (`/api/v1/ephemeral/…`) end to end, on the real binary: what concurrency,
//! hostile input, running leases, a restart and a database outage must not break. Queen's
//! Python client drives every verb in `tests/compat/test_ephemeral.py` (`python_compat.rs`).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use support::{Server, until};

async fn push(s: &Server, queue: &str, partition: &str, payloads: &[Value]) {
    let messages: Vec<Value> = payloads.iter().map(|p| json!({"payload": p})).collect();
    let r = s
        .post(
            "/api/v1/ephemeral/push",
            &json!({"queue": queue, "partition": partition, "messages": messages}),
        )
        .await
        .expect(201);
    assert_eq!(r["pushed"], payloads.len());
}

async fn pop(s: &Server, query: &str) -> Vec<Value> {
    let r = s
        .get(&format!("/api/v1/ephemeral/pop?{query}"))
        .await
        .unwrap()
        .expect(200);
    r["messages"].as_array().unwrap().clone()
}

/// Acks `messages` with `status`; answers the outcomes.
async fn ack(
    s: &Server,
    queue: &str,
    group: Option<&str>,
    msgs: &[Value],
    status: &str,
) -> Vec<String> {
    let acks: Vec<Value> = msgs
        .iter()
        .map(|m| json!({"id": m["id"], "status": status}))
        .collect();
    let r = s
        .post(
            "/api/v1/ephemeral/ack",
            &json!({"queue": queue, "group": group, "acks": acks}),
        )
        .await
        .expect(200);
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["outcome"].as_str().unwrap().to_owned())
        .collect()
}

async fn depth(s: &Server, queue: &str) -> Value {
    s.get(&format!("/api/v1/ephemeral/queues/{queue}/depth"))
        .await
        .unwrap()
        .expect(200)
}

/// Eight consumers of one group pop and ack 1,000 messages over four partitions at once:
/// every message is delivered to the group exactly once, in order within its partition; a
/// second group, popping beside them, gets all 1,000 too.
#[tokio::test]
async fn competing_consumers_get_each_message_once_and_a_second_group_gets_all() {
    let s = Server::start("eph_compete", &[]).await;
    let q = "compete";
    pop(&s, "queue=compete&group=workers").await;
    pop(&s, "queue=compete&group=audit").await;
    for p in 0..4 {
        let payloads: Vec<Value> = (0..250).map(|i| json!({"p": p, "i": i})).collect();
        push(&s, q, &format!("p{p}"), &payloads).await;
    }
    let consumer = |group: &'static str| {
        let s = &s;
        async move {
            let mut got: Vec<Value> = Vec::new();
            loop {
                let msgs = pop(s, &format!("queue=compete&group={group}&batch=13")).await;
                if msgs.is_empty() {
                    return got;
                }
                let outcomes = ack(s, q, Some(group), &msgs, "completed").await;
                assert!(outcomes.iter().all(|o| o == "acked"), "{outcomes:?}");
                got.extend(msgs.into_iter().map(|m| m["payload"].clone()));
            }
        }
    };
    let mut runs: Vec<_> = (0..8).map(|_| consumer("workers")).collect();
    runs.push(consumer("audit"));
    let results = join_all(runs).await;
    let (audit, workers) = results.split_last().unwrap();
    let mut seen: HashMap<(u64, u64), usize> = HashMap::new();
    for batch in workers {
        let mut last: HashMap<u64, u64> = HashMap::new();
        for m in batch {
            let (p, i) = (m["p"].as_u64().unwrap(), m["i"].as_u64().unwrap());
            if let Some(prev) = last.insert(p, i) {
                assert!(i > prev, "one consumer saw partition {p} out of order");
            }
            *seen.entry((p, i)).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 1000);
    assert!(seen.values().all(|&n| n == 1), "a message delivered twice");
    assert_eq!(audit.len(), 1000, "the second group gets everything");
    let d = depth(&s, q).await;
    assert_eq!(
        d["depth"], 0,
        "every group passed every message: nothing held {d}"
    );
    assert_eq!(
        s.get("/api/v1/ephemeral/queues").await.unwrap().expect(200)["serverBytes"],
        0
    );
}

/// Malformed, oversized and hostile calls are refused with `400 ephemeral_bad_request` (and
/// never a 500) while a producer and a consumer beside them lose nothing.
#[tokio::test]
async fn hostile_calls_are_refused_and_harm_no_one_else() {
    let s = Server::start("eph_hostile", &[]).await;
    let innocent = async {
        let mut got = 0;
        for round in 0..20 {
            let payloads: Vec<Value> = (0..10).map(|i| json!(round * 10 + i)).collect();
            push(&s, "calm", "p", &payloads).await;
            let msgs = pop(&s, "queue=calm&batch=100").await;
            ack(&s, "calm", None, &msgs, "completed").await;
            got += msgs.len();
        }
        got
    };
    let many: Vec<Value> = (0..10_001).map(|_| json!({"payload": 1})).collect();
    let hostile = async {
        let bodies: Vec<(&str, Vec<u8>)> = vec![
            ("push", b"{\"queue\":".to_vec()),
            ("push", b"[1,2]".to_vec()),
            ("push", b"{\"queue\":\"a\",\"messages\":[{}]}".to_vec()),
            ("push", b"{\"queue\":\"a\\u0001\",\"messages\":[]}".to_vec()),
            (
                "push",
                b"{\"queue\":\"\",\"messages\":[{\"payload\":1}]}".to_vec(),
            ),
            (
                "push",
                format!("{{\"queue\":\"{}\",\"messages\":[]}}", "x".repeat(300)).into_bytes(),
            ),
            (
                "push",
                json!({"queue": "a", "messages": many})
                    .to_string()
                    .into_bytes(),
            ),
            (
                "ack",
                b"{\"queue\":\"a\",\"acks\":[{\"status\":\"completed\"}]}".to_vec(),
            ),
            (
                "ack",
                b"{\"queue\":\"a\",\"group\":\"\\u0002\",\"acks\":[]}".to_vec(),
            ),
            (
                "configure",
                b"{\"queue\":\"a\",\"options\":{\"maxLength\":-1}}".to_vec(),
            ),
            (
                "configure",
                b"{\"queue\":\"a\",\"options\":{\"retention\":5}}".to_vec(),
            ),
            ("configure", b"{\"queue\":\"a\",\"options\":[1]}".to_vec()),
            ("reset", b"{}".to_vec()),
        ];
        for (route, body) in bodies {
            let r = s
                .post_raw(&format!("/api/v1/ephemeral/{route}"), &body)
                .await;
            r.assert_error(400, "ephemeral_bad_request");
        }
        for query in ["", "queue=a&batch=x", "queue=a%01", "queue=a&group=%02"] {
            let r = s
                .get(&format!("/api/v1/ephemeral/pop?{query}"))
                .await
                .unwrap();
            r.assert_error(400, "ephemeral_bad_request");
        }
        // Out-of-range numbers are clamped, as Queen's clients expect, not refused.
        let r = s
            .get("/api/v1/ephemeral/pop?queue=a&batch=99999999&timeout=-5&wait=true")
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        s.get("/api/v1/ephemeral/queues/a%01/depth")
            .await
            .unwrap()
            .assert_error(400, "ephemeral_bad_request");
    };
    let (got, ()) = tokio::join!(innocent, hostile);
    assert_eq!(got, 200, "the innocent consumer got every message");
}

/// A lease that runs out sends the message back (with one more attempt) and wakes a waiting
/// pop; once its retries are spent it is dropped and counted.
#[tokio::test]
async fn leases_run_out_into_redeliveries_until_the_retries_are_spent() {
    let s = Server::start("eph_leases", &[]).await;
    s.post(
        "/api/v1/ephemeral/configure",
        &json!({"queue": "leases", "options": {"leaseSeconds": 1, "retryLimit": 1}}),
    )
    .await
    .expect(201);
    push(&s, "leases", "p", &[json!("job")]).await;
    let first = pop(&s, "queue=leases").await;
    assert_eq!(first[0]["attempts"], 1);
    // Nobody acks: the waiting pop is answered when the lease runs out (1 s, a sweep later).
    let second = pop(&s, "queue=leases&wait=true&timeout=10000").await;
    assert_eq!(second.len(), 1, "redelivered within the wait");
    assert_eq!(second[0]["attempts"], 2);
    assert_eq!(second[0]["payload"], "job");
    assert_eq!(
        ack(&s, "leases", None, &first, "completed").await,
        ["unknown"]
    );
    until(
        Duration::from_secs(10),
        "the spent message to be dropped",
        || async { depth(&s, "leases").await["drops"]["retry"] == 1 },
    )
    .await;
    assert!(pop(&s, "queue=leases").await.is_empty());
}

/// A declared queue comes back after a restart with its options and no messages; an id of the
/// previous run answers `stale`.
#[tokio::test]
async fn declarations_survive_a_restart_and_messages_do_not() {
    let (db, s) = Server::start_with_db("eph_restart", &[]).await;
    s.post(
        "/api/v1/ephemeral/configure",
        &json!({"queue": "kept", "options": {"maxLength": 5, "policy": "dropOldest"}}),
    )
    .await
    .expect(201);
    push(&s, "kept", "p", &[json!(1), json!(2)]).await;
    let old = pop(&s, "queue=kept").await;
    drop(s);

    let s = Server::start_on(&db, support::buffer_dir("eph_restart"), false, &[]).await;
    let listed = s.get("/api/v1/ephemeral/queues").await.unwrap().expect(200);
    let row = &listed["queues"][0];
    assert_eq!(row["queue"], "kept", "{listed}");
    assert_eq!(row["tier"], "declared");
    assert_eq!(row["options"]["maxLength"], 5);
    assert_eq!(row["options"]["policy"], "dropOldest");
    assert_eq!(row["depth"], 0);
    assert_eq!(ack(&s, "kept", None, &old, "completed").await, ["stale"]);
    let gone = s.delete("/api/v1/ephemeral/queue/kept").await.expect(200);
    assert_eq!(
        gone,
        json!({"queue": "kept", "deleted": true, "declared": true})
    );
}

/// Push, pop and ack never touch the database: they work on a server whose database is
/// unreachable, where only `configure` and `delete` (the stored declarations) answer 503.
#[tokio::test]
async fn push_pop_and_ack_work_while_the_database_is_down() {
    let nowhere = queen_wire::Config::parse(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=1",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    ))
    .unwrap();
    let s = Server::start_unready(&nowhere, support::buffer_dir("eph_down"), &[]).await;
    assert_eq!(s.get("/ready").await.unwrap().status, 503);
    push(&s, "offline", "p", &[json!("still works")]).await;
    let got = pop(&s, "queue=offline").await;
    assert_eq!(got[0]["payload"], "still works");
    assert_eq!(ack(&s, "offline", None, &got, "completed").await, ["acked"]);
    let r = s
        .post(
            "/api/v1/ephemeral/configure",
            &json!({"queue": "offline", "options": {}}),
        )
        .await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
}

/// The server's byte budget refuses a push past it with `503 ephemeral_unavailable`, and a
/// queue's `reject` bound with `429 queue_full`; nothing of a refused push is kept.
#[tokio::test]
async fn bounds_refuse_whole_pushes() {
    let s = Server::start("eph_bounds", &[("EPHEMERAL_MAX_BYTES", "1100")]).await;
    let big: Vec<Value> = (0..3).map(|_| json!("x".repeat(400))).collect();
    let messages: Vec<Value> = big.iter().map(|p| json!({"payload": p})).collect();
    let r = s
        .post(
            "/api/v1/ephemeral/push",
            &json!({"queue": "b", "messages": messages}),
        )
        .await;
    r.assert_error(503, "ephemeral_unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    push(&s, "b", "p", &big[..2]).await;
    s.post(
        "/api/v1/ephemeral/configure",
        &json!({"queue": "small", "options": {"maxLength": 1}}),
    )
    .await
    .expect(201);
    push(&s, "small", "p", &[json!(1)]).await;
    let r = s
        .post(
            "/api/v1/ephemeral/push",
            &json!({"queue": "small", "messages": [{"payload": 2}]}),
        )
        .await;
    r.assert_error(429, "queue_full");
    let d = depth(&s, "small").await;
    assert_eq!(d["depth"], 1);
    assert_eq!(d["tier"], "declared");
    let m = s.get("/metrics").await.unwrap().expect(200);
    assert_eq!(m["ephemeral"]["queues"], 2, "{m}");
    assert_eq!(
        m["ephemeral"]["bytes"],
        2 * (402 + 64) + (1 + 64),
        "two 400-letter strings and a `1`, and 64 bytes a message"
    );
    assert_eq!(m["ephemeral"]["maxBytes"], 1100);
}

/// Two servers on one database: a declaration made on one reaches the other (its periodic
/// read of the stored declarations) and a delete on one is undone there too; their messages
/// stay apart, and an id of one answers `stale` on the other.
#[tokio::test]
async fn servers_share_declarations_but_not_messages() {
    let db = queen_wire::embedded::test_config("eph_two").await.unwrap();
    let a = Server::start_on(&db, support::buffer_dir("eph_two_a"), false, &[]).await;
    let b = Server::start_on(&db, support::buffer_dir("eph_two_b"), false, &[]).await;
    a.post(
        "/api/v1/ephemeral/configure",
        &json!({"queue": "shared", "options": {"maxLength": 7}}),
    )
    .await
    .expect(201);
    let tier_on_b = || async {
        let listed = b.get("/api/v1/ephemeral/queues").await.unwrap().expect(200);
        listed["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["queue"] == "shared")
            .map(|q| (q["tier"].clone(), q["options"]["maxLength"].clone()))
    };
    until(
        Duration::from_secs(15),
        "the declaration on the second server",
        || async { tier_on_b().await == Some((json!("declared"), json!(7))) },
    )
    .await;

    push(&a, "shared", "p", &[json!("on a")]).await;
    assert!(
        pop(&b, "queue=shared").await.is_empty(),
        "messages stay on their server"
    );
    let on_a = pop(&a, "queue=shared").await;
    assert_eq!(on_a[0]["payload"], "on a");
    assert_eq!(ack(&b, "shared", None, &on_a, "completed").await, ["stale"]);
    assert_eq!(ack(&a, "shared", None, &on_a, "completed").await, ["acked"]);

    a.delete("/api/v1/ephemeral/queue/shared").await.expect(200);
    until(
        Duration::from_secs(15),
        "the second server to drop the declaration",
        || async { tier_on_b().await.is_none_or(|(tier, _)| tier == "implicit") },
    )
    .await;
}
