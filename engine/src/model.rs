//! The engine's request and result types. They mirror the API contract (docs/api.md) but carry no
//! HTTP or JSON machinery: payloads are JSON text, validated by the caller.

use queen_wire::Timestamp;
use uuid::Uuid;

/// The consumer group plain (queue-mode) consumers share.
pub const QUEUE_MODE: &str = "__QUEUE_MODE__";
/// Partition used when a push names none.
pub const DEFAULT_PARTITION: &str = "Default";

/// One message to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushItem {
    /// Queue name (created on first push).
    pub queue: String,
    /// Partition name (created on first push).
    pub partition: String,
    /// JSON text of the payload, as it arrived (shared, not copied, on its way to the
    /// database).
    pub payload: std::sync::Arc<str>,
    /// Producer-chosen idempotency key, unique per partition; generated (UUIDv7) when absent.
    pub transaction_id: Option<String>,
    /// Optional trace id.
    pub trace_id: Option<Uuid>,
    /// Authenticated producer (`sub` of its token), stored with the message.
    pub producer_sub: Option<String>,
}

/// What happened to one pushed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushStatus {
    /// Stored now.
    Queued,
    /// Already stored earlier (same transactionId in the same partition); `message_id` is the
    /// original's.
    Duplicate,
    /// Made durable in the local disk buffer; stored when the database is back.
    Buffered,
}

/// The result of one pushed item, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// Position in the request.
    pub index: usize,
    /// Queued, duplicate or buffered.
    pub status: PushStatus,
    /// The transactionId (given or generated).
    pub transaction_id: String,
    /// The message id (the original's for a duplicate; none when buffered).
    pub message_id: Option<Uuid>,
    /// Partition id (none when buffered).
    pub partition_id: Option<Uuid>,
    /// Queue name.
    pub queue: String,
    /// Partition name.
    pub partition: String,
    /// Trace id as given.
    pub trace_id: Option<Uuid>,
}

/// Where a named group starts on partitions it has not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// From the first message.
    All,
    /// From the current end (messages after the group's subscription).
    New,
    /// After this time.
    From(Timestamp),
}

/// A pop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopRequest {
    /// Queue name.
    pub queue: String,
    /// A specific partition, or any.
    pub partition: Option<String>,
    /// Consumer group ([`QUEUE_MODE`] for plain consumers).
    pub consumer_group: String,
    /// Most messages returned, in total over the claimed partitions (as Queen's clients expect).
    pub batch: u32,
    /// How many partitions one pop may claim (any-partition pops).
    pub partitions: u32,
    /// This lease's length instead of the queue's `leaseTime`.
    pub lease_seconds: Option<u32>,
    /// At-most-once: commit in the pop itself, no lease.
    pub auto_ack: bool,
    /// Start rule for a group's first read (ignored in queue mode).
    pub subscription: Option<Subscription>,
    /// Free-form consumer identity, recorded on the cursor.
    pub worker_id: Option<String>,
}

impl PopRequest {
    /// A queue-mode pop of one message from any partition.
    pub fn new(queue: impl Into<String>) -> PopRequest {
        PopRequest {
            queue: queue.into(),
            partition: None,
            consumer_group: QUEUE_MODE.into(),
            batch: 1,
            partitions: 1,
            lease_seconds: None,
            auto_ack: false,
            subscription: None,
            worker_id: None,
        }
    }
}

/// One delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Message id (UUIDv7).
    pub id: Uuid,
    /// Its transactionId.
    pub transaction_id: String,
    /// Trace id, if any.
    pub trace_id: Option<Uuid>,
    /// JSON text of the payload (decrypted).
    pub payload: String,
    /// Producer identity, if recorded.
    pub producer_sub: Option<String>,
    /// When it was pushed.
    pub created_at: Timestamp,
    /// Partition id.
    pub partition_id: Uuid,
    /// Partition name.
    pub partition: String,
    /// Position in the partition.
    pub position: i64,
    /// Deliveries before this one that failed.
    pub retry_count: i32,
    /// Queue priority.
    pub priority: i32,
}

/// What a pop returns when it found messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopResult {
    /// Queue name.
    pub queue: String,
    /// The lease (none with autoAck).
    pub lease_id: Option<Uuid>,
    /// When the lease runs out.
    pub lease_expires_at: Option<Timestamp>,
    /// Consumer group.
    pub consumer_group: String,
    /// Partitions claimed.
    pub partitions_claimed: usize,
    /// Messages, partition by partition, each partition in order.
    pub messages: Vec<Message>,
}

impl PopResult {
    /// Acks that commit every message of this pop with `status`: one per claimed partition, for
    /// its last message (an ack is an offset commit, so the messages before it go with it).
    pub fn commit_all(&self, status: AckStatus) -> Vec<AckItem> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                self.messages
                    .get(i + 1)
                    .is_none_or(|n| n.partition_id != m.partition_id)
            })
            .map(|(_, m)| AckItem {
                transaction_id: m.transaction_id.clone(),
                partition_id: m.partition_id,
                status,
                consumer_group: self.consumer_group.clone(),
                error: None,
                lease_id: self.lease_id,
            })
            .collect()
    }
}

/// Ack status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// Processed (`completed` or `success`).
    Completed,
    /// Failed: redeliver (counts against retryLimit).
    Failed,
    /// Redeliver without counting against retryLimit.
    Retry,
    /// To the dead-letter queue at once.
    Dlq,
}

impl AckStatus {
    /// Parses the API's status strings.
    pub fn parse(s: &str) -> Option<AckStatus> {
        match s {
            "completed" | "success" => Some(AckStatus::Completed),
            "failed" => Some(AckStatus::Failed),
            "retry" => Some(AckStatus::Retry),
            "dlq" => Some(AckStatus::Dlq),
            _ => None,
        }
    }

    pub(crate) fn as_sql(self) -> &'static str {
        match self {
            AckStatus::Completed => "completed",
            AckStatus::Failed => "failed",
            AckStatus::Retry => "retry",
            AckStatus::Dlq => "dlq",
        }
    }
}

/// One acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckItem {
    /// The message's transactionId.
    pub transaction_id: String,
    /// Its partition.
    pub partition_id: Uuid,
    /// Outcome.
    pub status: AckStatus,
    /// Consumer group.
    pub consumer_group: String,
    /// Error text (for failed/dlq).
    pub error: Option<String>,
    /// Fence: the lease the consumer holds.
    pub lease_id: Option<Uuid>,
}

/// The result of one acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckOutcome {
    /// Position in the request.
    pub index: usize,
    /// The message's transactionId.
    pub transaction_id: String,
    /// Whether it was applied.
    pub success: bool,
    /// Why not.
    pub error: Option<String>,
    /// Queue name (when the message was found).
    pub queue: Option<String>,
    /// Partition name (when found).
    pub partition: Option<String>,
    /// The partition's lease was released by this ack.
    pub lease_released: bool,
    /// The message went to the dead-letter queue.
    pub dlq: bool,
    /// Already committed before: nothing changed.
    pub noop: bool,
}

/// Result of a lease extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseExtension {
    /// Partitions extended.
    pub renewed: u32,
    /// New expiry.
    pub expires_at: Option<Timestamp>,
    /// `Lease not found` or `Lease expired`.
    pub error: Option<String>,
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOperation {
    /// Pushes (a duplicate fails the transaction).
    Push(Vec<PushItem>),
    /// An ack (a failed ack fails the transaction).
    Ack(AckItem),
}

/// Outcome of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOutcome {
    /// Whether it committed.
    pub success: bool,
    /// Why not.
    pub error: Option<String>,
    /// Per operation, in order: pushes' outcomes, acks' outcomes (empty when it failed).
    pub results: Vec<TxResult>,
    /// The results of the key/value operations riding on it (JSON text: an array, one element
    /// per operation), when it had some and committed.
    pub kv_results: Option<String>,
    /// The key/value operation marked `required` that did not apply, when that rolled it back.
    pub kv_failed: Option<crate::kv::KvFailed>,
    /// The results of the timer operations riding on it (JSON text), when it committed.
    pub timer_results: Option<String>,
}

/// Work riding on a transaction beside its pushes and acks, applied in the same transaction
/// after them (docs/kv.md).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Riders {
    /// Key/value operations (a lock's guard among them).
    pub kv: Option<crate::kv::KvBatch>,
    /// Timers scheduled or cancelled.
    pub timers: Option<crate::timers::TimerBatch>,
    /// A stream cycle's state changes (applied first, under the cycle's lock).
    pub stream: Option<crate::streams::StreamRider>,
}

/// The result of one transaction operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxResult {
    /// Outcomes of a push operation's items.
    Push(Vec<PushOutcome>),
    /// Outcome of an ack.
    Ack(AckOutcome),
}

/// Queue options (docs/api.md, "Queues"). In a configure request `None` keeps the current value.
///
/// Serialised (snake_case, the column names of `queen.queues`) as the one JSON parameter of
/// `queen.configure`, so an option is added by adding a field and a column.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueOptions {
    /// Lease length in seconds.
    pub lease_time: Option<i32>,
    /// Maximum pending messages (0 = no limit).
    pub max_size: Option<i64>,
    /// Seconds after which an undelivered message expires (0 = never).
    pub ttl: Option<i32>,
    /// Failed deliveries allowed before the dead-letter queue.
    pub retry_limit: Option<i32>,
    /// Milliseconds to hold a redelivery back after a nack.
    pub retry_delay: Option<i32>,
    /// Dead-letter queue on.
    pub dead_letter_queue: Option<bool>,
    /// Dead-letter after the retry limit.
    pub dlq_after_max_retries: Option<bool>,
    /// Queue priority (higher first in namespace/task pops).
    pub priority: Option<i32>,
    /// Seconds a message waits before its first delivery.
    pub delayed_processing: Option<i32>,
    /// Seconds a partition must be quiet before delivery.
    pub window_buffer: Option<i32>,
    /// Delete messages older than this (with retention on).
    pub retention_seconds: Option<i32>,
    /// Delete consumed messages older than this (with retention on).
    pub completed_retention_seconds: Option<i32>,
    /// Retention on.
    pub retention_enabled: Option<bool>,
    /// Payload encryption on.
    pub encryption_enabled: Option<bool>,
    /// Seconds before an unconsumed message goes to the DLQ (0 = never).
    pub max_wait_time_seconds: Option<i32>,
}

/// A queue as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// Queue id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Namespace tag.
    pub namespace: Option<String>,
    /// Task tag.
    pub task: Option<String>,
    /// The `Default` partition's id.
    pub default_partition_id: Uuid,
    /// Every option, resolved.
    pub options: QueueOptions,
    /// Creation time.
    pub created_at: Timestamp,
}
