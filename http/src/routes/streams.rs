//! Stream processing (docs/streams.md): `POST /streams/v1/queries` registers a query,
//! `POST /streams/v1/state/get` reads its state for one source partition, and
//! `POST /streams/v1/cycle` commits a cycle (state changes, sink pushes and the source ack) in
//! one transaction. Bodies and answers are Queen's, field for field (snake_case).

use hyper::StatusCode;
use queen_engine::model::QUEUE_MODE;
use queen_engine::streams::{Cycle, CycleAck, Registration, StateOps, StateRead};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::App;
use crate::body::{self, Resp};
use crate::error::{ApiError, Code};
use crate::json_out::Obj;
use crate::routes::messages::{AckIn, ack_item, parse_items, push_result};

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(Code::InvalidRequest, msg)
}

/// A required string field.
fn text(v: Option<Value>, what: &str) -> Result<String, ApiError> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(bad(format!("`{what}` is required (a string)"))),
    }
}

/// A required UUID field.
fn uuid(v: Option<Value>, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(&text(v, what)?).map_err(|_| bad(format!("`{what}` is not a UUID")))
}

/// A boolean field, false when absent.
fn flag(v: Option<&Value>, what: &str) -> Result<bool, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(format!("`{what}` must be a boolean"))),
    }
}

#[derive(Deserialize)]
struct RegisterIn {
    name: Option<Value>,
    source_queue: Option<Value>,
    sink_queue: Option<Value>,
    config_hash: Option<Value>,
    reset: Option<Value>,
}

/// The registration of `POST /streams/v1/queries` (its names and hash are checked by the
/// engine).
pub(crate) fn parse_register(bytes: &[u8]) -> Result<Registration, ApiError> {
    let r: RegisterIn = body::json(bytes)?;
    let reg = Registration {
        name: text(r.name, "name")?,
        source_queue: text(r.source_queue, "source_queue")?,
        sink_queue: match r.sink_queue {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            v => Some(text(v, "sink_queue")?),
        },
        config_hash: text(r.config_hash, "config_hash")?,
        reset: flag(r.reset.as_ref(), "reset")?,
    };
    Ok(reg)
}

/// `POST /streams/v1/queries`. A changed operator chain without `reset` is a 409.
pub(crate) async fn register(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let reg = parse_register(bytes)?;
    let out = app.engine.stream_register(&reg).await?;
    Ok(body::reply(
        StatusCode::OK,
        &json!({
            "success": true, "query_id": out.query_id, "name": reg.name,
            "config_hash": reg.config_hash, "fresh": out.fresh, "reset": out.reset,
        }),
    ))
}

#[derive(Deserialize)]
struct StateGetIn {
    query_id: Option<Value>,
    partition_id: Option<Value>,
    keys: Option<Value>,
    key_prefix: Option<Value>,
    ripe_at_or_before: Option<Value>,
}

/// The (query, partition) and selection of `POST /streams/v1/state/get` (its keys are checked
/// by the engine).
pub(crate) fn parse_state_get(bytes: &[u8]) -> Result<(Uuid, Uuid, StateRead), ApiError> {
    let r: StateGetIn = body::json(bytes)?;
    let query_id = uuid(r.query_id, "query_id")?;
    let partition_id = uuid(r.partition_id, "partition_id")?;
    let keys = match r.keys {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|k| match k {
                Value::String(s) => Ok(s),
                _ => Err(bad("`keys` must be an array of strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("`keys` must be an array of strings")),
    };
    let key_prefix = match r.key_prefix {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(bad("`key_prefix` must be a string")),
    };
    // Queen ignores a bound that is not a number; so does this.
    let ripe_at_or_before = r.ripe_at_or_before.as_ref().and_then(|v| {
        v.as_i64().or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        })
    });
    let read = StateRead {
        keys,
        key_prefix,
        ripe_at_or_before,
    };
    Ok((query_id, partition_id, read))
}

/// `POST /streams/v1/state/get`: `{success, rows: [{key, value, updated_at}]}`.
pub(crate) async fn state_get(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let (query_id, partition_id, read) = parse_state_get(bytes)?;
    let rows = app
        .engine
        .stream_state(query_id, partition_id, read)
        .await?;
    Ok(body::json_around(r#"{"success":true,"rows":"#, &rows))
}

#[derive(Deserialize)]
struct CycleIn<'a> {
    query_id: Option<Value>,
    partition_id: Option<Value>,
    consumer_group: Option<Value>,
    #[serde(borrow)]
    state_ops: Option<&'a RawValue>,
    #[serde(borrow)]
    push_items: Option<&'a RawValue>,
    ack: Option<Value>,
    // `release_lease: false` (a gate that admitted only part of its batch) needs nothing of its
    // own: an ack commits up to the message it names, and a lease is released only when its
    // whole batch is committed.
}

/// The cycle of `POST /streams/v1/cycle`, checked.
pub(crate) fn parse_cycle(bytes: &[u8], sub: Option<&str>) -> Result<Cycle, ApiError> {
    // Push payloads are stored as sent; state values are checked here (for the code every body
    // uses) and by the engine.
    let c: CycleIn<'_> = body::json_keeping_escapes(bytes)?;
    let query_id = uuid(c.query_id, "query_id")?;
    let partition_id = uuid(c.partition_id, "partition_id")?;
    let group = match c.consumer_group {
        None | Some(Value::Null) => QUEUE_MODE.to_owned(),
        Some(Value::String(s)) if s.is_empty() => QUEUE_MODE.to_owned(),
        v => text(v, "consumer_group")?,
    };
    // State values are stored as jsonb, which holds no NUL: refused as in any other body.
    let state = match c.state_ops {
        None => StateOps::default(),
        Some(raw) => {
            queen_engine::check_json_escapes(raw.get().as_bytes()).map_err(|e| {
                ApiError::bad_request(
                    Code::InvalidString,
                    format!("state_ops strings must not contain {e}"),
                )
            })?;
            match serde_json::from_str(raw.get()) {
                Ok(Value::Null) => StateOps::default(),
                Ok(Value::Array(ops)) => StateOps::parse(ops)?,
                _ => return Err(bad("`state_ops` must be an array")),
            }
        }
    };
    let push = match c.push_items {
        Some(raw) if raw.get() != "null" => parse_items(Some(raw), sub)?,
        _ => Vec::new(),
    };
    let ack = match c.ack {
        None | Some(Value::Null) => None,
        Some(Value::Object(mut o)) => {
            let count = match o.remove("count") {
                None | Some(Value::Null) => 1,
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| bad("`ack.count` must be a non-negative integer"))?,
            };
            o.insert(
                "partitionId".into(),
                Value::String(partition_id.to_string()),
            );
            o.insert("consumerGroup".into(), Value::String(group.clone()));
            let a: AckIn =
                serde_json::from_value(Value::Object(o)).map_err(|e| bad(format!("`ack`: {e}")))?;
            Some(CycleAck {
                item: ack_item(a, &group, 0)?,
                count,
            })
        }
        Some(_) => return Err(bad("`ack` must be an object")),
    };
    Ok(Cycle {
        query_id,
        partition_id,
        state,
        push,
        ack,
    })
}

/// `POST /streams/v1/cycle`. A cycle that cannot commit (its lease is no longer live, say)
/// answers `success: false` and changes nothing, as `POST /api/v1/transaction` does.
pub(crate) async fn cycle(app: &App, bytes: &[u8], sub: Option<&str>) -> Result<Resp, ApiError> {
    let c = parse_cycle(bytes, sub)?;
    let (query_id, partition_id) = (c.query_id, c.partition_id);
    let out = app.engine.stream_cycle(c).await?;
    let ack_result = match &out.ack {
        Some((a, count)) => json!({
            "success": a.success, "count": count, "lease_released": a.lease_released,
            "dlq": a.dlq, "error": a.error,
        }),
        None => Value::Null,
    };
    let mut answer = Vec::with_capacity(256 + out.pushed.len() * 240);
    let mut o = Obj::open(&mut answer);
    o.field("success", &out.success)
        .id("query_id", Some(query_id))
        .id("partition_id", Some(partition_id))
        .field("state_ops_applied", &out.state_ops_applied)
        .objects("push_results", &out.pushed, push_result)
        .field("ack_result", &ack_result);
    if let Some(e) = &out.error {
        o.str("error", e);
    }
    o.close();
    Ok(body::raw(StatusCode::OK, "application/json", answer.into()))
}
