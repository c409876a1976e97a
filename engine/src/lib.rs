//! Queue semantics on top of the wire client.
//!
//! This crate owns everything that knows what a queue is: the schema and its migrations
//! ([`schema`]), and the push, pop, ack, lease and transaction operations. Each operation is an
//! explicit state machine (documented in its module) whose database work is one statement — a
//! server-side function from `sql/functions.sql` — so a push, pop or ack costs one round trip
//! (a push two on the first sight of a partition). Concurrent pushes and acks are folded into
//! shared statements by [`batch`]; long-poll pops wait on the [`wakeup`] hub.
//!
//! It speaks to PostgreSQL only through `queen-wire` and knows nothing of HTTP.

mod ack;
pub mod admin;
pub mod analytics;
pub mod batch;
pub mod buffer;
mod cache;
pub mod crypto;
mod engine;
pub mod ephemeral;
pub mod error;
pub mod inspect;
mod jobs;
pub mod kv;
pub mod limits;
pub mod locks;
pub mod maintenance;
pub mod model;
mod payload;
mod pop;
mod push;
pub mod reads;
pub mod retention;
pub mod schema;
mod statements;
pub mod streams;
mod sweeper;
pub mod timers;
mod transaction;
mod txid;
pub mod wakeup;

pub use batch::BatchConfig;
pub use buffer::{BufferConfig, BufferStatus};
pub use crypto::Cipher;
pub use engine::{Engine, EngineConfig, Metrics, Pools};
pub use error::EngineError;
pub use limits::check_name;
pub use model::*;
pub use push::check_json_escapes;
/// Timestamps as the engine reads and writes them (microseconds since the Unix epoch, UTC).
pub use queen_wire::Timestamp;
