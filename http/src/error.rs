//! API errors: a real status and a body `{"error": "<human message>", "code": "<stable code>"}`.
//! Codes never change once released.

use hyper::StatusCode;
use queen_engine::EngineError;
use queen_engine::ephemeral::EphemeralRefusal;
use queen_engine::kv::KvRefusal;

/// The stable error codes of the API, one per kind of refusal. A code never changes once
/// released; `docs/api.md` lists them with their statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// A field is missing, has the wrong type or a value out of range.
    InvalidRequest,
    /// The body is not JSON.
    InvalidJson,
    /// A body is required and none was sent.
    EmptyBody,
    /// The body could not be read (broken chunked encoding, a reset).
    InvalidBody,
    /// A string PostgreSQL cannot store (`\\u0000`, an unpaired surrogate escape).
    InvalidString,
    /// Malformed percent-encoding (or a NUL) in the path.
    InvalidPath,
    /// A query parameter does not parse or is out of range.
    InvalidParameter,
    /// A queue or partition name breaks the naming rules.
    InvalidName,
    /// A path id that must be a UUID is not one.
    InvalidId,
    /// A queue option has the wrong type or is out of range.
    InvalidOption,
    /// An ack status that is not one of the five.
    InvalidStatus,
    /// A push item's `traceId` is not a UUID.
    InvalidTraceId,
    /// The body is over the size limit (413).
    BodyTooLarge,
    /// A key/value operation is malformed (400).
    KvBadRequest,
    /// A key/value write without exactly one of `ttlSeconds` and `forever` (400).
    KvExpiryNotSpecified,
    /// A lock operation is malformed (400).
    LockBadRequest,
    /// A timer operation is malformed (400).
    TimersBadRequest,
    /// An ephemeral queue call is malformed (400).
    EphemeralBadRequest,
    /// The server holds as many ephemeral messages or queues as it may (503).
    EphemeralUnavailable,
    /// No ephemeral queue of that name (404, from the depth read only).
    EphemeralQueueNotFound,
    /// A key/value operation marked `required` did not apply; nothing was written (409).
    KvPreconditionFailed,
    /// The body did not arrive in time (408).
    BodyTimeout,
    /// A transfer or content coding the server does not decode (501, 415).
    UnsupportedEncoding,
    /// More items than one request may hold (413).
    TooManyItems,
    /// The server holds as many request bodies as it may; retry (503).
    Busy,
    /// No token, or a token that is invalid, expired or not yet valid (401).
    Unauthorized,
    /// The token's role is too weak for the route (403).
    Forbidden,
    /// No such route, queue, message or group (404).
    NotFound,
    /// The route exists but not with this method (405).
    MethodNotAllowed,
    /// The request raced a change it depends on, e.g. its queue was deleted meanwhile (409).
    Conflict,
    /// The push would exceed the queue's `maxSize` (429).
    QueueFull,
    /// The queue encrypts and this server has no key (409).
    EncryptionKeyMissing,
    /// The push must be buffered and the disk buffer is at its limit (503).
    BufferFull,
    /// The database is unreachable and the disk buffer failed (503).
    BufferUnavailable,
    /// The database is unreachable and the route cannot be buffered (503).
    DatabaseUnavailable,
    /// The database did not finish the statement within the statement timeout (503).
    StatementTimeout,
    /// A stored payload cannot be decrypted with this server's keys (500).
    DecryptionFailed,
    /// A fault of the server (500); the cause is in its log.
    Internal,
}

impl Code {
    /// The code as it appears in answers.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::InvalidRequest => "invalid_request",
            Code::InvalidJson => "invalid_json",
            Code::EmptyBody => "empty_body",
            Code::InvalidBody => "invalid_body",
            Code::InvalidString => "invalid_string",
            Code::InvalidPath => "invalid_path",
            Code::InvalidParameter => "invalid_parameter",
            Code::InvalidName => "invalid_name",
            Code::InvalidId => "invalid_id",
            Code::InvalidOption => "invalid_option",
            Code::InvalidStatus => "invalid_status",
            Code::InvalidTraceId => "invalid_trace_id",
            Code::BodyTooLarge => "body_too_large",
            Code::BodyTimeout => "body_timeout",
            Code::UnsupportedEncoding => "unsupported_encoding",
            Code::TooManyItems => "too_many_items",
            Code::Busy => "busy",
            Code::Unauthorized => "unauthorized",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::Conflict => "conflict",
            Code::KvBadRequest => "kv_bad_request",
            Code::KvExpiryNotSpecified => "kv_expiry_not_specified",
            Code::KvPreconditionFailed => "kv_precondition_failed",
            Code::LockBadRequest => "lock_bad_request",
            Code::TimersBadRequest => "timers_bad_request",
            Code::EphemeralBadRequest => "ephemeral_bad_request",
            Code::EphemeralUnavailable => "ephemeral_unavailable",
            Code::EphemeralQueueNotFound => "ephemeral_queue_not_found",
            Code::QueueFull => "queue_full",
            Code::EncryptionKeyMissing => "encryption_key_missing",
            Code::BufferFull => "buffer_full",
            Code::BufferUnavailable => "buffer_unavailable",
            Code::DatabaseUnavailable => "database_unavailable",
            Code::StatementTimeout => "statement_timeout",
            Code::DecryptionFailed => "decryption_failed",
            Code::Internal => "internal",
        }
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code.
    pub code: Code,
    /// Human message.
    pub message: String,
    /// The queue a refusal is about (`queue_full`), sent as `"queue"` beside the error.
    pub queue: Option<String>,
    /// A stable identifier of why a condition failed (`kv_precondition_failed`: `absent`,
    /// `exists`, `version`, `limit`, `type`), sent as `"reason"`.
    pub reason: Option<String>,
    /// Seconds after which a retry may succeed (a `Retry-After` header): a full queue or a
    /// full buffer frees room as consumers and the replay catch up. Queen's clients honour it.
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            queue: None,
            reason: None,
            retry_after: None,
        }
    }

    /// A 400 with a code.
    pub fn bad_request(code: Code, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A `413 too_many_items`: the array `what` holds `got` elements, more than `max`.
    pub fn too_many_items(what: &str, max: usize, got: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::TooManyItems,
            format!("`{what}` may hold at most {max} elements, got {got}"),
        )
    }

    /// The JSON error response.
    pub fn into_response(self) -> crate::body::Resp {
        crate::body::error(&self)
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, Code::NotFound, message)
    }

    /// A 500: a fault of this server; the cause goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal,
            "internal error",
        )
    }

    /// A 503: the database is unreachable and the route cannot be buffered.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::DatabaseUnavailable,
            message,
        )
    }
}

/// The answer to a refused ephemeral call.
fn ephemeral(r: &EphemeralRefusal) -> ApiError {
    use StatusCode as S;
    let m = r.to_string();
    match r {
        EphemeralRefusal::BadRequest(_) => ApiError::bad_request(Code::EphemeralBadRequest, m),
        EphemeralRefusal::QueueFull(q) => ApiError {
            queue: Some(q.clone()),
            retry_after: Some(1),
            ..ApiError::new(S::TOO_MANY_REQUESTS, Code::QueueFull, m)
        },
        EphemeralRefusal::NoRoom => ApiError {
            retry_after: Some(1),
            ..ApiError::new(S::SERVICE_UNAVAILABLE, Code::EphemeralUnavailable, m)
        },
        EphemeralRefusal::NotFound(_) => {
            ApiError::new(S::NOT_FOUND, Code::EphemeralQueueNotFound, m)
        }
    }
}

impl From<EphemeralRefusal> for ApiError {
    fn from(r: EphemeralRefusal) -> ApiError {
        ephemeral(&r)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        use StatusCode as S;
        match &e {
            EngineError::Invalid(m) => ApiError::bad_request(Code::InvalidRequest, m.clone()),
            EngineError::InvalidName(m) => ApiError::bad_request(Code::InvalidName, m.clone()),
            EngineError::Conflict(m) => ApiError::new(S::CONFLICT, Code::Conflict, m.clone()),
            EngineError::Kv(KvRefusal::BadRequest(m)) => {
                ApiError::bad_request(Code::KvBadRequest, m.clone())
            }
            EngineError::Kv(KvRefusal::ExpiryNotSpecified(m)) => {
                ApiError::bad_request(Code::KvExpiryNotSpecified, m.clone())
            }
            EngineError::Lock(m) => ApiError::bad_request(Code::LockBadRequest, m.to_string()),
            EngineError::Timer(m) => ApiError::bad_request(Code::TimersBadRequest, m.to_string()),
            EngineError::Ephemeral(r) => ephemeral(r),
            EngineError::KvPrecondition(f) => ApiError {
                reason: Some(f.reason.clone()),
                ..ApiError::new(S::CONFLICT, Code::KvPreconditionFailed, e.to_string())
            },
            EngineError::Buffer(m) => ApiError::new(
                S::SERVICE_UNAVAILABLE,
                Code::BufferUnavailable,
                format!("the database is unreachable and the disk buffer failed: {m}"),
            ),
            EngineError::BufferFull(limit) => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    S::SERVICE_UNAVAILABLE,
                    Code::BufferFull,
                    format!(
                        "the push must wait in the disk buffer, which is at its limit of {limit} \
                         bytes (FILE_BUFFER_MAX_BYTES); nothing was stored, retry later"
                    ),
                )
            },
            EngineError::QueueFull(q) => ApiError {
                queue: Some(q.clone()),
                retry_after: Some(1),
                ..ApiError::new(
                    S::TOO_MANY_REQUESTS,
                    Code::QueueFull,
                    format!("queue {q} is full: the push would exceed its maxSize"),
                )
            },
            EngineError::EncryptionKeyMissing(_) => ApiError::new(
                S::CONFLICT,
                Code::EncryptionKeyMissing,
                format!(
                    "{e}: set QUEEN_ENCRYPTION_KEY to one key of 64 hexadecimal characters (e.g. \
                     from `openssl rand -hex 32`), the same on every server attached to this \
                     database, and restart them"
                ),
            ),
            EngineError::Decrypt(m) => {
                tracing::error!(error = %m, "decryption failed");
                ApiError::new(
                    S::INTERNAL_SERVER_ERROR,
                    Code::DecryptionFailed,
                    format!("a stored payload cannot be decrypted: {m}"),
                )
            }
            _ if e.is_unavailable() => ApiError::unavailable(format!("database unavailable: {e}")),
            _ if e.is_statement_timeout() => {
                tracing::warn!(error = %e, "statement timeout");
                ApiError::new(
                    S::SERVICE_UNAVAILABLE,
                    Code::StatementTimeout,
                    "the database did not finish the request within the statement timeout \
                     (DB_STATEMENT_TIMEOUT; listings and other inspection: \
                     DB_ADMIN_STATEMENT_TIMEOUT); it was rolled back",
                )
            }
            _ => ApiError::internal(&e),
        }
    }
}
