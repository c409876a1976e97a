//! Engine errors.

use std::sync::Arc;

use queen_wire::sqlstate;

/// SQLSTATEs the engine's own SQL functions raise (`sql/functions/01_common.sql` lists them
/// all: QU001–QU003 are only ever reported as a transaction's rollback reason).
pub(crate) mod raised {
    /// The class of every refusal the functions raise: the request broke a queue rule.
    pub(crate) const CLASS: &str = "QU";
    /// A plaintext payload for a queue with `encryptionEnabled` (DETAIL: the queue).
    pub(crate) const PLAINTEXT_FOR_ENCRYPTED_QUEUE: &str = "QU004";
    /// The push would exceed the queue's `maxSize` (DETAIL: the queue).
    pub(crate) const QUEUE_FULL: &str = "QU005";
    /// A partition of the push no longer exists (the server's cache is stale).
    pub(crate) const PARTITION_GONE: &str = "QU006";
    /// A key/value operation marked `required` did not apply (DETAIL: a JSON object).
    pub(crate) const KV_PRECONDITION: &str = "QU007";
}

/// Errors of the queue engine. Cheap to clone: one failed coalesced statement is reported to
/// every request that was in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The database failed (see [`EngineError::is_unavailable`] for reachability).
    #[error(transparent)]
    Db(Arc<queen_wire::Error>),
    /// A schema migration failed.
    #[error("migration {name} failed: {cause}")]
    Migration {
        /// File name of the migration.
        name: &'static str,
        /// Why (written into the message, so not also a `source`).
        cause: Arc<queen_wire::Error>,
    },
    /// The request is invalid: the caller's mistake (the HTTP layer answers 400).
    #[error("{0}")]
    Invalid(String),
    /// A queue, partition, namespace or task name breaks the naming rules (the caller's
    /// mistake; checked once, here, for every route that takes one).
    #[error("{0}")]
    InvalidName(String),
    /// The request raced a change it depends on, e.g. its queue was deleted while it ran
    /// (the HTTP layer answers 409); repeating it may succeed.
    #[error("{0}")]
    Conflict(String),
    /// The database or the engine broke an invariant the engine relies on: a bug of the server,
    /// never of the caller (the HTTP layer logs it and answers 500).
    #[error("internal error: {0}")]
    Internal(String),
    /// The disk buffer failed (the push was not accepted).
    #[error("disk buffer: {0}")]
    Buffer(String),
    /// The push had to go to the disk buffer and the buffer is at its size limit (bytes);
    /// nothing was stored.
    #[error("the disk buffer is full ({0} bytes)")]
    BufferFull(u64),
    /// A push would take the queue past its `maxSize`; nothing was stored.
    #[error("queue {0} is full")]
    QueueFull(String),
    /// The queue encrypts payloads and this server has no key (`QUEEN_ENCRYPTION_KEY`).
    #[error("queue {0} requires encryption but no encryption key is configured")]
    EncryptionKeyMissing(String),
    /// A stored payload could not be decrypted (wrong key or damaged data).
    #[error("message payload cannot be decrypted: {0}")]
    Decrypt(String),
    /// A key/value batch was refused before it ran (the caller's mistake).
    #[error(transparent)]
    Kv(#[from] crate::kv::KvRefusal),
    /// A lock operation was refused before it ran (the caller's mistake).
    #[error(transparent)]
    Lock(#[from] crate::locks::LockRefusal),
    /// A timer operation was refused before it ran (the caller's mistake).
    #[error(transparent)]
    Timer(#[from] crate::timers::TimerRefusal),
    /// An ephemeral queue call was refused (see [`crate::ephemeral::EphemeralRefusal`]).
    #[error(transparent)]
    Ephemeral(#[from] crate::ephemeral::EphemeralRefusal),
    /// A key/value operation marked `required` did not apply: the batch was rolled back.
    #[error(transparent)]
    KvPrecondition(crate::kv::KvFailed),
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    ShuttingDown,
}

impl From<queen_wire::Error> for EngineError {
    fn from(e: queen_wire::Error) -> EngineError {
        EngineError::Db(Arc::new(e))
    }
}

impl EngineError {
    /// True when the database is unreachable (as opposed to rejecting the request).
    pub fn is_unavailable(&self) -> bool {
        match self {
            EngineError::Db(e) => e.is_connection(),
            EngineError::Migration { cause, .. } => cause.is_connection(),
            EngineError::Invalid(_)
            | EngineError::InvalidName(_)
            | EngineError::Conflict(_)
            | EngineError::Internal(_)
            | EngineError::Buffer(_)
            | EngineError::BufferFull(_)
            | EngineError::QueueFull(_)
            | EngineError::EncryptionKeyMissing(_)
            | EngineError::Decrypt(_)
            | EngineError::Kv(_)
            | EngineError::Lock(_)
            | EngineError::Timer(_)
            | EngineError::Ephemeral(_)
            | EngineError::KvPrecondition(_) => false,
            EngineError::ShuttingDown => true,
        }
    }

    /// True for refusals that go away by themselves or by configuration (a full queue drains, a
    /// key gets configured): the buffer replay waits and retries these rather than drop records
    /// it has already accepted.
    pub fn is_transient_refusal(&self) -> bool {
        matches!(
            self,
            EngineError::QueueFull(_) | EngineError::EncryptionKeyMissing(_)
        )
    }

    /// True when a later attempt may succeed unchanged: the database is unreachable, a
    /// transient refusal, or a database error that says nothing about the data — transaction
    /// rollbacks (class 40: deadlock, serialization), insufficient resources (53), a lock or
    /// statement timeout (55P03, 57014), a system error (58).
    pub fn is_retryable(&self) -> bool {
        self.is_unavailable()
            || self.is_transient_refusal()
            || self.code().is_some_and(|c| {
                [
                    sqlstate::TRANSACTION_ROLLBACK_CLASS,
                    sqlstate::INSUFFICIENT_RESOURCES_CLASS,
                    sqlstate::SYSTEM_ERROR_CLASS,
                ]
                .iter()
                .any(|class| c.starts_with(class))
                    || c == sqlstate::LOCK_NOT_AVAILABLE
                    || c == sqlstate::QUERY_CANCELED
            })
    }

    /// True when the database cancelled the statement: it ran past the statement timeout (the
    /// server cancels no statement whose answer someone still waits for). It was rolled back.
    pub fn is_statement_timeout(&self) -> bool {
        self.code() == Some(sqlstate::QUERY_CANCELED)
    }

    /// The SQLSTATE of a database error.
    pub fn code(&self) -> Option<&str> {
        match self {
            EngineError::Db(e) => e.code(),
            _ => None,
        }
    }
}
