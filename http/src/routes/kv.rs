//! The key/value store, its locks, and timers (docs/kv.md): `POST /api/v1/kv`, `POST
//! /api/v1/locks`, `POST /api/v1/timers`. Their bodies are `{"operations": [..]}` and their
//! answers `{"results": [..]}`, one element per operation, in order. The engine checks the
//! operations ([`KvBatch::parse`], [`LockBatch::parse`], [`TimerBatch::parse`]) and runs each
//! call in one transaction. Timers also have routes of their own for one timer (peek, cancel)
//! and a queue's listing.

use hyper::StatusCode;
use queen_engine::EngineError;
use queen_engine::kv::{KvBatch, KvRefusal};
use queen_engine::locks::{LockBatch, LockRefusal};
use queen_engine::timers::{TIMER_PAGE_DEFAULT, TimerBatch, TimerRefusal};
use serde::Deserialize;
use serde_json::Value;

use crate::app::App;
use crate::body::{self, Resp};
use crate::error::{ApiError, Code};
use crate::query::Query;

#[derive(Deserialize)]
struct Call {
    operations: Option<Value>,
}

/// The `operations` array of a body, checked by the engine's `parse` of its kind; a body
/// without one is refused with `refusal` (the kind's own code).
fn checked<B, R>(
    bytes: &[u8],
    parse: fn(&[Value]) -> Result<B, R>,
    refusal: fn(String) -> R,
) -> Result<B, ApiError>
where
    EngineError: From<R>,
{
    let call: Call = body::json(bytes)?;
    let Some(Value::Array(ops)) = call.operations else {
        let refused = refusal("`operations` must be an array of operations".into());
        return Err(EngineError::from(refused).into());
    };
    Ok(parse(&ops).map_err(EngineError::from)?)
}

/// The key/value operations of a body, checked.
pub(crate) fn parse(bytes: &[u8]) -> Result<KvBatch, ApiError> {
    checked(bytes, KvBatch::parse, KvRefusal::BadRequest)
}

/// The lock operations of a body, checked.
pub(crate) fn parse_locks(bytes: &[u8]) -> Result<LockBatch, ApiError> {
    checked(bytes, LockBatch::parse, LockRefusal)
}

/// The timer operations of a body, checked.
pub(crate) fn parse_timers(bytes: &[u8]) -> Result<TimerBatch, ApiError> {
    checked(bytes, TimerBatch::parse, TimerRefusal)
}

/// `{"results": <results>}`, the results being a JSON array's text.
fn answer(results: &str) -> Resp {
    body::json_around(r#"{"results":"#, results)
}

/// `POST /api/v1/kv`.
pub(crate) async fn apply(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let batch = parse(bytes)?;
    Ok(answer(&app.engine.kv(&batch).await?))
}

/// `POST /api/v1/locks`.
pub(crate) async fn locks(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let batch = parse_locks(bytes)?;
    Ok(answer(&app.engine.locks(&batch).await?))
}

/// `POST /api/v1/timers`.
pub(crate) async fn timers(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let batch = parse_timers(bytes)?;
    Ok(answer(&app.engine.timers(&batch).await?))
}

/// A queue name from the path, and a timer key (the rest of the path: keys may hold `/`).
fn timer_path(queue: &str, key: &[&str]) -> Result<(String, Option<String>), ApiError> {
    queen_engine::check_name("queue", queue)
        .map_err(|e| ApiError::bad_request(Code::InvalidName, e))?;
    if key.is_empty() {
        return Ok((queue.to_owned(), None));
    }
    let key = queen_engine::timers::timer_key(Some(&Value::String(key.join("/"))))
        .map_err(|e| EngineError::from(TimerRefusal(e)))?;
    Ok((queue.to_owned(), Some(key)))
}

/// `DELETE /api/v1/timers/:queue/*timerKey?txn=`: one cancel, answered as its result.
pub(crate) async fn cancel_timer(
    app: &App,
    queue: &str,
    key: &[&str],
    query: &Query,
) -> Result<Resp, ApiError> {
    let (queue, key) = timer_path(queue, key)?;
    let op = serde_json::json!({"op": "cancel", "queue": queue, "timerKey": key,
                                "txn": query.text("txn")});
    let batch = TimerBatch::parse(&[op]).map_err(EngineError::from)?;
    let results: Value =
        serde_json::from_str(&app.engine.timers(&batch).await?).map_err(ApiError::internal)?;
    Ok(body::reply(StatusCode::OK, &results[0]))
}

/// `GET /api/v1/timers/:queue/*timerKey` (one timer, with its payload as base64 of its JSON)
/// and `GET /api/v1/timers/:queue?after&limit` (a page of the queue's timers by key).
pub(crate) async fn read_timers(
    app: &App,
    queue: &str,
    key: &[&str],
    query: &Query,
) -> Result<Resp, ApiError> {
    let (queue, key) = timer_path(queue, key)?;
    if let Some(key) = key {
        let found = app.engine.read_timers(&queue, Some(&key), None, 1).await?;
        let v = match found.first() {
            Some(t) => {
                let mut v: Value = serde_json::from_str(&t.fields).map_err(ApiError::internal)?;
                v["found"] = true.into();
                v["payload"] = queen_engine::timers::payload_base64(&t.payload).into();
                v["encrypted"] = t.encrypted.into();
                v
            }
            None => serde_json::json!({"found": false, "queue": queue, "timerKey": key}),
        };
        return Ok(body::reply(StatusCode::OK, &v));
    }
    // `limit` is clamped, never refused: too high a limit is not the caller's to fix.
    let limit = match query.get("limit") {
        None | Some("") => TIMER_PAGE_DEFAULT,
        Some(l) => l.parse::<i64>().map_err(|_| {
            ApiError::bad_request(
                Code::InvalidParameter,
                format!("query parameter `limit` must be an integer, got `{l}`"),
            )
        })?,
    }
    .clamp(1, queen_engine::timers::TIMER_PAGE_MAX);
    let after = query.text("after");
    let page = app
        .engine
        .read_timers(&queue, None, after.as_deref(), limit + 1)
        .await?;
    let truncated = page.len() as i64 > limit;
    let rows = page
        .iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|t| serde_json::from_str(&t.fields))
        .collect::<Result<Vec<Value>, _>>()
        .map_err(ApiError::internal)?;
    let next_after = truncated
        .then(|| rows.last().map(|r| r["timerKey"].clone()))
        .flatten();
    Ok(body::reply(
        StatusCode::OK,
        &serde_json::json!({"rows": rows, "truncated": truncated, "nextAfter": next_after}),
    ))
}
