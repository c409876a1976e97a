//! Ephemeral queues (docs/ephemeral.md): queues whose messages live in this server's memory
//! and survive nothing — not a restart, not a crash. Only a queue's *declaration* (the options
//! `configure` sets) is stored, in `queen.ephemeral_queues`; a declared queue comes back after
//! a restart configured and empty. Push, pop and ack never touch the database, so they work
//! while it is down.
//!
//! The registry ([`Ephemeral`]) maps names to queues ([`queue::Queue`], where the delivery
//! rules live), each behind its own mutex and with its own wake-up signal: a push wakes the
//! pops parked on its queue, an ack that sends a message back and a lease that runs out (the
//! sweeper, every [`SWEEP_EVERY`]) too. Critical sections are short and never await.
//!
//! Memory is bounded three ways: each queue by its `maxBytes` / `maxLength` (its `policy`
//! refuses or drops the oldest), the server by [`Limits::max_bytes`] of messages (payloads and
//! a fixed overhead each; `503 ephemeral_unavailable` past it) and [`Limits::max_queues`]
//! queues of at most [`queue::GROUPS_MAX`] groups. (Cursors, leases and redeliveries are not
//! charged: they are bounded by the messages and groups.) A queue made implicitly
//! by a push or a pop is forgotten once it has held nothing for [`Limits::idle`].
//!
//! Message ids are `e:<run>:<partition>:<seq>.<attempt>`: `run` is drawn at start, so an ack
//! that reaches a later run of the server, or another server, answers `stale` instead of
//! settling a different message; `seq` comes from one counter of the server and never repeats
//! within a run; `attempt` names the delivery, so only the lease held now can be settled.
//!
//! Cancel-safety: a waiting pop dropped by its caller leaves what it had already taken leased
//! (redelivered when the lease runs out; lost with `autoAck`, which is at-most-once anyway).

pub mod queue;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use queen_wire::Client;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

pub use queue::{AckStatus, Delivered, Depth, Drops, Options, Outcome, Policy, Window};
use queue::{Full, GROUPS_MAX, Queue, TooManyGroups};

use crate::engine::{Engine, Inner};
use crate::error::EngineError;

/// How often leases and `ttlSeconds` are settled and idle queues collected (besides on every
/// push, pop and ack of a queue).
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often the declarations other servers may have changed are read again.
pub const DECLARATIONS_EVERY: Duration = Duration::from_secs(5);
/// Messages of one push, and acks of one call, at most.
pub const ITEMS_MAX: usize = 10_000;
/// A pop's `batch`, at most.
pub const BATCH_MAX: usize = 10_000;
/// A pop's `timeout`, at most.
pub const TIMEOUT_MAX: Duration = Duration::from_secs(300);

/// Server-wide bounds and the options of a queue nobody configured.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// What every ephemeral queue's messages may cost together (`EPHEMERAL_MAX_BYTES`): their
    /// payloads and [`MESSAGE_OVERHEAD`](queue::MESSAGE_OVERHEAD) bytes each.
    pub max_bytes: u64,
    /// Queues at most (`EPHEMERAL_MAX_QUEUES`).
    pub max_queues: usize,
    /// An implicit queue holding nothing, and a consumer group that has not popped, are
    /// forgotten after this (`EPHEMERAL_IDLE_SECONDS`).
    pub idle: Duration,
    /// The options of a queue nobody configured, and of every option a `configure` omits.
    pub defaults: Options,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 256 << 20,
            max_queues: 100_000,
            idle: Duration::from_secs(300),
            defaults: Options {
                max_bytes: 16 << 20,
                max_length: 10_000,
                policy: Policy::Reject,
                ttl_ms: 0,
                lease_ms: 30_000,
                retry_limit: 5,
                window: Window::default(),
            },
        }
    }
}

/// Why an ephemeral call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EphemeralRefusal {
    /// The request is malformed (the caller's mistake, 400).
    #[error("{0}")]
    BadRequest(String),
    /// The queue is at its `maxBytes` / `maxLength` and its policy is `reject` (429).
    #[error("ephemeral queue {0} is full: the push would exceed its maxBytes or maxLength")]
    QueueFull(String),
    /// The server holds as many ephemeral bytes or queues as it may (503).
    #[error("this server holds as many ephemeral messages or queues as it may")]
    NoRoom,
    /// No ephemeral queue of that name (404, from `depth` only).
    #[error("no ephemeral queue named {0} on this server")]
    NotFound(String),
}

/// A pop.
#[derive(Debug, Clone)]
pub struct PopRequest {
    /// The queue.
    pub queue: String,
    /// One partition, or any.
    pub partition: Option<String>,
    /// The consumer group (None: the groupless mode).
    pub group: Option<String>,
    /// Messages at most.
    pub batch: usize,
    /// Wait for messages up to `timeout` (else answer at once).
    pub wait: bool,
    /// How long to wait.
    pub timeout: Duration,
    /// Settle at delivery: no lease, at-most-once.
    pub auto_ack: bool,
}

/// One queue in a listing.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Its name.
    pub name: Arc<str>,
    /// Whether it was configured.
    pub declared: bool,
    /// Its options.
    pub options: Options,
    /// Messages held.
    pub length: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Partitions holding messages or leases.
    pub partitions: usize,
    /// Groups that have popped it.
    pub groups: usize,
    /// Drops so far.
    pub drops: Drops,
}

#[derive(Debug)]
struct Slot {
    queue: Mutex<Queue>,
    arrived: Notify,
}

/// Every ephemeral queue of this server.
#[derive(Debug)]
pub struct Ephemeral {
    run: u64,
    limits: Limits,
    clock: Instant,
    seq: AtomicU64,
    bytes: AtomicI64,
    queues: Mutex<HashMap<Arc<str>, Arc<Slot>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a queue's lock leaves bookkeeping that is still memory-safe; the
    // queue stays usable rather than failing every later call.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Ephemeral {
    /// An empty registry with a new run id.
    pub fn new(limits: Limits) -> Ephemeral {
        Ephemeral {
            run: uuid::Uuid::new_v4().as_u64_pair().0,
            limits,
            clock: Instant::now(),
            seq: AtomicU64::new(1),
            bytes: AtomicI64::new(0),
            queues: Mutex::new(HashMap::new()),
        }
    }

    /// The bounds and defaults.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Queues held (declared and implicit).
    pub fn queue_count(&self) -> usize {
        lock(&self.queues).len()
    }

    /// What every queue's messages cost the budget: payloads and
    /// [`MESSAGE_OVERHEAD`](queue::MESSAGE_OVERHEAD) bytes each.
    pub fn bytes(&self) -> u64 {
        u64::try_from(self.bytes.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// The id of a delivery: the message and which delivery of it, so that an ack of a
    /// delivery whose lease ran out cannot settle the redelivery someone else holds.
    pub fn id(&self, d: &Delivered) -> String {
        format!("e:{:x}:{}:{}.{}", self.run, d.partition, d.seq, d.attempts)
    }

    fn slot(&self, name: &str, create: bool) -> Result<Option<Arc<Slot>>, EphemeralRefusal> {
        let mut queues = lock(&self.queues);
        if let Some(s) = queues.get(name) {
            return Ok(Some(s.clone()));
        }
        if !create {
            return Ok(None);
        }
        if queues.len() >= self.limits.max_queues {
            return Err(EphemeralRefusal::NoRoom);
        }
        let slot = Arc::new(Slot {
            queue: Mutex::new(Queue::new(self.limits.defaults, false, self.now_ms())),
            arrived: Notify::new(),
        });
        queues.insert(Arc::from(name), slot.clone());
        Ok(Some(slot))
    }

    /// Every queue, as the registry holds them now (to visit without holding its lock).
    fn snapshot(&self) -> Vec<(Arc<str>, Arc<Slot>)> {
        lock(&self.queues)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The queue of `slot`, locked, unless the registry removed it (deleted, or collected as
    /// idle) since it was looked up: then the caller looks the name up again.
    fn live(slot: &Slot) -> Option<MutexGuard<'_, Queue>> {
        let q = lock(&slot.queue);
        (!q.removed).then_some(q)
    }

    /// Runs `f` on the queue `name` (made when `create` and missing) under its lock, and
    /// carries the change of its bytes into the server's count. A queue removed between the
    /// look-up and the lock (deleted, or collected as idle) is looked up again, so nothing lands
    /// in a queue nobody can reach. None: no such queue (and not `create`).
    fn on_queue<R>(
        &self,
        name: &str,
        create: bool,
        f: impl FnOnce(&mut Queue) -> R,
    ) -> Result<Option<(Arc<Slot>, R)>, EphemeralRefusal> {
        loop {
            let Some(slot) = self.slot(name, create)? else {
                return Ok(None);
            };
            let Some(mut q) = Self::live(&slot) else {
                continue;
            };
            let r = self.counted(&mut q, f);
            drop(q);
            return Ok(Some((slot, r)));
        }
    }

    /// Runs `f` on a locked queue and carries the change of its charge into the server's count.
    fn counted<R>(&self, q: &mut Queue, f: impl FnOnce(&mut Queue) -> R) -> R {
        let before = q.charge();
        let r = f(q);
        let delta = i64::try_from(q.charge()).unwrap_or(i64::MAX)
            - i64::try_from(before).unwrap_or(i64::MAX);
        self.bytes.fetch_add(delta, Ordering::Relaxed);
        r
    }

    /// Takes a locked queue out of service as the registry drops it: marked removed (callers
    /// that found it before look again), emptied, its bytes given back.
    fn retire(&self, q: &mut Queue) {
        q.removed = true;
        self.counted(q, Queue::reset);
    }

    /// Appends `payloads` (JSON texts) to a partition, all or nothing; answers how many.
    pub fn push(
        &self,
        queue: &str,
        partition: &str,
        payloads: Vec<Arc<str>>,
    ) -> Result<usize, EphemeralRefusal> {
        let n = payloads.len();
        if n == 0 {
            return Ok(0);
        }
        // The charge is reserved first, so concurrent pushes cannot pass the budget together;
        // the push then counts what it really added (less what it dropped to make room).
        let b = payloads
            .iter()
            .map(|p| p.len() as u64 + queue::MESSAGE_OVERHEAD)
            .sum::<u64>();
        let b = i64::try_from(b).unwrap_or(i64::MAX);
        let max = i64::try_from(self.limits.max_bytes).unwrap_or(i64::MAX);
        if self.bytes.fetch_add(b, Ordering::Relaxed).saturating_add(b) > max {
            self.bytes.fetch_sub(b, Ordering::Relaxed);
            return Err(EphemeralRefusal::NoRoom);
        }
        let now = self.now_ms();
        let pushed = self.on_queue(queue, true, |q| {
            q.push(
                partition,
                payloads,
                || self.seq.fetch_add(1, Ordering::Relaxed),
                now,
            )
        });
        self.bytes.fetch_sub(b, Ordering::Relaxed);
        match pushed? {
            Some((slot, Ok(()))) => {
                slot.arrived.notify_waiters();
                Ok(n)
            }
            Some((_, Err(Full))) => Err(EphemeralRefusal::QueueFull(queue.to_owned())),
            None => Err(EphemeralRefusal::NoRoom),
        }
    }

    /// Takes messages, waiting for them when asked to (see [`PopRequest`]); an empty answer
    /// when none came in time.
    pub async fn pop(&self, r: &PopRequest) -> Result<Vec<Delivered>, EphemeralRefusal> {
        let group = r.group.as_deref().unwrap_or("");
        let batch = r.batch.clamp(1, BATCH_MAX);
        let deadline = tokio::time::Instant::now() + r.timeout.min(TIMEOUT_MAX);
        let mut held: Vec<Delivered> = Vec::new();
        let mut first_at: Option<tokio::time::Instant> = None;
        loop {
            // Registered before looking: a push between the look and the wait still wakes it.
            // (Should the queue be removed in between, the removal wakes it and it looks again.)
            let Some(slot) = self.slot(&r.queue, true)? else {
                return Err(EphemeralRefusal::NoRoom);
            };
            let arrived = slot.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            // The queue's lock is held in this block only: never across the wait below.
            let (got, window) = {
                let Some(mut q) = Self::live(&slot) else {
                    continue;
                };
                let now = self.now_ms();
                let want = batch - held.len();
                let got = self.counted(&mut q, |q| {
                    q.pop(r.partition.as_deref(), group, want, r.auto_ack, now)
                });
                (got, q.options.window)
            };
            let got = got.map_err(|TooManyGroups| {
                EphemeralRefusal::BadRequest(format!(
                    "ephemeral queue {} has {GROUPS_MAX} consumer groups, the most a queue may \
                     have (a group that stops popping is forgotten after EPHEMERAL_IDLE_SECONDS)",
                    r.queue
                ))
            })?;
            if !got.is_empty() && first_at.is_none() {
                first_at = Some(tokio::time::Instant::now());
            }
            held.extend(got);
            if !r.wait || ready(held.len(), batch, first_at, window) {
                return Ok(held);
            }
            let until = match first_at {
                Some(t) if window.ms > 0 => deadline.min(t + Duration::from_millis(window.ms)),
                _ => deadline,
            };
            if tokio::time::Instant::now() >= until {
                return Ok(held);
            }
            tokio::select! {
                () = &mut arrived => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// What an id names in this run (partition, sequence number, attempt), or the outcome it
    /// gets without looking at the queue: `stale` from another run, `unknown` if no id at all.
    fn locate<'a>(&self, id: &'a str) -> Result<(&'a str, u64, u32), Outcome> {
        match parse_id(id) {
            None => Err(Outcome::Unknown),
            Some((run, ..)) if run != self.run => Err(Outcome::Stale),
            Some((_, partition, seq, attempt)) => Ok((partition, seq, attempt)),
        }
    }

    /// Settles deliveries of `group` (None: the groupless mode), one outcome per id, in order.
    pub fn ack(
        &self,
        queue: &str,
        group: Option<&str>,
        acks: &[(String, AckStatus)],
    ) -> Vec<Outcome> {
        let group = group.unwrap_or("");
        let now = self.now_ms();
        let settled = self.on_queue(queue, false, |q| {
            acks.iter()
                .map(|(id, status)| match self.locate(id) {
                    Ok(delivery) => q.ack(group, delivery, *status, now),
                    Err(outcome) => outcome,
                })
                .collect::<Vec<Outcome>>()
        });
        match settled {
            Ok(Some((slot, out))) => {
                if out.contains(&Outcome::Redelivered) {
                    slot.arrived.notify_waiters();
                }
                out
            }
            // No such queue: an id of this run names nothing any more.
            _ => acks
                .iter()
                .map(|(id, _)| self.locate(id).err().unwrap_or(Outcome::Unknown))
                .collect(),
        }
    }

    /// Drops every message, lease and cursor of a queue: answers the messages dropped.
    pub fn reset(&self, queue: &str) -> u64 {
        match self.on_queue(queue, false, Queue::reset) {
            Ok(Some((_, dropped))) => dropped,
            _ => 0,
        }
    }

    /// Forgets a queue and its messages: answers whether it was there.
    pub fn remove(&self, queue: &str) -> bool {
        let mut queues = lock(&self.queues);
        let Some(slot) = queues.remove(queue) else {
            return false;
        };
        self.retire(&mut lock(&slot.queue));
        drop(queues);
        // Waiting pops look again, and find (or make) the queue that replaces it.
        slot.arrived.notify_waiters();
        true
    }

    /// Declares a queue with `options` (made if it is not there; its messages stay).
    pub fn declare(&self, queue: &str, options: Options) -> Result<(), EphemeralRefusal> {
        self.on_queue(queue, true, |q| {
            q.options = options;
            q.declared = true;
        })?;
        Ok(())
    }

    /// Brings the declarations in line with the stored ones (every server reads them): the
    /// listed queues are declared with their options, every other queue is implicit.
    pub fn apply_declarations(&self, declared: &[(String, Options)]) {
        let by_name: HashMap<&str, &Options> =
            declared.iter().map(|(n, o)| (n.as_str(), o)).collect();
        for (name, options) in &by_name {
            if let Err(e) = self.declare(name, **options) {
                tracing::warn!(queue = %name, error = %e, "cannot load an ephemeral declaration");
            }
        }
        let slots = self.snapshot();
        for (name, slot) in slots {
            if !by_name.contains_key(&*name) {
                let mut q = lock(&slot.queue);
                if q.declared {
                    q.declared = false;
                    q.options = self.limits.defaults;
                }
            }
        }
    }

    /// Every queue, by name.
    pub fn list(&self) -> Vec<Summary> {
        let slots = self.snapshot();
        let mut out: Vec<Summary> = slots
            .into_iter()
            .map(|(name, s)| {
                let q = lock(&s.queue);
                let (partitions, groups) = q.counts();
                Summary {
                    name,
                    declared: q.declared,
                    options: q.options,
                    length: q.length(),
                    bytes: q.bytes(),
                    partitions,
                    groups,
                    drops: q.drops(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// A queue's figures (pending for `group`), and whether it is declared; None when there is
    /// no such queue.
    pub fn depth(&self, queue: &str, group: Option<&str>) -> Option<(bool, Depth)> {
        let now = self.now_ms();
        let (_, d) = self
            .on_queue(queue, false, |q| {
                q.expire(now);
                (q.declared, q.depth(group))
            })
            .ok()??;
        Some(d)
    }

    /// Settles leases and `ttlSeconds` of every queue, wakes pops that can now get a
    /// redelivery, and forgets groups that have not popped for [`Limits::idle`] and implicit
    /// queues idle that long.
    pub fn sweep(&self) {
        let now = self.now_ms();
        let idle_ms = u64::try_from(self.limits.idle.as_millis()).unwrap_or(u64::MAX);
        let slots = self.snapshot();
        let forgettable =
            |q: &Queue| !q.declared && q.idle() && now.saturating_sub(q.touched_ms) >= idle_ms;
        for (name, slot) in slots {
            let (again, gone) = {
                let mut q = lock(&slot.queue);
                let again = self.counted(&mut q, |q| {
                    q.forget_groups(now, idle_ms);
                    q.expire(now)
                });
                (again, forgettable(&q))
            };
            if again {
                slot.arrived.notify_waiters();
            }
            if gone {
                // Under both locks, and only if nothing touched it meanwhile: a push that took
                // the slot before finds it removed and makes a new queue.
                let mut queues = lock(&self.queues);
                if queues.get(&name).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                    let mut q = lock(&slot.queue);
                    if forgettable(&q) {
                        self.retire(&mut q);
                        queues.remove(&name);
                    }
                }
            }
        }
    }
}

/// Whether a waiting pop has what it waits for: something, and (with a window) `count`
/// messages or `ms` since the first.
fn ready(
    held: usize,
    batch: usize,
    first_at: Option<tokio::time::Instant>,
    window: Window,
) -> bool {
    if held == 0 {
        return false;
    }
    if held >= batch || (window.ms == 0 && window.count == 0) {
        return true;
    }
    if window.count > 0 && held >= window.count {
        return true;
    }
    window.ms > 0 && first_at.is_some_and(|t| t.elapsed() >= Duration::from_millis(window.ms))
}

/// `e:<run hex>:<partition>:<seq>.<attempt>` → (run, partition, seq, attempt); the partition
/// may hold `:` and `.`. An id of another run needs only its run to parse (it is `stale`
/// whatever follows).
pub fn parse_id(id: &str) -> Option<(u64, &str, u64, u32)> {
    let rest = id.strip_prefix("e:")?;
    let (run, rest) = rest.split_once(':')?;
    let run = u64::from_str_radix(run, 16).ok()?;
    let Some((partition, delivery)) = rest.rsplit_once(':') else {
        return Some((run, "", 0, 0));
    };
    let (seq, attempt) = delivery.split_once('.').unwrap_or((delivery, "0"));
    Some((
        run,
        partition,
        seq.parse().unwrap_or(0),
        attempt.parse().unwrap_or(0),
    ))
}

/// An ack's status as Queen's clients send it: absent, `completed`, `success`, `acked` or `ok`
/// retire the message; anything else (`failed`, `retry`, a typo) sends it back, so a mistake
/// never retires a message.
pub fn ack_status(s: Option<&str>) -> AckStatus {
    match s {
        None | Some("completed" | "success" | "acked" | "ok") => AckStatus::Completed,
        Some(_) => AckStatus::Failed,
    }
}

/// The options a `configure` names: every one known (an unknown one is refused, not
/// ignored: each bounds something), integers in range, and the ones left out at `defaults`.
/// `lenient` (a stored declaration) ignores unknown and invalid ones instead.
pub fn parse_options(
    v: &Value,
    defaults: &Options,
    server: &Limits,
    lenient: bool,
) -> Result<Options, EphemeralRefusal> {
    let bad = |m: String| EphemeralRefusal::BadRequest(m);
    let empty = Map::new();
    let map = match v {
        Value::Object(m) => m,
        Value::Null => &empty,
        _ => return Err(bad("`options` must be an object".into())),
    };
    let mut o = *defaults;
    for (k, v) in map {
        if v.is_null() {
            continue;
        }
        let int = |lo: u64, hi: u64| -> Result<u64, EphemeralRefusal> {
            v.as_u64()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| bad(format!("option `{k}` must be an integer from {lo} to {hi}")))
        };
        let r = match k.as_str() {
            "maxBytes" => int(1, server.max_bytes).map(|n| o.max_bytes = n),
            "maxLength" => int(1, 10_000_000).map(|n| o.max_length = n),
            "policy" => match v.as_str() {
                Some("reject") => Ok(Policy::Reject),
                Some("dropOldest") => Ok(Policy::DropOldest),
                _ => Err(bad(
                    "option `policy` must be \"reject\" or \"dropOldest\"".into()
                )),
            }
            .map(|p| o.policy = p),
            "ttlSeconds" => int(0, 30 * 86_400).map(|n| o.ttl_ms = n * 1000),
            "leaseSeconds" => int(1, 86_400).map(|n| o.lease_ms = n * 1000),
            "retryLimit" => int(0, 1_000).map(|n| o.retry_limit = n as u32),
            "windowBuffer" => parse_window(v).map(|w| o.window = w),
            _ => Err(bad(format!(
                "unknown option `{k}`: the options are maxBytes, maxLength, policy, ttlSeconds, \
                 leaseSeconds, retryLimit and windowBuffer"
            ))),
        };
        if let (Err(e), false) = (r, lenient) {
            return Err(e);
        }
    }
    Ok(o)
}

fn parse_window(v: &Value) -> Result<Window, EphemeralRefusal> {
    let bad = || {
        EphemeralRefusal::BadRequest(
            "option `windowBuffer` must be {\"ms\": 0 to 60000, \"count\": 0 to 10000}".into(),
        )
    };
    let Value::Object(m) = v else {
        return Err(bad());
    };
    let mut w = Window::default();
    for (k, v) in m {
        match (k.as_str(), v.as_u64()) {
            ("ms", Some(n)) if n <= 60_000 => w.ms = n,
            ("count", Some(n)) if n <= 10_000 => w.count = n as usize,
            _ => return Err(bad()),
        }
    }
    Ok(w)
}

/// The options as `configure` names them.
pub fn options_json(o: &Options) -> Value {
    json!({
        "maxBytes": o.max_bytes,
        "maxLength": o.max_length,
        "policy": o.policy.as_str(),
        "ttlSeconds": o.ttl_ms / 1000,
        "leaseSeconds": o.lease_ms / 1000,
        "retryLimit": o.retry_limit,
        "windowBuffer": {"ms": o.window.ms, "count": o.window.count},
    })
}

impl Engine {
    /// The ephemeral queues of this server.
    pub fn ephemeral(&self) -> &Ephemeral {
        self.inner().ephemeral()
    }

    /// Declares an ephemeral queue with `o` (checked by [`parse_options`]): stores them (every
    /// server reads them) and applies them here.
    pub async fn ephemeral_configure(&self, queue: &str, o: Options) -> Result<(), EngineError> {
        crate::limits::check_name("queue", queue).map_err(EngineError::InvalidName)?;
        let e = self.ephemeral();
        let inner = self.inner();
        let st = inner.st()?;
        let stored = options_json(&o).to_string();
        inner
            .pool()
            .query(&st.ephemeral_declare, &[&queue, &stored.as_str()])
            .await?;
        e.declare(queue, o)?;
        Ok(())
    }

    /// Deletes an ephemeral queue: its declaration and its messages. Answers (whether there
    /// was anything to delete, whether a declaration was removed).
    pub async fn ephemeral_delete(&self, queue: &str) -> Result<(bool, bool), EngineError> {
        crate::limits::check_name("queue", queue).map_err(EngineError::InvalidName)?;
        let inner = self.inner();
        let st = inner.st()?;
        let rows = inner
            .pool()
            .query(&st.ephemeral_undeclare, &[&queue])
            .await?;
        let declared = !rows.is_empty();
        let held = self.ephemeral().remove(queue);
        Ok((declared || held, declared))
    }
}

/// Starts the sweeper and the reading of the stored declarations.
pub(crate) fn start(inner: std::sync::Weak<Inner>) {
    let weak = inner.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            let Some(i) = weak.upgrade() else { return };
            i.ephemeral().sweep();
        }
    });
    crate::jobs::every(
        inner,
        "ephemeral declarations",
        |_| DECLARATIONS_EVERY,
        |i| async move {
            let st = i.st()?;
            let rows = i.pool().query(&st.ephemeral_declared, &[]).await?;
            let e = i.ephemeral();
            let mut declared = Vec::with_capacity(rows.len());
            for r in rows {
                let name: String = r.get(st.cols.ephemeral_declared.name)?;
                let text: String = r.get(st.cols.ephemeral_declared.options)?;
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let o = parse_options(&v, &e.limits().defaults, e.limits(), true)
                    .unwrap_or(e.limits().defaults);
                declared.push((name, o));
            }
            e.apply_declarations(&declared);
            Ok(())
        },
    );
}

#[cfg(test)]
mod tests;
