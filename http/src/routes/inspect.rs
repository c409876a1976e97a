//! Inspection and operations (docs/api.md, "Inspection" and "Status"): messages, dead letters,
//! traces, consumer groups and the dashboard status routes. The engine reads the figures
//! ([`queen_engine::inspect`], [`queen_engine::analytics`]); this module parses parameters and
//! answers with the shapes of [`crate::views`].

use hyper::StatusCode;
use queen_engine::Timestamp;
use queen_engine::inspect::{
    DeadLetterFilter, MessageCursor, MessageFilter, SeekTarget, TraceEvent,
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::App;
use crate::body::{self, Resp};
use crate::error::{ApiError, Code};
use crate::json_out::Obj;
use crate::query::Query;
use crate::time;
use crate::views;

fn uuid(s: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s)
        .map_err(|_| ApiError::bad_request(Code::InvalidId, format!("{what} must be a UUID")))
}

/// `limit` (1..=1000) and `offset` (0..).
fn page(q: &Query, default_limit: u64) -> Result<(i32, i32), ApiError> {
    let limit = q
        .int("limit", Some(default_limit), 1, 1000)?
        .unwrap_or(default_limit);
    let offset = q.int("offset", Some(0), 0, i32::MAX as u64)?.unwrap_or(0);
    // Both bounded above by i32::MAX.
    Ok((limit as i32, offset as i32))
}

/// Refuses an `offset` deeper than listings pass over (rows skipped are read and dropped);
/// `key` names the parameter that continues from the previous page instead.
fn bounded_offset(offset: i32, key: &str) -> Result<(), ApiError> {
    if offset > MessageFilter::MAX_SKIP {
        return Err(ApiError::bad_request(
            Code::InvalidParameter,
            format!(
                "`offset` may be at most {}; deeper pages continue from `{key}` (the \
                 `nextCursor` of the previous page)",
                MessageFilter::MAX_SKIP
            ),
        ));
    }
    Ok(())
}

fn message_filter(q: &Query, queue: Option<String>) -> Result<MessageFilter, ApiError> {
    let status = q.text("status");
    if let Some(s) = &status {
        if !["pending", "processing", "completed", "dead_letter"].contains(&s.as_str()) {
            return Err(ApiError::bad_request(
                Code::InvalidParameter,
                "`status` must be pending, processing, completed or dead_letter",
            ));
        }
    }
    let (limit, offset) = page(q, 200)?;
    bounded_offset(offset, "cursor")?;
    let after = match q.text("cursor") {
        Some(t) => Some(MessageCursor::parse(&t).ok_or_else(|| {
            ApiError::bad_request(
                Code::InvalidParameter,
                "`cursor` must be a `nextCursor` this server answered",
            )
        })?),
        None => None,
    };
    Ok(MessageFilter {
        queue: queue.or_else(|| q.text("queue")),
        partition: q.text("partition"),
        namespace: q.text("ns").or_else(|| q.text("namespace")),
        task: q.text("task"),
        status,
        from: q.timestamp("from")?,
        to: q.timestamp("to")?,
        limit,
        after,
        skip: offset,
    })
}

// ---- messages -------------------------------------------------------------------------------

pub(crate) async fn list_messages(app: &App, q: &Query) -> Result<Resp, ApiError> {
    let f = message_filter(q, None)?;
    let page = app.engine.list_messages(&f).await?;
    Ok(body::reply(
        StatusCode::OK,
        &views::MessageList::new(&page, None),
    ))
}

pub(crate) async fn message(app: &App, pid: &str, txid: &str) -> Result<Resp, ApiError> {
    let pid = uuid(pid, "partitionId")?;
    match app.engine.message(pid, txid).await? {
        Some(m) => {
            let mut out = Vec::new();
            let mut o = Obj::open(&mut out);
            let fields =
                serde_json::to_string(&views::MessageDetailView::from(&m)).unwrap_or_default();
            o.fields_of(&fields)
                .raw("payload", m.payload.as_deref().unwrap_or("null"));
            o.close();
            Ok(body::raw(StatusCode::OK, "application/json", out.into()))
        }
        None => Err(ApiError::not_found(format!(
            "message {txid} not found in partition {pid}"
        ))),
    }
}

pub(crate) async fn delete_message(app: &App, pid: &str, txid: &str) -> Result<Resp, ApiError> {
    let partition_id = uuid(pid, "partitionId")?;
    let success = app.engine.delete_message(partition_id, txid).await?;
    Ok(body::reply(
        StatusCode::OK,
        &json!({"success": success, "partitionId": partition_id, "transactionId": txid}),
    ))
}

pub(crate) async fn retry_message(app: &App, pid: &str, txid: &str) -> Result<Resp, ApiError> {
    let partition_id = uuid(pid, "partitionId")?;
    if !app.engine.retry_dead_letter(partition_id, txid).await? {
        return Err(ApiError::not_found(format!(
            "message {txid} of partition {partition_id} is not in the dead-letter queue"
        )));
    }
    Ok(body::reply(
        StatusCode::OK,
        &json!({"success": true, "partitionId": partition_id, "transactionId": txid}),
    ))
}

pub(crate) async fn dead_letters(app: &App, q: &Query) -> Result<Resp, ApiError> {
    let (limit, offset) = page(q, 100)?;
    bounded_offset(offset, "before")?;
    let f = DeadLetterFilter {
        queue: q.text("queue"),
        consumer_group: q.text("consumerGroup"),
        partition: q.text("partition"),
        from: q.timestamp("from")?,
        to: q.timestamp("to")?,
        limit,
        offset,
        before: q.int("before", None, 1, i64::MAX as u64)?.map(|b| b as i64),
    };
    let page = app.engine.dead_letters(&f).await?;
    let mut out = Vec::new();
    let mut o = Obj::open(&mut out);
    o.objects("messages", &page.messages, |o, m| {
        let fields = serde_json::to_string(&views::DeadLetterView::from(m)).unwrap_or_default();
        o.fields_of(&fields)
            .raw("data", m.payload.as_deref().unwrap_or("null"));
    })
    .field("total", &page.total)
    .field("pagination", &json!({"limit": limit, "offset": offset}))
    .field("nextCursor", &page.next.map(|id| id.to_string()));
    o.close();
    Ok(body::raw(StatusCode::OK, "application/json", out.into()))
}

// ---- traces ---------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TraceIn {
    transaction_id: Option<String>,
    partition_id: Option<String>,
    data: Option<Value>,
    consumer_group: Option<String>,
    event_type: Option<String>,
    worker_id: Option<String>,
    trace_names: Option<Value>,
    trace_name: Option<Value>,
}

pub(crate) async fn add_trace(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let t: TraceIn = body::json(bytes)?;
    let required = |v: Option<String>, k: &str| {
        v.filter(|s| !s.is_empty()).ok_or_else(|| {
            ApiError::bad_request(Code::InvalidRequest, format!("`{k}` is required"))
        })
    };
    let transaction_id = required(t.transaction_id, "transactionId")?;
    let partition_id = uuid(&required(t.partition_id, "partitionId")?, "partitionId")?;
    let data = t
        .data
        .filter(|d| !d.is_null())
        .ok_or_else(|| ApiError::bad_request(Code::InvalidRequest, "`data` is required"))?;
    let names = match t.trace_names.or(t.trace_name) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(()),
            })
            .collect::<Result<_, _>>()
            .map_err(|()| {
                ApiError::bad_request(Code::InvalidRequest, "`traceNames` must hold strings")
            })?,
        Some(_) => {
            return Err(ApiError::bad_request(
                Code::InvalidRequest,
                "`traceNames` must be a string or an array of strings",
            ));
        }
    };
    let event = TraceEvent {
        partition_id,
        transaction_id,
        data: data.to_string(),
        consumer_group: t.consumer_group,
        event_type: t.event_type.unwrap_or_else(|| "info".into()),
        worker_id: t.worker_id,
        names,
    };
    match app.engine.add_trace(&event).await? {
        Some(id) => Ok(body::reply(
            StatusCode::CREATED,
            &json!({"success": true, "traceId": id}),
        )),
        None => Err(ApiError::not_found(format!(
            "message {} not found in partition {}",
            event.transaction_id, event.partition_id
        ))),
    }
}

pub(crate) async fn message_traces(app: &App, pid: &str, txid: &str) -> Result<Resp, ApiError> {
    let pid = uuid(pid, "partitionId")?;
    let traces = app.engine.message_traces(pid, txid).await?;
    Ok(body::reply(
        StatusCode::OK,
        &views::MessageTraces::new(&traces),
    ))
}

pub(crate) async fn traces_by_name(app: &App, name: &str, q: &Query) -> Result<Resp, ApiError> {
    let (limit, offset) = page(q, 100)?;
    let page = app.engine.traces_by_name(name, limit, offset).await?;
    let paging = views::Paging { limit, offset };
    Ok(body::reply(
        StatusCode::OK,
        &views::TraceList::new(&page, paging),
    ))
}

pub(crate) async fn trace_names(app: &App, q: &Query) -> Result<Resp, ApiError> {
    let (limit, offset) = page(q, 100)?;
    let page = app.engine.trace_names(limit, offset).await?;
    let paging = views::Paging { limit, offset };
    Ok(body::reply(
        StatusCode::OK,
        &views::TraceNameList::new(&page, paging),
    ))
}

// ---- consumer groups ------------------------------------------------------------------------

pub(crate) async fn consumer_groups(app: &App) -> Result<Resp, ApiError> {
    let snap = app.engine.analytics().await?;
    let groups: Vec<_> = snap.groups.iter().map(views::GroupView::from).collect();
    Ok(body::reply(StatusCode::OK, &groups))
}

pub(crate) async fn lagging_groups(app: &App, q: &Query) -> Result<Resp, ApiError> {
    let min = q
        .int("minLagSeconds", Some(3600), 0, u64::from(u32::MAX))?
        .unwrap_or(3600) as f64;
    let snap = app.engine.analytics().await?;
    let groups: Vec<_> = snap
        .groups
        .iter()
        .filter(|g| g.max_time_lag >= min)
        .map(views::GroupView::from)
        .collect();
    Ok(body::reply(StatusCode::OK, &groups))
}

pub(crate) async fn consumer_group(app: &App, group: &str) -> Result<Resp, ApiError> {
    let parts = app.engine.group_partitions(group).await?;
    if parts.is_empty() {
        return Err(ApiError::not_found(format!(
            "consumer group {group} not found"
        )));
    }
    Ok(body::reply(StatusCode::OK, &views::group_detail(&parts)))
}

pub(crate) async fn delete_group(
    app: &App,
    group: &str,
    queue: Option<&str>,
    q: &Query,
) -> Result<Resp, ApiError> {
    let metadata = q.flag("deleteMetadata", false);
    let n = app
        .engine
        .delete_consumer_group(group, queue, metadata)
        .await?;
    Ok(body::reply(
        StatusCode::OK,
        &json!({"success": true, "consumerGroup": group, "queue": queue, "partitionsDeleted": n}),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeekIn {
    to_end: Option<bool>,
    timestamp: Option<String>,
    subscription_timestamp: Option<String>,
}

fn ts_field(v: Option<&str>, key: &str) -> Result<Option<Timestamp>, ApiError> {
    v.map(|s| {
        time::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                Code::InvalidRequest,
                format!("`{key}` must be an RFC 3339 timestamp"),
            )
        })
    })
    .transpose()
}

pub(crate) async fn set_subscription(
    app: &App,
    group: &str,
    bytes: &[u8],
) -> Result<Resp, ApiError> {
    let s: SeekIn = body::json(bytes)?;
    let from = ts_field(s.subscription_timestamp.as_deref(), "subscriptionTimestamp")?.ok_or_else(
        || ApiError::bad_request(Code::InvalidRequest, "`subscriptionTimestamp` is required"),
    )?;
    let n = app.engine.set_subscription(group, from).await?;
    Ok(body::reply(
        StatusCode::OK,
        &json!({"success": true, "consumerGroup": group, "queuesUpdated": n,
                "subscriptionTimestamp": time::format(from)}),
    ))
}

pub(crate) async fn seek(
    app: &App,
    group: &str,
    queue: &str,
    partition: Option<&str>,
    bytes: &[u8],
) -> Result<Resp, ApiError> {
    let s: SeekIn = body::json(bytes)?;
    let target = match (s.to_end, ts_field(s.timestamp.as_deref(), "timestamp")?) {
        (Some(true), _) => SeekTarget::End,
        (_, Some(t)) => SeekTarget::Time(t),
        _ => {
            return Err(ApiError::bad_request(
                Code::InvalidRequest,
                "give `toEnd: true` or a `timestamp`",
            ));
        }
    };
    match app.engine.seek(group, queue, partition, target).await? {
        Some(n) => Ok(body::reply(
            StatusCode::OK,
            &json!({"success": true, "consumerGroup": group, "queue": queue,
                    "partition": partition, "partitionsMoved": n}),
        )),
        None => Err(ApiError::not_found(match partition {
            Some(p) => format!("partition {p} of queue {queue} not found"),
            None => format!("queue {queue} not found"),
        })),
    }
}

// ---- status (dashboards) --------------------------------------------------------------------

pub(crate) async fn status(app: &App) -> Result<Resp, ApiError> {
    let snap = app.engine.analytics().await?;
    let v = views::Status {
        overview: views::Overview::from(&*snap),
        throughput: app.throughput.rates(),
        buffer: app.engine.buffer_status().map(|b| views::BufferBrief {
            pending: b.pending,
            failed: b.failed,
            db_healthy: b.db_healthy,
        }),
        uptime_seconds: app.started.elapsed().as_secs(),
    };
    Ok(body::reply(StatusCode::OK, &v))
}

pub(crate) async fn queue_messages(app: &App, queue: &str, q: &Query) -> Result<Resp, ApiError> {
    let f = message_filter(q, Some(queue.to_owned()))?;
    let page = app.engine.list_messages(&f).await?;
    Ok(body::reply(
        StatusCode::OK,
        &views::MessageList::new(&page, Some(queue)),
    ))
}

pub(crate) fn analytics(app: &App) -> Resp {
    body::reply(
        StatusCode::OK,
        &json!({
            "throughput": app.throughput.rates(),
            "series": app.throughput.series(),
            "timestamp": time::format(Timestamp::now()),
        }),
    )
}
