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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(n: u128, num: i64, encrypted: bool) -> Target {
        Target {
            id: Uuid::from_u128(n),
            num,
            encrypted,
        }
    }

    #[test]
    fn partitions_are_found_by_queue_and_name() {
        let c = PartitionCache::default();
        assert_eq!(c.get("q", "p"), None);
        c.insert("q".into(), "p".into(), target(1, 10, false));
        c.insert("q".into(), "r".into(), target(2, 11, false));
        c.insert("other".into(), "p".into(), target(3, 12, false));
        assert_eq!(c.get("q", "p"), Some(target(1, 10, false)));
        assert_eq!(c.get("q", "r"), Some(target(2, 11, false)));
        assert_eq!(c.get("other", "p"), Some(target(3, 12, false)));
        assert_eq!(c.get("q", "missing"), None);
    }

    #[test]
    fn the_last_insert_sets_the_queues_encryption_for_all_its_partitions() {
        let c = PartitionCache::default();
        c.insert("q".into(), "p".into(), target(1, 10, false));
        c.insert("q".into(), "r".into(), target(2, 11, true));
        assert!(c.get("q", "p").is_some_and(|t| t.encrypted));
    }

    #[test]
    fn invalidating_a_queue_forgets_only_its_partitions() {
        let c = PartitionCache::default();
        c.insert("q".into(), "p".into(), target(1, 10, false));
        c.insert("keep".into(), "p".into(), target(2, 11, false));
        c.invalidate_queue("q");
        assert_eq!(c.get("q", "p"), None);
        assert_eq!(c.get("keep", "p"), Some(target(2, 11, false)));
    }

    #[test]
    fn the_group_cache_is_bounded() {
        let c = GroupCache::default();
        c.insert("q", "g0");
        assert!(c.ensured("q", "g0"));
        assert!(!c.ensured("q", "g1"));
        assert!(!c.ensured("other", "g0"));
        for i in 1..GroupCache::CAP {
            c.insert("q", &format!("g{i}"));
        }
        assert!(c.ensured("q", "g0"), "full, not over");
        c.insert("q", "one-more");
        assert!(c.ensured("q", "one-more"));
        assert!(!c.ensured("q", "g0"), "past the cap it starts over");
        assert_eq!(c.pairs.read().map(|s| s.len()).unwrap_or(0), 1);
    }
}
