//! In-memory caches of what rarely changes: partition ids by (queue, partition) name, and
//! whether a queue encrypts its payloads.
//!
//! Filled on miss by the push path's ensure step; an entry that turns out stale (the queue was
//! deleted, or its encryption setting changed on another server) is invalidated by the push that
//! notices, and refilled.

use std::collections::HashMap;
use std::sync::RwLock;

use uuid::Uuid;

#[derive(Debug, Default)]
struct QueueEntry {
    encrypted: bool,
    partitions: HashMap<String, (Uuid, i64)>,
}

/// What a push needs to know of its partition: the id (as the API shows it), the number (as
/// messages are keyed), and whether its queue encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    pub id: Uuid,
    pub num: i64,
    pub encrypted: bool,
}

/// Partition ids by queue, then partition name (nested so lookups by `&str` allocate nothing).
#[derive(Debug, Default)]
pub(crate) struct PartitionCache {
    queues: RwLock<HashMap<String, QueueEntry>>,
}

impl PartitionCache {
    /// The partition and its queue's encryption setting, as last seen.
    pub(crate) fn get(&self, queue: &str, partition: &str) -> Option<Target> {
        let map = self.queues.read().unwrap_or_else(|e| e.into_inner());
        let q = map.get(queue)?;
        q.partitions.get(partition).map(|&(id, num)| Target {
            id,
            num,
            encrypted: q.encrypted,
        })
    }

    pub(crate) fn insert(&self, queue: String, partition: String, target: Target) {
        let mut map = self.queues.write().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(queue).or_default();
        entry.encrypted = target.encrypted;
        entry.partitions.insert(partition, (target.id, target.num));
    }

    /// Forgets every partition of `queue`.
    pub(crate) fn invalidate_queue(&self, queue: &str) {
        let mut map = self.queues.write().unwrap_or_else(|e| e.into_inner());
        map.remove(queue);
    }
}

/// The (queue, consumer group) pairs whose cursors this server has created
/// (`queen.ensure_group`), so a named group's pops skip that round trip. A stale entry (the
/// group was deleted since) is harmless: the pop reports partitions without the group's cursor
/// and the group is ensured again. Bounded: past [`GroupCache::CAP`] pairs it starts over, so
/// clients popping made-up group names cannot grow it.
#[derive(Debug, Default)]
pub(crate) struct GroupCache {
    pairs: RwLock<std::collections::HashSet<(String, String)>>,
}

impl GroupCache {
    /// Pairs remembered at most.
    pub(crate) const CAP: usize = 10_000;

    pub(crate) fn ensured(&self, queue: &str, group: &str) -> bool {
        let set = self.pairs.read().unwrap_or_else(|e| e.into_inner());
        set.contains(&(queue.to_owned(), group.to_owned()))
    }

    pub(crate) fn insert(&self, queue: &str, group: &str) {
        let mut set = self.pairs.write().unwrap_or_else(|e| e.into_inner());
        if set.len() >= Self::CAP {
            set.clear();
        }
        set.insert((queue.to_owned(), group.to_owned()));
    }
}
