//! Figures for dashboards and the status routes: per queue and partition (stored, pending,
//! processing, completed, failed, dead-lettered) and per consumer group (lag and state).
//!
//! # Design
//!
//! Nothing here counts messages. Every figure comes from per-partition counters the storage
//! keeps anyway (`last_position`, the queue-mode cursor and its lease) or keeps for this purpose
//! on rare paths only (`removed` on deletes, `dead_lettered` on the dead-letter queue; see
//! `sql/migrations/0004_analytics_counters.sql`): one row per partition and one per cursor,
//! whatever the number of messages stored.
//!
//! Adding those rows up is still work proportional to partitions and cursors (tens of
//! milliseconds at 10,000 partitions and 100,000 cursors), too much to repeat for every request
//! of a dashboard that polls. So the figures are a [`Snapshot`] taken on demand and shared:
//! * a snapshot younger than `max_age` is served as it is;
//! * an older one (up to `stale_limit`) is served too, and the value's keeper (below) is woken
//!   to refresh it in the background: pollers never wait for the database;
//! * with no snapshot, or one past `stale_limit`, the caller waits for a refresh; concurrent
//!   callers share it (single flight);
//! * a refresh starts at the soonest twenty times the length of the last one after it
//!   (`max_age` and `stale_limit` stretch to that): on a large data set kept read by pollers,
//!   refreshes take at most a twentieth of a connection's time, and the figures' `asOf` says
//!   how old they are (a refresh of 10,000 partitions and 100,000 cursors, ~80 ms, makes
//!   them at most ~1.6 s old);
//! * a value read in the last [`WATCHED_FOR`](crate::jobs::WATCHED_FOR) has a keeper: one
//!   task that does every background refresh of it, when a reader found it past `max_age`
//!   and, with nobody reading, when it is half way to `stale_limit`, so a reader that pauses
//!   (a dashboard polling every few seconds, an operator's `curl` now and then) finds figures
//!   it need not wait for. Kept warm, a value costs one refresh per half `stale_limit` (5 s by
//!   default; at most a fortieth of a connection's time, by the spacing above); nobody
//!   reading, nothing runs.
//!   Only the first read after a quiet spell (or after an admin change dropped the
//!   figures) waits for the database.
//!
//! One consumer group's detail (a row per partition it reads) is kept by the same policy, for
//! the last few groups read.
//!
//! Refreshes read on a pool of their own ([`Pools::analytics`](crate::Pools::analytics)), not
//! the inspection pool: a refresh holds its connection for the length of a scan of every
//! partition's counters, and a listing that waited for a connection behind it took that long
//! on top of its own work.
//!
//! Changes made through this server's admin routes (configure, deletes, seeks) drop the
//! snapshot and the group details, so the next read shows them. Pushes, pops and acks do not:
//! their figures are at most `max_age` (plus the poll interval) old, as `asOf` in each answer
//! says.
//!
//! # Cancel safety
//!
//! A caller waiting for a refresh may be dropped: the refresh it started is dropped with it
//! (the statement is cancelled on the server) and the next caller starts another. Background
//! refreshes run on the value's keeper task and store their snapshot when they finish.
//! Keepers hold the value and the engine weakly: dropping the engine ends them at their next
//! wake-up.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use queen_wire::{Row, Timestamp};
use uuid::Uuid;

use crate::engine::{Engine, Inner};
use crate::error::EngineError;
use crate::jobs::Watched;
use crate::statements::columns;

/// How old figures may be (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalyticsConfig {
    /// Served as they are when younger than this.
    pub max_age: Duration,
    /// Served while a background refresh runs when younger than this; older ones are waited for.
    pub stale_limit: Duration,
}

impl Default for AnalyticsConfig {
    fn default() -> AnalyticsConfig {
        AnalyticsConfig {
            max_age: Duration::from_secs(1),
            stale_limit: Duration::from_secs(10),
        }
    }
}

/// Message figures as queue-mode consumers see them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages stored.
    pub total: i64,
    /// Waiting for delivery: positions after the queue-mode cursor not under a live lease.
    pub pending: i64,
    /// Under a live lease.
    pub processing: i64,
    /// Stored and neither pending nor processing: committed.
    pub completed: i64,
    /// Failed at least once and not settled yet.
    pub failed: i64,
    /// Dead-letter rows.
    pub dead_letter: i64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.total += o.total;
        self.pending += o.pending;
        self.processing += o.processing;
        self.completed += o.completed;
        self.failed += o.failed;
        self.dead_letter += o.dead_letter;
    }
}

/// One partition's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStats {
    /// Partition id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Figures.
    pub counts: Counts,
    /// When its newest message was pushed.
    pub newest: Option<Timestamp>,
}

/// One queue's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// Queue id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Namespace tag.
    pub namespace: Option<String>,
    /// Task tag.
    pub task: Option<String>,
    /// Priority.
    pub priority: i32,
    /// Creation time.
    pub created_at: Timestamp,
    /// Partitions, by name.
    pub partitions: Vec<PartitionStats>,
    /// Sum over partitions.
    pub totals: Counts,
}

/// A consumer group's state on a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// Keeping up.
    Stable,
    /// A lagging partition's newest message is over a minute old.
    Lagging,
    /// Behind, and nothing committed for an hour.
    Dead,
}

impl GroupState {
    /// The state's name in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Stable => "Stable",
            GroupState::Lagging => "Lagging",
            GroupState::Dead => "Dead",
        }
    }
}

/// A consumer group on one queue.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStats {
    /// Group name.
    pub name: String,
    /// Queue name.
    pub queue: String,
    /// Distinct worker ids seen.
    pub members: i64,
    /// Partitions it has a cursor on.
    pub partitions: i64,
    /// Partitions where it is behind.
    pub partitions_with_lag: i64,
    /// Positions behind, summed over partitions.
    pub total_lag: i64,
    /// Seconds: the age of the newest message of its most lagging partition (a lower bound of
    /// how far behind it is, from the partition rows).
    pub max_time_lag: f64,
    /// Its last commit on the queue.
    pub last_consumed_at: Option<Timestamp>,
    /// Subscription mode, when the group subscribed by one.
    pub subscription_mode: Option<String>,
    /// Subscription start, when given.
    pub subscription_from: Option<Timestamp>,
    /// State.
    pub state: GroupState,
}

/// One cursor of a consumer group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPartition {
    /// Queue name.
    pub queue: String,
    /// Partition name.
    pub partition: String,
    /// Last worker that popped there.
    pub worker_id: Option<String>,
    /// Last commit.
    pub last_consumed_at: Option<Timestamp>,
    /// Messages committed.
    pub total_consumed: i64,
    /// Positions behind the partition's last.
    pub offset_lag: i64,
    /// Age in seconds of the partition's newest message when behind, else 0.
    pub time_lag_seconds: f64,
    /// A live lease is held.
    pub lease_active: bool,
}

/// The figures at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When they were read (the database's clock is not asked: the server's is close enough).
    pub as_of: Timestamp,
    /// Every queue, by name.
    pub queues: Vec<QueueStats>,
    /// Every (group, queue), by group then queue.
    pub groups: Vec<GroupStats>,
}

impl Snapshot {
    /// One queue's figures.
    pub fn queue(&self, name: &str) -> Option<&QueueStats> {
        self.queues
            .binary_search_by(|q| q.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.queues[i])
    }

    /// Sum over every queue.
    pub fn totals(&self) -> Counts {
        let mut t = Counts::default();
        for q in &self.queues {
            t.add(&q.totals);
        }
        t
    }
}

/// A value is read again at the soonest this many times the length of its last read after it:
/// refreshes kept busy by pollers then take at most a twentieth of one connection's (and
/// core's) time, however large the data they scan.
const REFRESH_SPACING: u32 = 20;

/// One value read from the database and shared, with the age policy of the module
/// documentation.
#[derive(Debug)]
struct Fresh<T> {
    /// The value and when it was read.
    current: std::sync::Mutex<Option<(Instant, Arc<T>)>>,
    /// Held while a refresh runs: one at a time.
    refresh: tokio::sync::Mutex<()>,
    /// How long the last read took, in microseconds (see [`REFRESH_SPACING`]).
    last_read_us: AtomicU64,
    /// When the value was last asked for.
    wanted: Watched,
    /// A keeper task runs for the value.
    kept: AtomicBool,
    /// Readers that found the value past `max_age` wake its keeper with this.
    stale: Arc<tokio::sync::Notify>,
}

impl<T> Default for Fresh<T> {
    fn default() -> Fresh<T> {
        Fresh {
            current: std::sync::Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            last_read_us: AtomicU64::new(0),
            wanted: Watched::default(),
            kept: AtomicBool::new(false),
            stale: Arc::default(),
        }
    }
}

impl AnalyticsConfig {
    /// The policy for a value whose last read took `read`: `max_age` stretched to
    /// [`REFRESH_SPACING`] reads, `stale_limit` to at least two such ages.
    fn spaced(self, read: Duration) -> AnalyticsConfig {
        let max_age = self.max_age.max(read * REFRESH_SPACING);
        AnalyticsConfig {
            max_age,
            stale_limit: self.stale_limit.max(max_age * 2),
        }
    }
}

impl<T: Send + Sync + 'static> Fresh<T> {
    fn peek(&self) -> Option<(Instant, Arc<T>)> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn clear(&self) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The age policy in force for this value: `config` stretched by its last read's length.
    fn policy(&self, config: AnalyticsConfig) -> AnalyticsConfig {
        let last_read = Duration::from_micros(self.last_read_us.load(Ordering::Relaxed));
        config.spaced(last_read)
    }

    /// Notes a read, and starts a keeper for the value unless one runs.
    fn want<F, Fut>(self: &Arc<Self>, config: AnalyticsConfig, load: &F)
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<T, EngineError>> + Send + 'static,
    {
        self.wanted.touch();
        if !self.kept.swap(true, Ordering::SeqCst) {
            tokio::spawn(keep_warm(Arc::downgrade(self), config, load.clone()));
        }
    }

    /// The value: fresh ones as they are; stale ones too, with the keeper woken to refresh them
    /// behind the answer; none or too old ones read now, by one caller for all (single flight).
    /// `load` makes the future that reads a new value.
    async fn get<F, Fut>(
        self: &Arc<Self>,
        config: AnalyticsConfig,
        load: F,
    ) -> Result<Arc<T>, EngineError>
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<T, EngineError>> + Send + 'static,
    {
        self.want(config, &load);
        let config = self.policy(config);
        if let Some((taken, v)) = self.peek() {
            let age = taken.elapsed();
            if age < config.max_age {
                return Ok(v);
            }
            if age < config.stale_limit {
                // Stored as a permit while the keeper is busy: it looks again when done.
                self.stale.notify_one();
                return Ok(v);
            }
        }
        self.refresh(config.max_age, load()).await
    }

    /// Reads a new value unless another caller did while this one waited its turn.
    async fn refresh(
        &self,
        max_age: Duration,
        read: impl std::future::Future<Output = Result<T, EngineError>>,
    ) -> Result<Arc<T>, EngineError> {
        let _one = self.refresh.lock().await;
        if let Some((taken, v)) = self.peek() {
            if taken.elapsed() < max_age {
                return Ok(v);
            }
        }
        let taken = Instant::now();
        let v = Arc::new(read.await?);
        let took = u64::try_from(taken.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_read_us.store(took, Ordering::Relaxed);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((taken, v.clone()));
        Ok(v)
    }
}

/// The one background task of a value while it is watched: refreshes it when a reader found
/// it past `max_age` (that reader was answered with it) and, with nobody reading, when it is half
/// way to its stale limit. Ends when nobody asked for it within
/// [`WATCHED_FOR`](crate::jobs::WATCHED_FOR) or the value is gone.
async fn keep_warm<T, F, Fut>(me: Weak<Fresh<T>>, config: AnalyticsConfig, load: F)
where
    T: Send + Sync + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, EngineError>> + Send + 'static,
{
    // Whether a reader woke the keeper.
    let mut asked = false;
    loop {
        let Some(fresh) = me.upgrade() else { return };
        if !fresh.wanted.watched() {
            fresh.kept.store(false, Ordering::SeqCst);
            // A read between the check and the store saw a keeper running: carry on for it.
            if !fresh.wanted.watched() || fresh.kept.swap(true, Ordering::SeqCst) {
                return;
            }
        }
        let policy = fresh.policy(config);
        let wait = match fresh.peek().map(|(taken, _)| taken.elapsed()) {
            Some(age) if asked && age >= policy.max_age => Duration::ZERO,
            Some(age) => (policy.stale_limit / 2).saturating_sub(age),
            None => Duration::ZERO,
        };
        if !wait.is_zero() {
            // Waits without holding the value: dropped, the task ends at its next turn.
            let stale = fresh.stale.clone();
            drop(fresh);
            asked = tokio::select! {
                () = tokio::time::sleep(wait) => false,
                () = stale.notified() => true,
            };
            continue;
        }
        asked = false;
        if let Err(e) = fresh.refresh(policy.max_age, load()).await {
            tracing::warn!(error = %e, "analytics refresh failed");
            drop(fresh);
            tokio::time::sleep(policy.max_age).await;
        }
    }
}

/// Group details kept at most: each is one row per partition the group reads.
const GROUP_DETAILS_KEPT: usize = 16;

/// The shared snapshot, the group details read lately, and their refreshes (one per engine).
#[derive(Debug, Default)]
pub(crate) struct Analytics {
    config: AnalyticsConfig,
    snapshot: Arc<Fresh<Snapshot>>,
    groups: std::sync::Mutex<std::collections::HashMap<String, Arc<Fresh<Vec<GroupPartition>>>>>,
}

impl Analytics {
    pub(crate) fn new(config: AnalyticsConfig) -> Analytics {
        Analytics {
            config,
            ..Analytics::default()
        }
    }

    /// The cache of one group's detail (made on first use; the set is bounded).
    fn group(&self, name: &str) -> Arc<Fresh<Vec<GroupPartition>>> {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if !groups.contains_key(name) && groups.len() >= GROUP_DETAILS_KEPT {
            groups.clear();
        }
        groups.entry(name.to_owned()).or_default().clone()
    }

    /// Drops everything: the next read waits for fresh figures.
    pub(crate) fn invalidate(&self) {
        self.snapshot.clear();
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// Reads the figures from the database (two statements on the analytics pool).
async fn take(inner: &Inner) -> Result<Snapshot, EngineError> {
    let st = inner.st()?;
    let as_of = Timestamp::now();
    // Side by side when the analytics pool has two connections, one after the other with one.
    let (partition_rows, rows) = tokio::try_join!(
        inner.refresh_read(&st.partition_stats, &[]),
        inner.refresh_read(&st.group_stats, &[]),
    )?;
    let queues = queues_from(st.cols.partition_stats, &partition_rows)?;
    let groups = rows
        .iter()
        .map(|r| group_from(st.cols.group_stats, r))
        .collect::<Result<_, _>>()?;
    Ok(Snapshot {
        as_of,
        queues,
        groups,
    })
}

/// Queues with their partitions, both in name order (bytewise). The rows come unordered: a
/// sort of every partition row in the database spilled to disk and cost more than the rest of
/// the statement; here it is a sort of small structs.
fn queues_from(c: columns::partition_stats, rows: &[Row]) -> Result<Vec<QueueStats>, EngineError> {
    let mut out: Vec<QueueStats> = Vec::new();
    let mut index: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::new();
    for r in rows {
        let id: Uuid = r.get(c.queue_id)?;
        let at = *index.entry(id).or_insert(out.len());
        if at == out.len() {
            out.push(QueueStats {
                id,
                name: r.get(c.queue_name)?,
                namespace: r.get(c.namespace)?,
                task: r.get(c.task)?,
                priority: r.get(c.priority)?,
                created_at: r.get(c.queue_created_at)?,
                partitions: Vec::new(),
                totals: Counts::default(),
            });
        }
        let Some(q) = out.get_mut(at) else { continue };
        let Some(pid) = r.get::<Option<Uuid>>(c.partition_id)? else {
            continue;
        };
        let last: i64 = r.get(c.last_position)?;
        let removed: i64 = r.get(c.removed)?;
        let committed: i64 = r.get(c.committed)?;
        let leased: i64 = r.get(c.leased)?;
        let counts = counts(
            last,
            removed,
            committed,
            leased,
            r.get(c.failed)?,
            r.get(c.dead_lettered)?,
        );
        q.totals.add(&counts);
        q.partitions.push(PartitionStats {
            id: pid,
            name: r.get(c.partition_name)?,
            created_at: r.get(c.partition_created_at)?,
            counts,
            newest: r.get(c.last_message_at)?,
        });
    }
    out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    for q in &mut out {
        q.partitions.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(out)
}

/// A partition's figures from its counters: positions run 1..=last, `removed` of them were
/// deleted, the cursor committed everything up to `committed` and a live lease covers the
/// `leased` positions after it. Positions after the cursor count as pending whether or not
/// they were deleted (as `maxSize` counts them), bounded by what is stored.
fn counts(
    last: i64,
    removed: i64,
    committed: i64,
    leased: i64,
    failed: i64,
    dead_letter: i64,
) -> Counts {
    let total = (last - removed).max(0);
    let processing = leased.clamp(0, total);
    let pending = (last - committed - leased).clamp(0, total - processing);
    Counts {
        total,
        pending,
        processing,
        completed: total - pending - processing,
        failed,
        dead_letter,
    }
}

fn group_from(c: columns::group_stats, r: &Row) -> Result<GroupStats, EngineError> {
    let total_lag: i64 = r.get(c.total_lag)?;
    let max_time_lag: f64 = r.get(c.max_time_lag)?;
    let last_consumed_at: Option<Timestamp> = r.get(c.last_consumed_at)?;
    let hour_ago = Timestamp::now().micros() - 3_600_000_000;
    let state = if total_lag > 0 && last_consumed_at.is_none_or(|t| t.micros() < hour_ago) {
        GroupState::Dead
    } else if max_time_lag > 60.0 {
        GroupState::Lagging
    } else {
        GroupState::Stable
    };
    Ok(GroupStats {
        name: r.get(c.consumer_group)?,
        queue: r.get(c.queue_name)?,
        members: r.get(c.members)?,
        partitions: r.get(c.partitions)?,
        partitions_with_lag: r.get(c.partitions_with_lag)?,
        total_lag,
        max_time_lag,
        last_consumed_at,
        subscription_mode: r.get(c.subscription_mode)?,
        subscription_from: r.get(c.subscription_from)?,
        state,
    })
}

impl Engine {
    /// How old the snapshot's figures may be when served: the configured ages, stretched by
    /// the length of the last refresh (see the module documentation). What the engine applies
    /// to its snapshot, for caches built on it.
    pub fn analytics_policy(&self) -> AnalyticsConfig {
        let a = self.inner().analytics();
        a.snapshot.policy(a.config)
    }

    /// The current figures, at most `max_age` old, or up to `stale_limit` old while a refresh
    /// runs in the background (see the module documentation).
    pub async fn analytics(&self) -> Result<Arc<Snapshot>, EngineError> {
        let a = self.inner().analytics();
        let engine = self.weak();
        a.snapshot
            .get(a.config, move || {
                let engine = engine.clone();
                async move { take(&*running(&engine)?).await }
            })
            .await
    }

    /// One consumer group's cursors, by queue and partition, under the same age policy as the
    /// snapshot (one group's rows are found by index, but at 10,000 partitions reading and
    /// shaping them costs tens of milliseconds a poll).
    pub async fn group_partitions(
        &self,
        group: &str,
    ) -> Result<Arc<Vec<GroupPartition>>, EngineError> {
        let a = self.inner().analytics();
        let engine = self.weak();
        let name = group.to_owned();
        a.group(group)
            .get(a.config, move || {
                let (engine, name) = (engine.clone(), name.clone());
                async move { read_group(&*running(&engine)?, &name).await }
            })
            .await
    }
}

/// The engine a refresh reads through, unless it was dropped (refreshes and keepers hold it
/// weakly).
fn running(engine: &Weak<Inner>) -> Result<Arc<Inner>, EngineError> {
    engine.upgrade().ok_or(EngineError::ShuttingDown)
}

/// Reads one group's cursors.
async fn read_group(inner: &Inner, group: &str) -> Result<Vec<GroupPartition>, EngineError> {
    let st = inner.st()?;
    let c = st.cols.group_partitions;
    let rows = inner.refresh_read(&st.group_partitions, &[&group]).await?;
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(GroupPartition {
                queue: r.get(c.queue_name)?,
                partition: r.get(c.partition_name)?,
                worker_id: r.get(c.worker_id)?,
                last_consumed_at: r.get(c.last_consumed_at)?,
                total_consumed: r.get(c.total_consumed)?,
                offset_lag: r.get(c.offset_lag)?,
                time_lag_seconds: r.get(c.time_lag)?,
                lease_active: r.get(c.lease_active)?,
            })
        })
        .collect::<Result<Vec<_>, EngineError>>()?;
    // Ordered here, not in the statement (see queues_from).
    out.sort_unstable_by(|a, b| (&a.queue, &a.partition).cmp(&(&b.queue, &b.partition)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{AnalyticsConfig, Fresh, counts};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::time::Instant;

    /// A value read `age` ago whose read took `read`; `readers` calls of `get` with a 1 ms
    /// `max_age`: how many reads they start (in the background, within the next 100 ms).
    async fn reads_started(age: Duration, read: Duration, readers: usize) -> usize {
        let fresh: Arc<Fresh<u32>> = Arc::default();
        let taken = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        *fresh.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((taken, Arc::new(1)));
        fresh
            .last_read_us
            .store(read.as_micros() as u64, Ordering::Relaxed);
        let started = Arc::new(AtomicUsize::new(0));
        let config = AnalyticsConfig {
            max_age: Duration::from_millis(1),
            stale_limit: Duration::from_secs(10),
        };
        let counter = started.clone();
        let load = move || {
            counter.fetch_add(1, Ordering::Relaxed);
            async { Ok(2) }
        };
        let answers =
            futures_util::future::join_all((0..readers).map(|_| fresh.get(config, load.clone())))
                .await;
        // Every way the kept value answers: a refresh, when one starts, runs behind it.
        for v in answers {
            assert_eq!(v.ok().as_deref(), Some(&1));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        started.load(Ordering::Relaxed)
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_are_spaced_by_the_length_of_the_last_read() {
        // A cheap last read: 50 ms is past the 1 ms max_age, a refresh starts.
        assert_eq!(
            reads_started(Duration::from_millis(50), Duration::ZERO, 1).await,
            1
        );
        // A 100 ms read: the next may start 2 s after it, not before.
        assert_eq!(
            reads_started(Duration::from_millis(50), Duration::from_millis(100), 1).await,
            0
        );
        assert_eq!(
            reads_started(Duration::from_millis(2_100), Duration::from_millis(100), 1).await,
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn readers_of_a_stale_value_share_one_background_refresh() {
        assert_eq!(
            reads_started(Duration::from_millis(50), Duration::ZERO, 10).await,
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_watched_value_is_kept_warm_until_nobody_reads_it() {
        let fresh: Arc<Fresh<usize>> = Arc::default();
        let config = AnalyticsConfig {
            max_age: Duration::from_secs(1),
            stale_limit: Duration::from_secs(10),
        };
        let reads = Arc::new(AtomicUsize::new(0));
        let counter = reads.clone();
        let load = move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok(n) }
        };
        let first = fresh.get(config, load).await.ok();
        assert_eq!(first.as_deref(), Some(&1));

        // Nobody reads for a minute, then for a few minutes more: the value never gets near its
        // stale limit while watched (without the keeper it would be 60 s old here).
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(61)).await;
            let (taken, _) = fresh.peek().expect("a value is kept");
            assert!(
                taken.elapsed() <= Duration::from_secs(5),
                "{:?}",
                taken.elapsed()
            );
        }
        // One refresh every 5 s, half the stale limit: 48 in the 244 s so far.
        let kept = reads.load(Ordering::SeqCst);
        assert!((48..=50).contains(&kept), "{kept} reads");

        // Past WATCHED_FOR since the one read, the keeper stops and nothing runs.
        tokio::time::sleep(Duration::from_secs(70)).await;
        let stopped = reads.load(Ordering::SeqCst);
        assert!(!fresh.kept.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(reads.load(Ordering::SeqCst), stopped);
        assert!(stopped <= 62, "{stopped} reads");
    }

    #[test]
    fn a_slow_read_stretches_the_stale_limit_too() {
        let c = AnalyticsConfig {
            max_age: Duration::from_secs(1),
            stale_limit: Duration::from_secs(10),
        };
        assert_eq!(c.spaced(Duration::from_millis(10)), c);
        let slow = c.spaced(Duration::from_millis(400));
        assert_eq!(slow.max_age, Duration::from_secs(8));
        assert_eq!(slow.stale_limit, Duration::from_secs(16));
    }

    #[test]
    fn figures_from_counters() {
        // 10 pushed, 2 deleted, 5 committed, 2 leased.
        let c = counts(10, 2, 5, 2, 1, 0);
        assert_eq!(
            (c.total, c.pending, c.processing, c.completed),
            (8, 3, 2, 3)
        );
        // Everything committed and some deleted by retention: nothing pending.
        let c = counts(10, 10, 10, 0, 0, 0);
        assert_eq!(
            (c.total, c.pending, c.processing, c.completed),
            (0, 0, 0, 0)
        );
        // Deleted before being consumed: pending is bounded by what is stored.
        let c = counts(10, 8, 0, 0, 0, 0);
        assert_eq!((c.total, c.pending, c.completed), (2, 2, 0));
    }
}
