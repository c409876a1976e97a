//! The summaries of the messages' time index (`queen.summarize_time_index`): what the
//! queue-wide listings walk by time window.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{engine_with, push};
use queen_engine::EngineConfig;
use queen_engine::inspect::MessageFilter;
use queen_wire::Client;

async fn summarize(e: &queen_engine::Engine) -> i32 {
    e.pool()
        .query_sql("SELECT queen.summarize_time_index(1000)", &[])
        .await
        .unwrap()[0]
        .single()
        .unwrap()
}

#[tokio::test]
async fn filled_ranges_are_summarised_once_without_waiting_for_a_vacuum() {
    // No background runs: the test drives the summaries itself.
    let e = engine_with(
        "time_index",
        EngineConfig {
            listen: false,
            summarize_interval: Duration::ZERO,
            ..EngineConfig::default()
        },
    )
    .await;
    let payload = format!("\"{}\"", "x".repeat(400));
    let payloads: Vec<&str> = vec![payload.as_str(); 250];
    let mut pushed = 0;
    for round in 0..12 {
        push(&e, "timed", &format!("p{}", round % 3), &payloads).await;
        pushed += payloads.len();
    }
    // ~3,000 rows of ~500 bytes: over 150 pages, several ranges of 16.
    let full_ranges: i64 = e
        .pool()
        .query_sql("SELECT pg_relation_size('queen.messages') / 8192 / 16", &[])
        .await
        .unwrap()[0]
        .single()
        .unwrap();
    assert!(full_ranges >= 5, "{full_ranges} full ranges");

    // Someone holds the lock the summaries take (a vacuum, say): the call neither waits nor
    // fails, and pushes go on beside it.
    let vacuum = e.pool().acquire().await.unwrap();
    vacuum
        .batch_execute("BEGIN; LOCK TABLE queen.messages IN SHARE UPDATE EXCLUSIVE MODE")
        .await
        .unwrap();
    let none = tokio::time::timeout(Duration::from_secs(30), summarize(&e))
        .await
        .expect("the call does not wait for the lock");
    assert_eq!(none, 0);
    push(&e, "timed", "p0", &["\"beside the lock\""]).await;
    pushed += 1;
    vacuum.batch_execute("COMMIT").await.unwrap();
    drop(vacuum);

    // Every filled range once (autovacuum may have done some of the oldest), then nothing.
    let first = summarize(&e).await;
    assert!(first >= 1 && i64::from(first) <= full_ranges, "{first}");
    assert_eq!(summarize(&e).await, 0);

    // The listing over summarised ranges still finds every message, newest first.
    let mut seen = 0;
    let mut filter = MessageFilter {
        queue: Some("timed".into()),
        limit: 1000,
        ..MessageFilter::default()
    };
    let mut newest = None;
    loop {
        let page = e.list_messages(&filter).await.unwrap();
        if newest.is_none() {
            newest = page.messages.first().map(|m| m.partition.clone());
        }
        seen += page.messages.len();
        match page.next {
            Some(next) => filter.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, pushed);
    assert_eq!(newest.as_deref(), Some("p0"));
}
