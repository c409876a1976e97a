//! Queue administration and inspection: configuration read-back, per-partition figures,
//! deletion, tag lookup and shared settings. Not on the hot path; plain statements.

use queen_wire::{Client, Json, Row, Timestamp};
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::model::{QueueInfo, QueueOptions};

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
        let rows = self
            .inner()
            .inspect(&self.inner().st()?.queue_stats, &[&queue])
            .await?;
        let mut out: Vec<QueueStats> = Vec::new();
        for r in &rows {
            let id: Uuid = r.get(0)?;
            if out.last().is_none_or(|q| q.id != id) {
                out.push(QueueStats {
                    id,
                    name: r.get(1)?,
                    namespace: r.get(2)?,
                    task: r.get(3)?,
                    priority: r.get(4)?,
                    created_at: r.get(5)?,
                    partitions: Vec::new(),
                    totals: Counts::default(),
                });
            }
            let Some(q) = out.last_mut() else { continue };
            let Some(pid) = r.get::<Option<Uuid>>(6)? else {
                continue;
            };
            let counts = Counts {
                total: r.get(9)?,
                pending: r.get(10)?,
                processing: r.get(11)?,
                completed: r.get(12)?,
                failed: r.get(13)?,
                dead_letter: r.get(14)?,
            };
            q.totals.add(&counts);
            q.partitions.push(PartitionStats {
                id: pid,
                name: r.get(7)?,
                created_at: r.get(8)?,
                counts,
                oldest: r.get(15)?,
                newest: r.get(16)?,
            });
        }
        Ok(out)
    }

    /// A queue's configuration, if it exists.
    pub async fn queue_info(&self, queue: &str) -> Result<Option<QueueInfo>, EngineError> {
        let inner = self.inner();
        let rows = inner.inspect(&inner.st()?.queue_options, &[&queue]).await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let default = inner
            .pool
            .query(&inner.st()?.default_partition, &[&queue])
            .await?;
        let default_partition_id = match default.first() {
            Some(d) => d.get(0)?,
            None => Uuid::nil(),
        };
        Ok(Some(queue_info_from(r, default_partition_id)?))
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
        let rows = inner
            .pool
            .query(&inner.st()?.queues_by_tag, &[&namespace, &task])
            .await?;
        rows.iter()
            .map(|r| r.get(0).map_err(EngineError::from))
            .collect()
    }

    /// A shared setting (JSON text), stored in the database so every server follows it.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, EngineError> {
        let inner = self.inner();
        let rows = inner.pool.query(&inner.st()?.get_setting, &[&key]).await?;
        Ok(rows
            .first()
            .map(|r| r.get::<Json<String>>(0))
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

pub(crate) fn queue_info_from(
    r: &Row,
    default_partition_id: Uuid,
) -> Result<QueueInfo, EngineError> {
    Ok(QueueInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        namespace: r.get(2)?,
        task: r.get(3)?,
        default_partition_id,
        options: QueueOptions {
            lease_time: r.get(4)?,
            max_size: r.get(5)?,
            ttl: r.get(6)?,
            retry_limit: r.get(7)?,
            retry_delay: r.get(8)?,
            dead_letter_queue: r.get(9)?,
            dlq_after_max_retries: r.get(10)?,
            priority: r.get(11)?,
            delayed_processing: r.get(12)?,
            window_buffer: r.get(13)?,
            retention_seconds: r.get(14)?,
            completed_retention_seconds: r.get(15)?,
            retention_enabled: r.get(16)?,
            encryption_enabled: r.get(17)?,
            max_wait_time_seconds: r.get(18)?,
        },
        created_at: r.get(19)?,
    })
}
