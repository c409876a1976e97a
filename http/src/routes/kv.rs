//! The key/value store and its locks (docs/kv.md): `POST /api/v1/kv` and `POST
//! /api/v1/locks`. Both bodies are `{"operations": [..]}` and both answers `{"results": [..]}`,
//! one element per operation, in order. The engine checks the operations ([`KvBatch::parse`],
//! [`LockBatch::parse`]) and runs each call in one transaction.

use hyper::StatusCode;
use queen_engine::EngineError;
use queen_engine::kv::{KvBatch, KvRefusal};
use queen_engine::locks::{LockBatch, LockRefusal};
use serde::Deserialize;
use serde_json::Value;

use crate::app::App;
use crate::body::{self, Resp};
use crate::error::ApiError;

#[derive(Deserialize)]
struct Call {
    operations: Option<Value>,
}

/// The `operations` array of a body; `None` when it is missing or not an array.
fn operations(bytes: &[u8]) -> Result<Option<Vec<Value>>, ApiError> {
    let call: Call = body::json(bytes)?;
    Ok(match call.operations {
        Some(Value::Array(ops)) => Some(ops),
        _ => None,
    })
}

const NOT_AN_ARRAY: &str = "`operations` must be an array of operations";

/// The key/value operations of a body, checked.
pub(crate) fn parse(bytes: &[u8]) -> Result<KvBatch, ApiError> {
    let ops = operations(bytes)?
        .ok_or_else(|| EngineError::from(KvRefusal::BadRequest(NOT_AN_ARRAY.into())))?;
    Ok(KvBatch::parse(&ops).map_err(EngineError::from)?)
}

/// The lock operations of a body, checked.
pub(crate) fn parse_locks(bytes: &[u8]) -> Result<LockBatch, ApiError> {
    let ops =
        operations(bytes)?.ok_or_else(|| EngineError::from(LockRefusal(NOT_AN_ARRAY.into())))?;
    Ok(LockBatch::parse(&ops).map_err(EngineError::from)?)
}

/// `{"results": <results>}`, the results being a JSON array's text.
fn answer(results: &str) -> Resp {
    let mut out = Vec::with_capacity(results.len() + 16);
    out.extend_from_slice(b"{\"results\":");
    out.extend_from_slice(results.as_bytes());
    out.push(b'}');
    body::raw(StatusCode::OK, "application/json", out.into())
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
