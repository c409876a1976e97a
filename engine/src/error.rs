//! Engine errors.

use std::sync::Arc;

/// Errors of the queue engine. Cheap to clone: one failed coalesced statement is reported to
/// every request that was in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The database failed (see [`EngineError::is_unavailable`] for reachability).
    #[error(transparent)]
    Db(Arc<queen_wire::Error>),
    /// A schema migration failed.
    #[error("migration {name} failed: {source}")]
    Migration {
        /// File name of the migration.
        name: &'static str,
        /// Why.
        source: Arc<queen_wire::Error>,
    },
    /// The request is invalid (the caller should answer 400).
    #[error("{0}")]
    Invalid(String),
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
            EngineError::Migration { source, .. } => source.is_connection(),
            EngineError::Invalid(_)
            | EngineError::Buffer(_)
            | EngineError::BufferFull(_)
            | EngineError::QueueFull(_)
            | EngineError::EncryptionKeyMissing(_)
            | EngineError::Decrypt(_) => false,
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
                ["40", "53", "58"].iter().any(|class| c.starts_with(class))
                    || c == "55P03"
                    || c == "57014"
            })
    }

    /// The SQLSTATE of a database error.
    pub fn code(&self) -> Option<&str> {
        match self {
            EngineError::Db(e) => e.code(),
            _ => None,
        }
    }
}
