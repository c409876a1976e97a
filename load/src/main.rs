//! `queen-load`: drives a running server over HTTP and reports throughput and latency.
//!
//! Modes:
//! * `push` — producers push `--batch` messages per request;
//! * `consume` — consumers pop (`--batch`, long poll) and ack each batch (offset commit),
//!   counting duplicates;
//! * `autoack` — consumers pop with `autoAck=true`;
//! * `e2e` — producers and consumers together; each message carries its send time, so the
//!   consumers measure push → pop latency, and lost or duplicated messages are counted;
//!   `push` and `e2e` run on the ephemeral queues (`/api/v1/ephemeral/…`) with `--ephemeral`;
//! * `routes` — the analytics routes' latency on a large data set under an e2e load, and the
//!   load's figures with and without that traffic (see `routes.rs`);
//! * `fetch` — reads by offset; `kv` — increments of the key/value store;
//! * `pgmq-send`, `pgmq-consume` — the peer queue pgmq over SQL (`--database-url`), driven as
//!   an application drives it, for side-by-side figures (see `pgmq.rs`).
//!
//! Given `--compare URL`, the same workload runs against both servers, alternating, and the
//! ratios are printed. `--json` prints the results as JSON.
//!
//! Every loop is bounded by `--duration`; the tool stops by itself.

#![allow(clippy::print_stdout)] // A command-line tool reports on stdout.

mod pgmq;
mod routes;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Mode {
    Push,
    Consume,
    Autoack,
    E2e,
    Routes,
    PgmqSend,
    PgmqConsume,
    /// Reads by offset (`POST /api/v1/fetch`): `--consumers` readers, each call one partition
    /// from a random offset, about `--batch` records (counted as consumed).
    Fetch,
    /// The key/value store (`POST /api/v1/kv`): `--connections` clients, each call `--batch`
    /// `incr` operations on random keys of `--partitions` keys (operations counted as pushed).
    Kv,
    /// Stream cycles (`POST /streams/v1/cycle`): `--connections` clients, each on a source
    /// partition of its own, each cycle `--batch` state upserts (over 16 keys) and `--batch`
    /// messages pushed to a sink queue, committed together (messages counted as pushed).
    Cycle,
}

/// Drive a queen server over HTTP.
#[derive(Debug, Parser, Clone)]
// A flag given twice takes its last value: scripts pass a default shape and let callers override it.
#[command(name = "queen-load", version, args_override_self = true)]
struct Args {
    /// What to run.
    #[arg(value_enum)]
    mode: Mode,
    /// Server address (host:port, or http://host:port).
    #[arg(long, default_value = "127.0.0.1:6632")]
    url: String,
    /// A second server: run the same workload against both, alternating, and print ratios.
    #[arg(long)]
    compare: Option<String>,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent connections (producers; consumers use --consumers).
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Concurrent consumers (consume, autoack, e2e).
    #[arg(long, default_value_t = 10)]
    consumers: usize,
    /// Messages per push request, or per pop.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Messages per pop, when it should differ from `--batch`.
    #[arg(long)]
    pop_batch: Option<usize>,
    /// Partitions one pop may claim (the pop's `partitions` parameter).
    #[arg(long, default_value_t = 1)]
    pop_partitions: usize,
    /// Also print the figures of every interval of this many seconds (0: only the totals):
    /// messages pushed and consumed in it, the backlog at its end (messages whose push was
    /// answered minus messages consumed; 0 when consumers got messages before their producer
    /// heard the push's answer), and the push→pop latency of
    /// the messages consumed in it (p50, p99, max). For soaks: whether the consumers keep up
    /// and whether the latency drifts as the stored data grows.
    #[arg(long, default_value_t = 0)]
    report_every: u64,
    /// Partitions the producers spread over (round robin over all of them, across connections).
    #[arg(long, default_value_t = 50)]
    partitions: usize,
    /// Spread the items of every request over partitions all connections share (producers in
    /// the field: one partition per user, device or tenant). Without it, each connection pushes
    /// to its own few partitions.
    #[arg(long)]
    spread: bool,
    /// Give every item its own transactionId, instead of letting the server generate one:
    /// `v7` (time-ordered UUIDs, what Queen's clients generate; the default of a bare
    /// `--txids`) or `v4` (random UUIDs: the worst case for the dedupe index, as random
    /// application keys are).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "v7")]
    txids: Option<TxIds>,
    /// push / e2e: through the ephemeral (in-memory) queues instead of the durable ones; each
    /// push request goes to one partition, consumers ack every message.
    #[arg(long)]
    ephemeral: bool,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 200)]
    payload_bytes: usize,
    /// Queue name (a unique one per run when not given).
    #[arg(long)]
    queue: Option<String>,
    /// Offered push rate in messages per second for e2e (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// consume / autoack / fetch: push this many messages into each run's queue first (not
    /// timed). With --compare every run drains a fresh queue, so consume and autoack need it
    /// there.
    #[arg(long, default_value_t = 0)]
    prefill: usize,
    /// routes: messages to fill the queue with first (0: use the queue as it is).
    #[arg(long, default_value_t = 0)]
    fill: usize,
    /// routes: consumer groups to give cursors on every partition of the filled queue.
    #[arg(long, default_value_t = 10)]
    groups: usize,
    /// routes: route requests per second the reader sends (0: back to back, as fast as the
    /// server answers).
    #[arg(long, default_value_t = 0)]
    route_rate: u64,
    /// Runs per server with --compare; routes: rounds of load alone and load with routes.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// pgmq-send / pgmq-consume: the PostgreSQL holding pgmq (a URL or key=value string).
    #[arg(long)]
    database_url: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// A keep-alive HTTP/1.1 connection (the server always sends Content-Length).
struct Conn {
    io: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    async fn open(addr: &str) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            io: BufReader::new(s),
            host: addr.to_owned(),
        })
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let s = self.io.get_mut();
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        let mut line = String::new();
        self.io.read_line(&mut line).await?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut len = 0usize;
        loop {
            line.clear();
            if self.io.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len];
        self.io.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

/// A worker's connection; a server it cannot reach counts as one error.
async fn connect(stats: &Stats, addr: &str) -> Option<Conn> {
    let conn = Conn::open(addr).await.ok();
    if conn.is_none() {
        stats.errors.fetch_add(1, Ordering::Relaxed);
    }
    conn
}

/// After a request that failed on the wire: counts it and opens a new connection (None: the
/// server is gone, and the worker stops).
async fn reconnect(stats: &Stats, addr: &str) -> Option<Conn> {
    stats.errors.fetch_add(1, Ordering::Relaxed);
    Conn::open(addr).await.ok()
}

/// What became of one request of a worker (see [`send`]).
enum Sent {
    /// The server answered: status and body.
    Answer(u16, Vec<u8>),
    /// It failed on the wire; counted, and a new connection is open (the request is not
    /// repeated).
    Retry,
    /// It failed on the wire and the server cannot be reached any more: the worker stops.
    Gone,
}

/// One request on a worker's connection, reconnecting after a failure on the wire.
async fn send(
    conn: &mut Conn,
    stats: &Stats,
    addr: &str,
    (method, path): (&str, &str),
    body: &[u8],
) -> Sent {
    match conn.request(method, path, body).await {
        Ok((status, body)) => Sent::Answer(status, body),
        Err(_) => match reconnect(stats, addr).await {
            Some(c) => {
                *conn = c;
                Sent::Retry
            }
            None => Sent::Gone,
        },
    }
}

/// What a consumer reads of a pop: the fields it acks with and counts by (the payload only
/// for its send time).
#[derive(serde::Deserialize)]
struct Popped<'a> {
    #[serde(borrow, default)]
    messages: Vec<PoppedMessage<'a>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PoppedMessage<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow)]
    transaction_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    partition_id: &'a str,
    #[serde(borrow, default)]
    lease_id: &'a str,
    #[serde(default)]
    data: SendTime,
}

/// The send time the producers put in every payload (absent in other payloads).
#[derive(serde::Deserialize, Default)]
struct SendTime {
    t: Option<u64>,
}

/// A message id as a number (unparsable ids count as 0: duplicates of each other).
fn uuid_bits(id: &str) -> u128 {
    uuid::Uuid::parse_str(id).map_or(0, |u| u.as_u128())
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[derive(Default)]
struct Stats {
    pushed: AtomicU64,
    consumed: AtomicU64,
    errors: AtomicU64,
    duplicates: AtomicU64,
    request_latency: Mutex<Option<Histogram<u64>>>,
    e2e_latency: Mutex<Option<Histogram<u64>>>,
    /// The push→pop latency of the current `--report-every` interval.
    e2e_interval: Mutex<Option<Histogram<u64>>>,
    /// Message ids seen, as 128-bit numbers.
    seen: Mutex<HashSet<u128>>,
}

fn record(h: &Mutex<Option<Histogram<u64>>>, us: u64) {
    if let Ok(mut g) = h.lock() {
        if let Some(h) = g.as_mut() {
            let _ = h.record(us.clamp(1, 3_600_000_000));
        }
    }
}

fn new_histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).ok()
}

fn quantiles(h: &Mutex<Option<Histogram<u64>>>) -> Value {
    let g = h.lock().ok();
    quantiles_of(g.as_ref().and_then(|g| g.as_ref()))
}

/// p50/p90/p99/p99.9 and max in milliseconds; null without samples.
fn quantiles_of(h: Option<&Histogram<u64>>) -> Value {
    match h.filter(|h| !h.is_empty()) {
        Some(h) => json!({
            "p50_ms": h.value_at_quantile(0.5) as f64 / 1000.0,
            "p90_ms": h.value_at_quantile(0.9) as f64 / 1000.0,
            "p99_ms": h.value_at_quantile(0.99) as f64 / 1000.0,
            "p999_ms": h.value_at_quantile(0.999) as f64 / 1000.0,
            "max_ms": h.max() as f64 / 1000.0,
        }),
        None => Value::Null,
    }
}

/// The kind of client-chosen transactionIds (see `--txids`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TxIds {
    /// Time-ordered UUIDs (UUIDv7).
    V7,
    /// Random UUIDs (UUIDv4).
    V4,
}

/// Where the items of a push request go and what they carry (see [`push_body`]).
#[derive(Debug, Clone, Copy)]
struct Shape {
    batch: usize,
    connections: usize,
    partitions: usize,
    spread: bool,
    txids: Option<TxIds>,
}

impl Shape {
    fn of(args: &Args) -> Shape {
        Shape {
            batch: args.batch,
            connections: args.connections.max(1),
            partitions: args.partitions.max(1),
            spread: args.spread,
            txids: args.txids,
        }
    }

    /// The partition of the `k`-th message of connection `c`: round robin over the partitions
    /// congruent to `c` (each connection its own), or, with `spread`, over all of them from a
    /// starting point of its own (every request touches partitions the others touch too).
    fn partition(&self, k: usize, c: usize) -> usize {
        if self.spread {
            (k + c * 7919) % self.partitions
        } else {
            (k * self.connections + c) % self.partitions
        }
    }
}

/// The body of one push request: `batch` messages of connection `c`, the `n`-th onwards; each
/// payload carries its send time. Written directly (not through `serde_json::Value`): the load
/// tool shares the machine with the server it measures and should cost it little.
fn push_body(queue: &str, shape: Shape, batch: usize, n: usize, c: usize, filler: &str) -> String {
    use std::fmt::Write as _;
    let mut body = String::with_capacity(batch * (filler.len() + 140) + 16);
    body.push_str(r#"{"items":["#);
    for i in 0..batch {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            r#"{{"queue":"{queue}","partition":"p{}","payload":{{"t":{},"f":"{filler}"}}"#,
            shape.partition(n + i, c),
            now_us()
        );
        match shape.txids {
            Some(TxIds::V7) => {
                let _ = write!(body, r#","transactionId":"{}""#, uuid::Uuid::now_v7());
            }
            Some(TxIds::V4) => {
                let _ = write!(body, r#","transactionId":"{}""#, uuid::Uuid::new_v4());
            }
            None => {}
        }
        body.push('}');
    }
    body.push_str("]}");
    body
}

/// The body of one ephemeral push: `shape.batch` messages of connection `c` (the `n`-th
/// onwards), all to the partition of the first (an ephemeral push names one partition).
fn ephemeral_push_body(queue: &str, shape: Shape, n: usize, c: usize, filler: &str) -> String {
    use std::fmt::Write as _;
    let mut body = String::with_capacity(shape.batch * (filler.len() + 40) + 64);
    let _ = write!(
        body,
        r#"{{"queue":"{queue}","partition":"p{}","messages":["#,
        shape.partition(n, c)
    );
    for i in 0..shape.batch {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(body, r#"{{"payload":{{"t":{},"f":"{filler}"}}}}"#, now_us());
    }
    body.push_str("]}");
    body
}

/// What a consumer of the ephemeral queues reads of a pop.
#[derive(serde::Deserialize)]
struct EphemeralPopped<'a> {
    #[serde(borrow, default)]
    messages: Vec<EphemeralMessage<'a>>,
}

#[derive(serde::Deserialize)]
struct EphemeralMessage<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(default)]
    payload: SendTime,
}

/// An ephemeral consumer's settings.
#[derive(Clone, Copy)]
struct EphemeralConsumer {
    batch: usize,
    auto: bool,
    e2e: bool,
}

/// One consumer of the ephemeral queue: long-poll pops, an ack of every message unless `auto`;
/// duplicates counted by message (the id without its delivery number).
async fn consume_ephemeral(
    c: EphemeralConsumer,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    addr: String,
    queue: String,
) {
    use std::hash::{Hash, Hasher};
    let Some(mut conn) = connect(&stats, &addr).await else {
        return;
    };
    let path = format!(
        "/api/v1/ephemeral/pop?queue={queue}&batch={}&wait=true&timeout=500&autoAck={}",
        c.batch, c.auto
    );
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let t0 = Instant::now();
        let (status, body) = match send(&mut conn, &stats, &addr, ("GET", &path), b"").await {
            Sent::Answer(status, body) => (status, body),
            Sent::Retry => continue,
            Sent::Gone => return,
        };
        let popped = match serde_json::from_slice::<EphemeralPopped<'_>>(&body) {
            Ok(p) if status == 200 => p,
            _ => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        if popped.messages.is_empty() {
            continue;
        }
        let received = now_us();
        {
            let mut seen = stats.seen.lock().unwrap_or_else(|e| e.into_inner());
            for m in &popped.messages {
                let message = m.id.rsplit_once('.').map_or(m.id, |(k, _)| k);
                let mut h = std::collections::hash_map::DefaultHasher::new();
                message.hash(&mut h);
                if !seen.insert(u128::from(h.finish())) {
                    stats.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                if let (true, Some(t)) = (c.e2e, m.payload.t) {
                    let waited = received.saturating_sub(t);
                    record(&stats.e2e_latency, waited);
                    record(&stats.e2e_interval, waited);
                }
            }
        }
        stats
            .consumed
            .fetch_add(popped.messages.len() as u64, Ordering::Relaxed);
        if !c.auto {
            let acks: Vec<Value> = popped
                .messages
                .iter()
                .map(|m| json!({"id": m.id}))
                .collect();
            let body = json!({"queue": queue, "acks": acks}).to_string();
            if !matches!(
                conn.request("POST", "/api/v1/ephemeral/ack", body.as_bytes())
                    .await,
                Ok((200, _))
            ) {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        record(&stats.request_latency, t0.elapsed().as_micros() as u64);
    }
}

/// Pushes `args.prefill` messages into `queue` (100 per request over `args.connections`
/// connections) before a consume run; not timed.
async fn prefill(args: &Args, addr: &str, queue: &str) -> Result<(), String> {
    let connections = args.connections.max(1);
    let shape = Shape::of(args);
    let per_conn = args.prefill.div_ceil(connections);
    let filler = "x".repeat(args.payload_bytes.saturating_sub(40));
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (addr, queue, filler) = (addr.to_owned(), queue.to_owned(), filler.clone());
        let total = per_conn.min(args.prefill.saturating_sub(c * per_conn));
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await.map_err(|e| e.to_string())?;
            let mut n = 0;
            while n < total {
                let batch = (total - n).min(100);
                let body = push_body(&queue, shape, batch, n, c, &filler);
                match conn.request("POST", "/api/v1/push", body.as_bytes()).await {
                    Ok((201, _)) => n += batch,
                    Ok((status, body)) => {
                        return Err(format!(
                            "prefill push answered {status}: {}",
                            String::from_utf8_lossy(&body)
                        ));
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

async fn run_once(args: &Args, addr: &str, queue: &str) -> Value {
    let stats = Arc::new(Stats {
        request_latency: Mutex::new(new_histogram()),
        e2e_latency: Mutex::new(new_histogram()),
        e2e_interval: Mutex::new(new_histogram()),
        ..Stats::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let filler = "x".repeat(args.payload_bytes.saturating_sub(40));
    let mut tasks = Vec::new();
    let producers = matches!(args.mode, Mode::Push | Mode::E2e);
    let consumers = matches!(args.mode, Mode::Consume | Mode::Autoack | Mode::E2e);
    if producers {
        let per_conn_interval = (args.rate > 0).then(|| {
            Duration::from_secs_f64(args.connections as f64 * args.batch as f64 / args.rate as f64)
        });
        for c in 0..args.connections {
            let (stats, stop, addr, queue, filler) = (
                stats.clone(),
                stop.clone(),
                addr.to_owned(),
                queue.to_owned(),
                filler.clone(),
            );
            let shape = Shape::of(args);
            let ephemeral = args.ephemeral;
            tasks.push(tokio::spawn(async move {
                let Some(mut conn) = connect(&stats, &addr).await else {
                    return;
                };
                let mut n = 0usize;
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if let Some(iv) = per_conn_interval {
                        tokio::time::sleep_until(next.into()).await;
                        next += iv;
                    }
                    let (route, body) = if ephemeral {
                        (
                            "/api/v1/ephemeral/push",
                            ephemeral_push_body(&queue, shape, n, c, &filler),
                        )
                    } else {
                        (
                            "/api/v1/push",
                            push_body(&queue, shape, shape.batch, n, c, &filler),
                        )
                    };
                    n += shape.batch;
                    let t0 = Instant::now();
                    match send(&mut conn, &stats, &addr, ("POST", route), body.as_bytes()).await {
                        Sent::Answer(201, _) => {
                            stats
                                .pushed
                                .fetch_add(shape.batch as u64, Ordering::Relaxed);
                            record(&stats.request_latency, t0.elapsed().as_micros() as u64);
                        }
                        Sent::Answer(..) => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Sent::Retry => {}
                        Sent::Gone => return,
                    }
                }
            }));
        }
    }
    if consumers {
        let auto = args.mode == Mode::Autoack;
        for _ in 0..args.consumers {
            let (stats, stop, addr, queue) = (
                stats.clone(),
                stop.clone(),
                addr.to_owned(),
                queue.to_owned(),
            );
            let batch = args.pop_batch.unwrap_or(args.batch).max(1);
            let claim = args.pop_partitions.max(1);
            let e2e = args.mode == Mode::E2e;
            if args.ephemeral {
                tasks.push(tokio::spawn(consume_ephemeral(
                    EphemeralConsumer { batch, auto, e2e },
                    stats.clone(),
                    stop.clone(),
                    deadline,
                    addr.to_owned(),
                    queue.to_owned(),
                )));
                continue;
            }
            tasks.push(tokio::spawn(async move {
                let Some(mut conn) = connect(&stats, &addr).await else {
                    return;
                };
                let path = format!("/api/v1/pop/queue/{queue}?batch={batch}&partitions={claim}&wait=true&timeout=500&autoAck={auto}");
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let t0 = Instant::now();
                    let (status, body) = match send(&mut conn, &stats, &addr, ("GET", &path), b"").await {
                        Sent::Answer(status, body) => (status, body),
                        Sent::Retry => continue,
                        Sent::Gone => return,
                    };
                    if status == 204 {
                        continue;
                    }
                    let Ok(popped) = serde_json::from_slice::<Popped<'_>>(&body) else {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let msgs = popped.messages;
                    let received = now_us();
                    {
                        let mut seen = stats.seen.lock().unwrap_or_else(|e| e.into_inner());
                        for m in &msgs {
                            if !seen.insert(uuid_bits(m.id)) {
                                stats.duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                            if e2e {
                                if let Some(t) = m.data.t {
                                    let waited = received.saturating_sub(t);
                                    record(&stats.e2e_latency, waited);
                                    record(&stats.e2e_interval, waited);
                                }
                            }
                        }
                    }
                    stats.consumed.fetch_add(msgs.len() as u64, Ordering::Relaxed);
                    if !auto {
                        // Offset commit: the last message of each partition's block.
                        use std::fmt::Write as _;
                        let mut body = String::from(r#"{"acknowledgments":["#);
                        let mut first = true;
                        for (i, m) in msgs.iter().enumerate() {
                            if msgs.get(i + 1).is_none_or(|n| n.partition_id != m.partition_id) {
                                if !first {
                                    body.push(',');
                                }
                                first = false;
                                let _ = write!(
                                    body,
                                    r#"{{"transactionId":{},"partitionId":"{}","status":"completed","leaseId":"{}"}}"#,
                                    serde_json::to_string(m.transaction_id.as_ref()).unwrap_or_default(),
                                    m.partition_id,
                                    m.lease_id
                                );
                            }
                        }
                        body.push_str("]}");
                        if !matches!(conn.request("POST", "/api/v1/ack/batch", body.as_bytes()).await, Ok((200, _))) {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    record(&stats.request_latency, t0.elapsed().as_micros() as u64);
                }
            }));
        }
    }
    if args.mode == Mode::Kv {
        for _ in 0..args.connections.max(1) {
            tasks.push(tokio::spawn(increment(
                args.batch.max(1),
                args.partitions.max(1),
                stats.clone(),
                stop.clone(),
                deadline,
                addr.to_owned(),
                queue.to_owned(),
            )));
        }
    }
    if args.mode == Mode::Cycle {
        for c in 0..args.connections.max(1) {
            tasks.push(tokio::spawn(cycles(
                c,
                args.batch.max(1),
                stats.clone(),
                stop.clone(),
                deadline,
                addr.to_owned(),
                queue.to_owned(),
            )));
        }
    }
    if args.mode == Mode::Fetch {
        for r in 0..args.consumers.max(1) {
            tasks.push(tokio::spawn(read_by_offset(
                Reader {
                    first: r,
                    step: args.consumers.max(1),
                    partitions: args.partitions.max(1),
                    records: args.batch.max(1),
                    max_bytes: args.batch.max(1) * args.payload_bytes.max(1),
                },
                stats.clone(),
                stop.clone(),
                deadline,
                addr.to_owned(),
                queue.to_owned(),
            )));
        }
    }
    // Progress while it runs.
    let progress = indicatif::ProgressBar::new(args.duration);
    if args.json {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut interval = Interval::new(args.report_every, started);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(line) = interval.due(&stats) {
            progress.suspend(|| {
                println!(
                    "{}",
                    if args.json {
                        line.to_string()
                    } else {
                        interval_human(&line)
                    }
                )
            });
        }
        let secs = started.elapsed().as_secs_f64().max(0.001);
        progress.set_position(started.elapsed().as_secs().min(args.duration));
        progress.set_message(format!(
            "pushed {:.0}/s consumed {:.0}/s errors {}",
            stats.pushed.load(Ordering::Relaxed) as f64 / secs,
            stats.consumed.load(Ordering::Relaxed) as f64 / secs,
            stats.errors.load(Ordering::Relaxed)
        ));
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    progress.finish_and_clear();
    RunFigures {
        server: addr,
        mode: &format!("{:?}", args.mode).to_lowercase(),
        seconds: started.elapsed().as_secs_f64(),
        pushed: stats.pushed.load(Ordering::Relaxed),
        consumed: stats.consumed.load(Ordering::Relaxed),
        errors: stats.errors.load(Ordering::Relaxed),
        duplicates: stats.duplicates.load(Ordering::Relaxed),
        request_latency: quantiles(&stats.request_latency),
        e2e_latency: quantiles(&stats.e2e_latency),
    }
    .json()
}

/// What one fetch reader reads: partitions `first`, `first + step`, … in turn, each call about
/// `records` records (`max_bytes` of payload) from a random offset below the partition's high
/// watermark (learnt from its first answer, read from offset 0).
#[derive(Debug, Clone, Copy)]
struct Reader {
    first: usize,
    step: usize,
    partitions: usize,
    records: usize,
    max_bytes: usize,
}

/// What a fetch reader reads of an answer.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FetchAnswer {
    entries: Vec<FetchedEntry>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FetchedEntry {
    records: Vec<serde::de::IgnoredAny>,
    high_watermark: u64,
}

async fn read_by_offset(
    reader: Reader,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    addr: String,
    queue: String,
) {
    let Some(mut conn) = connect(&stats, &addr).await else {
        return;
    };
    let mut high = vec![None::<u64>; reader.partitions];
    let mut i = reader.first;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let p = i % reader.partitions;
        i += reader.step;
        // A random offset from which `records` records remain (0 until the end is known).
        let offset = high[p].map_or(0, |h| {
            let room = h.saturating_sub(reader.records as u64).max(1);
            uuid::Uuid::new_v4().as_u128() as u64 % room
        });
        let body = format!(
            r#"{{"entries":[{{"queue":"{queue}","partition":"p{p}","offset":{offset},"maxBytes":{}}}]}}"#,
            reader.max_bytes
        );
        let t0 = Instant::now();
        match send(
            &mut conn,
            &stats,
            &addr,
            ("POST", "/api/v1/fetch"),
            body.as_bytes(),
        )
        .await
        {
            Sent::Answer(200, answer) => match serde_json::from_slice::<FetchAnswer>(&answer) {
                Ok(a) => {
                    for e in &a.entries {
                        stats
                            .consumed
                            .fetch_add(e.records.len() as u64, Ordering::Relaxed);
                        high[p] = Some(e.high_watermark);
                    }
                    record(&stats.request_latency, t0.elapsed().as_micros() as u64);
                }
                Err(_) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                }
            },
            Sent::Answer(..) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            Sent::Retry => {}
            Sent::Gone => return,
        }
    }
}

/// One key/value client: calls of `ops` increments of random keys among `keys` (the namespace
/// is the run's queue name), counting the operations applied.
async fn increment(
    ops: usize,
    keys: usize,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    addr: String,
    ns: String,
) {
    let Some(mut conn) = connect(&stats, &addr).await else {
        return;
    };
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let batch: Vec<Value> = (0..ops)
            .map(|_| {
                let k = uuid::Uuid::new_v4().as_u128() % keys as u128;
                json!({"op": "incr", "ns": ns, "key": format!("k{k}"), "forever": true})
            })
            .collect();
        let body = json!({ "operations": batch }).to_string();
        let t0 = Instant::now();
        match send(
            &mut conn,
            &stats,
            &addr,
            ("POST", "/api/v1/kv"),
            body.as_bytes(),
        )
        .await
        {
            Sent::Answer(200, _) => {
                stats.pushed.fetch_add(ops as u64, Ordering::Relaxed);
                record(&stats.request_latency, t0.elapsed().as_micros() as u64);
            }
            Sent::Answer(..) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            Sent::Retry => {}
            Sent::Gone => return,
        }
    }
}

/// One stream-cycle client: registers the query `<queue>.q`, makes its source partition
/// `c<c>` (one push, whose answer names the partition's id), then commits cycles of `items`
/// state upserts and `items` sink pushes until the deadline.
async fn cycles(
    c: usize,
    items: usize,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    addr: String,
    queue: String,
) {
    let Some(mut conn) = connect(&stats, &addr).await else {
        return;
    };
    let partition = format!("c{c}");
    let setup: [(&str, Value); 2] = [
        (
            "/streams/v1/queries",
            json!({"name": format!("{queue}.q"), "source_queue": queue, "config_hash": "load"}),
        ),
        (
            "/api/v1/push",
            json!({"items": [{"queue": queue, "partition": partition, "payload": {}}]}),
        ),
    ];
    let mut answers = Vec::new();
    for (path, body) in setup {
        match send(
            &mut conn,
            &stats,
            &addr,
            ("POST", path),
            body.to_string().as_bytes(),
        )
        .await
        {
            Sent::Answer(200 | 201, body) => {
                answers.push(serde_json::from_slice::<Value>(&body).unwrap_or_default());
            }
            _ => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    let (Some(query_id), Some(partition_id)) = (
        answers[0]["query_id"].as_str().map(str::to_owned),
        answers[1][0]["partition_id"].as_str().map(str::to_owned),
    ) else {
        stats.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let sink = format!("{queue}.sink");
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let state: Vec<Value> = (0..items)
            .map(|i| {
                n += 1;
                json!({"type": "upsert", "key": format!("w\u{1f}{}", i % 16), "value": {"acc": n, "windowEnd": n}})
            })
            .collect();
        let push: Vec<Value> = (0..items)
            .map(|i| json!({"queue": sink, "partition": partition, "payload": {"n": n, "i": i}}))
            .collect();
        let body = json!({
            "query_id": query_id, "partition_id": partition_id, "consumer_group": "load",
            "state_ops": state, "push_items": push, "ack": null,
        })
        .to_string();
        let t0 = Instant::now();
        match send(
            &mut conn,
            &stats,
            &addr,
            ("POST", "/streams/v1/cycle"),
            body.as_bytes(),
        )
        .await
        {
            Sent::Answer(200, body)
                if serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["success"] == true) =>
            {
                stats.pushed.fetch_add(items as u64, Ordering::Relaxed);
                record(&stats.request_latency, t0.elapsed().as_micros() as u64);
            }
            Sent::Answer(..) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            Sent::Retry => {}
            Sent::Gone => return,
        }
    }
}

/// What one run measured; its JSON is what every mode but `routes` answers (and `human` reads).
struct RunFigures<'a> {
    server: &'a str,
    mode: &'a str,
    seconds: f64,
    pushed: u64,
    consumed: u64,
    errors: u64,
    duplicates: u64,
    request_latency: Value,
    e2e_latency: Value,
}

impl RunFigures<'_> {
    fn json(self) -> Value {
        json!({
            "server": self.server,
            "mode": self.mode,
            "seconds": self.seconds,
            "pushed": self.pushed,
            "consumed": self.consumed,
            "push_msgs_per_sec": self.pushed as f64 / self.seconds,
            "consume_msgs_per_sec": self.consumed as f64 / self.seconds,
            "errors": self.errors,
            "duplicates": self.duplicates,
            "request_latency": self.request_latency,
            "e2e_latency": self.e2e_latency,
        })
    }
}

/// The `--report-every` intervals: counters at the last report, to print differences.
struct Interval {
    every: Option<Duration>,
    next: Instant,
    started: Instant,
    pushed: u64,
    consumed: u64,
}

impl Interval {
    fn new(every_secs: u64, started: Instant) -> Interval {
        let every = (every_secs > 0).then(|| Duration::from_secs(every_secs));
        Interval {
            every,
            next: started + every.unwrap_or_default(),
            started,
            pushed: 0,
            consumed: 0,
        }
    }

    /// The figures of the interval that just ended, if one did.
    fn due(&mut self, stats: &Stats) -> Option<Value> {
        let every = self.every?;
        if Instant::now() < self.next {
            return None;
        }
        self.next += every;
        let (pushed, consumed) = (
            stats.pushed.load(Ordering::Relaxed),
            stats.consumed.load(Ordering::Relaxed),
        );
        let latency = {
            let mut g = stats.e2e_interval.lock().unwrap_or_else(|e| e.into_inner());
            quantiles_of(std::mem::replace(&mut *g, new_histogram()).as_ref())
        };
        let line = json!({
            "at_s": self.started.elapsed().as_secs(),
            "pushed": pushed - self.pushed,
            "consumed": consumed - self.consumed,
            "backlog": pushed.saturating_sub(consumed),
            "e2e_latency": latency,
        });
        (self.pushed, self.consumed) = (pushed, consumed);
        Some(line)
    }
}

fn interval_human(v: &Value) -> String {
    let l = &v["e2e_latency"];
    format!(
        "{:>6} s: pushed {}, consumed {}, backlog {}, push->pop p50 {} ms, p99 {} ms, max {} ms",
        v["at_s"], v["pushed"], v["consumed"], v["backlog"], l["p50_ms"], l["p99_ms"], l["max_ms"]
    )
}

fn human(v: &Value) -> String {
    let q = |k: &str| {
        let l = &v[k];
        if l.is_null() {
            "-".to_owned()
        } else {
            format!(
                "p50 {} ms, p90 {} ms, p99 {} ms, p99.9 {} ms",
                l["p50_ms"], l["p90_ms"], l["p99_ms"], l["p999_ms"]
            )
        }
    };
    format!(
        "{} {} for {:.1} s: pushed {} ({:.0} msg/s), consumed {} ({:.0} msg/s), errors {}, duplicates {}\n  request latency: {}\n  push->pop latency: {}",
        v["mode"].as_str().unwrap_or(""),
        v["server"].as_str().unwrap_or(""),
        v["seconds"].as_f64().unwrap_or(0.0),
        v["pushed"],
        v["push_msgs_per_sec"].as_f64().unwrap_or(0.0),
        v["consumed"],
        v["consume_msgs_per_sec"].as_f64().unwrap_or(0.0),
        v["errors"],
        v["duplicates"],
        q("request_latency"),
        q("e2e_latency"),
    )
}

fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        eprintln!("cannot start the async runtime");
        return std::process::ExitCode::FAILURE;
    };
    if args.compare.is_some()
        && args.prefill == 0
        && matches!(args.mode, Mode::Consume | Mode::Autoack)
    {
        eprintln!(
            "consume and autoack with --compare drain a fresh queue per run: give --prefill N"
        );
        return std::process::ExitCode::FAILURE;
    }
    rt.block_on(async {
        let queue = args
            .queue
            .clone()
            .unwrap_or_else(|| format!("load-{}", now_us()));
        let peer = matches!(args.mode, Mode::PgmqSend | Mode::PgmqConsume);
        if args.mode == Mode::Routes || peer {
            let answer = if peer {
                let url = args.database_url.as_deref().unwrap_or_default();
                pgmq::run(&args, url).await
            } else {
                routes::run(&args, &addr_of(&args.url), &queue).await
            };
            return match answer {
                // The peer's runs read as the HTTP modes' do.
                Ok(v) if args.json && peer => {
                    println!("{}", json!({ "runs": [[v]] }));
                    std::process::ExitCode::SUCCESS
                }
                Ok(v) if args.json => {
                    println!("{v}");
                    std::process::ExitCode::SUCCESS
                }
                Ok(v) if peer => {
                    println!("{}", human(&v));
                    std::process::ExitCode::SUCCESS
                }
                Ok(v) => {
                    print!("{}", routes::human(&v));
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        let targets: Vec<String> = std::iter::once(addr_of(&args.url))
            .chain(args.compare.as_deref().map(addr_of))
            .collect();
        let rounds = if targets.len() > 1 {
            args.rounds.max(1)
        } else {
            1
        };
        let mut results: Vec<Vec<Value>> = vec![Vec::new(); targets.len()];
        for round in 0..rounds {
            for (i, t) in targets.iter().enumerate() {
                // A fresh queue per run, so consume modes start from what this run pushed.
                let q = format!("{queue}-{round}-{i}");
                let q = if args.queue.is_some() && targets.len() == 1 {
                    queue.clone()
                } else {
                    q
                };
                if args.prefill > 0
                    && matches!(args.mode, Mode::Consume | Mode::Autoack | Mode::Fetch)
                {
                    if let Err(e) = prefill(&args, t, &q).await {
                        eprintln!("{t}: {e}");
                        return std::process::ExitCode::FAILURE;
                    }
                }
                let r = run_once(&args, t, &q).await;
                if !args.json {
                    println!("{}", human(&r));
                }
                results[i].push(r);
            }
        }
        if args.json {
            println!("{}", json!({ "runs": results }));
        } else if targets.len() > 1 {
            let mean = |v: &[Value], k: &str| {
                v.iter().filter_map(|r| r[k].as_f64()).sum::<f64>() / v.len() as f64
            };
            for k in ["push_msgs_per_sec", "consume_msgs_per_sec"] {
                let (a, b) = (mean(&results[0], k), mean(&results[1], k));
                if a > 0.0 || b > 0.0 {
                    println!(
                        "{k}: {} {a:.0} vs {} {b:.0} (ratio {:.2})",
                        targets[0],
                        targets[1],
                        a / b.max(1e-9)
                    );
                }
            }
        }
        std::process::ExitCode::SUCCESS
    })
}
