//! Typed errors of the wire client.
//!
//! Two distinctions matter to callers and are kept explicit:
//!
//! * [`Error::Db`] is an error the server reported for one statement (it carries the SQLSTATE and
//!   the rest of the ErrorResponse). The connection is fine and later segments of the same pipeline
//!   still run.
//! * [`Error::is_connection`] is true for every error that means "the database could not be
//!   reached or the connection died": the outcome of in-flight work is unknown. The engine uses this
//!   distinction to fail over to its disk buffer; a data error must never be buffered.

use std::fmt;
use std::io;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorFields;

use crate::sqlstate;

/// A boxed error from a value conversion.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every error the wire client returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server rejected a statement.
    #[error(transparent)]
    Db(Box<DbError>),
    /// The socket failed (refused, reset, closed) while connecting or during a request.
    #[error("connection lost: {0}")]
    Io(#[from] io::Error),
    /// The connection task has stopped; the request was not (or not completely) answered.
    #[error("connection closed")]
    Closed,
    /// Connecting or a request did not finish in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// No connection of the pool is usable right now.
    #[error("no database connection available")]
    Unavailable,
    /// The server sent something the protocol does not allow at that point.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Authentication failed on our side (unsupported method, missing password, bad SCRAM proof).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// TLS could not be set up: the server refused it where the settings require it, or the
    /// handshake failed (an untrusted certificate, one for another host).
    #[error("TLS: {0}")]
    Tls(String),
    /// The server takes no writes (a hot standby, or `default_transaction_read_only` on) and
    /// the connection was asked for one that does (`target_session_attrs=read-write`). Like an
    /// unreachable server: a failover may be under way.
    #[error(
        "the server accepts no writes (a hot standby, or default_transaction_read_only is on) \
         and target_session_attrs=read-write"
    )]
    ReadOnly,
    /// A connection string or environment setting is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A parameter could not be encoded, or does not fit the statement.
    #[error("cannot encode parameter {index}: {reason}")]
    Encode {
        /// Zero-based parameter index.
        index: usize,
        /// Why (written into the message, so not also a `source`).
        reason: BoxError,
    },
    /// A column could not be decoded into the requested Rust type.
    #[error("cannot decode column {column}: {reason}")]
    Decode {
        /// Zero-based column index (`usize::MAX` when no column matched).
        column: usize,
        /// Why (written into the message, so not also a `source`).
        reason: BoxError,
    },
    /// The pool was shut down.
    #[error("pool closed")]
    PoolClosed,
}

impl Error {
    /// True when the error means the database is unreachable or the connection broke, so the
    /// outcome of the request is unknown. False for errors the server reported for a statement.
    pub fn is_connection(&self) -> bool {
        match self {
            Error::Io(_)
            | Error::Closed
            | Error::Timeout(_)
            | Error::Unavailable
            | Error::ReadOnly => true,
            // The server is shutting down or restarting, or takes no writes now (a standby, maybe
            // mid-failover): as good as unreachable.
            Error::Db(db) => db.is_connection_class(),
            _ => false,
        }
    }

    /// The server error, if this is one.
    pub fn as_db(&self) -> Option<&DbError> {
        match self {
            Error::Db(e) => Some(e),
            _ => None,
        }
    }

    /// The SQLSTATE code, if this is a server error.
    pub fn code(&self) -> Option<&str> {
        self.as_db().map(|e| e.code.as_str())
    }

    pub(crate) fn protocol(msg: impl Into<String>) -> Error {
        Error::Protocol(msg.into())
    }
}

/// A clonable copy of an error, used when one failure must be reported to many waiters (a lost
/// connection fails every pipeline in flight).
pub(crate) fn replicate(e: &Error) -> Error {
    match e {
        Error::Db(db) => Error::Db(db.clone()),
        Error::Io(io) => Error::Io(io::Error::new(io.kind(), io.to_string())),
        Error::Closed => Error::Closed,
        Error::Timeout(w) => Error::Timeout(w),
        Error::Unavailable => Error::Unavailable,
        Error::Protocol(m) => Error::Protocol(m.clone()),
        Error::Auth(m) => Error::Auth(m.clone()),
        Error::Tls(m) => Error::Tls(m.clone()),
        Error::ReadOnly => Error::ReadOnly,
        Error::Config(m) => Error::Config(m.clone()),
        Error::PoolClosed => Error::PoolClosed,
        Error::Encode { index, reason } => Error::Encode {
            index: *index,
            reason: reason.to_string().into(),
        },
        Error::Decode { column, reason } => Error::Decode {
            column: *column,
            reason: reason.to_string().into(),
        },
    }
}

/// Severity of a server error or notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// `ERROR`
    Error,
    /// `FATAL`
    Fatal,
    /// `PANIC`
    Panic,
    /// `WARNING`
    Warning,
    /// `NOTICE`
    Notice,
    /// `DEBUG`
    Debug,
    /// `INFO`
    Info,
    /// `LOG`
    Log,
}

impl Severity {
    fn parse(s: &str) -> Severity {
        match s {
            "FATAL" => Severity::Fatal,
            "PANIC" => Severity::Panic,
            "WARNING" => Severity::Warning,
            "NOTICE" => Severity::Notice,
            "DEBUG" => Severity::Debug,
            "INFO" => Severity::Info,
            "LOG" => Severity::Log,
            _ => Severity::Error,
        }
    }
}

/// An ErrorResponse (or NoticeResponse) from the server, field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    /// Severity (non-localized `V` field when present).
    pub severity: Severity,
    /// Five-character SQLSTATE, e.g. `23505`.
    pub code: String,
    /// Primary message.
    pub message: String,
    /// Optional detail.
    pub detail: Option<String>,
    /// Optional hint.
    pub hint: Option<String>,
    /// Schema of the object involved.
    pub schema: Option<String>,
    /// Table of the object involved.
    pub table: Option<String>,
    /// Column involved.
    pub column: Option<String>,
    /// Constraint violated.
    pub constraint: Option<String>,
}

impl DbError {
    pub(crate) fn parse(mut fields: ErrorFields<'_>) -> Result<DbError, Error> {
        let mut e = DbError {
            severity: Severity::Error,
            code: String::new(),
            message: String::new(),
            detail: None,
            hint: None,
            schema: None,
            table: None,
            column: None,
            constraint: None,
        };
        let mut localized_severity = None;
        while let Some(f) = fields
            .next()
            .map_err(|e| Error::protocol(format!("bad error fields: {e}")))?
        {
            let v = String::from_utf8_lossy(f.value_bytes()).into_owned();
            match f.type_() {
                b'V' => e.severity = Severity::parse(&v),
                b'S' => localized_severity = Some(v),
                b'C' => e.code = v,
                b'M' => e.message = v,
                b'D' => e.detail = Some(v),
                b'H' => e.hint = Some(v),
                b's' => e.schema = Some(v),
                b't' => e.table = Some(v),
                b'c' => e.column = Some(v),
                b'n' => e.constraint = Some(v),
                _ => {}
            }
        }
        if let Some(s) = localized_severity {
            // Servers before 9.6 send only the localized field.
            if e.severity == Severity::Error {
                e.severity = Severity::parse(&s);
            }
        }
        Ok(e)
    }

    /// Errors that mean the server is going away or cannot serve: admin shutdown, crash
    /// recovery, too many connections, cannot connect now (SQLSTATE classes 08 and 57P0x, 53300),
    /// and a write refused as read-only (25006: the server is, or has become, a standby).
    pub fn is_connection_class(&self) -> bool {
        self.code.starts_with(sqlstate::CONNECTION_EXCEPTION_CLASS)
            || [
                sqlstate::ADMIN_SHUTDOWN,
                sqlstate::CRASH_SHUTDOWN,
                sqlstate::CANNOT_CONNECT_NOW,
                sqlstate::TOO_MANY_CONNECTIONS,
                sqlstate::READ_ONLY_SQL_TRANSACTION,
            ]
            .contains(&self.code.as_str())
    }

    /// `23505`: a unique constraint was violated.
    pub fn is_unique_violation(&self) -> bool {
        self.code == sqlstate::UNIQUE_VIOLATION
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}: {}", self.severity, self.code, self.message)?;
        if let Some(d) = &self.detail {
            write!(f, " (detail: {d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DbError {}

impl From<DbError> for Error {
    fn from(e: DbError) -> Error {
        Error::Db(Box::new(e))
    }
}
