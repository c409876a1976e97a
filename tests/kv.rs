//! The key/value store, locks and timers (`/api/v1/kv`, `/locks`, `/timers`) end to end: the
//! real binary, a real PostgreSQL. Queen's client runs its own tests of them in
//! `python_compat.rs`; these count what concurrency, repeated fires and hostile input must not
//! break.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use queen_wire::{Client, Connection};
use serde_json::{Value, json};
use support::Server;

const NS: &str = "kv-tests";

/// The results of a call of `route` (`kv`, `locks`) with `ops`, which must answer 200.
async fn call(s: &Server, route: &str, ops: Value) -> Vec<Value> {
    s.post(&format!("/api/v1/{route}"), &json!({ "operations": ops }))
        .await
        .expect(200)["results"]
        .as_array()
        .unwrap()
        .clone()
}

async fn kv(s: &Server, ops: Value) -> Vec<Value> {
    call(s, "kv", ops).await
}

async fn locks(s: &Server, ops: Value) -> Vec<Value> {
    call(s, "locks", ops).await
}

/// Concurrent writers of one key are judged one after the other: exactly one `putIfAbsent`
/// wins, a bounded counter admits exactly its bound, and batches that lock the same keys in
/// opposite orders never deadlock.
#[tokio::test]
async fn concurrent_writers_are_judged_one_after_the_other() {
    let s = Server::start("kv_concurrency", &[]).await;

    let claims = join_all((0..40).map(|i| {
        let s = &s;
        async move {
            kv(
                s,
                json!([{"op": "putIfAbsent", "ns": NS, "key": "claim", "value": {"by": i},
                        "ttlSeconds": 60}]),
            )
            .await
            .remove(0)
        }
    }))
    .await;
    let winners: Vec<&Value> = claims.iter().filter(|r| r["applied"] == true).collect();
    assert_eq!(winners.len(), 1, "{claims:?}");
    for r in claims.iter().filter(|r| r["applied"] == false) {
        assert_eq!(r["reason"], "exists");
        assert_eq!(r["value"], winners[0]["value"]);
        assert_eq!(r["version"], winners[0]["version"]);
    }

    // 200 increments against a ceiling of 150: exactly 150 admitted, none spent past it.
    let admitted = join_all((0..200).map(|_| {
        let s = &s;
        async move {
            kv(
                s,
                json!([{"op": "incr", "ns": NS, "key": "quota", "delta": 1, "max": 150,
                        "forever": true}]),
            )
            .await
            .remove(0)["applied"]
                == true
        }
    }))
    .await;
    assert_eq!(admitted.iter().filter(|a| **a).count(), 150);
    let got = kv(&s, json!([{"op": "get", "ns": NS, "key": "quota"}])).await;
    assert_eq!(got[0]["value"], 150);

    // Two keys written in opposite orders by concurrent batches.
    let batches = join_all((0..40).map(|i| {
        let s = &s;
        let (a, b) = if i % 2 == 0 { ("x", "y") } else { ("y", "x") };
        async move {
            s.post(
                "/api/v1/kv",
                &json!({"operations": [
                    {"op": "incr", "ns": NS, "key": a, "forever": true},
                    {"op": "incr", "ns": NS, "key": b, "forever": true},
                ]}),
            )
            .await
            .status
        }
    }))
    .await;
    assert!(batches.iter().all(|st| *st == 200), "{batches:?}");
    let got = kv(&s, json!([{"op": "getMany", "ns": NS, "keys": ["x", "y"]}])).await;
    let rows = got[0]["rows"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["value"] == 40), "{rows:?}");
}

/// An operation marked `required` that does not apply rolls back everything before it, and
/// says which and why; without `required` the same refusal is only that operation's answer.
#[tokio::test]
async fn a_required_refusal_rolls_the_whole_batch_back() {
    let s = Server::start("kv_required", &[]).await;
    let lock = kv(
        &s,
        json!([{"op": "put", "ns": NS, "key": "lock", "value": "me", "ttlSeconds": 60}]),
    )
    .await;
    let version = lock[0]["version"].as_i64().unwrap();

    let r = s
        .post(
            "/api/v1/kv",
            &json!({"operations": [
                {"op": "put", "ns": NS, "key": "step", "value": 1, "forever": true},
                {"op": "incr", "ns": NS, "key": "steps", "forever": true},
                {"op": "check", "ns": NS, "key": "lock", "expect": version + 1000, "required": true},
            ]}),
        )
        .await;
    r.assert_error(409, "kv_precondition_failed");
    assert_eq!(r.json()["reason"], "version");
    let got = kv(
        &s,
        json!([{"op": "getMany", "ns": NS, "keys": ["step", "steps"]}]),
    )
    .await;
    assert_eq!(got[0]["missing"], json!(["step", "steps"]));

    // The same batch with the right version, and the same refusal not required.
    let ok = kv(
        &s,
        json!([
            {"op": "put", "ns": NS, "key": "step", "value": 1, "forever": true},
            {"op": "check", "ns": NS, "key": "lock", "expect": version, "required": true},
            {"op": "check", "ns": NS, "key": "lock", "expect": 0},
        ]),
    )
    .await;
    assert_eq!(ok[0]["applied"], true);
    assert_eq!(ok[1]["applied"], true);
    assert_eq!(ok[2]["applied"], false);
    assert_eq!(ok[2]["reason"], "exists");
    assert_eq!(ok[2]["value"], "me");
}

/// Malformed batches get a 400 with a stable code (never a 500, never a partial write) while
/// innocent writers beside them lose nothing.
#[tokio::test]
async fn hostile_batches_are_refused_beside_innocent_ones() {
    let s = Server::start("kv_hostile", &[]).await;
    let long_key = "k".repeat(513);
    let big_value = "v".repeat(64 * 1024 + 1);
    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"op": "get", "ns": NS, "key": format!("k{i}")}))
        .collect();
    let hostile: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "invalid_json"),
        (b"{\"operations\": 5}".to_vec(), 400, "kv_bad_request"),
        (json!({"operations": [5]}).to_string().into_bytes(), 400, "kv_bad_request"),
        (json!({"operations": [{"op": "drop", "ns": NS, "key": "k"}]}).to_string().into_bytes(), 400, "kv_bad_request"),
        (json!({"operations": [{"op": "get", "ns": "a b", "key": "k"}]}).to_string().into_bytes(), 400, "kv_bad_request"),
        (json!({"operations": [{"op": "get", "ns": NS, "key": long_key}]}).to_string().into_bytes(), 400, "kv_bad_request"),
        (br#"{"operations": [{"op": "get", "ns": "n", "key": "a\u0000b"}]}"#.to_vec(), 400, "invalid_string"),
        (br#"{"operations": [{"op": "put", "ns": "n", "key": "k", "value": "\u0000", "forever": true}]}"#.to_vec(), 400, "invalid_string"),
        (json!({"operations": [{"op": "put", "ns": NS, "key": "k", "value": big_value, "forever": true}]}).to_string().into_bytes(), 400, "kv_bad_request"),
        (json!({"operations": [{"op": "put", "ns": NS, "key": "k", "value": 1}]}).to_string().into_bytes(), 400, "kv_expiry_not_specified"),
        (json!({"operations": [{"op": "put", "ns": NS, "key": "k", "value": 1, "forever": true, "expect": null}]}).to_string().into_bytes(), 400, "kv_bad_request"),
        (json!({"operations": [{"op": "incr", "ns": NS, "key": "k", "delta": true, "forever": true}]}).to_string().into_bytes(), 400, "kv_bad_request"),
        (json!({"operations": [{"op": "incr", "ns": NS, "key": "k", "delta": 1e300, "forever": true}, {"op": "incr", "ns": NS, "key": "k", "delta": "1", "forever": true}]}).to_string().into_bytes(), 400, "kv_bad_request"),
        (json!({"operations": too_many}).to_string().into_bytes(), 400, "kv_bad_request"),
    ];
    let innocent = join_all((0..60).map(|_| {
        let s = &s;
        async move {
            kv(
                s,
                json!([{"op": "incr", "ns": NS, "key": "innocent", "forever": true}]),
            )
            .await
            .remove(0)["applied"]
                == true
        }
    }));
    let refused = join_all(hostile.iter().map(|(body, status, code)| {
        let s = &s;
        async move {
            let r = s.post_raw("/api/v1/kv", body).await;
            r.assert_error(*status, code);
        }
    }));
    let (innocent, _) = tokio::join!(innocent, refused);
    assert!(innocent.iter().all(|a| *a));
    let got = kv(
        &s,
        json!([{"op": "getMany", "ns": NS, "keys": ["innocent", "k"]}]),
    )
    .await;
    assert_eq!(got[0]["rows"][0]["value"], 60);
    assert_eq!(
        got[0]["missing"],
        json!(["k"]),
        "a refused batch wrote nothing"
    );
}

/// A key past its expiry is absent at once, and the server deletes its row later (the prune
/// runs on the retention interval, here 100 ms).
#[tokio::test]
async fn expired_keys_are_absent_at_once_and_pruned_later() {
    let (db, s) = Server::start_with_db("kv_expiry", &[("RETENTION_INTERVAL", "100")]).await;
    kv(
        &s,
        json!([
            {"op": "put", "ns": NS, "key": "short", "value": 1, "ttlSeconds": 1},
            {"op": "put", "ns": NS, "key": "kept", "value": 2, "forever": true},
        ]),
    )
    .await;
    let c = Connection::connect(&db).await.unwrap();
    // Poll, bounded: absent through the API once past the expiry, then gone from the table.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = kv(&s, json!([{"op": "get", "ns": NS, "key": "short"}])).await;
        if got[0]["found"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "the key never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let keys = stored_keys(&c).await;
        if keys == ["kept"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the expired row was never pruned: {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stored_keys(c: &Connection) -> Vec<String> {
    c.query_sql("SELECT key FROM queen.kv ORDER BY key", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String>("key").unwrap())
        .collect()
}

/// Key/value operations ride on a transaction: a lost `required` gate rolls back its pushes
/// and answers where and why (in the flat index space: push items, acks, then the riders);
/// malformed riders refuse the whole transaction.
#[tokio::test]
async fn riders_share_the_transaction_and_malformed_riders_refuse_it() {
    let s = Server::start("kv_riders", &[]).await;
    let bundle = |n: i64| {
        json!({
            "operations": [{"type": "push", "items": [
                {"queue": "riders", "payload": {"n": n}},
                {"queue": "riders", "payload": {"n": n + 1}},
            ]}],
            "kv": [
                {"op": "incr", "ns": NS, "key": "bundles", "forever": true},
                {"op": "putIfAbsent", "ns": NS, "key": "gate", "value": n, "ttlSeconds": 60,
                 "required": true},
            ],
        })
    };
    let first = s.post("/api/v1/transaction", &bundle(0)).await.expect(200);
    assert_eq!(first["success"], true, "{first}");
    let kinds: Vec<&str> = first["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["push", "push", "kv", "kv"]);
    assert_eq!(first["results"][3]["index"], 3);

    let second = s.post("/api/v1/transaction", &bundle(10)).await.expect(200);
    assert_eq!(second["success"], false);
    assert_eq!(second["reason"], "kv_precondition");
    assert_eq!(second["kvReason"], "exists");
    assert_eq!(second["failedIndex"], 3);
    assert_eq!(second["value"], 0);
    // Nothing of the second bundle: two messages, one counted bundle.
    let popped = s
        .get("/api/v1/pop/queue/riders?batch=10&wait=false")
        .await
        .unwrap()
        .json();
    let ns: Vec<&Value> = popped["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["data"]["n"])
        .collect();
    assert_eq!(ns, [&json!(0), &json!(1)]);
    let got = kv(&s, json!([{"op": "get", "ns": NS, "key": "bundles"}])).await;
    assert_eq!(got[0]["value"], 1);

    let timers = s
        .post(
            "/api/v1/transaction",
            &json!({
                "operations": [{"type": "push", "items": [{"queue": "riders", "payload": 1}]}],
                "timers": [{"op": "schedule", "queue": "riders", "timerKey": "t",
                            "payload": "MQ==", "delayMs": 0, "deliverAt": "now"}],
            }),
        )
        .await;
    timers.assert_error(400, "timers_bad_request");
    let prefix = s
        .post(
            "/api/v1/transaction",
            &json!({"operations": [], "kv": [{"op": "getPrefix", "ns": NS, "prefix": "g"}]}),
        )
        .await;
    prefix.assert_error(400, "kv_bad_request");
    let after = s
        .get("/api/v1/pop/queue/riders?batch=10&wait=false")
        .await
        .unwrap();
    assert_eq!(after.status, 204, "a refused bundle pushed nothing");
}

/// A semaphore of 5 grants exactly 5 of 50 concurrent acquires, one per slot; a guard of a
/// released permit stops the transaction it rides on; malformed lock operations are named
/// 400s.
#[tokio::test]
async fn a_semaphore_grants_exactly_its_limit_and_its_guard_fences() {
    let s = Server::start("kv_locks", &[]).await;
    let got = join_all((0..50).map(|i| {
        let s = &s;
        async move {
            locks(
                s,
                json!([{"op": "acquire", "name": "crowd", "ttlSeconds": 60, "limit": 5,
                        "owner": format!("o{i}")}]),
            )
            .await
            .remove(0)
        }
    }))
    .await;
    let mut slots: Vec<i64> = got
        .iter()
        .filter(|r| r["acquired"] == true)
        .map(|r| r["slot"].as_i64().unwrap())
        .collect();
    slots.sort_unstable();
    assert_eq!(slots, [0, 1, 2, 3, 4], "{got:?}");
    let held = locks(&s, json!([{"op": "get", "name": "crowd"}])).await;
    assert_eq!(held[0]["holders"].as_array().unwrap().len(), 5);

    // The holder of slot 0 releases; its guard no longer holds.
    let first = got
        .iter()
        .find(|r| r["acquired"] == true && r["slot"] == 0)
        .unwrap();
    let guard = first["guard"].clone();
    let guarded = |guard: &Value| {
        json!({"operations": [{"type": "push", "items": [{"queue": "fenced", "payload": 1}]}],
               "kv": [guard]})
    };
    let ok = s
        .post("/api/v1/transaction", &guarded(&guard))
        .await
        .expect(200);
    assert_eq!(ok["success"], true, "{ok}");
    let released = locks(
        &s,
        json!([{"op": "release", "name": "crowd", "token": first["token"], "slot": 0}]),
    )
    .await;
    assert_eq!(released[0]["released"], true);
    let fenced = s
        .post("/api/v1/transaction", &guarded(&guard))
        .await
        .expect(200);
    assert_eq!(fenced["success"], false);
    assert_eq!(fenced["kvReason"], "absent");
    let again = locks(
        &s,
        json!([{"op": "release", "name": "crowd", "token": first["token"], "slot": 0}]),
    )
    .await;
    assert_eq!(again[0]["released"], false);
    assert_eq!(again[0]["reason"], "lost");

    for bad in [
        json!({"operations": [{"op": "acquire", "name": "a#b", "ttlSeconds": 5}]}),
        json!({"operations": [{"op": "acquire", "name": "a"}]}),
        json!({"operations": [{"op": "renew", "name": "a", "ttlSeconds": 5}]}),
        json!({"operations": [{"op": "acquire", "name": "a", "ttlSeconds": 5, "limit": 5000}]}),
        json!({"operations": "acquire"}),
    ] {
        s.post("/api/v1/locks", &bad)
            .await
            .assert_error(400, "lock_bad_request");
    }
}

/// Base64 of a JSON document, as timer payloads travel.
fn b64(json: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(json.to_string())
}

/// Each timer is delivered once: 200 due timers fired by two servers sharing the database
/// arrive once each, with the transactionId and message id promised at schedule time; a timer
/// whose earlier fire pushed but did not delete it (a server stopped between the two) is not
/// delivered twice.
#[tokio::test]
async fn each_timer_is_delivered_once_with_the_ids_promised() {
    let db = queen_wire::embedded::test_config("kv_timers")
        .await
        .unwrap();
    let a = Server::start_on(&db, support::buffer_dir("kv_timers_a"), false, &[]).await;
    let b = Server::start_on(&db, support::buffer_dir("kv_timers_b"), false, &[]).await;
    // The earlier fire of timer 0 pushed its message (same txn), then its server stopped.
    a.post(
        "/api/v1/push",
        &json!({"items": [{"queue": "fired", "payload": {"n": 0}, "transactionId": "txn-0"}]}),
    )
    .await
    .expect(201);
    let mut promised = std::collections::HashMap::new();
    for chunk in (0..200).collect::<Vec<i64>>().chunks(100) {
        let ops: Vec<Value> = chunk
            .iter()
            .map(|n| {
                json!({"op": "schedule", "queue": "fired", "timerKey": format!("t{n}"),
                       "payload": b64(&json!({"n": n})), "delayMs": -1,
                       "txn": format!("txn-{n}")})
            })
            .collect();
        let r = a
            .post("/api/v1/timers", &json!({ "operations": ops }))
            .await
            .expect(200);
        for t in r["results"].as_array().unwrap() {
            assert_eq!(t["status"], "scheduled", "{t}");
            promised.insert(
                t["txn"].as_str().unwrap().to_owned(),
                t["messageId"].clone(),
            );
        }
    }
    let c = Connection::connect(&db).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = c
            .query_sql("SELECT count(*) AS n FROM queen.timers", &[])
            .await
            .unwrap()[0]
            .get::<i64>("n")
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} timers never fired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen = std::collections::HashMap::new();
    loop {
        let r = b
            .get("/api/v1/pop/queue/fired?batch=100&wait=false&autoAck=true")
            .await
            .unwrap();
        if r.status == 204 {
            break;
        }
        for m in r.json()["messages"].as_array().unwrap() {
            let txn = m["transactionId"].as_str().unwrap().to_owned();
            assert!(
                seen.insert(txn, m["id"].clone()).is_none(),
                "delivered twice: {m}"
            );
        }
    }
    assert_eq!(seen.len(), 200);
    for (txn, id) in &seen {
        if txn != "txn-0" {
            assert_eq!(&promised[txn], id, "the message id promised for {txn}");
        }
    }
}

/// On a server with an encryption key a timer's payload waits sealed (peek says so and shows
/// the envelope), and is delivered as it was sent.
#[tokio::test]
async fn timer_payloads_wait_sealed_on_a_server_with_a_key() {
    let key = "7c".repeat(32);
    let (db, s) = Server::start_with_db(
        "kv_timers_sealed",
        &[("QUEEN_ENCRYPTION_KEY", key.as_str())],
    )
    .await;
    let payload = json!({"card": "4111-1111"});
    let later = json!({"op": "schedule", "queue": "sealed", "timerKey": "later",
                       "payload": b64(&payload), "delayMs": 600_000});
    s.post("/api/v1/timers", &json!({ "operations": [later] }))
        .await
        .expect(200);
    let peek = s.get("/api/v1/timers/sealed/later").await.unwrap().json();
    assert_eq!(peek["encrypted"], true, "{peek}");
    assert_ne!(peek["payload"], b64(&payload));
    let c = Connection::connect(&db).await.unwrap();
    let stored = c
        .query_sql(
            "SELECT payload IS NULL AND sealed IS NOT NULL AS sealed FROM queen.timers",
            &[],
        )
        .await
        .unwrap();
    assert!(stored[0].get::<bool>("sealed").unwrap());

    let now = json!({"op": "schedule", "queue": "sealed", "timerKey": "now",
                     "payload": b64(&payload), "delayMs": 0});
    s.post("/api/v1/timers", &json!({ "operations": [now] }))
        .await
        .expect(200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = s
            .get("/api/v1/pop/queue/sealed?batch=1&wait=false")
            .await
            .unwrap();
        if r.status == 200 {
            assert_eq!(r.json()["messages"][0]["data"], payload);
            break;
        }
        assert!(Instant::now() < deadline, "the timer never fired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// While pushes go to the disk buffer (push maintenance), due timers wait rather than overtake
/// them, and fire once it ends. The fire runs every 10 ms here: a second of waiting is a
/// hundred fires that must all hold back.
#[tokio::test]
async fn timers_wait_while_pushes_go_to_the_buffer() {
    let s = Server::start("kv_timers_maintenance", &[("TIMER_INTERVAL", "10")]).await;
    s.post("/api/v1/system/maintenance", &json!({"enabled": true}))
        .await
        .expect(200);
    let op = json!({"op": "schedule", "queue": "held", "timerKey": "t",
                    "payload": b64(&json!(1)), "delayMs": 0});
    s.post("/api/v1/timers", &json!({ "operations": [op] }))
        .await
        .expect(200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let peek = s.get("/api/v1/timers/held/t").await.unwrap().json();
    assert_eq!(peek["found"], true, "a timer fired during push maintenance");
    s.post("/api/v1/system/maintenance", &json!({"enabled": false}))
        .await
        .expect(200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.get("/api/v1/timers/held/t").await.unwrap().json()["found"] == true {
        assert!(
            Instant::now() < deadline,
            "the timer never fired after maintenance"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
