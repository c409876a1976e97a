//! Long-poll wake-ups: in-process at once, and across servers through NOTIFY. The re-check
//! interval is set far above the asserted bounds, so only a real wake-up can meet them.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use queen_engine::{Engine, EngineConfig, PopRequest};
use queen_wire::{Pool, PoolConfig};

fn slow_recheck(listen: bool) -> EngineConfig {
    EngineConfig {
        long_poll_recheck: Duration::from_secs(60),
        listen,
        ..EngineConfig::default()
    }
}

async fn wait_parked(e: &Engine, queue: &str, n: usize) {
    assert!(
        eventually(Duration::from_secs(10), || async {
            e.hub().waiting(queue) >= n
        })
        .await,
        "pops did not park"
    );
}

#[tokio::test]
async fn a_push_wakes_local_waiters_at_once() {
    let e = engine_with("wake_local", slow_recheck(false)).await;
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let e = e.clone();
        waiters.push(tokio::spawn(async move {
            let req = PopRequest {
                batch: 1,
                ..PopRequest::new("q")
            };
            let r = e.pop(&req, Some(Duration::from_secs(30))).await.unwrap();
            (r, Instant::now())
        }));
    }
    wait_parked(&e, "q", 5).await;
    let pushed_at = Instant::now();
    // One message in each of five partitions: one lease per partition, so each waiter can
    // claim one.
    let items = (1..=5)
        .map(|i| item("q", &format!("p{i}"), &i.to_string()))
        .collect();
    e.push(items).await.unwrap();
    let mut got = Vec::new();
    for w in waiters {
        let (r, at) = w.await.unwrap();
        assert!(
            at - pushed_at < Duration::from_secs(2),
            "woken by the push, not the re-check"
        );
        got.extend(payloads(&r));
    }
    got.sort();
    assert_eq!(
        got,
        vec!["1", "2", "3", "4", "5"],
        "each waiter got its own message"
    );
    assert_eq!(e.hub().waiting("q"), 0);
}

#[tokio::test]
async fn a_push_on_one_server_wakes_a_waiter_on_another() {
    let cfg = queen_wire::embedded::test_config("wake_remote")
        .await
        .unwrap();
    let a = Engine::start(
        Pool::connect(cfg.clone(), PoolConfig::default())
            .await
            .unwrap(),
        slow_recheck(false),
    )
    .await
    .unwrap();
    let b = Engine::start(
        Pool::connect(cfg, PoolConfig::default()).await.unwrap(),
        slow_recheck(true),
    )
    .await
    .unwrap();
    assert!(eventually(Duration::from_secs(10), || async { b.hub().is_listening() }).await);
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            let r = b
                .pop(&PopRequest::new("q"), Some(Duration::from_secs(30)))
                .await
                .unwrap();
            (r, Instant::now())
        })
    };
    wait_parked(&b, "q", 1).await;
    let pushed_at = Instant::now();
    push(&a, "q", "p", &["cross"]).await;
    let (r, at) = waiter.await.unwrap();
    assert_eq!(payloads(&r), vec!["cross"]);
    assert!(
        at - pushed_at < Duration::from_secs(2),
        "woken through NOTIFY in {:?}",
        at - pushed_at
    );
}

#[tokio::test]
async fn a_waiter_that_goes_away_leaves_nothing_leased() {
    let e = engine_with("wake_gone", slow_recheck(false)).await;
    let waiter = {
        let e = e.clone();
        tokio::spawn(async move {
            e.pop(&PopRequest::new("q"), Some(Duration::from_secs(30)))
                .await
        })
    };
    wait_parked(&e, "q", 1).await;
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    assert_eq!(e.hub().waiting("q"), 0, "the parked pop was released");
    push(&e, "q", "p", &["kept"]).await;
    assert_eq!(
        payloads(&pop(&e, &PopRequest::new("q")).await),
        vec!["kept"],
        "nothing was leased to it"
    );
}
