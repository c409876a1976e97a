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
//! * an older one (up to `stale_limit`) is served too, and one refresh starts in the
//!   background: pollers never wait for the database;
//! * with no snapshot, or one past `stale_limit`, the caller waits for a refresh; concurrent
//!   callers share it (single flight).
//!
//! Changes made through this server's admin routes (configure, deletes, seeks) drop the
//! snapshot, so the next read shows them. Pushes, pops and acks do not: their figures are at
//! most `max_age` (plus the poll interval) old, as `asOf` in each answer says.
//!
//! # Cancel safety
//!
//! A caller waiting for a refresh may be dropped: the refresh it started is dropped with it
//! (the statement is cancelled on the server) and the next caller starts another. Background
//! refreshes run on their own task and store their snapshot when they finish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use queen_wire::{Row, Timestamp};
use uuid::Uuid;

use crate::engine::{Engine, Inner};
use crate::error::EngineError;
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
    taken: Instant,
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

/// The shared snapshot and its refresh (one per engine).
#[derive(Debug, Default)]
pub(crate) struct Analytics {
    config: AnalyticsConfig,
    current: std::sync::Mutex<Option<Arc<Snapshot>>>,
    /// Held while a refresh runs: one at a time.
    refresh: tokio::sync::Mutex<()>,
}

impl Analytics {
    pub(crate) fn new(config: AnalyticsConfig) -> Analytics {
        Analytics {
            config,
            ..Analytics::default()
        }
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn store(&self, s: Arc<Snapshot>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
    }

    /// Drops the snapshot: the next read waits for fresh figures.
    pub(crate) fn invalidate(&self) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Reads the figures from the database (two statements on the admin pool).
async fn take(inner: &Inner) -> Result<Snapshot, EngineError> {
    let st = inner.st()?;
    let taken = Instant::now();
    let as_of = Timestamp::now();
    let rows = inner.inspect(&st.partition_stats, &[]).await?;
    let queues = queues_from(st.cols.partition_stats, &rows)?;
    let rows = inner.inspect(&st.group_stats, &[]).await?;
    let groups = rows
        .iter()
        .map(|r| group_from(st.cols.group_stats, r))
        .collect::<Result<_, _>>()?;
    Ok(Snapshot {
        as_of,
        taken,
        queues,
        groups,
    })
}

fn queues_from(c: columns::partition_stats, rows: &[Row]) -> Result<Vec<QueueStats>, EngineError> {
    let mut out: Vec<QueueStats> = Vec::new();
    for r in rows {
        let id: Uuid = r.get(c.queue_id)?;
        if out.last().is_none_or(|q| q.id != id) {
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
        let Some(q) = out.last_mut() else { continue };
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
    /// The current figures, at most `max_age` old, or up to `stale_limit` old while a refresh
    /// runs in the background (see the module documentation).
    pub async fn analytics(&self) -> Result<Arc<Snapshot>, EngineError> {
        let inner = self.inner();
        let a = &inner.analytics;
        if let Some(s) = a.current() {
            let age = s.taken.elapsed();
            if age < a.config.max_age {
                return Ok(s);
            }
            if age < a.config.stale_limit {
                // Serve it and refresh behind it, unless a refresh is already running.
                if let Ok(guard) = a.refresh.try_lock() {
                    drop(guard);
                    let engine = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = engine.refresh_analytics().await {
                            tracing::warn!(error = %e, "analytics refresh failed");
                        }
                    });
                }
                return Ok(s);
            }
        }
        self.refresh_analytics().await
    }

    /// Takes a snapshot unless another caller took one meanwhile (single flight).
    async fn refresh_analytics(&self) -> Result<Arc<Snapshot>, EngineError> {
        let inner = self.inner();
        let a = &inner.analytics;
        let _one = a.refresh.lock().await;
        if let Some(s) = a.current().filter(|s| s.taken.elapsed() < a.config.max_age) {
            return Ok(s);
        }
        let s = Arc::new(take(inner).await?);
        a.store(s.clone());
        Ok(s)
    }

    /// One consumer group's cursors, by queue and partition (read now, not from the snapshot:
    /// one group's rows are found by index).
    pub async fn group_partitions(&self, group: &str) -> Result<Vec<GroupPartition>, EngineError> {
        let inner = self.inner();
        let st = inner.st()?;
        let c = st.cols.group_partitions;
        let rows = inner.inspect(&st.group_partitions, &[&group]).await?;
        rows.iter()
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
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::counts;

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
