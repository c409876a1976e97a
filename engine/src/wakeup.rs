//! Wake-ups for long-poll pops.
//!
//! A push that commits wakes its queues with [`Wake::Messages`], the number of messages it
//! stored there: every pop waiting on one named partition of the queue re-checks at once, and of
//! the pops waiting for any partition, as many per consumer group as there are new messages
//! (they take a message each at least). Waking them all would be a herd: at 200 msg/s, 2,000
//! workers long-polling one queue cost PostgreSQL 0.93 of a core and the server 0.74, where 10
//! cost 0.40 and 0.11 — each message woke every worker, and each woken worker ran a claim. A
//! woken pop that goes away before it looks passes its wake-up on to the next (tokio's `Notify`
//! forwards a `notify_one` its receiver dropped). Other changes that make messages available
//! (nacks, released leases, seeks, retries) wake with [`Wake::Everyone`]. Other servers attached to the same database learn of both through `NOTIFY
//! queen_push` — debounced: queues touched within a short window are sent together, with the
//! messages stored in them, never one NOTIFY per message — and a listener on a dedicated
//! connection turns those notifications into the same wake-ups there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use queen_wire::{Client, Config, Event, Listener, Pool};
use tokio::sync::{Notify, mpsc};

/// The NOTIFY channel.
pub const CHANNEL: &str = "queen_push";

const NOTIFY_SQL: &str = include_str!("../../sql/statements/notify_push.sql");

/// What a wake-up asks of the pops waiting on a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Anything may have become available (a nack, a released lease, a seek, a retry): every
    /// pop looks again.
    Everyone,
    /// A push stored this many messages: every pop of one named partition looks again, and as
    /// many of each consumer group's pops that take any partition.
    Messages(usize),
}

impl Wake {
    /// Two wake-ups of one queue as one (the announcer's debounce window).
    fn and(self, other: Wake) -> Wake {
        match (self, other) {
            (Wake::Messages(a), Wake::Messages(b)) => Wake::Messages(a.saturating_add(b)),
            _ => Wake::Everyone,
        }
    }
}

/// Per-queue wake-up signals.
#[derive(Debug, Default)]
pub struct WakeHub {
    queues: Registry<QueueSignal>,
    listening: AtomicBool,
}

/// The signal of one queue.
#[derive(Debug, Default)]
pub struct QueueSignal {
    /// Notified on every push commit to the queue: pops of one named partition wait here.
    pub notify: Notify,
    /// Pops parked on this queue right now (of any kind).
    pub waiting: AtomicUsize,
    /// The signals of pops that take any partition, by consumer group.
    groups: Registry<GroupSignal>,
}

/// The signal of the pops of one consumer group that take any partition of a queue.
#[derive(Debug, Default)]
pub struct GroupSignal {
    /// Notified once per message a push stores, up to the number of holders.
    pub notify: Notify,
}

/// Signals by name, each kept only while someone holds it: the last holder to go removes it,
/// so pops of names that never get a push (made-up queues included) leave nothing behind.
#[derive(Debug)]
struct Registry<T>(Mutex<HashMap<String, Arc<T>>>);

impl<T> Default for Registry<T> {
    fn default() -> Registry<T> {
        Registry(Mutex::default())
    }
}

impl<T> Registry<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<T>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holders of a signal: its references less the registry's.
    fn holders(signal: &Arc<T>) -> usize {
        Arc::strong_count(signal) - 1
    }
}

impl<T: Default> Registry<T> {
    /// The signal of `name`, made if nobody holds it, held until the guard is dropped.
    fn hold<'a>(&'a self, name: &'a str) -> Held<'a, T> {
        let mut m = self.lock();
        let signal = match m.get(name) {
            Some(s) => s.clone(),
            None => m.entry(name.to_owned()).or_default().clone(),
        };
        Held {
            registry: self,
            name,
            signal,
        }
    }
}

/// A hold on a signal of a [`Registry`].
#[derive(Debug)]
pub struct Held<'a, T> {
    registry: &'a Registry<T>,
    name: &'a str,
    signal: Arc<T>,
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.signal
    }
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        let mut m = self.registry.lock();
        // Nobody but us holds the signal.
        if Registry::holders(&self.signal) == 1 {
            m.remove(self.name);
        }
    }
}

/// A pop's hold on its queue's signal.
pub type SignalGuard<'a> = Held<'a, QueueSignal>;

/// A pop's hold on its consumer group's signal, within its queue's.
pub type GroupGuard<'a> = Held<'a, GroupSignal>;

impl QueueSignal {
    /// The signal of `group`'s any-partition pops, held until the guard is dropped.
    pub fn group<'a>(&'a self, group: &'a str) -> GroupGuard<'a> {
        self.groups.hold(group)
    }

    /// Wakes its pops as `w` asks.
    fn wake(&self, w: Wake) {
        self.notify.notify_waiters();
        for s in self.groups.lock().values() {
            match w {
                Wake::Everyone => s.notify.notify_waiters(),
                // One per holder at most (parked, or between claims: a holder that is claiming
                // keeps the wake-up for its next wait, or passes it on).
                Wake::Messages(n) => {
                    for _ in 0..n.min(Registry::holders(s)) {
                        s.notify.notify_one();
                    }
                }
            }
        }
    }
}

impl WakeHub {
    /// The signal of `queue` (waiters call `notified()` on it before checking for messages),
    /// held until the guard is dropped.
    pub fn signal<'a>(&'a self, queue: &'a str) -> SignalGuard<'a> {
        self.queues.hold(queue)
    }

    /// Queues with a signal right now (those with pops holding them).
    pub fn queues(&self) -> usize {
        self.queues.lock().len()
    }

    /// Wakes the pops waiting on `queue` as `w` asks.
    pub fn wake(&self, queue: &str, w: Wake) {
        if let Some(s) = self.queues.lock().get(queue) {
            s.wake(w);
        }
    }

    /// Wakes every waiter (after a reconnect, when notifications may have been missed).
    pub fn wake_all(&self) {
        for s in self.queues.lock().values() {
            s.wake(Wake::Everyone);
        }
    }

    /// Pops parked on `queue` right now.
    pub fn waiting(&self, queue: &str) -> usize {
        let q = self.queues.lock();
        q.get(queue)
            .map_or(0, |s| s.waiting.load(Ordering::Relaxed))
    }

    /// Pops parked on any queue right now.
    pub fn total_waiting(&self) -> usize {
        let q = self.queues.lock();
        q.values().map(|s| s.waiting.load(Ordering::Relaxed)).sum()
    }

    /// True once the cross-server listener is subscribed.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }
}

/// Sends debounced `NOTIFY`s for queues that received messages.
///
/// A payload is `server:queue` ([`Wake::Everyone`]) or `server/n:queue` ([`Wake::Messages`]). A server that
/// predates the count reads `server/n` as another server's id and wakes every pop, as before.
#[derive(Debug, Clone)]
pub(crate) struct Announcer {
    tx: mpsc::UnboundedSender<(String, Wake)>,
}

impl Announcer {
    pub(crate) fn start(pool: Pool, server_id: String, debounce: Duration) -> Announcer {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, Wake)>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                tokio::time::sleep(debounce).await;
                // The window's wake-ups, one per queue.
                let mut queues: HashMap<String, Wake> = HashMap::new();
                let mut add = |(q, w): (String, Wake)| {
                    let e = queues.entry(q).or_insert(Wake::Messages(0));
                    *e = e.and(w);
                };
                add(first);
                while let Ok(x) = rx.try_recv() {
                    add(x);
                }
                let payloads: Vec<String> = queues
                    .into_iter()
                    .map(|(q, w)| payload(&server_id, &q, w))
                    .collect();
                // Parsed in the same flight (no prepared statement: this runs at most once per
                // debounce window, and may run before the engine's statements exist).
                if let Err(e) = pool.query_sql(NOTIFY_SQL, &[&payloads]).await {
                    tracing::debug!(error = %e, "NOTIFY of pushed queues failed");
                }
            }
        });
        Announcer { tx }
    }

    /// Tells the other servers to wake the pops of `queue` as `w` asks.
    pub(crate) fn announce(&self, queue: &str, w: Wake) {
        let _ = self.tx.send((queue.to_owned(), w));
    }
}

/// The NOTIFY payload for `queue`: see [`Announcer`].
fn payload(server_id: &str, queue: &str, w: Wake) -> String {
    match w {
        Wake::Messages(n) => format!("{server_id}/{n}:{queue}"),
        Wake::Everyone => format!("{server_id}:{queue}"),
    }
}

/// A NOTIFY payload read back: the sending server, the queue and the wake-up. None for a
/// payload of another shape.
fn parse_payload(payload: &str) -> Option<(&str, &str, Wake)> {
    let (from, queue) = payload.split_once(':')?;
    match from.split_once('/') {
        Some((server, n)) => Some((server, queue, Wake::Messages(n.parse().ok()?))),
        None => Some((from, queue, Wake::Everyone)),
    }
}

/// Listens for other servers' pushes and wakes local waiters.
pub(crate) fn start_listener(
    config: Config,
    hub: Arc<WakeHub>,
    server_id: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut listener = loop {
            match Listener::connect(&config).await {
                Ok(mut l) => match l.listen(CHANNEL).await {
                    Ok(()) => {
                        hub.listening.store(true, Ordering::Release);
                        break l;
                    }
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed"),
                },
                Err(e) => tracing::debug!(error = %e, "wake-up listener cannot connect yet"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        };
        loop {
            match listener.recv().await {
                Event::Notification(n) => match parse_payload(&n.payload) {
                    Some((from, _, _)) if from == server_id => {}
                    Some((_, queue, w)) => hub.wake(queue, w),
                    None => tracing::debug!(payload = %n.payload, "unknown wake-up payload"),
                },
                Event::Reconnected => hub.wake_all(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_reaches_every_waiter_of_its_queue_and_no_other() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let hub = WakeHub::default();
        let (a1, a2, b) = (hub.signal("a"), hub.signal("a"), hub.signal("b"));
        assert_eq!(hub.queues(), 2);
        let (w1, w2, wb) = (
            a1.notify.notified(),
            a2.notify.notified(),
            b.notify.notified(),
        );
        tokio::pin!(w1, w2, wb);
        // Registered before the wake, as a pop does before it looks for messages.
        w1.as_mut().enable();
        w2.as_mut().enable();
        wb.as_mut().enable();
        hub.wake("a", Wake::Everyone);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(w1.as_mut().poll(&mut cx), Poll::Ready(()));
        assert_eq!(w2.as_mut().poll(&mut cx), Poll::Ready(()));
        assert_eq!(
            wb.as_mut().poll(&mut cx),
            Poll::Pending,
            "`b` was not pushed to"
        );
        hub.wake_all();
        assert_eq!(wb.as_mut().poll(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn a_push_wakes_as_many_pops_of_each_group_as_it_stored_messages() {
        use std::future::Future;
        use std::pin::Pin;
        use std::task::{Context, Waker};
        type Waits<'a> = Vec<Pin<Box<tokio::sync::futures::Notified<'a>>>>;
        // Registered before the wake, as a pop does before it looks for messages; the indexes
        // of those ready.
        fn enabled(ws: Vec<tokio::sync::futures::Notified<'_>>) -> Waits<'_> {
            let mut ws: Waits<'_> = ws.into_iter().map(Box::pin).collect();
            for w in &mut ws {
                w.as_mut().enable();
            }
            ws
        }
        // Polls the futures not ready yet (a future is not polled after it completed).
        fn ready(ws: &mut Waits<'_>, done: &mut Vec<usize>) -> Vec<usize> {
            let mut cx = Context::from_waker(Waker::noop());
            for (i, w) in ws.iter_mut().enumerate() {
                if !done.contains(&i) && w.as_mut().poll(&mut cx).is_ready() {
                    done.push(i);
                }
            }
            done.sort_unstable();
            done.clone()
        }
        let hub = WakeHub::default();
        let (q1, q2, q3) = (hub.signal("q"), hub.signal("q"), hub.signal("q"));
        let (a1, a2, a3, b) = (q1.group("a"), q2.group("a"), q3.group("a"), q1.group("b"));
        // Three pops of group `a`, one of `b`, one of a named partition.
        let mut ws = enabled(vec![
            a1.notify.notified(),
            a2.notify.notified(),
            a3.notify.notified(),
            b.notify.notified(),
            q2.notify.notified(),
        ]);
        // One message: one pop of each group, and the partition's pop.
        let mut done = Vec::new();
        hub.wake("q", Wake::Messages(1));
        assert_eq!(ready(&mut ws, &mut done), [0, 3, 4]);
        // Five more: the two other pops of `a`, and a wake-up kept for the next of `a` to wait
        // (at most one per holder: three for `a`).
        hub.wake("q", Wake::Messages(5));
        assert_eq!(ready(&mut ws, &mut done), [0, 1, 2, 3, 4]);
        let mut next = enabled(vec![a1.notify.notified(), a2.notify.notified()]);
        let mut next_done = Vec::new();
        assert_eq!(ready(&mut next, &mut next_done), [0], "one kept, not three");
        // `wake` reaches every pop of every group.
        let mut all = enabled(vec![
            a3.notify.notified(),
            b.notify.notified(),
            q3.notify.notified(),
        ]);
        hub.wake("q", Wake::Everyone);
        assert_eq!(ready(&mut all, &mut Vec::new()), [0, 1, 2]);
        assert_eq!(ready(&mut next, &mut next_done), [0, 1]);
    }

    #[test]
    fn notify_payloads_read_back() {
        for (q, w) in [
            ("q", Wake::Everyone),
            ("q", Wake::Messages(3)),
            ("a:b/c", Wake::Messages(0)),
            ("x/1:y", Wake::Everyone),
        ] {
            let p = payload("0af3", q, w);
            assert_eq!(parse_payload(&p), Some(("0af3", q, w)), "{p}");
        }
        assert_eq!(parse_payload("no separator"), None);
        assert_eq!(parse_payload("id/many:q"), None);
    }

    #[test]
    fn a_group_leaves_its_queue_with_its_last_holder() {
        let hub = WakeHub::default();
        let q = hub.signal("q");
        let (g1, g2) = (q.group("g"), q.group("g"));
        let count = || q.groups.lock().len();
        assert_eq!(count(), 1);
        drop(g1);
        assert_eq!(count(), 1, "still held");
        drop(g2);
        assert_eq!(count(), 0);
    }

    #[test]
    fn a_queue_leaves_the_hub_with_its_last_holder() {
        let hub = WakeHub::default();
        let first = hub.signal("q");
        let second = hub.signal("q");
        assert_eq!(hub.queues(), 1);
        drop(first);
        assert_eq!(hub.queues(), 1, "still held");
        drop(second);
        assert_eq!(hub.queues(), 0);
        // Made-up names leave nothing behind.
        for i in 0..1000 {
            drop(hub.signal(&format!("nobody-{i}")));
        }
        assert_eq!(hub.queues(), 0);
    }

    #[test]
    fn waiting_counts_add_up_per_queue() {
        let hub = WakeHub::default();
        let (a, b) = (hub.signal("a"), hub.signal("b"));
        a.waiting.fetch_add(2, Ordering::Relaxed);
        b.waiting.fetch_add(3, Ordering::Relaxed);
        assert_eq!(hub.waiting("a"), 2);
        assert_eq!(hub.waiting("missing"), 0);
        assert_eq!(hub.total_waiting(), 5);
    }
}
