//! Ack: offset commits, folded across concurrent requests into one `queen.ack` call.
//!
//! ```text
//!   Submit ──► (shared round trip) ──► Done
//! ```
//!
//! The rules (docs/semantics.md, "Acks") live in the database function, which settles each
//! (partition, group) under its cursor row lock: a `completed` commits the cursor to the message,
//! the lowest `failed`/`retry` clamps the cursor before it whatever else the batch says, acks
//! below the cursor are `noop` (or refused for a nack), unknown messages fail, and an ack naming
//! a lease that is not live fails with every other item of its partition.
//!
//! One round trip per request, shared with the other requests of the batch. A request's items
//! are independent (per-item results); a failure of the whole statement is reported to each
//! request of the batch.

use std::sync::Arc;

use queen_wire::{Client, Pipeline};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::batch::Job;
use crate::engine::Inner;
use crate::error::EngineError;
use crate::limits::{ACK_ITEMS_MAX, TEXT_MAX, check_name, check_text, check_transaction_id};
use crate::model::{AckItem, AckOutcome};
use crate::statements::columns;
use crate::txid::TxId;
use crate::wakeup::Wake;

#[derive(Debug)]
pub(crate) struct AckJob {
    pub items: Vec<AckItem>,
    pub reply: oneshot::Sender<Result<Vec<AckOutcome>, EngineError>>,
}

impl Job for AckJob {
    fn items(&self) -> usize {
        self.items.len()
    }
}

/// Acks one request's items.
pub(crate) async fn ack(
    inner: &Inner,
    items: Vec<AckItem>,
) -> Result<Vec<AckOutcome>, EngineError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    validate(&items)?;
    let (reply, rx) = oneshot::channel();
    inner
        .ack_batcher()
        .submit(AckJob { items, reply })
        .map_err(|_| EngineError::ShuttingDown)?;
    rx.await.map_err(|_| EngineError::ShuttingDown)?
}

/// Checks what the database would refuse (before the statement other requests share): names,
/// transactionIds and error texts within the limits.
pub(crate) fn validate(items: &[AckItem]) -> Result<(), EngineError> {
    if items.len() > ACK_ITEMS_MAX {
        return Err(EngineError::Invalid(format!(
            "an ack batch may hold at most {ACK_ITEMS_MAX} acknowledgments"
        )));
    }
    for (i, it) in items.iter().enumerate() {
        check_name("consumer group", &it.consumer_group)
            .and_then(|()| check_transaction_id("transactionId", &it.transaction_id))
            .and_then(|()| match &it.error {
                Some(e) => check_text("error", e, TEXT_MAX),
                None => Ok(()),
            })
            .map_err(|e| EngineError::Invalid(format!("acknowledgments[{i}]: {e}")))?;
    }
    Ok(())
}

/// Column arrays of `queen.ack`; transactionIds split as they are stored (see
/// [`TxId`](crate::txid::TxId)).
pub(crate) struct AckArrays<'a> {
    groups: Vec<&'a str>,
    partition_ids: Vec<Uuid>,
    txuuids: Vec<Option<Uuid>>,
    txtexts: Vec<Option<&'a str>>,
    statuses: Vec<&'static str>,
    errors: Vec<Option<&'a str>>,
    leases: Vec<Option<Uuid>>,
}

impl<'a> AckArrays<'a> {
    pub(crate) fn new(items: impl IntoIterator<Item = &'a AckItem>) -> AckArrays<'a> {
        let mut a = AckArrays {
            groups: Vec::new(),
            partition_ids: Vec::new(),
            txuuids: Vec::new(),
            txtexts: Vec::new(),
            statuses: Vec::new(),
            errors: Vec::new(),
            leases: Vec::new(),
        };
        for it in items {
            a.groups.push(&it.consumer_group);
            a.partition_ids.push(it.partition_id);
            let tx = TxId::of(&it.transaction_id);
            a.txuuids.push(tx.uuid());
            a.txtexts.push(tx.text());
            a.statuses.push(it.status.as_sql());
            a.errors.push(it.error.as_deref());
            a.leases.push(it.lease_id);
        }
        a
    }

    /// Adds the `queen.ack` call to a pipeline's current segment.
    pub(crate) fn add_to(
        &self,
        p: &mut Pipeline,
        inner: &Inner,
        strict: bool,
    ) -> Result<(), EngineError> {
        p.query(
            &inner.st()?.ack,
            &[
                &self.groups,
                &self.partition_ids,
                &self.txuuids,
                &self.txtexts,
                &self.statuses,
                &self.errors,
                &self.leases,
                &strict,
            ],
        )?;
        Ok(())
    }
}

/// Decodes `queen.ack` rows into outcomes for `items` (in order).
pub(crate) fn outcomes(
    c: columns::ack,
    items: &[&AckItem],
    rows: &[queen_wire::Row],
) -> Result<Vec<AckOutcome>, EngineError> {
    let mut out: Vec<Option<AckOutcome>> = vec![None; items.len()];
    for r in rows {
        let idx: i32 = r.get(c.idx)?;
        let (i, item) = usize::try_from(idx - 1)
            .ok()
            .and_then(|i| Some((i, items.get(i)?)))
            .ok_or_else(|| {
                EngineError::Internal(format!("queen.ack answered index {idx} out of range"))
            })?;
        out[i] = Some(AckOutcome {
            index: i,
            transaction_id: item.transaction_id.clone(),
            success: r.get(c.success)?,
            error: r.get(c.error)?,
            queue: r.get(c.queue_name)?,
            partition: r.get(c.partition_name)?,
            lease_released: r.get(c.lease_released)?,
            dlq: r.get(c.dlq)?,
            noop: r.get(c.noop)?,
        });
    }
    out.into_iter()
        .enumerate()
        .map(|(i, o)| {
            o.ok_or_else(|| {
                EngineError::Internal(format!("queen.ack answered nothing for item {i}"))
            })
        })
        .collect()
}

/// Runs one batch of ack jobs as one statement. When the statement fails for anything but an
/// unreachable database, each job is run again alone, so only the offending request gets the
/// error (fault isolation).
pub(crate) async fn run_batch(inner: Arc<Inner>, jobs: Vec<AckJob>) {
    let all: Vec<&AckItem> = jobs.iter().flat_map(|j| j.items.iter()).collect();
    let result = run_items(&inner, &all).await;
    if jobs.len() > 1 && result.as_ref().is_err_and(|e| !e.is_unavailable()) {
        for job in jobs {
            let items: Vec<&AckItem> = job.items.iter().collect();
            let _ = job.reply.send(run_items(&inner, &items).await);
        }
        return;
    }
    let mut offset = 0;
    for job in jobs {
        let n = job.items.len();
        let reply = match &result {
            Ok(outs) => Ok(outs[offset..offset + n]
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, mut o)| {
                    o.index = i;
                    o
                })
                .collect()),
            Err(e) => Err(e.clone()),
        };
        offset += n;
        let _ = job.reply.send(reply);
    }
}

/// One `queen.ack` statement for `items`; wakes the pops a nack makes messages available to.
async fn run_items(inner: &Inner, items: &[&AckItem]) -> Result<Vec<AckOutcome>, EngineError> {
    let mut p = Pipeline::new();
    AckArrays::new(items.iter().copied()).add_to(&mut p, inner, false)?;
    let seg = inner.pool().send_segment(p).await?;
    let rows = seg.into_iter().next().map(|r| r.rows).unwrap_or_default();
    let outs = outcomes(inner.st()?.cols.ack, items, &rows)?;
    // A nack (or a released lease) makes messages available again: wake waiting pops.
    let mut woken: Vec<&str> = Vec::new();
    for (o, it) in outs.iter().zip(items) {
        if o.lease_released && o.success && it.status != crate::model::AckStatus::Completed {
            if let Some(q) = o.queue.as_deref() {
                if !woken.contains(&q) {
                    woken.push(q);
                }
            }
        }
    }
    for q in woken {
        inner.wake(q, Wake::Everyone);
    }
    inner
        .metrics()
        .acked(outs.iter().filter(|o| o.success).count());
    Ok(outs)
}
