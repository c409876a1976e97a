//! Long-poll wake-up latency over HTTP: a pop parked with `wait=true` is woken by a push.
//!
//! For each of `ROUNDS` rounds: a client parks a pop on a fresh queue; once the server reports it
//! parked, another client pushes one message. Reported (p50/p90/p99/max):
//!
//! * `push sent → pop answered`: includes the push's commit;
//! * `push answered → pop answered`: the wake-up itself as the producer sees it (0 when the pop
//!   response arrived first: the wake-up happens at commit, before the push response is written).
//!
//! Server and clients run in this process (same 2 cores), over loopback, against the durable
//! embedded PostgreSQL. Run: `cargo bench --bench longpoll`.

#![allow(clippy::print_stdout)] // A bench reports on stdout.

#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};

use queen_engine::{Engine, EngineConfig};
use queen_http::{App, HttpConfig};
use queen_wire::{Pool, PoolConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ROUNDS: usize = 300;

async fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, Instant) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let at = Instant::now();
    let status = std::str::from_utf8(&raw[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, at)
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let q = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    println!(
        "{name:<28} p50 {:>8.2?}  p90 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}",
        q(0.5),
        q(0.9),
        q(0.99),
        v[v.len() - 1]
    );
}

fn main() {
    let (config, _cluster) = support::bench_server();
    let rt = support::runtime();
    rt.block_on(async move {
        let pool = Pool::connect(
            config,
            PoolConfig {
                size: 4,
                ..PoolConfig::default()
            },
        )
        .await
        .expect("pool");
        let engine = Engine::start(
            pool,
            EngineConfig {
                listen: false,
                ..EngineConfig::default()
            },
        )
        .await
        .expect("engine");
        let app = App::new(engine.clone(), HttpConfig::default(), None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(queen_http::serve(
            listener,
            app,
            std::future::pending(),
            Duration::from_secs(1),
        ));

        let mut from_send = Vec::with_capacity(ROUNDS);
        let mut from_ack = Vec::with_capacity(ROUNDS);
        for i in 0..ROUNDS {
            let queue = format!("lp{i}");
            let path = format!("/api/v1/pop/queue/{queue}?wait=true&timeout=10000");
            let waiter = tokio::spawn(async move { http(port, "GET", &path, "").await });
            while engine.hub().waiting(&queue) == 0 {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let body = format!(r#"{{"items":[{{"queue":"{queue}","payload":{{"i":{i}}}}}]}}"#);
            let sent = Instant::now();
            let (status, pushed) = http(port, "POST", "/api/v1/push", &body).await;
            assert_eq!(status, 201);
            let (status, popped) = waiter.await.expect("waiter");
            assert_eq!(status, 200);
            from_send.push(popped - sent);
            from_ack.push(popped.saturating_duration_since(pushed));
        }
        println!("machine: {}; {ROUNDS} rounds", support::describe_machine());
        summary("push sent -> pop answered", from_send);
        summary("push answered -> pop answered", from_ack);
    });
}
