//! API errors: a real status and a body `{"error": "<human message>", "code": "<stable code>"}`.
//! Codes never change once released.

use hyper::StatusCode;
use queen_engine::EngineError;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code.
    pub code: &'static str,
    /// Human message.
    pub message: String,
}

impl ApiError {
    /// A 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    /// The JSON error response.
    pub fn into_response(self) -> crate::body::Resp {
        crate::body::error(&self)
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
        }
    }

    /// A 503: the database is unreachable and the route cannot be buffered.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "database_unavailable",
            message: message.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match &e {
            EngineError::Invalid(m) => ApiError::bad_request("invalid_request", m.clone()),
            EngineError::Buffer(m) => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "buffer_unavailable",
                message: format!("the database is unreachable and the disk buffer failed: {m}"),
            },
            EngineError::BufferFull(limit) => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "buffer_full",
                message: format!(
                    "the push must wait in the disk buffer, which is at its limit of {limit} bytes \
                     (FILE_BUFFER_MAX_BYTES); nothing was stored, retry later"
                ),
            },
            EngineError::QueueFull(q) => ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "queue_full",
                message: format!("queue {q} is full: the push would exceed its maxSize"),
            },
            EngineError::EncryptionKeyMissing(_) => ApiError {
                status: StatusCode::CONFLICT,
                code: "encryption_key_missing",
                message: format!("{e}: set QUEEN_ENCRYPTION_KEY (64 hex characters) on the server"),
            },
            EngineError::Decrypt(m) => {
                tracing::error!(error = %m, "decryption failed");
                ApiError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    code: "decryption_failed",
                    message: format!("a stored payload cannot be decrypted: {m}"),
                }
            }
            _ if e.is_unavailable() => ApiError::unavailable(format!("database unavailable: {e}")),
            _ => {
                tracing::error!(error = %e, "internal error");
                ApiError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    code: "internal",
                    message: "internal error".into(),
                }
            }
        }
    }
}
