//! The key/value store: `POST /api/v1/kv` (docs/kv.md). The body is `{"operations": [..]}`;
//! the answer `{"results": [..]}`, one element per operation, index-aligned. The engine checks
//! the operations ([`KvBatch::parse`]) and runs them in one transaction.

use hyper::StatusCode;
use queen_engine::kv::{KvBatch, KvRefusal};
use serde::Deserialize;
use serde_json::Value;

use crate::app::App;
use crate::body::{self, Resp};
use crate::error::ApiError;

#[derive(Deserialize)]
struct Call {
    operations: Option<Value>,
}

/// The operations of a body, checked.
pub(crate) fn parse(bytes: &[u8]) -> Result<KvBatch, ApiError> {
    let call: Call = body::json(bytes)?;
    let Some(Value::Array(ops)) = call.operations else {
        return Err(queen_engine::EngineError::from(KvRefusal::BadRequest(
            "`operations` must be an array of operations".into(),
        ))
        .into());
    };
    KvBatch::parse(&ops).map_err(|e| queen_engine::EngineError::from(e).into())
}

/// `POST /api/v1/kv`.
pub(crate) async fn apply(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let batch = parse(bytes)?;
    let results = app.engine.kv(&batch).await?;
    let mut out = Vec::with_capacity(results.len() + 16);
    out.extend_from_slice(b"{\"results\":");
    out.extend_from_slice(results.as_bytes());
    out.push(b'}');
    Ok(body::raw(StatusCode::OK, "application/json", out.into()))
}
