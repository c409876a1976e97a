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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct TestJob {
        id: u32,
        items: usize,
        keys: Vec<i64>,
    }

    impl Job for TestJob {
        fn items(&self) -> usize {
            self.items
        }
        fn keys(&self) -> &[i64] {
            &self.keys
        }
    }

    fn job(id: u32, keys: &[i64]) -> TestJob {
        TestJob {
            id,
            items: 1,
            keys: keys.to_vec(),
        }
    }

    fn ids(jobs: &[TestJob]) -> Vec<u32> {
        jobs.iter().map(|j| j.id).collect()
    }

    fn queue(jobs: Vec<TestJob>, running: &[i64]) -> Queue<TestJob> {
        Queue {
            waiting: jobs.into(),
            running: vec![(0, running.iter().copied().collect())],
            next_id: 1,
        }
    }

    #[test]
    fn a_batch_takes_every_waiting_job_free_of_running_keys_in_order() {
        let mut q = queue(
            vec![job(1, &[2]), job(2, &[1]), job(3, &[3]), job(4, &[])],
            &[1],
        );
        let (jobs, keys) = q.take(100).unwrap_or_default();
        assert_eq!(ids(&jobs), [1, 3, 4]);
        assert_eq!(keys, HashSet::from([2, 3]));
        assert_eq!(ids(q.waiting.make_contiguous()), [2]);
    }

    #[test]
    fn the_oldest_job_is_never_overtaken_while_its_keys_are_held() {
        let mut q = queue(vec![job(1, &[1]), job(2, &[2])], &[1]);
        assert!(q.take(100).is_none());
        assert_eq!(ids(q.waiting.make_contiguous()), [1, 2]);
    }

    #[test]
    fn a_batch_stops_growing_at_max_items_and_leaves_the_rest_in_order() {
        let big = |id| TestJob {
            id,
            items: 3,
            keys: Vec::new(),
        };
        let mut q = queue(vec![big(1), big(2), big(3), big(4)], &[]);
        let (jobs, _) = q.take(5).unwrap_or_default();
        // Items are counted before a job is added: the batch may pass the bound by one job.
        assert_eq!(ids(&jobs), [1, 2]);
        assert_eq!(ids(q.waiting.make_contiguous()), [3, 4]);
    }

    /// A started batch: its job ids, and the go-ahead that lets it finish.
    type Started = (Vec<u32>, tokio::sync::oneshot::Sender<()>);

    /// A batcher whose batches report their jobs and then wait for the test's go-ahead.
    fn gated(max_in_flight: usize) -> (Batcher<TestJob>, mpsc::UnboundedReceiver<Started>) {
        gated_with(BatchConfig {
            max_in_flight,
            ..BatchConfig::default()
        })
    }

    fn gated_with(config: BatchConfig) -> (Batcher<TestJob>, mpsc::UnboundedReceiver<Started>) {
        let (started_tx, started) = mpsc::unbounded_channel();
        let b = Batcher::start(config, move |jobs: Vec<TestJob>| {
            let started_tx = started_tx.clone();
            async move {
                let (go_tx, go) = tokio::sync::oneshot::channel();
                let _ = started_tx.send((ids(&jobs), go_tx));
                let _ = go.await;
            }
        });
        (b, started)
    }

    #[tokio::test]
    async fn jobs_that_arrive_while_every_slot_is_busy_share_the_next_batch() {
        let (b, mut started) = gated(1);
        assert!(b.submit(job(1, &[])).is_ok());
        let (first, release) = started.recv().await.expect("a batch started");
        assert_eq!(first, [1]);
        for id in 2..=4 {
            assert!(b.submit(job(id, &[])).is_ok());
        }
        let _ = release.send(());
        let (second, release) = started.recv().await.expect("a batch started");
        assert_eq!(second, [2, 3, 4]);
        let _ = release.send(());
    }

    #[tokio::test]
    async fn disjoint_keys_run_side_by_side_and_shared_keys_one_after_the_other() {
        let (b, mut started) = gated(2);
        assert!(b.submit(job(1, &[7])).is_ok());
        let (first, release_first) = started.recv().await.expect("a batch started");
        assert_eq!(first, [1]);
        // Job 3 shares job 1's key; job 2 does not and takes the free slot at once.
        assert!(b.submit(job(2, &[8])).is_ok());
        assert!(b.submit(job(3, &[7])).is_ok());
        let (second, release_second) = started.recv().await.expect("a batch started");
        assert_eq!(second, [2], "job 3 must wait for job 1's key");
        assert!(started.try_recv().is_err(), "job 3 started beside job 1");
        let _ = release_first.send(());
        let (third, release_third) = started.recv().await.expect("a batch started");
        assert_eq!(third, [3]);
        let _ = release_second.send(());
        let _ = release_third.send(());
    }

    /// With paused time: the clock moves only when every task waits, so the instants a batch
    /// starts at are exact.
    #[tokio::test(start_paused = true)]
    async fn a_batch_that_is_not_full_waits_max_hold_for_more_jobs_and_no_longer() {
        let hold = Duration::from_millis(10);
        let (b, mut started) = gated_with(BatchConfig {
            max_hold: hold,
            max_in_flight: 2,
            ..BatchConfig::default()
        });
        let t0 = tokio::time::Instant::now();
        assert!(b.submit(job(1, &[])).is_ok());
        // The collector takes job 1 now (the hold starts at t0), then time moves on.
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_millis(4)).await;
        assert!(b.submit(job(2, &[])).is_ok());
        let (first, release_first) = started.recv().await.expect("a batch started");
        assert_eq!(first, [1, 2], "job 2 came within the hold");
        assert_eq!(
            t0.elapsed(),
            hold,
            "the batch started when the hold ran out"
        );
        // A job after the hold starts a batch of its own, held again.
        assert!(b.submit(job(3, &[])).is_ok());
        let (second, release_second) = started.recv().await.expect("a batch started");
        assert_eq!(second, [3]);
        assert_eq!(t0.elapsed(), hold * 2);
        let _ = release_first.send(());
        let _ = release_second.send(());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_does_not_wait_for_the_hold() {
        let (b, mut started) = gated_with(BatchConfig {
            max_hold: Duration::from_secs(1),
            max_items: 2,
            max_in_flight: 1,
        });
        let t0 = tokio::time::Instant::now();
        assert!(b.submit(job(1, &[])).is_ok());
        assert!(b.submit(job(2, &[])).is_ok());
        let (first, release) = started.recv().await.expect("a batch started");
        assert_eq!(first, [1, 2]);
        assert_eq!(t0.elapsed(), Duration::ZERO);
        let _ = release.send(());
    }
}
