//! Queue administration and inspection: configuration read-back, per-partition figures,
//! deletion, tag lookup and shared settings. Not on the hot path; plain statements.

use queen_wire::{Client, Json, Row};
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::model::{QueueInfo, QueueOptions};
use crate::statements::columns;

impl Engine {
    /// A queue's configuration, if it exists.
    ///
    /// Two lookups by key, on the hot pool: on the inspection pool they waited behind the
    /// analytics refreshes (100 ms and more at 10,000 partitions under load, measured as the
    /// queue detail's p99), and they cost a pool connection no more than a pop's own lookups.
    pub async fn queue_info(&self, queue: &str) -> Result<Option<QueueInfo>, EngineError> {
        let inner = self.inner();
        let st = inner.st()?;
        let rows = inner.pool().query(&st.queue_options, &[&queue]).await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let default = inner.pool().query(&st.default_partition, &[&queue]).await?;
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
            .pool()
            .query(&inner.st()?.delete_queue, &[&queue])
            .await?;
        inner.partitions().invalidate_queue(queue);
        inner.analytics().invalidate();
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
            .pool()
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
        let rows = inner.pool().query(&st.get_setting, &[&key]).await?;
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
            .pool()
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
