//! Transactions: pushes and acks applied atomically (docs/api.md, "Messages").
//!
//! ```text
//!   Resolve ──(unknown partitions)──► Ensure ──► Commit ──► Done
//!      └──────────(all cached)──────────────────────┘
//! ```
//!
//! `Commit` is one round trip: a single pipeline segment (one implicit transaction) holding the
//! lease check, one strict `queen.push` per push operation, one strict `queen.ack` for all
//! acks and the key/value and timer operations riding on it (`queen.kv_apply`,
//! `queen.timers_apply`, docs/kv.md). Any failure
//! — a lease that is not live, a duplicate transactionId, an ack that cannot be applied, a
//! `required` key/value operation that did not apply — raises inside the segment, so nothing
//! is applied. `Ensure` (creating partitions
//! seen for the first time) happens before and is idempotent.

use std::sync::Arc;

use queen_wire::{Client, Pipeline};
use uuid::Uuid;

use crate::ack::{AckArrays, outcomes};
use crate::engine::Inner;
use crate::error::{EngineError, raised};
use crate::kv::json_answer;
use crate::limits::{PUSH_ITEMS_MAX, TX_OPERATIONS_MAX};
use crate::model::Riders;
use crate::model::{AckItem, PushOutcome, PushStatus, TxOperation, TxOutcome, TxResult};
use crate::payload::Body;
use crate::push::{self, PushArrays, Row, validate};

pub(crate) async fn run(
    inner: &Inner,
    ops: Vec<TxOperation>,
    required_leases: Vec<Uuid>,
    riders: &Riders,
) -> Result<TxOutcome, EngineError> {
    let kv = riders.kv.as_ref().filter(|k| !k.is_empty());
    let timers = riders.timers.as_ref().filter(|t| !t.is_empty());
    if ops.len() > TX_OPERATIONS_MAX {
        return Err(EngineError::Invalid(format!(
            "a transaction may hold at most {TX_OPERATIONS_MAX} operations"
        )));
    }
    let pushed: usize = ops
        .iter()
        .map(|op| match op {
            TxOperation::Push(items) => items.len(),
            TxOperation::Ack(_) => 0,
        })
        .sum();
    if pushed > PUSH_ITEMS_MAX {
        return Err(EngineError::Invalid(format!(
            "a transaction may push at most {PUSH_ITEMS_MAX} items"
        )));
    }
    let acked: Vec<AckItem> = ops
        .iter()
        .filter_map(|op| match op {
            TxOperation::Ack(a) => Some(a.clone()),
            TxOperation::Push(_) => None,
        })
        .collect();
    crate::ack::validate(&acked)?;
    // Resolve partitions of every push (Ensure round trip only for unknown ones).
    let mut missing = Vec::new();
    for op in &ops {
        if let TxOperation::Push(items) = op {
            validate(items)?;
            for it in items {
                if inner.partitions().get(&it.queue, &it.partition).is_none() {
                    let key = (it.queue.clone(), it.partition.clone());
                    if !missing.contains(&key) {
                        missing.push(key);
                    }
                }
            }
        }
    }
    if !missing.is_empty() {
        inner.ensure_partitions(&missing).await?;
    }

    let mut p = Pipeline::new();
    if !required_leases.is_empty() {
        p.query(&inner.st()?.require_leases, &[&required_leases])?;
    }
    // A stream cycle's state goes first: its lock serialises the cycles of one partition.
    if let Some(s) = &riders.stream {
        p.query(
            &inner.st()?.stream_state_apply,
            &[&s.query_id, &s.partition_id, &s.ops],
        )?;
    }
    let mut pushes: Vec<Vec<Row>> = Vec::new();
    let mut acks = Vec::new();
    // A transactionId twice in one partition within the transaction is a duplicate, as one
    // already stored is (the database checks those).
    let mut seen: std::collections::HashSet<(i64, &str)> = std::collections::HashSet::new();
    for op in &ops {
        if let TxOperation::Push(items) = op {
            for it in items {
                if let (Some(t), Some(target)) = (
                    &it.transaction_id,
                    inner.partitions().get(&it.queue, &it.partition),
                ) {
                    if !seen.insert((target.num, t)) {
                        return Ok(TxOutcome {
                            success: false,
                            error: Some(format!(
                                "transaction rolled back: duplicate transactionId {t}"
                            )),
                            results: Vec::new(),
                            kv_results: None,
                            kv_failed: None,
                            timer_results: None,
                        });
                    }
                }
            }
        }
    }
    for op in &ops {
        match op {
            TxOperation::Push(items) => {
                let mut rows = Vec::with_capacity(items.len());
                for it in items {
                    let target = inner
                        .partitions()
                        .get(&it.queue, &it.partition)
                        .ok_or_else(|| {
                            EngineError::Conflict(format!(
                                "partition {} vanished (its queue was deleted)",
                                it.partition
                            ))
                        })?;
                    rows.push(Row {
                        queue: Arc::from(it.queue.as_str()),
                        target,
                        id: Uuid::now_v7(),
                        transaction_id: match &it.transaction_id {
                            Some(t) => Arc::from(t.as_str()),
                            None => Arc::from(Uuid::now_v7().to_string()),
                        },
                        trace_id: it.trace_id,
                        body: Body::for_target(inner, &it.queue, target, &it.payload)?,
                        producer_sub: it.producer_sub.as_deref().map(Arc::from),
                    });
                }
                PushArrays::new(&rows).add_to(&mut p, inner, true)?;
                pushes.push(rows);
            }
            TxOperation::Ack(a) => acks.push(a),
        }
    }
    if !acks.is_empty() {
        AckArrays::new(acks.iter().copied()).add_to(&mut p, inner, true)?;
    }
    if let Some(kv) = kv {
        p.query(&inner.st()?.kv, &[&kv.param()])?;
    }
    if let Some(timers) = timers {
        p.query(
            &inner.st()?.timers,
            &[&timers.param(inner.config().cipher.as_ref())],
        )?;
    }
    p.sync();
    let seg = inner
        .pool()
        .send(p)
        .await?
        .into_iter()
        .next()
        .unwrap_or_else(|| Ok(Vec::new()));
    let results = match seg {
        Ok(r) => r,
        Err(e) => {
            if let Some(f) = e.as_db().and_then(crate::kv::failed) {
                return Ok(TxOutcome {
                    success: false,
                    error: Some(format!("transaction rolled back: {f}")),
                    results: Vec::new(),
                    kv_results: None,
                    kv_failed: Some(f),
                    timer_results: None,
                });
            }
            if let Some(db) = e.as_db().filter(|d| d.code.starts_with(raised::CLASS)) {
                if db.code == raised::PLAINTEXT_FOR_ENCRYPTED_QUEUE {
                    // The queue encrypts now (configured elsewhere): the next attempt re-resolves
                    // it and seals its payloads.
                    if let Some(q) = db.detail.as_deref() {
                        inner.partitions().invalidate_queue(q);
                    }
                }
                return Ok(TxOutcome {
                    success: false,
                    error: Some(format!("transaction rolled back: {}", db.message)),
                    results: Vec::new(),
                    kv_results: None,
                    kv_failed: None,
                    timer_results: None,
                });
            }
            return Err(e.into());
        }
    };
    // Results in statement order: [require_leases], [stream state], pushes…, [ack], riders.
    let mut it = results.into_iter();
    if !required_leases.is_empty() {
        it.next();
    }
    if riders.stream.is_some() {
        it.next();
    }
    let mut push_out = Vec::new();
    for rows in &pushes {
        let res = it.next().map(|r| r.rows).unwrap_or_default();
        let mut outs = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            outs.push(PushOutcome {
                index: i,
                status: PushStatus::Queued,
                transaction_id: row.transaction_id.to_string(),
                message_id: Some(row.id),
                partition_id: Some(row.target.id),
                queue: row.queue.to_string(),
                partition: String::new(),
                trace_id: row.trace_id,
            });
        }
        // A strict push answers nothing (a duplicate would have failed the transaction).
        debug_assert!(res.is_empty());
        push_out.push(outs);
    }
    let ack_out = if acks.is_empty() {
        Vec::new()
    } else {
        match it.next() {
            Some(r) => outcomes(inner.st()?.cols.ack, &acks, &r.rows)?,
            None => Vec::new(),
        }
    };
    let st = inner.st()?;
    let kv_results = match kv {
        Some(_) => Some(rider_answer(
            it.next(),
            st.cols.kv.results,
            "queen.kv_apply",
        )?),
        None => None,
    };
    let timer_results = match timers {
        Some(_) => Some(rider_answer(
            it.next(),
            st.cols.timers.results,
            "queen.timers_apply",
        )?),
        None => None,
    };
    // A strict push stores every row (a duplicate fails the transaction).
    push::wake_stored(inner, pushes.iter().flatten());
    // Reassemble in operation order.
    let mut push_out = push_out.into_iter();
    let mut ack_out = ack_out.into_iter();
    let mut results = Vec::with_capacity(ops.len());
    for op in &ops {
        match op {
            TxOperation::Push(items) => {
                let mut outs = push_out.next().unwrap_or_default();
                for (o, it) in outs.iter_mut().zip(items) {
                    o.partition = it.partition.clone();
                }
                results.push(TxResult::Push(outs));
            }
            TxOperation::Ack(_) => {
                if let Some(a) = ack_out.next() {
                    results.push(TxResult::Ack(a));
                }
            }
        }
    }
    Ok(TxOutcome {
        success: true,
        error: None,
        results,
        kv_results,
        kv_failed: None,
        timer_results,
    })
}

/// The results of a rider's statement.
fn rider_answer(
    answer: Option<queen_wire::QueryResult>,
    column: queen_wire::ColumnIndex,
    function: &str,
) -> Result<String, EngineError> {
    json_answer(
        answer.and_then(|r| r.rows.into_iter().next()),
        column,
        function,
    )
}
