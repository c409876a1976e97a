//! An async PostgreSQL client built for pipelining.
//!
//! * [`Connection`]: a handle to a socket-owning task. Callers submit whole [`Pipeline`]s (many
//!   Bind/Execute, `Sync` where the caller puts it); many pipelines can be in flight on one
//!   connection, and reading and writing run concurrently.
//! * [`Pool`]: a fixed set of connections with health checks and reconnection. A pipeline can be
//!   sent to the least-loaded connection without checking one out; exclusive checkout is there for
//!   session state.
//! * [`Listener`]: LISTEN/NOTIFY on a dedicated connection, as a stream of events.
//! * [`embedded`]: launches a private PostgreSQL from the binaries on the machine.
//!
//! Statements are prepared once as named statements ([`Client::prepare`]); parameters and
//! results travel in binary ([`types`]). Errors are typed ([`Error`], [`DbError`]), and
//! [`Error::is_connection`] separates "the database is unreachable" from "the statement failed".
//!
//! The crate knows nothing of queues.

mod client;
mod config;
mod connection;
mod error;
mod notify;
mod pipeline;
mod pool;
pub mod sqlstate;
mod statement;
mod tls;
pub mod types;

#[cfg(feature = "embedded")]
pub mod embedded;

pub use client::Client;
pub use config::{Config, Host, TargetSessionAttrs};
pub use connection::{CancelToken, Connection};
pub use error::{BoxError, DbError, Error, Severity};
pub use notify::{Event, Listener, Notification, quote_ident};
pub use pipeline::{Pipeline, SegmentResult};
pub use pool::{Pool, PoolConfig, PoolStatus, PooledConnection};
pub use statement::{Column, ColumnIndex, QueryResult, Row, RowIndex, Statement};
pub use tls::SslMode;
pub use types::{FromSql, Json, Timestamp, ToSql};
