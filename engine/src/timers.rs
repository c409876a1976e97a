//! Timers (`/api/v1/timers`, docs/kv.md, "Timers"): a message scheduled under a (queue,
//! timerKey) and pushed into its queue by the server once due.
//!
//! ```text
//!   schedule ──► pending ──(due: a fire claims it)──► claimed ──(pushed)──► deleted
//!                  ▲  │                                  │
//!      reschedule ─┘  └─ cancel ─► deleted               └─(push refused)──► pending, backoff
//! ```
//!
//! Scheduling and cancelling are one call of `queen.timers_apply` (also riding on a
//! transaction). The fire ([`start_firing`]) runs every `timer_interval`: it claims due timers
//! for a lease (committed at once, `FOR UPDATE SKIP LOCKED`, so servers sharing a database split
//! them), pushes them through the ordinary push path (partitions created, payloads sealed for
//! encrypting queues, maxSize honoured) with the transactionId and message id fixed at
//! schedule time, then deletes them. A server that stops between the push and the delete
//! leaves a claim that lapses; the next fire pushes again and the push is a duplicate of the
//! first by transactionId: each timer is delivered once.
//!
//! While the disk buffer holds pushes (push maintenance, or pushes accepted while the database
//! was away and not yet replayed), the fire waits: it would overtake them.
//!
//! Cancel-safety: every step is one statement; a fire interrupted anywhere is finished by a
//! later one as above.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Weak};

use base64::Engine as _;
use queen_wire::{Client, Json};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::engine::{Engine, Inner};
use crate::error::EngineError;
use crate::kv::run_batch_function;
use crate::limits::{check_key, check_name, check_transaction_id};
use crate::model::{DEFAULT_PARTITION, PushItem};

/// Operations in one call at most.
pub const TIMER_OPS_MAX: usize = 100;
/// A timer key's length in bytes at most.
pub const TIMER_KEY_MAX: usize = 512;
/// A payload's size as JSON text, in bytes, at most.
pub const TIMER_PAYLOAD_MAX: usize = 1024 * 1024;
/// The furthest a delay reaches, either way, in milliseconds (ten years).
pub const TIMER_DELAY_MAX_MS: i64 = 10 * 365 * 24 * 3600 * 1000;
/// Timers one page of a listing holds: the default and the most (a larger `limit` is clamped).
pub const TIMER_PAGE_DEFAULT: i64 = 100;
/// See [`TIMER_PAGE_DEFAULT`].
pub const TIMER_PAGE_MAX: i64 = 1000;
/// Timers one fire claims at most.
const FIRE_BATCH: i32 = 500;
/// How long a fire's claim lasts before another fire may take the timers again.
const FIRE_LEASE_MS: i32 = 30_000;

/// Fields the server owns: sent by a caller they are refused, never silently dropped.
const SERVER_OWNED: [&str; 15] = [
    "producerSub",
    "producer_sub",
    "messageId",
    "message_id",
    "tenant",
    "tenantId",
    "tenant_id",
    "deliverAt",
    "deliver_at",
    "delaySeconds",
    "delay_seconds",
    "attempts",
    "claimToken",
    "claim_token",
    "claimedUntil",
];

/// A malformed timer operation: the caller's mistake (400 `timers_bad_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimerRefusal(pub String);

/// A checked batch, as `queen.timers_apply` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerBatch {
    ops: Vec<Value>,
}

impl TimerBatch {
    /// Checks schedule, reschedule and cancel operations (a `POST /api/v1/timers` body or the
    /// `timers` riding on a transaction) and normalises them. One (queue, timerKey) may appear
    /// once per call.
    pub fn parse(ops: &[Value]) -> Result<TimerBatch, TimerRefusal> {
        if ops.len() > TIMER_OPS_MAX {
            return Err(TimerRefusal(format!(
                "a call may hold at most {TIMER_OPS_MAX} operations"
            )));
        }
        let mut seen = HashSet::new();
        let ops = ops
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let op = match op {
                    Value::Object(o) => operation(o),
                    _ => Err("must be an object".into()),
                }
                .map_err(|e| TimerRefusal(format!("operations[{i}]: {e}")))?;
                if !seen.insert((op["queue"].to_string(), op["timerKey"].to_string())) {
                    return Err(TimerRefusal(format!(
                        "operations[{i}]: timer {} of queue {} appears twice in one call",
                        op["timerKey"], op["queue"]
                    )));
                }
                Ok(op)
            })
            .collect::<Result<Vec<Value>, TimerRefusal>>()?;
        Ok(TimerBatch { ops })
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The batch as `queen.timers_apply`'s parameter. With a cipher (the server's encryption
    /// key), every payload is sealed with it: a timer's queue may encrypt, and its payload is
    /// not kept in the clear while it waits.
    pub(crate) fn param(&self, cipher: Option<&crate::crypto::Cipher>) -> Json<String> {
        let Some(cipher) = cipher else {
            return Json(Value::Array(self.ops.clone()).to_string());
        };
        let ops: Vec<Value> = self
            .ops
            .iter()
            .map(|op| {
                let mut op = op.clone();
                if let Some(text) = op.get("payload").and_then(Value::as_str) {
                    let sealed = cipher.encrypt(text.as_bytes());
                    op["sealed"] = payload_base64(&sealed).into();
                    op["payload"] = Value::Null;
                }
                op
            })
            .collect();
        Json(Value::Array(ops).to_string())
    }
}

fn operation(o: &Map<String, Value>) -> Result<Value, String> {
    if let Some(f) = o
        .keys()
        .find(|k| SERVER_OWNED.contains(&k.as_str()) || k.starts_with('_'))
    {
        return Err(format!(
            "`{f}` is the server's to set (the delivery time is the relative `delayMs`)"
        ));
    }
    let queue = name(o.get("queue"), "queue")?;
    let key = timer_key(o.get("timerKey"))?;
    match o.get("op").and_then(Value::as_str) {
        Some(op @ ("schedule" | "reschedule")) => {
            let partition = match o.get("partition") {
                None | Some(Value::Null) => DEFAULT_PARTITION.to_owned(),
                v => name(v, "partition")?,
            };
            let txn = match o.get("txn") {
                None | Some(Value::Null) => Uuid::now_v7().to_string(),
                Some(Value::String(t)) => {
                    check_transaction_id("txn", t)?;
                    t.clone()
                }
                Some(_) => return Err("`txn` must be a string".into()),
            };
            if o.get("payloadZstd")
                .is_some_and(|z| z != &Value::Bool(false))
            {
                return Err(
                    "zstd-compressed payloads are not served; send the payload plain".into(),
                );
            }
            let delay = o
                .get("delayMs")
                .and_then(Value::as_i64)
                .filter(|d| d.abs() <= TIMER_DELAY_MAX_MS)
                .ok_or_else(|| {
                    format!(
                        "`delayMs` must be an integer of at most {TIMER_DELAY_MAX_MS} either way"
                    )
                })?;
            Ok(
                json!({"op": "schedule", "reschedule": op == "reschedule", "queue": queue,
                      "timerKey": key, "partition": partition, "txn": txn,
                      "messageId": Uuid::now_v7().to_string(), "payload": payload(o.get("payload"))?,
                      "delayMs": delay}),
            )
        }
        Some("cancel") => {
            let txn = match o.get("txn") {
                None | Some(Value::Null) => Value::Null,
                Some(Value::String(t)) => {
                    check_transaction_id("txn", t)?;
                    Value::String(t.clone())
                }
                Some(_) => return Err("`txn` must be a string".into()),
            };
            Ok(json!({"op": "cancel", "queue": queue, "timerKey": key, "txn": txn}))
        }
        _ => Err("`op` must be schedule, reschedule or cancel".into()),
    }
}

fn name(v: Option<&Value>, what: &str) -> Result<String, String> {
    match v {
        Some(Value::String(s)) => check_name(what, s).map(|()| s.clone()),
        _ => Err(format!("`{what}` must be a string")),
    }
}

/// A timer key: 1 to [`TIMER_KEY_MAX`] bytes without control characters.
pub fn timer_key(v: Option<&Value>) -> Result<String, String> {
    check_key(v, "timerKey", TIMER_KEY_MAX, None).map(str::to_owned)
}

/// The payload: base64 of a JSON document (what the fired message carries), checked to be one
/// PostgreSQL can store.
fn payload(v: Option<&Value>) -> Result<String, String> {
    let Some(Value::String(b64)) = v else {
        return Err("`payload` must be a base64 string of a JSON document".into());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("`payload` is not base64: {e}"))?;
    if bytes.len() > TIMER_PAYLOAD_MAX {
        return Err(format!(
            "`payload` is {} bytes, more than {TIMER_PAYLOAD_MAX}",
            bytes.len()
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| "`payload` is not UTF-8 JSON".to_owned())?;
    serde_json::from_str::<serde::de::IgnoredAny>(&text)
        .map_err(|e| format!("`payload` is not a JSON document: {e}"))?;
    crate::push::check_json_escapes(text.as_bytes()).map_err(|e| format!("`payload` holds {e}"))?;
    Ok(text.trim().to_owned())
}

/// Bytes as base64, as timer payloads travel.
pub fn payload_base64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One stored timer as a read answers it: its fields, and its payload exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTimer {
    /// `{queue, timerKey, partition, txn, messageId, deliverAt, attempts, lastError, createdAt,
    /// updatedAt}` as JSON text.
    pub fields: String,
    /// The stored payload: the JSON text's bytes, or its sealed envelope when `encrypted`.
    pub payload: Vec<u8>,
    /// Whether the payload is sealed with the server's key (peek does not open it).
    pub encrypted: bool,
}

impl Engine {
    /// Runs a checked batch of timer operations in one transaction; answers the results array
    /// (JSON text, one element per operation, in order).
    pub async fn timers(&self, batch: &TimerBatch) -> Result<String, EngineError> {
        if batch.is_empty() {
            return Ok("[]".into());
        }
        let inner = self.inner();
        let st = inner.st()?;
        run_batch_function(
            inner,
            &st.timers,
            st.cols.timers.results,
            &batch.param(inner.config().cipher.as_ref()),
            "queen.timers_apply",
        )
        .await
    }

    /// Pending timers of a queue by key: one (`key`), or a page after `after` (exclusive) of at
    /// most `limit` (clamped to [`TIMER_PAGE_MAX`]).
    pub async fn read_timers(
        &self,
        queue: &str,
        key: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredTimer>, EngineError> {
        let inner = self.inner();
        let st = inner.st()?;
        let limit = i32::try_from(limit.clamp(1, TIMER_PAGE_MAX)).unwrap_or(1);
        let rows = inner
            .inspect(&st.timers_read, &[&queue, &key, &after, &limit])
            .await?;
        let c = st.cols.timers_read;
        rows.iter()
            .map(|r| {
                let Json(fields): Json<String> = r.get(c.timer)?;
                let (payload, encrypted) = match r.get::<Option<Vec<u8>>>(c.sealed)? {
                    Some(sealed) => (sealed, true),
                    None => (
                        r.get::<Option<String>>(c.payload)?
                            .unwrap_or_default()
                            .into_bytes(),
                        false,
                    ),
                };
                Ok(StoredTimer {
                    fields,
                    payload,
                    encrypted,
                })
            })
            .collect()
    }
}

/// Starts the fire: every `timer_interval`, due timers are pushed into their queues.
pub(crate) fn start_firing(inner: Weak<Inner>) {
    crate::jobs::every(inner, "timers", |c| c.timer_interval, fire);
}

/// One fire: claims due timers and pushes them, a batch at a time while batches come back full.
async fn fire(inner: Arc<Inner>) -> Result<(), EngineError> {
    // While pushes go to the disk buffer (push maintenance) or buffered pushes wait for their
    // replay, timers wait too: a fire would overtake buffered messages of its partition.
    if inner.buffer().is_some_and(|b| b.holds_pushes()) {
        return Ok(());
    }
    loop {
        let st = inner.st()?;
        let claim = Uuid::new_v4();
        let rows = inner
            .pool()
            .query(&st.timers_claim, &[&FIRE_BATCH, &claim, &FIRE_LEASE_MS])
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let c = st.cols.timers_claim;
        // Per queue, so that a queue that refuses (full) holds back only its own timers.
        let mut by_queue: BTreeMap<String, Vec<(String, PushItem, Uuid)>> = BTreeMap::new();
        let (mut queues, mut keys, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        for r in &rows {
            let queue: String = r.get(c.queue)?;
            let key: String = r.get(c.timer_key)?;
            // Opened here (sealed at rest on a server with a key); the push seals it again
            // when its queue encrypts. One that does not open (another key) is its own
            // timer's error, not the fire's.
            let payload = match crate::payload::stored(&inner, r, c.payload, c.sealed) {
                Ok(p) => p.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(queue, key, error = %e, "a timer's payload does not open");
                    queues.push(queue);
                    keys.push(key);
                    errors.push(Some(e.to_string()));
                    continue;
                }
            };
            let item = PushItem {
                queue: queue.clone(),
                partition: r.get(c.partition)?,
                payload: Arc::from(payload),
                transaction_id: Some(r.get(c.txn)?),
                trace_id: None,
                producer_sub: None,
            };
            let id: Uuid = r.get(c.message_id)?;
            by_queue.entry(queue).or_default().push((key, item, id));
        }
        for (queue, timers) in by_queue {
            let items: Vec<PushItem> = timers.iter().map(|(_, it, _)| it.clone()).collect();
            let ids: Vec<Uuid> = timers.iter().map(|(_, _, id)| *id).collect();
            let error = match crate::push::push_with_ids(&inner, &items, &ids).await {
                Ok(_) => None,
                Err(e) if e.is_unavailable() => return Err(e),
                Err(e) => {
                    tracing::warn!(queue, error = %e, "a timer's queue refused its fire; retried later");
                    Some(e.to_string())
                }
            };
            for (key, _, _) in timers {
                queues.push(queue.clone());
                keys.push(key);
                errors.push(error.clone());
            }
        }
        inner
            .pool()
            .query(&st.timers_settle, &[&claim, &queues, &keys, &errors])
            .await?;
        if rows.len() < FIRE_BATCH as usize {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn one(op: Value) -> Result<Value, TimerRefusal> {
        TimerBatch::parse(&[op]).map(|b| b.ops[0].clone())
    }

    #[test]
    fn a_schedule_carries_its_payload_as_json_and_ids_fixed_now() {
        let op = one(json!({"op": "schedule", "queue": "q", "timerKey": "k/1",
                            "payload": b64(r#" {"a": 1} "#), "delayMs": -5}))
        .ok();
        let op = op.unwrap_or_default();
        assert_eq!(op["payload"], r#"{"a": 1}"#);
        assert_eq!(op["partition"], DEFAULT_PARTITION);
        assert!(
            op["txn"]
                .as_str()
                .is_some_and(|t| Uuid::parse_str(t).is_ok())
        );
        assert!(op["messageId"].is_string());
        assert_eq!(op["delayMs"], -5);
    }

    #[test]
    fn server_owned_fields_duplicates_and_non_json_payloads_are_refused() {
        let base = json!({"op": "schedule", "queue": "q", "timerKey": "k",
                          "payload": b64("1"), "delayMs": 5});
        for (field, value) in [
            ("deliverAt", json!("2030-01-01T00:00:00Z")),
            ("producerSub", json!("me")),
            ("_internal", json!(1)),
            ("payloadZstd", json!(true)),
            ("payload", json!(b64("not json"))),
            ("payload", json!("%%%")),
            ("payload", json!(b64(r#""\u0000""#))),
            ("delayMs", json!(1.5)),
            ("delayMs", json!(TIMER_DELAY_MAX_MS + 1)),
            ("queue", json!("")),
            ("timerKey", json!("a\nb")),
        ] {
            let mut op = base.clone();
            op[field] = value;
            assert!(one(op).is_err(), "{field}");
        }
        assert!(TimerBatch::parse(&[base.clone(), base]).is_err());
    }

    proptest! {
        /// Any operation is refused or normalised to the fields `queen.timers_apply` reads.
        #[test]
        fn any_operation_is_refused_or_well_formed(
            op in "schedule|reschedule|cancel|other",
            key in prop_oneof![Just(json!("k")), ".{0,8}".prop_map(|s| json!(s)), any::<i64>().prop_map(|n| json!(n))],
            payload in prop_oneof![Just(json!("eyJhIjoxfQ==")), ".{0,8}".prop_map(|s| json!(s)), Just(Value::Null)],
            delay in prop_oneof![any::<i64>().prop_map(|n| json!(n)), any::<f64>().prop_map(|f| json!(f)), Just(Value::Null)],
            txn in prop_oneof![Just(Value::Null), ".{0,8}".prop_map(|s| json!(s))],
        ) {
            let raw = json!({"op": op, "queue": "q", "timerKey": key, "payload": payload,
                             "delayMs": delay, "txn": txn});
            if let Ok(o) = one(raw) {
                prop_assert!(o["timerKey"].is_string());
                if o["op"] == "schedule" {
                    prop_assert!(o["delayMs"].is_i64());
                    prop_assert!(o["txn"].is_string());
                    let payload = o["payload"].as_str().unwrap_or_default();
                    prop_assert!(serde_json::from_str::<Value>(payload).is_ok());
                }
            }
        }
    }
}
