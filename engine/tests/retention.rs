//! Retention runs on one server at a time: the advisory lock of `queen.retention`.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{configure, engine_with, push};
use queen_engine::{EngineConfig, QueueOptions};
use queen_wire::Client;

async fn stored(e: &queen_engine::Engine) -> i64 {
    e.pool()
        .query_sql("SELECT count(*) FROM queen.messages", &[])
        .await
        .unwrap()[0]
        .single()
        .unwrap()
}

#[tokio::test]
async fn retention_waits_for_the_server_holding_the_lock() {
    // No background runs: the test drives retention itself.
    let e = engine_with(
        "retention_lock",
        EngineConfig {
            listen: false,
            retention_interval: Duration::ZERO,
            ..EngineConfig::default()
        },
    )
    .await;
    configure(
        &e,
        "old",
        QueueOptions {
            retention_enabled: Some(true),
            retention_seconds: Some(1),
            ..Default::default()
        },
    )
    .await;
    push(&e, "old", "Default", &["a", "b", "c"]).await;
    // Age the messages instead of waiting for them to age.
    e.pool()
        .batch_execute("UPDATE queen.messages SET created_at = now() - interval '1 hour'")
        .await
        .unwrap();

    // Another server is running retention: this one does nothing, and says so.
    let other = e.pool().acquire().await.unwrap();
    other
        .query_sql(
            "SELECT pg_advisory_lock(hashtext('queen.retention')::bigint)",
            &[],
        )
        .await
        .unwrap();
    let r = e.run_retention().await.unwrap();
    assert_eq!(
        r,
        Default::default(),
        "nothing removed while another server holds the lock"
    );
    assert_eq!(stored(&e).await, 3);

    other
        .query_sql(
            "SELECT pg_advisory_unlock(hashtext('queen.retention')::bigint)",
            &[],
        )
        .await
        .unwrap();
    drop(other);
    let r = e.run_retention().await.unwrap();
    assert_eq!(r.expired, 3);
    assert_eq!(stored(&e).await, 0);
}
