//! The key/value store (`POST /api/v1/kv`, docs/kv.md): small JSON values under (namespace,
//! key), each with a version and an expiry, written and read in batches of operations.
//!
//! The engine checks every operation here — names, the expiry rule, types, bounds — and turns
//! the batch into one normalised JSON array, so `queen.kv_apply` (sql/functions/kv.sql) runs
//! only well-formed work: one statement, one transaction, one round trip per batch. The
//! function takes the batch's write locks first, in one global order, so concurrent batches
//! judge their conditions one after the other and never deadlock.
//!
//! Cancel-safety: a batch is one statement; a caller that goes away leaves it to commit or roll
//! back whole.

use queen_wire::{Client, Json};
use serde_json::{Map, Value, json};

use std::sync::Weak;

use crate::engine::{Engine, Inner};
use crate::error::{EngineError, raised};
use crate::limits::check_key;
use crate::push::check_json_escapes;

/// Operations in one batch at most.
pub const KV_OPS_MAX: usize = 100;
/// Keys of one `getMany` at most.
pub const KV_KEYS_MAX: usize = 100;
/// Rows of one `getPrefix` page: the default and the most (a larger `limit` is clamped).
pub const KV_PAGE_DEFAULT: i64 = 100;
/// See [`KV_PAGE_DEFAULT`].
pub const KV_PAGE_MAX: i64 = 1000;
/// A namespace's length in bytes at most.
pub const KV_NS_MAX: usize = 128;
/// A key's (or prefix's) length in bytes at most.
pub const KV_KEY_MAX: usize = 512;
/// A value's size as JSON text, in bytes, at most.
pub const KV_VALUE_MAX: usize = 64 * 1024;
/// The longest expiry, in seconds (ten years); a longer one is refused — use `forever`.
pub const KV_TTL_MAX: i64 = 10 * 365 * 24 * 3600;

/// Why a KV batch was refused before it ran: the caller's mistake (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvRefusal {
    /// A malformed operation: an unknown op, a bad name, a field of the wrong type or range.
    #[error("{0}")]
    BadRequest(String),
    /// A write without exactly one of `ttlSeconds` and `forever: true`.
    #[error("{0}")]
    ExpiryNotSpecified(String),
}

/// An operation marked `required` that did not apply, which rolled its batch back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation {index} did not apply ({reason}): nothing in the batch was written")]
pub struct KvFailed {
    /// The operation's index in its batch.
    pub index: usize,
    /// Why: `absent`, `exists`, `version`, `limit` or `type`.
    pub reason: String,
    /// The key's version as a reader sees it (0: absent).
    pub version: i64,
    /// The key's value as a reader sees it (JSON text; `None`: absent).
    pub value: Option<String>,
}

/// A checked batch, as `queen.kv_apply` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct KvBatch {
    ops: Vec<Value>,
}

impl KvBatch {
    /// Checks the operations of a `POST /api/v1/kv` body (each a JSON object) and normalises
    /// them. The first problem found is the answer, naming the operation's index.
    pub fn parse(ops: &[Value]) -> Result<KvBatch, KvRefusal> {
        if ops.len() > KV_OPS_MAX {
            return Err(bad(format!(
                "a batch may hold at most {KV_OPS_MAX} operations"
            )));
        }
        let ops = ops
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let Value::Object(o) = op else {
                    return Err(bad(format!("operations[{i}] must be an object")));
                };
                operation(o).map_err(|e| match e {
                    KvRefusal::BadRequest(m) => bad(format!("operations[{i}]: {m}")),
                    KvRefusal::ExpiryNotSpecified(m) => {
                        KvRefusal::ExpiryNotSpecified(format!("operations[{i}]: {m}"))
                    }
                })
            })
            .collect::<Result<Vec<Value>, KvRefusal>>()?;
        Ok(KvBatch { ops })
    }

    /// Checks the operations riding on a transaction (`"kv"` beside its `operations`): as
    /// [`KvBatch::parse`], without `getPrefix` (read work nobody bounds, under the locks of a
    /// transaction).
    pub fn parse_rider(ops: &[Value]) -> Result<KvBatch, KvRefusal> {
        if let Some(i) = ops.iter().position(|o| o["op"] == "getPrefix") {
            return Err(bad(format!(
                "kv[{i}]: getPrefix is not allowed inside a transaction"
            )));
        }
        KvBatch::parse(ops)
    }

    /// The batch as `queen.kv_apply`'s parameter.
    pub(crate) fn param(&self) -> Json<String> {
        Json(Value::Array(self.ops.clone()).to_string())
    }

    /// Operations in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

fn bad(m: String) -> KvRefusal {
    KvRefusal::BadRequest(m)
}

/// One operation, checked and normalised.
fn operation(o: &Map<String, Value>) -> Result<Value, KvRefusal> {
    let op = match o.get("op") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(bad("`op` must be a string".into())),
    };
    let ns = namespace(o.get("ns"))?;
    let out = match op {
        "get" => json!({"op": "get", "ns": ns, "key": key(o.get("key"), "key")?}),
        "getMany" => {
            let keys = match o.get("keys") {
                Some(Value::Array(k)) if !k.is_empty() && k.len() <= KV_KEYS_MAX => k
                    .iter()
                    .map(|k| key(Some(k), "keys[]"))
                    .collect::<Result<Vec<&str>, KvRefusal>>()?,
                _ => {
                    return Err(bad(format!(
                        "`keys` must be an array of 1 to {KV_KEYS_MAX} keys"
                    )));
                }
            };
            json!({"op": "getMany", "ns": ns, "keys": keys})
        }
        "getPrefix" => {
            let prefix = key(o.get("prefix"), "prefix").map_err(|_| {
                bad(
                    "`prefix` must be a non-empty string: a namespace is not a table to \
                     enumerate"
                        .into(),
                )
            })?;
            let after = match o.get("after") {
                None | Some(Value::Null) => None,
                v => Some(key(v, "after")?),
            };
            let limit = match o.get("limit") {
                None | Some(Value::Null) => KV_PAGE_DEFAULT,
                Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
                    n.as_i64().unwrap_or(KV_PAGE_MAX).clamp(1, KV_PAGE_MAX)
                }
                Some(_) => return Err(bad("`limit` must be an integer".into())),
            };
            json!({"op": "getPrefix", "ns": ns, "prefix": prefix, "after": after,
                   "limit": limit, "keysOnly": flag(o, "keysOnly")?})
        }
        "put" | "putIfAbsent" => {
            let key = key(o.get("key"), "key")?;
            let value = value(o.get("value"))?;
            let ttl = expiry(o)?;
            let expect = match (op, expect(o)?) {
                ("putIfAbsent", Some(_)) => {
                    return Err(bad(
                        "putIfAbsent takes no `expect`: it is a put that expects 0".into(),
                    ));
                }
                ("putIfAbsent", None) => Some(0),
                (_, e) => e,
            };
            json!({"op": "put", "ns": ns, "key": key, "value": value, "ttl": ttl,
                   "expect": expect, "required": flag(o, "required")?})
        }
        "delete" => {
            let expect = expect(o)?;
            if expect == Some(0) {
                return Err(bad(
                    "a delete expecting 0 (no key) would delete nothing; omit `expect`".into(),
                ));
            }
            json!({"op": "delete", "ns": ns, "key": key(o.get("key"), "key")?,
                   "expect": expect, "required": flag(o, "required")?})
        }
        "check" => {
            let Some(expect) = expect(o)? else {
                return Err(bad(
                    "check needs `expect`: the version the key must be at, or 0 for a key that \
                     must not exist"
                        .into(),
                ));
            };
            json!({"op": "check", "ns": ns, "key": key(o.get("key"), "key")?,
                   "expect": expect, "required": flag(o, "required")?})
        }
        "incr" => {
            if o.contains_key("expect") {
                return Err(bad("incr takes no `expect`: it is atomic by itself".into()));
            }
            let delta = match o.get("delta") {
                None => json!(1),
                v => number(v, "delta")?,
            };
            let min = optional_number(o.get("min"), "min")?;
            let max = optional_number(o.get("max"), "max")?;
            if let (Some(lo), Some(hi)) = (
                min.as_ref().and_then(Value::as_f64),
                max.as_ref().and_then(Value::as_f64),
            ) && lo > hi
            {
                return Err(bad("`min` must not be above `max`".into()));
            }
            json!({"op": "incr", "ns": ns, "key": key(o.get("key"), "key")?,
                   "delta": delta, "min": min, "max": max, "ttl": expiry(o)?,
                   "required": flag(o, "required")?})
        }
        other => {
            return Err(bad(format!(
                "unknown op {other:?} (get, getMany, getPrefix, put, putIfAbsent, delete, check, \
                 incr)"
            )));
        }
    };
    Ok(out)
}

/// A namespace: 1 to [`KV_NS_MAX`] bytes of letters, digits, `.`, `_`, `-` and `:`.
fn namespace(v: Option<&Value>) -> Result<&str, KvRefusal> {
    match v {
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= KV_NS_MAX
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b)) =>
        {
            Ok(s)
        }
        _ => Err(bad(format!(
            "`ns` must be 1 to {KV_NS_MAX} letters, digits, '.', '_', '-' or ':'"
        ))),
    }
}

/// A key (or prefix): 1 to [`KV_KEY_MAX`] bytes with no control character.
fn key<'a>(v: Option<&'a Value>, what: &str) -> Result<&'a str, KvRefusal> {
    check_key(v, what, KV_KEY_MAX, None).map_err(bad)
}

/// A value: any JSON (null included) PostgreSQL can store, at most [`KV_VALUE_MAX`] bytes.
fn value(v: Option<&Value>) -> Result<&Value, KvRefusal> {
    let Some(v) = v else {
        return Err(bad(
            "`value` is required (null is a value; delete removes a key)".into(),
        ));
    };
    let text = v.to_string();
    if text.len() > KV_VALUE_MAX {
        return Err(bad(format!(
            "`value` is {} bytes of JSON, more than {KV_VALUE_MAX}",
            text.len()
        )));
    }
    check_json_escapes(text.as_bytes()).map_err(|e| bad(format!("`value` holds {e}")))?;
    Ok(v)
}

/// The expiry of a write: seconds from now, or `None` for forever. Exactly one of
/// `ttlSeconds` (a positive integer) and `forever: true` must be given.
fn expiry(o: &Map<String, Value>) -> Result<Option<i64>, KvRefusal> {
    let ttl = o.get("ttlSeconds").filter(|v| !v.is_null());
    let forever = o.get("forever").filter(|v| !v.is_null());
    match (ttl, forever) {
        (Some(_), Some(_)) | (None, None) => Err(KvRefusal::ExpiryNotSpecified(
            "a write needs exactly one of `ttlSeconds` (a positive integer) and `forever: true`"
                .into(),
        )),
        (None, Some(Value::Bool(true))) => Ok(None),
        (None, Some(_)) => Err(bad("`forever` must be true when given".into())),
        (Some(Value::Number(n)), None) => match n.as_i64() {
            Some(s) if (1..=KV_TTL_MAX).contains(&s) => Ok(Some(s)),
            _ => Err(bad(format!(
                "`ttlSeconds` must be an integer from 1 to {KV_TTL_MAX}"
            ))),
        },
        (Some(_), None) => Err(bad("`ttlSeconds` must be an integer".into())),
    }
}

/// `expect`: absent, or a version (0: the key must not exist). An explicit null is refused: a
/// caller who wrote `expect` meant a condition, never an unconditional write.
fn expect(o: &Map<String, Value>) -> Result<Option<i64>, KvRefusal> {
    match o.get("expect") {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|e| *e >= 0)
            .map(Some)
            .ok_or_else(|| bad("`expect` must be an integer of at least 0".into())),
        Some(_) => Err(bad(
            "`expect` must be an integer of at least 0 (null is not an unconditional write: \
             omit it for one)"
                .into(),
        )),
    }
}

/// A JSON number (a boolean is not one).
fn number(v: Option<&Value>, what: &str) -> Result<Value, KvRefusal> {
    match v {
        Some(Value::Number(n)) => Ok(Value::Number(n.clone())),
        _ => Err(bad(format!("`{what}` must be a number"))),
    }
}

fn optional_number(v: Option<&Value>, what: &str) -> Result<Option<Value>, KvRefusal> {
    match v {
        None | Some(Value::Null) => Ok(None),
        v => number(v, what).map(Some),
    }
}

/// A boolean flag, false when absent.
fn flag(o: &Map<String, Value>, what: &str) -> Result<bool, KvRefusal> {
    match o.get(what) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(format!("`{what}` must be a boolean"))),
    }
}

impl Engine {
    /// Runs a checked batch in one transaction; answers the results array (JSON text, one
    /// element per operation, index-aligned). An operation marked `required` that did not
    /// apply rolls the whole batch back: [`EngineError::KvPrecondition`].
    pub async fn kv(&self, batch: &KvBatch) -> Result<String, EngineError> {
        if batch.is_empty() {
            return Ok("[]".into());
        }
        let inner = self.inner();
        let st = inner.st()?;
        let rows = inner
            .pool()
            .query(&st.kv, &[&batch.param()])
            .await
            .map_err(|e| precondition(e.into()))?;
        json_answer(
            rows.into_iter().next(),
            st.cols.kv.results,
            "queen.kv_apply",
        )
    }
}

/// Runs one of the batch functions of the store, its locks and timers (one jsonb parameter,
/// one jsonb answer: the results array's text).
pub(crate) async fn run_batch_function(
    inner: &Inner,
    statement: &queen_wire::Statement,
    column: queen_wire::ColumnIndex,
    param: &Json<String>,
    function: &str,
) -> Result<String, EngineError> {
    let rows = inner.pool().query(statement, &[param]).await?;
    json_answer(rows.into_iter().next(), column, function)
}

/// The JSON text in the answer's row of a batch function (`None`: it answered no row).
pub(crate) fn json_answer(
    row: Option<queen_wire::Row>,
    column: queen_wire::ColumnIndex,
    function: &str,
) -> Result<String, EngineError> {
    let row = row.ok_or_else(|| EngineError::Internal(format!("{function} answered no row")))?;
    let Json(results): Json<String> = row.get(column)?;
    Ok(results)
}

/// A `required` operation that did not apply, as `queen.kv_apply` raises it (QU007, DETAIL: a
/// JSON object); any other error as it is.
fn precondition(e: EngineError) -> EngineError {
    if let EngineError::Db(w) = &e
        && let Some(db) = w.as_db()
        && let Some(f) = failed(db)
    {
        return EngineError::KvPrecondition(f);
    }
    e
}

/// The failed operation of a QU007 error; `None` for any other error.
pub(crate) fn failed(db: &queen_wire::DbError) -> Option<KvFailed> {
    if db.code.as_str() != raised::KV_PRECONDITION {
        return None;
    }
    let d: Value = serde_json::from_str(db.detail.as_deref()?).ok()?;
    Some(KvFailed {
        index: usize::try_from(d["index"].as_u64()?).ok()?,
        reason: d["reason"].as_str()?.to_owned(),
        version: d["version"].as_i64().unwrap_or(0),
        value: d
            .get("value")
            .filter(|v| !v.is_null())
            .map(Value::to_string),
    })
}

/// Starts the job that deletes keys past their expiry (they are absent to every operation
/// already; this only reclaims their space), every `retention_interval`, in batches of
/// `retention_batch`.
pub(crate) fn start_pruning(inner: Weak<Inner>) {
    crate::jobs::every(
        inner,
        "kv expiry",
        |c| c.retention_interval,
        |i| async move {
            let batch = i.config().retention_batch.max(1);
            loop {
                let st = i.st()?;
                let rows = i.pool().query(&st.kv_prune, &[&batch]).await?;
                let pruned: i32 = match rows.first() {
                    Some(r) => r.get(st.cols.kv_prune.pruned)?,
                    None => 0,
                };
                if pruned < batch {
                    return Ok(());
                }
                tokio::task::yield_now().await;
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(op: Value) -> Result<Value, KvRefusal> {
        KvBatch::parse(&[op]).map(|b| b.ops[0].clone())
    }

    #[test]
    fn writes_need_exactly_one_expiry() {
        let base = json!({"op": "put", "ns": "n", "key": "k", "value": 1});
        assert!(matches!(
            one(base.clone()),
            Err(KvRefusal::ExpiryNotSpecified(_))
        ));
        let mut both = base.clone();
        both["ttlSeconds"] = json!(5);
        both["forever"] = json!(true);
        assert!(matches!(one(both), Err(KvRefusal::ExpiryNotSpecified(_))));
        let mut ttl = base.clone();
        ttl["ttlSeconds"] = json!(5);
        assert_eq!(one(ttl).ok().map(|o| o["ttl"].clone()), Some(json!(5)));
        let mut forever = base;
        forever["forever"] = json!(true);
        assert_eq!(
            one(forever).ok().map(|o| o["ttl"].clone()),
            Some(Value::Null)
        );
        for bad_ttl in [
            json!(0),
            json!(-1),
            json!(1.5),
            json!("5"),
            json!(KV_TTL_MAX + 1),
        ] {
            let op = json!({"op": "incr", "ns": "n", "key": "k", "ttlSeconds": bad_ttl});
            assert!(matches!(one(op), Err(KvRefusal::BadRequest(_))));
        }
    }

    #[test]
    fn put_if_absent_is_a_put_expecting_zero_and_takes_no_expect() {
        let op = json!({"op": "putIfAbsent", "ns": "n", "key": "k", "value": {}, "forever": true});
        assert_eq!(
            one(op.clone()).ok().map(|o| o["expect"].clone()),
            Some(json!(0))
        );
        let mut with = op;
        with["expect"] = json!(3);
        assert!(one(with).is_err());
    }

    #[test]
    fn an_explicit_null_expect_is_refused_not_ignored() {
        let op = json!({"op": "put", "ns": "n", "key": "k", "value": 1, "forever": true,
                        "expect": null});
        assert!(matches!(one(op), Err(KvRefusal::BadRequest(_))));
        assert!(one(json!({"op": "check", "ns": "n", "key": "k"})).is_err());
    }

    #[test]
    fn names_and_values_postgres_cannot_store_are_refused() {
        for ns in ["", "NOT A NAMESPACE", "a/b", &"n".repeat(KV_NS_MAX + 1)] {
            assert!(
                one(json!({"op": "get", "ns": ns, "key": "k"})).is_err(),
                "{ns}"
            );
        }
        for key in ["", "a\u{0}b", "tab\there", &"k".repeat(KV_KEY_MAX + 1)] {
            assert!(
                one(json!({"op": "get", "ns": "n", "key": key})).is_err(),
                "{key:?}"
            );
        }
        let nul = json!({"op": "put", "ns": "n", "key": "k", "value": "a\u{0}b",
                         "forever": true});
        assert!(one(nul).is_err());
        let big = json!({"op": "put", "ns": "n", "key": "k", "forever": true,
                         "value": "x".repeat(KV_VALUE_MAX)});
        assert!(one(big).is_err());
    }

    #[test]
    fn a_prefix_page_is_clamped_not_refused() {
        let page = |limit: Value| {
            one(json!({"op": "getPrefix", "ns": "n", "prefix": "p", "limit": limit}))
                .ok()
                .map(|o| o["limit"].clone())
        };
        assert_eq!(page(json!(0)), Some(json!(1)));
        assert_eq!(page(json!(1_000_000)), Some(json!(KV_PAGE_MAX)));
        assert_eq!(page(json!(u64::MAX)), Some(json!(KV_PAGE_MAX)));
        assert_eq!(page(Value::Null), Some(json!(KV_PAGE_DEFAULT)));
        assert_eq!(page(json!("5")), None);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("op".to_owned()),
                        Just("ns".to_owned()),
                        Just("key".to_owned()),
                        Just("keys".to_owned()),
                        Just("value".to_owned()),
                        Just("ttlSeconds".to_owned()),
                        Just("forever".to_owned()),
                        Just("expect".to_owned()),
                        Just("delta".to_owned()),
                        Just("limit".to_owned()),
                        ".{0,6}"
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any JSON is either refused with a reason or becomes operations whose every field
        /// `queen.kv_apply` reads has the type it expects.
        #[test]
        fn any_operation_is_refused_or_well_formed(ops in prop::collection::vec(json_value(), 0..4),
                                                   op in "get|getMany|getPrefix|put|putIfAbsent|delete|check|incr") {
            let mut ops = ops;
            // The first operation names a valid key, so that some batches pass.
            if let Some(Value::Object(o)) = ops.first_mut() {
                o.insert("op".into(), Value::String(op));
                o.insert("ns".into(), json!("n"));
                o.insert("key".into(), json!("k"));
            }
            if let Ok(batch) = KvBatch::parse(&ops) {
                prop_assert_eq!(batch.len(), ops.len());
                for o in &batch.ops {
                    prop_assert!(o["ns"].is_string());
                    let kind = o["op"].as_str().unwrap_or_default();
                    prop_assert!(["get", "getMany", "getPrefix", "put", "delete", "check", "incr"].contains(&kind));
                    for f in ["expect", "ttl", "limit"] {
                        prop_assert!(o.get(f).is_none_or(|v| v.is_null() || v.is_i64()), "{f}: {o}");
                    }
                    for f in ["delta", "min", "max"] {
                        prop_assert!(o.get(f).is_none_or(|v| v.is_null() || v.is_number()));
                    }
                }
            }
        }
    }
}
