//! The inspection and operations routes of docs/api.md, "Inspection" (messages, dead letters, traces, consumer
//! groups, status), end to end against a real PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use queen_wire::{Client, ToSql};
use serde_json::{Value, json};
use support::{Server, ack_body};

async fn push(s: &Server, queue: &str, partition: &str, items: &[(&str, Value)]) -> Vec<Value> {
    let items: Vec<Value> = items
        .iter()
        .map(|(tx, p)| json!({"queue": queue, "partition": partition, "transactionId": tx, "payload": p}))
        .collect();
    s.push_items(&items).await
}

#[tokio::test]
async fn messages_can_be_listed_inspected_and_deleted() {
    let s = Server::start("insp_messages", &[]).await;
    let out = push(
        &s,
        "inv",
        "eu",
        &[
            ("a", json!({"n": 1})),
            ("b", json!({"n": 2})),
            ("c", json!({"n": 3})),
        ],
    )
    .await;
    push(&s, "inv", "us", &[("d", json!({"n": 4}))]).await;
    let pid = out[0]["partition_id"].as_str().unwrap().to_owned();

    // a: completed, b: processing (leased), c: pending.
    let r = s
        .get_json("/api/v1/pop/queue/inv/partition/eu?batch=2")
        .await;
    let msgs = r["messages"].as_array().unwrap();
    assert_eq!(
        s.post("/api/v1/ack", &ack_body(&msgs[0], "completed"))
            .await
            .status,
        200
    );

    let all = s.get_json("/api/v1/messages?queue=inv").await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 4);
    let eu = s.get_json("/api/v1/messages?queue=inv&partition=eu").await;
    let status_of = |tx: &str| {
        eu["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["transactionId"] == tx)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status_of("a"), "completed");
    assert_eq!(status_of("b"), "processing");
    assert_eq!(status_of("c"), "pending");
    let pending = s
        .get_json("/api/v1/messages?queue=inv&status=pending")
        .await;
    let txs: Vec<&str> = pending["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["transactionId"].as_str().unwrap())
        .collect();
    assert_eq!(txs.len(), 2);
    assert!(txs.contains(&"c") && txs.contains(&"d"));
    assert_eq!(
        s.get_json("/api/v1/messages?queue=inv&limit=1&offset=1")
            .await["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    s.get("/api/v1/messages?queue=inv&offset=10001")
        .await
        .unwrap()
        .assert_error(400, "invalid_parameter");
    // Keyset pages: two pages of two cover the four messages once each, newest first.
    let first = s.get_json("/api/v1/messages?queue=inv&limit=2").await;
    let cursor = first["nextCursor"].as_str().unwrap().to_owned();
    let second = s
        .get_json(&format!(
            "/api/v1/messages?queue=inv&limit=2&cursor={cursor}"
        ))
        .await;
    let mut seen: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|p| p["messages"].as_array().unwrap().clone())
        .map(|m| m["transactionId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ["d", "c", "b", "a"]);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4);
    let third = s
        .get_json(&format!(
            "/api/v1/messages?queue=inv&limit=2&cursor={}",
            second["nextCursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(third["messages"].as_array().unwrap().len(), 0);
    assert!(third["nextCursor"].is_null());
    s.get("/api/v1/messages?cursor=garbage")
        .await
        .unwrap()
        .assert_error(400, "invalid_parameter");
    s.get("/api/v1/messages?status=weird")
        .await
        .unwrap()
        .assert_error(400, "invalid_parameter");
    s.get("/api/v1/messages?from=yesterday")
        .await
        .unwrap()
        .assert_error(400, "invalid_parameter");

    let d = s.get_json(&format!("/api/v1/messages/{pid}/b")).await;
    assert_eq!(d["payload"], json!({"n": 2}));
    assert_eq!(d["status"], "processing");
    assert_eq!(d["queue"], "inv");
    assert_eq!(d["retryCount"], 0);
    assert_eq!(d["consumerGroups"][0]["name"], "__QUEUE_MODE__");
    assert_eq!(d["consumerGroups"][0]["consumed"], false);
    assert_eq!(
        d["consumerGroups"][0]["leaseExpiresAt"], d["leaseExpiresAt"],
        "the queue-mode lease covers it"
    );
    assert!(d["leaseExpiresAt"].as_str().unwrap().ends_with('Z'));
    let mut keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "consumerGroups",
            "createdAt",
            "errorMessage",
            "id",
            "leaseExpiresAt",
            "namespace",
            "partition",
            "partitionId",
            "payload",
            "producerSub",
            "queue",
            "retryCount",
            "status",
            "task",
            "traceId",
            "transactionId"
        ]
    );
    s.get(&format!("/api/v1/messages/{pid}/nope"))
        .await
        .unwrap()
        .assert_error(404, "not_found");
    s.get("/api/v1/messages/not-a-uuid/b")
        .await
        .unwrap()
        .assert_error(400, "invalid_id");

    let del = s.delete(&format!("/api/v1/messages/{pid}/c")).await;
    assert_eq!(del.status, 200);
    assert_eq!(
        del.json(),
        json!({"success": true, "partitionId": pid, "transactionId": "c"})
    );
    assert_eq!(
        s.delete(&format!("/api/v1/messages/{pid}/c")).await.json()["success"],
        false
    );
    assert_eq!(
        s.get_json("/api/v1/messages?queue=inv").await["messages"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn dead_letters_are_listed_with_totals_and_filters() {
    let s = Server::start("insp_dlq", &[]).await;
    s.post(
        "/api/v1/configure",
        &json!({"queue": "d1", "options": {"retryLimit": 0}}),
    )
    .await;
    s.post(
        "/api/v1/configure",
        &json!({"queue": "d2", "options": {"retryLimit": 0}}),
    )
    .await;
    for q in ["d1", "d2"] {
        push(
            &s,
            q,
            "p",
            &[("x", json!({"q": q})), ("y", json!(2)), ("z", json!(3))],
        )
        .await;
        let r = s.get_json(&format!("/api/v1/pop/queue/{q}?batch=3")).await;
        let acks: Vec<Value> = r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let mut a = ack_body(m, "dlq");
                a["error"] = json!("bad data");
                a
            })
            .collect();
        assert_eq!(
            s.post("/api/v1/ack/batch", &json!({"acknowledgments": acks}))
                .await
                .status,
            200
        );
    }
    let all = s.get_json("/api/v1/dlq").await;
    assert_eq!(all["total"], 6);
    let page = s.get_json("/api/v1/dlq?queue=d1&limit=2&offset=0").await;
    assert_eq!(page["total"], 3);
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    assert_eq!(page["pagination"], json!({"limit": 2, "offset": 0}));
    let m = &page["messages"][0];
    assert_eq!(m["queue"], "d1");
    assert_eq!(m["errorMessage"], "bad data");
    assert_eq!(m["consumerGroup"], "__QUEUE_MODE__");
    assert!(m["failedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        s.get_json("/api/v1/dlq?queue=d1&partition=other").await["total"],
        0
    );
    assert_eq!(
        s.get_json("/api/v1/dlq?from=2999-01-01T00:00:00Z").await["total"],
        0
    );
    let dead = s
        .get_json("/api/v1/messages?queue=d2&status=dead_letter")
        .await;
    assert_eq!(dead["messages"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn traces_are_recorded_and_found_by_message_and_name() {
    let s = Server::start("insp_traces", &[]).await;
    let out = push(&s, "t", "p", &[("m1", json!(1)), ("m2", json!(2))]).await;
    let pid = out[0]["partition_id"].as_str().unwrap();
    for (tx, names, data) in [
        ("m1", json!("order-7"), json!({"step": 1})),
        ("m1", json!(["order-7", "eu"]), json!({"step": 2})),
        ("m2", json!(["eu"]), json!({"step": 1})),
    ] {
        let r = s
            .post("/api/v1/traces", &json!({"transactionId": tx, "partitionId": pid, "data": data, "traceNames": names, "consumerGroup": "g", "workerId": "w1"}))
            .await;
        assert_eq!(r.status, 201);
        assert_eq!(r.json()["success"], true);
        assert!(r.json()["traceId"].is_string());
    }
    s.post(
        "/api/v1/traces",
        &json!({"transactionId": "zz", "partitionId": pid, "data": {}}),
    )
    .await
    .assert_error(404, "not_found");
    s.post(
        "/api/v1/traces",
        &json!({"transactionId": "m1", "partitionId": pid}),
    )
    .await
    .assert_error(400, "invalid_request");

    let t = s.get_json(&format!("/api/v1/traces/{pid}/m1")).await;
    let traces = t["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 2);
    assert_eq!(traces[0]["data"], json!({"step": 1}));
    assert_eq!(traces[0]["event_type"], "info");
    assert_eq!(traces[0]["worker_id"], "w1");
    assert_eq!(traces[1]["trace_names"], json!(["order-7", "eu"]));

    assert_eq!(traces[0]["consumer_group"], "g");
    assert_eq!(traces[0]["transaction_id"], "m1");
    assert_eq!(traces[0]["partition_id"], pid);
    assert!(traces[0]["created_at"].as_str().unwrap().ends_with('Z'));

    let by = s.get_json("/api/v1/traces/by-name/eu?limit=1").await;
    assert_eq!(by["total"], 2);
    assert_eq!(by["traces"].as_array().unwrap().len(), 1);
    assert_eq!(by["pagination"], json!({"limit": 1, "offset": 0}));
    // A page past the end still says how many there are.
    let past = s
        .get_json("/api/v1/traces/by-name/eu?limit=5&offset=5")
        .await;
    assert_eq!(past["traces"], json!([]));
    assert_eq!(past["total"], 2);
    let none = s.get_json("/api/v1/traces/by-name/never").await;
    assert_eq!(
        (none["traces"].clone(), none["total"].clone()),
        (json!([]), json!(0))
    );
    let names = s.get_json("/api/v1/traces/names").await;
    assert_eq!(names["total"], 2);
    let past = s.get_json("/api/v1/traces/names?offset=10").await;
    assert_eq!(
        (past["trace_names"].clone(), past["total"].clone()),
        (json!([]), json!(2))
    );
    let eu = names["trace_names"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["trace_name"] == "eu")
        .unwrap();
    assert_eq!(eu["trace_count"], 2);
    assert_eq!(eu["message_count"], 2);
    let order = names["trace_names"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["trace_name"] == "order-7")
        .unwrap();
    assert_eq!(order["message_count"], 1);
}

#[tokio::test]
async fn consumer_groups_report_lag_and_can_be_moved_and_removed() {
    let s = Server::start("insp_groups", &[]).await;
    push(
        &s,
        "events",
        "a",
        &[("1", json!(1)), ("2", json!(2)), ("3", json!(3))],
    )
    .await;
    push(&s, "events", "b", &[("4", json!(4))]).await;
    // Group "billing" reads partition a and commits one message.
    let r = s
        .get_json("/api/v1/pop/queue/events/partition/a?consumerGroup=billing&batch=1")
        .await;
    assert_eq!(
        s.post("/api/v1/ack", &{
            let mut a = ack_body(&r["messages"][0], "completed");
            a["consumerGroup"] = json!("billing");
            a
        })
        .await
        .status,
        200
    );

    let groups = s.get_json("/api/v1/consumer-groups").await;
    let g = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "billing")
        .unwrap()
        .clone();
    assert_eq!(g["queueName"], "events");
    assert_eq!(g["topics"], json!(["events"]));
    assert_eq!(g["totalLag"], 2);
    assert_eq!(g["partitionsWithLag"], 1);
    assert_eq!(g["state"], "Stable");
    assert_eq!(g["subscriptionMode"], "all");

    let detail = s.get_json("/api/v1/consumer-groups/billing").await;
    let parts = detail["events"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0]["partition"], "a");
    assert_eq!(parts[0]["totalConsumed"], 1);
    assert_eq!(parts[0]["offsetLag"], 2);
    assert_eq!(parts[0]["leaseActive"], false);
    s.get("/api/v1/consumer-groups/nobody")
        .await
        .unwrap()
        .assert_error(404, "not_found");
    assert_eq!(
        s.get_json("/api/v1/consumer-groups/lagging?minLagSeconds=3600")
            .await,
        json!([])
    );
    assert_eq!(
        s.get_json("/api/v1/consumer-groups/lagging?minLagSeconds=0")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Seek to the end of the queue: nothing left to read; then back to the start.
    let r = s
        .post(
            "/api/v1/consumer-groups/billing/queues/events/seek",
            &json!({"toEnd": true}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["partitionsMoved"], 2);
    assert_eq!(
        s.get("/api/v1/pop/queue/events?consumerGroup=billing")
            .await
            .unwrap()
            .status,
        204
    );
    let r = s
        .post(
            "/api/v1/consumer-groups/billing/queues/events/partitions/a/seek",
            &json!({"timestamp": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.json()["partitionsMoved"], 1);
    let again = s
        .get_json("/api/v1/pop/queue/events/partition/a?consumerGroup=billing&batch=10")
        .await;
    assert_eq!(
        again["messages"].as_array().unwrap().len(),
        3,
        "re-read from the start"
    );
    s.post(
        "/api/v1/consumer-groups/billing/queues/nope/seek",
        &json!({"toEnd": true}),
    )
    .await
    .assert_error(404, "not_found");
    s.post(
        "/api/v1/consumer-groups/billing/queues/events/seek",
        &json!({}),
    )
    .await
    .assert_error(400, "invalid_request");

    let r = s
        .post(
            "/api/v1/consumer-groups/billing/subscription",
            &json!({"subscriptionTimestamp": "2030-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["queuesUpdated"], 1);
    let g = s.get_json("/api/v1/consumer-groups").await;
    assert_eq!(g[0]["subscriptionMode"], "timestamp");
    assert_eq!(g[0]["subscriptionTimestamp"], "2030-01-01T00:00:00.000000Z");

    let r = s
        .delete("/api/v1/consumer-groups/billing/queues/events")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["partitionsDeleted"], 2);
    assert_eq!(s.get_json("/api/v1/consumer-groups").await, json!([]));
    // Gone with its subscription: a new read starts from the first message again.
    let fresh = s
        .get_json("/api/v1/pop/queue/events/partition/a?consumerGroup=billing&batch=10")
        .await;
    assert_eq!(fresh["messages"].as_array().unwrap().len(), 3);
    assert_eq!(
        s.delete("/api/v1/consumer-groups/billing?deleteMetadata=true")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn status_routes_give_dashboard_figures() {
    let s = Server::start("insp_status", &[]).await;
    push(&s, "s1", "p", &[("1", json!(1)), ("2", json!(2))]).await;
    let st = s.get_json("/api/v1/status").await;
    assert_eq!(st["queues"], 1);
    assert_eq!(st["messages"]["total"], 2);
    assert!(st["throughput"]["pushedPerSecond"].is_number());
    assert_eq!(st["buffer"]["dbHealthy"], true);
    assert_eq!(
        s.get_json("/api/v1/status/queues").await["queues"][0]["name"],
        "s1"
    );
    assert_eq!(
        s.get_json("/api/v1/status/queues/s1").await["totals"]["pending"],
        2
    );
    s.get("/api/v1/status/queues/none")
        .await
        .unwrap()
        .assert_error(404, "not_found");
    let msgs = s.get_json("/api/v1/status/queues/s1/messages").await;
    assert_eq!(msgs["messages"].as_array().unwrap().len(), 2);
    let a = s.get_json("/api/v1/status/analytics").await;
    assert_eq!(a["series"]["intervalSeconds"], 10);
    assert!(a["series"]["points"].is_array());
    assert_eq!(
        s.get_json("/api/v1/status/buffers").await["dbHealthy"],
        true
    );
}

/// What one statement read, counted by PostgreSQL on a connection of its own (a backend counts
/// what it has not yet reported, whatever the transaction), and the figure `n` it answered.
struct Reads {
    /// The statement's one row's `n`.
    n: Option<i64>,
    /// Rows of `queen.messages` fetched by index or read by a scan.
    messages: i64,
    /// Index scans of `queen.cursors`: a look at a message's status, or at where a partition's
    /// messages are settled up to.
    cursor_probes: i64,
}

async fn reads_of(db: &queen_wire::Config, sql: &str, params: &[&dyn ToSql]) -> Reads {
    let conn = queen_wire::Connection::connect(db).await.unwrap();
    conn.batch_execute("BEGIN").await.unwrap();
    let rows = conn.query_sql(sql, params).await.unwrap();
    let counted = async |table: &str, figure: &str| -> i64 {
        let rows = conn
            .query_sql(
                &format!(
                    "SELECT ({figure})::bigint AS n FROM pg_stat_xact_user_tables \
                      WHERE relid = '{table}'::regclass"
                ),
                &[],
            )
            .await
            .unwrap();
        rows[0].get("n").unwrap()
    };
    let messages = counted(
        "queen.messages",
        "coalesce(idx_tup_fetch, 0) + seq_tup_read",
    )
    .await;
    let cursor_probes = counted("queen.cursors", "coalesce(idx_scan, 0)").await;
    conn.batch_execute("COMMIT").await.unwrap();
    Reads {
        n: rows[0].get("n").unwrap(),
        messages,
        cursor_probes,
    }
}

/// A page of 50 of queue `queue`'s messages of one status: `n` is the rows listed.
async fn listing_reads(
    db: &queen_wire::Config,
    queue: &str,
    partition: Option<&str>,
    status: &str,
) -> Reads {
    reads_of(
        db,
        "SELECT count(*) AS n FROM queen.list_messages($1, $2, NULL, NULL, $3, NULL, NULL, 50, \
         NULL, NULL, NULL)",
        &[&queue, &partition, &status],
    )
    .await
}

/// Listing pending or processing messages reads the partitions' unsettled tails, and dead
/// letters their own table, not the completed history: with 4,000 completed messages stored, a
/// page of the 3 pending, 2 processing or 2 dead-lettered ones reads a few rows, where a walk
/// through the history read them all (a dashboard's pending view took 15 ms, then 434 ms 40 s into a 2,000 msg/s soak).
#[tokio::test]
async fn listing_unsettled_or_dead_messages_reads_them_not_the_history() {
    let (db, s) = Server::start_with_db("insp_backlog", &[]).await;
    for part in ["p1", "p2"] {
        for _ in 0..4 {
            let payloads: Vec<Value> = (0..500).map(|n| json!({ "n": n })).collect();
            s.push("hist", part, &payloads).await;
        }
    }
    let mut consumed = 0;
    while consumed < 4000 {
        let got = s
            .pop("/api/v1/pop/queue/hist?batch=1000&partitions=2&autoAck=true&wait=false")
            .await;
        assert!(!got.is_empty(), "the history drains");
        consumed += got.len();
    }
    // Two of p2's dead-lettered.
    s.push("hist", "p2", &[json!("bad"), json!("worse")]).await;
    let failed = s
        .pop("/api/v1/pop/queue/hist/partition/p2?batch=2&wait=false")
        .await;
    assert_eq!(failed.len(), 2);
    for m in &failed {
        assert_eq!(s.post("/api/v1/ack", &ack_body(m, "dlq")).await.status, 200);
    }
    s.push("hist", "p1", &[json!(1), json!(2)]).await;
    s.push("hist", "p2", &[json!(3), json!(4), json!(5)]).await;
    // Two of p1's under a lease: processing.
    let leased = s
        .pop("/api/v1/pop/queue/hist/partition/p1?batch=2&wait=false")
        .await;
    assert_eq!(leased.len(), 2);

    for (partition, status, listed) in [
        (None, "pending", 3),
        (None, "processing", 2),
        (Some("p2"), "pending", 3),
        (Some("p1"), "processing", 2),
        (None, "dead_letter", 2),
        (Some("p2"), "dead_letter", 2),
    ] {
        let r = listing_reads(&db, "hist", partition, status).await;
        assert_eq!(r.n, Some(listed), "{partition:?} {status}");
        assert!(
            r.messages <= 10,
            "{partition:?} {status}: {} rows read to list {listed}",
            r.messages
        );
    }
    // The completed ones are still found by the walk.
    assert_eq!(
        listing_reads(&db, "hist", None, "completed").await.n,
        Some(50)
    );
}

/// With a backlog (50,000 messages pending over 1,000 partitions, past the 10,000 a pending
/// page reads from the tails), a processing page reads the messages the live leases cover, not
/// the backlog (a walk by time read every message: 10 s, the statement timeout, at 1M
/// messages); a completed page skips the backlog (the same 10 s); a pending page sizes the
/// tails only until they pass the bound, not with a probe of every partition's cursors (90 ms
/// at 10,000 partitions with 10 groups, where the page itself took 7).
#[tokio::test]
async fn listing_a_backlog_by_status_reads_what_the_page_needs() {
    const PARTITIONS: usize = 1000;
    let (db, s) = Server::start_with_db("insp_big_backlog", &[]).await;
    for round in 0..50 {
        let items: Vec<Value> = (0..PARTITIONS)
            .map(|p| json!({ "queue": "backlog", "partition": format!("p{p}"), "payload": round }))
            .collect();
        let r = s.post("/api/v1/push", &json!({ "items": items })).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    // Two messages of one partition under a live lease, of the queue's consumers and of a
    // group's. (A partition no group reads yet costs the listing the same probe of the cursors
    // as one that groups read.)
    for group in ["", "&consumerGroup=g"] {
        let leased = s
            .pop(&format!(
                "/api/v1/pop/queue/backlog/partition/p7?batch=2&wait=false{group}"
            ))
            .await;
        assert_eq!(leased.len(), 2);
    }
    // Listed once each, in keyset pages.
    let mut listed = Vec::new();
    let mut path = "/api/v1/messages?queue=backlog&status=processing&limit=2".to_owned();
    loop {
        let page = s.get_json(&path).await;
        listed.extend(page["messages"].as_array().unwrap().iter().map(|m| {
            assert_eq!(m["status"], "processing");
            assert_eq!(m["partition"], "p7");
            m["id"].clone()
        }));
        let Some(cursor) = page["nextCursor"].as_str() else {
            break;
        };
        path = format!("/api/v1/messages?queue=backlog&status=processing&limit=2&cursor={cursor}");
    }
    assert_eq!(listed.len(), 2, "{listed:?}");
    listed.dedup();
    assert_eq!(listed.len(), 2, "{listed:?}");

    let processing = listing_reads(&db, "backlog", None, "processing").await;
    assert_eq!(processing.n, Some(2));
    assert!(
        processing.messages <= 10,
        "{} rows read to list the 2 processing messages of a 50,000-message backlog",
        processing.messages
    );
    assert_eq!(
        listing_reads(&db, "backlog", None, "pending").await.n,
        Some(50)
    );
    // Completed messages (p3's first five) lie before a backlog: after a few windows of it,
    // the walk goes on from the newest settled position, and passes over the backlog's rows
    // before looking at their status (the walk looked at every message's: 50,000 probes).
    let done = s
        .pop("/api/v1/pop/queue/backlog/partition/p3?batch=5&autoAck=true&wait=false")
        .await;
    assert_eq!(done.len(), 5);
    let completed = listing_reads(&db, "backlog", None, "completed").await;
    eprintln!(
        "5 completed messages listed with {} cursor probes",
        completed.cursor_probes
    );
    assert_eq!(completed.n, Some(5));
    assert!(
        completed.cursor_probes < 5 * PARTITIONS as i64,
        "{} cursor probes to list 5 completed messages before a 50,000-message backlog",
        completed.cursor_probes
    );
    let one = listing_reads(&db, "backlog", Some("p3"), "completed").await;
    assert_eq!(one.n, Some(5));
    assert!(one.messages <= 10, "{} rows read in p3", one.messages);
    // The sizing of the pending tails stops once a page of 50 read from them would read more
    // than 10,000 rows: at the 201st of the 1,000 partitions (50 positions each; the loop
    // fetches ten at a time, so 210 probes).
    let tails = tails_sized(&db, "backlog").await;
    let probes = tails.cursor_probes;
    eprintln!("tails sized with {probes} cursor probes of {PARTITIONS} partitions");
    assert_eq!(tails.n, None, "a backlog is past the bound");
    assert!(
        probes < PARTITIONS as i64 / 2,
        "{probes} cursor probes to size the tails of {PARTITIONS} partitions"
    );
}

/// `queen.short_tails` of queue `queue` for a page of 50: `n` is the partitions with a tail,
/// None when the page would read more than 10,000 rows.
async fn tails_sized(db: &queen_wire::Config, queue: &str) -> Reads {
    reads_of(
        db,
        "SELECT cardinality(nums)::bigint AS n \
           FROM queen.short_tails($1, NULL, NULL, NULL, 10000, 50)",
        &[&queue],
    )
    .await
}

/// A listing that runs past the inspection pool's statement timeout is answered `503
/// statement_timeout` (it was a 500 `internal`), and the pool serves the next one.
#[tokio::test]
async fn a_listing_past_the_statement_timeout_says_so() {
    let (db, s) =
        Server::start_with_db("insp_timeout", &[("DB_ADMIN_STATEMENT_TIMEOUT", "300")]).await;
    s.push("slow", "p", &[json!(1)]).await;
    // Another session holds the message table: the listing waits until its timeout.
    let holder = queen_wire::Connection::connect(&db).await.unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE queen.messages IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    s.get("/api/v1/messages?queue=slow")
        .await
        .unwrap()
        .assert_error(503, "statement_timeout");
    holder.batch_execute("ROLLBACK").await.unwrap();
    let listed = s.get_json("/api/v1/messages?queue=slow").await;
    assert_eq!(listed["messages"].as_array().unwrap().len(), 1);
}

/// Dead-letters popped message `m` (of `group`, or the queue's consumers) and retries it: it
/// moves to the tail of its partition.
async fn dead_letter_and_retry(s: &Server, m: &Value, group: Option<&str>) {
    let mut dlq = ack_body(m, "dlq");
    dlq["error"] = json!("bad");
    if let Some(g) = group {
        dlq["consumerGroup"] = json!(g);
    }
    assert_eq!(s.post("/api/v1/ack", &dlq).await.status, 200);
    let (pid, tx) = (
        &m["partitionId"].as_str().unwrap(),
        m["transactionId"].as_str().unwrap(),
    );
    let r = s
        .post(&format!("/api/v1/messages/{pid}/{tx}/retry"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// The completed listing behind a backlog jumps to the newest settled message's time (a probe
/// per partition) instead of walking the backlog. That is only right if, within a partition, a
/// message's time never decreases with its position. Two ways it used to: a push that waited
/// for a partition's lock (here behind another server's push) was stamped with its
/// transaction's start, earlier than the message stored before it; and a dead-letter retry
/// moves an older message to the tail. Either way the newest settled message looked older
/// than a completed one before it, and the listing left that one out.
#[tokio::test]
async fn completed_messages_behind_a_backlog_are_listed_whatever_order_they_were_timed_in() {
    let (db, s) = Server::start_with_db("insp_completed_times", &[]).await;
    // A second server on the same database: its batcher does not know the first one's pushes.
    let s2 = Server::start_on(
        &db,
        support::buffer_dir("insp_completed_times_2"),
        false,
        &[],
    )
    .await;
    let one = |q: &str, p: &str, tx: &str| json!({"queue": q, "partition": p, "transactionId": tx, "payload": tx});
    // Queue `locks`: its partitions exist, in this order (a push locks them in it).
    s.push_items(&[one("locks", "p1", "p1-0"), one("locks", "p2", "p2-0")])
        .await;
    // Queue `retries`: a message that will be dead-lettered and retried after a later one.
    s.push_items(&[one("retries", "p", "p-0"), one("retries", "p", "retried")])
        .await;

    // `locks`: a push to p1 and p2 waits for p1's lock, held by another session ...
    let holder = queen_wire::Connection::connect(&db).await.unwrap();
    holder
        .batch_execute(
            "BEGIN; SELECT 1 FROM queen.partitions p JOIN queen.queues q ON q.id = p.queue_id \
              WHERE q.name = 'locks' AND p.name = 'p1' FOR UPDATE",
        )
        .await
        .unwrap();
    let port = s.port;
    let waiting = tokio::spawn(async move {
        let items = [one("locks", "p1", "late-1"), one("locks", "p2", "late-2")];
        Server::client(port)
            .post("/api/v1/push", &json!({ "items": items }))
            .await
            .unwrap()
            .status
    });
    let watcher = queen_wire::Connection::connect(&db).await.unwrap();
    support::until(
        Duration::from_secs(10),
        "a push waiting for p1's lock",
        async || {
            let rows = watcher
                .query_sql(
                    "SELECT count(*) AS n FROM pg_stat_activity \
                  WHERE wait_event_type = 'Lock' AND query LIKE '%queen.push%'",
                    &[],
                )
                .await
                .unwrap();
            rows[0].get::<i64>("n").unwrap() == 1
        },
    )
    .await;
    // ... while, more than the listing's second of slack later, the other server stores a
    // message in p2 (not locked yet: the waiting push locks in partition order) ...
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s2.push_items(&[one("locks", "p2", "early")]).await;
    // ... and the waiting push goes on, behind it.
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(waiting.await.unwrap(), 201);

    // `retries`: a message pushed more than the second of slack after the one to be retried,
    // which is then dead-lettered and retried: moved behind it.
    s.push_items(&[one("retries", "p", "later")]).await;
    let path = "/api/v1/pop/queue/retries/partition/p?batch=1&wait=false";
    let first = s.pop(path).await;
    assert_eq!(first[0]["transactionId"], "p-0");
    assert_eq!(
        s.post("/api/v1/ack", &ack_body(&first[0], "completed"))
            .await
            .status,
        200
    );
    let failed = s.pop(path).await;
    assert_eq!(failed[0]["transactionId"], "retried");
    dead_letter_and_retry(&s, &failed[0], None).await;

    // Within a partition no message is timed before one stored ahead of it (a retried one
    // counts by its retry).
    let rows = watcher
        .query_sql(
            "SELECT count(*) AS n FROM queen.messages a JOIN queen.messages b \
                 ON b.pnum = a.pnum AND b.position > a.position \
              WHERE greatest(b.created_at, b.requeued_at) < greatest(a.created_at, a.requeued_at)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows[0].get::<i64>("n").unwrap(),
        0,
        "times out of position order"
    );

    for (queue, partition, n, completed) in [
        ("locks", "p2", 3, ["early", "late-2", "p2-0"]),
        ("retries", "p", 2, ["later", "p-0", "retried"]),
    ] {
        // Consumed to its end: completed.
        let got = s
            .pop(&format!(
                "/api/v1/pop/queue/{queue}/partition/{partition}?batch=10&autoAck=true&wait=false"
            ))
            .await;
        assert_eq!(got.len(), n, "{queue}: {got:?}");
        // A backlog pushed after it, newer than everything: the walk's first windows hold
        // only that, so the listing jumps.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let backlog: Vec<Value> = (0..2000)
            .map(|n| json!({"queue": queue, "partition": "backlog", "payload": n}))
            .collect();
        s.push_items(&backlog).await;
        let mut listed = page_is_the_newest(&s, &db, queue, "completed").await;
        listed.sort_unstable();
        assert_eq!(listed, completed, "{queue}");
    }
}

/// Newer traffic beside what a test lists: 2,000 messages in each of ten other partitions of
/// `queue`, all consumed.
async fn newer_traffic_consumed(s: &Server, queue: &str) {
    for p in 0..10 {
        let items: Vec<Value> = (0..2000)
            .map(|i| json!({"queue": queue, "partition": format!("ok{p}"), "payload": i}))
            .collect();
        s.push_items(&items).await;
        let got = s
            .pop(&format!(
                "/api/v1/pop/queue/{queue}/partition/ok{p}?batch=2000&autoAck=true&wait=false"
            ))
            .await;
        assert_eq!(got.len(), 2000);
    }
}

/// Asserts that the listing's first page of 50 of `queue`'s messages of `status` is what
/// PostgreSQL finds by looking at every message (the listing's order: newest first, then
/// partition and position); returns their transactionIds.
async fn page_is_the_newest(
    s: &Server,
    db: &queen_wire::Config,
    queue: &str,
    status: &str,
) -> Vec<String> {
    let conn = queen_wire::Connection::connect(db).await.unwrap();
    let truth: Vec<String> = conn
        .query_sql(
            "SELECT queen.txid(m.txuuid, m.txtext) AS tx FROM queen.messages m \
               JOIN queen.partitions p ON p.num = m.pnum \
               JOIN queen.queues q ON q.id = p.queue_id \
              WHERE q.name = $1 \
                AND (SELECT st.status FROM queen.message_status(p.id, m.position) st) = $2 \
              ORDER BY m.created_at DESC, m.pnum DESC, m.position DESC LIMIT 50",
            &[&queue, &status],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("tx").unwrap())
        .collect();
    let page = s
        .get_json(&format!(
            "/api/v1/messages?queue={queue}&status={status}&limit=50"
        ))
        .await;
    let listed: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["transactionId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, truth, "{queue}, {status}");
    truth
}

/// A stuck consumer leaves a long tail in one partition while the others are consumed: the
/// pending page is that tail's newest messages, read by key, whatever the tail's length and
/// the completed history beside it (the walk by time read all 20,000 completed messages here:
/// 5 s a call with 1M of them). A message a dead-letter retry moved to the tail is listed by
/// its time, as the walk lists it.
#[tokio::test]
async fn pending_messages_of_a_stuck_partition_are_read_by_key() {
    let (db, s) = Server::start_with_db("insp_stuck", &[]).await;
    let items = |partition: &str, from: usize, n: usize| -> Vec<Value> {
        (from..from + n)
            .map(|i| json!({"queue": "stuck", "partition": partition, "transactionId": format!("{partition}-{i}"), "payload": i}))
            .collect()
    };
    // The stuck partition: 11,990 messages, then `x`, then 10 more.
    for k in 0..12 {
        s.push_items(&items("s", k * 1000, if k == 11 { 990 } else { 1000 }))
            .await;
    }
    s.push_items(&[
        json!({"queue": "stuck", "partition": "s", "transactionId": "x", "payload": "x"}),
    ])
    .await;
    s.push_items(&items("s", 20_000, 10)).await;
    // A group reads up to `x`, dead-letters it, and `x` is retried: moved behind the 10.
    let g = "/api/v1/pop/queue/stuck/partition/s?consumerGroup=g&wait=false";
    for batch in [1000; 11].into_iter().chain([990]) {
        let got = s.pop(&format!("{g}&batch={batch}&autoAck=true")).await;
        assert_eq!(got.len(), batch);
    }
    let x = s.pop(&format!("{g}&batch=1")).await;
    assert_eq!(x[0]["transactionId"], "x");
    dead_letter_and_retry(&s, &x[0], Some("g")).await;
    newer_traffic_consumed(&s, "stuck").await;

    let truth = page_is_the_newest(&s, &db, "stuck", "pending").await;
    assert!(truth.iter().any(|t| t == "x"), "{truth:?}");

    let pending = listing_reads(&db, "stuck", None, "pending").await;
    eprintln!("{} rows read for a page of 50 pending", pending.messages);
    assert_eq!(pending.n, Some(50));
    assert!(
        pending.messages <= 200,
        "{} rows read for the 50 newest of a 12,001-message tail beside 20,000 completed",
        pending.messages
    );
}

/// A flood of dead letters in one partition, older than the traffic consumed since: the
/// dead-letter page is each partition's newest dead letters, read from their table by key
/// (the walk by time read every message newer than them), in the listing's order, a message
/// dead-lettered again after a retry included by its time.
#[tokio::test]
async fn dead_letters_past_a_flood_are_read_by_key() {
    let (db, s) = Server::start_with_db("insp_dead_flood", &[]).await;
    s.post(
        "/api/v1/configure",
        &json!({"queue": "flood", "options": {"retryLimit": 0}}),
    )
    .await
    .expect(200);
    let items = |partition: &str, n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"queue": "flood", "partition": partition, "transactionId": format!("{partition}-{i}"), "payload": i}))
            .collect()
    };
    let flood = items("bad", 10_051);
    for chunk in flood.chunks(10_000) {
        s.push_items(chunk).await;
    }
    let pop = "/api/v1/pop/queue/flood/partition/bad?wait=false";
    let dead_letter = async |messages: &[Value]| {
        for chunk in messages.chunks(10_000) {
            let acks: Vec<Value> = chunk
                .iter()
                .map(|m| {
                    let mut a = ack_body(m, "dlq");
                    a["error"] = json!("poison");
                    a
                })
                .collect();
            s.post("/api/v1/ack/batch", &json!({ "acknowledgments": acks }))
                .await
                .expect(200);
        }
    };
    let mut got = Vec::new();
    for _ in 0..2 {
        let batch = s.pop(&format!("{pop}&batch=10000")).await;
        dead_letter(&batch).await;
        got.extend(batch);
    }
    assert_eq!(got.len(), 10_051);
    // The oldest one is retried and fails again: its dead letter sits at the partition's end.
    let pid = got[0]["partitionId"].as_str().unwrap();
    let r = s
        .post(&format!("/api/v1/messages/{pid}/bad-0/retry"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let again = s.pop(&format!("{pop}&batch=10")).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["transactionId"], "bad-0");
    dead_letter(&again).await;
    newer_traffic_consumed(&s, "flood").await;

    let truth = page_is_the_newest(&s, &db, "flood", "dead_letter").await;
    assert_eq!(truth.len(), 50);

    let dead = listing_reads(&db, "flood", None, "dead_letter").await;
    eprintln!("{} rows read for a page of 50 dead letters", dead.messages);
    assert_eq!(dead.n, Some(50));
    assert!(
        dead.messages <= 200,
        "{} rows read for the 50 newest of 10,051 dead letters beside 20,000 completed",
        dead.messages
    );
}
