//! Stream processing for Queen's clients (docs/streams.md).
//!
//! A client's `Stream` runs its operators (map, filter, windows, reducers, gates) in the
//! client. The server keeps three things for it:
//!
//! * **queries**: a stream registers by name with a hash of its operator chain
//!   ([`Engine::stream_register`]); a changed chain is refused unless the caller asks to reset
//!   the query's state;
//! * **state**: JSON values per (query, source partition, key), read by
//!   [`Engine::stream_state`];
//! * **cycles**: a cycle's state changes, its output pushed to a sink queue and the ack of the
//!   source messages it consumed, committed together ([`Engine::stream_cycle`]). A cycle is a
//!   transaction (`engine/src/transaction.rs`) with the state changes riding on it, applied
//!   first under an advisory lock on (query, partition): a failed ack (a lease that is no
//!   longer live) or push rolls the state back, so a redelivered batch finds the state it
//!   started from — exactly-once processing for what the cycle writes.
//!
//! Cancel-safety: each call is one statement or one pipeline segment; a caller that stops
//! waiting leaves it to run to its commit or rollback, never half-applied.

use queen_wire::{Client, Json};
use serde_json::Value;
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::limits::{STREAM_KEY_MAX, STREAM_STATE_OPS_MAX, check_name, check_text};
use crate::model::{AckItem, PushOutcome, Riders, TxOperation, TxResult};
use crate::push::check_json_escapes;

/// A query's registration.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The query's name (the client's `queryId`).
    pub name: String,
    /// The queue it consumes.
    pub source_queue: String,
    /// The queue its output goes to, if any.
    pub sink_queue: Option<String>,
    /// Hash of its operator chain, as the client computes it.
    pub config_hash: String,
    /// Drop the state of a query whose chain changed, instead of refusing the registration.
    pub reset: bool,
}

impl Registration {
    /// Checks the names and the hash (what the database stores and indexes).
    pub fn check(&self) -> Result<(), EngineError> {
        for (what, name) in [
            ("query", Some(&self.name)),
            ("source queue", Some(&self.source_queue)),
            ("sink queue", self.sink_queue.as_ref()),
        ] {
            if let Some(n) = name {
                check_name(what, n).map_err(EngineError::InvalidName)?;
            }
        }
        state_key(&self.config_hash, "config_hash")
    }
}

/// A registered query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The server's id of the query (what state reads and cycles name).
    pub query_id: Uuid,
    /// Registered now, for the first time.
    pub fresh: bool,
    /// Its chain changed and its state was dropped (`reset`).
    pub reset: bool,
}

/// Which state rows of one (query, partition) to read.
#[derive(Debug, Clone, Default)]
pub struct StateRead {
    /// Only these keys (all when empty).
    pub keys: Vec<String>,
    /// Only keys starting with this.
    pub key_prefix: Option<String>,
    /// Only windows whose `windowEnd` (epoch ms) is at or before this.
    pub ripe_at_or_before: Option<i64>,
}

impl StateRead {
    /// Checks the keys and the prefix.
    pub fn check(&self) -> Result<(), EngineError> {
        if self.keys.len() > STREAM_STATE_OPS_MAX {
            return Err(EngineError::Invalid(format!(
                "a state read may name at most {STREAM_STATE_OPS_MAX} keys"
            )));
        }
        for k in &self.keys {
            state_key(k, "keys[]")?;
        }
        if let Some(p) = &self.key_prefix {
            check_text("key_prefix", p, STREAM_KEY_MAX).map_err(EngineError::Invalid)?;
        }
        Ok(())
    }
}

/// A cycle's state changes, checked: applied in order. Held as the JSON text the database
/// function takes.
#[derive(Debug, Clone, PartialEq)]
pub struct StateOps {
    text: String,
    len: usize,
}

impl Default for StateOps {
    fn default() -> StateOps {
        StateOps {
            text: "[]".into(),
            len: 0,
        }
    }
}

impl StateOps {
    /// Checks `[{"type": "upsert", "key", "value"} | {"type": "delete", "key"}]`.
    pub fn parse(ops: Vec<Value>) -> Result<StateOps, EngineError> {
        if ops.len() > STREAM_STATE_OPS_MAX {
            return Err(EngineError::Invalid(format!(
                "a cycle may hold at most {STREAM_STATE_OPS_MAX} state operations"
            )));
        }
        let len = ops.len();
        let mut out = Vec::with_capacity(len);
        for (i, op) in ops.into_iter().enumerate() {
            let Value::Object(mut o) = op else {
                return Err(EngineError::Invalid(format!(
                    "state_ops[{i}] must be an object"
                )));
            };
            let key = match o.remove("key") {
                Some(Value::String(k)) => {
                    state_key(&k, &format!("state_ops[{i}].key"))?;
                    k
                }
                _ => {
                    return Err(EngineError::Invalid(format!(
                        "state_ops[{i}].key must be a string"
                    )));
                }
            };
            let op = match o.get("type").and_then(Value::as_str) {
                Some("upsert") => {
                    let value = o
                        .remove("value")
                        .unwrap_or(Value::Object(Default::default()));
                    serde_json::json!({"type": "upsert", "key": key, "value": value})
                }
                Some("delete") => serde_json::json!({"type": "delete", "key": key}),
                _ => {
                    return Err(EngineError::Invalid(format!(
                        "state_ops[{i}].type must be upsert or delete"
                    )));
                }
            };
            out.push(op);
        }
        // Values are stored as jsonb, which cannot hold NUL (keys were checked above).
        let text = Value::Array(out).to_string();
        check_json_escapes(text.as_bytes())
            .map_err(|e| EngineError::Invalid(format!("state_ops values hold {e}")))?;
        Ok(StateOps { text, len })
    }

    /// Operations held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The state changes of a cycle as they ride on its transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRider {
    pub(crate) query_id: Uuid,
    pub(crate) partition_id: Uuid,
    pub(crate) ops: Json<String>,
}

/// The acknowledgement of a cycle: the last source message it consumed (every message of the
/// batch before it is committed with it: acks are offset commits).
#[derive(Debug, Clone)]
pub struct CycleAck {
    /// The acked message, as the ack routes take it (its partition is the cycle's).
    pub item: AckItem,
    /// How many messages the cycle consumed (reported back, as Queen's clients expect).
    pub count: u64,
}

/// One cycle: what a client commits after running its operators over a batch.
#[derive(Debug, Clone)]
pub struct Cycle {
    /// The query, as [`Engine::stream_register`] answered it.
    pub query_id: Uuid,
    /// The source partition whose batch (or idle windows) the cycle processed.
    pub partition_id: Uuid,
    /// State changes.
    pub state: StateOps,
    /// Output, pushed to its queues.
    pub push: Vec<crate::model::PushItem>,
    /// The source ack, if the cycle consumed messages (an idle flush does not).
    pub ack: Option<CycleAck>,
}

/// What a cycle did.
#[derive(Debug, Clone)]
pub struct CycleOutcome {
    /// Whether it committed.
    pub success: bool,
    /// Why not (nothing was applied).
    pub error: Option<String>,
    /// State operations applied (all of the cycle's, when it committed).
    pub state_ops_applied: usize,
    /// The pushed items' outcomes.
    pub pushed: Vec<PushOutcome>,
    /// The ack's outcome, with the count the cycle reported.
    pub ack: Option<(crate::model::AckOutcome, u64)>,
}

/// A state key: 1 to [`STREAM_KEY_MAX`] bytes, no NUL (text cannot hold it). Control
/// characters are allowed: the clients separate a key's parts with U+001F.
fn state_key(k: &str, what: &str) -> Result<(), EngineError> {
    if k.is_empty() {
        return Err(EngineError::Invalid(format!("{what} must not be empty")));
    }
    check_text(what, k, STREAM_KEY_MAX).map_err(EngineError::Invalid)
}

impl Engine {
    /// Registers a query, or finds it. A query registered before with another `config_hash` is
    /// refused ([`EngineError::Conflict`]) unless `reset`, which drops its state.
    pub async fn stream_register(&self, r: &Registration) -> Result<Registered, EngineError> {
        r.check()?;
        let inner = self.inner();
        let st = inner.st()?;
        let rows = inner
            .pool()
            .query(
                &st.stream_register,
                &[
                    &r.name,
                    &r.source_queue,
                    &r.sink_queue,
                    &r.config_hash,
                    &r.reset,
                ],
            )
            .await?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| EngineError::Internal("queen.stream_register answered no row".into()))?;
        let c = st.cols.stream_register;
        if row.get::<bool>(c.mismatch)? {
            return Err(EngineError::Conflict(format!(
                "config_hash mismatch: the operator chain of query `{}` changed; register \
                 with reset to drop its state, or use a new query name",
                r.name
            )));
        }
        Ok(Registered {
            query_id: row.get(c.query_id)?,
            fresh: row.get(c.fresh)?,
            reset: row.get(c.did_reset)?,
        })
    }

    /// The state rows of one (query, partition) that `read` selects: a JSON array of
    /// `{key, value, updated_at}` in key order.
    pub async fn stream_state(
        &self,
        query_id: Uuid,
        partition_id: Uuid,
        read: StateRead,
    ) -> Result<String, EngineError> {
        read.check()?;
        let keys = read.keys;
        let prefix = read.key_prefix.filter(|p| !p.is_empty());
        let inner = self.inner();
        let st = inner.st()?;
        let rows = inner
            .pool()
            .query(
                &st.stream_state_get,
                &[
                    &query_id,
                    &partition_id,
                    &keys,
                    &prefix,
                    &read.ripe_at_or_before,
                ],
            )
            .await?;
        crate::kv::json_answer(
            rows.into_iter().next(),
            st.cols.stream_state_get.rows,
            "queen.stream_state_get",
        )
    }

    /// Commits a cycle: its state changes, pushes and ack in one transaction, or nothing
    /// (`success: false` with the reason: a lease no longer live, a duplicate push, a query or
    /// partition gone).
    pub async fn stream_cycle(&self, cycle: Cycle) -> Result<CycleOutcome, EngineError> {
        let state_ops = cycle.state.len();
        let mut ops = Vec::new();
        if !cycle.push.is_empty() {
            ops.push(TxOperation::Push(cycle.push));
        }
        let count = cycle.ack.as_ref().map(|a| a.count);
        if let Some(a) = cycle.ack {
            ops.push(TxOperation::Ack(a.item));
        }
        let riders = Riders {
            stream: Some(StreamRider {
                query_id: cycle.query_id,
                partition_id: cycle.partition_id,
                ops: Json(cycle.state.text),
            }),
            ..Riders::default()
        };
        let out = self
            .transaction_with_riders(ops, Vec::new(), &riders)
            .await?;
        if !out.success {
            return Ok(CycleOutcome {
                success: false,
                error: out.error,
                state_ops_applied: 0,
                pushed: Vec::new(),
                ack: None,
            });
        }
        let mut pushed = Vec::new();
        let mut ack = None;
        for r in out.results {
            match r {
                TxResult::Push(p) => pushed = p,
                TxResult::Ack(a) => ack = Some((a, count.unwrap_or(1))),
            }
        }
        Ok(CycleOutcome {
            success: true,
            error: None,
            state_ops_applied: state_ops,
            pushed,
            ack,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn state_ops_are_checked() {
        let ok = StateOps::parse(vec![
            json!({"type": "upsert", "key": "a\u{1f}b", "value": {"acc": 1}}),
            json!({"type": "delete", "key": "c"}),
            json!({"type": "upsert", "key": "d"}),
        ])
        .expect("valid operations");
        assert_eq!(ok.len(), 3);
        let text: Value = serde_json::from_str(&ok.text).expect("JSON text");
        assert_eq!(text[2]["value"], json!({}));
        for bad in [
            json!("upsert"),
            json!({"type": "upsert"}),
            json!({"type": "merge", "key": "a"}),
            json!({"type": "upsert", "key": ""}),
            json!({"type": "upsert", "key": "a\u{0}"}),
            json!({"type": "upsert", "key": "a", "value": {"x": ["\u{0}"]}}),
            json!({"type": "upsert", "key": "a", "value": {"\u{0}": 1}}),
            json!({"type": "delete", "key": "k".repeat(STREAM_KEY_MAX + 1)}),
        ] {
            assert!(
                matches!(
                    StateOps::parse(vec![bad.clone()]),
                    Err(EngineError::Invalid(_))
                ),
                "{bad} was taken"
            );
        }
    }
}
