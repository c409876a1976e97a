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
    partitions: HashMap<String, Uuid>,
}

/// What a push needs to know of its partition: the id, and whether its queue encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    pub id: Uuid,
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
        q.partitions.get(partition).map(|&id| Target {
            id,
            encrypted: q.encrypted,
        })
    }

    pub(crate) fn insert(&self, queue: String, partition: String, id: Uuid, encrypted: bool) {
        let mut map = self.queues.write().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(queue).or_default();
        entry.encrypted = encrypted;
        entry.partitions.insert(partition, id);
    }

    /// Forgets every partition of `queue`.
    pub(crate) fn invalidate_queue(&self, queue: &str) {
        let mut map = self.queues.write().unwrap_or_else(|e| e.into_inner());
        map.remove(queue);
    }
}
