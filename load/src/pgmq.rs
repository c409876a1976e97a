//! `pgmq-send` and `pgmq-consume`: the peer queue (pgmq, a PostgreSQL extension driven by SQL)
//! run the way an application drives it, for `benches/peers.sh`.
//!
//! Each of `--connections` (send) or `--consumers` (consume) tasks holds one connection to
//! `--database-url` and loops until `--duration`: `pgmq.send_batch(queue, $2::jsonb[])` with
//! `--batch` payloads of its own (`pgmq.send` when the batch is 1), or `pgmq.delete(queue,
//! ARRAY(SELECT msg_id FROM pgmq.read(queue, 30, --batch)))`. Every payload is distinct and
//! travels as a parameter, as a client's messages do, so PostgreSQL parses each one — unlike a
//! pgbench script with one constant payload, which the plan folds and parses once. The queue
//! (`--queue`, default `bench`) must exist.
//!
//! The answers are the JSON of the HTTP modes (`pushed`, `push_msgs_per_sec`, …), so scripts
//! read both the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use queen_wire::{Client, Config, Connection, Json};
use serde_json::Value;

use crate::{Args, Mode, RunFigures, new_histogram, quantiles, record};

/// Runs one pgmq mode; an error when the database cannot be reached or the queue is missing.
pub async fn run(args: &Args, url: &str) -> Result<Value, String> {
    let config = Config::parse(url).map_err(|e| format!("--database-url: {e}"))?;
    let queue = args.queue.clone().unwrap_or_else(|| "bench".to_owned());
    let send = args.mode == Mode::PgmqSend;
    let tasks_n = if send {
        args.connections
    } else {
        args.consumers
    };
    let batch = args.batch.max(1);
    let filler = "x".repeat(args.payload_bytes.saturating_sub(40));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let latency = Arc::new(std::sync::Mutex::new(new_histogram()));
    // Connect and prepare before the clock starts.
    let mut conns = Vec::with_capacity(tasks_n);
    for _ in 0..tasks_n {
        let conn = Connection::connect(&config)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let sql = match (send, batch) {
            (true, 1) => "SELECT count(*) AS n FROM pgmq.send($1, $2::jsonb)",
            (true, _) => "SELECT count(*) AS n FROM pgmq.send_batch($1, $2::jsonb[])",
            (false, _) => {
                "SELECT count(*) AS n FROM pgmq.delete($1, \
                 ARRAY(SELECT msg_id FROM pgmq.read($1, 30, $2::integer)))"
            }
        };
        let st = conn
            .prepare(sql)
            .await
            .map_err(|e| format!("prepare (is pgmq installed, queue `{queue}` made?): {e}"))?;
        conns.push((conn, st));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let mut tasks = Vec::with_capacity(tasks_n);
    for (c, (conn, st)) in conns.into_iter().enumerate() {
        let (done, errors, stop, latency) =
            (done.clone(), errors.clone(), stop.clone(), latency.clone());
        let (queue, filler) = (queue.clone(), filler.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let payload = |n: u64| format!(r#"{{"c":{c},"n":{n},"f":"{filler}"}}"#);
            let qty = batch as i32;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let t0 = Instant::now();
                let rows = match (send, batch) {
                    (true, 1) => conn.query(&st, &[&queue, &Json(payload(n))]).await,
                    (true, _) => {
                        let items: Vec<Json<String>> =
                            (n..n + batch as u64).map(|i| Json(payload(i))).collect();
                        conn.query(&st, &[&queue, &items]).await
                    }
                    (false, _) => conn.query(&st, &[&queue, &qty]).await,
                };
                n += batch as u64;
                let counted = rows
                    .ok()
                    .and_then(|r| r.first().and_then(|r| r.get::<i64>("n").ok()));
                match counted {
                    Some(k) => {
                        done.fetch_add(k.max(0) as u64, Ordering::Relaxed);
                        record(&latency, t0.elapsed().as_micros() as u64);
                    }
                    None => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep_until(deadline.into()).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let n = done.load(Ordering::Relaxed);
    let (pushed, consumed) = if send { (n, 0) } else { (0, n) };
    Ok(RunFigures {
        server: url,
        mode: if send { "pgmq-send" } else { "pgmq-consume" },
        seconds: started.elapsed().as_secs_f64(),
        pushed,
        consumed,
        errors: errors.load(Ordering::Relaxed),
        duplicates: 0,
        request_latency: quantiles(&latency),
        e2e_latency: Value::Null,
    }
    .json())
}
