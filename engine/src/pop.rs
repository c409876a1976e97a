//! Pop: one `queen.pop` call per request (one round trip), and the long-poll wait around it.
//!
//! ```text
//!   Claim ──(messages)──────────────► Done(Some)
//!     │
//!     └──(nothing)──► Wait? ──(no wait / timed out)──► Done(None)
//!                        └──(woken by a push, or re-check due)──► Claim
//! ```
//!
//! Concurrent any-partition pops of one partition and the same shape (queue, group, batch,
//! lease, autoAck, subscription) are folded into one statement through a batcher: the function
//! then hands each folded request a partition and a lease of its own. Other pops run as their
//! own statement. Either way, one round trip.
//!
//! The database function claims up to `partitions` partitions whose cursor has messages beyond
//! it and no live lease (`FOR UPDATE SKIP LOCKED`, so concurrent pops spread over partitions),
//! reads up to `batch` messages of each in order, and records the lease (or, with autoAck,
//! commits the cursor) in the same transaction.
//!
//! A claim whose payloads this server cannot decrypt (no key, another key) is given back before
//! the error is answered — the lease dropped without counting a failed delivery, an autoAck
//! cursor moved back — so a misconfigured server neither loses messages nor walks them to the
//! dead-letter queue.
//!
//! Cancel-safety: dropping a waiting pop only drops its wake-up registration. Dropping it while
//! the claim is in flight may leave a lease that nobody will ack; it expires like any abandoned
//! lease (and counts as a failed delivery), so nothing is lost. Folded pops are claimed (and
//! given back) by the batcher's task, which callers cannot cancel.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::sync::Arc;

use queen_wire::{Client, Pipeline, Timestamp};
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use crate::batch::Job;
use crate::engine::Inner;
use crate::error::EngineError;
use crate::limits::{NAME_MAX, check_name, check_text};
use crate::model::{Message, PopRequest, PopResult, QUEUE_MODE, Subscription};
use crate::statements::columns;

enum State {
    /// One `queen.pop` round trip.
    Claim,
    /// Parked until woken, the next re-check, or the long poll's end.
    Wait,
    Done(Option<PopResult>),
}

/// Pops once, or waits up to `wait` for messages.
pub(crate) async fn pop(
    inner: &Inner,
    req: &PopRequest,
    wait: Option<Duration>,
) -> Result<Option<PopResult>, EngineError> {
    validate(req)?;
    let Some(wait) = wait else {
        // Nothing to wait for: one claim, and no wake-up signal to hold.
        return claim(inner, req).await;
    };
    let deadline = Instant::now() + wait;
    let signal = inner.hub().signal(&req.queue);
    // Pops of any partition wait with their group's: a push wakes as many of those as it stored
    // messages. Pops of one partition wait on the queue's, which every push wakes.
    let group = req
        .partition
        .is_none()
        .then(|| signal.group(&req.consumer_group));
    let notify = group.as_ref().map_or(&signal.notify, |g| &g.notify);
    let mut state = State::Claim;
    loop {
        // Registered before the claim, so a push that commits in between is not missed.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        state = match state {
            State::Claim => match claim(inner, req).await? {
                Some(r) => State::Done(Some(r)),
                None => State::Wait,
            },
            State::Wait => {
                let now = Instant::now();
                if now >= deadline {
                    State::Done(None)
                } else {
                    // Time-based conditions (delays, windows, expiring leases) are not signalled:
                    // re-check at least this often.
                    let recheck = (deadline - now).min(inner.config().long_poll_recheck);
                    signal.waiting.fetch_add(1, Ordering::Relaxed);
                    let _parked = Parked(&signal.waiting);
                    let _ = tokio::time::timeout(recheck, notified).await;
                    State::Claim
                }
            }
            State::Done(r) => return Ok(r),
        };
    }
}

/// Counts a parked pop for as long as it is parked (also when the caller goes away).
struct Parked<'a>(&'a AtomicUsize);

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn validate(req: &PopRequest) -> Result<(), EngineError> {
    check_name("queue", &req.queue).map_err(EngineError::InvalidName)?;
    if let Some(p) = &req.partition {
        check_name("partition", p).map_err(EngineError::InvalidName)?;
    }
    check_name("consumer group", &req.consumer_group).map_err(EngineError::Invalid)?;
    if let Some(w) = &req.worker_id {
        check_text("workerId", w, NAME_MAX).map_err(EngineError::Invalid)?;
    }
    if req.batch == 0 || req.partitions == 0 {
        return Err(EngineError::Invalid(
            "batch and partitions must be at least 1".into(),
        ));
    }
    Ok(())
}

/// The parameters a group of folded pops must share (everything but the lease and the worker).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    queue: String,
    group: String,
    batch: u32,
    lease_seconds: Option<u32>,
    auto_ack: bool,
    subscription: Option<Subscription>,
}

impl Shape {
    fn of(req: &PopRequest) -> Shape {
        Shape {
            queue: req.queue.clone(),
            group: req.consumer_group.clone(),
            batch: req.batch,
            lease_seconds: req.lease_seconds,
            auto_ack: req.auto_ack,
            subscription: req.subscription,
        }
    }
}

/// A single-partition, any-partition pop waiting to be folded with others of its shape.
#[derive(Debug)]
pub(crate) struct PopJob {
    req: PopRequest,
    lease_id: Uuid,
    reply: oneshot::Sender<Result<Claimed, EngineError>>,
}

/// What one claim statement gave a request.
#[derive(Debug)]
pub(crate) struct Claimed {
    result: Option<PopResult>,
    /// Partitions with messages that were skipped because the group has no cursor there yet.
    missing_cursors: Vec<Uuid>,
}

impl Job for PopJob {
    fn items(&self) -> usize {
        1
    }
}

/// One claim. A named group's first pop on this server records the group's subscription
/// (`queen.ensure_group`, a round trip of its own, before the claim); a claim that met
/// partitions without the group's cursor has them created, and claims once more if it got
/// nothing — or, if it did, creates them in the background for the next pops.
async fn claim(inner: &Inner, req: &PopRequest) -> Result<Option<PopResult>, EngineError> {
    if req.consumer_group != QUEUE_MODE && !inner.groups().ensured(&req.queue, &req.consumer_group)
    {
        ensure_group(inner, req, &[]).await?;
        inner.groups().insert(&req.queue, &req.consumer_group);
    }
    let c = claim_once(inner, req).await?;
    if c.missing_cursors.is_empty() {
        return Ok(c.result);
    }
    if c.result.is_some() {
        let (pool, st, req) = (inner.pool().clone(), inner.st()?.clone(), req.clone());
        tokio::spawn(async move {
            let mut p = Pipeline::new();
            let ids = c.missing_cursors;
            if let Err(e) = add_ensure_group(&mut p, &st, &req, &ids) {
                tracing::debug!(error = %e, "cannot create the group's cursors");
            } else if let Err(e) = pool.send_segment(p).await {
                tracing::debug!(error = %e, "cannot create the group's cursors");
            }
        });
        return Ok(c.result);
    }
    ensure_group(inner, req, &c.missing_cursors).await?;
    Ok(claim_once(inner, req).await?.result)
}

async fn ensure_group(
    inner: &Inner,
    req: &PopRequest,
    partitions: &[Uuid],
) -> Result<(), EngineError> {
    let mut p = Pipeline::new();
    add_ensure_group(&mut p, inner.st()?, req, partitions)?;
    inner.pool().send_segment(p).await?;
    Ok(())
}

/// One claim statement: one round trip. Any-partition pops of one partition are folded with
/// concurrent pops of the same shape into one statement that gives each its own partition and
/// lease.
async fn claim_once(inner: &Inner, req: &PopRequest) -> Result<Claimed, EngineError> {
    let lease_id = Uuid::now_v7();
    if req.partition.is_none() && req.partitions == 1 {
        let (reply, rx) = oneshot::channel();
        inner
            .pop_batcher()
            .submit(PopJob {
                req: req.clone(),
                lease_id,
                reply,
            })
            .map_err(|_| EngineError::ShuttingDown)?;
        return rx.await.map_err(|_| EngineError::ShuttingDown)?;
    }
    let mut p = Pipeline::new();
    add_pop(
        &mut p,
        inner,
        req,
        &[lease_id],
        &[req.worker_id.as_deref()],
        false,
    )?;
    let rows = inner
        .pool()
        .send_segment(p)
        .await?
        .into_iter()
        .next()
        .map(|r| r.rows)
        .unwrap_or_default();
    Ok(Claimed {
        missing_cursors: missing_cursors(inner.st()?.cols.pop, &rows),
        result: result_of(inner, req, lease_id, rows.iter().collect()).await?,
    })
}

/// The rows `queen.pop` adds for partitions it skipped for want of a cursor (slot -1).
fn is_missing_marker(c: columns::pop, r: &queen_wire::Row) -> bool {
    r.get::<i32>(c.slot).is_ok_and(|s| s == -1)
}

/// The partitions of the missing-cursor rows.
fn missing_cursors(c: columns::pop, rows: &[queen_wire::Row]) -> Vec<Uuid> {
    rows.iter()
        .filter(|r| is_missing_marker(c, r))
        .filter_map(|r| r.get::<Uuid>(c.partition_id).ok())
        .collect()
}

/// Adds a `queen.pop` call (one segment) to a pipeline.
fn add_pop(
    p: &mut Pipeline,
    inner: &Inner,
    req: &PopRequest,
    leases: &[Uuid],
    workers: &[Option<&str>],
    split: bool,
) -> Result<(), EngineError> {
    let batch = i32::try_from(req.batch).unwrap_or(i32::MAX);
    let partitions = i32::try_from(req.partitions).unwrap_or(i32::MAX);
    let lease_seconds = req
        .lease_seconds
        .map(|s| i32::try_from(s).unwrap_or(i32::MAX));
    let leases = leases.to_vec();
    let workers: Vec<Option<&str>> = workers.to_vec();
    p.query(
        &inner.st()?.pop,
        &[
            &req.queue.as_str(),
            &req.partition.as_deref(),
            &req.consumer_group.as_str(),
            &batch,
            &partitions,
            &leases,
            &lease_seconds,
            &req.auto_ack,
            &workers,
            &split,
        ],
    )?;
    p.sync();
    Ok(())
}

/// Adds `queen.ensure_group` (one segment: its own transaction) to a pipeline: the group's
/// subscription and its cursors on `partitions` (see `sql/functions/pop.sql`).
fn add_ensure_group(
    p: &mut Pipeline,
    st: &crate::statements::Statements,
    req: &PopRequest,
    partitions: &[Uuid],
) -> Result<(), EngineError> {
    let (mode, from) = match req.subscription {
        None => (None, None),
        Some(Subscription::All) => (Some("all"), None),
        Some(Subscription::New) => (Some("new"), None),
        Some(Subscription::From(ts)) => (Some("timestamp"), Some(ts)),
    };
    let partitions = partitions.to_vec();
    p.query(
        &st.ensure_group,
        &[
            &req.queue.as_str(),
            &req.consumer_group.as_str(),
            &mode,
            &from,
            &partitions,
        ],
    )?;
    p.sync();
    Ok(())
}

/// Runs folded pops: one statement (segment) per shape, all in one pipeline.
pub(crate) async fn run_batch(inner: Arc<Inner>, jobs: Vec<PopJob>) {
    let mut shapes: Vec<(Shape, Vec<PopJob>)> = Vec::new();
    for job in jobs {
        let shape = Shape::of(&job.req);
        match shapes.iter_mut().find(|(s, _)| *s == shape) {
            Some((_, v)) => v.push(job),
            None => shapes.push((shape, vec![job])),
        }
    }
    inner
        .metrics()
        .pops_folded(shapes.iter().map(|(_, j)| j.len()).sum(), shapes.len());
    let mut p = Pipeline::new();
    let mut built: Result<(), EngineError> = Ok(());
    for (_, jobs) in &shapes {
        let leases: Vec<Uuid> = jobs.iter().map(|j| j.lease_id).collect();
        let workers: Vec<Option<&str>> = jobs.iter().map(|j| j.req.worker_id.as_deref()).collect();
        if let Err(e) = add_pop(&mut p, &inner, &jobs[0].req, &leases, &workers, true) {
            built = Err(e);
            break;
        }
    }
    let segments = match built {
        Ok(()) => inner.pool().send(p).await.map_err(EngineError::from),
        Err(e) => Err(e),
    };
    match segments {
        Err(e) => {
            for job in shapes.into_iter().flat_map(|(_, j)| j) {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
        Ok(segments) => {
            for ((_, jobs), seg) in shapes.into_iter().zip(segments) {
                let rows = match seg {
                    Ok(mut r) => r.pop().map(|r| r.rows).unwrap_or_default(),
                    Err(e) => {
                        let e = EngineError::from(e);
                        for job in jobs {
                            let _ = job.reply.send(Err(e.clone()));
                        }
                        continue;
                    }
                };
                let cols = match inner.st() {
                    Ok(st) => st.cols.pop,
                    Err(e) => {
                        for job in jobs {
                            let _ = job.reply.send(Err(e.clone()));
                        }
                        continue;
                    }
                };
                let missing = missing_cursors(cols, &rows);
                for (k, job) in jobs.into_iter().enumerate() {
                    let slot = i32::try_from(k + 1).unwrap_or(i32::MAX);
                    let mine: Vec<&queen_wire::Row> = rows
                        .iter()
                        .filter(|r| r.get::<i32>(cols.slot).is_ok_and(|s| s == slot))
                        .collect();
                    let out = result_of(&inner, &job.req, job.lease_id, mine)
                        .await
                        .map(|result| Claimed {
                            result,
                            missing_cursors: missing.clone(),
                        });
                    let _ = job.reply.send(out);
                }
            }
        }
    }
}

/// Decodes a pop's rows. When a payload cannot be decrypted, gives the claim back first (see
/// [`give_back`]) and answers the error.
async fn result_of(
    inner: &Inner,
    req: &PopRequest,
    lease_id: Uuid,
    mut rows: Vec<&queen_wire::Row>,
) -> Result<Option<PopResult>, EngineError> {
    let c = inner.st()?.cols.pop;
    rows.retain(|r| !is_missing_marker(c, r));
    if rows.is_empty() {
        return Ok(None);
    }
    match decode(inner, c, &rows) {
        Ok((messages, expires)) => {
            let mut claimed: Vec<Uuid> = Vec::new();
            for m in &messages {
                if !claimed.contains(&m.partition_id) {
                    claimed.push(m.partition_id);
                }
            }
            inner.metrics().popped(messages.len());
            Ok(Some(PopResult {
                queue: req.queue.clone(),
                lease_id: (!req.auto_ack).then_some(lease_id),
                lease_expires_at: expires,
                consumer_group: req.consumer_group.clone(),
                partitions_claimed: claimed.len(),
                messages,
            }))
        }
        Err(e @ EngineError::Decrypt(_)) => {
            give_back(inner, c, req, lease_id, &rows).await;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Hands a claim back when its messages cannot be handed out (a payload this server cannot
/// decrypt): the lease is dropped without counting a failed delivery, or an autoAck pop's
/// cursor moves back, so the messages stay for a server with the right key. Failing that, a
/// lease expires as usual (an autoAck claim stays consumed); the failure is logged.
async fn give_back(
    inner: &Inner,
    c: columns::pop,
    req: &PopRequest,
    lease_id: Uuid,
    rows: &[&queen_wire::Row],
) {
    let result = async {
        // Per claimed partition: first and last position taken, and how many messages.
        let (mut partitions, mut first, mut last) = (Vec::<Uuid>::new(), Vec::new(), Vec::new());
        let mut counts: Vec<i32> = Vec::new();
        for r in rows {
            let (partition, position): (Uuid, i64) = (r.get(c.partition_id)?, r.get(c.pos)?);
            match partitions.iter().position(|p| *p == partition) {
                Some(i) => {
                    last[i] = position;
                    counts[i] += 1;
                }
                None => {
                    partitions.push(partition);
                    first.push(position);
                    last.push(position);
                    counts.push(1);
                }
            }
        }
        inner
            .pool()
            .query(
                &inner.st()?.unpop,
                &[
                    &req.consumer_group.as_str(),
                    &lease_id,
                    &partitions,
                    &first,
                    &last,
                    &counts,
                    &req.auto_ack,
                ],
            )
            .await?;
        Ok::<(), EngineError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, queue = %req.queue, "could not give back an undecryptable pop");
    }
}

/// The messages of a pop's rows and the lease expiry.
fn decode(
    inner: &Inner,
    c: columns::pop,
    rows: &[&queen_wire::Row],
) -> Result<(Vec<Message>, Option<Timestamp>), EngineError> {
    let mut messages = Vec::with_capacity(rows.len());
    let mut expires: Option<Timestamp> = None;
    for r in rows {
        expires = r.get(c.lease_expires_at)?;
        let payload = crate::payload::stored(inner, r, c.payload, c.sealed)?
            .unwrap_or_else(|| "null".to_owned());
        messages.push(Message {
            partition_id: r.get(c.partition_id)?,
            partition: r.get(c.partition_name)?,
            position: r.get(c.pos)?,
            id: r.get(c.message_id)?,
            transaction_id: r.get(c.transaction_id)?,
            trace_id: r.get(c.trace_id)?,
            payload,
            producer_sub: r.get(c.producer_sub)?,
            created_at: r.get(c.created_at)?,
            retry_count: r.get(c.retry_count)?,
            priority: r.get(c.queue_priority)?,
        });
    }
    Ok((messages, expires))
}
