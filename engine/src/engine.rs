//! The [`Engine`]: the handle the HTTP layer calls, and the shared state behind it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use queen_wire::{Client, Json, Pool};
use uuid::Uuid;

use crate::ack::{self, AckJob};
use crate::batch::{BatchConfig, Batcher};
use crate::buffer::{AppendError, BufferConfig, BufferStatus, DiskBuffer};
use crate::cache::PartitionCache;
use crate::error::EngineError;
use crate::model::{
    AckItem, AckOutcome, LeaseExtension, PopRequest, PopResult, PushItem, PushOutcome, PushStatus,
    QueueInfo, QueueOptions, Riders, TxOperation, TxOutcome,
};
use crate::push::{self, PushJob};
use crate::statements::Statements;
use crate::wakeup::{Announcer, Wake, WakeHub};
use crate::{pop, sweeper, transaction};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The disk buffer for database outages (none: pushes fail with 503 while it is down).
    pub buffer: Option<BufferConfig>,
    /// Coalescing of pushes.
    pub push_batch: BatchConfig,
    /// Coalescing of acks.
    pub ack_batch: BatchConfig,
    /// Coalescing of any-partition pops.
    pub pop_batch: BatchConfig,
    /// How often expired leases are settled; zero: never in the background (pops still settle
    /// the expired leases they find).
    pub sweep_interval: Duration,
    /// Window in which pushed queues are gathered into one NOTIFY.
    pub notify_debounce: Duration,
    /// A waiting pop re-checks at least this often (for time-based availability).
    pub long_poll_recheck: Duration,
    /// Listen for other servers' pushes (off for single-server tests that do not need it).
    pub listen: bool,
    /// The payload cipher (`QUEEN_ENCRYPTION_KEY`); queues with encryption on refuse pushes
    /// without it.
    pub cipher: Option<crate::crypto::Cipher>,
    /// How often the retention job runs (docs/semantics.md, "Retention"); zero: never in the background (only
    /// through [`Engine::run_retention`]).
    pub retention_interval: Duration,
    /// Rows the retention job deletes per statement.
    pub retention_batch: i32,
    /// How often due timers are fired into their queues (see [`crate::timers`]); zero: never.
    pub timer_interval: Duration,
    /// How often the filled page ranges of the messages' time index are summarised for the
    /// listings (see `queen.summarize_time_index`); zero: never (autovacuum does it, a
    /// minute or so late).
    pub summarize_interval: Duration,
    /// How old dashboard figures may be (see [`crate::analytics`]).
    pub analytics: crate::analytics::AnalyticsConfig,
    /// How often shared settings (the maintenance modes other servers may change) are re-read
    /// (see [`crate::maintenance`]).
    pub settings_refresh: Duration,
    /// Bounds and defaults of the ephemeral queues (see [`crate::ephemeral`]).
    pub ephemeral: crate::ephemeral::Limits,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            buffer: None,
            push_batch: BatchConfig::default(),
            ack_batch: BatchConfig::default(),
            pop_batch: BatchConfig {
                max_items: 64,
                ..BatchConfig::default()
            },
            sweep_interval: Duration::from_secs(1),
            notify_debounce: Duration::from_millis(5),
            long_poll_recheck: Duration::from_millis(500),
            listen: true,
            cipher: None,
            retention_interval: Duration::from_secs(10),
            retention_batch: 1000,
            timer_interval: Duration::from_millis(250),
            summarize_interval: Duration::from_secs(2),
            analytics: crate::analytics::AnalyticsConfig::default(),
            settings_refresh: Duration::from_secs(2),
            ephemeral: crate::ephemeral::Limits::default(),
        }
    }
}

/// Counters since start.
#[derive(Debug, Default)]
pub struct Metrics {
    pushed: AtomicU64,
    popped: AtomicU64,
    acked: AtomicU64,
    pop_requests: AtomicU64,
    pop_statements: AtomicU64,
}

impl Metrics {
    pub(crate) fn pushed(&self, n: usize) {
        self.pushed.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn popped(&self, n: usize) {
        self.popped.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn acked(&self, n: usize) {
        self.acked.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn pops_folded(&self, requests: usize, statements: usize) {
        self.pop_requests
            .fetch_add(requests as u64, Ordering::Relaxed);
        self.pop_statements
            .fetch_add(statements as u64, Ordering::Relaxed);
    }
    /// Folded any-partition pop requests, and the statements that served them.
    pub fn pop_folding(&self) -> (u64, u64) {
        (
            self.pop_requests.load(Ordering::Relaxed),
            self.pop_statements.load(Ordering::Relaxed),
        )
    }
    /// Messages pushed (stored), popped and acked since start.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.pushed.load(Ordering::Relaxed),
            self.popped.load(Ordering::Relaxed),
            self.acked.load(Ordering::Relaxed),
        )
    }
}

/// The engine's connections: the hot path's (push, pop, ack; pipelined and shared), a small
/// pool of their own for inspection reads, whose statements may run long: a listing never
/// queues in front of a push on a shared connection, and each runs on a connection of its own,
/// so a caller that stops waiting can cancel it; and the analytics refreshes' own, so a listing
/// never waits for a connection behind a refresh (docs/architecture.md, "Pools").
#[derive(Debug, Clone)]
pub struct Pools {
    /// Push, pop, ack, transactions, leases and every write.
    pub hot: Pool,
    /// Inspection reads asked for by a request: listings, details, traces.
    pub admin: Pool,
    /// The analytics refreshes (the snapshot and the group details): background reads that
    /// keep up to two connections busy for the length of a scan of every partition's counters.
    pub analytics: Pool,
}

impl From<Pool> for Pools {
    /// One pool for all three (tests, tools).
    fn from(pool: Pool) -> Pools {
        Pools {
            hot: pool.clone(),
            admin: pool.clone(),
            analytics: pool,
        }
    }
}

/// Shared state of the engine.
#[derive(Debug)]
pub(crate) struct Inner {
    pool: Pool,
    /// See [`Pools::admin`].
    admin: Pool,
    /// See [`Pools::analytics`].
    analytics_pool: Pool,
    /// Prepared once the database has answered (possibly after start-up, see [`Engine::start`]).
    statements: std::sync::OnceLock<Statements>,
    partitions: PartitionCache,
    groups: crate::cache::GroupCache,
    hub: Arc<WakeHub>,
    announcer: Announcer,
    /// Push batches, partition-disjoint when in flight together (see [`push`](crate::push)).
    push_batcher: Batcher<PushJob>,
    ack_batcher: Batcher<AckJob>,
    pop_batcher: Batcher<crate::pop::PopJob>,
    config: EngineConfig,
    metrics: Metrics,
    /// The shared dashboard figures.
    analytics: crate::analytics::Analytics,
    /// When messages were last listed (see [`crate::jobs::start_summaries`]).
    listings: crate::jobs::Watched,
    /// This server's view of the shared maintenance modes.
    maintenance: crate::maintenance::Maintenance,
    buffer: Option<Arc<DiskBuffer>>,
    /// The ephemeral queues (in memory).
    ephemeral: crate::ephemeral::Ephemeral,
    /// The cross-server wake-up listener, stopped with the engine.
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(l) = &self.listener {
            l.abort();
        }
    }
}

/// The queue engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Applies the schema and prepares the statements.
async fn initialise(pool: &Pool) -> Result<Statements, EngineError> {
    crate::schema::migrate(pool).await?;
    Statements::prepare(pool).await
}

/// Cancels the statement of a checked-out connection unless disarmed: the caller stopped
/// waiting (its client went away, or a timeout dropped it) while the statement ran.
struct CancelOnDrop(Option<queen_wire::CancelToken>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let (Some(token), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                if let Err(e) = token.cancel().await {
                    tracing::debug!(error = %e, "cannot cancel an abandoned statement");
                }
            });
        }
    }
}

/// Runs a statement on a connection of `pool` checked out for it alone, so that dropping this
/// future (the caller went away) cancels the statement on the server rather than leaving it
/// running (`CancelRequest`).
async fn checked_out(
    pool: &Pool,
    statement: &queen_wire::Statement,
    params: &[&dyn queen_wire::ToSql],
) -> Result<Vec<queen_wire::Row>, EngineError> {
    let conn = pool.acquire().await?;
    let mut guard = CancelOnDrop(Some(conn.cancel_token()));
    let rows = conn.query(statement, params).await;
    guard.0 = None;
    Ok(rows?)
}

impl Inner {
    /// Runs an inspection statement on a connection of the admin pool (see [`checked_out`]).
    pub(crate) async fn inspect(
        &self,
        statement: &queen_wire::Statement,
        params: &[&dyn queen_wire::ToSql],
    ) -> Result<Vec<queen_wire::Row>, EngineError> {
        checked_out(&self.admin, statement, params).await
    }

    /// Runs an analytics refresh's statement on a connection of the analytics pool (see
    /// [`checked_out`]).
    pub(crate) async fn refresh_read(
        &self,
        statement: &queen_wire::Statement,
        params: &[&dyn queen_wire::ToSql],
    ) -> Result<Vec<queen_wire::Row>, EngineError> {
        checked_out(&self.analytics_pool, statement, params).await
    }

    /// The prepared statements, or "unavailable" while the database has not answered yet.
    pub(crate) fn st(&self) -> Result<&Statements, EngineError> {
        self.statements
            .get()
            .ok_or_else(|| EngineError::from(queen_wire::Error::Unavailable))
    }

    /// Creates (or finds) partitions and caches them: one round trip.
    pub(crate) async fn ensure_partitions(
        &self,
        pairs: &[(String, String)],
    ) -> Result<(), EngineError> {
        let queues: Vec<&str> = pairs.iter().map(|(q, _)| q.as_str()).collect();
        let parts: Vec<&str> = pairs.iter().map(|(_, p)| p.as_str()).collect();
        let qids: Vec<Uuid> = pairs.iter().map(|_| Uuid::now_v7()).collect();
        // Random (v4) partition ids: any-partition pops walk partitions from a random id.
        let pids: Vec<Uuid> = pairs.iter().map(|_| Uuid::new_v4()).collect();
        let st = self.st()?;
        let c = st.cols.ensure_partitions;
        let rows = self
            .pool()
            .query(&st.ensure_partitions, &[&queues, &parts, &qids, &pids])
            .await?;
        for r in rows {
            self.partitions().insert(
                r.get(c.queue_name)?,
                r.get(c.partition_name)?,
                crate::cache::Target {
                    id: r.get(c.partition_id)?,
                    num: r.get(c.partition_num)?,
                    encrypted: r.get(c.encrypted)?,
                },
            );
        }
        Ok(())
    }

    /// The hot path's pool (see [`Pools::hot`]).
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    pub(crate) fn partitions(&self) -> &PartitionCache {
        &self.partitions
    }

    pub(crate) fn groups(&self) -> &crate::cache::GroupCache {
        &self.groups
    }

    pub(crate) fn hub(&self) -> &WakeHub {
        &self.hub
    }

    /// Messages of `queue` may be deliverable now: wakes this server's waiting pops as `w` asks
    /// and tells the other servers (their listeners wake theirs).
    pub(crate) fn wake(&self, queue: &str, w: Wake) {
        self.hub.wake(queue, w);
        self.announcer.announce(queue, w);
    }

    pub(crate) fn analytics(&self) -> &crate::analytics::Analytics {
        &self.analytics
    }

    pub(crate) fn listings(&self) -> &crate::jobs::Watched {
        &self.listings
    }

    pub(crate) fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn maintenance(&self) -> &crate::maintenance::Maintenance {
        &self.maintenance
    }

    pub(crate) fn ephemeral(&self) -> &crate::ephemeral::Ephemeral {
        &self.ephemeral
    }

    pub(crate) fn buffer(&self) -> Option<&Arc<DiskBuffer>> {
        self.buffer.as_ref()
    }

    pub(crate) fn push_batcher(&self) -> &Batcher<PushJob> {
        &self.push_batcher
    }

    pub(crate) fn ack_batcher(&self) -> &Batcher<AckJob> {
        &self.ack_batcher
    }

    pub(crate) fn pop_batcher(&self) -> &Batcher<crate::pop::PopJob> {
        &self.pop_batcher
    }
}

impl Engine {
    /// Applies the schema, prepares the statements and starts the background tasks (batchers,
    /// lease sweeper, wake-up listener).
    ///
    /// With a disk buffer, an unreachable database does not stop the start: the engine comes up
    /// buffering pushes (pops and acks answer unavailable) and finishes its initialisation in the
    /// background as soon as the database answers. Without one, the error is returned.
    pub async fn start(
        pools: impl Into<Pools>,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        let Pools {
            hot: pool,
            admin,
            analytics: analytics_pool,
        } = pools.into();
        let buffer = match &config.buffer {
            Some(b) => {
                let b = b.clone();
                let cipher = config.cipher.clone();
                Some(Arc::new(
                    tokio::task::spawn_blocking(move || DiskBuffer::open(&b, cipher))
                        .await
                        .map_err(|e| EngineError::Buffer(e.to_string()))?
                        .map_err(|e| EngineError::Buffer(e.to_string()))?,
                ))
            }
            None => None,
        };
        let statements = match initialise(&pool).await {
            Ok(s) => Some(s),
            Err(e) if e.is_unavailable() && buffer.is_some() => {
                tracing::warn!(error = %e, "database unreachable at start-up: pushes go to the disk buffer until it answers");
                None
            }
            Err(e) => return Err(e),
        };
        let server_id = Uuid::new_v4().simple().to_string();
        let hub = Arc::new(WakeHub::default());
        let announcer = Announcer::start(pool.clone(), server_id.clone(), config.notify_debounce);
        let listener = config
            .listen
            .then(|| crate::wakeup::start_listener(pool.config().clone(), hub.clone(), server_id));
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            // Push batches running at the same time touch disjoint partitions: they never wait
            // on each other's partition locks (see `batch`).
            let (ack_config, pop_config) = (config.ack_batch, config.pop_batch);
            let w = weak.clone();
            let push_batcher = Batcher::start(config.push_batch, move |jobs| {
                let w = w.clone();
                async move {
                    if let Some(inner) = w.upgrade() {
                        push::run_batch(inner, jobs).await;
                    }
                }
            });
            let w = weak.clone();
            let ack_batcher = Batcher::start(ack_config, move |jobs| {
                let w = w.clone();
                async move {
                    if let Some(inner) = w.upgrade() {
                        ack::run_batch(inner, jobs).await;
                    }
                }
            });
            let w = weak.clone();
            let pop_batcher = Batcher::start(pop_config, move |jobs| {
                let w = w.clone();
                async move {
                    if let Some(inner) = w.upgrade() {
                        crate::pop::run_batch(inner, jobs).await;
                    }
                }
            });
            let cell = std::sync::OnceLock::new();
            if let Some(s) = statements {
                let _ = cell.set(s);
            }
            Inner {
                pool,
                admin,
                analytics_pool,
                statements: cell,
                partitions: PartitionCache::default(),
                groups: crate::cache::GroupCache::default(),
                hub,
                announcer,
                push_batcher,
                ack_batcher,
                pop_batcher,
                config: config.clone(),
                metrics: Metrics::default(),
                analytics: crate::analytics::Analytics::new(config.analytics),
                listings: crate::jobs::Watched::default(),
                maintenance: crate::maintenance::Maintenance::default(),
                buffer,
                ephemeral: crate::ephemeral::Ephemeral::new(config.ephemeral),
                listener,
            }
        });
        if inner.statements.get().is_none() {
            let weak = Arc::downgrade(&inner);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let Some(inner) = weak.upgrade() else { return };
                    match initialise(&inner.pool).await {
                        Ok(s) => {
                            let _ = inner.statements.set(s);
                            tracing::info!(
                                "database reachable: schema applied, statements prepared"
                            );
                            return;
                        }
                        Err(e) => tracing::debug!(error = %e, "database still unreachable"),
                    }
                }
            });
        }
        sweeper::start(Arc::downgrade(&inner));
        crate::retention::start(Arc::downgrade(&inner));
        crate::kv::start_pruning(Arc::downgrade(&inner));
        crate::timers::start_firing(Arc::downgrade(&inner));
        crate::jobs::start_summaries(Arc::downgrade(&inner));
        crate::buffer::start_replayer(Arc::downgrade(&inner));
        crate::maintenance::start(Arc::downgrade(&inner));
        crate::ephemeral::start(Arc::downgrade(&inner));
        Ok(Engine { inner })
    }

    /// Pushes a batch of items atomically (docs/api.md, "Messages"). With a disk buffer, a push goes to the
    /// buffer instead of failing when the database is unreachable, and goes behind buffered
    /// records of its partitions (see [`buffer`](crate::buffer)).
    pub async fn push(&self, mut items: Vec<PushItem>) -> Result<Vec<PushOutcome>, EngineError> {
        let inner = &self.inner;
        // Names are checked once, here, before anything is written or buffered.
        push::validate(&items)?;
        let out = match &inner.buffer {
            None => push::push(inner, &items).await?,
            Some(buffer) => {
                // The transactionIds are fixed before the first attempt: a push whose commit was
                // lost with the connection is then a duplicate on replay.
                for it in &mut items {
                    if it.transaction_id.is_none() {
                        it.transaction_id = Some(Uuid::now_v7().to_string());
                    }
                }
                if buffer.must_buffer(
                    items
                        .iter()
                        .map(|it| (it.queue.as_str(), it.partition.as_str())),
                ) {
                    return self.buffer_items(buffer, items).await;
                }
                match push::push(inner, &items).await {
                    Ok(out) => {
                        if buffer.failing_over.swap(false, Ordering::Relaxed) {
                            tracing::info!("database reachable again: pushes go to it directly");
                        }
                        out
                    }
                    Err(e) if e.is_unavailable() => {
                        // Loud once per outage, not once per push.
                        if !buffer.failing_over.swap(true, Ordering::Relaxed) {
                            tracing::warn!(error = %e, "database unavailable: pushes go to the disk buffer");
                        }
                        return self.buffer_items(buffer, items).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        inner.metrics.pushed(
            out.iter()
                .filter(|o| o.status == PushStatus::Queued)
                .count(),
        );
        Ok(out)
    }

    async fn buffer_items(
        &self,
        buffer: &DiskBuffer,
        items: Vec<PushItem>,
    ) -> Result<Vec<PushOutcome>, EngineError> {
        buffer
            .append(&crate::buffer::records_of(&items))
            .await
            .map_err(|e| match e {
                AppendError::Full { limit } => EngineError::BufferFull(limit),
                AppendError::Io(e) => EngineError::Buffer(e.to_string()),
            })?;
        Ok(items
            .into_iter()
            .enumerate()
            .map(|(index, it)| PushOutcome {
                index,
                status: PushStatus::Buffered,
                transaction_id: it.transaction_id.unwrap_or_default(),
                message_id: None,
                partition_id: None,
                queue: it.queue,
                partition: it.partition,
                trace_id: it.trace_id,
            })
            .collect())
    }

    /// The disk buffer's figures (`None` without a buffer).
    pub fn buffer_status(&self) -> Option<BufferStatus> {
        let healthy = self.inner.pool.is_connected();
        self.inner.buffer.as_ref().map(|b| b.status(healthy))
    }

    /// Moves the disk buffer's quarantined records back into the log to be replayed again;
    /// returns how many (0 without a buffer).
    pub async fn replay_quarantine(&self) -> Result<u64, EngineError> {
        match &self.inner.buffer {
            Some(b) => b
                .requeue_quarantine()
                .await
                .map_err(|e| EngineError::Buffer(e.to_string())),
            None => Ok(0),
        }
    }

    /// True once the start-up replay of the disk buffer has caught up (always true without one).
    pub fn buffer_caught_up(&self) -> bool {
        self.inner.buffer.as_ref().is_none_or(|b| b.caught_up())
    }

    /// Push maintenance on this server alone: every push goes to the buffer and replay pauses
    /// until it is turned off. Refused without a buffer. The shared mode (which the settings
    /// refresh applies) is set with [`Engine::set_maintenance`]; this is how it is applied.
    pub(crate) fn set_push_maintenance(&self, on: bool) -> Result<(), EngineError> {
        match &self.inner.buffer {
            Some(b) => {
                b.set_maintenance(on);
                Ok(())
            }
            None if !on => Ok(()),
            None => Err(EngineError::Invalid(
                "push maintenance needs the disk buffer (FILE_BUFFER_DIR)".into(),
            )),
        }
    }

    /// Pops; with `wait`, holds until messages arrive or the time is up (docs/api.md, "Messages").
    pub async fn pop(
        &self,
        req: &PopRequest,
        wait: Option<Duration>,
    ) -> Result<Option<PopResult>, EngineError> {
        pop::pop(&self.inner, req, wait).await
    }

    /// Acknowledges messages (docs/api.md, "Messages"); one outcome per item.
    pub async fn ack(&self, items: Vec<AckItem>) -> Result<Vec<AckOutcome>, EngineError> {
        ack::ack(&self.inner, items).await
    }

    /// Extends a live lease (docs/api.md, "Messages").
    pub async fn extend_lease(
        &self,
        lease_id: Uuid,
        seconds: Option<u32>,
    ) -> Result<LeaseExtension, EngineError> {
        let secs = seconds.map(|s| i32::try_from(s).unwrap_or(i32::MAX));
        let st = self.inner.st()?;
        let c = st.cols.extend_lease;
        let rows = self
            .inner
            .pool
            .query(&st.extend_lease, &[&lease_id, &secs])
            .await?;
        let r = rows
            .first()
            .ok_or_else(|| EngineError::Internal("queen.extend_lease answered no row".into()))?;
        let renewed: i32 = r.get(c.renewed)?;
        Ok(LeaseExtension {
            renewed: u32::try_from(renewed).unwrap_or(0),
            expires_at: r.get(c.expires_at)?,
            error: r.get(c.error)?,
        })
    }

    /// Runs pushes and acks atomically (docs/api.md, "Messages").
    pub async fn transaction(
        &self,
        ops: Vec<TxOperation>,
        required_leases: Vec<Uuid>,
    ) -> Result<TxOutcome, EngineError> {
        transaction::run(&self.inner, ops, required_leases, &Riders::default()).await
    }

    /// A transaction with key/value and timer operations riding on it (docs/kv.md): they run
    /// after the pushes and acks, in the same transaction.
    pub async fn transaction_with_riders(
        &self,
        ops: Vec<TxOperation>,
        required_leases: Vec<Uuid>,
        riders: &Riders,
    ) -> Result<TxOutcome, EngineError> {
        transaction::run(&self.inner, ops, required_leases, riders).await
    }

    /// Creates or updates a queue (docs/api.md, "Queues").
    pub async fn configure(
        &self,
        queue: &str,
        namespace: Option<&str>,
        task: Option<&str>,
        o: &QueueOptions,
    ) -> Result<QueueInfo, EngineError> {
        crate::limits::check_name("queue", queue).map_err(EngineError::InvalidName)?;
        for (what, tag) in [("namespace", namespace), ("task", task)] {
            if let Some(t) = tag {
                crate::limits::check_name(what, t).map_err(EngineError::InvalidName)?;
            }
        }
        let st = self.inner.st()?;
        // Partition ids are random (v4): any-partition pops walk partitions from a random id.
        let (qid, pid) = (Uuid::now_v7(), Uuid::new_v4());
        let options = serde_json::to_string(o)
            .map_err(|e| EngineError::Internal(format!("queue options as JSON: {e}")))?;
        let rows = self
            .inner
            .pool
            .query(
                &st.configure,
                &[&qid, &queue, &namespace, &task, &pid, &Json(options)],
            )
            .await?;
        let r = rows
            .first()
            .ok_or_else(|| EngineError::Internal("queen.configure answered no row".into()))?;
        let default = self
            .inner
            .pool
            .query(&st.default_partition, &[&queue])
            .await?;
        let default = default.first().ok_or_else(|| {
            EngineError::Internal(format!("queue {queue} has no Default partition"))
        })?;
        let c = st.cols.default_partition;
        let (default_partition_id, default_num) = (default.get(c.id)?, default.get(c.num)?);
        let info = crate::admin::queue_info_from(st.cols.configure, r, default_partition_id)?;
        // Other partitions of the queue are re-resolved with the new settings (encryption).
        self.inner.partitions.invalidate_queue(&info.name);
        self.inner.analytics.invalidate();
        self.inner.partitions.insert(
            info.name.clone(),
            crate::model::DEFAULT_PARTITION.into(),
            crate::cache::Target {
                id: info.default_partition_id,
                num: default_num,
                encrypted: info.options.encryption_enabled.unwrap_or(false),
            },
        );
        Ok(info)
    }

    /// Settles expired leases now (the sweeper does this periodically). Returns how many.
    pub async fn sweep_expired_leases(&self) -> Result<u64, EngineError> {
        sweeper::sweep(&self.inner).await
    }

    /// Runs the retention job until it has nothing left to do now (it also runs in the
    /// background every `retention_interval`). Returns what it removed, or zeros when another
    /// server holds the retention lock.
    pub async fn run_retention(&self) -> Result<crate::retention::Removed, EngineError> {
        crate::retention::run(&self.inner).await
    }

    /// The wake-up hub (long-poll waiters).
    pub fn hub(&self) -> &WakeHub {
        &self.inner.hub
    }

    /// Counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The database pool.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Whether the database answers a round trip on the hot pool within `timeout`.
    pub async fn ping(&self, timeout: std::time::Duration) -> bool {
        use queen_wire::Client as _;
        let ping = self
            .inner
            .pool
            .send(queen_wire::Pipeline::new().sync_owned());
        matches!(tokio::time::timeout(timeout, ping).await, Ok(Ok(_)))
    }

    /// The engine over shared state a background task holds.
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Engine {
        Engine { inner }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The engine's state, held weakly: for background tasks that must not keep it alive.
    pub(crate) fn weak(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// True once the schema is applied and the statements are prepared.
    pub fn is_initialised(&self) -> bool {
        self.inner.statements.get().is_some()
    }
}
