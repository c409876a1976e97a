//! Pipeline strategies for the same push, pop and ack work, at rising concurrency.
//!
//! * `S0` sequential: one round trip per step, as a synchronous design runs it — push is the
//!   8 steps (check queue, size limit, encryption, ensure partition, get its id, BEGIN, insert,
//!   COMMIT), pop 7 (window check, queue config, BEGIN, take the lease, read, move the cursor,
//!   COMMIT), ack 6 (BEGIN, find the message, lock the cursor, commit it, clear retries, COMMIT),
//!   on a connection held for the whole operation;
//! * `S1` pipelined: the same statements in one flight with one Sync (the Sync's implicit
//!   transaction replaces BEGIN/COMMIT; later steps name what earlier ones found by subquery),
//!   on the shared pool;
//! * `S2` single statement: the engine's server-side function, one statement per operation, not
//!   coalesced;
//! * `S3` coalesced: the engine itself — concurrent operations folded into shared statements,
//!   several batches in flight.
//!
//! Each operation moves one message (100-byte payload) of its own partition. Pops are at-most-once
//! (`autoAck`) so each is a complete operation; acks are of a message popped beforehand (untimed).
//! S0–S2 pop their task's partition; S3's pops ask for any partition (those are the ones folded).
//! One iteration runs `concurrency` operations at once; throughput is operations per second.
//!
//! Run: `cargo bench --bench strategies` (durable embedded PostgreSQL, or `DATABASE_URL`). The
//! harness then writes `docs/strategies.svg` and prints the figures as a Markdown table.

#[path = "support.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use futures_util::future::join_all;
use queen_engine::{AckItem, AckStatus, Engine, EngineConfig, PopRequest, PushItem, QUEUE_MODE};
use queen_wire::{Client, Pipeline, Pool, PoolConfig, Statement};
use uuid::Uuid;

const OPS: [&str; 3] = ["push", "pop", "ack"];
const STRATEGIES: [&str; 4] = ["S0", "S1", "S2", "S3"];
const CONCURRENCY: [usize; 4] = [1, 16, 64, 256];

fn payload() -> String {
    format!("{{\"data\":\"{}\"}}", "x".repeat(89))
}

/// Time and operations measured per (op, strategy, concurrency), for the chart.
type Tally = BTreeMap<(usize, usize, usize), (Duration, u64)>;
static TALLY: Mutex<Tally> = Mutex::new(BTreeMap::new());

fn record(key: (usize, usize, usize), elapsed: Duration, ops: u64) {
    let mut t = TALLY.lock().unwrap_or_else(|e| e.into_inner());
    let e = t.entry(key).or_default();
    e.0 += elapsed;
    e.1 += ops;
}

/// The statements of S0 and S1.
struct Steps {
    // push
    queue_id: Statement,
    partition_num: Statement,
    size_limit: Statement,
    encryption: Statement,
    ensure_partition: Statement,
    partition_id: Statement,
    insert: Statement,
    size_limit_by_name: Statement,
    encryption_by_name: Statement,
    ensure_partition_by_name: Statement,
    partition_id_by_name: Statement,
    insert_by_name: Statement,
    // pop
    window: Statement,
    config: Statement,
    take_lease: Statement,
    read: Statement,
    advance: Statement,
    read_after_cursor: Statement,
    advance_after_read: Statement,
    // ack
    find: Statement,
    lock_cursor: Statement,
    commit: Statement,
    clear_retries: Statement,
    commit_by_txid: Statement,
    clear_retries_by_txid: Statement,
    // S2
    push_fn: Statement,
    pop_fn: Statement,
    ack_fn: Statement,
}

impl Steps {
    async fn prepare(pool: &Pool) -> Steps {
        let p = |sql: &'static str| {
            let pool = pool.clone();
            async move { pool.prepare(sql).await.expect(sql) }
        };
        Steps {
            queue_id: p("SELECT id FROM queen.queues WHERE name = $1").await,
            partition_num: p("SELECT num FROM queen.partitions WHERE id = $1").await,
            size_limit: p("SELECT max_size FROM queen.queues WHERE id = $1").await,
            encryption: p("SELECT encryption_enabled FROM queen.queues WHERE id = $1").await,
            ensure_partition: p("INSERT INTO queen.partitions (id, queue_id, name) VALUES ($1, $2, $3) ON CONFLICT (queue_id, name) DO NOTHING").await,
            partition_id: p("SELECT id FROM queen.partitions WHERE queue_id = $1 AND name = $2").await,
            insert: p("WITH b AS (UPDATE queen.partitions SET last_position = last_position + 1, last_message_at = now() WHERE id = $1 RETURNING num, last_position)
                       INSERT INTO queen.messages (pnum, position, id, txuuid, payload) SELECT b.num, b.last_position, $2, $3, $4 FROM b").await,
            size_limit_by_name: p("SELECT max_size FROM queen.queues WHERE name = $1").await,
            encryption_by_name: p("SELECT encryption_enabled FROM queen.queues WHERE name = $1").await,
            ensure_partition_by_name: p("INSERT INTO queen.partitions (id, queue_id, name) SELECT $1, q.id, $3 FROM queen.queues q WHERE q.name = $2 ON CONFLICT (queue_id, name) DO NOTHING").await,
            partition_id_by_name: p("SELECT p.id FROM queen.partitions p JOIN queen.queues q ON q.id = p.queue_id WHERE q.name = $1 AND p.name = $2").await,
            insert_by_name: p("WITH b AS (UPDATE queen.partitions p SET last_position = p.last_position + 1, last_message_at = now() FROM queen.queues q
                                  WHERE q.id = p.queue_id AND q.name = $1 AND p.name = $2 RETURNING p.num, p.last_position)
                               INSERT INTO queen.messages (pnum, position, id, txuuid, payload) SELECT b.num, b.last_position, $3, $4, $5 FROM b").await,
            window: p("SELECT q.window_buffer, p.last_message_at FROM queen.partitions p JOIN queen.queues q ON q.id = p.queue_id WHERE p.id = $1").await,
            config: p("SELECT id, lease_time, delayed_processing FROM queen.queues WHERE name = $1").await,
            take_lease: p("INSERT INTO queen.cursors AS c (partition_id, consumer_group, position, lease_id, lease_expires_at)
                           VALUES ($1, $2, 0, $3, now() + interval '30 seconds')
                           ON CONFLICT (partition_id, consumer_group) DO UPDATE SET lease_id = $3, lease_expires_at = now() + interval '30 seconds'
                           RETURNING c.position").await,
            read: p("SELECT position, id, txuuid, payload FROM queen.messages WHERE pnum = $1 AND position > $2 ORDER BY position LIMIT $3").await,
            advance: p("UPDATE queen.cursors SET position = $3, lease_id = NULL, lease_expires_at = NULL, last_consumed_at = now() WHERE partition_id = $1 AND consumer_group = $2").await,
            read_after_cursor: p("SELECT m.position, m.id, m.txuuid, m.payload FROM queen.messages m
                                  WHERE m.pnum = $4 AND m.position > (SELECT c.position FROM queen.cursors c WHERE c.partition_id = $1 AND c.consumer_group = $2)
                                  ORDER BY m.position LIMIT $3").await,
            advance_after_read: p("UPDATE queen.cursors c SET position = coalesce((SELECT max(x.position) FROM (SELECT m.position FROM queen.messages m
                                       WHERE m.pnum = $4 AND m.position > c.position ORDER BY m.position LIMIT $3) x), c.position),
                                       lease_id = NULL, lease_expires_at = NULL, last_consumed_at = now()
                                   WHERE c.partition_id = $1 AND c.consumer_group = $2").await,
            find: p("SELECT position FROM queen.messages WHERE pnum = $1 AND txuuid = $2").await,
            lock_cursor: p("SELECT position, lease_id FROM queen.cursors WHERE partition_id = $1 AND consumer_group = $2 FOR UPDATE").await,
            commit: p("UPDATE queen.cursors SET position = greatest(position, $3), lease_id = NULL, lease_expires_at = NULL, lease_end = NULL,
                       total_consumed = total_consumed + 1, last_consumed_at = now()
                       WHERE partition_id = $1 AND consumer_group = $2 AND lease_id = $4").await,
            clear_retries: p("DELETE FROM queen.retries WHERE partition_id = $1 AND consumer_group = $2 AND position <= $3").await,
            commit_by_txid: p("UPDATE queen.cursors c SET position = greatest(c.position, m.position), lease_id = NULL, lease_expires_at = NULL, lease_end = NULL,
                               total_consumed = c.total_consumed + 1, last_consumed_at = now()
                               FROM queen.messages m WHERE m.pnum = $5 AND m.txuuid = $3
                                AND c.partition_id = $1 AND c.consumer_group = $2 AND c.lease_id = $4").await,
            clear_retries_by_txid: p("DELETE FROM queen.retries r WHERE r.partition_id = $1 AND r.consumer_group = $2
                                      AND r.position <= (SELECT m.position FROM queen.messages m WHERE m.pnum = $4 AND m.txuuid = $3)").await,
            push_fn: p(include_str!("../sql/statements/push.sql")).await,
            pop_fn: p(include_str!("../sql/statements/pop.sql")).await,
            ack_fn: p(include_str!("../sql/statements/ack.sql")).await,
        }
    }
}

/// What each operation of an iteration works on.
#[derive(Clone)]
struct Target {
    queue: Arc<str>,
    partition: String,
    partition_id: Uuid,
    partition_num: i64,
}

/// A message popped under a lease, to ack: the engine's ack item and the storage keys the
/// hand-written strategies address it by.
struct Leased {
    item: AckItem,
    partition_num: i64,
    txuuid: Uuid,
}

struct Bench {
    pool: Pool,
    engine: Engine,
    steps: Steps,
}

impl Bench {
    // ---- push ------------------------------------------------------------------------------

    async fn push(&self, strategy: usize, t: &Target) {
        let id = Uuid::now_v7();
        let txid = Uuid::new_v4();
        let data = payload();
        let s = &self.steps;
        match strategy {
            0 => {
                let c = self.pool.acquire().await.expect("acquire");
                let q: Uuid = c.query(&s.queue_id, &[&&*t.queue]).await.expect("1")[0]
                    .get("id")
                    .expect("id");
                c.query(&s.size_limit, &[&q]).await.expect("2");
                c.query(&s.encryption, &[&q]).await.expect("3");
                c.execute(&s.ensure_partition, &[&Uuid::new_v4(), &q, &t.partition])
                    .await
                    .expect("4");
                let pid: Uuid = c
                    .query(&s.partition_id, &[&q, &t.partition])
                    .await
                    .expect("5")[0]
                    .get("id")
                    .expect("pid");
                c.batch_execute("BEGIN").await.expect("6");
                c.execute(&s.insert, &[&pid, &id, &txid, &data])
                    .await
                    .expect("7");
                c.batch_execute("COMMIT").await.expect("8");
            }
            1 => {
                let mut p = Pipeline::new();
                let q: &str = &t.queue;
                p.query(&s.queue_id, &[&q]).expect("1");
                p.query(&s.size_limit_by_name, &[&q]).expect("2");
                p.query(&s.encryption_by_name, &[&q]).expect("3");
                p.query(
                    &s.ensure_partition_by_name,
                    &[&Uuid::new_v4(), &q, &t.partition],
                )
                .expect("4");
                p.query(&s.partition_id_by_name, &[&q, &t.partition])
                    .expect("5");
                p.query(&s.insert_by_name, &[&q, &t.partition, &id, &txid, &data])
                    .expect("7");
                p.sync();
                for seg in self.pool.send(p).await.expect("send") {
                    seg.expect("pipelined push");
                }
            }
            2 => {
                let none_u: Option<Uuid> = None;
                let none_b: Option<Vec<u8>> = None;
                let none_s: Option<String> = None;
                self.pool
                    .query(
                        &s.push_fn,
                        &[
                            &vec![t.partition_num],
                            &vec![1i32],
                            &vec![false],
                            &vec![t.partition_num],
                            &vec![1i32],
                            &vec![id],
                            &vec![Some(txid)],
                            &vec![none_s.clone()],
                            &vec![none_u],
                            &vec![Some(data)],
                            &vec![none_b],
                            &vec![none_s],
                            &false,
                        ],
                    )
                    .await
                    .expect("push statement");
            }
            _ => {
                let item = PushItem {
                    queue: t.queue.to_string(),
                    partition: t.partition.clone(),
                    payload: data.into(),
                    transaction_id: Some(txid.to_string()),
                    trace_id: None,
                    producer_sub: None,
                };
                self.engine.push(vec![item]).await.expect("engine push");
            }
        }
    }

    // ---- pop -------------------------------------------------------------------------------

    async fn pop(&self, strategy: usize, t: &Target) -> usize {
        let s = &self.steps;
        let group = QUEUE_MODE;
        let batch: i64 = 1;
        match strategy {
            0 => {
                let c = self.pool.acquire().await.expect("acquire");
                c.query(&s.window, &[&t.partition_id]).await.expect("1");
                c.query(&s.config, &[&&*t.queue]).await.expect("2");
                c.batch_execute("BEGIN").await.expect("3");
                let pos: i64 = c
                    .query(&s.take_lease, &[&t.partition_id, &group, &Uuid::now_v7()])
                    .await
                    .expect("4")[0]
                    .get("position")
                    .expect("pos");
                let rows = c
                    .query(&s.read, &[&t.partition_num, &pos, &batch])
                    .await
                    .expect("5");
                let last: i64 = rows
                    .last()
                    .map_or(Ok(pos), |r| r.get("position"))
                    .expect("last");
                c.execute(&s.advance, &[&t.partition_id, &group, &last])
                    .await
                    .expect("6");
                c.batch_execute("COMMIT").await.expect("7");
                rows.len()
            }
            1 => {
                let mut p = Pipeline::new();
                p.query(&s.window, &[&t.partition_id]).expect("1");
                p.query(&s.config, &[&&*t.queue]).expect("2");
                p.query(&s.take_lease, &[&t.partition_id, &group, &Uuid::now_v7()])
                    .expect("4");
                let (pid, num) = (&t.partition_id, &t.partition_num);
                p.query(&s.read_after_cursor, &[pid, &group, &batch, num])
                    .expect("5");
                p.query(&s.advance_after_read, &[pid, &group, &batch, num])
                    .expect("6");
                p.sync();
                let mut segs = self.pool.send(p).await.expect("send");
                let results = segs.remove(0).expect("pipelined pop");
                results[3].rows.len()
            }
            2 => {
                let rows = self
                    .pool
                    .query(
                        &s.pop_fn,
                        &[
                            &&*t.queue,
                            &Some(t.partition.as_str()),
                            &group,
                            &1i32,
                            &1i32,
                            &vec![Uuid::now_v7()],
                            &None::<i32>,
                            &true,
                            &vec![None::<String>],
                            &false,
                        ],
                    )
                    .await
                    .expect("pop statement");
                rows.len()
            }
            _ => {
                let req = PopRequest {
                    auto_ack: true,
                    ..PopRequest::new(t.queue.to_string())
                };
                self.engine
                    .pop(&req, None)
                    .await
                    .expect("engine pop")
                    .map_or(0, |r| r.messages.len())
            }
        }
    }

    // ---- ack -------------------------------------------------------------------------------

    async fn ack(&self, strategy: usize, leased: &Leased) {
        let (a, num, txid) = (&leased.item, &leased.partition_num, &leased.txuuid);
        let s = &self.steps;
        let group = QUEUE_MODE;
        let lease = a.lease_id.expect("leased");
        match strategy {
            0 => {
                let c = self.pool.acquire().await.expect("acquire");
                c.batch_execute("BEGIN").await.expect("1");
                let pos: i64 = c.query(&s.find, &[num, txid]).await.expect("2")[0]
                    .get("position")
                    .expect("pos");
                c.query(&s.lock_cursor, &[&a.partition_id, &group])
                    .await
                    .expect("3");
                let n = c
                    .execute(&s.commit, &[&a.partition_id, &group, &pos, &lease])
                    .await
                    .expect("4");
                assert_eq!(n, 1, "the ack commits");
                c.execute(&s.clear_retries, &[&a.partition_id, &group, &pos])
                    .await
                    .expect("5");
                c.batch_execute("COMMIT").await.expect("6");
            }
            1 => {
                let mut p = Pipeline::new();
                p.query(&s.find, &[num, txid]).expect("2");
                p.query(&s.lock_cursor, &[&a.partition_id, &group])
                    .expect("3");
                p.query(
                    &s.commit_by_txid,
                    &[&a.partition_id, &group, txid, &lease, num],
                )
                .expect("4");
                p.query(
                    &s.clear_retries_by_txid,
                    &[&a.partition_id, &group, txid, num],
                )
                .expect("5");
                p.sync();
                let mut segs = self.pool.send(p).await.expect("send");
                let results = segs.remove(0).expect("pipelined ack");
                assert_eq!(results[2].tag, "UPDATE 1", "the ack commits");
            }
            2 => {
                let rows = self
                    .pool
                    .query(
                        &s.ack_fn,
                        &[
                            &vec![group],
                            &vec![a.partition_id],
                            &vec![Some(*txid)],
                            &vec![None::<String>],
                            &vec!["completed"],
                            &vec![None::<String>],
                            &vec![Some(lease)],
                            &false,
                        ],
                    )
                    .await
                    .expect("ack statement");
                assert!(
                    rows[0].get::<bool>("success").expect("success"),
                    "the ack commits"
                );
            }
            _ => {
                let out = self.engine.ack(vec![a.clone()]).await.expect("engine ack");
                assert!(out[0].success, "the ack commits");
            }
        }
    }

    // ---- set-up (untimed) ------------------------------------------------------------------

    /// `n` partitions of a fresh queue, created and cached.
    async fn targets(&self, queue: &str, n: usize) -> Vec<Target> {
        let queue: Arc<str> = Arc::from(queue);
        let items: Vec<PushItem> = (0..n)
            .map(|i| PushItem {
                queue: queue.to_string(),
                partition: format!("p{i}"),
                payload: payload().into(),
                transaction_id: None,
                trace_id: None,
                producer_sub: None,
            })
            .collect();
        let out = self.engine.push(items).await.expect("set-up push");
        // Consume the set-up messages so every bench starts from empty partitions.
        let group = QUEUE_MODE;
        let mut targets = Vec::with_capacity(out.len());
        for o in out {
            let pid = o.partition_id.expect("pid");
            self.pool
                .query_sql(
                    "INSERT INTO queen.cursors (partition_id, consumer_group, position) VALUES ($1, $2, 1)
                     ON CONFLICT (partition_id, consumer_group) DO UPDATE SET position = 1",
                    &[&pid, &group],
                )
                .await
                .expect("cursor");
            let num: i64 = self
                .pool
                .query(&self.steps.partition_num, &[&pid])
                .await
                .expect("partition number")[0]
                .get("num")
                .expect("num");
            targets.push(Target {
                queue: queue.clone(),
                partition: o.partition,
                partition_id: pid,
                partition_num: num,
            });
        }
        targets
    }

    /// One message in each target's partition.
    async fn fill(&self, targets: &[Target]) {
        let items = targets
            .iter()
            .map(|t| PushItem {
                queue: t.queue.to_string(),
                partition: t.partition.clone(),
                payload: payload().into(),
                transaction_id: None,
                trace_id: None,
                producer_sub: None,
            })
            .collect();
        self.engine.push(items).await.expect("fill");
    }

    /// Pops each target's message under a lease (for the acks).
    async fn lease_all(&self, targets: &[Target]) -> Vec<Leased> {
        let pops = targets.iter().map(|t| async move {
            let req = PopRequest {
                partition: Some(t.partition.clone()),
                ..PopRequest::new(t.queue.to_string())
            };
            let r = self
                .engine
                .pop(&req, None)
                .await
                .expect("lease pop")
                .expect("a message");
            let item = r.commit_all(AckStatus::Completed).remove(0);
            Leased {
                txuuid: Uuid::parse_str(&item.transaction_id).expect("a UUID transactionId"),
                partition_num: t.partition_num,
                item,
            }
        });
        join_all(pops).await
    }
}

fn bench(c: &mut Criterion, rt: &tokio::runtime::Runtime, b: &Arc<Bench>) {
    for (oi, op) in OPS.iter().enumerate() {
        let mut group = c.benchmark_group(format!("strategies/{op}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for (si, strategy) in STRATEGIES.iter().enumerate() {
            for (ci, &n) in CONCURRENCY.iter().enumerate() {
                if n == 256 && si != 3 {
                    continue;
                }
                let targets = rt.block_on(b.targets(&format!("{op}-{strategy}-{n}"), n));
                group.throughput(Throughput::Elements(n as u64));
                group.bench_function(BenchmarkId::new(*strategy, n), |bencher| {
                    bencher.to_async(rt).iter_custom(|iters| {
                        let (b, targets) = (b.clone(), targets.clone());
                        async move {
                            let mut total = Duration::ZERO;
                            for _ in 0..iters {
                                total += match oi {
                                    0 => {
                                        let t0 = Instant::now();
                                        join_all(targets.iter().map(|t| b.push(si, t))).await;
                                        t0.elapsed()
                                    }
                                    1 => {
                                        b.fill(&targets).await;
                                        let t0 = Instant::now();
                                        let got: usize =
                                            join_all(targets.iter().map(|t| b.pop(si, t)))
                                                .await
                                                .into_iter()
                                                .sum();
                                        let e = t0.elapsed();
                                        assert_eq!(got, targets.len(), "every pop got its message");
                                        e
                                    }
                                    _ => {
                                        b.fill(&targets).await;
                                        let leased = b.lease_all(&targets).await;
                                        let t0 = Instant::now();
                                        join_all(leased.iter().map(|a| b.ack(si, a))).await;
                                        t0.elapsed()
                                    }
                                };
                            }
                            record((oi, si, ci), total, iters * n as u64);
                            total
                        }
                    });
                });
            }
        }
        group.finish();
    }
}

/// Operations per second from the tally, per (op, strategy, concurrency index).
fn rates() -> BTreeMap<(usize, usize, usize), f64> {
    let t = TALLY.lock().unwrap_or_else(|e| e.into_inner());
    t.iter()
        .filter(|(_, (d, _))| !d.is_zero())
        .map(|(k, (d, n))| (*k, *n as f64 / d.as_secs_f64()))
        .collect()
}

fn table(r: &BTreeMap<(usize, usize, usize), f64>) -> String {
    let mut out = String::from(
        "| op | strategy | c=1 | c=16 | c=64 | c=256 |\n|---|---|---:|---:|---:|---:|\n",
    );
    for (oi, op) in OPS.iter().enumerate() {
        for (si, s) in STRATEGIES.iter().enumerate() {
            let cells: Vec<String> = (0..CONCURRENCY.len())
                .map(|ci| {
                    r.get(&(oi, si, ci))
                        .map_or("–".into(), |v| format!("{v:.0}"))
                })
                .collect();
            let _ = writeln!(out, "| {op} | {s} | {} |", cells.join(" | "));
        }
    }
    out
}

/// Three panels (push, pop, ack): operations per second against concurrency, one line per
/// strategy, each panel on its own (linear) scale.
fn svg(r: &BTreeMap<(usize, usize, usize), f64>, subtitle: &str) -> String {
    const W: f64 = 300.0;
    const H: f64 = 220.0;
    const M: f64 = 55.0;
    let colours = ["#c0392b", "#e67e22", "#2980b9", "#27ae60"];
    let mut s = String::new();
    let total_w = M + 3.0 * (W + M);
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="18" text-anchor="middle" font-size="14">Operations per second by pipeline strategy and concurrency</text>
<text x="{}" y="34" text-anchor="middle" fill="#555">{subtitle}</text>
"##,
        H + 2.0 * M + 40.0,
        total_w / 2.0,
        total_w / 2.0
    );
    let top = 50.0;
    for (oi, op) in OPS.iter().enumerate() {
        let x0 = M + oi as f64 * (W + M);
        let max = r
            .iter()
            .filter(|((o, _, _), _)| *o == oi)
            .map(|(_, v)| *v)
            .fold(1.0, f64::max);
        let nice = {
            let mag = 10f64.powf(max.log10().floor());
            (max / mag).ceil() * mag
        };
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" font-size="13">{op}</text>"##,
            x0 + W / 2.0,
            top + 8.0
        );
        let y = |v: f64| top + 20.0 + H - v / nice * H;
        let x = |ci: usize| x0 + 20.0 + ci as f64 * (W - 40.0) / (CONCURRENCY.len() - 1) as f64;
        for k in 0..=4 {
            let v = nice * k as f64 / 4.0;
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" x2="{}" y1="{yy}" y2="{yy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end" fill="#555">{}</text>"##,
                x0 + W,
                x0 - 4.0,
                y(v) + 4.0,
                if v >= 1000.0 {
                    format!("{:.0}k", v / 1000.0)
                } else {
                    format!("{v:.0}")
                },
                yy = y(v)
            );
        }
        for (ci, c) in CONCURRENCY.iter().enumerate() {
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">{c}</text>"##,
                x(ci),
                top + 20.0 + H + 15.0
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">concurrent operations</text>"##,
            x0 + W / 2.0,
            top + 20.0 + H + 30.0
        );
        for (si, colour) in colours.iter().enumerate() {
            let pts: Vec<String> = (0..CONCURRENCY.len())
                .filter_map(|ci| {
                    r.get(&(oi, si, ci))
                        .map(|v| format!("{:.1},{:.1}", x(ci), y(*v)))
                })
                .collect();
            if pts.is_empty() {
                continue;
            }
            let _ = writeln!(
                s,
                r##"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"##,
                pts.join(" ")
            );
            for p in &pts {
                let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(
                    s,
                    r##"<circle cx="{px}" cy="{py}" r="3" fill="{colour}"/>"##
                );
            }
        }
    }
    let names = [
        "S0 sequential",
        "S1 pipelined",
        "S2 single statement",
        "S3 coalesced",
    ];
    for (si, (name, colour)) in names.iter().zip(colours).enumerate() {
        let lx = M + si as f64 * 200.0;
        let ly = top + H + 70.0;
        let _ = writeln!(
            s,
            r##"<rect x="{lx}" y="{}" width="14" height="4" fill="{colour}"/><text x="{}" y="{ly}">{name}</text>"##,
            ly - 6.0,
            lx + 20.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn main() {
    let (config, _cluster) = support::bench_server();
    let rt = support::runtime();
    let b = rt.block_on(async {
        let pool = Pool::connect(
            config,
            PoolConfig {
                size: 8,
                ..PoolConfig::default()
            },
        )
        .await
        .expect("pool");
        let engine = Engine::start(
            pool.clone(),
            EngineConfig {
                listen: false,
                ..EngineConfig::default()
            },
        )
        .await
        .expect("engine");
        let steps = Steps::prepare(&pool).await;
        let version: String = pool
            .query_sql("SHOW server_version", &[])
            .await
            .expect("version")[0]
            .single()
            .expect("version");
        eprintln!(
            "machine: {}, PostgreSQL {version}",
            support::describe_machine()
        );
        Arc::new(Bench {
            pool,
            engine,
            steps,
        })
    });
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &rt, &b);
    c.final_summary();
    let r = rates();
    if r.is_empty() {
        return;
    }
    let subtitle = format!(
        "{}, one message per operation, synchronous_commit on",
        support::describe_machine()
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/strategies.svg");
    match std::fs::write(&path, svg(&r, &subtitle)) {
        Ok(()) => eprintln!("chart: {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
    eprintln!("\n{}", table(&r));
}
