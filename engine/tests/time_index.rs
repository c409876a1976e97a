//! The summaries of the messages' time index (`queen.summarize_time_index`): what the
//! queue-wide listings walk by time window.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{engine_with, push};
use queen_engine::EngineConfig;
use queen_engine::inspect::MessageFilter;
use queen_wire::Client;

/// One call of the summaries from the walk's state `(top, low)`; returns the new state and how
/// many ranges it summarised.
async fn summarize(
    e: &queen_engine::Engine,
    walk: (Option<i64>, Option<i64>),
    budget: i32,
) -> ((Option<i64>, Option<i64>), i32) {
    let rows = e
        .pool()
        .query_sql(
            "SELECT top, low, summarised FROM queen.summarize_time_index($1, $2, $3)",
            &[&walk.0, &walk.1, &budget],
        )
        .await
        .unwrap();
    let r = &rows[0];
    (
        (r.get("top").unwrap(), r.get("low").unwrap()),
        r.get("summarised").unwrap(),
    )
}

/// Full page ranges of the messages (16 pages each), counted as the summaries count them.
async fn full_ranges(e: &queen_engine::Engine) -> i64 {
    e.pool()
        .query_sql(
            "SELECT pg_relation_size('queen.messages')
                    / current_setting('block_size')::bigint / 16",
            &[],
        )
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
    let filled = full_ranges(&e).await;
    assert!(filled >= 5, "{filled} full ranges");

    // Someone holds the lock the summaries take (a vacuum, say): the call neither waits nor
    // fails, and pushes go on beside it.
    let vacuum = e.pool().acquire().await.unwrap();
    vacuum
        .batch_execute("BEGIN; LOCK TABLE queen.messages IN SHARE UPDATE EXCLUSIVE MODE")
        .await
        .unwrap();
    let (held, none) =
        tokio::time::timeout(Duration::from_secs(30), summarize(&e, (None, None), 1000))
            .await
            .expect("the call does not wait for the lock");
    assert_eq!(
        (held, none),
        ((None, None), 0),
        "nothing done, the state handed back"
    );
    push(&e, "timed", "p0", &["\"beside the lock\""]).await;
    pushed += 1;
    vacuum.batch_execute("COMMIT").await.unwrap();
    drop(vacuum);

    // The walk goes down from the newest full range, two ranges a call here: every filled
    // range once (autovacuum may have done some of the oldest), then nothing.
    let (mut walk, mut total) = ((None, None), 0);
    let mut calls = 0;
    loop {
        let (next, n) = summarize(&e, walk, 2).await;
        calls += 1;
        total += n;
        assert!(n <= 2, "{n} ranges in one call of budget 2");
        if next == walk {
            break;
        }
        walk = next;
    }
    assert_eq!(walk, (Some(filled), Some(0)), "every full range seen");
    assert!(total >= 1 && i64::from(total) <= filled, "{total}");
    assert!(i64::from(calls) > filled / 2, "{calls} calls");
    let (_, again) = summarize(&e, (None, None), 1000).await;
    assert_eq!(again, 0, "nothing left to summarise");

    // Ranges filled after the walk: the next call takes them from where it left off.
    for round in 0..4 {
        push(&e, "timed", &format!("p{}", round % 3), &payloads).await;
        pushed += payloads.len();
    }
    let (after, n) = summarize(&e, walk, 1000).await;
    let now_full = full_ranges(&e).await;
    assert!(now_full > filled, "{now_full} full ranges");
    assert_eq!(after, (Some(now_full), Some(0)));
    assert!(n >= 1, "{n}");

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
