//! The lease-expiry sweeper: settles leases that ran out, counting each as a failed delivery of
//! the messages it covered (so a message that keeps crashing its consumer ends in the DLQ).
//!
//! Safe on several servers at once: the database function locks cursor rows with
//! `SKIP LOCKED`, so sweepers (and pops that find an expired lease, which settle it themselves)
//! never settle the same lease twice. Works in batches of [`BATCH`].

use std::sync::{Arc, Weak};

use queen_wire::Client;

use crate::engine::Inner;
use crate::error::EngineError;

/// Leases settled per statement.
const BATCH: i32 = 200;

pub(crate) fn start(inner: Weak<Inner>) {
    crate::jobs::every(
        inner,
        "lease sweep",
        |c| c.sweep_interval,
        |i| async move { sweep(&i).await.map(drop) },
    );
}

/// Settles every expired lease, in batches.
pub(crate) async fn sweep(inner: &Arc<Inner>) -> Result<u64, EngineError> {
    let mut total = 0u64;
    loop {
        let rows = inner.pool().query(&inner.st()?.sweep, &[&BATCH]).await?;
        let n: i32 = crate::statements::first_value(&rows)?.unwrap_or(0);
        total += u64::try_from(n).unwrap_or(0);
        if n < BATCH {
            if total > 0 {
                // Messages are available again.
                inner.hub().wake_all();
            }
            return Ok(total);
        }
    }
}
