//! Queue administration and inspection: configuration read-back, per-partition figures,
//! deletion, tag lookup and shared settings. Not on the hot path; plain statements.

use queen_wire::{Client, Json, Row, Timestamp};
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::model::{QueueInfo, QueueOptions};
use crate::statements::columns;

/// Message figures (as seen by queue-mode consumers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages stored.
    pub total: i64,
    /// Not yet delivered (or delivered and released for redelivery).
    pub pending: i64,
    /// Under a live lease.
    pub processing: i64,
    /// Committed.
    pub completed: i64,
    /// Failed at least once and not settled yet.
    pub failed: i64,
    /// In the dead-letter queue.
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
    /// Oldest message's creation time.
    pub oldest: Option<Timestamp>,
    /// Newest message's creation time.
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
    /// Partitions.
    pub partitions: Vec<PartitionStats>,
    /// Sum over partitions.
    pub totals: Counts,
}

impl Engine {
    /// Figures of every queue, or of one.
    pub async fn queue_stats(&self, queue: Option<&str>) -> Result<Vec<QueueStats>, EngineError> {
        let st = self.inner().st()?;
        let c = st.cols.queue_stats;
        let rows = self.inner().inspect(&st.queue_stats, &[&queue]).await?;
        let mut out: Vec<QueueStats> = Vec::new();
        for r in &rows {
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
            let counts = Counts {
                total: r.get(c.total)?,
                pending: r.get(c.pending)?,
                processing: r.get(c.processing)?,
                completed: r.get(c.completed)?,
                failed: r.get(c.failed)?,
                dead_letter: r.get(c.dead_letter)?,
            };
            q.totals.add(&counts);
            q.partitions.push(PartitionStats {
                id: pid,
                name: r.get(c.partition_name)?,
                created_at: r.get(c.partition_created_at)?,
                counts,
                oldest: r.get(c.oldest)?,
                newest: r.get(c.newest)?,
            });
        }
        Ok(out)
    }

    /// A queue's configuration, if it exists.
    pub async fn queue_info(&self, queue: &str) -> Result<Option<QueueInfo>, EngineError> {
        let inner = self.inner();
        let st = inner.st()?;
        let rows = inner.inspect(&st.queue_options, &[&queue]).await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let default = inner.pool.query(&st.default_partition, &[&queue]).await?;
        let default_partition_id = match default.first() {
            Some(d) => d.get(st.cols.default_partition.id)?,
            None => Uuid::nil(),
        };
        Ok(Some(queue_info_from(
            st.cols.queue_options,
            r,
            default_partition_id,
        )?))
    }

    /// Deletes a queue and everything in it. Returns whether it existed.
    pub async fn delete_queue(&self, queue: &str) -> Result<bool, EngineError> {
        let inner = self.inner();
        let rows = inner
            .pool
            .query(&inner.st()?.delete_queue, &[&queue])
            .await?;
        inner.partitions.invalidate_queue(queue);
        Ok(crate::statements::first_value::<bool>(&rows)?.unwrap_or(false))
    }

    /// Names of the queues tagged with `namespace` and/or `task`, higher priority first.
    pub async fn queues_by_tag(
        &self,
        namespace: Option<&str>,
        task: Option<&str>,
    ) -> Result<Vec<String>, EngineError> {
        let inner = self.inner();
        let st = inner.st()?;
        let rows = inner
            .pool
            .query(&st.queues_by_tag, &[&namespace, &task])
            .await?;
        rows.iter()
            .map(|r| r.get(st.cols.queues_by_tag.name).map_err(EngineError::from))
            .collect()
    }

    /// A shared setting (JSON text), stored in the database so every server follows it.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, EngineError> {
        let inner = self.inner();
        let st = inner.st()?;
        let rows = inner.pool.query(&st.get_setting, &[&key]).await?;
        Ok(rows
            .first()
            .map(|r| r.get::<Json<String>>(st.cols.get_setting.value))
            .transpose()?
            .map(|j| j.0))
    }

    /// Stores a shared setting (`value` must be JSON).
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), EngineError> {
        let inner = self.inner();
        inner
            .pool
            .query(&inner.st()?.set_setting, &[&key, &Json(value)])
            .await?;
        Ok(())
    }
}

/// A queue row (`queen.queues` columns, as `configure.sql` and `queue_options.sql` select them).
pub(crate) fn queue_info_from(
    c: columns::configure,
    r: &Row,
    default_partition_id: Uuid,
) -> Result<QueueInfo, EngineError> {
    Ok(QueueInfo {
        id: r.get(c.id)?,
        name: r.get(c.name)?,
        namespace: r.get(c.namespace)?,
        task: r.get(c.task)?,
        default_partition_id,
        options: QueueOptions {
            lease_time: r.get(c.lease_time)?,
            max_size: r.get(c.max_size)?,
            ttl: r.get(c.ttl)?,
            retry_limit: r.get(c.retry_limit)?,
            retry_delay: r.get(c.retry_delay)?,
            dead_letter_queue: r.get(c.dead_letter_queue)?,
            dlq_after_max_retries: r.get(c.dlq_after_max_retries)?,
            priority: r.get(c.priority)?,
            delayed_processing: r.get(c.delayed_processing)?,
            window_buffer: r.get(c.window_buffer)?,
            retention_seconds: r.get(c.retention_seconds)?,
            completed_retention_seconds: r.get(c.completed_retention_seconds)?,
            retention_enabled: r.get(c.retention_enabled)?,
            encryption_enabled: r.get(c.encryption_enabled)?,
            max_wait_time_seconds: r.get(c.max_wait_time_seconds)?,
        },
        created_at: r.get(c.created_at)?,
    })
}
