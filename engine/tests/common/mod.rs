//! Shared set-up: a fresh database per test, an engine on it, and small helpers.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use queen_engine::{
    AckItem, AckStatus, Engine, EngineConfig, PopRequest, PopResult, PushItem, QueueOptions,
};
use queen_wire::{Pool, PoolConfig};

pub async fn engine(name: &str) -> Engine {
    engine_with(
        name,
        EngineConfig {
            listen: false,
            ..EngineConfig::default()
        },
    )
    .await
}

pub async fn engine_with(name: &str, config: EngineConfig) -> Engine {
    let cfg = queen_wire::embedded::test_config(name)
        .await
        .expect("test database");
    let pool = Pool::connect(
        cfg,
        PoolConfig {
            size: 6,
            ..PoolConfig::default()
        },
    )
    .await
    .expect("pool");
    Engine::start(pool, config).await.expect("engine")
}

pub fn item(queue: &str, partition: &str, payload: &str) -> PushItem {
    PushItem {
        queue: queue.into(),
        partition: partition.into(),
        // Payloads are JSON: the tests use strings.
        payload: format!("\"{payload}\"").into(),
        transaction_id: None,
        trace_id: None,
        producer_sub: None,
    }
}

pub fn with_txid(mut it: PushItem, txid: &str) -> PushItem {
    it.transaction_id = Some(txid.into());
    it
}

pub async fn push(e: &Engine, queue: &str, partition: &str, payloads: &[&str]) {
    let items = payloads.iter().map(|p| item(queue, partition, p)).collect();
    let out = e.push(items).await.unwrap();
    assert!(
        out.iter()
            .all(|o| o.status == queen_engine::PushStatus::Queued)
    );
}

pub fn pop_req(queue: &str, partition: Option<&str>, group: &str, batch: u32) -> PopRequest {
    PopRequest {
        partition: partition.map(str::to_owned),
        consumer_group: group.into(),
        batch,
        ..PopRequest::new(queue)
    }
}

pub async fn pop(e: &Engine, req: &PopRequest) -> Option<PopResult> {
    e.pop(req, None).await.unwrap()
}

pub fn payloads(r: &Option<PopResult>) -> Vec<String> {
    r.as_ref()
        .map(|r| {
            r.messages
                .iter()
                .map(|m| m.payload.trim_matches('"').to_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn ack_of(r: &PopResult, i: usize, status: AckStatus) -> AckItem {
    let m = &r.messages[i];
    AckItem {
        transaction_id: m.transaction_id.clone(),
        partition_id: m.partition_id,
        status,
        consumer_group: r.consumer_group.clone(),
        error: None,
        lease_id: r.lease_id,
    }
}

pub async fn configure(e: &Engine, queue: &str, o: QueueOptions) {
    e.configure(queue, None, None, &o).await.unwrap();
}

/// Waits until `cond` holds, checking every 20 ms, at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
