//! In-memory caches of what rarely changes: partition ids by (queue, partition) name.
//!
//! Filled on miss by the push path's ensure step; an entry that turns out stale (the queue was
//! deleted) is invalidated by the push that notices and refilled.

use std::collections::HashMap;
use std::sync::RwLock;

use uuid::Uuid;

/// Partition ids by queue, then partition name (nested so lookups by `&str` allocate nothing).
#[derive(Debug, Default)]
pub(crate) struct PartitionCache {
    ids: RwLock<HashMap<String, HashMap<String, Uuid>>>,
}

impl PartitionCache {
    pub(crate) fn get(&self, queue: &str, partition: &str) -> Option<Uuid> {
        let map = self.ids.read().unwrap_or_else(|e| e.into_inner());
        map.get(queue).and_then(|q| q.get(partition)).copied()
    }

    pub(crate) fn insert(&self, queue: String, partition: String, id: Uuid) {
        let mut map = self.ids.write().unwrap_or_else(|e| e.into_inner());
        map.entry(queue).or_default().insert(partition, id);
    }

    /// Forgets every partition of `queue`.
    pub(crate) fn invalidate_queue(&self, queue: &str) {
        let mut map = self.ids.write().unwrap_or_else(|e| e.into_inner());
        map.remove(queue);
    }
}
