//! Push: the state machine of one request and the batch runner that folds concurrent requests
//! into one `queen.push` call.
//!
//! ```text
//!   Resolve ──(all partitions cached)──────────────► Insert ──► Done
//!      │                                               ▲  │
//!      └──(some unknown)──► Ensure ─────────────────────┘  └─(stale cache)─► Resolve
//! ```
//!
//! Round trips: one when every partition is cached (the shared `Insert`), two on first sight
//! (`Ensure`, then `Insert`). A stale cache entry — a partition that vanished (its queue was
//! deleted and re-created), or a queue that started encrypting on another server — is forgotten
//! and resolved again: one more `Ensure`, at most three in all.
//!
//! Batches in flight together touch disjoint partitions (the batcher's keys), so statements
//! never queue on each other's partition-counter locks (held until commit to keep positions in
//! commit order); pushes that share partitions go in one statement after another, each taking
//! every such push waiting.
//!
//! A request is atomic: its items travel in one statement (one transaction), together with the
//! other requests of the same batch. Validation happens before, so a failure of the statement is
//! a systemic one (database down) and is reported to every request of the batch.

use std::collections::HashMap;
use std::sync::Arc;

use queen_wire::{Client, Pipeline};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::batch::Job;
use crate::cache::Target;
use crate::engine::Inner;
use crate::error::{EngineError, raised};
use crate::limits::{PRODUCER_MAX, PUSH_ITEMS_MAX, check_name, check_text, check_transaction_id};
use crate::model::{PushItem, PushOutcome, PushStatus};
use crate::payload::Body;
use crate::txid::TxId;
use crate::wakeup::Wake;

/// One item ready for the database.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub queue: Arc<str>,
    pub target: Target,
    pub id: Uuid,
    pub transaction_id: Arc<str>,
    pub trace_id: Option<Uuid>,
    pub body: Body,
    pub producer_sub: Option<Arc<str>>,
}

/// A refusal of `queen.push` that concerns one request of a coalesced statement, not the
/// others folded with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueRule<'a> {
    /// The push would exceed this queue's `maxSize`.
    Full(&'a str),
    /// A plaintext payload for this queue, which encrypts now (configured on another server).
    Plaintext(&'a str),
    /// A partition vanished: its queue was deleted (maybe re-created); the cache is stale.
    PartitionGone,
}

pub(crate) fn queue_rule(e: &EngineError) -> Option<QueueRule<'_>> {
    let EngineError::Db(w) = e else { return None };
    let db = w.as_db()?;
    let queue = db.detail.as_deref().unwrap_or_default();
    match db.code.as_str() {
        raised::QUEUE_FULL => Some(QueueRule::Full(queue)),
        raised::PLAINTEXT_FOR_ENCRYPTED_QUEUE => Some(QueueRule::Plaintext(queue)),
        raised::PARTITION_GONE => Some(QueueRule::PartitionGone),
        _ => None,
    }
}

/// What the database did with one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowResult {
    Inserted(Uuid),
    Duplicate(Uuid),
}

/// A request's rows, queued for the batch runner.
#[derive(Debug)]
pub(crate) struct PushJob {
    pub rows: Vec<Row>,
    /// The partitions of the rows, each once: their counters stay locked until the batch
    /// commits.
    pub partitions: Vec<i64>,
    pub reply: oneshot::Sender<Result<Vec<RowResult>, EngineError>>,
}

impl PushJob {
    pub(crate) fn new(
        rows: Vec<Row>,
        reply: oneshot::Sender<Result<Vec<RowResult>, EngineError>>,
    ) -> PushJob {
        let mut partitions: Vec<i64> = rows.iter().map(|r| r.target.num).collect();
        partitions.sort_unstable();
        partitions.dedup();
        PushJob {
            rows,
            partitions,
            reply,
        }
    }
}

impl Job for PushJob {
    fn items(&self) -> usize {
        self.rows.len()
    }

    fn keys(&self) -> &[i64] {
        &self.partitions
    }
}

enum State {
    Resolve,
    Ensure(Vec<(String, String)>),
    Insert,
    Done,
}

/// Checks what PostgreSQL would refuse before anything is written (or buffered): a record the
/// database refuses could never be replayed from the buffer. Payloads are stored as the JSON
/// text they came as, so any valid JSON is fine (a `\u0000` escape included).
pub(crate) fn validate(items: &[PushItem]) -> Result<(), EngineError> {
    if items.len() > PUSH_ITEMS_MAX {
        return Err(EngineError::Invalid(format!(
            "a push may hold at most {PUSH_ITEMS_MAX} items"
        )));
    }
    for (i, it) in items.iter().enumerate() {
        check_name("queue", &it.queue)
            .and_then(|()| check_name("partition", &it.partition))
            .map_err(|e| EngineError::InvalidName(format!("items[{i}]: {e}")))?;
        match &it.transaction_id {
            Some(t) => check_transaction_id("transactionId", t),
            None => Ok(()),
        }
        .and_then(|()| match &it.producer_sub {
            Some(s) => check_text("producer", s, PRODUCER_MAX),
            None => Ok(()),
        })
        .map_err(|e| EngineError::Invalid(format!("items[{i}]: {e}")))?;
    }
    Ok(())
}

/// Checks the `\u` escapes of valid JSON text against what PostgreSQL stores, in `jsonb` and in
/// `text` alike: no `\u0000`, and UTF-16 surrogates only as high-low pairs. The error names
/// what was found.
pub fn check_json_escapes(b: &[u8]) -> Result<(), &'static str> {
    if !b.contains(&b'\\') {
        return Ok(());
    }
    let unit = |at: usize| -> Option<u16> {
        if b.get(at) != Some(&b'\\') || b.get(at + 1) != Some(&b'u') {
            return None;
        }
        let hex = std::str::from_utf8(b.get(at + 2..at + 6)?).ok()?;
        u16::from_str_radix(hex, 16).ok()
    };
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(u) = unit(i) else {
            // Any other escape is two bytes (`\\`, `\"`, `\n`, ...).
            i += 2;
            continue;
        };
        match u {
            0 => return Err("\\u0000 (PostgreSQL cannot store it)"),
            0xD800..=0xDBFF if unit(i + 6).is_some_and(|l| (0xDC00..=0xDFFF).contains(&l)) => {
                i += 12;
            }
            0xD800..=0xDFFF => return Err("an unpaired UTF-16 surrogate escape"),
            _ => i += 6,
        }
    }
    Ok(())
}

/// Runs one push request through the state machine. The items must have passed [`validate`]
/// (the engine's push does it once; buffered records were validated before they were written).
pub(crate) async fn push(
    inner: &Inner,
    items: &[PushItem],
) -> Result<Vec<PushOutcome>, EngineError> {
    run(inner, PushOp::new(items, None)).await
}

/// Pushes items whose message ids were fixed before (a timer's, promised when it was
/// scheduled), one per item; checks the items first.
pub(crate) async fn push_with_ids(
    inner: &Inner,
    items: &[PushItem],
    ids: &[Uuid],
) -> Result<Vec<PushOutcome>, EngineError> {
    validate(items)?;
    if ids.len() != items.len() {
        return Err(EngineError::Internal(format!(
            "{} message ids for {} items",
            ids.len(),
            items.len()
        )));
    }
    run(inner, PushOp::new(items, Some(ids))).await
}

async fn run(inner: &Inner, mut op: PushOp<'_>) -> Result<Vec<PushOutcome>, EngineError> {
    let mut state = State::Resolve;
    let mut ensures = 0;
    loop {
        state = match state {
            State::Resolve => match op.resolve(inner) {
                missing if missing.is_empty() => State::Insert,
                missing => State::Ensure(missing),
            },
            State::Ensure(missing) => {
                ensures += 1;
                if ensures > 3 {
                    return Err(EngineError::Conflict(
                        "the push's partitions keep disappearing (their queue is being deleted)"
                            .into(),
                    ));
                }
                inner.ensure_partitions(&missing).await?;
                State::Resolve
            }
            State::Insert => match op.insert(inner).await {
                Ok(results) => {
                    op.apply(results);
                    State::Done
                }
                Err(e) => match queue_rule(&e) {
                    Some(QueueRule::Full(q)) => return Err(EngineError::QueueFull(q.to_owned())),
                    // The queue encrypts now (configured on another server), or a partition
                    // vanished (its queue was deleted and maybe re-created): refresh what the
                    // cache says (through Ensure) and try again.
                    Some(rule) => {
                        let queues = match rule {
                            QueueRule::Plaintext(q) => vec![q.to_owned()],
                            _ => op.queue_names(),
                        };
                        for q in &queues {
                            inner.partitions().invalidate_queue(q);
                            op.forget_queue(q);
                        }
                        State::Resolve
                    }
                    None => return Err(e),
                },
            },
            State::Done => return Ok(op.outcomes()),
        };
    }
}

/// The request's data as it moves through the states.
struct PushOp<'a> {
    items: &'a [PushItem],
    /// Generated ids and transactionIds, per item.
    ids: Vec<Uuid>,
    txids: Vec<Arc<str>>,
    /// Queue names and payloads, shared with the batch rows.
    queues: Vec<Arc<str>>,
    payloads: Vec<Arc<str>>,
    /// Index of the first item with the same (queue, partition, transactionId), per item.
    first: Vec<usize>,
    targets: Vec<Option<Target>>,
    results: Vec<Option<RowResult>>,
}

impl<'a> PushOp<'a> {
    /// The request's data; message ids are `ids` when given (one per item), else generated.
    fn new(items: &'a [PushItem], ids: Option<&[Uuid]>) -> PushOp<'a> {
        let n = items.len();
        let txids: Vec<Arc<str>> = items
            .iter()
            .map(|it| match &it.transaction_id {
                Some(t) => Arc::from(t.as_str()),
                None => Arc::from(Uuid::now_v7().to_string()),
            })
            .collect();
        let mut seen: HashMap<(&str, &str, &str), usize> = HashMap::with_capacity(n);
        let first = items
            .iter()
            .zip(&txids)
            .enumerate()
            .map(|(i, (it, tx))| *seen.entry((&it.queue, &it.partition, tx)).or_insert(i))
            .collect();
        let mut queues: Vec<Arc<str>> = Vec::with_capacity(n);
        for it in items {
            let shared = queues.last().filter(|q| ***q == *it.queue).cloned();
            queues.push(shared.unwrap_or_else(|| Arc::from(it.queue.as_str())));
        }
        let payloads = items.iter().map(|it| it.payload.clone()).collect();
        PushOp {
            ids: match ids {
                Some(ids) => ids.to_vec(),
                None => (0..n).map(|_| Uuid::now_v7()).collect(),
            },
            txids,
            queues,
            payloads,
            first,
            targets: vec![None; n],
            results: vec![None; n],
            items,
        }
    }

    /// Fills partitions from the cache; returns the (queue, partition) pairs still unknown.
    fn resolve(&mut self, inner: &Inner) -> Vec<(String, String)> {
        let mut missing = Vec::new();
        let mut prev: Option<(&str, &str, Option<Target>)> = None;
        for (it, pid) in self.items.iter().zip(self.targets.iter_mut()) {
            if pid.is_none() {
                // Consecutive items usually share their partition: one lookup for the run.
                *pid = match prev {
                    Some((q, p, id)) if q == it.queue && p == it.partition => id,
                    _ => inner.partitions().get(&it.queue, &it.partition),
                };
                prev = Some((&it.queue, &it.partition, *pid));
                if pid.is_none() {
                    let key = (it.queue.clone(), it.partition.clone());
                    if !missing.contains(&key) {
                        missing.push(key);
                    }
                }
            }
        }
        missing
    }

    /// Sends the rows (first occurrences only) to the batcher.
    async fn insert(&self, inner: &Inner) -> Result<Vec<(usize, RowResult)>, EngineError> {
        let mut idx = Vec::new();
        let mut rows = Vec::new();
        for i in 0..self.items.len() {
            if self.first[i] != i {
                continue;
            }
            let it = &self.items[i];
            let Some(target) = self.targets[i] else {
                continue;
            };
            idx.push(i);
            rows.push(Row {
                queue: self.queues[i].clone(),
                target,
                id: self.ids[i],
                transaction_id: self.txids[i].clone(),
                trace_id: it.trace_id,
                body: Body::for_target(inner, &self.queues[i], target, &self.payloads[i])?,
                producer_sub: it.producer_sub.as_deref().map(Arc::from),
            });
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        inner
            .push_batcher()
            .submit(PushJob::new(rows, reply))
            .map_err(|_| EngineError::ShuttingDown)?;
        let results = rx.await.map_err(|_| EngineError::ShuttingDown)??;
        Ok(idx.into_iter().zip(results).collect())
    }

    fn apply(&mut self, results: Vec<(usize, RowResult)>) {
        for (i, r) in results {
            self.results[i] = Some(r);
        }
    }

    /// Drops the resolved partitions of `queue` (they are ensured again, with its settings).
    fn forget_queue(&mut self, queue: &str) {
        for (it, pid) in self.items.iter().zip(self.targets.iter_mut()) {
            if it.queue == queue {
                *pid = None;
            }
        }
    }

    /// The queues of the request, each once.
    fn queue_names(&self) -> Vec<String> {
        let mut qs: Vec<String> = Vec::new();
        for it in self.items {
            if !qs.contains(&it.queue) {
                qs.push(it.queue.clone());
            }
        }
        qs
    }

    fn outcomes(self) -> Vec<PushOutcome> {
        let PushOp {
            items,
            txids,
            first,
            targets,
            results,
            ..
        } = self;
        items
            .iter()
            .zip(txids)
            .enumerate()
            .map(|(i, (it, transaction_id))| {
                let (status, message_id) = match results[first[i]] {
                    Some(RowResult::Inserted(id)) if first[i] == i => {
                        (PushStatus::Queued, Some(id))
                    }
                    Some(RowResult::Inserted(id) | RowResult::Duplicate(id)) => {
                        (PushStatus::Duplicate, Some(id))
                    }
                    None => (PushStatus::Duplicate, None),
                };
                PushOutcome {
                    index: i,
                    status,
                    transaction_id: transaction_id.to_string(),
                    message_id,
                    partition_id: targets[i].map(|t| t.id),
                    queue: it.queue.clone(),
                    partition: it.partition.clone(),
                    trace_id: it.trace_id,
                }
            })
            .collect()
    }
}

/// Column arrays of `queen.push`: the partitions touched (ascending: the lock order) with their
/// item counts, and per item its partition, its rank there and its columns.
pub(crate) struct PushArrays {
    parts: Vec<i64>,
    counts: Vec<i32>,
    parts_sealed: Vec<bool>,
    pnums: Vec<i64>,
    ks: Vec<i32>,
    ids: Vec<Uuid>,
    txuuids: Vec<Option<Uuid>>,
    txtexts: Vec<Option<Arc<str>>>,
    trace_ids: Vec<Option<Uuid>>,
    payloads: Vec<Option<Arc<str>>>,
    sealed: Vec<Option<Vec<u8>>>,
    subs: Vec<Option<Arc<str>>>,
}

impl PushArrays {
    /// The arrays of rows that hold no (partition, transactionId) twice.
    pub(crate) fn new<'a>(rows: impl IntoIterator<Item = &'a Row>) -> PushArrays {
        let rows = rows.into_iter();
        let n = rows.size_hint().0;
        let mut a = PushArrays {
            parts: Vec::new(),
            counts: Vec::new(),
            parts_sealed: Vec::new(),
            pnums: Vec::with_capacity(n),
            ks: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            txuuids: Vec::with_capacity(n),
            txtexts: Vec::with_capacity(n),
            trace_ids: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            sealed: Vec::with_capacity(n),
            subs: Vec::with_capacity(n),
        };
        // Per partition: items so far and whether all of them are sealed.
        let mut per_part: HashMap<i64, (i32, bool)> = HashMap::new();
        for r in rows {
            let sealed = matches!(r.body, Body::Sealed(_));
            let e = per_part.entry(r.target.num).or_insert((0, true));
            e.0 += 1;
            e.1 &= sealed;
            a.pnums.push(r.target.num);
            a.ks.push(e.0);
            a.ids.push(r.id);
            let tx = TxId::of(&r.transaction_id);
            a.txuuids.push(tx.uuid());
            a.txtexts
                .push(tx.text().is_some().then(|| r.transaction_id.clone()));
            a.trace_ids.push(r.trace_id);
            match &r.body {
                Body::Json(j) => {
                    a.payloads.push(Some(j.clone()));
                    a.sealed.push(None);
                }
                Body::Sealed(b) => {
                    a.payloads.push(None);
                    a.sealed.push(Some(b.clone()));
                }
            }
            a.subs.push(r.producer_sub.clone());
        }
        let mut parts: Vec<(i64, (i32, bool))> = per_part.into_iter().collect();
        parts.sort_unstable_by_key(|(num, _)| *num);
        for (num, (count, sealed)) in parts {
            a.parts.push(num);
            a.counts.push(count);
            a.parts_sealed.push(sealed);
        }
        a
    }

    /// Adds the `queen.push` call to a pipeline's current segment.
    pub(crate) fn add_to(
        &self,
        p: &mut Pipeline,
        inner: &Inner,
        strict: bool,
    ) -> Result<(), EngineError> {
        p.query(
            &inner.st()?.push,
            &[
                &self.parts,
                &self.counts,
                &self.parts_sealed,
                &self.pnums,
                &self.ks,
                &self.ids,
                &self.txuuids,
                &self.txtexts,
                &self.trace_ids,
                &self.payloads,
                &self.sealed,
                &self.subs,
                &strict,
            ],
        )?;
        Ok(())
    }
}

/// Runs one batch of push jobs as one statement. When the statement fails for anything but an
/// unreachable database — a queue rule (maxSize, a plaintext payload for an encrypting queue, a
/// vanished partition) or data the database refuses — the jobs are run again one statement
/// each, so only the offending request gets the error (fault isolation).
pub(crate) async fn run_batch(inner: Arc<Inner>, jobs: Vec<PushJob>) {
    let mut results = run_jobs(&inner, &jobs).await;
    if jobs.len() > 1
        && results
            .iter()
            .any(|r| r.as_ref().is_err_and(|e| !e.is_unavailable()))
    {
        results.clear();
        for job in &jobs {
            results.extend(run_jobs(&inner, std::slice::from_ref(job)).await);
        }
    }
    for (job, result) in jobs.into_iter().zip(results) {
        let _ = job.reply.send(result);
    }
}

/// Runs jobs as one statement; one result per job.
async fn run_jobs(inner: &Inner, jobs: &[PushJob]) -> Vec<Result<Vec<RowResult>, EngineError>> {
    // Within the batch, a (partition, transactionId) seen before is a duplicate of the first.
    let mut first: HashMap<(i64, &str), usize> = HashMap::new();
    let total: usize = jobs.iter().map(|j| j.rows.len()).sum();
    first.reserve(total);
    let mut unique: Vec<&Row> = Vec::new();
    let mut slot: Vec<Vec<Result<usize, usize>>> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut s = Vec::with_capacity(job.rows.len());
        for r in &job.rows {
            match first.get(&(r.target.num, &*r.transaction_id)) {
                Some(&u) => s.push(Err(u)),
                None => {
                    first.insert((r.target.num, &*r.transaction_id), unique.len());
                    s.push(Ok(unique.len()));
                    unique.push(r);
                }
            }
        }
        slot.push(s);
    }
    let arrays = PushArrays::new(unique.iter().copied());
    let result = execute(inner, &arrays, &unique).await;
    if let Ok(results) = &result {
        wake_stored(
            inner,
            results
                .iter()
                .zip(&unique)
                .filter(|(r, _)| matches!(r, RowResult::Inserted(_)))
                .map(|(_, row)| *row),
        );
    }
    slot.into_iter()
        .map(|s| match &result {
            Ok(results) => Ok(s
                .iter()
                .map(|x| match *x {
                    Ok(u) => results[u],
                    Err(u) => match results[u] {
                        RowResult::Inserted(id) | RowResult::Duplicate(id) => {
                            RowResult::Duplicate(id)
                        }
                    },
                })
                .collect()),
            Err(e) => Err(e.clone()),
        })
        .collect()
}

/// Wakes the waiting pops of every queue `stored` (rows just committed) put messages in: per
/// queue, as many as it stored messages.
pub(crate) fn wake_stored<'a>(inner: &Inner, stored: impl IntoIterator<Item = &'a Row>) {
    let mut per_queue: Vec<(&str, usize)> = Vec::new();
    for row in stored {
        match per_queue.iter_mut().find(|(q, _)| *q == &*row.queue) {
            Some((_, n)) => *n += 1,
            None => per_queue.push((&row.queue, 1)),
        }
    }
    for (q, n) in per_queue {
        inner.wake(q, Wake::Messages(n));
    }
}

/// Runs the statement; every row is inserted but those it reports as duplicates.
async fn execute(
    inner: &Inner,
    arrays: &PushArrays,
    rows: &[&Row],
) -> Result<Vec<RowResult>, EngineError> {
    let mut p = Pipeline::new();
    arrays.add_to(&mut p, inner, false)?;
    let answer = inner.pool().send_segment(p).await?;
    let cols = inner.st()?.cols.push;
    let mut results: Vec<RowResult> = rows.iter().map(|r| RowResult::Inserted(r.id)).collect();
    for r in answer
        .into_iter()
        .next()
        .map(|r| r.rows)
        .unwrap_or_default()
    {
        let ord: i32 = r.get(cols.ord)?;
        let id: Uuid = r.get(cols.message_id)?;
        let slot = usize::try_from(ord - 1)
            .ok()
            .and_then(|i| results.get_mut(i))
            .ok_or_else(|| {
                EngineError::Internal(format!("queen.push answered ordinal {ord} out of range"))
            })?;
        *slot = RowResult::Duplicate(id);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_escapes_postgres_cannot_store_are_refused() {
        for ok in [
            r#"{"a":1}"#,
            r#""plain""#,
            r#""\\u0000 is a backslash and text""#,
            r#""\ud83d\ude00""#,
            r#""tab\there \u00e9 \"q\"""#,
            r#"["\\", "\u0041"]"#,
        ] {
            assert_eq!(check_json_escapes(ok.as_bytes()), Ok(()), "{ok}");
        }
        for bad in [
            r#""\u0000""#,
            r#"{"a":"x\u0000y"}"#,
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud83d\u0041""#,
            r#""\\\u0000""#,
        ] {
            assert!(check_json_escapes(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
