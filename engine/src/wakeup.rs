//! Wake-ups for long-poll pops.
//!
//! A push that commits calls [`WakeHub::wake`] for its queues: every pop waiting on those queues
//! in this process re-checks at once. Other servers attached to the same database learn of the
//! push through `NOTIFY queen_push` — debounced: queue names touched within a short window are
//! sent together, never one NOTIFY per message — and a listener on a dedicated connection turns
//! those notifications into local wake-ups.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use queen_wire::{Client, Config, Event, Listener, Pool};
use tokio::sync::{Notify, mpsc};

/// The NOTIFY channel.
pub const CHANNEL: &str = "queen_push";

const NOTIFY_SQL: &str = include_str!("../../sql/statements/notify_push.sql");

/// Per-queue wake-up signals.
#[derive(Debug, Default)]
pub struct WakeHub {
    queues: Mutex<HashMap<String, Arc<QueueSignal>>>,
    listening: AtomicBool,
}

/// The signal of one queue.
#[derive(Debug, Default)]
pub struct QueueSignal {
    /// Notified on every push commit to the queue.
    pub notify: Notify,
    /// Pops parked on this queue right now.
    pub waiting: AtomicUsize,
}

/// A pop's hold on its queue's signal. The hub keeps a queue's entry only while someone holds
/// it: the last holder to go removes it, so pops of names that never get a push (made-up
/// queues included) leave nothing behind.
#[derive(Debug)]
pub struct SignalGuard<'a> {
    hub: &'a WakeHub,
    queue: &'a str,
    signal: Arc<QueueSignal>,
}

impl std::ops::Deref for SignalGuard<'_> {
    type Target = QueueSignal;
    fn deref(&self) -> &QueueSignal {
        &self.signal
    }
}

impl Drop for SignalGuard<'_> {
    fn drop(&mut self) {
        let mut q = self.hub.queues.lock().unwrap_or_else(|e| e.into_inner());
        // The map's reference and ours: nobody else holds the signal.
        if Arc::strong_count(&self.signal) == 2 {
            q.remove(self.queue);
        }
    }
}

impl WakeHub {
    /// The signal of `queue` (waiters call `notified()` on it before checking for messages),
    /// held until the guard is dropped.
    pub fn signal<'a>(&'a self, queue: &'a str) -> SignalGuard<'a> {
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let signal = match q.get(queue) {
            Some(s) => s.clone(),
            None => q.entry(queue.to_owned()).or_default().clone(),
        };
        SignalGuard {
            hub: self,
            queue,
            signal,
        }
    }

    /// Queues with a signal right now (those with pops holding them).
    pub fn queues(&self) -> usize {
        self.queues.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Wakes every pop waiting on `queue`.
    pub fn wake(&self, queue: &str) {
        let q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = q.get(queue) {
            s.notify.notify_waiters();
        }
    }

    /// Wakes every waiter (after a reconnect, when notifications may have been missed).
    pub fn wake_all(&self) {
        let q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        for s in q.values() {
            s.notify.notify_waiters();
        }
    }

    /// Pops parked on `queue` right now.
    pub fn waiting(&self, queue: &str) -> usize {
        let q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        q.get(queue)
            .map_or(0, |s| s.waiting.load(Ordering::Relaxed))
    }

    /// Pops parked on any queue right now.
    pub fn total_waiting(&self) -> usize {
        let q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        q.values().map(|s| s.waiting.load(Ordering::Relaxed)).sum()
    }

    /// True once the cross-server listener is subscribed.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }
}

/// Sends debounced `NOTIFY`s for queues that received messages.
#[derive(Debug, Clone)]
pub(crate) struct Announcer {
    tx: mpsc::UnboundedSender<String>,
}

impl Announcer {
    pub(crate) fn start(pool: Pool, server_id: String, debounce: Duration) -> Announcer {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                tokio::time::sleep(debounce).await;
                let mut queues = HashSet::from([first]);
                while let Ok(q) = rx.try_recv() {
                    queues.insert(q);
                }
                let payloads: Vec<String> = queues
                    .into_iter()
                    .map(|q| format!("{server_id}:{q}"))
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

    pub(crate) fn announce(&self, queue: &str) {
        let _ = self.tx.send(queue.to_owned());
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
                Event::Notification(n) => {
                    if let Some((from, queue)) = n.payload.split_once(':') {
                        if from != server_id {
                            hub.wake(queue);
                        }
                    }
                }
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
        hub.wake("a");
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
