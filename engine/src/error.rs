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
            EngineError::Invalid(_) | EngineError::Buffer(_) => false,
            EngineError::ShuttingDown => true,
        }
    }

    /// The SQLSTATE of a database error.
    pub fn code(&self) -> Option<&str> {
        match self {
            EngineError::Db(e) => e.code(),
            _ => None,
        }
    }
}
