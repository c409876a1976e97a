//! `routes` mode: how fast the analytics routes answer on a large data set while a push/pop
//! load runs, and what their traffic costs that load.
//!
//! 1. Fills a queue (`--fill` messages over `--partitions` partitions, spread) and gives
//!    `--groups` consumer groups cursors on every partition (autoAck pops of a few messages per
//!    partition, so each group lags). Skipped with `--fill 0` (the queue is already there).
//! 2. Reads every route once (not recorded: the first read builds the analytics snapshot).
//! 3. `--rounds` times: runs the e2e load (`--rate` msg/s offered on a fresh queue of its own,
//!    100 partitions) for `--duration` seconds alone — the baseline — and then again while one
//!    client reads every analytics route in turn, as a dashboard would: `--route-rate`
//!    requests per second, or back to back with `--route-rate 0`. Prints
//!    each route's p50/p99/max over all rounds and the load's figures of every run.
//!
//! A route that answers anything but 200 is counted as an error (and printed).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Args, Conn, Mode, new_histogram, prefill, run_once};

/// Paths of the routes a dashboard reads, built from what the data set holds.
fn routes(
    queue: &str,
    partition_id: &str,
    txid: &str,
    next: Option<&str>,
) -> Vec<(String, String)> {
    let mut r: Vec<(String, String)> = [
        ("overview", "/api/v1/resources/overview".to_owned()),
        ("status", "/api/v1/status".to_owned()),
        ("status/queues", "/api/v1/status/queues".to_owned()),
        (
            "status/queues/{q}",
            format!("/api/v1/status/queues/{queue}"),
        ),
        (
            "status/queues/{q}/messages",
            format!("/api/v1/status/queues/{queue}/messages?limit=50"),
        ),
        ("resources/queues", "/api/v1/resources/queues".to_owned()),
        (
            "resources/queues/{q}",
            format!("/api/v1/resources/queues/{queue}"),
        ),
        (
            "resources/namespaces",
            "/api/v1/resources/namespaces".to_owned(),
        ),
        ("resources/tasks", "/api/v1/resources/tasks".to_owned()),
        (
            "messages?queue",
            format!("/api/v1/messages?queue={queue}&limit=50"),
        ),
        (
            "messages?queue&partition",
            format!("/api/v1/messages?queue={queue}&partition=p1&limit=50"),
        ),
        (
            "messages?queue&status=pending",
            format!("/api/v1/messages?queue={queue}&status=pending&limit=50"),
        ),
        (
            "messages?queue&status=completed",
            format!("/api/v1/messages?queue={queue}&status=completed&limit=50"),
        ),
        (
            "messages?queue&status=processing",
            format!("/api/v1/messages?queue={queue}&status=processing&limit=50"),
        ),
        (
            "messages/{p}/{tx}",
            format!("/api/v1/messages/{partition_id}/{txid}"),
        ),
        (
            "traces/{p}/{tx}",
            format!("/api/v1/traces/{partition_id}/{txid}"),
        ),
        ("dlq?queue", format!("/api/v1/dlq?queue={queue}&limit=50")),
        ("consumer-groups", "/api/v1/consumer-groups".to_owned()),
        (
            "consumer-groups/{g}",
            "/api/v1/consumer-groups/g0".to_owned(),
        ),
        (
            "consumer-groups/lagging",
            "/api/v1/consumer-groups/lagging?minLagSeconds=60".to_owned(),
        ),
        ("traces/names", "/api/v1/traces/names".to_owned()),
        ("status/analytics", "/api/v1/status/analytics".to_owned()),
        ("status/buffers", "/api/v1/status/buffers".to_owned()),
        (
            "system/maintenance",
            "/api/v1/system/maintenance".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(n, p)| (n.to_owned(), p))
    .collect();
    if let Some(cursor) = next {
        r.push((
            "messages?queue (page 2)".to_owned(),
            format!("/api/v1/messages?queue={queue}&limit=50&cursor={cursor}"),
        ));
    }
    r
}

/// Pops a few messages per partition for each group (autoAck), so every group has a cursor
/// on every partition and lags behind.
async fn make_groups(
    addr: &str,
    queue: &str,
    groups: usize,
    partitions: usize,
) -> Result<(), String> {
    let mut tasks = Vec::new();
    for g in 0..groups {
        let (addr, queue) = (addr.to_owned(), queue.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await.map_err(|e| e.to_string())?;
            // Each pop claims up to 100 partitions; twice the minimum covers the stragglers.
            for _ in 0..(partitions.div_ceil(100) * 2).max(1) {
                let path = format!(
                    "/api/v1/pop/queue/{queue}?consumerGroup=g{g}&batch=200&partitions=100&autoAck=true&subscriptionMode=all"
                );
                match conn.request("GET", &path, b"").await {
                    Ok((200 | 204, _)) => {}
                    Ok((s, b)) => {
                        return Err(format!("group pop answered {s}: {}", String::from_utf8_lossy(&b)));
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

/// One message of the data set (partition id, transactionId) and the listing's next cursor.
async fn sample_message(
    addr: &str,
    queue: &str,
) -> Result<(String, String, Option<String>), String> {
    let mut conn = Conn::open(addr).await.map_err(|e| e.to_string())?;
    let (status, body) = conn
        .request(
            "GET",
            &format!("/api/v1/messages?queue={queue}&limit=50"),
            b"",
        )
        .await
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| format!("listing {status}: {e}"))?;
    let m = &v["messages"][0];
    let (Some(p), Some(t)) = (m["partitionId"].as_str(), m["transactionId"].as_str()) else {
        return Err(format!("the listing holds no message: {v}"));
    };
    Ok((
        p.to_owned(),
        t.to_owned(),
        v["nextCursor"].as_str().map(str::to_owned),
    ))
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Runs the mode; returns its JSON report.
pub(crate) async fn run(args: &Args, addr: &str, queue: &str) -> Result<Value, String> {
    let partitions = args.partitions.max(1);
    if args.fill > 0 {
        eprintln!(
            "filling {queue}: {} messages over {partitions} partitions",
            args.fill
        );
        let t0 = Instant::now();
        let fill_args = Args {
            prefill: args.fill,
            spread: true,
            batch: 100,
            connections: 8,
            ..args.clone()
        };
        prefill(&fill_args, addr, queue).await?;
        eprintln!(
            "filled in {:.0} s; creating {} groups",
            t0.elapsed().as_secs_f64(),
            args.groups
        );
        make_groups(addr, queue, args.groups, partitions).await?;
    }
    let (partition_id, txid, next) = sample_message(addr, queue).await?;
    let paths = routes(queue, &partition_id, &txid, next.as_deref());

    // The load on queues of its own over 100 partitions, alone and then beside the route
    // traffic, `--rounds` times (each run on a fresh queue), so the two can be compared with
    // their spread.
    let load_args = Args {
        mode: Mode::E2e,
        spread: false,
        partitions: 100,
        ..args.clone()
    };
    let mut conn = Conn::open(addr).await.map_err(|e| e.to_string())?;
    // One pass first, not recorded: the first read of a route builds the analytics snapshot
    // and warms the caches; the figures are the steady state a dashboard sees.
    for (_, path) in &paths {
        let _ = conn.request("GET", path, b"").await;
    }
    let mut hists: Vec<_> = paths.iter().map(|_| new_histogram()).collect();
    let mut errors: Vec<(String, u16, String)> = Vec::new();
    let mut rounds = 0u64;
    let (mut alone, mut with) = (Vec::new(), Vec::new());
    // Fresh queue names for this invocation: a queue left by an earlier one would hand its
    // consumers old messages.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let gap = (args.route_rate > 0).then(|| Duration::from_secs_f64(1.0 / args.route_rate as f64));
    for round in 0..args.rounds.max(1) {
        eprintln!("round {}: load alone for {} s", round + 1, args.duration);
        alone.push(
            run_once(
                &load_args,
                addr,
                &format!("{queue}-live-{run}-{round}-alone"),
            )
            .await,
        );
        eprintln!(
            "round {}: load with the route traffic for {} s",
            round + 1,
            args.duration
        );
        let load = {
            let (a, q) = (
                load_args.clone(),
                format!("{queue}-live-{run}-{round}-with"),
            );
            let addr = addr.to_owned();
            tokio::spawn(async move { run_once(&a, &addr, &q).await })
        };
        let deadline = Instant::now() + Duration::from_secs(args.duration);
        while Instant::now() < deadline {
            for (i, (name, path)) in paths.iter().enumerate() {
                if let Some(gap) = gap {
                    tokio::time::sleep(gap).await;
                }
                let mut t0 = Instant::now();
                let mut answer = conn.request("GET", path, b"").await;
                if answer.is_err() {
                    // The server closes keep-alive connections left idle (between rounds):
                    // one retry on a new connection.
                    conn = Conn::open(addr).await.map_err(|e| e.to_string())?;
                    t0 = Instant::now();
                    answer = conn.request("GET", path, b"").await;
                }
                match answer {
                    Ok((200, _)) => {
                        if let Some(h) = hists[i].as_mut() {
                            let _ = h.record((t0.elapsed().as_micros() as u64).max(1));
                        }
                    }
                    Ok((s, b)) => {
                        if errors.len() < 20 {
                            errors.push((
                                name.clone(),
                                s,
                                String::from_utf8_lossy(&b).into_owned(),
                            ));
                        }
                    }
                    Err(e) => {
                        errors.push((name.clone(), 0, e.to_string()));
                        conn = Conn::open(addr).await.map_err(|e| e.to_string())?;
                    }
                }
            }
            rounds += 1;
        }
        with.push(load.await.map_err(|e| e.to_string())?);
    }
    let table: Vec<Value> = paths
        .iter()
        .zip(&hists)
        .map(
            |((name, _), h)| match h.as_ref().filter(|h| !h.is_empty()) {
                Some(h) => json!({
                    "route": name,
                    "samples": h.len(),
                    "p50_ms": ms(h.value_at_quantile(0.5)),
                    "p99_ms": ms(h.value_at_quantile(0.99)),
                    "max_ms": ms(h.max()),
                }),
                None => json!({"route": name, "samples": 0}),
            },
        )
        .collect();
    Ok(json!({
        "mode": "routes",
        "server": addr,
        "rounds": rounds,
        "route_rate": args.route_rate,
        "routes": table,
        "errors": errors.iter().map(|(n, s, b)| json!({"route": n, "status": s, "body": b})).collect::<Vec<_>>(),
        "load_alone": alone,
        "load_with_routes": with,
    }))
}

/// The report as text: one line per route, then the load's figures.
pub(crate) fn human(v: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "routes on {} ({} rounds, {} requests/s; 0: back to back)\n{:<32} {:>8} {:>9} {:>9} {:>9}\n",
        v["server"].as_str().unwrap_or(""),
        v["rounds"],
        v["route_rate"],
        "route",
        "samples",
        "p50 ms",
        "p99 ms",
        "max ms"
    );
    for r in v["routes"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<32} {:>8} {:>9.1} {:>9.1} {:>9.1}",
            r["route"].as_str().unwrap_or(""),
            r["samples"],
            r["p50_ms"].as_f64().unwrap_or(f64::NAN),
            r["p99_ms"].as_f64().unwrap_or(f64::NAN),
            r["max_ms"].as_f64().unwrap_or(f64::NAN),
        );
    }
    for e in v["errors"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "error: {} answered {}: {}",
            e["route"], e["status"], e["body"]
        );
    }
    let runs = |key: &str| v[key].as_array().cloned().unwrap_or_default();
    for (i, (a, w)) in runs("load_alone")
        .iter()
        .zip(runs("load_with_routes").iter())
        .enumerate()
    {
        let _ = writeln!(out, "round {} load alone:       {}", i + 1, crate::human(a));
        let _ = writeln!(out, "round {} load with routes: {}", i + 1, crate::human(w));
    }
    out
}
