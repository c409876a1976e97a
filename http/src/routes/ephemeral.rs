//! Ephemeral queues (docs/ephemeral.md), `/api/v1/ephemeral/…`: push, pop and ack on queues
//! held in this server's memory, and their management (configure, reset, delete, listing,
//! depth). Only `configure` and `delete` reach the database (a queue's declaration); the rest
//! answers from memory, also while the database is down.
//!
//! The family keeps the wire of Queen's clients: one queue per request, payloads echoed byte
//! for byte, an empty pop as `{"queue", "messages": []}` (never 204), per-id ack outcomes in a
//! 200, and its own error codes (`ephemeral_bad_request`, `queue_full`,
//! `ephemeral_unavailable`, and `ephemeral_queue_not_found` from `depth` alone).

use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use queen_engine::ephemeral::{self, AckStatus, EphemeralRefusal, PopRequest};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::app::App;
use crate::body::{self, Resp};
use crate::error::ApiError;
use crate::json_out::Obj;
use crate::query::Query;

fn bad(message: impl Into<String>) -> ApiError {
    EphemeralRefusal::BadRequest(message.into()).into()
}

/// A queue, partition or group name.
fn name(what: &str, v: &str) -> Result<(), ApiError> {
    queen_engine::check_name(what, v).map_err(bad)
}

/// A name that may be left out (absent or empty: None).
fn optional(what: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    let v = v.filter(|v| !v.is_empty());
    if let Some(v) = &v {
        name(what, v)?;
    }
    Ok(v)
}

/// An array of a body holding at most [`ephemeral::ITEMS_MAX`] elements (Queen's code for
/// this family: `400 ephemeral_bad_request`).
fn at_most(what: &str, len: usize) -> Result<(), ApiError> {
    if len > ephemeral::ITEMS_MAX {
        return Err(bad(format!(
            "`{what}` may hold at most {} elements, got {len}",
            ephemeral::ITEMS_MAX
        )));
    }
    Ok(())
}

/// A body of this family: JSON, an object, with the escapes payloads may carry (nothing here
/// reaches the database).
fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    body::json_keeping_escapes(bytes).map_err(|e| bad(e.message))
}

#[derive(Deserialize)]
struct PushMessage<'a> {
    /// Any JSON, `null` included; required.
    #[serde(borrow)]
    payload: &'a RawValue,
}

#[derive(Deserialize)]
struct PushBody<'a> {
    queue: String,
    partition: Option<String>,
    #[serde(borrow)]
    messages: Vec<PushMessage<'a>>,
}

/// The partition a push or pop names, or `Default` (the durable queues' default partition).
fn partition_or_default(p: Option<&str>) -> &str {
    p.filter(|p| !p.is_empty()).unwrap_or("Default")
}

/// A push body, checked: (queue, partition, payloads as JSON text).
pub(crate) fn parse_push(bytes: &[u8]) -> Result<(String, String, Vec<Arc<str>>), ApiError> {
    let b: PushBody<'_> = parse(bytes)?;
    name("queue", &b.queue)?;
    let partition = partition_or_default(b.partition.as_deref());
    name("partition", partition)?;
    at_most("messages", b.messages.len())?;
    let payloads = b
        .messages
        .iter()
        .map(|m| Arc::<str>::from(m.payload.get()))
        .collect();
    Ok((b.queue, partition.to_owned(), payloads))
}

/// `POST /api/v1/ephemeral/push`: `201 {"pushed": n}`, all or nothing.
pub(crate) fn push(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let (queue, partition, payloads) = parse_push(bytes)?;
    let pushed = app.engine.ephemeral().push(&queue, &partition, payloads)?;
    Ok(body::reply(StatusCode::CREATED, &json!({"pushed": pushed})))
}

/// An integer query parameter, clamped into `lo..=hi` (Queen's rule for this family); one that
/// is not an integer is refused.
fn clamped(q: &Query, key: &str, default: u64, lo: u64, hi: u64) -> Result<u64, ApiError> {
    match q.get(key) {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse::<i128>()
            .map(|n| n.clamp(i128::from(lo), i128::from(hi)) as u64)
            .map_err(|_| {
                bad(format!(
                    "query parameter `{key}` must be an integer, got `{v}`"
                ))
            }),
    }
}

/// A pop's query, checked; its wait is at most `max_wait`.
pub(crate) fn parse_pop(q: &Query, max_wait: Duration) -> Result<PopRequest, ApiError> {
    let queue = q.text("queue").ok_or_else(|| bad("`queue` is required"))?;
    name("queue", &queue)?;
    let partition = optional("partition", q.text("partition"))?;
    let group = optional("group", q.text("group"))?;
    let max_wait = ephemeral::TIMEOUT_MAX.min(max_wait);
    Ok(PopRequest {
        partition,
        group,
        batch: clamped(q, "batch", 1, 1, ephemeral::BATCH_MAX as u64)? as usize,
        wait: q.flag("wait", false),
        timeout: Duration::from_millis(clamped(
            q,
            "timeout",
            30_000,
            0,
            max_wait.as_millis() as u64,
        )?),
        auto_ack: q.flag("autoAck", false),
        queue,
    })
}

/// `GET /api/v1/ephemeral/pop?queue&partition&batch&wait&timeout&group&autoAck`.
pub(crate) async fn pop(app: &App, q: &Query) -> Result<Resp, ApiError> {
    let req = parse_pop(q, app.config.max_long_poll)?;
    let e = app.engine.ephemeral();
    let got = e.pop(&req).await?;
    let mut out = Vec::with_capacity(64 + got.iter().map(|d| d.payload.len() + 96).sum::<usize>());
    let mut o = Obj::open(&mut out);
    o.field("queue", &req.queue)
        .objects("messages", &got, |m, d| {
            m.field("id", &e.id(d))
                .field("partition", &*d.partition)
                .field("attempts", &d.attempts)
                .raw("payload", &d.payload);
        });
    o.close();
    Ok(body::raw(StatusCode::OK, "application/json", out.into()))
}

#[derive(Deserialize)]
struct AckOne {
    id: Option<String>,
    status: Option<String>,
    /// Accepted and not kept: this class has no dead-letter queue to record it in.
    #[allow(dead_code)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct AckBody {
    queue: String,
    group: Option<String>,
    acks: Vec<AckOne>,
}

/// The ids and statuses of an ack.
type Acks = Vec<(String, AckStatus)>;

/// An ack body, checked: (queue, group, ids with their statuses).
pub(crate) fn parse_ack(bytes: &[u8]) -> Result<(String, Option<String>, Acks), ApiError> {
    let b: AckBody = parse(bytes)?;
    name("queue", &b.queue)?;
    let group = optional("group", b.group)?;
    at_most("acks", b.acks.len())?;
    let acks = b
        .acks
        .into_iter()
        .enumerate()
        .map(|(i, a)| match a.id {
            Some(id) if !id.is_empty() => Ok((id, ephemeral::ack_status(a.status.as_deref()))),
            _ => Err(bad(format!("acks[{i}] has no `id`"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((b.queue, group, acks))
}

/// `POST /api/v1/ephemeral/ack`: `{"results": [{"id", "outcome"}]}` in order, `outcome` one of
/// `acked`, `redelivered`, `stale`, `unknown`.
pub(crate) fn ack(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let (queue, group, acks) = parse_ack(bytes)?;
    let outcomes = app.engine.ephemeral().ack(&queue, group.as_deref(), &acks);
    let results: Vec<Value> = acks
        .iter()
        .zip(outcomes)
        .map(|((id, _), o)| json!({"id": id, "outcome": o.as_str()}))
        .collect();
    Ok(body::reply(StatusCode::OK, &json!({"results": results})))
}

#[derive(Deserialize)]
struct ConfigureBody {
    queue: String,
    #[serde(default)]
    options: Value,
}

/// A configure body, checked: (queue, options).
pub(crate) fn parse_configure(
    bytes: &[u8],
    limits: &ephemeral::Limits,
) -> Result<(String, ephemeral::Options), ApiError> {
    let b: ConfigureBody = parse(bytes)?;
    name("queue", &b.queue)?;
    let o = ephemeral::parse_options(&b.options, &limits.defaults, limits, false)?;
    Ok((b.queue, o))
}

/// `POST /api/v1/ephemeral/configure`: `201 {"queue", "declared": true, "options"}` with every
/// option in force.
pub(crate) async fn configure(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let (queue, o) = parse_configure(bytes, app.engine.ephemeral().limits())?;
    app.engine.ephemeral_configure(&queue, o).await?;
    Ok(body::reply(
        StatusCode::CREATED,
        &json!({"queue": queue, "declared": true, "options": ephemeral::options_json(&o)}),
    ))
}

#[derive(Deserialize)]
struct QueueBody {
    queue: String,
}

/// `POST /api/v1/ephemeral/reset`: `{"queue", "dropped"}` (0 for a queue that is not there).
pub(crate) fn reset(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let b: QueueBody = parse(bytes)?;
    name("queue", &b.queue)?;
    let dropped = app.engine.ephemeral().reset(&b.queue);
    Ok(body::reply(
        StatusCode::OK,
        &json!({"queue": b.queue, "dropped": dropped}),
    ))
}

/// `DELETE /api/v1/ephemeral/queue/:queue`: `{"queue", "deleted", "declared"}` (a miss is a
/// 200 with `deleted: false`).
pub(crate) async fn delete(app: &App, queue: &str) -> Result<Resp, ApiError> {
    name("queue", queue)?;
    let (deleted, declared) = app.engine.ephemeral_delete(queue).await?;
    Ok(body::reply(
        StatusCode::OK,
        &json!({"queue": queue, "deleted": deleted, "declared": declared}),
    ))
}

fn tier(declared: bool) -> &'static str {
    if declared { "declared" } else { "implicit" }
}

/// `GET /api/v1/ephemeral/queues`: every ephemeral queue of this server, from memory.
pub(crate) fn queues(app: &App) -> Resp {
    let e = app.engine.ephemeral();
    let rows: Vec<Value> = e
        .list()
        .iter()
        .map(|s| {
            json!({
                "queue": &*s.name,
                "tier": tier(s.declared),
                "depth": s.length,
                "bytes": s.bytes,
                "partitions": s.partitions,
                "groups": s.groups,
                "drops": {"bounds": s.drops.bounds, "ttl": s.drops.ttl, "retry": s.drops.retry},
                "options": ephemeral::options_json(&s.options),
            })
        })
        .collect();
    body::reply(
        StatusCode::OK,
        &json!({
            "queues": rows,
            "count": rows.len(),
            "serverBytes": e.bytes(),
            "serverMaxBytes": e.limits().max_bytes,
        }),
    )
}

/// `GET /api/v1/ephemeral/queues/:queue/depth?group`: the shape of the durable depth read,
/// plus bytes, tier and per group what is pending, in flight and skipped (dropped before the
/// group got it). `404 ephemeral_queue_not_found` when there is no such queue.
pub(crate) fn depth(app: &App, queue: &str, q: &Query) -> Result<Resp, ApiError> {
    name("queue", queue)?;
    let group = optional("group", q.text("group"))?;
    let (declared, d) = app
        .engine
        .ephemeral()
        .depth(queue, group.as_deref())
        .ok_or_else(|| ApiError::from(EphemeralRefusal::NotFound(queue.to_owned())))?;
    let pending: u64 = d.partitions.iter().map(|p| p.3).sum();
    let partitions: Vec<Value> = d
        .partitions
        .iter()
        .map(|(p, held, bytes, pending)| {
            json!({"partition": &**p, "pending": pending, "depth": held, "bytes": bytes})
        })
        .collect();
    let groups: Vec<Value> = d
        .groups
        .iter()
        .map(|(g, pending, in_flight, skipped)| {
            // The groupless mode is kept under the empty name.
            let g: Value = if g.is_empty() {
                Value::Null
            } else {
                json!(&**g)
            };
            json!({"group": g, "pending": pending, "inFlight": in_flight, "skipped": skipped})
        })
        .collect();
    Ok(body::reply(
        StatusCode::OK,
        &json!({
            "queue": queue,
            "group": group,
            "tier": tier(declared),
            "pending": pending,
            "partitionsPending": d.partitions.iter().filter(|p| p.3 > 0).count(),
            "depth": d.length,
            "bytes": d.bytes,
            "partitions": partitions,
            "groups": groups,
            "drops": {"bounds": d.drops.bounds, "ttl": d.drops.ttl, "retry": d.drops.retry},
        }),
    ))
}
