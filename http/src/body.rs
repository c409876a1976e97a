//! Reading request bodies (with the size limit) and writing JSON responses (with CORS).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::app::HttpConfig;
use crate::error::{ApiError, Code};

/// Response type of every route.
pub type Resp = Response<Full<Bytes>>;

/// Reads a request body within the limits of `config`, refusing before reading anything what
/// cannot be accepted: a declared `Content-Length` over the limit (`413`, and no
/// `100 Continue`), a transfer or content coding other than chunked / identity (`501` / `415`:
/// nothing here would decode it), a body that does not fit the budget of bytes in flight
/// (`503 busy`). The whole body must arrive within `body_read_timeout` (`408`), so a client
/// trickling bytes cannot hold a connection. Returns the bytes and the budget they hold until
/// the request is answered.
pub async fn read(
    headers: &hyper::HeaderMap,
    body: Incoming,
    config: &HttpConfig,
    budget: &Arc<Semaphore>,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), ApiError> {
    let limit = config.body_limit;
    if let Some(te) = headers.get(header::TRANSFER_ENCODING) {
        let te = te.to_str().unwrap_or("?").to_ascii_lowercase();
        if te.split(',').any(|c| c.trim() != "chunked") {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                Code::UnsupportedEncoding,
                format!(
                    "Transfer-Encoding `{te}` is not supported: send the body as is or chunked"
                ),
            ));
        }
    }
    if let Some(ce) = headers.get(header::CONTENT_ENCODING) {
        let ce = ce.to_str().unwrap_or("?").to_ascii_lowercase();
        if ce.split(',').any(|c| c.trim() != "identity") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::UnsupportedEncoding,
                format!("Content-Encoding `{ce}` is not supported: send the body uncompressed"),
            ));
        }
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::BodyTooLarge,
            format!("request body is larger than {limit} bytes"),
        )
    };
    let declared = match headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(Code::InvalidBody, "Content-Length is not a number")
                })?,
        ),
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // Without a declared length the body may be as large as the limit.
    let reserve = declared
        .map_or(limit, |n| usize::try_from(n).unwrap_or(limit))
        .max(1);
    let permit = u32::try_from(reserve)
        .ok()
        .and_then(|n| budget.clone().try_acquire_many_owned(n).ok())
        .ok_or_else(|| ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::Busy,
                "the server is receiving as many request bodies as it holds at once; retry",
            )
        })?;
    let read = Limited::new(body, limit).collect();
    match tokio::time::timeout(config.body_read_timeout, read).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            Code::BodyTimeout,
            format!(
                "the request body did not arrive within {:?}",
                config.body_read_timeout
            ),
        )),
        Ok(Ok(c)) => Ok((c.to_bytes(), Some(permit))),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::bad_request(
            Code::InvalidBody,
            format!("cannot read the body: {e}"),
        )),
    }
}

/// Parses a JSON body: empty → `400 Empty request body`, malformed → `400 Invalid JSON: …`,
/// a string PostgreSQL cannot store (a `\u0000` or unpaired surrogate escape, in a payload or
/// any other field) → `400 invalid_string`, before anything reaches the engine: in a coalesced
/// statement it would fail the other requests folded with it.
pub fn json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    let parsed = json_keeping_escapes(bytes)?;
    queen_engine::check_json_escapes(bytes).map_err(|e| {
        ApiError::bad_request(
            Code::InvalidString,
            format!("request strings must not contain {e}"),
        )
    })?;
    Ok(parsed)
}

/// Parses a JSON body like [`json`] but lets every escape through: for bodies whose raw JSON
/// values are stored as text (push payloads) and whose other strings the route checks itself
/// once decoded (a decoded string holds no unpaired surrogate; names refuse control
/// characters, transactionIds NUL).
pub fn json_keeping_escapes<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(Code::EmptyBody, "Empty request body"));
    }
    // Every body of the API is an object: serde would also take a JSON array for a struct
    // (its fields by position).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(
            Code::InvalidRequest,
            "the request body must be a JSON object",
        ));
    }
    let parsed = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::bad_request(Code::InvalidJson, format!("Invalid JSON: {e}"))
        } else {
            ApiError::bad_request(Code::InvalidRequest, format!("Invalid request: {e}"))
        }
    })?;
    Ok(parsed)
}

/// The elements of a JSON array of objects, at most `max` of them (`413 too_many_items`
/// beyond), each still unparsed: a large array costs a slice per element, not a structure.
pub(crate) fn objects<'a>(
    raw: &'a RawValue,
    what: &str,
    max: usize,
) -> Result<Vec<&'a RawValue>, ApiError> {
    let items: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(|_| {
        ApiError::bad_request(
            Code::InvalidRequest,
            format!("`{what}` must be an array of objects"),
        )
    })?;
    if items.len() > max {
        return Err(ApiError::too_many_items(what, max, items.len()));
    }
    if let Some(i) = items.iter().position(|it| !it.get().starts_with('{')) {
        return Err(ApiError::bad_request(
            Code::InvalidRequest,
            format!("{what}[{i}] must be an object"),
        ));
    }
    Ok(items)
}

/// Adds the permissive CORS headers of the contract.
pub fn cors(resp: &mut Resp) {
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Authorization"),
    );
}

/// A value as JSON; one that cannot be serialised is a fault of this server (logged).
pub fn json_bytes<T: Serialize>(value: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format_args!("response serialisation failed: {e}")))
}

/// A JSON response.
pub fn reply<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    match json_bytes(value) {
        Ok(bytes) => raw(status, "application/json", bytes),
        // Built here, not by `error`, which replies through this function.
        Err(_) => raw(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            Bytes::from_static(br#"{"error":"internal error","code":"internal"}"#),
        ),
    }
}

/// A `200` JSON object whose last member's value is JSON text the database built: `head` is
/// the object up to that value (`{"results":`), so the text is copied, never parsed again.
pub fn json_around(head: &str, inner: &str) -> Resp {
    let mut out = Vec::with_capacity(head.len() + inner.len() + 1);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(inner.as_bytes());
    out.push(b'}');
    raw(StatusCode::OK, "application/json", out.into())
}

/// A response with a given content type.
pub fn raw(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// An empty response (`204`).
pub fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// The error body (with the queue a refusal names) and, when a retry can succeed later, a
/// `Retry-After` header.
pub fn error(e: &ApiError) -> Resp {
    #[derive(Serialize)]
    struct Body<'a> {
        error: &'a str,
        code: Code,
        #[serde(skip_serializing_if = "Option::is_none")]
        queue: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
    }
    let mut r = reply(
        e.status,
        &Body {
            error: &e.message,
            code: e.code,
            queue: e.queue.as_deref(),
            reason: e.reason.as_deref(),
        },
    );
    if let Some(secs) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}
