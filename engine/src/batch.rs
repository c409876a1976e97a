//! Coalescing: concurrent requests of one kind folded into shared statements.
//!
//! A [`Batcher`] owns a collector task. Requests ("jobs") queue on a channel; whenever an
//! in-flight slot is free, the collector takes every job already waiting (up to `max_items`
//! items), optionally holds up to `max_hold` for more, and runs the batch in a task of its own.
//! Under load, jobs pile up while every slot is busy, so batches grow by themselves; when idle, a
//! job runs at once (with the default hold of zero) and pays no batching delay.
//!
//! Jobs may name keys they lock in the database until their batch commits ([`Job::keys`]: a
//! push's partition counters). A batch starts only with jobs whose keys no running batch holds,
//! the oldest waiting job first: pushes to disjoint partitions run side by side, pushes that
//! share partitions run one after the other, each batch taking every such job waiting — rather
//! than a second statement sent only to wait on the first one's locks (measured in
//! docs/storage.md).
//!
//! Each job carries its own reply channel, so every request gets its own result (and, when the
//! shared statement fails, its own copy of the error).
//!
//! Cancel-safety: a caller that stops waiting drops its reply receiver; the batch still runs and
//! its result for that job is discarded. Work is never half-submitted.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use std::collections::{HashSet, VecDeque};

use tokio::sync::mpsc;

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

/// A job's weight in a batch, and what it must not share with batches running at the same
/// time.
pub(crate) trait Job: Send + 'static {
    fn items(&self) -> usize;

    /// Keys this job locks in the database until its batch commits (push: partition numbers).
    /// A batch is started only with jobs whose keys no running batch holds: batches that would
    /// wait on each other's locks are run one after the other, each with every job waiting,
    /// instead of side by side with one of them blocked. None by default.
    fn keys(&self) -> &[i64] {
        &[]
    }
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

/// The collector's state: jobs waiting, in arrival order, and the keys of running batches.
struct Queue<J> {
    waiting: VecDeque<J>,
    running: Vec<(u64, HashSet<i64>)>,
    next_id: u64,
}

impl<J: Job> Queue<J> {
    fn busy(&self, job: &J) -> bool {
        job.keys()
            .iter()
            .any(|k| self.running.iter().any(|(_, keys)| keys.contains(k)))
    }

    /// The next batch: the oldest waiting job (if no running batch holds its keys) and, in
    /// order, every other waiting job free of running batches' keys, up to `max_items` items.
    /// Jobs left behind keep their order.
    fn take(&mut self, max_items: usize) -> Option<(Vec<J>, HashSet<i64>)> {
        if self.waiting.front().is_none_or(|j| self.busy(j)) {
            return None;
        }
        let mut jobs = Vec::new();
        let mut keys = HashSet::new();
        let mut size = 0;
        let mut left = VecDeque::with_capacity(self.waiting.len());
        while let Some(j) = self.waiting.pop_front() {
            if size >= max_items || self.busy(&j) {
                left.push_back(j);
                continue;
            }
            size += j.items();
            keys.extend(j.keys().iter().copied());
            jobs.push(j);
        }
        self.waiting = left;
        Some((jobs, keys))
    }
}

async fn collect<J, F, Fut>(config: BatchConfig, mut rx: mpsc::UnboundedReceiver<J>, run: Arc<F>)
where
    J: Job,
    F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let max_in_flight = config.max_in_flight.max(1);
    let max_items = config.max_items.max(1);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u64>();
    let mut q = Queue {
        waiting: VecDeque::new(),
        running: Vec::new(),
        next_id: 0,
    };
    let mut open = true;
    loop {
        while let Ok(j) = rx.try_recv() {
            q.waiting.push_back(j);
        }
        while q.running.len() < max_in_flight {
            let Some((mut jobs, mut keys)) = q.take(max_items) else {
                break;
            };
            // Optionally hold a batch that is not full for more jobs (free of running keys).
            if !config.max_hold.is_zero() && open {
                let deadline = tokio::time::Instant::now() + config.max_hold;
                let mut size: usize = jobs.iter().map(Job::items).sum();
                while size < max_items {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(j)) if !q.busy(&j) => {
                            size += j.items();
                            keys.extend(j.keys().iter().copied());
                            jobs.push(j);
                        }
                        Ok(Some(j)) => q.waiting.push_back(j),
                        Ok(None) => {
                            open = false;
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            let id = q.next_id;
            q.next_id += 1;
            q.running.push((id, keys));
            let (run, done) = (run.clone(), done_tx.clone());
            tokio::spawn(async move {
                run(jobs).await;
                let _ = done.send(id);
            });
        }
        if !open && q.waiting.is_empty() && q.running.is_empty() {
            return;
        }
        tokio::select! {
            j = rx.recv(), if open => match j {
                Some(j) => q.waiting.push_back(j),
                None => open = false,
            },
            Some(id) = done_rx.recv() => q.running.retain(|(r, _)| *r != id),
        }
    }
}
