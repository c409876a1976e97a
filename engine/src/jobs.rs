//! The engine's periodic background jobs: lease sweeps ([`crate::sweeper`]), retention
//! ([`crate::retention`]) and the summaries of the listing's time index (here). Each is a task
//! that runs its job, sleeps its interval and repeats while the engine lives.
//!
//! # Cancel safety
//!
//! Tasks hold the engine weakly and end at the first wake-up after it is dropped; a job in
//! progress keeps it until its statement ends. Every job is idempotent and resumable: one that
//! fails is logged and runs again at its next interval.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::engine::{EngineConfig, Inner};
use crate::error::EngineError;

/// Background work that only serves readers (kept-warm analytics, early index summaries) runs
/// while something was read within this long, and stops when readers go away.
pub(crate) const WATCHED_FOR: Duration = Duration::from_secs(300);

/// When something was last read (see [`WATCHED_FOR`]).
#[derive(Debug, Default)]
pub(crate) struct Watched(std::sync::Mutex<Option<Instant>>);

impl Watched {
    /// Notes a read now.
    pub(crate) fn touch(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Read within [`WATCHED_FOR`].
    pub(crate) fn watched(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < WATCHED_FOR)
    }
}

/// Runs `job` every `interval` (read from the engine's configuration before each run) until
/// the engine is dropped. A zero interval means never: no task is started.
pub(crate) fn every<F, Fut>(
    inner: Weak<Inner>,
    what: &'static str,
    interval: fn(&EngineConfig) -> Duration,
    job: F,
) where
    F: Fn(Arc<Inner>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), EngineError>> + Send + 'static,
{
    if inner
        .upgrade()
        .is_none_or(|i| interval(i.config()).is_zero())
    {
        return;
    }
    tokio::spawn(async move {
        loop {
            let pause = match inner.upgrade() {
                Some(i) => {
                    let pause = interval(i.config());
                    if let Err(e) = job(i).await {
                        tracing::debug!(error = %e, job = what, "background job failed");
                    }
                    pause
                }
                None => return,
            };
            tokio::time::sleep(pause).await;
        }
    });
}

/// Page ranges a run of the summaries looks at, at most, each way (16 pages each: 1,000 ranges
/// are about 125 MB of messages, a few seconds of pushes at 100,000 msg/s, or a bulk load of
/// ~400,000 messages; a summary reads its 16 pages, a range already summarised costs a look-up).
const SUMMARIZE_BUDGET: i32 = 1_000;

/// Keeps the page ranges of the messages' time index summarised, on the analytics pool, while
/// messages were listed within [`WATCHED_FOR`]. The queue-wide listings walk that index by time
/// window, and a range not summarised yet matches every window: without this, every listing
/// read every page written since autovacuum last summarised (its naptime, a minute by default;
/// after a bulk load, the end of its vacuum), which under a 1,000 msg/s load doubled a
/// listing's time (`queen.summarize_time_index` has the figures). Each run summarises the
/// ranges filled since the last and walks a little further down the older ones it has not seen
/// (the walk's state is kept here between runs), so a large table is walked once. Summarising reads each page
/// once, the work autovacuum would do later; with nobody listing it is left to autovacuum.
pub(crate) fn start_summaries(inner: Weak<Inner>) {
    // (top, low): ranges below `top` and from `low` up have been seen.
    let walk: Arc<std::sync::Mutex<(Option<i64>, Option<i64>)>> = Arc::default();
    every(
        inner,
        "time index summaries",
        |c| c.summarize_interval,
        move |i| {
            let walk = walk.clone();
            async move {
                if !i.listings().watched() {
                    return Ok(());
                }
                let st = i.st()?;
                let (top, low) = *walk.lock().unwrap_or_else(|e| e.into_inner());
                let rows = i
                    .refresh_read(&st.summarize_time_index, &[&top, &low, &SUMMARIZE_BUDGET])
                    .await?;
                let c = st.cols.summarize_time_index;
                if let Some(r) = rows.first() {
                    let n: i32 = r.get(c.summarised)?;
                    *walk.lock().unwrap_or_else(|e| e.into_inner()) =
                        (r.get(c.top)?, r.get(c.low)?);
                    if n > 0 {
                        tracing::trace!(ranges = n, "time index summarised");
                    }
                }
                Ok(())
            }
        },
    );
}
