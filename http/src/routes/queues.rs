//! Queues: configure, delete, and the resource views (docs/api.md, "Queues" and "Status").

use hyper::StatusCode;
use queen_engine::QueueOptions;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::body::{self, Resp};
use crate::error::{ApiError, Code};
use crate::views;
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
    let namespace = opt_str(c.namespace, "namespace")?;
    let task = opt_str(c.task, "task")?;
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
            "options": views::OptionsView::from(&info.options),
        }),
    ))
}

pub(crate) async fn list_queues(app: &App) -> Result<Resp, ApiError> {
    let snap = app.engine.analytics().await?;
    Ok(body::reply(StatusCode::OK, &views::QueueList::from(&*snap)))
}

pub(crate) async fn get_queue(app: &App, name: &str) -> Result<Resp, ApiError> {
    let Some(info) = app.engine.queue_info(name).await? else {
        return Err(ApiError::not_found(format!("queue `{name}` not found")));
    };
    let snap = app.engine.analytics().await?;
    let stale_limit = app.engine.analytics_policy().stale_limit;
    let bytes = app.details.get(info, snap, stale_limit).await?;
    Ok(body::raw(StatusCode::OK, "application/json", bytes))
}

pub(crate) async fn delete_queue(app: &App, name: &str) -> Result<Resp, ApiError> {
    let existed = app.engine.delete_queue(name).await?;
    Ok(body::reply(
        StatusCode::OK,
        &json!({"deleted": true, "queue": name, "existed": existed}),
    ))
}

pub(crate) async fn namespaces(app: &App) -> Result<Resp, ApiError> {
    let snap = app.engine.analytics().await?;
    Ok(body::reply(
        StatusCode::OK,
        &views::by_tag(&snap, |q| q.namespace.as_ref(), "namespace"),
    ))
}

pub(crate) async fn tasks(app: &App) -> Result<Resp, ApiError> {
    let snap = app.engine.analytics().await?;
    Ok(body::reply(
        StatusCode::OK,
        &views::by_tag(&snap, |q| q.task.as_ref(), "task"),
    ))
}

pub(crate) async fn overview(app: &App) -> Result<Resp, ApiError> {
    let snap = app.engine.analytics().await?;
    Ok(body::reply(StatusCode::OK, &views::Overview::from(&*snap)))
}
