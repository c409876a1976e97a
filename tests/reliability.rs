//! Hardening (docs/reliability.md): slow statements, bad requests and state that only grows must
//! not hurt other requests. Through HTTP against a real PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use queen_wire::{Client, Connection};
use serde_json::json;
use support::Server;

/// Makes every message listing take `seconds` longer, as one over more data than its page
/// needs would: the real function renamed, and in its place one that sleeps, then calls it.
/// (These tests once made a slow listing from data — a `completed` page over 300,000 messages
/// that no consumer had read — until such listings learned to skip what cannot be on the page.)
async fn slow_listings(db: &queen_wire::Config, seconds: f64) {
    const ARGS: &str = "p_queue text, p_partition text, p_ns text, p_task text, p_status text, \
        p_from timestamptz, p_to timestamptz, p_limit integer, p_before_ts timestamptz, \
        p_before_pnum bigint, p_before_pos bigint";
    let c = Connection::connect(db).await.unwrap();
    c.batch_execute(&format!(
        "ALTER FUNCTION queen.list_messages RENAME TO list_messages_unslowed;
         CREATE FUNCTION queen.list_messages({ARGS})
         RETURNS TABLE (message_id uuid, transaction_id text, partition_id uuid,
                        queue_name text, partition_name text, namespace text, task text,
                        status text, trace_id uuid, producer_sub text, created_at timestamptz,
                        lease_expires_at timestamptz, pnum bigint, pos bigint)
         LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM pg_sleep({seconds});
             RETURN QUERY SELECT * FROM queen.list_messages_unslowed(p_queue, p_partition,
                 p_ns, p_task, p_status, p_from, p_to, p_limit, p_before_ts, p_before_pnum,
                 p_before_pos);
         END $$;"
    ))
    .await
    .unwrap();
}

/// A listing that runs for seconds does not disturb pushes and pops running beside it: it runs
/// on the inspection pool, and the hot path's connections are judged alive by their progress.
/// (Before: the listing shared a pipelined connection with the hot path, outlived the health
/// check's ping timeout, and the connection was aborted with every request on it: 503s.)
#[tokio::test]
async fn a_slow_listing_beside_pushes_and_pops_fails_none_of_them() {
    // Health checks every 100 ms, a ping must answer in 100 ms: any listing longer than that
    // on a shared connection would have had it aborted.
    let (db, s) = Server::start_with_db(
        "rel_slow_listing",
        &[("DB_HEALTH_INTERVAL", "100"), ("DB_HEALTH_TIMEOUT", "100")],
    )
    .await;
    s.push("big", "p", &[json!(1)]).await;
    slow_listings(&db, 1.0).await;

    let listing = async {
        let t = Instant::now();
        let r = s
            .get("/api/v1/messages?queue=big&status=completed&limit=10")
            .await
            .unwrap();
        (r.status, t.elapsed())
    };
    let traffic = async {
        let (mut ok, mut failed) = (0, 0);
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            let p = s
                .post(
                    "/api/v1/push",
                    &json!({"items": [{"queue": "hot", "payload": {"i": ok}}]}),
                )
                .await;
            let q = s.get("/api/v1/pop/queue/hot?autoAck=true").await.unwrap();
            if p.status == 201 && q.status == 200 {
                ok += 1;
            } else {
                failed += 1;
            }
        }
        (ok, failed)
    };
    let ((status, took), (ok, failed)) = tokio::join!(listing, traffic);
    assert_eq!(status, 200);
    assert!(
        took > Duration::from_millis(500),
        "the listing should be slow for this test to mean anything: {took:?}"
    );
    assert_eq!(
        failed, 0,
        "{ok} push+pop rounds succeeded beside the listing"
    );
    assert!(ok > 10);
}

/// A client that goes away while its listing runs cancels the statement on the server
/// (CancelRequest) instead of leaving it running.
#[tokio::test]
async fn an_abandoned_listing_is_cancelled_on_the_server() {
    const LISTING: &str = "/api/v1/messages?queue=big&status=completed&limit=10";
    let (db, s) = Server::start_with_db("rel_cancel_listing", &[]).await;
    s.push("big", "p", &[json!(1)]).await;
    slow_listings(&db, 2.0).await;
    // How long the listing runs when left alone, on this machine.
    let t = Instant::now();
    assert_eq!(s.get(LISTING).await.unwrap().status, 200);
    let alone = t.elapsed();
    assert!(
        alone > Duration::from_millis(300),
        "too fast to tell: {alone:?}"
    );

    let c = Connection::connect(&db).await.unwrap();
    let running = async || {
        let rows = c
            .query_sql(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND state = 'active'
                    AND query LIKE '%list_messages%' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        rows[0].single::<i64>().unwrap()
    };
    let port = s.port;
    let client = tokio::spawn(async move { support::request(port, "GET", LISTING, None).await });
    let started = Instant::now();
    while running().await == 0 {
        assert!(started.elapsed() < alone, "the listing never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client.abort();
    let aborted = Instant::now();
    // Left running it would go on for most of `alone`; cancelled, it stops at once.
    while running().await > 0 {
        assert!(
            aborted.elapsed() < alone / 3,
            "the statement kept running after its client went away ({alone:?} alone)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Names and keys PostgreSQL could not index (a btree row is capped near 2,700 bytes) are
/// refused up front with the limit in the message; the pushes folded with one are not hurt.
/// (Before: a 3,000-byte transactionId answered 500 and failed 44 of 120 concurrent pushes.)
#[tokio::test]
async fn oversized_values_are_refused_alone_and_named() {
    let s = Server::start("rel_sizes", &[]).await;
    let long = "t".repeat(3000);
    let port = s.port;
    let mut tasks = Vec::new();
    for i in 0..120 {
        let txid = if i == 60 {
            long.clone()
        } else {
            format!("ok-{i}")
        };
        tasks.push(tokio::spawn(async move {
            let body = json!({"items": [{"queue": "sizes", "partition": format!("p{}", i % 7),
                                         "transactionId": txid, "payload": i}]});
            support::request(
                port,
                "POST",
                "/api/v1/push",
                Some(body.to_string().as_bytes()),
            )
            .await
            .unwrap()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let refused: Vec<_> = statuses.iter().filter(|r| r.status != 201).collect();
    assert_eq!(refused.len(), 1, "only the oversized push is refused");
    refused[0].assert_error(400, "invalid_request");
    assert!(
        refused[0].json()["error"]
            .as_str()
            .unwrap()
            .contains("512 bytes")
    );

    for (path, body) in [
        (
            "/api/v1/ack",
            json!({"transactionId": "t", "partitionId": uuid::Uuid::nil(), "consumerGroup": "g".repeat(300)}),
        ),
        (
            "/api/v1/ack",
            json!({"transactionId": "t".repeat(600), "partitionId": uuid::Uuid::nil()}),
        ),
        (
            "/api/v1/configure",
            json!({"queue": "q", "namespace": "n".repeat(300)}),
        ),
    ] {
        let r = s.post(path, &body).await;
        assert_eq!(r.status, 400, "{path} {}", String::from_utf8_lossy(&r.body));
    }
    let group = "g".repeat(300);
    assert_eq!(
        s.get(&format!("/api/v1/pop/queue/sizes?consumerGroup={group}"))
            .await
            .unwrap()
            .status,
        400
    );
}

/// A token whose `sub` cannot be stored (a NUL) is refused at the door instead of failing the
/// pushes it would be folded with. (Before: 500, and the pushes coalesced with it failed.)
#[tokio::test]
async fn a_token_sub_that_cannot_be_stored_is_refused() {
    use jsonwebtoken::{EncodingKey, Header};
    const SECRET: &str = "reliability-secret";
    let s = Server::start(
        "rel_sub",
        &[("JWT_ENABLED", "true"), ("JWT_SECRET", SECRET)],
    )
    .await;
    let token = |sub: &str| {
        jsonwebtoken::encode(
            &Header::default(),
            &json!({"sub": sub, "role": "read-write"}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let push = json!({"items": [{"queue": "subs", "payload": 1}]}).to_string();
    let send = |t: String| {
        let (port, body) = (s.port, push.clone());
        async move {
            let auth = format!("Bearer {t}");
            support::request_with(
                port,
                "POST",
                "/api/v1/push",
                Some(body.as_bytes()),
                &[("Authorization", &auth)],
            )
            .await
            .unwrap()
        }
    };
    let bad = send(token("a\0b"));
    let good: Vec<_> = (0..20).map(|i| send(token(&format!("svc-{i}")))).collect();
    let (bad, good) = tokio::join!(bad, futures_util::future::join_all(good));
    bad.assert_error(401, "unauthorized");
    assert!(good.iter().all(|r| r.status == 201));
}

/// Many first pops at once — queue mode and a new named group — over many fresh partitions,
/// repeated on fresh queues: no deadlock, no 500, every message delivered once. (Before: pops
/// inserted cursor rows while walking partitions and deadlocked on each other's inserts.)
#[tokio::test]
async fn concurrent_first_pops_never_deadlock() {
    let s = Server::start("rel_first_pops", &[]).await;
    for round in 0..6 {
        let queue = format!("fresh-{round}");
        let items: Vec<_> = (0..60)
            .map(|i| json!({"queue": queue, "partition": format!("p{i}"), "payload": i}))
            .collect();
        assert_eq!(
            s.post("/api/v1/push", &json!({ "items": items }))
                .await
                .status,
            201
        );
        let port = s.port;
        let mut pops = Vec::new();
        for c in 0..24 {
            let group = if c % 2 == 0 {
                String::new()
            } else {
                "analytics".to_owned()
            };
            let path =
                format!("/api/v1/pop/queue/{queue}?batch=10&autoAck=true&consumerGroup={group}");
            pops.push(tokio::spawn(async move {
                let mut got = 0usize;
                for _ in 0..12 {
                    let r = support::request(port, "GET", &path, None).await.unwrap();
                    match r.status {
                        200 => got += r.json()["messages"].as_array().unwrap().len(),
                        204 => {}
                        other => {
                            panic!("pop answered {other}: {}", String::from_utf8_lossy(&r.body))
                        }
                    }
                }
                (c % 2, got)
            }));
        }
        let mut per_group = [0usize; 2];
        for p in pops {
            let (g, n) = p.await.unwrap();
            per_group[g] += n;
        }
        // Whatever the 12 rounds of pops left behind, nothing was delivered twice.
        assert!(
            per_group.iter().all(|&n| n <= 60),
            "round {round}: {per_group:?}"
        );
    }
}

/// Arrays where objects are expected, and option values out of range, are refused naming what
/// is wrong. (Before: `[…]` bodies were read positionally; maxSize 2^63-1 broke every later
/// push with 500s; leaseTime 0 became 1 silently.)
#[tokio::test]
async fn loose_shapes_and_out_of_range_options_are_refused() {
    let s = Server::start("rel_shapes", &[]).await;
    for (path, body) in [
        ("/api/v1/push", r#"[[{"queue":"q"}]]"#),
        ("/api/v1/push", r#"{"items":[["q","p",{}]]}"#),
        (
            "/api/v1/ack",
            r#"["t","00000000-0000-0000-0000-000000000000"]"#,
        ),
        ("/api/v1/ack/batch", r#"{"acknowledgments":[["t"]]}"#),
        ("/api/v1/configure", r#"["q"]"#),
        ("/api/v1/system/maintenance", "[true]"),
        ("/api/v1/transaction", r#"{"operations":[["push"]]}"#),
    ] {
        let r = s.post_raw(path, body.as_bytes()).await;
        assert_eq!(
            r.status,
            400,
            "{path} {body}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    for (option, value) in [
        ("maxSize", json!(9_223_372_036_854_775_807i64)),
        ("leaseTime", json!(0)),
        ("retryLimit", json!(-1)),
        ("ttl", json!(1.5)),
        ("priority", json!("high")),
    ] {
        let r = s
            .post(
                "/api/v1/configure",
                &json!({"queue": "opts", "options": {option: value}}),
            )
            .await;
        r.assert_error(400, "invalid_option");
        assert!(r.json()["error"].as_str().unwrap().contains(option));
    }
    // A queue with a large but storable maxSize keeps taking pushes.
    s.post(
        "/api/v1/configure",
        &json!({"queue": "opts", "options": {"maxSize": 1_000_000_000_000i64}}),
    )
    .await;
    assert_eq!(
        s.post(
            "/api/v1/push",
            &json!({"items": [{"queue": "opts", "payload": 1}]})
        )
        .await
        .status,
        201
    );
}

/// Writes raw bytes on a fresh connection and returns the status line (or None when the server
/// closed the connection without answering), reading for at most `wait`.
async fn raw_exchange(port: u16, bytes: &[u8], wait: Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    c.write_all(bytes).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(wait, c.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().map(str::to_owned)
}

/// Uploads that would hold a connection or memory get an answer at once: a declared length over
/// the limit (413, no `100 Continue`), codings nothing here decodes, bodies trickling past the
/// read deadline (408), a body before the token is checked (401 first). HEAD works on the
/// probes; other methods there are 405.
#[tokio::test]
async fn slow_and_oversized_uploads_are_answered_at_once() {
    let s = Server::start(
        "rel_uploads",
        &[("BODY_READ_TIMEOUT", "500"), ("MAX_BODY_SIZE", "1048576")],
    )
    .await;
    let port = s.port;
    let head = |extra: &str| {
        format!(
            "POST /api/v1/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}\r\n"
        )
    };
    let quick = Duration::from_secs(2);
    let status = raw_exchange(
        port,
        head("Content-Length: 1073741824\r\n").as_bytes(),
        quick,
    )
    .await;
    assert!(
        status.as_deref().is_some_and(|l| l.contains(" 413 ")),
        "{status:?}"
    );
    let status = raw_exchange(
        port,
        head("Content-Length: 1073741824\r\nExpect: 100-continue\r\n").as_bytes(),
        quick,
    )
    .await;
    assert!(
        status.as_deref().is_some_and(|l| l.contains(" 413 ")),
        "no 100 Continue: {status:?}"
    );
    let status = raw_exchange(
        port,
        head("Transfer-Encoding: gzip, chunked\r\n").as_bytes(),
        quick,
    )
    .await;
    assert!(
        status.as_deref().is_some_and(|l| l.contains(" 501 ")),
        "{status:?}"
    );
    let status = raw_exchange(
        port,
        format!(
            "{}7fffffffffff\r\n{{",
            head("Transfer-Encoding: chunked\r\n")
        )
        .as_bytes(),
        quick,
    )
    .await;
    assert!(
        status
            .as_deref()
            .is_some_and(|l| l.contains(" 413 ") || l.contains(" 400 ") || l.contains(" 408 ")),
        "a huge chunk is answered: {status:?}"
    );
    // A body trickling in is cut off at the read deadline.
    let slow = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        c.write_all(head("Content-Length: 100\r\n").as_bytes())
            .await
            .unwrap();
        let t = Instant::now();
        let mut buf = vec![0u8; 1024];
        loop {
            if c.write_all(b" ").await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(200), c.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    return (String::from_utf8_lossy(&buf[..n]).into_owned(), t.elapsed());
                }
                Ok(_) => break,
                Err(_) => {}
            }
            assert!(t.elapsed() < Duration::from_secs(10), "never cut off");
        }
        (String::new(), t.elapsed())
    };
    let (answer, took) = slow.await;
    assert!(answer.contains(" 408 "), "{answer}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // HEAD on the probes; other methods are 405.
    for path in ["/health", "/metrics", "/ready"] {
        let r = support::request(port, "HEAD", path, None).await.unwrap();
        assert_eq!(r.status, 200, "HEAD {path}");
        let r = support::request(port, "POST", path, None).await.unwrap();
        assert_eq!(r.status, 405, "POST {path}");
    }
    drop(s);
    // With JWT on, an unauthenticated upload is refused before its body is read.
    let s = Server::start(
        "rel_uploads_auth",
        &[
            ("JWT_ENABLED", "true"),
            ("JWT_SECRET", "x"),
            ("MAX_BODY_SIZE", "1024"),
        ],
    )
    .await;
    let big = format!(
        r#"{{"items":[{{"queue":"q","payload":"{}"}}]}}"#,
        "x".repeat(5000)
    );
    let r = s.post_raw("/api/v1/push", big.as_bytes()).await;
    r.assert_error(401, "unauthorized");
}

/// State that a client could grow without bound goes away: pops of made-up queue names leave no
/// wake-up entry behind, and long polls whose clients disconnected are not counted in flight.
#[tokio::test]
async fn wakeup_entries_and_in_flight_gauges_come_back_down() {
    let s = Server::start("rel_state", &[]).await;
    let metrics = || async { s.get("/metrics").await.unwrap().json() };
    for i in 0..300 {
        let r = s
            .get(&format!("/api/v1/pop/queue/made-up-{i}"))
            .await
            .unwrap();
        assert_eq!(r.status, 204);
    }
    assert_eq!(metrics().await["longPolls"]["queues"], 0);
    // Long polls whose clients go away.
    let port = s.port;
    let mut polls = Vec::new();
    for i in 0..20 {
        polls.push(tokio::spawn(async move {
            support::request(
                port,
                "GET",
                &format!("/api/v1/pop/queue/lp-{i}?wait=true&timeout=30000"),
                None,
            )
            .await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while metrics().await["longPolls"]["waiting"].as_u64().unwrap() < 20 {
        assert!(Instant::now() < deadline, "the long polls did not park");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for p in polls {
        p.abort();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = metrics().await;
        // The metrics request itself is in flight.
        if m["requests"]["inFlight"] == 1
            && m["longPolls"]["waiting"] == 0
            && m["longPolls"]["queues"] == 0
        {
            break;
        }
        assert!(Instant::now() < deadline, "gauges stayed up: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one request may cost is bounded: a body of 700,000 tiny items is refused before any
/// per-item structure is built, the largest pushes and ack batches the limits allow keep the
/// server's peak memory under 256 MiB, and bodies that do not fit the budget of bytes in flight
/// are answered 503. (Before: 700,000 empty items drove the server to a 2.2 GiB peak.)
#[tokio::test]
async fn one_request_cannot_blow_up_memory() {
    let s = Server::start("rel_memory", &[]).await;
    let baseline = s.memory_kib("VmRSS");
    // 16 MiB of empty items: over the item limit.
    let mut body = String::from(r#"{"items":["#);
    while body.len() < 16 * 1024 * 1024 - 64 {
        body.push_str(r#"{"queue":"m"},"#);
    }
    body.push_str(r#"{"queue":"m"}]}"#);
    s.post_raw("/api/v1/push", body.as_bytes())
        .await
        .assert_error(413, "too_many_items");
    let mut ack = String::from(r#"{"acknowledgments":["#);
    while ack.len() < 16 * 1024 * 1024 - 256 {
        ack.push_str(
            r#"{"transactionId":"t","partitionId":"00000000-0000-0000-0000-000000000000"},"#,
        );
    }
    ack.push_str(r#"{"transactionId":"t","partitionId":"00000000-0000-0000-0000-000000000000"}]}"#);
    s.post_raw("/api/v1/ack/batch", ack.as_bytes())
        .await
        .assert_error(413, "too_many_items");
    // The largest push the limits allow: 10,000 items of 1.5 KiB, three at once.
    let item = format!(r#"{{"queue":"m","payload":"{}"}}"#, "x".repeat(1500));
    let big = format!(r#"{{"items":[{}]}}"#, vec![item; 10_000].join(","));
    let port = s.port;
    let sends: Vec<_> = (0..3)
        .map(|_| {
            let big = big.clone();
            tokio::spawn(async move {
                support::request(port, "POST", "/api/v1/push", Some(big.as_bytes()))
                    .await
                    .unwrap()
                    .status
            })
        })
        .collect();
    for t in sends {
        assert_eq!(t.await.unwrap(), 201);
    }
    let peak = s.memory_kib("VmHWM");
    assert!(peak < 256 * 1024, "peak RSS {} MiB", peak / 1024);
    // Freed memory goes back to the system within the allocator's decay time (seconds).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let after = s.memory_kib("VmRSS");
        if after < baseline + 32 * 1024 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "RSS stayed up: {} MiB, {} MiB before",
            after / 1024,
            baseline / 1024
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
