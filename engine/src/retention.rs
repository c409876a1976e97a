//! The retention job (docs/semantics.md, "Retention"): deletes messages past `retentionSeconds`, committed
//! messages past `completedRetentionSeconds`, and partitions left empty, for queues with
//! `retentionEnabled`.
//!
//! The work is `queen.retention`, one small batch per statement (at most `retention_batch` rows
//! locked, never a partition counter a push waits on), repeated while a batch comes back full.
//! One server at a time: the function takes a transaction-level advisory lock with
//! `pg_try_advisory_xact_lock` and returns at once when another server holds it. Removed
//! partitions drop out of the push cache through the push path's "partition vanished" step.

use std::sync::{Arc, Weak};

use queen_wire::Client;

use crate::engine::Inner;
use crate::error::EngineError;

/// What one retention run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Messages past `retentionSeconds`.
    pub expired: u64,
    /// Committed messages past `completedRetentionSeconds`.
    pub completed: u64,
    /// Empty partitions.
    pub partitions: u64,
}

pub(crate) fn start(inner: Weak<Inner>) {
    crate::jobs::every(
        inner,
        "retention",
        |c| c.retention_interval,
        |i| async move {
            let r = run(&i).await?;
            if r != Removed::default() {
                tracing::info!(?r, "retention removed messages");
            }
            Ok(())
        },
    );
}

/// Runs batches until one comes back short.
pub(crate) async fn run(inner: &Arc<Inner>) -> Result<Removed, EngineError> {
    let batch = inner.config().retention_batch.max(1);
    let mut total = Removed::default();
    loop {
        let st = inner.st()?;
        let rows = inner.pool().query(&st.retention, &[&batch]).await?;
        let Some(r) = rows.first() else {
            return Ok(total);
        };
        let cols = st.cols.retention;
        let (e, c, p): (i64, i64, i64) = (
            r.get(cols.deleted)?,
            r.get(cols.completed)?,
            r.get(cols.partitions)?,
        );
        total.expired += u64::try_from(e).unwrap_or(0);
        total.completed += u64::try_from(c).unwrap_or(0);
        total.partitions += u64::try_from(p).unwrap_or(0);
        if e + c + p < i64::from(batch) {
            return Ok(total);
        }
        // Let pushes and pops in between the batches.
        tokio::task::yield_now().await;
    }
}
