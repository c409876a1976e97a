//! Concurrency claims, with real parallelism and exact counting: no loss, no duplicate within a
//! group when acked, order kept within each partition, and no message ever skipped by a consumer
//! racing the producers.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use queen_engine::{AckStatus, BatchConfig, Engine, EngineConfig, PopRequest, PushItem};
use tokio::sync::Mutex;

const PRODUCERS: usize = 16;
const CONSUMERS: usize = 8;
const MESSAGES: usize = 100_000;
const PARTITIONS: usize = 50;
const PUSH_BATCH: usize = 100;

fn payload(producer: usize, seq: usize) -> String {
    format!(r#"{{"p":{producer},"s":{seq}}}"#)
}

fn parse(payload: &str) -> (usize, usize) {
    // {"p": 3, "s": 17} as jsonb prints it.
    let nums: Vec<usize> = payload
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (nums[0], nums[1])
}

async fn produce(e: &Engine, queue: &str) {
    let per = MESSAGES / PRODUCERS;
    let mut tasks = Vec::new();
    for producer in 0..PRODUCERS {
        let (e, queue) = (e.clone(), queue.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut seq = 0;
            while seq < per {
                let n = PUSH_BATCH.min(per - seq);
                let items: Vec<PushItem> = (seq..seq + n)
                    .map(|s| PushItem {
                        queue: queue.clone(),
                        partition: format!("p{}", (producer * 7 + s) % PARTITIONS),
                        payload: payload(producer, s).into(),
                        transaction_id: None,
                        trace_id: None,
                        producer_sub: None,
                    })
                    .collect();
                let out = e.push(items).await.unwrap();
                assert_eq!(out.len(), n);
                seq += n;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// What one group received: per partition, the (producer, seq) pairs in delivery order.
type Received = Arc<Mutex<HashMap<String, Vec<(usize, usize)>>>>;

async fn consume(
    e: &Engine,
    queue: &str,
    group: &str,
    received: Received,
    total: Arc<AtomicUsize>,
) {
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut tasks = Vec::new();
    for _ in 0..CONSUMERS {
        let (e, received, total) = (e.clone(), received.clone(), total.clone());
        let req = PopRequest {
            consumer_group: group.into(),
            batch: 100,
            ..PopRequest::new(queue)
        };
        tasks.push(tokio::spawn(async move {
            while total.load(Ordering::SeqCst) < MESSAGES {
                assert!(
                    Instant::now() < deadline,
                    "consumers stalled at {}",
                    total.load(Ordering::SeqCst)
                );
                let Some(r) = e.pop(&req, Some(Duration::from_millis(200))).await.unwrap() else {
                    continue;
                };
                {
                    let mut rec = received.lock().await;
                    for m in &r.messages {
                        rec.entry(m.partition.clone())
                            .or_default()
                            .push(parse(&m.payload));
                    }
                }
                total.fetch_add(r.messages.len(), Ordering::SeqCst);
                // Offset commit: acking the last message of a partition's block commits it all.
                let acks = r.commit_all(AckStatus::Completed);
                for o in e.ack(acks).await.unwrap() {
                    assert!(o.success && o.lease_released, "{o:?}");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn verify(group: &str, received: &HashMap<String, Vec<(usize, usize)>>) {
    let mut seen: HashMap<(usize, usize), usize> = HashMap::new();
    for (partition, msgs) in received {
        let mut last: HashMap<usize, usize> = HashMap::new();
        for &(p, s) in msgs {
            *seen.entry((p, s)).or_default() += 1;
            if let Some(prev) = last.insert(p, s) {
                assert!(
                    prev < s,
                    "{group}: order broken in {partition}: producer {p} seq {prev} then {s}"
                );
            }
            assert_eq!(
                format!("p{}", (p * 7 + s) % PARTITIONS),
                *partition,
                "{group}: wrong partition"
            );
        }
    }
    assert_eq!(seen.len(), MESSAGES, "{group}: every message delivered");
    let dups = seen.values().filter(|&&n| n > 1).count();
    assert_eq!(dups, 0, "{group}: {dups} messages delivered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_mode_16_producers_8_consumers_100k_messages() {
    let e = engine("conc_queue").await;
    let received: Received = Arc::default();
    let total = Arc::new(AtomicUsize::new(0));
    let consumers = {
        let (e, received, total) = (e.clone(), received.clone(), total.clone());
        tokio::spawn(async move { consume(&e, "q", "__QUEUE_MODE__", received, total).await })
    };
    produce(&e, "q").await;
    consumers.await.unwrap();
    verify("queue mode", &*received.lock().await);
    assert_eq!(total.load(Ordering::SeqCst), MESSAGES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_consumer_groups_each_get_everything_once() {
    let e = engine("conc_groups").await;
    let groups = ["g1", "g2", "g3"];
    let mut handles = Vec::new();
    let mut states = Vec::new();
    for g in groups {
        let received: Received = Arc::default();
        let total = Arc::new(AtomicUsize::new(0));
        states.push((g, received.clone(), total.clone()));
        let e = e.clone();
        handles.push(tokio::spawn(async move {
            consume(&e, "q", g, received, total).await
        }));
    }
    produce(&e, "q").await;
    for h in handles {
        h.await.unwrap();
    }
    for (g, received, total) in states {
        verify(g, &*received.lock().await);
        assert_eq!(total.load(Ordering::SeqCst), MESSAGES);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_racing_producers_on_one_partition_never_skips() {
    const PUSHERS: usize = 8;
    const EACH: usize = 400;
    let e = engine("race").await;
    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let e = e.clone();
        pushers.push(tokio::spawn(async move {
            for s in 0..EACH {
                // Single-message pushes, many in flight: commits interleave with the consumer.
                let out = e
                    .push(vec![item_json("q", "hot", payload(p, s))])
                    .await
                    .unwrap();
                assert_eq!(out.len(), 1);
            }
        }));
    }
    let mut got: Vec<(usize, usize)> = Vec::new();
    let mut positions = Vec::new();
    let req = PopRequest {
        partition: Some("hot".into()),
        batch: 7,
        auto_ack: true,
        ..PopRequest::new("q")
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while got.len() < PUSHERS * EACH {
        assert!(
            Instant::now() < deadline,
            "consumer stalled at {}",
            got.len()
        );
        if let Some(r) = e.pop(&req, Some(Duration::from_millis(100))).await.unwrap() {
            for m in r.messages {
                positions.push(m.position);
                got.push(parse(&m.payload));
            }
        }
    }
    for p in pushers {
        p.await.unwrap();
    }
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "delivered in position order"
    );
    let mut per_producer: HashMap<usize, Vec<usize>> = HashMap::new();
    for (p, s) in &got {
        per_producer.entry(*p).or_default().push(*s);
    }
    for (p, seqs) in per_producer {
        assert_eq!(
            seqs,
            (0..EACH).collect::<Vec<_>>(),
            "producer {p}: nothing skipped, nothing twice, in order"
        );
    }
    // And nothing is left behind the cursor.
    assert!(e.pop(&req, None).await.unwrap().is_none());
}

fn item_json(queue: &str, partition: &str, payload: String) -> PushItem {
    PushItem {
        queue: queue.into(),
        partition: partition.into(),
        payload: payload.into(),
        transaction_id: None,
        trace_id: None,
        producer_sub: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_any_partition_pops_each_claim_a_partition() {
    // More concurrent pops than any fixed candidate window: each must look past the partitions
    // the others have locked and claim one of its own.
    const N: usize = 24;
    // Pops wait up to 200 ms for company, so the concurrent ones are folded into few statements.
    let e = engine_with(
        "spread",
        EngineConfig {
            listen: false,
            pop_batch: BatchConfig {
                max_items: 64,
                max_hold: Duration::from_millis(200),
                max_in_flight: 1,
            },
            ..EngineConfig::default()
        },
    )
    .await;
    let items = (0..N)
        .map(|i| item_json("q", &format!("p{i}"), format!("{i}")))
        .collect();
    e.push(items).await.unwrap();
    let mut pops = Vec::new();
    for _ in 0..N {
        let e = e.clone();
        pops.push(tokio::spawn(async move {
            e.pop(&PopRequest::new("q"), None).await.unwrap()
        }));
    }
    let mut partitions = Vec::new();
    for p in pops {
        let r = p
            .await
            .unwrap()
            .expect("every pop finds a partition of its own");
        partitions.push(r.messages[0].partition.clone());
    }
    partitions.sort();
    partitions.dedup();
    assert_eq!(partitions.len(), N, "no partition was leased twice");
}
