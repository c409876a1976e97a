//! Inspection and operations (docs/api.md, "Inspection"): messages, the dead-letter queue, traces and consumer
//! groups.
//!
//! Not on the hot path. Each operation is one prepared statement calling a function of
//! `sql/functions/inspection.sql` (or `analytics.sql` for the listings) that answers rows, so
//! the figures come straight from the tables (cursors, leases, dead letters) with no per-ack
//! history. The engine reads them by column name into the typed answers below (the HTTP layer
//! owns their JSON shapes) and adds what the database cannot: payloads of encrypting queues are
//! decrypted here.

use queen_wire::{Client, Json, Timestamp};
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::statements::first_value;
use crate::wakeup::Wake;

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
    /// Continue after this row of the previous page.
    pub after: Option<MessageCursor>,
    /// Rows to pass over before the page starts (Queen's `offset`): read and dropped, so the
    /// cost grows with it; bounded by [`MessageFilter::MAX_SKIP`]. `after` is the cheap way on.
    pub skip: i32,
}

impl MessageFilter {
    /// The largest `skip` a listing accepts; deeper pages continue from a cursor.
    pub const MAX_SKIP: i32 = 10_000;
}

/// Where a message listing continues: the (creation time, partition, position) of the last row
/// of the previous page. Written out as an opaque token (`c1.<micros>.<partition>.<position>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageCursor {
    created_at: Timestamp,
    pnum: i64,
    position: i64,
}

impl MessageCursor {
    /// The token a client sends back for the next page.
    pub fn token(&self) -> String {
        format!(
            "c1.{}.{}.{}",
            self.created_at.micros(),
            self.pnum,
            self.position
        )
    }

    /// A token back into a cursor; None when it is not one this server wrote.
    pub fn parse(token: &str) -> Option<MessageCursor> {
        let mut it = token.strip_prefix("c1.")?.split('.');
        let cursor = MessageCursor {
            created_at: Timestamp(it.next()?.parse().ok()?),
            pnum: it.next()?.parse().ok()?,
            position: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(cursor)
    }
}

/// One message of a listing (without its payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSummary {
    /// Message id.
    pub id: Uuid,
    /// transactionId.
    pub transaction_id: String,
    /// Partition id.
    pub partition_id: Uuid,
    /// Queue name.
    pub queue: String,
    /// Partition name.
    pub partition: String,
    /// Queue namespace.
    pub namespace: Option<String>,
    /// Queue task.
    pub task: Option<String>,
    /// pending | processing | completed | dead_letter, as the groups reading it see it.
    pub status: String,
    /// Trace id.
    pub trace_id: Option<Uuid>,
    /// Producer identity.
    pub producer_sub: Option<String>,
    /// Push time.
    pub created_at: Timestamp,
    /// End of the live lease covering it.
    pub lease_expires_at: Option<Timestamp>,
}

/// A page of the message listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessagePage {
    /// Newest first.
    pub messages: Vec<MessageSummary>,
    /// Where the next page starts; None on the last page.
    pub next: Option<MessageCursor>,
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its row id (the DLQ listing's cursor).
    pub id: i64,
    /// Message id.
    pub message_id: Uuid,
    /// transactionId.
    pub transaction_id: String,
    /// Partition id.
    pub partition_id: Uuid,
    /// Queue name.
    pub queue: String,
    /// Partition name.
    pub partition: String,
    /// The group that dead-lettered it.
    pub consumer_group: String,
    /// The last error reported.
    pub error_message: Option<String>,
    /// Failed deliveries.
    pub retry_count: i32,
    /// Push time (None when the message was deleted since).
    pub created_at: Option<Timestamp>,
    /// When it was dead-lettered.
    pub failed_at: Timestamp,
    /// Its payload's JSON text, decrypted; None when the message was deleted since.
    pub payload: Option<String>,
}

/// A page of the dead-letter listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterPage {
    /// Newest first.
    pub messages: Vec<DeadLetter>,
    /// How many match the filters.
    pub total: i64,
    /// Where the next page starts (pass as `before`); None on the last page.
    pub next: Option<i64>,
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
    /// Rows skipped (for clients that page by offset; `before` costs nothing per page).
    pub offset: i32,
    /// Continue after this dead letter (its id).
    pub before: Option<i64>,
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

/// One message as inspection shows it: its listing fields, the per-group state, and its payload
/// as stored (decrypted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageDetail {
    /// The fields a listing shows.
    pub summary: MessageSummary,
    /// Failed deliveries so far (the highest of any group).
    pub retry_count: i32,
    /// The latest failure's error text.
    pub error_message: Option<String>,
    /// Each consumer group reading its partition, by name.
    pub groups: Vec<GroupState>,
    /// The payload's JSON text; None when the message is gone (a dead letter deleted since).
    pub payload: Option<String>,
}

/// Where one consumer group stands with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// The group.
    pub name: String,
    /// Whether the group has committed the message.
    pub consumed: bool,
    /// The expiry of the group's live lease covering it.
    pub lease_expires_at: Option<Timestamp>,
}

/// One trace event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Trace id.
    pub id: Uuid,
    /// The traced message's transactionId.
    pub transaction_id: String,
    /// Its partition.
    pub partition_id: Uuid,
    /// What happened (`info`, `error`, ...).
    pub event_type: String,
    /// The event's JSON text.
    pub data: String,
    /// The group that recorded it.
    pub consumer_group: Option<String>,
    /// The worker that recorded it.
    pub worker_id: Option<String>,
    /// When.
    pub created_at: Timestamp,
    /// Its names.
    pub names: Vec<String>,
}

/// A page of traces and how many match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TracePage {
    /// Newest first.
    pub traces: Vec<Trace>,
    /// All that match.
    pub total: i64,
}

/// A trace name and its use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceName {
    /// The name.
    pub name: String,
    /// Traces carrying it.
    pub traces: i64,
    /// Messages with such traces.
    pub messages: i64,
    /// The latest such trace.
    pub last_seen: Timestamp,
}

/// A page of trace names (latest used first) and how many there are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceNamePage {
    /// The page.
    pub names: Vec<TraceName>,
    /// All names.
    pub total: i64,
}

/// A [`MessageSummary`] from a row of a statement with the listing's column names
/// (`list_messages`, `message_detail`): one field list for both.
macro_rules! message_summary {
    ($r:expr, $c:expr) => {
        MessageSummary {
            id: $r.get($c.message_id)?,
            transaction_id: $r.get($c.transaction_id)?,
            partition_id: $r.get($c.partition_id)?,
            queue: $r.get($c.queue_name)?,
            partition: $r.get($c.partition_name)?,
            namespace: $r.get($c.namespace)?,
            task: $r.get($c.task)?,
            status: $r.get($c.status)?,
            trace_id: $r.get($c.trace_id)?,
            producer_sub: $r.get($c.producer_sub)?,
            created_at: $r.get($c.created_at)?,
            lease_expires_at: $r.get($c.lease_expires_at)?,
        }
    };
}

/// A [`Trace`] from a row of `message_traces` or `traces_by_name` (same columns).
fn trace_from(
    r: &queen_wire::Row,
    c: crate::statements::columns::traces_by_name,
) -> Result<Option<Trace>, EngineError> {
    // A paged listing's empty page is one row without a trace, for the total.
    let Some(id) = r.get(c.id)? else {
        return Ok(None);
    };
    Ok(Some(Trace {
        id,
        transaction_id: r.get(c.transaction_id)?,
        partition_id: r.get(c.partition_id)?,
        event_type: r.get(c.event_type)?,
        data: r.get::<Json<String>>(c.data)?.0,
        consumer_group: r.get(c.consumer_group)?,
        worker_id: r.get(c.worker_id)?,
        created_at: r.get(c.created_at)?,
        names: r.get(c.trace_names)?,
    }))
}

impl Engine {
    /// A page of the messages matching the filter, newest first, without payloads.
    pub async fn list_messages(&self, f: &MessageFilter) -> Result<MessagePage, EngineError> {
        let inner = self.inner();
        // Keeps the time index the listing walks summarised while messages are listed.
        inner.listings().touch();
        let st = inner.st()?;
        let c = st.cols.list_messages;
        let (ts, pnum, pos) = match f.after {
            Some(a) => (Some(a.created_at), Some(a.pnum), Some(a.position)),
            None => (None, None, None),
        };
        let skip = f.skip.clamp(0, MessageFilter::MAX_SKIP);
        let fetch = f.limit.saturating_add(skip);
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
                    &fetch,
                    &ts,
                    &pnum,
                    &pos,
                ],
            )
            .await?;
        let mut page = MessagePage::default();
        for r in rows.iter().skip(usize::try_from(skip).unwrap_or(0)) {
            let summary = message_summary!(r, c);
            page.next = Some(MessageCursor {
                created_at: summary.created_at,
                pnum: r.get(c.pnum)?,
                position: r.get(c.pos)?,
            });
            page.messages.push(summary);
        }
        if rows.len() < usize::try_from(fetch).unwrap_or(0) {
            page.next = None;
        }
        Ok(page)
    }

    /// One message with its (decrypted) payload, retry count, error and per-group state; None
    /// when it does not exist.
    pub async fn message(
        &self,
        partition_id: Uuid,
        transaction_id: &str,
    ) -> Result<Option<MessageDetail>, EngineError> {
        let inner = self.inner();
        let st = inner.st()?;
        let c = st.cols.message_detail;
        let rows = inner
            .inspect(&st.message_detail, &[&partition_id, &transaction_id])
            .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let names: Vec<String> = r.get(c.group_names)?;
        let consumed: Vec<bool> = r.get(c.group_consumed)?;
        let leases: Vec<Option<Timestamp>> = r.get(c.group_leases)?;
        if consumed.len() != names.len() || leases.len() != names.len() {
            return Err(EngineError::Internal(
                "message_detail answered group arrays of different lengths".into(),
            ));
        }
        let groups = names
            .into_iter()
            .zip(consumed)
            .zip(leases)
            .map(|((name, consumed), lease_expires_at)| GroupState {
                name,
                consumed,
                lease_expires_at,
            })
            .collect();
        Ok(Some(MessageDetail {
            summary: message_summary!(r, c),
            retry_count: r.get(c.retry_count)?,
            error_message: r.get(c.error_message)?,
            groups,
            payload: crate::payload::stored(inner, r, c.payload, c.sealed)?,
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
            .pool()
            .query(
                &inner.st()?.delete_message,
                &[&partition_id, &transaction_id],
            )
            .await?;
        inner.analytics().invalidate();
        Ok(first_value::<bool>(&rows)?.unwrap_or(false))
    }

    /// A page of the dead letters matching the filter (newest first) with their payloads, and
    /// how many match.
    pub async fn dead_letters(&self, f: &DeadLetterFilter) -> Result<DeadLetterPage, EngineError> {
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
                    &f.before,
                ],
            )
            .await?;
        let mut page = DeadLetterPage::default();
        for r in &rows {
            let id: i64 = r.get(c.id)?;
            page.next = Some(id);
            page.messages.push(DeadLetter {
                id,
                message_id: r.get(c.message_id)?,
                transaction_id: r.get(c.transaction_id)?,
                partition_id: r.get(c.partition_id)?,
                queue: r.get(c.queue_name)?,
                partition: r.get(c.partition_name)?,
                consumer_group: r.get(c.consumer_group)?,
                error_message: r.get(c.error_message)?,
                retry_count: r.get(c.retry_count)?,
                created_at: r.get(c.created_at)?,
                failed_at: r.get(c.failed_at)?,
                payload: crate::payload::stored(inner, r, c.payload, c.sealed)?,
            });
        }
        if rows.len() < usize::try_from(f.limit).unwrap_or(0) {
            page.next = None;
        }
        let counted = inner
            .inspect(
                &st.count_dead_letters,
                &[&f.queue, &f.consumer_group, &f.partition, &f.from, &f.to],
            )
            .await?;
        page.total = first_value::<i64>(&counted)?.unwrap_or(0);
        Ok(page)
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
            .pool()
            .query(
                &inner.st()?.retry_dead_letter,
                &[&partition_id, &transaction_id],
            )
            .await?;
        inner.analytics().invalidate();
        // The function answers with the message's queue, to wake its waiting pops.
        let Some(queue) = first_value::<String>(&rows)? else {
            return Ok(false);
        };
        inner.wake(&queue, Wake::Everyone);
        Ok(true)
    }

    /// Records a trace event; its id, or None when the message does not exist.
    pub async fn add_trace(&self, t: &TraceEvent) -> Result<Option<Uuid>, EngineError> {
        let inner = self.inner();
        let id = Uuid::now_v7();
        let rows = inner
            .pool()
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

    /// A message's traces, oldest first.
    pub async fn message_traces(
        &self,
        partition_id: Uuid,
        transaction_id: &str,
    ) -> Result<Vec<Trace>, EngineError> {
        let inner = self.inner();
        let st = inner.st()?;
        let c = st.cols.message_traces;
        let rows = inner
            .inspect(&st.message_traces, &[&partition_id, &transaction_id])
            .await?;
        let mut traces = Vec::with_capacity(rows.len());
        for r in &rows {
            traces.extend(trace_from(r, c)?);
        }
        Ok(traces)
    }

    /// A page of the traces carrying `name`, newest first, and how many do.
    pub async fn traces_by_name(
        &self,
        name: &str,
        limit: i32,
        offset: i32,
    ) -> Result<TracePage, EngineError> {
        let inner = self.inner();
        let st = inner.st()?;
        let c = st.cols.traces_by_name;
        let rows = inner
            .inspect(&st.traces_by_name, &[&name, &limit, &offset])
            .await?;
        let mut page = TracePage::default();
        for r in &rows {
            page.total = r.get(c.total)?;
            page.traces.extend(trace_from(r, c)?);
        }
        Ok(page)
    }

    /// A page of the trace names (latest used first) with their counts, and how many there are.
    pub async fn trace_names(&self, limit: i32, offset: i32) -> Result<TraceNamePage, EngineError> {
        let inner = self.inner();
        let st = inner.st()?;
        let c = st.cols.trace_names;
        let rows = inner.inspect(&st.trace_names, &[&limit, &offset]).await?;
        let mut page = TraceNamePage::default();
        for r in &rows {
            page.total = r.get(c.total)?;
            // An empty page is one row without a name, for the total.
            let Some(name) = r.get(c.trace_name)? else {
                continue;
            };
            page.names.push(TraceName {
                name,
                traces: r.get(c.trace_count)?,
                messages: r.get(c.message_count)?,
                last_seen: r.get(c.last_seen)?,
            });
        }
        Ok(page)
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
            .pool()
            .query(
                &inner.st()?.delete_consumer_group,
                &[&group, &queue, &metadata],
            )
            .await?;
        inner.analytics().invalidate();
        Ok(first_value::<i64>(&rows)?.unwrap_or(0))
    }

    /// Sets where a group starts on partitions it has not read yet; returns the subscriptions
    /// updated.
    pub async fn set_subscription(&self, group: &str, from: Timestamp) -> Result<i64, EngineError> {
        let inner = self.inner();
        let rows = inner
            .pool()
            .query(&inner.st()?.set_subscription, &[&group, &from])
            .await?;
        inner.analytics().invalidate();
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
            .pool()
            .query(
                &inner.st()?.seek,
                &[&group, &queue, &partition, &to_end, &ts],
            )
            .await?;
        inner.analytics().invalidate();
        let moved = first_value::<i64>(&rows)?;
        if moved.is_some() {
            inner.wake(queue, Wake::Everyone);
        }
        Ok(moved)
    }
}
