//! The JSON shapes of the status, resources and inspection answers, one `Serialize` type per
//! shape, built from the engine's typed figures. Field names are the API's (camelCase);
//! timestamps are RFC 3339 UTC with microseconds (see [`crate::time`]).

use queen_engine::QueueOptions;
use queen_engine::Timestamp;
use queen_engine::analytics::{Counts, GroupPartition, GroupStats, QueueStats, Snapshot};
use queen_engine::inspect::{
    DeadLetter, GroupState, MessageDetail, MessagePage, MessageSummary, Trace, TraceName,
    TraceNamePage, TracePage,
};
use serde::Serialize;
use uuid::Uuid;

/// Timestamps as the API writes them.
mod ts {
    use queen_engine::Timestamp;
    use serde::Serializer;

    pub(super) fn one<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::time::format(*t))
    }

    // serde's `serialize_with` hands a reference to the field.
    #[allow(clippy::ref_option)]
    pub(super) fn opt<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&crate::time::format(*t)),
            None => s.serialize_none(),
        }
    }
}

/// Message figures.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CountsView {
    total: i64,
    pending: i64,
    processing: i64,
    completed: i64,
    failed: i64,
    dead_letter: i64,
}

impl From<&Counts> for CountsView {
    fn from(c: &Counts) -> CountsView {
        CountsView {
            total: c.total,
            pending: c.pending,
            processing: c.processing,
            completed: c.completed,
            failed: c.failed,
            dead_letter: c.dead_letter,
        }
    }
}

/// `{total, pending, processing}` of a queue in a list.
#[derive(Serialize, Default, Clone, Copy)]
pub(crate) struct Depth {
    total: i64,
    pending: i64,
    processing: i64,
}

impl Depth {
    fn of(c: &Counts) -> Depth {
        Depth {
            total: c.total,
            pending: c.pending,
            processing: c.processing,
        }
    }
}

/// A queue in `GET /resources/queues` and `/status/queues`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueueItem<'a> {
    id: Uuid,
    name: &'a str,
    namespace: Option<&'a str>,
    task: Option<&'a str>,
    priority: i32,
    #[serde(serialize_with = "ts::one")]
    created_at: Timestamp,
    partitions: usize,
    messages: Depth,
    dead_letter: i64,
}

impl<'a> From<&'a QueueStats> for QueueItem<'a> {
    fn from(q: &'a QueueStats) -> QueueItem<'a> {
        QueueItem {
            id: q.id,
            name: &q.name,
            namespace: q.namespace.as_deref(),
            task: q.task.as_deref(),
            priority: q.priority,
            created_at: q.created_at,
            partitions: q.partitions.len(),
            messages: Depth::of(&q.totals),
            dead_letter: q.totals.dead_letter,
        }
    }
}

/// The queue list.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueueList<'a> {
    queues: Vec<QueueItem<'a>>,
    #[serde(serialize_with = "ts::one")]
    as_of: Timestamp,
}

impl<'a> From<&'a Snapshot> for QueueList<'a> {
    fn from(s: &'a Snapshot) -> QueueList<'a> {
        QueueList {
            queues: s.queues.iter().map(QueueItem::from).collect(),
            as_of: s.as_of,
        }
    }
}

/// Queue options by their API names.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OptionsView {
    lease_time: Option<i32>,
    max_size: Option<i64>,
    ttl: Option<i32>,
    retry_limit: Option<i32>,
    retry_delay: Option<i32>,
    dead_letter_queue: Option<bool>,
    dlq_after_max_retries: Option<bool>,
    priority: Option<i32>,
    delayed_processing: Option<i32>,
    window_buffer: Option<i32>,
    retention_seconds: Option<i32>,
    completed_retention_seconds: Option<i32>,
    retention_enabled: Option<bool>,
    encryption_enabled: Option<bool>,
    max_wait_time_seconds: Option<i32>,
}

impl From<&QueueOptions> for OptionsView {
    fn from(o: &QueueOptions) -> OptionsView {
        OptionsView {
            lease_time: o.lease_time,
            max_size: o.max_size,
            ttl: o.ttl,
            retry_limit: o.retry_limit,
            retry_delay: o.retry_delay,
            dead_letter_queue: o.dead_letter_queue,
            dlq_after_max_retries: o.dlq_after_max_retries,
            priority: o.priority,
            delayed_processing: o.delayed_processing,
            window_buffer: o.window_buffer,
            retention_seconds: o.retention_seconds,
            completed_retention_seconds: o.completed_retention_seconds,
            retention_enabled: o.retention_enabled,
            encryption_enabled: o.encryption_enabled,
            max_wait_time_seconds: o.max_wait_time_seconds,
        }
    }
}

/// A partition in a queue's detail.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PartitionView<'a> {
    id: Uuid,
    name: &'a str,
    #[serde(serialize_with = "ts::one")]
    created_at: Timestamp,
    stats: CountsView,
    #[serde(serialize_with = "ts::opt")]
    newest_message: Option<Timestamp>,
}

/// `GET /resources/queues/{q}` and `/status/queues/{q}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueueDetail<'a> {
    id: Uuid,
    name: &'a str,
    namespace: Option<&'a str>,
    task: Option<&'a str>,
    #[serde(serialize_with = "ts::one")]
    created_at: Timestamp,
    options: OptionsView,
    partitions: Vec<PartitionView<'a>>,
    totals: CountsView,
    #[serde(serialize_with = "ts::one")]
    as_of: Timestamp,
}

impl<'a> QueueDetail<'a> {
    pub(crate) fn new(
        info: &'a queen_engine::QueueInfo,
        stats: Option<&'a QueueStats>,
        as_of: Timestamp,
    ) -> QueueDetail<'a> {
        QueueDetail {
            id: info.id,
            name: &info.name,
            namespace: info.namespace.as_deref(),
            task: info.task.as_deref(),
            created_at: info.created_at,
            options: OptionsView::from(&info.options),
            partitions: stats
                .into_iter()
                .flat_map(|q| &q.partitions)
                .map(|p| PartitionView {
                    id: p.id,
                    name: &p.name,
                    created_at: p.created_at,
                    stats: CountsView::from(&p.counts),
                    newest_message: p.newest,
                })
                .collect(),
            totals: CountsView::from(&stats.map(|q| q.totals).unwrap_or_default()),
            as_of,
        }
    }
}

/// Queues grouped by a tag (`key`: `namespace` or `task`), in `/resources/namespaces` and
/// `/resources/tasks`: one entry per tag, in the order its first queue comes.
pub(crate) fn by_tag(
    s: &Snapshot,
    tag: impl Fn(&QueueStats) -> Option<&String>,
    key: &'static str,
) -> serde_json::Value {
    let mut groups: Vec<(&str, usize, usize, Depth)> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for q in &s.queues {
        let Some(t) = tag(q) else { continue };
        let at = *index.entry(t.as_str()).or_insert_with(|| {
            groups.push((t.as_str(), 0, 0, Depth::default()));
            groups.len() - 1
        });
        let (_, queues, partitions, depth) = &mut groups[at];
        *queues += 1;
        *partitions += q.partitions.len();
        depth.total += q.totals.total;
        depth.pending += q.totals.pending;
        depth.processing += q.totals.processing;
    }
    let items: Vec<serde_json::Value> = groups
        .iter()
        .map(|(t, queues, partitions, depth)| {
            serde_json::json!({ key: t, "queues": queues, "partitions": partitions, "messages": depth })
        })
        .collect();
    serde_json::json!({ format!("{key}s"): items, "asOf": crate::time::format(s.as_of) })
}

/// `GET /status`: the overview with the server's rates, disk buffer and uptime.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Status {
    #[serde(flatten)]
    pub(crate) overview: Overview,
    pub(crate) throughput: serde_json::Value,
    pub(crate) buffer: Option<BufferBrief>,
    pub(crate) uptime_seconds: u64,
}

/// The disk buffer in `/status`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BufferBrief {
    pub(crate) pending: u64,
    pub(crate) failed: u64,
    pub(crate) db_healthy: bool,
}

/// `GET /resources/overview` (and the base of `/status`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Overview {
    queues: usize,
    partitions: usize,
    namespaces: usize,
    tasks: usize,
    messages: CountsView,
    consumer_groups: usize,
    #[serde(serialize_with = "ts::one")]
    timestamp: Timestamp,
    #[serde(serialize_with = "ts::one")]
    as_of: Timestamp,
}

impl From<&Snapshot> for Overview {
    fn from(s: &Snapshot) -> Overview {
        let distinct = |f: &dyn Fn(&QueueStats) -> Option<&String>| {
            s.queues
                .iter()
                .filter_map(f)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        };
        Overview {
            queues: s.queues.len(),
            partitions: s.queues.iter().map(|q| q.partitions.len()).sum(),
            namespaces: distinct(&|q| q.namespace.as_ref()),
            tasks: distinct(&|q| q.task.as_ref()),
            messages: CountsView::from(&s.totals()),
            consumer_groups: s
                .groups
                .iter()
                .map(|g| g.name.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            timestamp: Timestamp::now(),
            as_of: s.as_of,
        }
    }
}

/// A consumer group on a queue, in `GET /consumer-groups`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupView<'a> {
    name: &'a str,
    queue_name: &'a str,
    topics: [&'a str; 1],
    members: i64,
    partitions: i64,
    partitions_with_lag: i64,
    total_lag: i64,
    max_time_lag: f64,
    state: &'static str,
    #[serde(serialize_with = "ts::opt")]
    last_consumed_at: Option<Timestamp>,
    subscription_mode: Option<&'a str>,
    #[serde(serialize_with = "ts::opt")]
    subscription_timestamp: Option<Timestamp>,
}

impl<'a> From<&'a GroupStats> for GroupView<'a> {
    fn from(g: &'a GroupStats) -> GroupView<'a> {
        GroupView {
            name: &g.name,
            queue_name: &g.queue,
            topics: [&g.queue],
            members: g.members,
            partitions: g.partitions,
            partitions_with_lag: g.partitions_with_lag,
            total_lag: g.total_lag,
            max_time_lag: (g.max_time_lag * 1000.0).round() / 1000.0,
            state: g.state.as_str(),
            last_consumed_at: g.last_consumed_at,
            subscription_mode: g.subscription_mode.as_deref(),
            subscription_timestamp: g.subscription_from,
        }
    }
}

/// A cursor in `GET /consumer-groups/{group}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupPartitionView<'a> {
    partition: &'a str,
    worker_id: Option<&'a str>,
    #[serde(serialize_with = "ts::opt")]
    last_consumed_at: Option<Timestamp>,
    total_consumed: i64,
    offset_lag: i64,
    time_lag_seconds: f64,
    lease_active: bool,
}

/// `GET /consumer-groups/{group}`: `{queue: {partitions: [...]}}`.
/// `GET /consumer-groups/:group`: `{"<queue>": {"partitions": [...]}}`, serialised straight
/// from the rows (10,000 partitions make a 1.4 MB answer; building a `Value` per partition
/// first cost more than the query).
pub(crate) fn group_detail(
    parts: &[GroupPartition],
) -> std::collections::BTreeMap<&str, GroupQueue<'_>> {
    let mut out: std::collections::BTreeMap<&str, GroupQueue<'_>> = Default::default();
    for p in parts {
        out.entry(p.queue.as_str())
            .or_default()
            .partitions
            .push(GroupPartitionView {
                partition: &p.partition,
                worker_id: p.worker_id.as_deref(),
                last_consumed_at: p.last_consumed_at,
                total_consumed: p.total_consumed,
                offset_lag: p.offset_lag,
                time_lag_seconds: (p.time_lag_seconds * 1000.0).round() / 1000.0,
                lease_active: p.lease_active,
            });
    }
    out
}

/// One queue of a group's detail.
#[derive(Serialize, Default)]
pub(crate) struct GroupQueue<'a> {
    partitions: Vec<GroupPartitionView<'a>>,
}

/// A message in a listing.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageView<'a> {
    id: Uuid,
    transaction_id: &'a str,
    partition_id: Uuid,
    queue: &'a str,
    partition: &'a str,
    namespace: Option<&'a str>,
    task: Option<&'a str>,
    status: &'a str,
    trace_id: Option<Uuid>,
    producer_sub: Option<&'a str>,
    #[serde(serialize_with = "ts::one")]
    created_at: Timestamp,
    #[serde(serialize_with = "ts::opt")]
    lease_expires_at: Option<Timestamp>,
}

impl<'a> From<&'a MessageSummary> for MessageView<'a> {
    fn from(m: &'a MessageSummary) -> MessageView<'a> {
        MessageView {
            id: m.id,
            transaction_id: &m.transaction_id,
            partition_id: m.partition_id,
            queue: &m.queue,
            partition: &m.partition,
            namespace: m.namespace.as_deref(),
            task: m.task.as_deref(),
            status: &m.status,
            trace_id: m.trace_id,
            producer_sub: m.producer_sub.as_deref(),
            created_at: m.created_at,
            lease_expires_at: m.lease_expires_at,
        }
    }
}

/// A page of the message listing: `{messages, nextCursor}` (and `queue` for a queue's list).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageList<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<&'a str>,
    messages: Vec<MessageView<'a>>,
    next_cursor: Option<String>,
}

impl<'a> MessageList<'a> {
    pub(crate) fn new(page: &'a MessagePage, queue: Option<&'a str>) -> MessageList<'a> {
        MessageList {
            queue,
            messages: page.messages.iter().map(MessageView::from).collect(),
            next_cursor: page.next.map(|c| c.token()),
        }
    }
}

/// A dead letter's fields (its payload is written beside them as raw JSON, as `data`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeadLetterView<'a> {
    id: Uuid,
    transaction_id: &'a str,
    partition_id: Uuid,
    queue: &'a str,
    partition: &'a str,
    consumer_group: &'a str,
    error_message: Option<&'a str>,
    retry_count: i32,
    #[serde(serialize_with = "ts::opt")]
    created_at: Option<Timestamp>,
    #[serde(serialize_with = "ts::one")]
    failed_at: Timestamp,
}

impl<'a> From<&'a DeadLetter> for DeadLetterView<'a> {
    fn from(d: &'a DeadLetter) -> DeadLetterView<'a> {
        DeadLetterView {
            id: d.message_id,
            transaction_id: &d.transaction_id,
            partition_id: d.partition_id,
            queue: &d.queue,
            partition: &d.partition,
            consumer_group: &d.consumer_group,
            error_message: d.error_message.as_deref(),
            retry_count: d.retry_count,
            created_at: d.created_at,
            failed_at: d.failed_at,
        }
    }
}

/// A message's fields in its detail (its payload is written beside them as raw JSON).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageDetailView<'a> {
    #[serde(flatten)]
    summary: MessageView<'a>,
    retry_count: i32,
    error_message: Option<&'a str>,
    consumer_groups: Vec<GroupStateView<'a>>,
}

impl<'a> From<&'a MessageDetail> for MessageDetailView<'a> {
    fn from(m: &'a MessageDetail) -> MessageDetailView<'a> {
        MessageDetailView {
            summary: MessageView::from(&m.summary),
            retry_count: m.retry_count,
            error_message: m.error_message.as_deref(),
            consumer_groups: m.groups.iter().map(GroupStateView::from).collect(),
        }
    }
}

/// Where a consumer group stands with a message.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupStateView<'a> {
    name: &'a str,
    consumed: bool,
    #[serde(serialize_with = "ts::opt")]
    lease_expires_at: Option<Timestamp>,
}

impl<'a> From<&'a GroupState> for GroupStateView<'a> {
    fn from(g: &'a GroupState) -> GroupStateView<'a> {
        GroupStateView {
            name: &g.name,
            consumed: g.consumed,
            lease_expires_at: g.lease_expires_at,
        }
    }
}

/// A trace event. Queen's trace routes answer snake_case keys; so do these.
#[derive(Serialize)]
pub(crate) struct TraceView<'a> {
    id: Uuid,
    transaction_id: &'a str,
    partition_id: Uuid,
    event_type: &'a str,
    data: &'a serde_json::value::RawValue,
    consumer_group: Option<&'a str>,
    worker_id: Option<&'a str>,
    #[serde(serialize_with = "ts::one")]
    created_at: Timestamp,
    trace_names: &'a [String],
}

impl<'a> From<&'a Trace> for TraceView<'a> {
    fn from(t: &'a Trace) -> TraceView<'a> {
        // `data` is the text of a stored jsonb value, valid JSON by construction.
        let null = serde_json::value::RawValue::NULL;
        TraceView {
            id: t.id,
            transaction_id: &t.transaction_id,
            partition_id: t.partition_id,
            event_type: &t.event_type,
            data: serde_json::from_str(&t.data).unwrap_or(null),
            consumer_group: t.consumer_group.as_deref(),
            worker_id: t.worker_id.as_deref(),
            created_at: t.created_at,
            trace_names: &t.names,
        }
    }
}

/// The paging of a trace listing, as it was asked for.
#[derive(Serialize)]
pub(crate) struct Paging {
    pub(crate) limit: i32,
    pub(crate) offset: i32,
}

/// A message's traces: `{traces}`.
#[derive(Serialize)]
pub(crate) struct MessageTraces<'a> {
    traces: Vec<TraceView<'a>>,
}

impl<'a> MessageTraces<'a> {
    pub(crate) fn new(traces: &'a [Trace]) -> MessageTraces<'a> {
        MessageTraces {
            traces: traces.iter().map(TraceView::from).collect(),
        }
    }
}

/// A page of traces: `{traces, total, pagination}`.
#[derive(Serialize)]
pub(crate) struct TraceList<'a> {
    traces: Vec<TraceView<'a>>,
    total: i64,
    pagination: Paging,
}

impl<'a> TraceList<'a> {
    pub(crate) fn new(page: &'a TracePage, pagination: Paging) -> TraceList<'a> {
        TraceList {
            traces: page.traces.iter().map(TraceView::from).collect(),
            total: page.total,
            pagination,
        }
    }
}

/// A trace name with its counts.
#[derive(Serialize)]
pub(crate) struct TraceNameView<'a> {
    trace_name: &'a str,
    trace_count: i64,
    message_count: i64,
    #[serde(serialize_with = "ts::one")]
    last_seen: Timestamp,
}

/// A page of trace names: `{trace_names, total, pagination}`.
#[derive(Serialize)]
pub(crate) struct TraceNameList<'a> {
    trace_names: Vec<TraceNameView<'a>>,
    total: i64,
    pagination: Paging,
}

impl<'a> TraceNameList<'a> {
    pub(crate) fn new(page: &'a TraceNamePage, pagination: Paging) -> TraceNameList<'a> {
        TraceNameList {
            trace_names: page
                .names
                .iter()
                .map(|n: &'a TraceName| TraceNameView {
                    trace_name: &n.name,
                    trace_count: n.traces,
                    message_count: n.messages,
                    last_seen: n.last_seen,
                })
                .collect(),
            total: page.total,
            pagination,
        }
    }
}
