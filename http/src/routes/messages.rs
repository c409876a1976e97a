//! Messages: push, the three pops, ack and batch ack, transactions, lease extension
//! (docs/api.md, "Messages").

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use queen_engine::EngineError;
use queen_engine::kv::{KvBatch, KvRefusal};
use queen_engine::timers::{TimerBatch, TimerRefusal};
use queen_engine::{
    AckItem, AckOutcome, AckStatus, DEFAULT_PARTITION, PopRequest, PopResult, PushItem,
    PushOutcome, PushStatus, QUEUE_MODE, Riders, Subscription, TxOperation, TxResult,
};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::app::App;
use crate::body::{self, Resp, objects};
use crate::error::{ApiError, Code};
use crate::field::Text;
use crate::json_out::{self, Obj};
use crate::query::Query;
use crate::time;
use queen_engine::limits::{ACK_ITEMS_MAX, PUSH_ITEMS_MAX, TX_OPERATIONS_MAX};
use queen_engine::maintenance::Mode;

// ---- push ---------------------------------------------------------------------------------

#[derive(Deserialize)]
struct PushBody<'a> {
    #[serde(borrow)]
    items: Option<&'a RawValue>,
}

/// One item as sent; fields are checked by hand so errors can name the item. Only a JSON
/// object reads as an item (a derived `Deserialize` would also take an array, by position).
#[derive(Default)]
struct ItemIn<'a> {
    queue: Option<Text<'a>>,
    partition: Option<Text<'a>>,
    /// Absent: `{}`. Present, `null` included: kept as sent.
    payload: Option<&'a RawValue>,
    transaction_id: Option<Text<'a>>,
    trace_id: Option<Text<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for ItemIn<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ItemIn<'a>, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "camelCase")]
        enum Field {
            Queue,
            Partition,
            Payload,
            TransactionId,
            TraceId,
            #[serde(other)]
            Other,
        }
        /// Reads a field's value once: a second occurrence is refused, as serde's derive does.
        fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
            slot: &mut Option<T>,
            seen: &mut bool,
            name: &'static str,
            m: &mut A,
        ) -> Result<(), A::Error> {
            if std::mem::replace(seen, true) {
                return Err(de::Error::duplicate_field(name));
            }
            *slot = m.next_value::<Option<T>>()?;
            Ok(())
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ItemIn<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<ItemIn<'de>, A::Error> {
                let mut it = ItemIn::default();
                let mut seen = [false; 5];
                while let Some(field) = m.next_key::<Field>()? {
                    match field {
                        Field::Queue => once(&mut it.queue, &mut seen[0], "queue", &mut m)?,
                        Field::Partition => {
                            once(&mut it.partition, &mut seen[1], "partition", &mut m)?;
                        }
                        Field::Payload => {
                            if std::mem::replace(&mut seen[2], true) {
                                return Err(de::Error::duplicate_field("payload"));
                            }
                            it.payload = Some(m.next_value()?);
                        }
                        Field::TransactionId => {
                            once(
                                &mut it.transaction_id,
                                &mut seen[3],
                                "transactionId",
                                &mut m,
                            )?;
                        }
                        Field::TraceId => once(&mut it.trace_id, &mut seen[4], "traceId", &mut m)?,
                        Field::Other => {
                            m.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(it)
            }
        }
        d.deserialize_map(V)
    }
}

fn opt_text<'a>(
    v: Option<Text<'a>>,
    what: &str,
    i: usize,
) -> Result<Option<Cow<'a, str>>, ApiError> {
    Text::into_opt(v).map_err(|()| {
        ApiError::bad_request(
            Code::InvalidRequest,
            format!("items[{i}].{what} must be a string"),
        )
    })
}

fn opt_string(v: Option<Value>, what: &str, i: usize) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(
            Code::InvalidRequest,
            format!("items[{i}].{what} must be a string"),
        )),
    }
}

/// Parses and validates push items (before anything is written). A well-formed list is read
/// in one pass over its text; one that is not is walked again item by item
/// ([`parse_items_each`]), so the refusal names the item at fault.
pub(crate) fn parse_items(
    raw: Option<&RawValue>,
    producer_sub: Option<&str>,
) -> Result<Vec<PushItem>, ApiError> {
    match raw.and_then(|r| serde_json::from_str::<Items<'_>>(r.get()).ok()) {
        Some(items) => push_items(items, producer_sub),
        None => parse_items_each(raw, producer_sub),
    }
}

/// Push items read in one pass: at most [`PUSH_ITEMS_MAX`]. A longer list is refused as soon
/// as its element past the limit is read, before the items it holds add up (a read item takes
/// ~150 bytes where a body's tiny items take 14), and is then answered by
/// [`parse_items_each`]'s `413`.
struct Items<'a>(Vec<ItemIn<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Items<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Items<'a>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Items<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of push items")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Items<'de>, A::Error> {
                let mut items = Vec::new();
                while let Some(it) = s.next_element()? {
                    if items.len() == PUSH_ITEMS_MAX {
                        return Err(de::Error::custom("too many items"));
                    }
                    items.push(it);
                }
                Ok(Items(items))
            }
        }
        d.deserialize_seq(V)
    }
}

/// Checks items read in one pass and makes them [`PushItem`]s.
fn push_items(items: Items<'_>, producer_sub: Option<&str>) -> Result<Vec<PushItem>, ApiError> {
    items
        .0
        .into_iter()
        .enumerate()
        .map(|(i, it)| push_item(it, i, producer_sub))
        .collect()
}

/// [`parse_items`] one item at a time: each element is found, then read, then checked.
pub(crate) fn parse_items_each(
    raw: Option<&RawValue>,
    producer_sub: Option<&str>,
) -> Result<Vec<PushItem>, ApiError> {
    let raw =
        raw.ok_or_else(|| ApiError::bad_request(Code::InvalidRequest, "`items` is required"))?;
    let items = objects(raw, "items", PUSH_ITEMS_MAX)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, it) in items.into_iter().enumerate() {
        let it: ItemIn<'_> = serde_json::from_str(it.get())
            .map_err(|e| ApiError::bad_request(Code::InvalidRequest, format!("items[{i}]: {e}")))?;
        out.push(push_item(it, i, producer_sub)?);
    }
    Ok(out)
}

/// Checks item `i` as read and makes it a [`PushItem`].
fn push_item(it: ItemIn<'_>, i: usize, producer_sub: Option<&str>) -> Result<PushItem, ApiError> {
    let queue = opt_text(it.queue, "queue", i)?.ok_or_else(|| {
        ApiError::bad_request(
            Code::InvalidRequest,
            format!("items[{i}].queue is required"),
        )
    })?;
    let partition =
        opt_text(it.partition, "partition", i)?.unwrap_or(Cow::Borrowed(DEFAULT_PARTITION));
    let transaction_id = opt_text(it.transaction_id, "transactionId", i)?;
    match transaction_id.as_deref() {
        Some("") => {
            return Err(ApiError::bad_request(
                Code::InvalidRequest,
                format!("items[{i}].transactionId must not be empty"),
            ));
        }
        // Text in PostgreSQL cannot hold NUL (names refuse every control character).
        Some(t) if t.contains('\0') => {
            return Err(ApiError::bad_request(
                Code::InvalidString,
                format!("items[{i}].transactionId must not contain the NUL character"),
            ));
        }
        _ => {}
    }
    let trace_id = match opt_text(it.trace_id, "traceId", i)? {
        None => None,
        Some(t) => Some(Uuid::parse_str(&t).map_err(|_| {
            ApiError::bad_request(
                Code::InvalidTraceId,
                format!("items[{i}].traceId is not a UUID: `{t}`"),
            )
        })?),
    };
    Ok(PushItem {
        queue: queue.into_owned(),
        partition: partition.into_owned(),
        payload: Arc::from(it.payload.map_or("{}", RawValue::get)),
        transaction_id: transaction_id.map(Cow::into_owned),
        trace_id,
        producer_sub: producer_sub.map(str::to_owned),
    })
}

/// One item of a push's answer (the push route's array, a stream cycle's `push_results`): the
/// one writer of this shape. Its strings are mostly ids and names, which [`Obj::str`] copies
/// without escaping.
pub(crate) fn push_result(o: &mut Obj<'_>, r: &PushOutcome) {
    let status = match r.status {
        PushStatus::Queued => "queued",
        PushStatus::Duplicate => "duplicate",
        PushStatus::Buffered => "buffered",
    };
    o.field("index", &r.index)
        .str("transaction_id", &r.transaction_id)
        .str("status", status);
    if r.message_id.is_some() {
        o.id("message_id", r.message_id);
    }
    if r.partition_id.is_some() {
        o.id("partition_id", r.partition_id);
    }
    if r.status == PushStatus::Queued {
        o.id("trace_id", r.trace_id);
    }
    o.str("queueName", &r.queue);
    if r.status == PushStatus::Buffered {
        o.str("partition", &r.partition);
    }
}

/// The answer to a push: one object per item, in the items' order.
fn push_results(outs: &[PushOutcome]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + outs.len() * 240);
    json_out::objects(&mut out, outs, push_result);
    out
}

/// The items of a push body. A well-formed body is read in one pass over its text (payloads
/// are the most of it); one that is not is read again as [`parse_items`] does, for the
/// refusal that names the field or item at fault.
pub(crate) fn push_body_items(bytes: &[u8], sub: Option<&str>) -> Result<Vec<PushItem>, ApiError> {
    #[derive(Deserialize)]
    struct Whole<'a> {
        #[serde(borrow)]
        items: Option<Items<'a>>,
    }
    if let Ok(Whole { items: Some(items) }) = body::json_keeping_escapes::<Whole<'_>>(bytes) {
        return push_items(items, sub);
    }
    let b: PushBody<'_> = body::json_keeping_escapes(bytes)?;
    parse_items_each(b.items, sub)
}

pub(crate) async fn push(app: &App, bytes: &[u8], sub: Option<&str>) -> Result<Resp, ApiError> {
    // Payloads are stored as the JSON text they came as: any escape is fine in them. The other
    // fields are checked once decoded (see `parse_items` and the engine's push validation).
    let items = push_body_items(bytes, sub)?;
    if items.is_empty() {
        return Ok(body::reply(StatusCode::CREATED, &Vec::<()>::new()));
    }
    let out = app.engine.push(items).await?;
    Ok(body::raw(
        StatusCode::CREATED,
        "application/json",
        push_results(&out).into(),
    ))
}

// ---- pop ----------------------------------------------------------------------------------

/// Which pop route.
pub(crate) enum PopTarget {
    Queue(String),
    Partition(String, String),
    Tagged {
        namespace: Option<String>,
        task: Option<String>,
    },
}

/// The `subscriptionMode` values Queen's clients and docs use. Every mode but `new` /
/// `new-only` starts a new group at the first message, as Queen's server does; `timestamp`
/// goes with `subscriptionFrom`, which then decides.
pub const SUBSCRIPTION_MODES: [&str; 5] = ["all", "from_beginning", "timestamp", "new", "new-only"];

/// Parses a `subscriptionMode` (or the `DEFAULT_SUBSCRIPTION_MODE` setting); the error lists
/// the accepted values.
pub fn parse_subscription_mode(mode: &str) -> Result<Subscription, String> {
    match mode {
        "all" | "from_beginning" | "timestamp" => Ok(Subscription::All),
        "new" | "new-only" => Ok(Subscription::New),
        other => Err(format!(
            "must be one of {}, got `{other}`",
            SUBSCRIPTION_MODES.join(", ")
        )),
    }
}

pub(crate) async fn pop(app: &App, target: PopTarget, q: &Query) -> Result<Resp, ApiError> {
    let batch = q.int("batch", Some(1), 1, 10_000)?.unwrap_or(1) as u32;
    let wait = q.flag("wait", false);
    let timeout_ms = q
        .int("timeout", Some(30_000), 0, u64::MAX)?
        .unwrap_or(30_000)
        .min(app.config.max_long_poll.as_millis() as u64);
    let partitions = q.int("partitions", Some(1), 1, 1000)?.unwrap_or(1) as u32;
    let lease_seconds = q
        .int("leaseSeconds", None, 1, 86_400 * 30)?
        .map(|s| s as u32);
    let consumer_group = match q.get("consumerGroup") {
        None | Some("") => QUEUE_MODE.to_owned(),
        Some(g) => g.to_owned(),
    };
    let subscription = match (q.get("subscriptionFrom"), q.get("subscriptionMode")) {
        (Some("now"), _) => Some(Subscription::New),
        (Some(ts), _) if !ts.is_empty() => {
            Some(Subscription::From(time::parse(ts).ok_or_else(|| {
                ApiError::bad_request(
                    Code::InvalidParameter,
                    format!("subscriptionFrom is not an RFC 3339 timestamp: `{ts}`"),
                )
            })?))
        }
        (_, None | Some("")) => app.config.default_subscription,
        (_, Some(m)) => Some(parse_subscription_mode(m).map_err(|e| {
            ApiError::bad_request(Code::InvalidParameter, format!("subscriptionMode {e}"))
        })?),
    };
    if app.maintenance_on(Mode::Pop) {
        return Ok(body::empty(StatusCode::NO_CONTENT));
    }
    let base = PopRequest {
        queue: String::new(),
        partition: None,
        consumer_group,
        batch,
        partitions,
        lease_seconds,
        auto_ack: q.flag("autoAck", false),
        subscription,
        worker_id: q.get("workerId").map(str::to_owned),
    };
    let wait = wait.then(|| Duration::from_millis(timeout_ms));
    let result = match target {
        PopTarget::Queue(queue) => {
            let req = PopRequest {
                queue,
                partitions: base.partitions,
                ..base
            };
            app.engine.pop(&req, wait).await?
        }
        PopTarget::Partition(queue, partition) => {
            let req = PopRequest {
                queue,
                partition: Some(partition),
                partitions: 1,
                ..base
            };
            app.engine.pop(&req, wait).await?
        }
        PopTarget::Tagged { namespace, task } => {
            pop_tagged(app, base, namespace, task, wait).await?
        }
    };
    Ok(match result {
        Some(r) => pop_response(&r),
        None => body::empty(StatusCode::NO_CONTENT),
    })
}

/// `GET /api/v1/pop?namespace=&task=`: the tagged queues, higher priority first. A waiting pop
/// re-checks every 200 ms here: the wake-up hub signals per queue, and a tag spans queues.
async fn pop_tagged(
    app: &App,
    base: PopRequest,
    namespace: Option<String>,
    task: Option<String>,
    wait: Option<Duration>,
) -> Result<Option<PopResult>, ApiError> {
    if namespace.is_none() && task.is_none() {
        return Err(ApiError::bad_request(
            Code::InvalidParameter,
            "namespace or task is required",
        ));
    }
    let deadline = wait.map(|w| tokio::time::Instant::now() + w);
    loop {
        for queue in app
            .engine
            .queues_by_tag(namespace.as_deref(), task.as_deref())
            .await?
        {
            let req = PopRequest {
                queue,
                ..base.clone()
            };
            if let Some(r) = app.engine.pop(&req, None).await? {
                return Ok(Some(r));
            }
        }
        match deadline {
            Some(d) if tokio::time::Instant::now() < d => {
                let left = d - tokio::time::Instant::now();
                tokio::time::sleep(left.min(Duration::from_millis(200))).await;
            }
            _ => return Ok(None),
        }
    }
}

/// The response of a pop: the claim, and its messages with their payloads as stored (see
/// [`json_out`](crate::json_out)).
fn pop_response(r: &PopResult) -> Resp {
    let lease_id = r.lease_id.map(|l| l.to_string()).unwrap_or_default();
    let first = r.messages.first();
    let mut out = Vec::with_capacity(
        256 + r
            .messages
            .iter()
            .map(|m| m.payload.len() + 400)
            .sum::<usize>(),
    );
    let mut o = Obj::open(&mut out);
    o.field("success", &true)
        .str("queue", &r.queue)
        .str("partition", first.map_or("", |m| m.partition.as_str()))
        .id(
            "partitionId",
            Some(first.map_or(Uuid::nil(), |m| m.partition_id)),
        )
        .str("leaseId", &lease_id)
        .str("consumerGroup", &r.consumer_group)
        .field("partitionsClaimed", &r.partitions_claimed)
        .objects("messages", &r.messages, |o, m| {
            o.id("id", Some(m.id))
                .str("transactionId", &m.transaction_id)
                .id("traceId", m.trace_id)
                .raw("data", &m.payload)
                .field("producerSub", &m.producer_sub)
                .str("createdAt", &time::format(m.created_at))
                .id("partitionId", Some(m.partition_id))
                .str("partition", &m.partition)
                .str("queue", &r.queue)
                .str("leaseId", &lease_id)
                .str("consumerGroup", &r.consumer_group)
                .field("retryCount", &m.retry_count)
                .field("priority", &m.priority);
        });
    o.close();
    body::raw(StatusCode::OK, "application/json", out.into())
}

// ---- ack ----------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AckIn {
    transaction_id: Option<Value>,
    partition_id: Option<Value>,
    status: Option<Value>,
    consumer_group: Option<Value>,
    error: Option<Value>,
    lease_id: Option<Value>,
}

pub(crate) fn ack_item(a: AckIn, default_group: &str, i: usize) -> Result<AckItem, ApiError> {
    // Every string of an ack is stored or looked up as text, which cannot hold NUL (bodies that
    // may carry push payloads are not checked as a whole: see `body::json_keeping_escapes`).
    let field = |v: Option<Value>, name: &str| {
        let s = opt_string(v, name, i)?;
        if s.as_deref().is_some_and(|s| s.contains('\0')) {
            return Err(ApiError::bad_request(
                Code::InvalidString,
                format!("acknowledgments[{i}].{name} must not contain the NUL character"),
            ));
        }
        Ok(s)
    };
    let transaction_id = field(a.transaction_id, "transactionId")?.ok_or_else(|| {
        ApiError::bad_request(
            Code::InvalidRequest,
            format!("acknowledgments[{i}].transactionId is required"),
        )
    })?;
    let partition_id = field(a.partition_id, "partitionId")?.ok_or_else(|| {
        ApiError::bad_request(
            Code::InvalidRequest,
            format!("acknowledgments[{i}].partitionId is required"),
        )
    })?;
    let partition_id = Uuid::parse_str(&partition_id).map_err(|_| {
        ApiError::bad_request(
            Code::InvalidRequest,
            format!("acknowledgments[{i}].partitionId is not a UUID"),
        )
    })?;
    let status = field(a.status, "status")?.unwrap_or_else(|| "completed".into());
    let status = AckStatus::parse(&status).ok_or_else(|| {
        ApiError::bad_request(
            Code::InvalidStatus,
            format!("acknowledgments[{i}].status must be completed, success, failed, retry or dlq, got `{status}`"),
        )
    })?;
    let lease_id = match field(a.lease_id, "leaseId")? {
        None => None,
        Some(s) if s.is_empty() => None,
        Some(s) => Some(Uuid::parse_str(&s).map_err(|_| {
            ApiError::bad_request(
                Code::InvalidRequest,
                format!("acknowledgments[{i}].leaseId is not a UUID"),
            )
        })?),
    };
    Ok(AckItem {
        transaction_id,
        partition_id,
        status,
        consumer_group: field(a.consumer_group, "consumerGroup")?
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| default_group.to_owned()),
        error: field(a.error, "error")?,
        lease_id,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AckOut<'a> {
    index: usize,
    transaction_id: &'a str,
    success: bool,
    error: Option<&'a str>,
    queue_name: Option<&'a str>,
    partition_name: Option<&'a str>,
    lease_released: bool,
    dlq: bool,
    noop: bool,
}

fn ack_out(o: &AckOutcome) -> AckOut<'_> {
    AckOut {
        index: o.index,
        transaction_id: &o.transaction_id,
        success: o.success,
        error: o.error.as_deref(),
        queue_name: o.queue.as_deref(),
        partition_name: o.partition.as_deref(),
        lease_released: o.lease_released,
        dlq: o.dlq,
        noop: o.noop,
    }
}

/// The acknowledgement of `POST /api/v1/ack`.
pub(crate) fn parse_ack(bytes: &[u8]) -> Result<AckItem, ApiError> {
    let a: AckIn = body::json(bytes)?;
    ack_item(a, QUEUE_MODE, 0)
}

pub(crate) async fn ack(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let item = parse_ack(bytes)?;
    acks(app, vec![item]).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AckBatchIn<'a> {
    consumer_group: Option<String>,
    #[serde(borrow)]
    acknowledgments: Option<&'a RawValue>,
}

pub(crate) async fn ack_batch(app: &App, bytes: &[u8]) -> Result<Resp, ApiError> {
    let b: AckBatchIn<'_> = body::json(bytes)?;
    let group = b
        .consumer_group
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| QUEUE_MODE.to_owned());
    let list = b.acknowledgments.ok_or_else(|| {
        ApiError::bad_request(Code::InvalidRequest, "`acknowledgments` is required")
    })?;
    let items = objects(list, "acknowledgments", ACK_ITEMS_MAX)?
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let a: AckIn = serde_json::from_str(raw.get()).map_err(|e| {
                ApiError::bad_request(Code::InvalidRequest, format!("acknowledgments[{i}]: {e}"))
            })?;
            ack_item(a, &group, i)
        })
        .collect::<Result<Vec<_>, _>>()?;
    acks(app, items).await
}

async fn acks(app: &App, items: Vec<AckItem>) -> Result<Resp, ApiError> {
    let out = app.engine.ack(items).await?;
    let v: Vec<AckOut<'_>> = out.iter().map(ack_out).collect();
    Ok(body::reply(StatusCode::OK, &v))
}

// ---- transaction --------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TxIn<'a> {
    #[serde(borrow)]
    operations: Option<&'a RawValue>,
    required_leases: Option<Vec<String>>,
    /// Key/value operations riding on the transaction (docs/kv.md).
    kv: Option<Value>,
    /// Timer operations riding on the transaction (docs/kv.md).
    timers: Option<Value>,
}

/// A parsed transaction: its operations, the leases it requires, and the work riding on it.
pub(crate) type TxCall = (Vec<TxOperation>, Vec<Uuid>, Riders);

#[derive(Deserialize)]
struct TxOpType {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct TxPushIn<'a> {
    #[serde(borrow)]
    items: Option<&'a RawValue>,
}

/// The operations and required leases of `POST /api/v1/transaction`.
pub(crate) fn parse_transaction(bytes: &[u8], sub: Option<&str>) -> Result<TxCall, ApiError> {
    // Push payloads inside are stored as sent; acks check their own strings (`ack_item`).
    let t: TxIn<'_> = body::json_keeping_escapes(bytes)?;
    let raw_ops = t
        .operations
        .ok_or_else(|| ApiError::bad_request(Code::InvalidRequest, "`operations` is required"))?;
    let raw_ops = objects(raw_ops, "operations", TX_OPERATIONS_MAX)?;
    let mut ops = Vec::with_capacity(raw_ops.len());
    for (i, raw) in raw_ops.into_iter().enumerate() {
        let bad =
            |m: &str| ApiError::bad_request(Code::InvalidRequest, format!("operations[{i}]: {m}"));
        let kind: TxOpType =
            serde_json::from_str(raw.get()).map_err(|_| bad("must be an object"))?;
        match kind.kind.as_deref() {
            Some("push") => {
                let p: TxPushIn<'_> =
                    serde_json::from_str(raw.get()).map_err(|_| bad("bad push"))?;
                ops.push(TxOperation::Push(parse_items(p.items, sub)?));
            }
            Some("ack") => {
                let a: AckIn = serde_json::from_str(raw.get()).map_err(|_| bad("bad ack"))?;
                ops.push(TxOperation::Ack(ack_item(a, QUEUE_MODE, i)?));
            }
            _ => return Err(bad("`type` must be push or ack")),
        }
    }
    let leases = t
        .required_leases
        .unwrap_or_default()
        .iter()
        .map(|l| {
            Uuid::parse_str(l).map_err(|_| {
                ApiError::bad_request(
                    Code::InvalidRequest,
                    format!("requiredLeases: `{l}` is not a UUID"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let timers = match t.timers {
        None | Some(Value::Null) => None,
        Some(Value::Array(ops)) => Some(TimerBatch::parse(&ops).map_err(EngineError::from)?),
        Some(_) => {
            return Err(ApiError::from(EngineError::from(TimerRefusal(
                "`timers` must be an array of timer operations".into(),
            ))));
        }
    };
    let kv = match t.kv {
        None | Some(Value::Null) => None,
        Some(Value::Array(k)) => {
            Some(KvBatch::parse_rider(&k).map_err(|e| ApiError::from(EngineError::from(e)))?)
        }
        Some(_) => {
            return Err(ApiError::from(EngineError::from(KvRefusal::BadRequest(
                "`kv` must be an array of key/value operations".into(),
            ))));
        }
    };
    Ok((
        ops,
        leases,
        Riders {
            kv,
            timers,
            stream: None,
        },
    ))
}

pub(crate) async fn transaction(
    app: &App,
    bytes: &[u8],
    sub: Option<&str>,
) -> Result<Resp, ApiError> {
    let (ops, leases, riders) = parse_transaction(bytes, sub)?;
    // Results are numbered in one flat space: each push item, each ack, then each key/value
    // operation.
    let kv_base: usize = ops
        .iter()
        .map(|op| match op {
            TxOperation::Push(items) => items.len(),
            TxOperation::Ack(_) => 1,
        })
        .sum();
    let out = app
        .engine
        .transaction_with_riders(ops, leases, &riders)
        .await?;
    let mut results = Vec::new();
    let mut index = 0;
    for r in &out.results {
        match r {
            TxResult::Push(items) => {
                for o in items {
                    results.push(serde_json::json!({
                        "index": index, "type": "push", "success": true,
                        "transactionId": o.transaction_id, "messageId": o.message_id,
                        "partitionId": o.partition_id, "queueName": o.queue,
                    }));
                    index += 1;
                }
            }
            TxResult::Ack(a) => {
                results.push(serde_json::json!({
                    "index": index, "type": "ack", "success": a.success,
                    "transactionId": a.transaction_id, "error": a.error, "dlq": a.dlq,
                }));
                index += 1;
            }
        }
    }
    // The riders' results follow the operations' in one flat index space: key/value, then
    // timers.
    let mut next = kv_base;
    for (kind, rider) in [("kv", &out.kv_results), ("timer", &out.timer_results)] {
        let Some(rider) = rider.as_deref() else {
            continue;
        };
        let rider: Vec<Value> = serde_json::from_str(rider).map_err(ApiError::internal)?;
        for mut r in rider {
            r["index"] = next.into();
            r["type"] = kind.into();
            results.push(r);
            next += 1;
        }
    }
    let mut v = serde_json::json!({
        "transactionId": Uuid::now_v7(),
        "success": out.success,
        "results": results,
    });
    if let Some(e) = out.error {
        v["error"] = Value::String(e);
    }
    // A lost key/value precondition is an answer, not an error: the caller (a redelivery that
    // lost its gate) finds what it needs here. Its index is in the flat space above.
    if let Some(f) = out.kv_failed {
        v["reason"] = "kv_precondition".into();
        v["failedIndex"] = (kv_base + f.index).into();
        v["kvReason"] = f.reason.into();
        v["version"] = f.version.into();
        v["value"] = match f.value {
            Some(text) => serde_json::from_str(&text).map_err(ApiError::internal)?,
            None => Value::Null,
        };
    }
    Ok(body::reply(StatusCode::OK, &v))
}

// ---- lease --------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct ExtendIn {
    seconds: Option<Value>,
}

pub(crate) async fn extend_lease(app: &App, lease: &str, bytes: &[u8]) -> Result<Resp, ApiError> {
    let lease_id = Uuid::parse_str(lease)
        .map_err(|_| ApiError::bad_request(Code::InvalidRequest, "lease id is not a UUID"))?;
    let e: ExtendIn = if bytes.iter().all(u8::is_ascii_whitespace) {
        ExtendIn::default()
    } else {
        body::json(bytes)?
    };
    let seconds = match e.seconds {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(s) if (1..=86_400 * 30).contains(&s) => Some(s as u32),
            _ => {
                return Err(ApiError::bad_request(
                    Code::InvalidRequest,
                    "`seconds` must be an integer from 1 to 2592000",
                ));
            }
        },
        Some(_) => {
            return Err(ApiError::bad_request(
                Code::InvalidRequest,
                "`seconds` must be an integer",
            ));
        }
    };
    let r = app.engine.extend_lease(lease_id, seconds).await?;
    let exp = r.expires_at.map(time::format);
    Ok(body::reply(
        StatusCode::OK,
        &serde_json::json!({
            "success": r.error.is_none(),
            "leaseId": lease_id,
            "renewed": r.renewed,
            "newExpiresAt": exp,
            "expiresAt": exp,
            "error": r.error,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What serde's derive reads from an item: the reference [`ItemIn`] must agree with.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Derived<'a> {
        #[serde(borrow)]
        queue: Option<Text<'a>>,
        #[serde(borrow)]
        partition: Option<Text<'a>>,
        #[serde(borrow, default, deserialize_with = "present")]
        payload: Option<&'a RawValue>,
        #[serde(borrow)]
        transaction_id: Option<Text<'a>>,
        #[serde(borrow)]
        trace_id: Option<Text<'a>>,
    }

    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
        <&RawValue>::deserialize(d).map(Some)
    }

    #[test]
    fn push_results_name_each_item_as_the_clients_read_it() {
        let (m, p, t) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let outcome = |index, status, message_id, partition_id, trace_id| PushOutcome {
            index,
            status,
            transaction_id: format!("tx\"{index}"),
            message_id,
            partition_id,
            queue: "q.a".into(),
            partition: "p\\1".into(),
            trace_id,
        };
        let outs = [
            outcome(0, PushStatus::Queued, Some(m), Some(p), Some(t)),
            outcome(1, PushStatus::Queued, Some(m), Some(p), None),
            outcome(2, PushStatus::Duplicate, Some(m), Some(p), Some(t)),
            outcome(3, PushStatus::Buffered, None, None, Some(t)),
        ];
        let written: Value = serde_json::from_slice(&push_results(&outs)).unwrap();
        let expected = serde_json::json!([
            {"index": 0, "transaction_id": "tx\"0", "status": "queued", "message_id": m,
             "partition_id": p, "trace_id": t, "queueName": "q.a"},
            {"index": 1, "transaction_id": "tx\"1", "status": "queued", "message_id": m,
             "partition_id": p, "trace_id": null, "queueName": "q.a"},
            {"index": 2, "transaction_id": "tx\"2", "status": "duplicate", "message_id": m,
             "partition_id": p, "queueName": "q.a"},
            {"index": 3, "transaction_id": "tx\"3", "status": "buffered", "queueName": "q.a",
             "partition": "p\\1"},
        ]);
        assert_eq!(written, expected);
    }

    #[test]
    fn a_list_is_read_up_to_the_item_limit_and_refused_past_it() {
        let list = |n: usize| format!("[{}]", vec![r#"{"queue":"q"}"#; n].join(","));
        let at = list(PUSH_ITEMS_MAX);
        let raw: &RawValue = serde_json::from_str(&at).unwrap();
        assert_eq!(parse_items(Some(raw), None).unwrap().len(), PUSH_ITEMS_MAX);
        let past = list(PUSH_ITEMS_MAX + 1);
        assert!(serde_json::from_str::<Items<'_>>(&past).is_err());
        let raw: &RawValue = serde_json::from_str(&past).unwrap();
        let e = parse_items(Some(raw), None).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (413, Code::TooManyItems));
    }

    proptest! {
        #[test]
        fn an_item_reads_as_serde_derives_it(list in crate::fuzz::item_lists()) {
            let elements: Vec<&RawValue> = serde_json::from_str(&list).expect("a JSON array");
            for e in elements.iter().filter(|e| e.get().starts_with('{')) {
                let ours = serde_json::from_str::<ItemIn<'_>>(e.get());
                let derived = serde_json::from_str::<Derived<'_>>(e.get());
                match (ours, derived) {
                    (Ok(a), Ok(b)) => {
                        prop_assert_eq!(a.queue, b.queue);
                        prop_assert_eq!(a.partition, b.partition);
                        prop_assert_eq!(a.payload.map(RawValue::get), b.payload.map(RawValue::get));
                        prop_assert_eq!(a.transaction_id, b.transaction_id);
                        prop_assert_eq!(a.trace_id, b.trace_id);
                    }
                    (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                    (a, b) => prop_assert!(false, "ours {:?}, derived {:?}", a.is_ok(), b.is_ok()),
                }
            }
        }
    }
}
