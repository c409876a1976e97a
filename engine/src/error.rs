//! Engine errors.

/// Errors of the queue engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The database failed (see [`queen_wire::Error::is_connection`] for reachability).
    #[error(transparent)]
    Db(#[from] queen_wire::Error),
    /// A schema migration failed.
    #[error("migration {name} failed: {source}")]
    Migration {
        /// File name of the migration.
        name: &'static str,
        /// Why.
        source: queen_wire::Error,
    },
}

impl EngineError {
    /// True when the database is unreachable (as opposed to rejecting the request).
    pub fn is_unavailable(&self) -> bool {
        match self {
            EngineError::Db(e) => e.is_connection(),
            EngineError::Migration { source, .. } => source.is_connection(),
        }
    }
}
