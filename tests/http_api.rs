//! End-to-end tests of the HTTP API: the real binary, a real PostgreSQL, exact statuses,
//! shapes and error codes.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, push_body};

#[tokio::test]
async fn push_pop_ack_with_the_contract_shapes() {
    let s = Server::start("e2e_basic", &[]).await;
    let trace = "0193b0a2-1111-7000-8000-000000000001";
    let r = s
        .post(
            "/api/v1/push",
            &json!({"items": [
                {"queue": "orders", "partition": "eu", "payload": {"n": 1}, "transactionId": "t-1", "traceId": trace},
                {"queue": "orders", "partition": "eu", "payload": {"n": 2}},
                {"queue": "orders", "partition": "eu", "payload": {"n": 3}, "transactionId": "t-1"},
            ]}),
        )
        .await;
    assert_eq!(r.status, 201);
    let out = r.json();
    assert_eq!(out.as_array().unwrap().len(), 3);
    assert_eq!(out[0]["index"], 0);
    assert_eq!(out[0]["status"], "queued");
    assert_eq!(out[0]["transaction_id"], "t-1");
    assert_eq!(out[0]["trace_id"], trace);
    assert_eq!(out[0]["queueName"], "orders");
    assert_eq!(out[2]["status"], "duplicate");
    assert_eq!(out[2]["message_id"], out[0]["message_id"]);
    assert_eq!(out[2]["index"], 2, "index is the position in this request");

    let r = s
        .get("/api/v1/pop/queue/orders/partition/eu?batch=10")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let p = r.json();
    assert_eq!(p["success"], true);
    assert_eq!(p["partition"], "eu");
    assert_eq!(p["consumerGroup"], "__QUEUE_MODE__");
    assert_eq!(p["partitionsClaimed"], 1);
    let msgs = p["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["data"], json!({"n": 1}));
    assert_eq!(msgs[1]["data"], json!({"n": 2}));
    assert_eq!(msgs[0]["traceId"], trace);
    assert_eq!(msgs[0]["leaseId"], p["leaseId"]);
    assert_eq!(msgs[0]["retryCount"], 0);
    let created = msgs[0]["createdAt"].as_str().unwrap();
    assert_eq!(
        created.len(),
        "2026-04-26T10:59:28.267966Z".len(),
        "{created}"
    );
    assert!(created.ends_with('Z'));

    // Single ack of the first, then batch ack of the second (which releases the lease).
    let r = s
        .post(
            "/api/v1/ack",
            &json!({"transactionId": "t-1", "partitionId": p["partitionId"], "status": "completed", "leaseId": p["leaseId"]}),
        )
        .await;
    assert_eq!(r.status, 200);
    let a = r.json();
    assert_eq!(a[0]["success"], true);
    assert_eq!(a[0]["leaseReleased"], false);
    assert_eq!(a[0]["queueName"], "orders");
    assert_eq!(a[0]["partitionName"], "eu");
    let r = s
        .post(
            "/api/v1/ack/batch",
            &json!({"acknowledgments": [{"transactionId": msgs[1]["transactionId"], "partitionId": p["partitionId"], "status": "success"}]}),
        )
        .await;
    assert_eq!(r.json()[0]["leaseReleased"], true);
    let r = s.get("/api/v1/pop/queue/orders").await.unwrap();
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    // Unknown message: per-item failure, HTTP 200.
    let r = s
        .post(
            "/api/v1/ack",
            &json!({"transactionId": "nope", "partitionId": p["partitionId"]}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()[0]["success"], false);
    assert_eq!(r.json()[0]["error"], "Message not found (unresolvable)");
}

#[tokio::test]
async fn configure_resources_and_delete() {
    let s = Server::start("e2e_queues", &[]).await;
    let r = s
        .post(
            "/api/v1/configure",
            &json!({"queue": "billing.invoices", "options": {"leaseTime": 60, "retryLimit": 5, "priority": 3}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let c = r.json();
    assert_eq!(c["configured"], true);
    assert_eq!(c["namespace"], "billing");
    assert_eq!(c["task"], "invoices");
    assert_eq!(c["options"]["leaseTime"], 60);
    assert_eq!(c["options"]["retryLimit"], 5);
    assert_eq!(c["options"]["deadLetterQueue"], true);
    assert_eq!(c["options"].as_object().unwrap().len(), 15);
    // Options not given keep their value.
    let c = s
        .post(
            "/api/v1/configure",
            &json!({"queue": "billing.invoices", "options": {"ttl": 30}}),
        )
        .await
        .json();
    assert_eq!(
        (
            c["options"]["leaseTime"].clone(),
            c["options"]["ttl"].clone()
        ),
        (json!(60), json!(30))
    );

    s.post(
        "/api/v1/push",
        &push_body("billing.invoices", "a", &[json!(1), json!(2)]),
    )
    .await;
    let list = s.get("/api/v1/resources/queues").await.unwrap().json();
    let q = &list["queues"][0];
    assert_eq!(q["name"], "billing.invoices");
    assert_eq!(q["partitions"], 2, "Default and a");
    assert_eq!(q["messages"]["total"], 2);
    assert_eq!(q["messages"]["pending"], 2);
    let d = s
        .get("/api/v1/resources/queues/billing.invoices")
        .await
        .unwrap()
        .json();
    assert_eq!(d["totals"]["total"], 2);
    assert_eq!(d["options"]["priority"], 3);
    let ns = s.get("/api/v1/resources/namespaces").await.unwrap().json();
    assert_eq!(ns["namespaces"][0]["namespace"], "billing");
    let tasks = s.get("/api/v1/resources/tasks").await.unwrap().json();
    assert_eq!(tasks["tasks"][0]["task"], "invoices");
    let o = s.get("/api/v1/resources/overview").await.unwrap().json();
    assert_eq!(
        (o["queues"].clone(), o["messages"]["total"].clone()),
        (json!(1), json!(2))
    );

    s.get("/api/v1/resources/queues/missing")
        .await
        .unwrap()
        .assert_error(404, "not_found");
    let r = s
        .request("DELETE", "/api/v1/resources/queues/billing.invoices", None)
        .await
        .unwrap();
    assert_eq!(
        r.json(),
        json!({"deleted": true, "queue": "billing.invoices", "existed": true})
    );
    let r = s
        .request("DELETE", "/api/v1/resources/queues/billing.invoices", None)
        .await
        .unwrap();
    assert_eq!(r.json()["existed"], false);
    assert_eq!(
        s.get("/api/v1/pop/queue/billing.invoices")
            .await
            .unwrap()
            .status,
        204
    );
    // Pushing again after the delete re-creates the queue (the cached partition is not reused).
    let r = s
        .post(
            "/api/v1/push",
            &push_body("billing.invoices", "a", &[json!(3)]),
        )
        .await;
    assert_eq!(r.json()[0]["status"], "queued");
    assert_eq!(
        s.get("/api/v1/pop/queue/billing.invoices")
            .await
            .unwrap()
            .json()["messages"][0]["data"],
        3
    );
}

#[tokio::test]
async fn transaction_lease_extend_groups_and_subscriptions() {
    let s = Server::start("e2e_tx", &[]).await;
    s.post("/api/v1/push", &push_body("in", "p", &[json!("job")]))
        .await;
    let p = s
        .get("/api/v1/pop/queue/in?leaseSeconds=30")
        .await
        .unwrap()
        .json();
    let lease = p["leaseId"].as_str().unwrap().to_owned();
    let e = s
        .post(
            &format!("/api/v1/lease/{lease}/extend"),
            &json!({"seconds": 120}),
        )
        .await
        .json();
    assert_eq!(
        (e["success"].clone(), e["renewed"].clone()),
        (json!(true), json!(1))
    );
    assert!(e["newExpiresAt"].as_str().unwrap() > p["messages"][0]["createdAt"].as_str().unwrap());
    let t = s
        .post(
            "/api/v1/transaction",
            &json!({
                "operations": [
                    {"type": "ack", "transactionId": p["messages"][0]["transactionId"], "partitionId": p["partitionId"], "leaseId": lease},
                    {"type": "push", "items": [{"queue": "out", "payload": {"done": true}, "transactionId": "r-1"}]},
                ],
                "requiredLeases": [lease],
            }),
        )
        .await;
    assert_eq!(t.status, 200);
    let t = t.json();
    assert_eq!(t["success"], true, "{t}");
    assert_eq!(t["results"][0]["type"], "ack");
    assert_eq!(t["results"][1]["type"], "push");
    // The lease was released by the ack: it cannot be extended, and a retried transaction fails.
    let e = s
        .post(&format!("/api/v1/lease/{lease}/extend"), &json!({}))
        .await
        .json();
    assert_eq!(
        (e["success"].clone(), e["error"].clone()),
        (json!(false), json!("Lease not found"))
    );
    let t = s
        .post(
            "/api/v1/transaction",
            &json!({"operations": [{"type": "push", "items": [{"queue": "out", "transactionId": "r-1"}]}]}),
        )
        .await
        .json();
    assert_eq!(t["success"], false);

    // Consumer groups fan out; a `new` subscription starts at the end.
    s.post("/api/v1/push", &push_body("events", "p", &[json!(1)]))
        .await;
    for g in ["a", "b"] {
        let r = s
            .get(&format!(
                "/api/v1/pop/queue/events?consumerGroup={g}&autoAck=true"
            ))
            .await
            .unwrap();
        assert_eq!(r.json()["messages"][0]["data"], 1, "group {g}");
        assert_eq!(r.json()["leaseId"], "");
    }
    let r = s
        .get("/api/v1/pop/queue/events?consumerGroup=late&subscriptionMode=new&autoAck=true")
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    s.post("/api/v1/push", &push_body("events", "p", &[json!(2)]))
        .await;
    let r = s
        .get("/api/v1/pop/queue/events?consumerGroup=late&autoAck=true")
        .await
        .unwrap();
    assert_eq!(r.json()["messages"][0]["data"], 2);
    s.get("/api/v1/pop/queue/events?consumerGroup=x&subscriptionFrom=yesterday")
        .await
        .unwrap()
        .assert_error(400, "invalid_parameter");
}

#[tokio::test]
async fn long_poll_is_woken_by_a_push_and_released_on_disconnect() {
    let s = Server::start("e2e_longpoll", &[]).await;
    // Several concurrent long polls, each on its own partition's message.
    let mut waiters = Vec::new();
    for _ in 0..4 {
        let port = s.port;
        waiters.push(tokio::spawn(async move {
            let s2 = support::Server::client(port);
            let r = s2
                .get("/api/v1/pop/queue/lp?wait=true&timeout=20000")
                .await
                .unwrap();
            (r, Instant::now())
        }));
    }
    wait_for_waiting(&s, 4).await;
    let pushed = Instant::now();
    let items: Vec<Value> = (0..4)
        .map(|i| json!({"queue": "lp", "partition": format!("p{i}"), "payload": i}))
        .collect();
    s.post("/api/v1/push", &json!({ "items": items })).await;
    for w in waiters {
        let (r, at) = w.await.unwrap();
        assert_eq!(r.status, 200);
        assert!(
            at - pushed < Duration::from_secs(2),
            "woken by the push: {:?}",
            at - pushed
        );
    }
    // Timeout → 204.
    let t0 = Instant::now();
    let r = s
        .get("/api/v1/pop/queue/empty?wait=true&timeout=300")
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    // A client that goes away releases its waiting pop at once, and nothing is leased to it.
    {
        use tokio::io::AsyncWriteExt;
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
            .await
            .unwrap();
        c.write_all(
            b"GET /api/v1/pop/queue/gone?wait=true&timeout=30000 HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
        wait_for_waiting(&s, 1).await;
    }
    wait_for_waiting(&s, 0).await;
    s.post("/api/v1/push", &push_body("gone", "p", &[json!("kept")]))
        .await;
    let r = s.get("/api/v1/pop/queue/gone").await.unwrap();
    assert_eq!(r.json()["messages"][0]["data"], "kept");
}

/// A push wakes as many of a group's waiting pops as it stored messages, not all of them; none
/// is left waiting for a message it could take. With the periodic look again set beyond the
/// polls' 60 s, a wake-up lost on the way would leave its pop to find its message only at the
/// end of its poll (its last look): 10 pops of the queue's consumers, 3 of a group's and one of
/// a named partition for another group, then 10 messages pushed one request at a time over 10
/// partitions; every pop is answered within half its poll.
#[tokio::test]
async fn each_pushed_message_wakes_a_waiting_pop_of_each_group() {
    let s = Server::start("e2e_wake_by_message", &[("LONG_POLL_RECHECK", "120000")]).await;
    let mut polls = Vec::new();
    let paths = std::iter::repeat_n("batch=1".to_owned(), 10)
        .chain(std::iter::repeat_n(
            "batch=1&consumerGroup=g&subscriptionMode=all".to_owned(),
            3,
        ))
        .map(|q| format!("/api/v1/pop/queue/herd?{q}&wait=true&timeout=60000"))
        .chain(std::iter::once(
            "/api/v1/pop/queue/herd/partition/p0?consumerGroup=h&subscriptionMode=all\
             &wait=true&timeout=60000"
                .to_owned(),
        ));
    for path in paths {
        let port = s.port;
        polls.push(tokio::spawn(async move {
            let r = support::Server::client(port).get(&path).await.unwrap();
            (path, r)
        }));
    }
    wait_for_waiting(&s, 14).await;
    let pushed = Instant::now();
    for i in 0..10 {
        s.push("herd", &format!("p{i}"), &[json!(i)]).await;
    }
    let mut got: HashMap<String, Vec<Value>> = HashMap::new();
    for p in polls {
        let (path, r) = p.await.unwrap();
        assert_eq!(r.status, 200, "{path}: no message");
        assert!(
            pushed.elapsed() < Duration::from_secs(30),
            "{path}: not woken, answered at its poll's end"
        );
        let group = if path.contains("consumerGroup=g") {
            "g"
        } else if path.contains("consumerGroup=h") {
            "h"
        } else {
            "queue"
        };
        got.entry(group.to_owned()).or_default().extend(
            r.json()["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["data"].clone()),
        );
    }
    let mut queue = got.remove("queue").unwrap();
    queue.sort_by_key(|v| v.as_i64());
    assert_eq!(queue, (0..10).map(|i| json!(i)).collect::<Vec<_>>());
    assert_eq!(got["g"].len(), 3);
    assert_eq!(got["h"], [json!(0)]);
}

/// A transaction's push wakes the waiting pops of every queue its items went to, not only the
/// first item's queue: with the periodic look again beyond the poll, a pop of the second queue
/// left unwoken would be answered only at its poll's end.
#[tokio::test]
async fn a_transaction_push_wakes_every_queue_it_stored_in() {
    let s = Server::start("e2e_tx_wake", &[("LONG_POLL_RECHECK", "120000")]).await;
    let port = s.port;
    let poll = tokio::spawn(async move {
        support::Server::client(port)
            .get("/api/v1/pop/queue/second?batch=1&wait=true&timeout=60000")
            .await
            .unwrap()
    });
    wait_for_waiting(&s, 1).await;
    let pushed = Instant::now();
    let t = s
        .post(
            "/api/v1/transaction",
            &json!({"operations": [{"type": "push", "items": [
                {"queue": "first", "payload": 1},
                {"queue": "second", "payload": 2},
            ]}]}),
        )
        .await;
    assert_eq!(t.status, 200, "{}", String::from_utf8_lossy(&t.body));
    let r = poll.await.unwrap();
    assert_eq!(r.status, 200, "no message");
    assert!(
        pushed.elapsed() < Duration::from_secs(30),
        "not woken, answered at its poll's end"
    );
    assert_eq!(r.json()["messages"][0]["data"], json!(2));
}

async fn wait_for_waiting(s: &Server, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = s.get("/metrics").await.unwrap().json();
        if m["longPolls"]["waiting"] == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waiting pops: {} (want {n})",
            m["longPolls"]["waiting"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bad_input_gets_the_exact_status_and_code() {
    let s = Server::start("e2e_bad", &[("MAX_BODY_SIZE", "4096")]).await;
    s.post_raw("/api/v1/push", b"{not json")
        .await
        .assert_error(400, "invalid_json");
    s.post_raw("/api/v1/push", b"")
        .await
        .assert_error(400, "empty_body");
    s.post("/api/v1/push", &json!({"items": "x"}))
        .await
        .assert_error(400, "invalid_request");
    s.post("/api/v1/push", &json!({}))
        .await
        .assert_error(400, "invalid_request");
    s.post("/api/v1/push", &json!({"items": [{"queue": 5}]}))
        .await
        .assert_error(400, "invalid_request");
    s.post("/api/v1/push", &json!({"items": [{"partition": "p"}]}))
        .await
        .assert_error(400, "invalid_request");
    let r = s
        .post(
            "/api/v1/push",
            &json!({"items": [{"queue": "q"}, {"queue": "q", "traceId": "not-a-uuid"}]}),
        )
        .await;
    r.assert_error(400, "invalid_trace_id");
    assert!(r.json()["error"].as_str().unwrap().contains("items[1]"));
    s.post("/api/v1/push", &json!({"items": [{"queue": "bad\nname"}]}))
        .await
        .assert_error(400, "invalid_name");
    s.post(
        "/api/v1/push",
        &json!({"items": [{"queue": "x".repeat(256)}]}),
    )
    .await
    .assert_error(400, "invalid_name");
    // Strings PostgreSQL cannot store (a NUL) in a field it stores as text are refused up front:
    // in a coalesced statement they would fail other requests. Payloads are stored as the JSON
    // text they came as, so any escape is fine there.
    for (path, body) in [
        (
            "/api/v1/push",
            r#"{"items":[{"queue":"q","transactionId":"a\u0000b"}]}"#,
        ),
        (
            "/api/v1/transaction",
            r#"{"operations":[{"type":"ack","transactionId":"t\u0000","partitionId":"0193b0a2-1111-7000-8000-000000000001"}]}"#,
        ),
        (
            "/api/v1/ack",
            r#"{"transactionId":"t","partitionId":"0193b0a2-1111-7000-8000-000000000001","status":"failed","error":"e\u0000"}"#,
        ),
        (
            "/api/v1/traces",
            r#"{"transactionId":"t","partitionId":"0193b0a2-1111-7000-8000-000000000001","data":{"a":"\u0000"}}"#,
        ),
    ] {
        s.post_raw(path, body.as_bytes())
            .await
            .assert_error(400, "invalid_string");
    }
    s.get("/api/v1/pop/queue/q?consumerGroup=g%00")
        .await
        .unwrap()
        .assert_error(400, "invalid_parameter");
    s.get("/api/v1/messages/0193b0a2-1111-7000-8000-000000000001/t%00")
        .await
        .unwrap()
        .assert_error(400, "invalid_path");
    // Also while every push goes to the disk buffer: a record the database refuses could never
    // be replayed.
    s.post("/api/v1/system/maintenance", &json!({"enabled": true}))
        .await;
    s.post_raw(
        "/api/v1/push",
        br#"{"items":[{"queue":"q","transactionId":"\u0000"}]}"#,
    )
    .await
    .assert_error(400, "invalid_string");
    s.post("/api/v1/system/maintenance", &json!({"enabled": false}))
        .await;
    // Escapes of every kind in payloads are fine.
    let r = s
        .post_raw(
            "/api/v1/push",
            br#"{"items":[{"queue":"ok","payload":"\u0000 \ud800 \ud83d\ude00"}]}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // Nothing of the rejected requests was stored.
    assert_eq!(s.get("/api/v1/pop/queue/q").await.unwrap().status, 204);
    let big = json!({"items": [{"queue": "q", "payload": "x".repeat(5000)}]});
    s.post("/api/v1/push", &big)
        .await
        .assert_error(413, "body_too_large");
    s.get("/api/v1/pop/queue/q?batch=ten")
        .await
        .unwrap()
        .assert_error(400, "invalid_parameter");
    s.get("/api/v1/pop/queue/q?batch=0")
        .await
        .unwrap()
        .assert_error(400, "invalid_parameter");
    s.post(
        "/api/v1/ack",
        &json!({"transactionId": "t", "partitionId": "x"}),
    )
    .await
    .assert_error(400, "invalid_request");
    s.post("/api/v1/ack", &json!({"transactionId": "t", "partitionId": "0193b0a2-1111-7000-8000-000000000001", "status": "meh"}))
        .await
        .assert_error(400, "invalid_status");
    s.post("/api/v1/lease/nope/extend", &json!({}))
        .await
        .assert_error(400, "invalid_request");
    s.get("/api/v1/unknown")
        .await
        .unwrap()
        .assert_error(404, "not_found");
    s.get("/nothing/here")
        .await
        .unwrap()
        .assert_error(404, "not_found");
    s.get("/api/v1/push")
        .await
        .unwrap()
        .assert_error(405, "method_not_allowed");
    // Percent-decoded path parameters.
    s.post("/api/v1/push", &push_body("with space", "a/b", &[json!(1)]))
        .await;
    let r = s
        .get("/api/v1/pop/queue/with%20space/partition/a%2Fb")
        .await
        .unwrap();
    assert_eq!(r.json()["partition"], "a/b");
    // CORS.
    let r = s.request("OPTIONS", "/api/v1/push", None).await.unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        s.get("/health")
            .await
            .unwrap()
            .header("access-control-allow-origin"),
        Some("*")
    );
}

#[tokio::test]
async fn health_metrics_and_pop_maintenance() {
    let s = Server::start("e2e_ops", &[]).await;
    let h = s.get("/health").await.unwrap();
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["status"], "healthy");
    s.post("/api/v1/push", &push_body("m", "p", &[json!(1)]))
        .await;
    let m = s.get("/metrics").await.unwrap().json();
    assert_eq!(m["messages"]["pushed"], 1);
    assert!(m["requests"]["total"].as_u64().unwrap() >= 2);
    let prom = s.get("/metrics/prometheus").await.unwrap();
    let text = String::from_utf8(prom.body).unwrap();
    assert!(text.contains("queen_messages_pushed_total 1"), "{text}");
    let r = s
        .post("/api/v1/system/maintenance/pop", &json!({"enabled": true}))
        .await;
    assert_eq!(r.json()["enabled"], true);
    assert_eq!(
        s.get("/api/v1/pop/queue/m").await.unwrap().status,
        204,
        "pops answer 204 in maintenance"
    );
    assert_eq!(
        s.get("/api/v1/system/maintenance/pop")
            .await
            .unwrap()
            .json()["enabled"],
        true
    );
    s.post("/api/v1/system/maintenance/pop", &json!({"enabled": false}))
        .await;
    assert_eq!(s.get("/api/v1/pop/queue/m").await.unwrap().status, 200);
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_cleanly() {
    let mut s = Server::start("e2e_shutdown", &[]).await;
    let port = s.port;
    let in_flight = tokio::spawn(async move {
        support::Server::client(port)
            .get("/api/v1/pop/queue/idle?wait=true&timeout=1500")
            .await
    });
    wait_for_waiting(&s, 1).await;
    let t0 = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let st = s.terminate();
        (st, s)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "exit status {:?}", status.0);
    assert!(t0.elapsed() < Duration::from_secs(8));
    // The long poll in flight got its full answer (204 at its timeout), not a dropped connection.
    assert_eq!(in_flight.await.unwrap().unwrap().status, 204);
    assert!(
        support::Server::client(port).get("/health").await.is_err(),
        "no longer listening"
    );
}

/// `(offset, transactionId, payload)` of a fetched record.
type Record = (i64, String, Value);

/// The reads of one fetch entry: its records, the high watermark, the log start and the error.
fn fetched(entry: &Value) -> (Vec<Record>, i64, i64, Option<String>) {
    let records = entry["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["offset"].as_i64().unwrap(),
                r["transactionId"].as_str().unwrap().to_owned(),
                r["payload"].clone(),
            )
        })
        .collect();
    (
        records,
        entry["highWatermark"].as_i64().unwrap(),
        entry["logStartOffset"].as_i64().unwrap(),
        entry["error"].as_str().map(str::to_owned),
    )
}

#[tokio::test]
async fn reads_by_offset_follow_positions_and_take_nothing() {
    let key = "5a".repeat(32);
    let s = Server::start("e2e_reads", &[("QUEEN_ENCRYPTION_KEY", key.as_str())]).await;
    s.post(
        "/api/v1/configure",
        &json!({"queue": "reads-sealed", "options": {"encryptionEnabled": true}}),
    )
    .await
    .expect(200);
    let pushed = s
        .push_items(&[
            json!({"queue": "reads", "partition": "a", "payload": {"n": 0}, "transactionId": "t0"}),
            json!({"queue": "reads", "partition": "a", "payload": [1, 2.50, "x"], "transactionId": "t1"}),
            json!({"queue": "reads", "partition": "a", "payload": "third", "transactionId": "t2"}),
            json!({"queue": "reads-sealed", "partition": "s", "payload": {"secret": true}, "transactionId": "s0"}),
        ])
        .await;
    let pid = pushed[0]["partition_id"].as_str().unwrap().to_owned();
    let fetch = |entries: Value| {
        let s = &s;
        async move {
            s.post("/api/v1/fetch", &json!({ "entries": entries }))
                .await
                .expect(200)["entries"]
                .as_array()
                .unwrap()
                .clone()
        }
    };

    // Every record from offset 0, payloads as pushed (decrypted for the sealed queue).
    let e = fetch(json!([
        {"queue": "reads", "partition": "a"},
        {"queue": "reads-sealed", "partition": "s", "offset": 0},
        {"queue": "reads", "partition": "a", "offset": 2},
    ]))
    .await;
    let all = vec![
        (0, "t0".to_owned(), json!({"n": 0})),
        (1, "t1".to_owned(), json!([1, 2.50, "x"])),
        (2, "t2".to_owned(), json!("third")),
    ];
    assert_eq!(fetched(&e[0]), (all.clone(), 3, 0, None));
    assert_eq!(
        fetched(&e[1]),
        (
            vec![(0, "s0".to_owned(), json!({"secret": true}))],
            1,
            0,
            None
        )
    );
    assert_eq!(fetched(&e[2]), (all[2..].to_vec(), 3, 0, None));
    assert_eq!(e[0]["queue"], "reads");
    assert_eq!(e[0]["partition"], "a");

    // Byte budgets: an entry's own, and the call's (the first record always goes).
    let r = s
        .post(
            "/api/v1/fetch",
            &json!({"entries": [{"queue": "reads", "partition": "a", "maxBytes": 1},
                                {"queue": "reads-sealed", "partition": "s"}]}),
        )
        .await
        .expect(200);
    assert_eq!(fetched(&r["entries"][0]).0, all[..1].to_vec());
    assert_eq!(fetched(&r["entries"][1]).0.len(), 1);
    let r = s
        .post(
            "/api/v1/fetch",
            &json!({"entries": [{"queue": "reads", "partition": "a"},
                                {"queue": "reads-sealed", "partition": "s"}], "maxBytes": 1}),
        )
        .await
        .expect(200);
    assert_eq!(fetched(&r["entries"][0]).0, all[..1].to_vec());
    assert_eq!(fetched(&r["entries"][1]).0, vec![]);

    // The head deleted: the log starts at 1; below it and past the end are out of range, the
    // end itself is just empty; unknown queues and partitions say so.
    s.delete(&format!("/api/v1/messages/{pid}/t0"))
        .await
        .expect(200);
    let e = fetch(json!([
        {"queue": "reads", "partition": "a", "offset": 0},
        {"queue": "reads", "partition": "a", "offset": 1},
        {"queue": "reads", "partition": "a", "offset": 3},
        {"queue": "reads", "partition": "a", "offset": 4},
        {"queue": "reads", "partition": "nope"},
        {"queue": "reads-nope", "partition": "a"},
    ]))
    .await;
    let oor = Some("OFFSET_OUT_OF_RANGE".to_owned());
    let unknown = Some("UNKNOWN_TOPIC_OR_PARTITION".to_owned());
    assert_eq!(fetched(&e[0]), (vec![], 3, 1, oor.clone()));
    assert_eq!(fetched(&e[1]), (all[1..].to_vec(), 3, 1, None));
    assert_eq!(fetched(&e[2]), (vec![], 3, 1, None));
    assert_eq!(fetched(&e[3]), (vec![], 3, 1, oor));
    assert_eq!(fetched(&e[4]).3, unknown);
    assert_eq!(fetched(&e[5]).3, unknown);

    // Nothing was leased or committed: a pop still gets both remaining messages.
    let popped = s
        .get("/api/v1/pop/queue/reads/partition/a?batch=10")
        .await
        .unwrap()
        .expect(200);
    assert_eq!(popped["messages"].as_array().unwrap().len(), 2);

    // Bad requests name what is wrong; nothing else is touched.
    let bad = |body: Value, status: u16, code: &'static str| {
        let s = &s;
        async move {
            s.post("/api/v1/fetch", &body)
                .await
                .assert_error(status, code);
        }
    };
    bad(json!({}), 400, "invalid_request").await;
    bad(json!({"entries": []}), 400, "invalid_request").await;
    bad(json!({"entries": [1]}), 400, "invalid_request").await;
    bad(
        json!({"entries": [{"queue": "reads"}]}),
        400,
        "invalid_request",
    )
    .await;
    bad(
        json!({"entries": [{"queue": "", "partition": "a"}]}),
        400,
        "invalid_name",
    )
    .await;
    bad(
        json!({"entries": [{"queue": "reads", "partition": "a", "offset": -1}]}),
        400,
        "invalid_request",
    )
    .await;
    bad(
        json!({"entries": [{"queue": "reads", "partition": "a", "offset": "0"}]}),
        400,
        "invalid_request",
    )
    .await;
    bad(
        json!({"entries": [{"queue": "reads", "partition": "a"}], "maxBytes": 0}),
        400,
        "invalid_request",
    )
    .await;
    let many: Vec<Value> = (0..1025)
        .map(|_| json!({"queue": "reads", "partition": "a"}))
        .collect();
    bad(json!({ "entries": many }), 413, "too_many_items").await;
    s.get("/api/v1/fetch")
        .await
        .unwrap()
        .assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn partition_discovery_pages_in_creation_order_from_a_safe_time() {
    let s = Server::start("e2e_changed", &[]).await;
    let parts = ["p0", "p1", "p2"];
    for p in parts {
        s.push("changed", p, &[json!({"p": p})]).await;
    }
    let changed = |entry: Value| {
        let s = &s;
        async move {
            s.post("/api/v1/partitions/changed", &json!({ "entries": [entry] }))
                .await
                .expect(200)
        }
    };
    let names = |r: &Value| -> Vec<String> {
        r["entries"][0]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };

    // Pages of two, in creation order, until `next` is null.
    let first = changed(json!({"queue": "changed", "limit": 2})).await;
    assert_eq!(names(&first), ["p0", "p1"]);
    let p0 = &first["entries"][0]["partitions"][0];
    assert_eq!(
        (p0["lastOffset"].as_i64(), p0["logStart"].as_i64()),
        (Some(0), Some(0))
    );
    assert!(p0["id"].is_string() && p0["lastWriteAt"].is_string());
    let next = first["entries"][0]["next"].clone();
    assert!(next.is_string());
    let second = changed(json!({"queue": "changed", "limit": 2, "after": next})).await;
    assert_eq!(names(&second), ["p2"]);
    assert!(second["entries"][0]["next"].is_null());

    // From a pass's safeTime on: what was written after it, and nothing written before it.
    let safe = first["safeTime"].as_str().unwrap().to_owned();
    s.push("changed", "p1", &[json!({"again": true})]).await;
    let after = changed(json!({"queue": "changed", "since": safe})).await;
    let listed = after["entries"][0]["partitions"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|p| p["name"] == "p1" && p["lastOffset"] == 1),
        "{after}"
    );
    assert!(
        listed
            .iter()
            .all(|p| p["lastWriteAt"].as_str().unwrap() >= safe.as_str()),
        "{after}"
    );
    // From the time of p1's last write: p1 alone (the others were written before it).
    let p1_at = listed
        .iter()
        .find(|p| p["name"] == "p1")
        .and_then(|p| p["lastWriteAt"].as_str())
        .unwrap()
        .to_owned();
    let since_p1 = changed(json!({"queue": "changed", "since": p1_at})).await;
    assert_eq!(names(&since_p1), ["p1"], "{since_p1}");
    let future = changed(json!({"queue": "changed", "since": "2999-01-01T00:00:00Z"})).await;
    assert_eq!(names(&future), Vec::<String>::new());
    assert!(future["safeTime"].is_string());

    let unknown = changed(json!({"queue": "changed-nope"})).await;
    assert_eq!(unknown["entries"][0]["error"], "UNKNOWN_TOPIC_OR_PARTITION");
    assert_eq!(names(&unknown), Vec::<String>::new());

    for (entry, code) in [
        (
            json!({"queue": "changed", "since": "yesterday"}),
            "invalid_request",
        ),
        (
            json!({"queue": "changed", "after": "-1"}),
            "invalid_request",
        ),
        (
            json!({"queue": "changed", "limit": 1001}),
            "invalid_request",
        ),
        (json!({"queue": "changed", "limit": 0}), "invalid_request"),
        (json!({"queue": 7}), "invalid_request"),
    ] {
        s.post("/api/v1/partitions/changed", &json!({ "entries": [entry] }))
            .await
            .assert_error(400, code);
    }
}
