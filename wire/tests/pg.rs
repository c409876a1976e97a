//! The client against a real PostgreSQL (embedded cluster, or `DATABASE_URL`).

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::time::Duration;

use queen_wire::embedded::test_config;
use queen_wire::types::{Json, Timestamp};
use queen_wire::{Client, Connection, Error, Event, Listener, Pipeline, Pool, PoolConfig};
use uuid::Uuid;

async fn connect(name: &str) -> Connection {
    let cfg = test_config(name).await.expect("test database");
    Connection::connect(&cfg).await.expect("connect")
}

#[tokio::test]
async fn every_supported_type_roundtrips() {
    let c = connect("types").await;
    let st = c
        .prepare(
            "SELECT $1::bool, $2::int2, $3::int4, $4::int8, $5::float8, $6::text, $7::bytea, \
             $8::uuid, $9::timestamptz, $10::jsonb, $11::int8[], $12::text[], $13::uuid[], $14::int4",
        )
        .await
        .unwrap();
    let id = Uuid::now_v7();
    let ts = Timestamp(1_761_000_000_123_456);
    let rows = c
        .query(
            &st,
            &[
                &true,
                &-3i16,
                &70_000i32,
                &(1i64 << 40),
                &2.5f64,
                &"héllo",
                &vec![0u8, 1, 255],
                &id,
                &ts,
                &Json(r#"{"a": [1, 2]}"#),
                &vec![1i64, -2],
                &vec!["x".to_string(), "y".to_string()],
                &vec![id],
                &None::<i32>,
            ],
        )
        .await
        .unwrap();
    let r = &rows[0];
    assert!(r.get::<bool>(0).unwrap());
    assert_eq!(r.get::<i16>(1).unwrap(), -3);
    assert_eq!(r.get::<i32>(2).unwrap(), 70_000);
    assert_eq!(r.get::<i64>(3).unwrap(), 1 << 40);
    assert_eq!(r.get::<f64>(4).unwrap(), 2.5);
    assert_eq!(r.get::<&str>(5).unwrap(), "héllo");
    assert_eq!(r.get::<Vec<u8>>(6).unwrap(), vec![0, 1, 255]);
    assert_eq!(r.get::<Uuid>(7).unwrap(), id);
    assert_eq!(r.get::<Timestamp>(8).unwrap(), ts);
    // jsonb normalises whitespace.
    assert_eq!(r.get::<Json<String>>(9).unwrap().0, r#"{"a": [1, 2]}"#);
    assert_eq!(r.get::<Vec<i64>>(10).unwrap(), vec![1, -2]);
    assert_eq!(r.get::<Vec<String>>(11).unwrap(), vec!["x", "y"]);
    assert_eq!(r.get::<Vec<Uuid>>(12).unwrap(), vec![id]);
    assert_eq!(r.get::<Option<i32>>(13).unwrap(), None);
    // A type mismatch is an error, not a misread.
    assert!(matches!(
        r.get::<i64>(2),
        Err(Error::Decode { column: 2, .. })
    ));
    assert!(matches!(r.get::<i32>(13), Err(Error::Decode { .. })));
    // Wrong parameter types are refused before anything is sent.
    let mut p = Pipeline::new();
    assert!(matches!(p.query(&st, &[&1i32]), Err(Error::Encode { .. })));
    let bad: [&dyn queen_wire::ToSql; 14] = [
        &1i32,
        &1i16,
        &1i32,
        &1i64,
        &1.0f64,
        &"",
        &vec![0u8],
        &id,
        &ts,
        &Json("{}"),
        &vec![1i64],
        &vec![String::new()],
        &vec![id],
        &None::<i32>,
    ];
    assert!(matches!(
        p.query(&st, &bad),
        Err(Error::Encode { index: 0, .. })
    ));
    assert!(p.is_empty());
}

#[tokio::test]
async fn columns_are_read_by_names_resolved_once() {
    let c = connect("wire_columns_by_name").await;
    let st = c
        .prepare("SELECT $1::int4 AS a, 'x'::text AS b")
        .await
        .unwrap();
    let (a, b) = (st.column("a").unwrap(), st.column("b").unwrap());
    assert!(matches!(st.column("nope"), Err(Error::Decode { .. })));
    let rows = c.query(&st, &[&7i32]).await.unwrap();
    assert_eq!(rows[0].get::<i32>(a).unwrap(), 7);
    assert_eq!(rows[0].get::<&str>(b).unwrap(), "x");
    // One-off reads by name, and the only column of a one-column row.
    assert_eq!(rows[0].get::<&str>("b").unwrap(), "x");
    assert!(matches!(rows[0].get::<i32>("c"), Err(Error::Decode { .. })));
    assert!(matches!(rows[0].single::<i32>(), Err(Error::Decode { .. })));
    let one = c.query_sql("SELECT 5::int8", &[]).await.unwrap();
    assert_eq!(one[0].single::<i64>().unwrap(), 5);
}

#[tokio::test]
async fn server_now_is_close_to_local_now() {
    let c = connect("now").await;
    let rows = c.query_sql("SELECT now()", &[]).await.unwrap();
    let server = rows[0].get::<Timestamp>(0).unwrap();
    let local = Timestamp::now();
    assert!(
        (server.0 - local.0).abs() < 60_000_000,
        "{server:?} vs {local:?}"
    );
}

#[tokio::test]
async fn one_pipeline_many_statements_one_sync() {
    let c = connect("pipeline").await;
    c.batch_execute("CREATE TABLE t (id int8 PRIMARY KEY, v text NOT NULL)")
        .await
        .unwrap();
    let ins = c
        .prepare("INSERT INTO t VALUES ($1, $2) RETURNING id")
        .await
        .unwrap();
    let mut p = Pipeline::new();
    for i in 0..500i64 {
        p.query(&ins, &[&i, &format!("v{i}")]).unwrap();
    }
    p.sync();
    let segs = c.send(p).await.unwrap();
    assert_eq!(segs.len(), 1);
    let results = segs.into_iter().next().unwrap().unwrap();
    assert_eq!(results.len(), 500);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(
            r.rows[0].get::<i64>(0).unwrap(),
            i as i64,
            "results come back in order"
        );
        assert_eq!(r.rows_affected(), 1);
    }
    let n = c.query_sql("SELECT count(*) FROM t", &[]).await.unwrap();
    assert_eq!(n[0].get::<i64>(0).unwrap(), 500);
}

#[tokio::test]
async fn error_fails_its_segment_and_later_segments_run() {
    let c = connect("segments").await;
    c.batch_execute("CREATE TABLE t (id int8 PRIMARY KEY)")
        .await
        .unwrap();
    let ins = c.prepare("INSERT INTO t VALUES ($1)").await.unwrap();
    let mut p = Pipeline::new();
    p.query(&ins, &[&1i64]).unwrap().sync();
    // Segment 2: 2 is inserted, then a duplicate of 1 fails; the segment rolls back as a whole.
    p.query(&ins, &[&2i64])
        .unwrap()
        .query(&ins, &[&1i64])
        .unwrap()
        .query(&ins, &[&3i64])
        .unwrap();
    p.sync();
    p.query(&ins, &[&4i64]).unwrap().sync();
    let segs = c.send(p).await.unwrap();
    assert_eq!(segs.len(), 3);
    assert!(segs[0].is_ok());
    let err = segs[1].as_ref().unwrap_err();
    let db = err.as_db().expect("a server error");
    assert_eq!(db.code, "23505");
    assert_eq!(db.constraint.as_deref(), Some("t_pkey"));
    assert!(db.detail.as_deref().unwrap_or("").contains("(id)=(1)"));
    assert!(!err.is_connection());
    assert_eq!(segs[2].as_ref().unwrap().len(), 1);
    let rows = c
        .query_sql("SELECT array_agg(id ORDER BY id) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(
        rows[0].get::<Vec<i64>>(0).unwrap(),
        vec![1, 4],
        "segment 2 rolled back whole"
    );
    // The connection is still usable, outside any transaction.
    let rows = c.query_sql("SELECT 1::int4", &[]).await.unwrap();
    assert_eq!(rows[0].get::<i32>(0).unwrap(), 1);
}

#[tokio::test]
async fn many_pipelines_in_flight_on_one_connection() {
    let c = connect("inflight").await;
    let st = c.prepare("SELECT $1::int8 * 2").await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..64i64 {
        let (c, st) = (c.clone(), st.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..50i64 {
                let n = t * 1000 + i;
                let mut p = Pipeline::new();
                p.query(&st, &[&n]).unwrap().sync();
                p.query(&st, &[&(n + 1)]).unwrap().sync();
                let segs = c.send(p).await.unwrap();
                let a = segs[0].as_ref().unwrap()[0].rows[0].get::<i64>(0).unwrap();
                let b = segs[1].as_ref().unwrap()[0].rows[0].get::<i64>(0).unwrap();
                assert_eq!((a, b), (n * 2, (n + 1) * 2));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn large_pipeline_does_not_deadlock() {
    // Results far larger than socket buffers while the request side is also large: reading and
    // writing must proceed together.
    let c = connect("bigpipe").await;
    let st = c
        .prepare("SELECT repeat('x', 4000), $1::int4")
        .await
        .unwrap();
    let mut p = Pipeline::new();
    for i in 0..5000i32 {
        p.query(&st, &[&i]).unwrap();
    }
    let segs = c.send(p).await.unwrap();
    let rows = segs[0].as_ref().unwrap();
    assert_eq!(rows.len(), 5000);
    assert_eq!(rows[4999].rows[0].get::<i32>(1).unwrap(), 4999);
}

#[tokio::test]
async fn statement_prepared_elsewhere_is_parsed_lazily() {
    let cfg = test_config("lazy").await.unwrap();
    let a = Connection::connect(&cfg).await.unwrap();
    let b = Connection::connect(&cfg).await.unwrap();
    let st = a.prepare("SELECT $1::text || '!'").await.unwrap();
    // b never prepared it: the Parse goes in front of the first use, in the same flight.
    let rows = b.query(&st, &[&"hi"]).await.unwrap();
    assert_eq!(rows[0].get::<&str>(0).unwrap(), "hi!");
    let rows = b.query(&st, &[&"again"]).await.unwrap();
    assert_eq!(rows[0].get::<&str>(0).unwrap(), "again!");
}

#[tokio::test]
async fn prepare_errors_are_reported() {
    let c = connect("badprep").await;
    let err = c.prepare("SELEKT 1").await.unwrap_err();
    assert_eq!(err.code(), Some("42601"));
    let err = c
        .query_sql("SELECT * FROM missing_table", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("42P01"));
    let err = c
        .batch_execute("CREATE TABLE x (a int); CREATE TABLE x (a int)")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("42P07"));
}

#[tokio::test]
async fn statement_timeout_is_set_at_connect() {
    let mut cfg = test_config("timeout").await.unwrap();
    cfg.statement_timeout = Some(Duration::from_millis(200));
    let c = Connection::connect(&cfg).await.unwrap();
    let err = c.query_sql("SELECT pg_sleep(5)", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some("57014"), "{err}");
    let rows = c.query_sql("SHOW statement_timeout", &[]).await.unwrap();
    assert_eq!(rows[0].get::<&str>(0).unwrap(), "200ms");
}

#[tokio::test]
async fn settings_are_set_at_connect_and_a_bad_one_is_refused() {
    let mut cfg = test_config("settings").await.unwrap();
    cfg.settings = vec![
        ("work_mem".into(), "16MB".into()),
        ("max_parallel_workers_per_gather".into(), "0".into()),
    ];
    let c = Connection::connect(&cfg).await.unwrap();
    for (name, want) in [
        ("work_mem", "16MB"),
        ("max_parallel_workers_per_gather", "0"),
    ] {
        let rows = c.query_sql(&format!("SHOW {name}"), &[]).await.unwrap();
        assert_eq!(rows[0].get::<&str>(0).unwrap(), want);
    }
    cfg.settings = vec![("work_mem".into(), "lots".into())];
    let err = Connection::connect(&cfg).await.err().unwrap();
    assert_eq!(err.code(), Some("22023"), "{err}");
}

#[tokio::test]
async fn cancel_request_stops_a_running_statement() {
    let c = connect("cancel").await;
    let token = c.cancel_token();
    let q = tokio::spawn({
        let c = c.clone();
        async move { c.query_sql("SELECT pg_sleep(30)", &[]).await }
    });
    // Cancel once the statement is visibly running.
    let probe = connect("cancel_probe").await;
    loop {
        let rows = probe
            .query_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'",
                &[],
            )
            .await
            .unwrap();
        if rows[0].get::<i64>(0).unwrap() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    token.cancel().await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), q)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Some("57014"));
}

#[tokio::test]
async fn listen_notify_stream() {
    let cfg = test_config("notify").await.unwrap();
    let mut l = Listener::connect(&cfg).await.unwrap();
    l.listen("queue events").await.unwrap();
    let c = Connection::connect(&cfg).await.unwrap();
    c.batch_execute("NOTIFY \"queue events\", 'one'; NOTIFY \"queue events\", 'two'")
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), l.recv())
            .await
            .unwrap()
        {
            Event::Notification(n) => {
                assert_eq!(n.channel, "queue events");
                got.push(n.payload);
            }
            Event::Reconnected => panic!("unexpected reconnect"),
        }
    }
    assert_eq!(got, vec!["one", "two"]);
}

#[tokio::test]
async fn pool_spreads_work_and_serves_waiters_in_turn() {
    let cfg = test_config("pool").await.unwrap();
    let pool = Pool::connect(
        cfg,
        PoolConfig {
            size: 3,
            ..PoolConfig::default()
        },
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pool.status().connected < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "pool did not connect every slot"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let st = pool.prepare("SELECT pg_backend_pid()").await.unwrap();
    // Shared sends use every connection when they overlap.
    let mut pids = std::collections::HashSet::new();
    let mut futs = Vec::new();
    for _ in 0..30 {
        let (pool, st) = (pool.clone(), st.clone());
        futs.push(tokio::spawn(async move {
            let mut p = Pipeline::new();
            p.query_sql("SELECT pg_sleep(0.05)", &[]).unwrap();
            p.query(&st, &[]).unwrap();
            let segs = pool.send(p).await.unwrap();
            segs[0].as_ref().unwrap()[1].rows[0].get::<i32>(0).unwrap()
        }));
    }
    for f in futs {
        pids.insert(f.await.unwrap());
    }
    assert_eq!(pids.len(), 3, "least-loaded routing used every connection");

    // Exclusive checkout: never more than `size` holders at once, and every waiter is served.
    let holders = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let max = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut futs = Vec::new();
    for _ in 0..10 {
        let (pool, holders, max) = (pool.clone(), holders.clone(), max.clone());
        futs.push(tokio::spawn(async move {
            let c = pool.acquire().await.unwrap();
            let now = holders.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            max.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
            c.query_sql("SELECT pg_sleep(0.02)", &[]).await.unwrap();
            holders.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }));
    }
    for f in futs {
        f.await.unwrap();
    }
    assert_eq!(max.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(pool.status().checked_out, 0);
    assert_eq!(pool.status().connected, 3);
}

/// A connection busy with a statement longer than the health check's timeout is working, not
/// dead: the pool keeps it, and every pipeline queued behind the statement is answered. (The
/// ping waits behind the statement; an old check aborted the connection and failed them all.)
#[tokio::test]
async fn a_busy_connection_outlives_its_health_check() {
    let cfg = test_config("busy_health").await.unwrap();
    let pool = Pool::connect(
        cfg,
        PoolConfig {
            size: 1,
            health_interval: Duration::from_millis(50),
            health_timeout: Duration::from_millis(100),
            ..PoolConfig::default()
        },
    )
    .await
    .unwrap();
    let pid_of = |rows: Vec<queen_wire::Row>| rows[0].get::<i32>(0).unwrap();
    let pid = pid_of(
        pool.query_sql("SELECT pg_backend_pid()", &[])
            .await
            .unwrap(),
    );
    let slow = pool.query_sql("SELECT pg_sleep(1.5)", &[]);
    let behind = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut answers = Vec::new();
        for _ in 0..5 {
            answers.push(pool.query_sql("SELECT pg_backend_pid()", &[]).await);
        }
        answers
    };
    let (slow, behind) = tokio::join!(slow, behind);
    slow.unwrap();
    for a in behind {
        assert_eq!(pid_of(a.unwrap()), pid, "answered on the same connection");
    }
    assert_eq!(
        pid_of(
            pool.query_sql("SELECT pg_backend_pid()", &[])
                .await
                .unwrap()
        ),
        pid,
        "the connection was kept"
    );
}
