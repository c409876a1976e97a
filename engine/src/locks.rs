//! Locks and semaphores (`POST /api/v1/locks`, docs/kv.md, "Locks"): leases with a fencing
//! token, kept as rows of the key/value store so that a transaction can be guarded by one (a
//! `required` check of the permit's row at its token, riding on the transaction).
//!
//! The engine checks each operation here and runs the batch as one call of
//! `queen.locks_apply` (sql/functions/locks.sql): one statement, one transaction. That function
//! takes each lock name's advisory lock — the one the key/value store takes for the permits'
//! rows — in one global order, so an acquire judges every slot of a semaphore as the previous
//! writer left them.
//!
//! Cancel-safety: a batch is one statement; a caller that goes away leaves it to commit or roll
//! back whole. An acquire whose answer is lost is safe to send again with the same `owner`.

use queen_wire::Json;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::kv::{KV_TTL_MAX, run_batch_function};
use crate::limits::check_key;

/// Operations in one call at most.
pub const LOCK_OPS_MAX: usize = 100;
/// A lock name's and an owner's length in bytes at most.
pub const LOCK_NAME_MAX: usize = 256;
/// Permits of one semaphore at most.
pub const LOCK_LIMIT_MAX: i64 = 1024;

/// A malformed lock operation: the caller's mistake (400 `lock_bad_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LockRefusal(pub String);

/// A checked batch, as `queen.locks_apply` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct LockBatch {
    ops: Vec<Value>,
}

impl LockBatch {
    /// Checks the operations of a `POST /api/v1/locks` body and normalises them. An acquire
    /// without an `owner` gets a fresh one (answered back), so it is a holder of its own.
    pub fn parse(ops: &[Value]) -> Result<LockBatch, LockRefusal> {
        if ops.len() > LOCK_OPS_MAX {
            return Err(LockRefusal(format!(
                "a call may hold at most {LOCK_OPS_MAX} operations"
            )));
        }
        let ops = ops
            .iter()
            .enumerate()
            .map(|(i, op)| match op {
                Value::Object(o) => {
                    operation(o).map_err(|e| LockRefusal(format!("operations[{i}]: {e}")))
                }
                _ => Err(LockRefusal(format!("operations[{i}] must be an object"))),
            })
            .collect::<Result<Vec<Value>, LockRefusal>>()?;
        Ok(LockBatch { ops })
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The batch as `queen.locks_apply`'s parameter.
    fn param(&self) -> Json<String> {
        Json(Value::Array(self.ops.clone()).to_string())
    }
}

fn operation(o: &Map<String, Value>) -> Result<Value, String> {
    let name = text(o.get("name"), "name", true)?.ok_or_else(|| "`name` is required".to_owned())?;
    match o.get("op").and_then(Value::as_str) {
        Some("acquire") => {
            let owner = match text(o.get("owner"), "owner", false)? {
                Some(owner) => owner.to_owned(),
                None => Uuid::new_v4().to_string(),
            };
            let limit = match o.get("limit") {
                None | Some(Value::Null) => 1,
                Some(v) => integer(v, "limit", 1, LOCK_LIMIT_MAX)?,
            };
            Ok(
                json!({"op": "acquire", "name": name, "ttl": ttl(o)?, "owner": owner,
                      "limit": limit}),
            )
        }
        Some("renew") => Ok(json!({"op": "renew", "name": name, "token": token(o)?,
                                   "ttl": ttl(o)?,
                                   "owner": text(o.get("owner"), "owner", false)?,
                                   "slot": slot(o)?})),
        Some("release") => Ok(json!({"op": "release", "name": name, "token": token(o)?,
                                     "slot": slot(o)?})),
        Some("get") => Ok(json!({"op": "get", "name": name})),
        _ => Err("`op` must be acquire, renew, release or get".into()),
    }
}

/// A name or owner: 1 to [`LOCK_NAME_MAX`] bytes without control characters (and, for a
/// name, without `#`, which separates a name from its slot in the permit's key).
fn text<'a>(v: Option<&'a Value>, what: &str, name: bool) -> Result<Option<&'a str>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        v => check_key(v, what, LOCK_NAME_MAX, name.then_some('#')).map(Some),
    }
}

fn integer(v: &Value, what: &str, min: i64, max: i64) -> Result<i64, String> {
    v.as_i64()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("`{what}` must be an integer from {min} to {max}"))
}

/// The lease: `ttlSeconds`, required (a lock that never expires could never be taken back).
fn ttl(o: &Map<String, Value>) -> Result<i64, String> {
    match o.get("ttlSeconds") {
        Some(v) => integer(v, "ttlSeconds", 1, KV_TTL_MAX),
        None => Err("`ttlSeconds` is required: a lock has no forever".into()),
    }
}

fn token(o: &Map<String, Value>) -> Result<i64, String> {
    match o.get("token") {
        Some(v) => integer(v, "token", 1, i64::MAX),
        None => Err("`token` is required (the last acquire's or renew's)".into()),
    }
}

fn slot(o: &Map<String, Value>) -> Result<Option<i64>, String> {
    match o.get("slot") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => integer(v, "slot", 0, LOCK_LIMIT_MAX - 1).map(Some),
    }
}

impl Engine {
    /// Runs a checked batch of lock operations in one transaction; answers the results array
    /// (JSON text, one element per operation, in order).
    pub async fn locks(&self, batch: &LockBatch) -> Result<String, EngineError> {
        if batch.is_empty() {
            return Ok("[]".into());
        }
        let inner = self.inner();
        let st = inner.st()?;
        run_batch_function(
            inner,
            &st.locks,
            st.cols.locks.results,
            &batch.param(),
            "queen.locks_apply",
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(op: Value) -> Result<Value, LockRefusal> {
        LockBatch::parse(&[op]).map(|b| b.ops[0].clone())
    }

    #[test]
    fn an_acquire_needs_a_lifetime_and_gets_an_owner() {
        assert!(one(json!({"op": "acquire", "name": "a"})).is_err());
        let op = one(json!({"op": "acquire", "name": "a", "ttlSeconds": 5})).ok();
        let owner = op
            .as_ref()
            .and_then(|o| o["owner"].as_str())
            .unwrap_or_default();
        assert!(Uuid::parse_str(owner).is_ok(), "{op:?}");
        assert_eq!(op.map(|o| o["limit"].clone()), Some(json!(1)));
    }

    #[test]
    fn names_that_could_not_be_told_from_their_slot_are_refused() {
        for name in [
            "",
            "a#1",
            "tab\there",
            "\u{85}",
            &"n".repeat(LOCK_NAME_MAX + 1),
        ] {
            assert!(one(json!({"op": "get", "name": name})).is_err(), "{name:?}");
        }
        for bad in [
            json!({"op": "acquire", "name": "a", "ttlSeconds": 5, "limit": 0}),
            json!({"op": "acquire", "name": "a", "ttlSeconds": 5, "limit": 1025}),
            json!({"op": "renew", "name": "a", "ttlSeconds": 5, "token": 0}),
            json!({"op": "release", "name": "a", "token": "1"}),
            json!({"op": "release", "name": "a", "token": 1, "slot": -1}),
            json!({"op": "steal", "name": "a"}),
        ] {
            assert!(one(bad.clone()).is_err(), "{bad}");
        }
    }

    proptest! {
        /// Any JSON object is refused or becomes an operation with the fields
        /// `queen.locks_apply` reads, of the types it reads them as.
        #[test]
        fn any_operation_is_refused_or_well_formed(
            op in "acquire|renew|release|get",
            name in prop_oneof![Just(json!("a")), any::<i64>().prop_map(|n| json!(n)), ".{0,6}".prop_map(|s| json!(s))],
            ttl in prop_oneof![Just(Value::Null), any::<i64>().prop_map(|n| json!(n)), any::<f64>().prop_map(|f| json!(f))],
            token in prop_oneof![Just(Value::Null), any::<i64>().prop_map(|n| json!(n)), Just(json!("7"))],
            slot in prop_oneof![Just(Value::Null), any::<i64>().prop_map(|n| json!(n))],
            limit in prop_oneof![Just(Value::Null), any::<i64>().prop_map(|n| json!(n))],
        ) {
            let raw = json!({"op": op, "name": name, "ttlSeconds": ttl, "token": token,
                             "slot": slot, "limit": limit});
            if let Ok(o) = one(raw) {
                prop_assert!(o["name"].as_str().is_some_and(|n| !n.contains('#')));
                for f in ["ttl", "token", "slot", "limit"] {
                    prop_assert!(o.get(f).is_none_or(|v| v.is_null() || v.is_i64()), "{f}: {o}");
                }
                if o["op"] == "acquire" {
                    prop_assert!(o["owner"].is_string());
                    prop_assert!(o["ttl"].as_i64().is_some_and(|t| t >= 1));
                }
            }
        }
    }
}
