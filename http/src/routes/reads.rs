//! Reads by offset (`POST /api/v1/fetch`) and partition discovery (`POST
//! /api/v1/partitions/changed`), as Queen's clients call them (docs/api.md, "Reads by offset").
//!
//! Both bodies are a list of `entries` answered in order. A problem of one entry's data (a
//! partition that does not exist, an offset retention removed) is that entry's `error`, as the
//! clients expect; a malformed request is a `400` naming the field.

use hyper::StatusCode;
use queen_engine::check_name;
use queen_engine::reads::{
    CHANGED_PAGE_MAX, ChangedQuery, FETCH_BYTES_MAX, FETCH_ENTRIES_MAX, FetchEntry, FetchError,
};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::app::App;
use crate::body::{self, Resp, objects};
use crate::error::{ApiError, Code};
use crate::json_out::Obj;
use crate::time;

/// Discovery entries of one call at most (each is a statement of its own).
const CHANGED_ENTRIES_MAX: usize = 100;

/// The clients' names of the two entry errors.
fn error_name(e: FetchError) -> &'static str {
    match e {
        FetchError::UnknownPartition => "UNKNOWN_TOPIC_OR_PARTITION",
        FetchError::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Call<'a> {
    #[serde(borrow)]
    entries: Option<&'a RawValue>,
    max_bytes: Option<Value>,
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request(Code::InvalidRequest, message)
}

/// The `entries` array: 1 to `max` objects.
fn entries(
    raw: Option<&RawValue>,
    max: usize,
) -> Result<Vec<serde_json::Map<String, Value>>, ApiError> {
    let Some(raw) = raw else {
        return Err(invalid("`entries` must be an array of objects".into()));
    };
    let items = objects(raw, "entries", max)?;
    if items.is_empty() {
        return Err(invalid("`entries` must not be empty".into()));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, e)| {
            serde_json::from_str(e.get())
                .map_err(|_| invalid(format!("entries[{i}] must be an object")))
        })
        .collect()
}

/// A queue or partition name of entry `i`.
fn name(o: &serde_json::Map<String, Value>, key: &str, i: usize) -> Result<String, ApiError> {
    match o.get(key) {
        Some(Value::String(s)) => check_name(key, s)
            .map(|()| s.clone())
            .map_err(|e| ApiError::bad_request(Code::InvalidName, format!("entries[{i}]: {e}"))),
        Some(Value::Number(n)) if key == "partition" && n.is_u64() => Ok(n.to_string()),
        _ => Err(invalid(format!("entries[{i}].{key} must be a string"))),
    }
}

/// An integer field from `min` on; `default` when absent or null.
fn int(v: Option<&Value>, what: &str, min: i64, default: i64) -> Result<i64, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|n| *n >= min)
            .ok_or_else(|| invalid(format!("{what} must be an integer of at least {min}"))),
        Some(_) => Err(invalid(format!(
            "{what} must be an integer of at least {min}"
        ))),
    }
}

/// A fetch body: its entries and the call's byte ceiling.
pub(crate) fn parse_fetch(bytes: &[u8]) -> Result<(Vec<FetchEntry>, i64), ApiError> {
    let call: Call<'_> = body::json(bytes)?;
    let max_bytes = int(call.max_bytes.as_ref(), "maxBytes", 1, FETCH_BYTES_MAX)?;
    let asked = entries(call.entries, FETCH_ENTRIES_MAX)?
        .iter()
        .enumerate()
        .map(|(i, o)| {
            Ok(FetchEntry {
                queue: name(o, "queue", i)?,
                partition: name(o, "partition", i)?,
                offset: int(o.get("offset"), &format!("entries[{i}].offset"), 0, 0)?,
                max_bytes: int(
                    o.get("maxBytes"),
                    &format!("entries[{i}].maxBytes"),
                    1,
                    FETCH_BYTES_MAX,
                )?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok((asked, max_bytes))
}

/// `POST /api/v1/fetch`.
pub(crate) async fn fetch(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let (asked, max_bytes) = parse_fetch(bytes)?;
    let read = app.engine.fetch(&asked, max_bytes).await?;
    let mut out = Vec::new();
    let mut o = Obj::open(&mut out);
    o.objects("entries", asked.iter().zip(&read), |o, (a, e)| {
        o.field("queue", &a.queue)
            .field("partition", &a.partition)
            .objects("records", &e.records, |o, r| {
                o.field("offset", &r.offset)
                    .field("transactionId", &r.transaction_id)
                    .raw("payload", &r.payload)
                    .field("ts", &time::format(r.created_at));
            })
            .field("highWatermark", &e.high_watermark)
            .field("logStartOffset", &e.log_start_offset);
        if let Some(err) = e.error {
            o.field("error", error_name(err));
        }
    });
    o.close();
    Ok(body::raw(StatusCode::OK, "application/json", out.into()))
}

/// A discovery body: one page query per entry.
pub(crate) fn parse_changed(bytes: &[u8]) -> Result<Vec<ChangedQuery>, ApiError> {
    let call: Call<'_> = body::json(bytes)?;
    entries(call.entries, CHANGED_ENTRIES_MAX)?
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let since = match o.get("since") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(time::parse(s).ok_or_else(|| {
                    invalid(format!("entries[{i}].since must be an ISO-8601 time"))
                })?),
                Some(_) => return Err(invalid(format!("entries[{i}].since must be a string"))),
            };
            let after = match o.get("after") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => {
                    Some(s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                        invalid(format!("entries[{i}].after is not a page cursor"))
                    })?)
                }
                Some(_) => return Err(invalid(format!("entries[{i}].after must be a string"))),
            };
            let limit = int(
                o.get("limit"),
                &format!("entries[{i}].limit"),
                1,
                i64::from(CHANGED_PAGE_MAX),
            )?;
            if limit > i64::from(CHANGED_PAGE_MAX) {
                return Err(invalid(format!(
                    "entries[{i}].limit must be at most {CHANGED_PAGE_MAX}"
                )));
            }
            Ok(ChangedQuery {
                queue: name(o, "queue", i)?,
                since,
                after,
                limit: i32::try_from(limit).unwrap_or(CHANGED_PAGE_MAX),
            })
        })
        .collect()
}

/// `POST /api/v1/partitions/changed`.
pub(crate) async fn changed(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let queries = parse_changed(bytes)?;
    let mut pages = Vec::with_capacity(queries.len());
    for q in &queries {
        pages.push(app.engine.changed_partitions(q).await?);
    }
    // The smallest: it holds for every entry.
    let safe = pages.iter().map(|p| p.safe_time).min();
    let mut out = Vec::new();
    let mut o = Obj::open(&mut out);
    o.objects("entries", queries.iter().zip(&pages), |o, (q, p)| {
        o.field("queue", &q.queue)
            .objects("partitions", &p.partitions, |o, c| {
                o.field("name", &c.name)
                    .field("id", &c.id)
                    .field("lastOffset", &c.last_offset)
                    .field("logStart", &c.log_start)
                    .field("lastWriteAt", &c.last_write_at.map(time::format));
            })
            .field("next", &p.next.map(|n| n.to_string()));
        if !p.queue_found {
            o.field("error", error_name(FetchError::UnknownPartition));
        }
    })
    .field("safeTime", &safe.map(time::format));
    o.close();
    Ok(body::raw(StatusCode::OK, "application/json", out.into()))
}
