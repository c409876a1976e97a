//! Hardening (docs/reliability.md): slow statements, bad requests and state that only grows must
//! not hurt other requests. Through HTTP against a real PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use queen_wire::{Client, Connection};
use serde_json::json;
use support::Server;

/// Fills queue `queue` (partition `Default`) with `n` messages straight through SQL: a data set
/// large enough for listings to take seconds, in a few seconds.
async fn fill(db: &queen_wire::Config, s: &Server, queue: &str, n: i64) {
    s.post("/api/v1/configure", &json!({"queue": queue})).await;
    let c = Connection::connect(db).await.unwrap();
    c.batch_execute(&format!(
        "WITH p AS (SELECT p.num FROM queen.partitions p JOIN queen.queues q ON q.id = p.queue_id
                     WHERE q.name = '{queue}' AND p.name = 'Default')
         INSERT INTO queen.messages (pnum, position, id, txuuid, payload)
         SELECT p.num, g, gen_random_uuid(), gen_random_uuid(), '{{\"n\": ' || g || '}}'
           FROM p, generate_series(1, {n}) g;
         UPDATE queen.partitions SET last_position = {n}
          WHERE id = (SELECT p.id FROM queen.partitions p JOIN queen.queues q ON q.id = p.queue_id
                       WHERE q.name = '{queue}' AND p.name = 'Default');
         ANALYZE queen.messages;"
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
    let db = queen_wire::embedded::test_config("rel_slow_listing")
        .await
        .unwrap();
    // Health checks every 100 ms, a ping must answer in 100 ms: any listing longer than that
    // on a shared connection would have had it aborted.
    let s = Server::start_on(
        &db,
        support::buffer_dir("rel_slow_listing"),
        false,
        &[("DB_HEALTH_INTERVAL", "100"), ("DB_HEALTH_TIMEOUT", "100")],
    )
    .await;
    fill(&db, &s, "big", 300_000).await;

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
    let db = queen_wire::embedded::test_config("rel_cancel_listing")
        .await
        .unwrap();
    let s = Server::start_on(&db, support::buffer_dir("rel_cancel_listing"), false, &[]).await;
    fill(&db, &s, "big", 400_000).await;
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
        rows[0].get::<i64>(0).unwrap()
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
