//! One ephemeral queue in memory: a ring of messages per partition and a cursor per consumer
//! group on every ring. Pure bookkeeping with the time passed in (milliseconds on the
//! registry's monotonic clock), so every rule here is tested without waiting.
//!
//! * **Sequence numbers** come from the registry (one counter for the whole server), so they
//!   only grow: within a ring they are ascending but not contiguous, and an id can never name a
//!   later message of a ring that was emptied and made again.
//! * **Groups** are the queue's, not a ring's: a group that has popped the queue once has a
//!   cursor on every ring, created at the ring's head. A ring keeps a message until every group
//!   has passed it (delivered and not leased, nor waiting for redelivery); with no group yet,
//!   it keeps everything. Only the bounds and `ttlSeconds` drop messages a group still needs,
//!   and those drops are counted (per group as `skipped`).
//! * **Leases**: a delivery without `autoAck` is leased for `leaseSeconds`. A `failed` or
//!   `retry` ack, or a lease that runs out, sends the message back for redelivery with one more
//!   attempt while its retries (attempts after the first) are below `retryLimit`; past that it
//!   is dropped and counted.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

/// What a push past `maxBytes` / `maxLength` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Refuse the push (`429 queue_full`).
    Reject,
    /// Accept it and drop the oldest messages of the queue to make room.
    DropOldest,
}

impl Policy {
    /// The option's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Reject => "reject",
            Policy::DropOldest => "dropOldest",
        }
    }
}

/// Delivery-side batching of a waiting pop: it answers once `count` messages are ready or `ms`
/// after the first arrived (zero: not set), within its own timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    /// Milliseconds after the first message.
    pub ms: u64,
    /// Messages.
    pub count: usize,
}

/// The settings of one queue (every field has a server default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Payload bytes the queue may hold.
    pub max_bytes: u64,
    /// Messages the queue may hold.
    pub max_length: u64,
    /// What a push past either bound does.
    pub policy: Policy,
    /// Messages older than this are dropped (milliseconds; zero: never).
    pub ttl_ms: u64,
    /// How long a delivery is leased (milliseconds).
    pub lease_ms: u64,
    /// Redeliveries after the first delivery, at most.
    pub retry_limit: u32,
    /// See [`Window`].
    pub window: Window,
}

/// How an ack settles a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// Done: the message is retired.
    Completed,
    /// Not done: redelivered while retries remain.
    Failed,
}

/// The answer for one acked id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Retired (also a `failed` whose retries were spent: it was dropped and counted).
    Acked,
    /// It will be delivered again.
    Redelivered,
    /// The id was minted by another run of this server (or another server).
    Stale,
    /// No lease of this group holds that message (acked already, expired and redelivered, or
    /// never delivered to this group).
    Unknown,
}

impl Outcome {
    /// The answer's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Acked => "acked",
            Outcome::Redelivered => "redelivered",
            Outcome::Stale => "stale",
            Outcome::Unknown => "unknown",
        }
    }
}

/// A message handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The partition (ring) it came from.
    pub partition: Arc<str>,
    /// Its sequence number.
    pub seq: u64,
    /// Deliveries so far, this one included (1 on the first).
    pub attempts: u32,
    /// The JSON text it was pushed with.
    pub payload: Arc<str>,
}

/// Messages dropped without being consumed, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// To make room under `dropOldest`.
    pub bounds: u64,
    /// Past `ttlSeconds`.
    pub ttl: u64,
    /// Retries spent.
    pub retry: u64,
}

#[derive(Debug)]
struct Msg {
    seq: u64,
    at_ms: u64,
    payload: Arc<str>,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    deadline_ms: u64,
    attempts: u32,
}

/// A group's position on one ring.
#[derive(Debug, Default)]
struct Cursor {
    /// The lowest sequence number never delivered to the group.
    next: u64,
    /// Delivered and not settled.
    leased: BTreeMap<u64, Lease>,
    /// The earliest lease deadline (u64::MAX: none): expiry is looked for only past it.
    earliest_ms: u64,
    /// To deliver again, with the attempts so far.
    redeliver: BTreeMap<u64, u32>,
}

impl Cursor {
    /// A cursor at the head of its ring: the group gets everything held.
    fn new() -> Cursor {
        Cursor {
            earliest_ms: u64::MAX,
            ..Cursor::default()
        }
    }

    /// The lowest sequence number the group still needs.
    fn low_water(&self) -> u64 {
        let mut low = self.next;
        if let Some((&s, _)) = self.leased.first_key_value() {
            low = low.min(s);
        }
        if let Some((&s, _)) = self.redeliver.first_key_value() {
            low = low.min(s);
        }
        low
    }

    /// Whether the group has something to take from `msgs` (a redelivery or a new message).
    fn has_more(&self, msgs: &VecDeque<Msg>) -> bool {
        !self.redeliver.is_empty() || msgs.back().is_some_and(|m| m.seq >= self.next)
    }

    /// A failed delivery (nack or lease run out) of `seq` after `attempts`: back for
    /// redelivery while retries remain (true), else dropped (false).
    fn retry(&mut self, seq: u64, attempts: u32, retry_limit: u32) -> bool {
        if attempts <= retry_limit {
            self.redeliver.insert(seq, attempts);
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Default)]
struct Ring {
    msgs: VecDeque<Msg>,
    bytes: u64,
    cursors: HashMap<Arc<str>, Cursor>,
}

impl Ring {
    /// Drops the head message; every group that had not got it counts a skip. Answers its
    /// bytes.
    fn drop_head(&mut self, groups: &mut HashMap<Arc<str>, Group>) -> Option<u64> {
        let m = self.msgs.pop_front()?;
        let len = m.payload.len() as u64;
        self.bytes -= len;
        for (g, c) in &mut self.cursors {
            let mut skip = false;
            if c.next <= m.seq {
                c.next = m.seq + 1;
                skip = true;
            }
            skip |= c.redeliver.remove(&m.seq).is_some();
            if let (true, Some(group)) = (skip, groups.get_mut(g)) {
                group.skipped += 1;
            }
            // A consumer holding it keeps its copy; its ack answers `unknown`.
            c.leased.remove(&m.seq);
        }
        Some(len)
    }

    /// Drops head messages every group has passed: (messages, bytes).
    fn trim(&mut self) -> (u64, u64) {
        let Some(low) = self.cursors.values().map(Cursor::low_water).min() else {
            return (0, 0);
        };
        let (mut n, mut b) = (0, 0);
        while self.msgs.front().is_some_and(|m| m.seq < low) {
            if let Some(m) = self.msgs.pop_front() {
                n += 1;
                b += m.payload.len() as u64;
            }
        }
        self.bytes -= b;
        (n, b)
    }

    /// Nothing stored and nothing owed to any group: the ring can go.
    fn idle(&self) -> bool {
        self.msgs.is_empty()
            && self
                .cursors
                .values()
                .all(|c| c.leased.is_empty() && c.redeliver.is_empty())
    }
}

/// A consumer group of a queue (its cursors are in the rings).
#[derive(Debug)]
struct Group {
    /// Messages dropped before the group got them.
    skipped: u64,
    /// When it last popped: a group gone quiet is forgotten ([`Queue::forget_groups`]), so a
    /// subscriber that went away does not keep every message held.
    popped_ms: u64,
    /// The partitions that may have something for it (a push, a redelivery or the group's
    /// first pop marks them; a take that finds nothing unmarks them): a pop of any partition
    /// walks these, not every partition of the queue.
    ready: BTreeSet<Arc<str>>,
}

/// One ephemeral queue.
#[derive(Debug)]
pub struct Queue {
    /// Its settings.
    pub options: Options,
    /// Whether it was configured (its options are stored in the database).
    pub declared: bool,
    rings: BTreeMap<Arc<str>, Ring>,
    /// The groups that have popped the queue.
    groups: HashMap<Arc<str>, Group>,
    /// The earliest lease deadline of any cursor (u64::MAX: none), and a lower bound of the
    /// push time of every held message: [`Queue::expire`] looks at the rings only once one of
    /// them says something may be due.
    next_deadline_ms: u64,
    oldest_ms: u64,
    length: u64,
    bytes: u64,
    drops: Drops,
    /// The partition the last pop of any partition ended at: the next one starts after it.
    turn: Option<Arc<str>>,
    /// When it was last pushed to, popped or acked (idle implicit queues are collected).
    pub touched_ms: u64,
    /// Taken out of the registry (deleted or collected): callers that found it before must
    /// look the name up again.
    pub removed: bool,
}

/// Figures of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depth {
    /// Messages held.
    pub length: u64,
    /// Payload bytes held.
    pub bytes: u64,
    /// Per partition: (name, messages held, bytes, pending for the group asked about).
    pub partitions: Vec<(Arc<str>, u64, u64, u64)>,
    /// Per group: (name, pending, in flight, skipped); the groupless mode is named "".
    pub groups: Vec<(Arc<str>, u64, u64, u64)>,
    /// Drops so far.
    pub drops: Drops,
}

impl Queue {
    /// An empty queue.
    pub fn new(options: Options, declared: bool, now_ms: u64) -> Queue {
        Queue {
            options,
            declared,
            rings: BTreeMap::new(),
            groups: HashMap::new(),
            next_deadline_ms: u64::MAX,
            oldest_ms: u64::MAX,
            length: 0,
            bytes: 0,
            drops: Drops::default(),
            turn: None,
            touched_ms: now_ms,
            removed: false,
        }
    }

    /// Messages held.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// What the queue's messages cost the server's budget: their payloads and
    /// [`MESSAGE_OVERHEAD`] each.
    pub fn charge(&self) -> u64 {
        self.bytes + self.length * MESSAGE_OVERHEAD
    }

    /// Whether it holds nothing and owes nothing (no message, no lease).
    pub fn idle(&self) -> bool {
        self.rings.values().all(Ring::idle)
    }

    /// Appends `payloads` to `partition` with sequence numbers from `seqs` (ascending).
    /// Refused, with nothing stored, when they cannot fit under `reject` or cannot fit at all.
    pub fn push(
        &mut self,
        partition: &str,
        payloads: Vec<Arc<str>>,
        mut seqs: impl FnMut() -> u64,
        now_ms: u64,
    ) -> Result<(), Full> {
        self.touched_ms = now_ms;
        self.expire(now_ms);
        let n = payloads.len() as u64;
        let b: u64 = payloads.iter().map(|p| p.len() as u64).sum();
        let o = self.options;
        if n > o.max_length || b > o.max_bytes {
            return Err(Full);
        }
        while self.length + n > o.max_length || self.bytes + b > o.max_bytes {
            if o.policy == Policy::Reject || !self.drop_oldest() {
                return Err(Full);
            }
            self.drops.bounds += 1;
        }
        let name = self
            .rings
            .get_key_value(partition)
            .map_or_else(|| Arc::from(partition), |(k, _)| k.clone());
        for group in self.groups.values_mut() {
            group.ready.insert(name.clone());
        }
        self.oldest_ms = self.oldest_ms.min(now_ms);
        let groups = &self.groups;
        let ring = self.rings.entry(name).or_insert_with(|| Ring {
            cursors: groups.keys().map(|g| (g.clone(), Cursor::new())).collect(),
            ..Ring::default()
        });
        for payload in payloads {
            ring.msgs.push_back(Msg {
                seq: seqs(),
                at_ms: now_ms,
                payload,
            });
        }
        ring.bytes += b;
        self.length += n;
        self.bytes += b;
        Ok(())
    }

    /// Drops the oldest message of the queue (the ring whose head was pushed first).
    fn drop_oldest(&mut self) -> bool {
        let oldest = self
            .rings
            .iter_mut()
            .filter_map(|(_, r)| r.msgs.front().map(|m| (m.at_ms, m.seq)).zip(Some(r)))
            .min_by_key(|(k, _)| *k);
        match oldest.and_then(|(_, r)| r.drop_head(&mut self.groups)) {
            Some(b) => {
                self.length -= 1;
                self.bytes -= b;
                true
            }
            None => false,
        }
    }

    /// Settles what time decided: leases run out (back for redelivery or dropped), messages
    /// past `ttlSeconds` dropped, then what every group has passed trimmed and rings left idle
    /// removed. Answers whether a message became deliverable again (waiting pops should look).
    /// Costs nothing until the earliest lease deadline or the oldest message's `ttlSeconds`.
    pub fn expire(&mut self, now_ms: u64) -> bool {
        let o = self.options;
        let ttl_due = o.ttl_ms > 0 && self.oldest_ms < now_ms.saturating_sub(o.ttl_ms);
        if self.next_deadline_ms > now_ms && !ttl_due {
            return false;
        }
        let mut again = false;
        let (mut next_deadline, mut oldest) = (u64::MAX, u64::MAX);
        for (name, ring) in &mut self.rings {
            for (g, c) in &mut ring.cursors {
                if c.earliest_ms > now_ms {
                    next_deadline = next_deadline.min(c.earliest_ms);
                    continue;
                }
                let expired: Vec<(u64, u32)> = c
                    .leased
                    .iter()
                    .filter(|(_, l)| l.deadline_ms <= now_ms)
                    .map(|(&s, l)| (s, l.attempts))
                    .collect();
                for (seq, attempts) in expired {
                    c.leased.remove(&seq);
                    if c.retry(seq, attempts, o.retry_limit) {
                        again = true;
                        mark_ready(&mut self.groups, g, name);
                    } else {
                        self.drops.retry += 1;
                    }
                }
                c.earliest_ms = c
                    .leased
                    .values()
                    .map(|l| l.deadline_ms)
                    .min()
                    .unwrap_or(u64::MAX);
                next_deadline = next_deadline.min(c.earliest_ms);
            }
            if o.ttl_ms > 0 {
                let cut = now_ms.saturating_sub(o.ttl_ms);
                while ring.msgs.front().is_some_and(|m| m.at_ms < cut) {
                    if let Some(b) = ring.drop_head(&mut self.groups) {
                        self.length -= 1;
                        self.bytes -= b;
                        self.drops.ttl += 1;
                    }
                }
            }
            if let Some(m) = ring.msgs.front() {
                oldest = oldest.min(m.at_ms);
            }
        }
        self.next_deadline_ms = next_deadline;
        self.oldest_ms = oldest;
        self.settle();
        again
    }

    /// Trims what every group has passed and removes idle rings: every ring.
    fn settle(&mut self) {
        let names: Vec<Arc<str>> = self.rings.keys().cloned().collect();
        for name in names {
            self.settle_ring(&name);
        }
    }

    /// Trims one ring, and removes it when it holds nothing and owes nothing.
    fn settle_ring(&mut self, name: &str) {
        let Some(ring) = self.rings.get_mut(name) else {
            return;
        };
        let (n, b) = ring.trim();
        self.length -= n;
        self.bytes -= b;
        if ring.idle() {
            self.rings.remove(name);
            for group in self.groups.values_mut() {
                group.ready.remove(name);
            }
        }
    }

    /// Takes up to `max` messages for `group` ("" for the groupless mode): from `partition`,
    /// or from the partitions in turn. Redeliveries come before new messages, each ring in
    /// sequence order. With `auto_ack` nothing is leased. A new group past [`GROUPS_MAX`] is
    /// refused.
    pub fn pop(
        &mut self,
        partition: Option<&str>,
        group: &str,
        max: usize,
        auto_ack: bool,
        now_ms: u64,
    ) -> Result<Vec<Delivered>, TooManyGroups> {
        self.touched_ms = now_ms;
        self.expire(now_ms);
        let group: Arc<str> = match self.groups.get_key_value(group) {
            Some((g, _)) => g.clone(),
            None => {
                if self.groups.len() >= GROUPS_MAX {
                    return Err(TooManyGroups);
                }
                let g: Arc<str> = Arc::from(group);
                // At the head of every ring: the group gets everything still held.
                for ring in self.rings.values_mut() {
                    ring.cursors.insert(g.clone(), Cursor::new());
                }
                let ready = self.rings.keys().cloned().collect();
                self.groups.insert(
                    g.clone(),
                    Group {
                        skipped: 0,
                        popped_ms: now_ms,
                        ready,
                    },
                );
                g
            }
        };
        if let Some(g) = self.groups.get_mut(&group) {
            g.popped_ms = now_ms;
        }
        let mut out = Vec::new();
        let lease = (!auto_ack).then_some(now_ms + self.options.lease_ms);
        let mut touched: Vec<Arc<str>> = Vec::new();
        match partition {
            Some(p) => {
                if let Some(name) = self.rings.get_key_value(p).map(|(k, _)| k.clone()) {
                    self.take(&name, &group, max, lease, &mut out);
                    touched.push(name);
                }
            }
            None => {
                // The group's ready partitions in turn, from after where the last pop ended;
                // each step a look-up, so a queue of many partitions costs what the pop takes.
                let total = self.groups.get(&group).map_or(0, |g| g.ready.len());
                let mut at = self.turn.clone();
                for _ in 0..total {
                    if out.len() >= max {
                        break;
                    }
                    let Some(set) = self.groups.get(&group).map(|g| &g.ready) else {
                        break;
                    };
                    let after = at.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                    let Some(name) = set
                        .range::<str, _>((after, Bound::Unbounded))
                        .next()
                        .or_else(|| set.iter().next())
                        .cloned()
                    else {
                        break;
                    };
                    self.take(&name, &group, max, lease, &mut out);
                    touched.push(name.clone());
                    at = Some(name);
                }
                self.turn = at;
            }
        }
        for name in &touched {
            self.settle_ring(name);
        }
        Ok(out)
    }

    /// Takes from one ring for `group` (see [`take`]) and keeps the group's ready set and the
    /// queue's earliest deadline up to date.
    fn take(
        &mut self,
        name: &Arc<str>,
        group: &Arc<str>,
        max: usize,
        lease_until: Option<u64>,
        out: &mut Vec<Delivered>,
    ) {
        let Some(ring) = self.rings.get_mut(name) else {
            return;
        };
        take(ring, name, group, max, lease_until, out);
        if let Some(deadline) = lease_until {
            self.next_deadline_ms = self.next_deadline_ms.min(deadline);
        }
        let more = ring
            .cursors
            .get(group)
            .is_some_and(|c| c.has_more(&ring.msgs));
        if let (false, Some(g)) = (more, self.groups.get_mut(group)) {
            g.ready.remove(name);
        }
    }

    /// Forgets the groups that have not popped for `idle_ms`: their cursors, leases and
    /// redeliveries go, and what only they still needed is trimmed. Answers how many.
    pub fn forget_groups(&mut self, now_ms: u64, idle_ms: u64) -> usize {
        let quiet: Vec<Arc<str>> = self
            .groups
            .iter()
            .filter(|(_, g)| now_ms.saturating_sub(g.popped_ms) >= idle_ms)
            .map(|(name, _)| name.clone())
            .collect();
        for g in &quiet {
            self.groups.remove(g);
            for ring in self.rings.values_mut() {
                ring.cursors.remove(g);
            }
        }
        if !quiet.is_empty() {
            self.settle();
        }
        quiet.len()
    }

    /// Settles delivery `attempt` of `partition`/`seq` for `group`: only the delivery whose
    /// lease is held now (an earlier one, whose lease ran out, answers `Unknown`).
    pub fn ack(
        &mut self,
        group: &str,
        (partition, seq, attempt): (&str, u64, u32),
        status: AckStatus,
        now_ms: u64,
    ) -> Outcome {
        self.touched_ms = now_ms;
        let retry_limit = self.options.retry_limit;
        let Some(c) = self
            .rings
            .get_mut(partition)
            .and_then(|r| r.cursors.get_mut(group))
        else {
            return Outcome::Unknown;
        };
        if c.leased.get(&seq).is_none_or(|l| l.attempts != attempt) {
            return Outcome::Unknown;
        }
        c.leased.remove(&seq);
        let outcome = match status {
            AckStatus::Completed => Outcome::Acked,
            AckStatus::Failed if c.retry(seq, attempt, retry_limit) => {
                mark_ready(&mut self.groups, group, partition);
                Outcome::Redelivered
            }
            AckStatus::Failed => {
                self.drops.retry += 1;
                Outcome::Acked
            }
        };
        self.settle_ring(partition);
        outcome
    }

    /// Drops every message, lease and cursor (the options stay): answers the messages dropped.
    pub fn reset(&mut self) -> u64 {
        let dropped = self.length;
        self.rings.clear();
        self.groups.clear();
        self.turn = None;
        self.next_deadline_ms = u64::MAX;
        self.oldest_ms = u64::MAX;
        self.length = 0;
        self.bytes = 0;
        dropped
    }

    /// The queue's figures; `pending` per partition is for `group` (None: messages held).
    pub fn depth(&self, group: Option<&str>) -> Depth {
        let pending = |r: &Ring, c: &Cursor| {
            let fresh = r.msgs.len() - r.msgs.partition_point(|m| m.seq < c.next);
            fresh as u64 + c.redeliver.len() as u64
        };
        let partitions = self
            .rings
            .iter()
            .map(|(name, r)| {
                // A group that never popped would get everything held.
                let p = match group.and_then(|g| r.cursors.get(g)) {
                    Some(c) => pending(r, c),
                    None => r.msgs.len() as u64,
                };
                (name.clone(), r.msgs.len() as u64, r.bytes, p)
            })
            .collect();
        let mut groups: Vec<(Arc<str>, u64, u64, u64)> = self
            .groups
            .iter()
            .map(|(name, g)| {
                let (mut p, mut f) = (0, 0);
                for r in self.rings.values() {
                    if let Some(c) = r.cursors.get(name) {
                        p += pending(r, c);
                        f += c.leased.len() as u64;
                    }
                }
                (name.clone(), p, f, g.skipped)
            })
            .collect();
        groups.sort();
        Depth {
            length: self.length,
            bytes: self.bytes,
            partitions,
            groups,
            drops: self.drops,
        }
    }

    /// Partitions (rings) and groups.
    pub fn counts(&self) -> (usize, usize) {
        (self.rings.len(), self.groups.len())
    }

    /// Drops so far.
    pub fn drops(&self) -> Drops {
        self.drops
    }
}

/// What one held message costs beside its payload (its sequence number, time and the shared
/// pointer to its payload, in the ring and the allocator): counted in the server's budget, so
/// a flood of tiny payloads is bounded too.
pub const MESSAGE_OVERHEAD: u64 = 64;

/// A push that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Consumer groups one queue may have at once.
pub const GROUPS_MAX: usize = 1_000;

/// A pop of a new group on a queue that has [`GROUPS_MAX`] already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyGroups;

/// Marks `partition` ready for `group` (something came back for it there).
fn mark_ready(groups: &mut HashMap<Arc<str>, Group>, group: &str, partition: &str) {
    if let Some(g) = groups.get_mut(group) {
        g.ready.insert(Arc::from(partition));
    }
}

/// Delivers from one ring to one group: redeliveries first, then new messages.
fn take(
    ring: &mut Ring,
    name: &Arc<str>,
    group: &Arc<str>,
    max: usize,
    lease_until: Option<u64>,
    out: &mut Vec<Delivered>,
) {
    let Ring { msgs, cursors, .. } = ring;
    let Some(c) = cursors.get_mut(group) else {
        return;
    };
    let deliver = |c: &mut Cursor, m: &Msg, attempts: u32, out: &mut Vec<Delivered>| {
        if let Some(deadline_ms) = lease_until {
            c.leased.insert(
                m.seq,
                Lease {
                    deadline_ms,
                    attempts,
                },
            );
            c.earliest_ms = c.earliest_ms.min(deadline_ms);
        }
        out.push(Delivered {
            partition: name.clone(),
            seq: m.seq,
            attempts,
            payload: m.payload.clone(),
        });
    };
    while out.len() < max {
        let Some((seq, attempts)) = c.redeliver.pop_first() else {
            break;
        };
        if let Ok(i) = msgs.binary_search_by_key(&seq, |m| m.seq) {
            deliver(c, &msgs[i], attempts + 1, out);
        }
    }
    let mut i = msgs.partition_point(|m| m.seq < c.next);
    while out.len() < max && i < msgs.len() {
        let m = &msgs[i];
        c.next = m.seq + 1;
        deliver(c, m, 1, out);
        i += 1;
    }
}

#[cfg(test)]
mod tests;
