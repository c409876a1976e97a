//! The disk buffer against real outages (docs/semantics.md, "Disk buffer"): PostgreSQL stopped hard under load,
//! and the server killed with SIGKILL while the buffer holds records. Every push answered 201
//! must be stored exactly once, each partition in push order, and no push may fail.
//!
//! These tests stop and start a server of their own, so they run on a private embedded cluster
//! whatever `DATABASE_URL` says, and skip (saying so) without PostgreSQL binaries.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use queen_wire::embedded::Cluster;
use queen_wire::{Client, Connection};
use serde_json::{Value, json};
use support::{Server, buffer_dir};

fn private_cluster(name: &str) -> Option<Cluster> {
    queen_wire::embedded::private_test_cluster(name).expect("start a private cluster")
}

/// Per producer: the sequence numbers whose push was answered 201, in order, and the statuses.
type Acked = Arc<Mutex<HashMap<usize, Vec<u64>>>>;

struct Load {
    acked: Acked,
    errors: Arc<Mutex<Vec<String>>>,
    first_buffered: Arc<Mutex<Option<Instant>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn start_load(port: u16, producers: usize) -> Load {
    let load = Load {
        acked: Arc::default(),
        errors: Arc::default(),
        first_buffered: Arc::default(),
        stop: Arc::default(),
        tasks: Vec::new(),
    };
    let mut tasks = Vec::new();
    for p in 0..producers {
        let (acked, errors, first, stop) = (
            load.acked.clone(),
            load.errors.clone(),
            load.first_buffered.clone(),
            load.stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let client = Server::client(port);
            let mut seq = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = json!({"items": [{"queue": "outage", "partition": format!("p{p}"), "payload": {"p": p, "s": seq}}]});
                match client.post("/api/v1/push", &body).await {
                    Ok(r) if r.status == 201 => {
                        let status = r.json()[0]["status"].as_str().unwrap_or("").to_owned();
                        if status == "buffered" {
                            first.lock().unwrap().get_or_insert_with(Instant::now);
                        }
                        assert!(status == "queued" || status == "buffered", "{status}");
                        acked.lock().unwrap().entry(p).or_default().push(seq);
                    }
                    Ok(r) => errors.lock().unwrap().push(format!("{}: {}", r.status, String::from_utf8_lossy(&r.body))),
                    Err(e) => errors.lock().unwrap().push(e.to_string()),
                }
                seq += 1;
            }
        }));
    }
    Load { tasks, ..load }
}

impl Load {
    async fn finish(self) -> (HashMap<usize, Vec<u64>>, Vec<String>, Option<Instant>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        let errors = self.errors.lock().unwrap().clone();
        let first = *self.first_buffered.lock().unwrap();
        (acked, errors, first)
    }
}

async fn wait_drained(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = s.get("/api/v1/status/buffers").await {
            let b = r.json();
            if b["pending"] == 0 && b["dbHealthy"] == true {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the buffer did not drain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the database holds: per producer, the sequence numbers in partition order.
async fn stored(cluster_config: &queen_wire::Config) -> HashMap<usize, Vec<u64>> {
    let c = Connection::connect(cluster_config).await.unwrap();
    let rows = c
        .query_sql(
            "SELECT p.name, (m.payload::jsonb->>'s')::int8 AS seq FROM queen.messages m
               JOIN queen.partitions p ON p.num = m.pnum
               JOIN queen.queues q ON q.id = p.queue_id
              WHERE q.name = 'outage' ORDER BY p.name, m.position",
            &[],
        )
        .await
        .unwrap();
    let mut out: HashMap<usize, Vec<u64>> = HashMap::new();
    for r in rows {
        let name: String = r.get("name").unwrap();
        let producer: usize = name.trim_start_matches('p').parse().unwrap();
        out.entry(producer)
            .or_default()
            .push(u64::try_from(r.get::<i64>("seq").unwrap()).unwrap());
    }
    out
}

fn assert_exactly_once_in_order(
    acked: &HashMap<usize, Vec<u64>>,
    stored: &HashMap<usize, Vec<u64>>,
) {
    for (p, seqs) in acked {
        let got = stored.get(p).cloned().unwrap_or_default();
        // Everything acknowledged is stored once, in push order. (A push whose answer was lost
        // could be stored without being acknowledged; the loads here never lose answers, so the
        // lists must be equal.)
        assert_eq!(
            &got, seqs,
            "partition p{p}: stored sequence differs from the acknowledged one"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_stopped_hard_under_load_loses_nothing() {
    let Some(cluster) = private_cluster("outage") else {
        return;
    };
    let db = cluster.config("postgres");
    let s = Server::start_on(&db, buffer_dir("outage"), false, &[]).await;
    let load = start_load(s.port, 4);
    tokio::time::sleep(Duration::from_millis(700)).await;

    let cluster = Arc::new(Mutex::new(cluster));
    let stopped_at = Instant::now();
    {
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.lock().unwrap().stop_mode(true).unwrap())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let down = s.get("/api/v1/status/buffers").await.unwrap().json();
    assert_eq!(down["dbHealthy"], false);
    assert!(
        down["pending"].as_u64().unwrap() > 0,
        "pushes were buffered during the outage: {down}"
    );
    // Pops cannot be buffered: 503 while the database is away.
    let r = s.get("/api/v1/pop/queue/outage").await.unwrap();
    r.assert_error(503, "database_unavailable");
    let ack = json!({"transactionId": "t", "partitionId": "0193b0a2-1111-7000-8000-000000000001"});
    s.post("/api/v1/ack", &ack)
        .await
        .assert_error(503, "database_unavailable");

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.lock().unwrap().restart().unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (acked, errors, first_buffered) = load.finish().await;
    assert!(
        errors.is_empty(),
        "no push failed during the outage: {errors:?}"
    );
    wait_drained(&s).await;

    let total: usize = acked.values().map(Vec::len).sum();
    assert!(total > 20, "the load ran: {total}");
    assert_exactly_once_in_order(&acked, &stored(&db).await);
    let gap = first_buffered.map(|t| t.saturating_duration_since(stopped_at));
    eprintln!(
        "failover gap (stop issued -> first buffered answer): {gap:?}; {total} pushes acknowledged"
    );
    assert!(
        gap.is_some_and(|g| g < Duration::from_secs(1)),
        "failover within 1 s: {gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_killed_with_a_full_buffer_replays_on_restart() {
    let Some(cluster) = private_cluster("sigkill") else {
        return;
    };
    let db = cluster.config("postgres");
    let dir = buffer_dir("sigkill");
    let s = Server::start_on(&db, dir.clone(), true, &[]).await;
    // Some stored normally, then the database goes away and the rest is buffered.
    let load = start_load(s.port, 3);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cluster = Arc::new(Mutex::new(cluster));
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.lock().unwrap().stop_mode(true).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (acked, errors, _) = load.finish().await;
    assert!(errors.is_empty(), "{errors:?}");
    let pending = s.get("/api/v1/status/buffers").await.unwrap().json()["pending"]
        .as_u64()
        .unwrap();
    assert!(pending > 0, "the buffer holds records when the server dies");
    s.kill();

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.lock().unwrap().restart().unwrap())
        .await
        .unwrap();
    let s = Server::start_on(&db, dir, false, &[]).await;
    // /ready only answers 200 once the start-up replay has caught up.
    assert_eq!(
        s.get("/api/v1/status/buffers").await.unwrap().json()["pending"],
        0
    );
    assert_exactly_once_in_order(&acked, &stored(&db).await);
    // New pushes after the replay go straight to the database.
    let r = s.post("/api/v1/push", &json!({"items": [{"queue": "outage", "partition": "p0", "payload": {"p": 0, "s": 1_000_000}}]})).await;
    assert_eq!(r.json()[0]["status"], Value::from("queued"));
}

#[tokio::test]
async fn push_maintenance_buffers_every_push_and_drains_when_off() {
    let s = Server::start("maintenance", &[]).await;
    let r = s
        .post("/api/v1/system/maintenance", &json!({"enabled": true}))
        .await;
    assert_eq!(r.json()["enabled"], true);
    let r = s
        .post(
            "/api/v1/push",
            &json!({"items": [{"queue": "m", "payload": 1}, {"queue": "m", "payload": 2}]}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()[0]["status"], "buffered");
    assert_eq!(r.json()[1]["partition"], "Default");
    assert_eq!(
        s.get("/api/v1/status/buffers").await.unwrap().json()["pending"],
        2
    );
    assert_eq!(
        s.get("/api/v1/pop/queue/m").await.unwrap().status,
        204,
        "nothing drains during maintenance"
    );
    s.post("/api/v1/system/maintenance", &json!({"enabled": false}))
        .await;
    wait_drained(&s).await;
    let r = s.get("/api/v1/pop/queue/m?batch=10").await.unwrap().json();
    let data: Vec<Value> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].clone())
        .collect();
    assert_eq!(data, vec![json!(1), json!(2)]);
}

/// A size limit on the buffer: concurrent pushes that would go past it are refused whole with
/// `503 buffer_full` and nothing of them is stored; every push accepted before is replayed
/// exactly once; once replayed and cleaned up, the buffer takes pushes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_buffer_refuses_pushes_and_keeps_what_it_accepted() {
    const MAX: u64 = 20_000;
    let s = Server::start("buffer_full", &[("FILE_BUFFER_MAX_BYTES", "20000")]).await;
    let r = s
        .post("/api/v1/system/maintenance", &json!({"enabled": true}))
        .await;
    assert_eq!(r.json()["enabled"], true);
    let filler = "x".repeat(500);
    let mut producers = Vec::new();
    for p in 0..4 {
        let (port, filler) = (s.port, filler.clone());
        producers.push(tokio::spawn(async move {
            let client = Server::client(port);
            let (mut accepted, mut refused) = (Vec::new(), 0);
            for seq in 0u64.. {
                let body = json!({"items": [{"queue": "capped", "partition": format!("p{p}"),
                                             "payload": {"p": p, "s": seq, "f": filler}}]});
                let r = client.post("/api/v1/push", &body).await.unwrap();
                match r.status {
                    201 => accepted.push(seq),
                    503 => {
                        assert_eq!(r.json()["code"], "buffer_full");
                        refused += 1;
                        if refused == 3 {
                            break;
                        }
                    }
                    other => panic!("push answered {other}"),
                }
            }
            (p, accepted)
        }));
    }
    let mut accepted = HashMap::new();
    for t in producers {
        let (p, seqs) = t.await.unwrap();
        accepted.insert(p, seqs);
    }
    let total: usize = accepted.values().map(Vec::len).sum();
    let status = s.get("/api/v1/status/buffers").await.unwrap().json();
    assert_eq!(status["maxBytes"], MAX);
    assert!(status["bytes"].as_u64().unwrap() <= MAX, "{status}");
    assert_eq!(status["pending"], total as u64, "{status}");
    assert!(
        total > 4,
        "the buffer took pushes before it was full: {total}"
    );

    s.post("/api/v1/system/maintenance", &json!({"enabled": false}))
        .await;
    wait_drained(&s).await;
    // One partition per pop: pop until nothing is left.
    let mut stored: HashMap<usize, Vec<u64>> = HashMap::new();
    loop {
        let r = s
            .get("/api/v1/pop/queue/capped?batch=1000&autoAck=true")
            .await
            .unwrap();
        if r.status == 204 {
            break;
        }
        for m in r.json()["messages"].as_array().unwrap() {
            let p = m["data"]["p"].as_u64().unwrap() as usize;
            stored
                .entry(p)
                .or_default()
                .push(m["data"]["s"].as_u64().unwrap());
        }
    }
    assert_eq!(
        stored, accepted,
        "exactly the accepted pushes are stored, once, in order"
    );

    // Replayed segments are deleted once the buffer is idle: it takes pushes again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.get("/api/v1/status/buffers").await.unwrap().json()["bytes"]
        .as_u64()
        .unwrap()
        > MAX / 2
    {
        assert!(
            Instant::now() < deadline,
            "replayed segments were not removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.post("/api/v1/system/maintenance", &json!({"enabled": true}))
        .await;
    let r = s
        .post(
            "/api/v1/push",
            &json!({"items": [{"queue": "capped", "partition": "p0", "payload": 1}]}),
        )
        .await;
    assert_eq!(r.json()[0]["status"], "buffered");
}

/// The background re-read of the shared settings never undoes a change made through this server
/// with a value it read before the change was stored: with the re-read running every
/// millisecond, each answer (and the next read) shows the mode just set, 100 times per mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn maintenance_changes_are_not_undone_by_the_settings_refresh() {
    let s = Server::start("maintenance_refresh", &[("SETTINGS_REFRESH", "1")]).await;
    for round in 0..100 {
        let on = round % 2 == 0;
        for path in [
            "/api/v1/system/maintenance",
            "/api/v1/system/maintenance/pop",
        ] {
            let r = s.post(path, &json!({ "enabled": on })).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.json()["enabled"], on, "{path} round {round}: answer");
            let now = s.get(path).await.unwrap().json();
            assert_eq!(now["enabled"], on, "{path} round {round}: read back");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_started_while_the_database_is_down_buffers_then_catches_up() {
    let Some(cluster) = private_cluster("startdown") else {
        return;
    };
    let db = cluster.config("postgres");
    let cluster = Arc::new(Mutex::new(cluster));
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.lock().unwrap().stop_mode(true).unwrap())
        .await
        .unwrap();

    let s = Server::start_unready(&db, buffer_dir("startdown"), &[]).await;
    assert_eq!(
        s.get("/ready").await.unwrap().status,
        503,
        "not ready without the database"
    );
    for seq in 0..5 {
        let r = s
            .post("/api/v1/push", &json!({"items": [{"queue": "outage", "partition": "p0", "payload": {"p": 0, "s": seq}}]}))
            .await;
        assert_eq!(r.status, 201);
        assert_eq!(r.json()[0]["status"], "buffered");
    }
    s.get("/api/v1/pop/queue/outage")
        .await
        .unwrap()
        .assert_error(503, "database_unavailable");

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.lock().unwrap().restart().unwrap())
        .await
        .unwrap();
    wait_drained(&s).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.get("/ready").await.unwrap().status != 200 {
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acked = HashMap::from([(0usize, (0..5).collect::<Vec<u64>>())]);
    assert_exactly_once_in_order(&acked, &stored(&db).await);
}
