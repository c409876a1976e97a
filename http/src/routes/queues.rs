//! Queues: configure and resources (api.md §3).

use hyper::StatusCode;
use queen_engine::QueueOptions;
use queen_engine::admin::{Counts, QueueStats};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::body::{self, Resp};
use crate::error::{ApiError, Code};
use crate::time;
use queen_engine::check_name;
use queen_engine::limits::option_range;

#[derive(Deserialize)]
struct ConfigureIn {
    queue: Option<Value>,
    namespace: Option<Value>,
    task: Option<Value>,
    options: Option<serde_json::Map<String, Value>>,
}

fn opt_str(v: Option<Value>, name: &str) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(
            Code::InvalidRequest,
            format!("`{name}` must be a string"),
        )),
    }
}

/// The options of a configure request: every known option type- and range-checked (an
/// out-of-range value is a 400 naming the option and its range, never clamped); unknown ones
/// are ignored, as Queen's clients send some this server does not have.
fn parse_options(map: Option<serde_json::Map<String, Value>>) -> Result<QueueOptions, ApiError> {
    let mut o = QueueOptions::default();
    let Some(map) = map else { return Ok(o) };
    let int = |k: &str, v: &Value| -> Result<i64, ApiError> {
        let (lo, hi) = option_range(k).unwrap_or((0, 0));
        match v.as_i64() {
            Some(n) if (lo..=hi).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(
                Code::InvalidOption,
                format!("option `{k}` must be an integer from {lo} to {hi}, got {v}"),
            )),
        }
    };
    // Every range fits in an i32 but maxSize's.
    let int32 = |k: &str, v: &Value| int(k, v).map(|n| i32::try_from(n).unwrap_or(i32::MAX));
    let boolean = |k: &str, v: &Value| -> Result<bool, ApiError> {
        v.as_bool().ok_or_else(|| {
            ApiError::bad_request(
                Code::InvalidOption,
                format!("option `{k}` must be a boolean, got {v}"),
            )
        })
    };
    for (k, v) in &map {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "leaseTime" => o.lease_time = Some(int32(k, v)?),
            "maxSize" => o.max_size = Some(int(k, v)?),
            "ttl" => o.ttl = Some(int32(k, v)?),
            "retryLimit" => o.retry_limit = Some(int32(k, v)?),
            "retryDelay" => o.retry_delay = Some(int32(k, v)?),
            "deadLetterQueue" => o.dead_letter_queue = Some(boolean(k, v)?),
            "dlqAfterMaxRetries" => o.dlq_after_max_retries = Some(boolean(k, v)?),
            "priority" => o.priority = Some(int32(k, v)?),
            "delayedProcessing" => o.delayed_processing = Some(int32(k, v)?),
            "windowBuffer" => o.window_buffer = Some(int32(k, v)?),
            "retentionSeconds" => o.retention_seconds = Some(int32(k, v)?),
            "completedRetentionSeconds" => o.completed_retention_seconds = Some(int32(k, v)?),
            "retentionEnabled" => o.retention_enabled = Some(boolean(k, v)?),
            "encryptionEnabled" => o.encryption_enabled = Some(boolean(k, v)?),
            "maxWaitTimeSeconds" => o.max_wait_time_seconds = Some(int32(k, v)?),
            _ => {}
        }
    }
    Ok(o)
}

pub(crate) fn options_json(o: &QueueOptions) -> Value {
    json!({
        "leaseTime": o.lease_time, "maxSize": o.max_size, "ttl": o.ttl,
        "retryLimit": o.retry_limit, "retryDelay": o.retry_delay,
        "deadLetterQueue": o.dead_letter_queue, "dlqAfterMaxRetries": o.dlq_after_max_retries,
        "priority": o.priority, "delayedProcessing": o.delayed_processing,
        "windowBuffer": o.window_buffer, "retentionSeconds": o.retention_seconds,
        "completedRetentionSeconds": o.completed_retention_seconds,
        "retentionEnabled": o.retention_enabled, "encryptionEnabled": o.encryption_enabled,
        "maxWaitTimeSeconds": o.max_wait_time_seconds,
    })
}

/// A configure request: the queue, its tags and its options.
pub(crate) struct Configure {
    pub queue: String,
    pub namespace: Option<String>,
    pub task: Option<String>,
    pub options: QueueOptions,
}

/// The body of `POST /api/v1/configure`.
pub(crate) fn parse_configure(bytes: &[u8]) -> Result<Configure, ApiError> {
    let c: ConfigureIn = body::json(bytes)?;
    let queue = opt_str(c.queue, "queue")?
        .ok_or_else(|| ApiError::bad_request(Code::InvalidRequest, "`queue` is required"))?;
    check_name("queue", &queue).map_err(|e| ApiError::bad_request(Code::InvalidName, e))?;
    let namespace = opt_str(c.namespace, "namespace")?;
    let task = opt_str(c.task, "task")?;
    for (what, tag) in [("namespace", &namespace), ("task", &task)] {
        if let Some(t) = tag {
            check_name(what, t).map_err(|e| ApiError::bad_request(Code::InvalidName, e))?;
        }
    }
    Ok(Configure {
        queue,
        namespace,
        task,
        options: parse_options(c.options)?,
    })
}

pub(crate) async fn configure(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let Configure {
        queue,
        namespace,
        task,
        options,
    } = parse_configure(bytes)?;
    let info = app
        .engine
        .configure(&queue, namespace.as_deref(), task.as_deref(), &options)
        .await?;
    Ok(body::reply(
        StatusCode::OK,
        &json!({
            "configured": true,
            "queueId": info.id,
            "partitionId": info.default_partition_id,
            "queue": info.name,
            "namespace": info.namespace,
            "task": info.task,
            "options": options_json(&info.options),
        }),
    ))
}

fn counts_json(c: &Counts) -> Value {
    json!({
        "total": c.total, "pending": c.pending, "processing": c.processing,
        "completed": c.completed, "failed": c.failed, "deadLetter": c.dead_letter,
    })
}

pub(crate) async fn list_queues(app: &App) -> Result<Resp, ApiError> {
    let stats = app.engine.queue_stats(None).await?;
    let queues: Vec<Value> = stats
        .iter()
        .map(|q| {
            json!({
                "id": q.id, "name": q.name, "namespace": q.namespace, "task": q.task,
                "priority": q.priority, "createdAt": time::format(q.created_at),
                "partitions": q.partitions.len(),
                "messages": {"total": q.totals.total, "pending": q.totals.pending, "processing": q.totals.processing},
            })
        })
        .collect();
    Ok(body::reply(StatusCode::OK, &json!({ "queues": queues })))
}

pub(crate) async fn get_queue(app: &App, name: &str) -> Result<Resp, ApiError> {
    let Some(info) = app.engine.queue_info(name).await? else {
        return Err(ApiError::not_found(format!("queue `{name}` not found")));
    };
    let stats = app.engine.queue_stats(Some(name)).await?;
    let (partitions, totals) = match stats.first() {
        Some(q) => (
            q.partitions
                .iter()
                .map(|p| {
                    json!({
                        "id": p.id, "name": p.name, "createdAt": time::format(p.created_at),
                        "stats": counts_json(&p.counts),
                        "oldestMessage": p.oldest.map(time::format),
                        "newestMessage": p.newest.map(time::format),
                    })
                })
                .collect::<Vec<_>>(),
            counts_json(&q.totals),
        ),
        None => (Vec::new(), counts_json(&Counts::default())),
    };
    Ok(body::reply(
        StatusCode::OK,
        &json!({
            "id": info.id, "name": info.name, "namespace": info.namespace, "task": info.task,
            "createdAt": time::format(info.created_at),
            "options": options_json(&info.options),
            "partitions": partitions,
            "totals": totals,
        }),
    ))
}

pub(crate) async fn delete_queue(app: &App, name: &str) -> Result<Resp, ApiError> {
    let existed = app.engine.delete_queue(name).await?;
    Ok(body::reply(
        StatusCode::OK,
        &json!({"deleted": true, "queue": name, "existed": existed}),
    ))
}

/// Groups queues by a tag (namespace or task).
fn by_tag(
    stats: &[QueueStats],
    tag: impl Fn(&QueueStats) -> Option<&String>,
    key: &str,
) -> Vec<Value> {
    let mut groups: Vec<(String, usize, usize, i64, i64)> = Vec::new();
    for q in stats {
        let Some(t) = tag(q) else { continue };
        let i = match groups.iter().position(|g| &g.0 == t) {
            Some(i) => i,
            None => {
                groups.push((t.clone(), 0, 0, 0, 0));
                groups.len() - 1
            }
        };
        let g = &mut groups[i];
        g.1 += 1;
        g.2 += q.partitions.len();
        g.3 += q.totals.total;
        g.4 += q.totals.pending;
    }
    groups
        .into_iter()
        .map(|(t, queues, partitions, total, pending)| {
            json!({ key: t, "queues": queues, "partitions": partitions, "messages": {"total": total, "pending": pending} })
        })
        .collect()
}

pub(crate) async fn namespaces(app: &App) -> Result<Resp, ApiError> {
    let stats = app.engine.queue_stats(None).await?;
    Ok(body::reply(
        StatusCode::OK,
        &json!({ "namespaces": by_tag(&stats, |q| q.namespace.as_ref(), "namespace") }),
    ))
}

pub(crate) async fn tasks(app: &App) -> Result<Resp, ApiError> {
    let stats = app.engine.queue_stats(None).await?;
    Ok(body::reply(
        StatusCode::OK,
        &json!({ "tasks": by_tag(&stats, |q| q.task.as_ref(), "task") }),
    ))
}

pub(crate) async fn overview(app: &App) -> Result<Resp, ApiError> {
    Ok(body::reply(StatusCode::OK, &overview_json(app).await?))
}

/// The overview figures (also the base of `/api/v1/status`).
pub(crate) async fn overview_json(app: &App) -> Result<Value, ApiError> {
    let stats = app.engine.queue_stats(None).await?;
    let mut totals = Counts::default();
    let mut ns = std::collections::BTreeSet::new();
    let mut tasks = std::collections::BTreeSet::new();
    let mut partitions = 0;
    for q in &stats {
        for (a, b) in [
            (&mut totals.total, q.totals.total),
            (&mut totals.pending, q.totals.pending),
            (&mut totals.processing, q.totals.processing),
            (&mut totals.completed, q.totals.completed),
            (&mut totals.failed, q.totals.failed),
            (&mut totals.dead_letter, q.totals.dead_letter),
        ] {
            *a += b;
        }
        partitions += q.partitions.len();
        if let Some(n) = &q.namespace {
            ns.insert(n.clone());
        }
        if let Some(t) = &q.task {
            tasks.insert(t.clone());
        }
    }
    Ok(json!({
        "queues": stats.len(), "partitions": partitions, "namespaces": ns.len(), "tasks": tasks.len(),
        "messages": counts_json(&totals),
        "timestamp": time::format(queen_wire::Timestamp::now()),
    }))
}
