//! Inspection and operations (api.md §4): messages, the dead-letter queue, traces and consumer
//! groups.
//!
//! Not on the hot path. Each operation is one prepared statement calling a function of
//! `sql/inspection.sql` that builds its answer as JSON in the database, so the figures come
//! straight from the tables (cursors, leases, dead letters) with no per-ack history. The engine
//! only adds what the database cannot: payloads of encrypting queues are decrypted here.

use queen_wire::{Client, Json, Row, Timestamp};
use serde_json::Value;
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::pop::stored_payload;
use crate::statements::first_value;

/// Filters of the message listing.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Queue name.
    pub queue: Option<String>,
    /// Partition name.
    pub partition: Option<String>,
    /// Namespace tag.
    pub namespace: Option<String>,
    /// Task tag.
    pub task: Option<String>,
    /// pending | processing | completed | dead_letter.
    pub status: Option<String>,
    /// Created at or after.
    pub from: Option<Timestamp>,
    /// Created at or before.
    pub to: Option<Timestamp>,
    /// Page size.
    pub limit: i32,
    /// Rows skipped.
    pub offset: i32,
}

/// Filters of the dead-letter listing.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    /// Queue name.
    pub queue: Option<String>,
    /// Consumer group.
    pub consumer_group: Option<String>,
    /// Partition name.
    pub partition: Option<String>,
    /// Failed at or after.
    pub from: Option<Timestamp>,
    /// Failed at or before.
    pub to: Option<Timestamp>,
    /// Page size.
    pub limit: i32,
    /// Rows skipped.
    pub offset: i32,
}

/// A trace event to record.
#[derive(Debug, Clone)]
pub struct TraceEvent {
    /// The message's partition.
    pub partition_id: Uuid,
    /// The message's transactionId.
    pub transaction_id: String,
    /// JSON text of the event data.
    pub data: String,
    /// Consumer group, if any.
    pub consumer_group: Option<String>,
    /// Event type (`info` by default).
    pub event_type: String,
    /// Worker identity, if any.
    pub worker_id: Option<String>,
    /// Names to find the trace by.
    pub names: Vec<String>,
}

/// Where a seek moves a group's cursors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTarget {
    /// Past every message stored now.
    End,
    /// Just before the first message created at or after this time.
    Time(Timestamp),
}

/// A message as inspection shows it: the fields the database built (a JSON object, as text) and
/// its payload as stored (decrypted), to be written out as it is — never parsed again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageDoc {
    /// The JSON object of the message's fields.
    pub fields: String,
    /// The payload's JSON text; None when the message is gone (a dead letter deleted since).
    pub payload: Option<String>,
}

fn json(v: &Json<String>) -> Result<Value, EngineError> {
    serde_json::from_str(&v.0)
        .map_err(|e| EngineError::Internal(format!("the database answered bad JSON: {e}")))
}

fn first_json(rows: &[Row]) -> Result<Value, EngineError> {
    Ok(match first_value::<Json<String>>(rows)? {
        Some(j) => json(&j)?,
        None => Value::Null,
    })
}

impl Engine {
    /// Messages matching the filter, newest first, without payloads.
    pub async fn list_messages(&self, f: &MessageFilter) -> Result<Vec<Value>, EngineError> {
        let inner = self.inner();
        let st = inner.st()?;
        let rows = inner
            .inspect(
                &st.list_messages,
                &[
                    &f.queue,
                    &f.partition,
                    &f.namespace,
                    &f.task,
                    &f.status,
                    &f.from,
                    &f.to,
                    &f.limit,
                    &f.offset,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| json(&r.get(st.cols.list_messages.m)?))
            .collect()
    }

    /// One message with its (decrypted) payload, retry count, error and per-group state; None
    /// when it does not exist.
    pub async fn message(
        &self,
        partition_id: Uuid,
        transaction_id: &str,
    ) -> Result<Option<MessageDoc>, EngineError> {
        let inner = self.inner();
        let st = inner.st()?;
        let c = st.cols.message_detail;
        let rows = inner
            .inspect(&st.message_detail, &[&partition_id, &transaction_id])
            .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(MessageDoc {
            fields: r.get::<Json<String>>(c.doc)?.0,
            payload: stored_payload(inner, r, c.payload, c.sealed)?,
        }))
    }

    /// Deletes one message (with its retry, dead-letter and trace rows); false when unknown.
    pub async fn delete_message(
        &self,
        partition_id: Uuid,
        transaction_id: &str,
    ) -> Result<bool, EngineError> {
        let inner = self.inner();
        let rows = inner
            .pool
            .query(
                &inner.st()?.delete_message,
                &[&partition_id, &transaction_id],
            )
            .await?;
        Ok(first_value::<bool>(&rows)?.unwrap_or(false))
    }

    /// Dead-lettered messages matching the filter (newest failure first) with their payloads,
    /// and the total matching.
    pub async fn dead_letters(
        &self,
        f: &DeadLetterFilter,
    ) -> Result<(Vec<MessageDoc>, i64), EngineError> {
        let inner = self.inner();
        let st = inner.st()?;
        let c = st.cols.list_dead_letters;
        let rows = inner
            .inspect(
                &st.list_dead_letters,
                &[
                    &f.queue,
                    &f.consumer_group,
                    &f.partition,
                    &f.from,
                    &f.to,
                    &f.limit,
                    &f.offset,
                ],
            )
            .await?;
        let mut total = 0;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            total = r.get(c.total)?;
            out.push(MessageDoc {
                fields: r.get::<Json<String>>(c.doc)?.0,
                payload: stored_payload(inner, r, c.payload, c.sealed)?,
            });
        }
        Ok((out, total))
    }

    /// Sends a dead-lettered message back for delivery (to the tail of its partition); false
    /// when it is not in the dead-letter queue.
    pub async fn retry_dead_letter(
        &self,
        partition_id: Uuid,
        transaction_id: &str,
    ) -> Result<bool, EngineError> {
        let inner = self.inner();
        let rows = inner
            .pool
            .query(
                &inner.st()?.retry_dead_letter,
                &[&partition_id, &transaction_id],
            )
            .await?;
        // The function answers with the message's queue, to wake its waiting pops.
        let Some(queue) = first_value::<String>(&rows)? else {
            return Ok(false);
        };
        inner.hub.wake(&queue);
        inner.announcer.announce(&queue);
        Ok(true)
    }

    /// Records a trace event; its id, or None when the message does not exist.
    pub async fn add_trace(&self, t: &TraceEvent) -> Result<Option<Uuid>, EngineError> {
        let inner = self.inner();
        let id = Uuid::now_v7();
        let rows = inner
            .pool
            .query(
                &inner.st()?.add_trace,
                &[
                    &id,
                    &t.partition_id,
                    &t.transaction_id,
                    &t.consumer_group,
                    &t.event_type,
                    &Json(t.data.as_str()),
                    &t.worker_id,
                    &t.names,
                ],
            )
            .await?;
        Ok(first_value::<bool>(&rows)?.unwrap_or(false).then_some(id))
    }

    /// A message's traces, oldest first (a JSON array).
    pub async fn message_traces(
        &self,
        partition_id: Uuid,
        transaction_id: &str,
    ) -> Result<Value, EngineError> {
        let inner = self.inner();
        let rows = inner
            .inspect(
                &inner.st()?.message_traces,
                &[&partition_id, &transaction_id],
            )
            .await?;
        first_json(&rows)
    }

    /// Traces carrying a name: `{"traces", "total", "pagination"}`.
    pub async fn traces_by_name(
        &self,
        name: &str,
        limit: i32,
        offset: i32,
    ) -> Result<Value, EngineError> {
        let inner = self.inner();
        let rows = inner
            .inspect(&inner.st()?.traces_by_name, &[&name, &limit, &offset])
            .await?;
        first_json(&rows)
    }

    /// Trace names with counts: `{"trace_names", "total", "pagination"}`.
    pub async fn trace_names(&self, limit: i32, offset: i32) -> Result<Value, EngineError> {
        let inner = self.inner();
        let rows = inner
            .inspect(&inner.st()?.trace_names, &[&limit, &offset])
            .await?;
        first_json(&rows)
    }

    /// Consumer groups per queue with their lag and state (a JSON array); only those whose
    /// oldest uncommitted message is at least `min_lag_seconds` old when given.
    pub async fn consumer_groups(
        &self,
        min_lag_seconds: Option<f64>,
    ) -> Result<Value, EngineError> {
        let inner = self.inner();
        let rows = inner
            .inspect(&inner.st()?.consumer_groups, &[&min_lag_seconds])
            .await?;
        first_json(&rows)
    }

    /// One group's partitions per queue; None when the group has no cursor anywhere.
    pub async fn consumer_group(&self, group: &str) -> Result<Option<Value>, EngineError> {
        let inner = self.inner();
        let rows = inner
            .inspect(&inner.st()?.consumer_group, &[&group])
            .await?;
        Ok(Some(first_json(&rows)?).filter(|v| !v.is_null()))
    }

    /// Removes a group's cursors everywhere or on one queue (and its subscriptions with
    /// `metadata`, or on that queue). Returns the cursors removed.
    pub async fn delete_consumer_group(
        &self,
        group: &str,
        queue: Option<&str>,
        metadata: bool,
    ) -> Result<i64, EngineError> {
        let inner = self.inner();
        let rows = inner
            .pool
            .query(
                &inner.st()?.delete_consumer_group,
                &[&group, &queue, &metadata],
            )
            .await?;
        Ok(first_value::<i64>(&rows)?.unwrap_or(0))
    }

    /// Sets where a group starts on partitions it has not read yet; returns the subscriptions
    /// updated.
    pub async fn set_subscription(&self, group: &str, from: Timestamp) -> Result<i64, EngineError> {
        let inner = self.inner();
        let rows = inner
            .pool
            .query(&inner.st()?.set_subscription, &[&group, &from])
            .await?;
        Ok(first_value::<i64>(&rows)?.unwrap_or(0))
    }

    /// Moves a group's cursors on a queue, or on one partition. Returns the partitions moved,
    /// or None when the queue (or partition) does not exist.
    pub async fn seek(
        &self,
        group: &str,
        queue: &str,
        partition: Option<&str>,
        target: SeekTarget,
    ) -> Result<Option<i64>, EngineError> {
        let inner = self.inner();
        let (to_end, ts) = match target {
            SeekTarget::End => (true, None),
            SeekTarget::Time(t) => (false, Some(t)),
        };
        let rows = inner
            .pool
            .query(
                &inner.st()?.seek,
                &[&group, &queue, &partition, &to_end, &ts],
            )
            .await?;
        let moved = first_value::<i64>(&rows)?;
        if moved.is_some() {
            inner.hub.wake(queue);
        }
        Ok(moved)
    }
}
