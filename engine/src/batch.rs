//! Coalescing: concurrent requests of one kind folded into shared statements.
//!
//! A [`Batcher`] owns a collector task. Requests ("jobs") queue on a channel; the collector waits
//! for a free in-flight slot, then takes every job already waiting (up to `max_items` items),
//! optionally holds up to `max_hold` for more, and runs the batch in a task of its own. Under
//! load, jobs pile up while every slot is busy, so batches grow by themselves; when idle, a job
//! runs at once (with the default hold of zero) and pays no batching delay.
//!
//! Each job carries its own reply channel, so every request gets its own result (and, when the
//! shared statement fails, its own copy of the error).
//!
//! Cancel-safety: a caller that stops waiting drops its reply receiver; the batch still runs and
//! its result for that job is discarded. Work is never half-submitted.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

/// Bounds of one batcher.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Items (not jobs) per batch at most.
    pub max_items: usize,
    /// How long a batch that is not full may wait for more jobs.
    pub max_hold: Duration,
    /// Batches running at once. For pushes: the number of partition shards, each running one
    /// batch at a time.
    pub max_in_flight: usize,
}

impl Default for BatchConfig {
    fn default() -> BatchConfig {
        BatchConfig {
            max_items: 1000,
            max_hold: Duration::ZERO,
            max_in_flight: 4,
        }
    }
}

/// A job's weight in a batch.
pub(crate) trait Job: Send + 'static {
    fn items(&self) -> usize;
}

/// Sends jobs to a collector task that runs them in batches.
#[derive(Debug)]
pub(crate) struct Batcher<J> {
    tx: mpsc::UnboundedSender<J>,
}

impl<J: Job> Batcher<J> {
    /// Starts the collector; `run` executes one batch.
    pub(crate) fn start<F, Fut>(config: BatchConfig, run: F) -> Batcher<J>
    where
        F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(collect(config, rx, Arc::new(run)));
        Batcher { tx }
    }

    /// Queues a job. Fails only when the collector has stopped (runtime shutting down); the job
    /// is handed back.
    pub(crate) fn submit(&self, job: J) -> Result<(), J> {
        self.tx.send(job).map_err(|e| e.0)
    }
}

async fn collect<J, F, Fut>(config: BatchConfig, mut rx: mpsc::UnboundedReceiver<J>, run: Arc<F>)
where
    J: Job,
    F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let max_items = config.max_items.max(1);
    while let Some(first) = rx.recv().await {
        // Wait for a slot before gathering: jobs arriving meanwhile join this batch.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut size = first.items();
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + config.max_hold;
        while size < max_items {
            let next = match rx.try_recv() {
                Ok(j) => Some(j),
                Err(mpsc::error::TryRecvError::Empty) if !config.max_hold.is_zero() => {
                    tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
            match next {
                Some(j) => {
                    size += j.items();
                    jobs.push(j);
                }
                None => break,
            }
        }
        let run = run.clone();
        tokio::spawn(async move {
            run(jobs).await;
            drop(permit);
        });
    }
}
