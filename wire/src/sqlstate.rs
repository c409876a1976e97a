//! The SQLSTATE codes this crate and its users act on, named (PostgreSQL's "Appendix A. Error
//! Codes"). A [`DbError`](crate::DbError)'s `code` compares against these.

/// Class 08: connection exception (any code starting with it).
pub const CONNECTION_EXCEPTION_CLASS: &str = "08";
/// `25006`: a write in a read-only transaction (a hot standby, `default_transaction_read_only`).
pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";
/// `23505`: a unique constraint was violated.
pub const UNIQUE_VIOLATION: &str = "23505";
/// Class 40: transaction rollback (serialization failure, deadlock).
pub const TRANSACTION_ROLLBACK_CLASS: &str = "40";
/// `42P07`: the relation already exists.
pub const DUPLICATE_TABLE: &str = "42P07";
/// Class 53: insufficient resources.
pub const INSUFFICIENT_RESOURCES_CLASS: &str = "53";
/// `53300`: too many connections.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// `55P03`: a lock could not be taken (`lock_timeout`, `NOWAIT`).
pub const LOCK_NOT_AVAILABLE: &str = "55P03";
/// `57014`: the statement was cancelled (`statement_timeout` or a cancel request).
pub const QUERY_CANCELED: &str = "57014";
/// `57P01`: the server is shutting down (administrator command).
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// `57P02`: the server is restarting after a crash of another backend.
pub const CRASH_SHUTDOWN: &str = "57P02";
/// `57P03`: the server is starting up or in recovery.
pub const CANNOT_CONNECT_NOW: &str = "57P03";
/// Class 58: system error (external to PostgreSQL).
pub const SYSTEM_ERROR_CLASS: &str = "58";
