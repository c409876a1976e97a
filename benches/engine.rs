//! Engine throughput beside the raw PostgreSQL ceiling, measured side by side in one run.
//!
//! Scenarios (each runs for `SECS` seconds; the whole sequence runs `ROUNDS` times and the median
//! of each is reported):
//!
//! * `raw_insert_100`: the ceiling — `CONCURRENCY` tasks, each inserting 100 rows per statement
//!   (`INSERT … SELECT FROM unnest(…)`, one commit each) into a table shaped like the engine's
//!   message table, through the wire client;
//! * `push_100`: `CONCURRENCY` tasks, each pushing 100 messages per call;
//! * `push_1_x64`: 64 tasks, each pushing one message per call (coalescing at work);
//! * `pop_ack_100`: `CONCURRENCY` consumers, each popping batches of 100 (any partition) and
//!   acking them, draining the backlog `push_100` left; the rate is over the time until it is
//!   empty (or `SECS`);
//! * `push_100_buffered`, `push_1_x64_buffered`: the same two pushes with push maintenance on,
//!   so every push goes to the disk buffer (answered after its fsync);
//! * `replay`: records per second replayed from the buffer into the database afterwards;
//! * `push_100_sealed`, `push_1_x64_sealed`, `replay_sealed`: the same three on an engine with an
//!   encryption key, whose buffer seals every record.
//!
//! Each call (raw or push) targets one partition, rotating over `PARTITIONS`, as a producer
//! batching by key does.
//!
//! Payload: 200 bytes of JSON. Run: `cargo bench --bench engine` (durable embedded PostgreSQL,
//! or `DATABASE_URL`).

#![allow(clippy::print_stdout)] // A bench reports on stdout.

#[path = "support.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use queen_engine::maintenance::Mode;
use queen_engine::{AckStatus, Engine, EngineConfig, PopRequest, PushItem};
use queen_wire::{Client, Json, Pool, PoolConfig};
use uuid::Uuid;

const SECS: u64 = 5;
const ROUNDS: usize = 3;
const CONCURRENCY: usize = 8;
const PARTITIONS: usize = 50;

fn payload() -> String {
    format!(r#"{{"data":"{}"}}"#, "x".repeat(189))
}

/// Runs `tasks` copies of `work` for SECS seconds; returns messages per second.
async fn measure<F, Fut>(tasks: usize, work: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let work = Arc::new(work);
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (stop, count, work) = (stop.clone(), count.clone(), work.clone());
        handles.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                count.fetch_add(work(t * 1_000_000 + i).await, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(SECS)).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.expect("bench task");
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// `n` items for one partition (calls rotate over the partitions).
fn items(queue: &str, n: usize, seed: usize) -> Vec<PushItem> {
    (0..n)
        .map(|_| PushItem {
            queue: queue.into(),
            partition: format!("p{}", seed % PARTITIONS),
            payload: payload().into(),
            transaction_id: None,
            trace_id: None,
            producer_sub: None,
        })
        .collect()
}

fn main() {
    let (config, _cluster) = support::bench_server();
    let rt = support::runtime();
    rt.block_on(async move {
        let pool = Pool::connect(config, PoolConfig { size: 8, ..PoolConfig::default() })
            .await
            .expect("pool");
        let buffer_dir = std::env::temp_dir().join(format!("queen-bench-buffer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&buffer_dir);
        let engine_config = EngineConfig {
            listen: false,
            buffer: Some(queen_engine::BufferConfig::new(&buffer_dir)),
            ..EngineConfig::default()
        };
        let engine = Engine::start(pool.clone(), engine_config).await.expect("engine");
        let sealed_dir = std::env::temp_dir().join(format!("queen-bench-sealed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&sealed_dir);
        let sealed = Engine::start(
            pool.clone(),
            EngineConfig {
                listen: false,
                buffer: Some(queen_engine::BufferConfig::new(&sealed_dir)),
                cipher: Some(queen_engine::Cipher::from_hex(&"5e".repeat(32)).expect("key")),
                ..EngineConfig::default()
            },
        )
        .await
        .expect("engine with a key");
        pool.batch_execute(
            "DROP TABLE IF EXISTS raw_messages;
             CREATE TABLE raw_messages (partition_id uuid NOT NULL, position bigint NOT NULL,
               id uuid NOT NULL, transaction_id text NOT NULL, payload jsonb,
               created_at timestamptz NOT NULL DEFAULT now(),
               PRIMARY KEY (partition_id, position), UNIQUE (partition_id, transaction_id));
             CREATE SEQUENCE IF NOT EXISTS raw_pos;",
        )
        .await
        .expect("raw table");
        let raw = pool
            .prepare(
                "INSERT INTO raw_messages (partition_id, position, id, transaction_id, payload)
                 SELECT p, nextval('raw_pos'), i, t, d FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[]) AS u(p, i, t, d)",
            )
            .await
            .expect("prepare");
        let partitions: Arc<Vec<Uuid>> = Arc::new((0..PARTITIONS).map(|_| Uuid::now_v7()).collect());

        let mut results: Vec<(&str, Vec<f64>)> = vec![
            ("raw_insert_100", vec![]),
            ("push_100", vec![]),
            ("push_1_x64", vec![]),
            ("pop_ack_100", vec![]),
            ("push_100_buffered", vec![]),
            ("push_1_x64_buffered", vec![]),
            ("replay", vec![]),
            ("push_100_sealed", vec![]),
            ("push_1_x64_sealed", vec![]),
            ("replay_sealed", vec![]),
        ];
        // BENCH_ONLY=push_100,pop_ack_100 runs a subset (for profiling one scenario).
        let only = std::env::var("BENCH_ONLY").ok();
        let run = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == name));
        for round in 0..ROUNDS {
            if run("raw_insert_100") {
            let (p, st, parts) = (pool.clone(), raw.clone(), partitions.clone());
            let r = measure(CONCURRENCY, move |seed| {
                let (p, st, parts) = (p.clone(), st.clone(), parts.clone());
                async move {
                    let pids: Vec<Uuid> = (0..100).map(|_| parts[seed % PARTITIONS]).collect();
                    let ids: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
                    let txids: Vec<String> = ids.iter().map(|u| u.to_string()).collect();
                    let data: Vec<Json<String>> = (0..100).map(|_| Json(payload())).collect();
                    p.execute(&st, &[&pids, &ids, &txids, &data]).await.expect("raw insert")
                }
            })
            .await;
            results[0].1.push(r);
            }

            if run("push_100") {
            let e = engine.clone();
            let r = measure(CONCURRENCY, move |seed| {
                let e = e.clone();
                async move { e.push(items("bench", 100, seed)).await.expect("push").len() as u64 }
            })
            .await;
            results[1].1.push(r);
            }

            if run("push_1_x64") {
            let e = engine.clone();
            let r = measure(64, move |seed| {
                let e = e.clone();
                async move { e.push(items("bench1", 1, seed)).await.expect("push").len() as u64 }
            })
            .await;
            results[2].1.push(r);
            }

            if run("pop_ack_100") {
                // Drains the backlog push_100 left (hundreds of thousands of messages): the rate is
                // messages over the time until the queue is empty (or SECS, if it is not).
                let consumed = Arc::new(AtomicU64::new(0));
                let start = Instant::now();
                let deadline = start + Duration::from_secs(SECS);
                let mut handles = Vec::new();
                for _ in 0..CONCURRENCY {
                    let (e, consumed) = (engine.clone(), consumed.clone());
                    handles.push(tokio::spawn(async move {
                        let req = PopRequest {
                            batch: 100,
                            ..PopRequest::new("bench")
                        };
                        while Instant::now() < deadline {
                            let Some(r) = e.pop(&req, None).await.expect("pop") else {
                                break;
                            };
                            let acks = r.commit_all(AckStatus::Completed);
                            e.ack(acks).await.expect("ack");
                            consumed.fetch_add(r.messages.len() as u64, Ordering::Relaxed);
                        }
                    }));
                }
                for h in handles {
                    h.await.expect("consumer");
                }
                let n = consumed.load(Ordering::Relaxed);
                results[3].1.push(n as f64 / start.elapsed().as_secs_f64());
            }

            // The same pushes with push maintenance on: every push goes to the disk buffer (one
            // group fsync per write batch). Then the replay of everything buffered is timed. The
            // engine with a key (sealed records) runs right after, in the same round.
            for (name, e, first_slot, queue) in
                [("buffered", &engine, 4usize, "bench_buf"), ("sealed", &sealed, 7, "bench_sealed")]
            {
                if !run(name) {
                    continue;
                }
                e.set_maintenance(Mode::Push, true).await.expect("maintenance");
                for (slot, tasks, n) in [(first_slot, CONCURRENCY, 100usize), (first_slot + 1, 64, 1)] {
                    let e = e.clone();
                    let r = measure(tasks, move |seed| {
                        let e = e.clone();
                        async move { e.push(items(queue, n, seed)).await.expect("push").len() as u64 }
                    })
                    .await;
                    results[slot].1.push(r);
                }
                let pending = e.buffer_status().expect("buffer").pending;
                let t0 = Instant::now();
                e.set_maintenance(Mode::Push, false).await.expect("maintenance");
                while e.buffer_status().expect("buffer").pending > 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                results[first_slot + 2].1.push(pending as f64 / t0.elapsed().as_secs_f64());
            }
            eprintln!("round {round} done");
        }
        let median = |v: &Vec<f64>| {
            let mut v = v.clone();
            v.sort_by(|a, b| a.total_cmp(b));
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let ceiling = median(&results[0].1);
        println!("machine: {}; {SECS}s per scenario, median of {ROUNDS} rounds", support::describe_machine());
        println!("{:<16} {:>12} {:>10}   rounds", "scenario", "msg/s", "of raw");
        for (name, v) in &results {
            let m = median(v);
            let rounds: Vec<String> = v.iter().map(|x| format!("{x:.0}")).collect();
            println!("{name:<16} {m:>12.0} {:>9.0}%   {}", m / ceiling * 100.0, rounds.join(" "));
        }
        let _ = std::fs::remove_dir_all(&buffer_dir);
        let _ = std::fs::remove_dir_all(&sealed_dir);
        let (pushed, popped, acked) = engine.metrics().snapshot();
        println!("engine counters: pushed {pushed}, popped {popped}, acked {acked}");
    });
}
