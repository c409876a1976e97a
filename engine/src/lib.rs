//! Queue semantics on top of the wire client.
//!
//! This crate owns everything that knows what a queue is: the schema and its migrations
//! ([`schema`]), and (as they land) the push, pop, ack, transaction and lease operations as
//! explicit state machines, request coalescing, caches, wake-ups, the disk buffer and background
//! jobs. It speaks to PostgreSQL only through `queen-wire` and knows nothing of HTTP.

pub mod error;
pub mod schema;

pub use error::EngineError;
