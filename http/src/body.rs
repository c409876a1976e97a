//! Reading request bodies (with the size limit) and writing JSON responses (with CORS).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::error::{ApiError, Code};

/// Response type of every route.
pub type Resp = Response<Full<Bytes>>;

/// Reads the whole body, refusing more than `limit` bytes (`413`).
pub async fn read(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::BodyTooLarge,
            format!("request body is larger than {limit} bytes"),
        )),
        Err(e) => Err(ApiError::bad_request(
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
    let parsed = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::bad_request(Code::InvalidJson, format!("Invalid JSON: {e}"))
        } else {
            ApiError::bad_request(Code::InvalidRequest, format!("Invalid request: {e}"))
        }
    })?;
    Ok(parsed)
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

/// A JSON response.
pub fn reply<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(bytes) => raw(status, "application/json", Bytes::from(bytes)),
        Err(e) => {
            tracing::error!(error = %e, "response serialisation failed");
            raw(
                StatusCode::INTERNAL_SERVER_ERROR,
                "application/json",
                Bytes::from_static(br#"{"error":"internal error","code":"internal"}"#),
            )
        }
    }
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
    }
    let mut r = reply(
        e.status,
        &Body {
            error: &e.message,
            code: e.code,
            queue: e.queue.as_deref(),
        },
    );
    if let Some(secs) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}
