//! Operations: health, readiness, metrics (JSON and Prometheus), maintenance modes (docs/api.md, "Operations").

use std::fmt::Write as _;

use bytes::Bytes;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::auth::{Principal, Role};
use crate::body::{self, Resp};
use crate::error::{ApiError, Code};
use queen_engine::maintenance::Mode;

pub(crate) async fn health(app: &App) -> Resp {
    let ok = app.engine.ping(std::time::Duration::from_secs(2)).await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    body::reply(
        status,
        &json!({
            "status": if ok { "healthy" } else { "unhealthy" },
            "database": if ok { "connected" } else { "disconnected" },
            "server": "queen-rs",
            "version": env!("CARGO_PKG_VERSION"),
        }),
    )
}

pub(crate) fn ready(app: &App) -> Resp {
    let ready = app.is_ready()
        && app.engine.is_initialised()
        && app.engine.pool().is_connected()
        && app.engine.buffer_caught_up();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let quarantined = app.engine.buffer_status().map_or(0, |b| b.quarantined);
    body::reply(
        status,
        &json!({ "ready": ready, "bufferQuarantined": quarantined }),
    )
}

pub(crate) fn metrics(app: &App) -> Resp {
    let (pushed, popped, acked) = app.engine.metrics().snapshot();
    let pool = app.engine.pool().status();
    let r = &app.requests;
    body::reply(
        StatusCode::OK,
        &json!({
            "uptimeSeconds": app.started.elapsed().as_secs(),
            "requests": {
                "total": r.total(), "errors": r.errors(), "inFlight": r.in_flight(),
                "latencyMicros": {"p50": r.quantile(0.5), "p90": r.quantile(0.9), "p99": r.quantile(0.99)},
            },
            "messages": {"pushed": pushed, "popped": popped, "acked": acked},
            "database": {
                "poolSize": pool.size, "connected": pool.connected,
                "inFlight": pool.in_flight, "checkedOut": pool.checked_out,
            },
            "longPolls": {
                "waiting": app.engine.hub().total_waiting(),
                "queues": app.engine.hub().queues(),
            },
            "ephemeral": {
                "queues": app.engine.ephemeral().queue_count(),
                "bytes": app.engine.ephemeral().bytes(),
                "maxBytes": app.engine.ephemeral().limits().max_bytes,
            },
            "buffer": app.engine.buffer_status().map(|b| json!({
                "pending": b.pending, "failed": b.failed, "replayed": b.replayed,
                "quarantined": b.quarantined,
                "dbHealthy": b.db_healthy, "maintenance": b.maintenance,
                "bytes": b.bytes, "maxBytes": b.max_bytes,
            })),
        }),
    )
}

pub(crate) fn prometheus(app: &App) -> Resp {
    let (pushed, popped, acked) = app.engine.metrics().snapshot();
    let pool = app.engine.pool().status();
    let r = &app.requests;
    let mut s = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            s,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "queen_uptime_seconds",
        "gauge",
        "Seconds since start.",
        app.started.elapsed().as_secs().to_string(),
    );
    metric(
        "queen_requests_total",
        "counter",
        "HTTP requests answered.",
        r.total().to_string(),
    );
    metric(
        "queen_request_errors_total",
        "counter",
        "HTTP requests answered with a 5xx.",
        r.errors().to_string(),
    );
    metric(
        "queen_requests_in_flight",
        "gauge",
        "HTTP requests being served.",
        r.in_flight().to_string(),
    );
    metric(
        "queen_messages_pushed_total",
        "counter",
        "Messages stored.",
        pushed.to_string(),
    );
    metric(
        "queen_messages_popped_total",
        "counter",
        "Messages delivered.",
        popped.to_string(),
    );
    metric(
        "queen_messages_acked_total",
        "counter",
        "Acknowledgements applied.",
        acked.to_string(),
    );
    metric(
        "queen_db_pool_connected",
        "gauge",
        "Database connections up.",
        pool.connected.to_string(),
    );
    metric(
        "queen_db_pool_in_flight",
        "gauge",
        "Pipelines awaiting the database.",
        pool.in_flight.to_string(),
    );
    metric(
        "queen_long_polls_waiting",
        "gauge",
        "Pops parked waiting for messages.",
        app.engine.hub().total_waiting().to_string(),
    );
    metric(
        "queen_ephemeral_queues",
        "gauge",
        "Ephemeral queues held in memory.",
        app.engine.ephemeral().queue_count().to_string(),
    );
    metric(
        "queen_ephemeral_bytes",
        "gauge",
        "Payload bytes held by the ephemeral queues.",
        app.engine.ephemeral().bytes().to_string(),
    );
    let _ = writeln!(
        s,
        "# HELP queen_request_latency_micros HTTP request latency quantiles.\n# TYPE queen_request_latency_micros summary"
    );
    for q in [0.5, 0.9, 0.99] {
        let _ = writeln!(
            s,
            "queen_request_latency_micros{{quantile=\"{q}\"}} {}",
            r.quantile(q)
        );
    }
    body::raw(StatusCode::OK, "text/plain; version=0.0.4", Bytes::from(s))
}

/// `GET /api/v1/status/buffers`.
pub(crate) fn buffers(app: &App) -> Resp {
    let b = app.engine.buffer_status();
    body::reply(
        StatusCode::OK,
        &json!({
            "pending": b.map_or(0, |b| b.pending),
            "failed": b.map_or(0, |b| b.failed),
            "quarantined": b.map_or(0, |b| b.quarantined),
            "replayed": b.map_or(0, |b| b.replayed),
            "bytes": b.map_or(0, |b| b.bytes),
            "maxBytes": b.map_or(0, |b| b.max_bytes),
            "dbHealthy": app.engine.pool().is_connected(),
            "enabled": b.is_some(),
        }),
    )
}

/// `POST /api/v1/system/buffer/quarantine/replay`: quarantined buffer records go back to be
/// replayed.
pub(crate) async fn replay_quarantine(app: &App) -> Result<Resp, ApiError> {
    let n = app.engine.replay_quarantine().await?;
    Ok(body::reply(StatusCode::OK, &json!({ "requeued": n })))
}

/// `GET|POST /api/v1/system/maintenance` (push maintenance: every push to the disk buffer) and
/// `GET|POST /api/v1/system/maintenance/pop` (pops answer empty).
pub(crate) async fn maintenance(
    app: &App,
    mode: Mode,
    set: Option<&[u8]>,
) -> Result<Resp, ApiError> {
    if let Some(bytes) = set {
        let m: MaintenanceIn = body::json(bytes)?;
        let enabled = m.enabled.ok_or_else(|| {
            ApiError::bad_request(Code::InvalidRequest, "`enabled` (boolean) is required")
        })?;
        app.engine.set_maintenance(mode, enabled).await?;
    }
    Ok(body::reply(
        StatusCode::OK,
        &json!({ "enabled": app.maintenance_on(mode) }),
    ))
}

#[derive(Deserialize)]
struct MaintenanceIn {
    enabled: Option<bool>,
}

/// `GET /api/v1/whoami`: whether auth is on and, if so, the token's subject and role — what a
/// client (the console) needs to offer only the actions the token may take. With auth off every
/// caller may do everything, so the role is `admin`.
pub(crate) fn whoami(auth_enabled: bool, principal: Option<&Principal>) -> Resp {
    let role = match principal {
        Some(p) => p.role.map(Role::name),
        None if !auth_enabled => Some(Role::Admin.name()),
        None => None,
    };
    body::reply(
        StatusCode::OK,
        &json!({
            "authEnabled": auth_enabled,
            "sub": principal.and_then(|p| p.sub.as_deref()),
            "role": role,
        }),
    )
}
