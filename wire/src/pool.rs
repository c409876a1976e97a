//! A fixed-size pool of pipelining connections.
//!
//! Each slot has a supervisor task that connects, health-checks and reconnects with exponential
//! backoff. Because connections multiplex, most work does not check a connection out at all:
//! [`Client::send`] on the pool hands the pipeline to the connected slot with the fewest pipelines
//! in flight. [`Pool::acquire`] gives exclusive use of one connection (for session state), through
//! a FIFO queue of waiters; a checked-out connection receives no shared work.
//!
//! When no connection is up, `send` waits up to `acquire_timeout` for one — unless the supervisors
//! are already failing to connect, in which case it answers [`Error::Unavailable`] at once, so a
//! caller that can fall back (the engine's disk buffer) does so without delay.
//!
//! Cancel-safety: dropping a `send` future before it reached a connection sends nothing; after
//! that, see [`Connection`]. Dropping an `acquire` future leaves the waiter queue intact.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use crate::client::Client;
use crate::config::Config;
use crate::connection::Connection;
use crate::error::Error;
use crate::pipeline::{Pipeline, SegmentResult};
use crate::statement::Statement;

/// Pool settings.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Number of connections.
    pub size: usize,
    /// How long `send`/`acquire` wait for a usable connection.
    pub acquire_timeout: Duration,
    /// A connection is checked this often.
    pub health_interval: Duration,
    /// An idle connection whose ping takes longer than this is dead.
    pub health_timeout: Duration,
    /// A busy connection (its ping queued behind statements in flight) is dead only when the
    /// server has sent nothing on it for this long; until then it is working.
    pub stall_timeout: Duration,
    /// First reconnect delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            size: 4,
            acquire_timeout: Duration::from_secs(5),
            health_interval: Duration::from_secs(10),
            health_timeout: Duration::from_secs(2),
            stall_timeout: Duration::from_secs(60),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// A snapshot of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Configured size.
    pub size: usize,
    /// Slots with a live connection.
    pub connected: usize,
    /// Pipelines sent through the pool and not yet answered.
    pub in_flight: usize,
    /// Connections checked out exclusively.
    pub checked_out: usize,
}

/// See the module docs. Cloning is cheap; the pool closes when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    pool: PoolConfig,
    slots: Vec<Slot>,
    permits: Arc<Semaphore>,
    /// Notified whenever a slot (re)connects or a checked-out connection comes back.
    ready: Notify,
    connected: AtomicUsize,
    /// True while supervisors fail to connect (the database is down).
    failing: AtomicBool,
    /// Dropping this stops the supervisors.
    _shutdown: watch::Sender<()>,
}

#[derive(Debug, Default)]
struct Slot {
    conn: Mutex<Option<Connection>>,
    in_flight: AtomicUsize,
    checked_out: AtomicBool,
}

impl Slot {
    fn get(&self) -> Option<Connection> {
        let guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().filter(|c| !c.is_closed()).cloned()
    }
    fn set(&self, c: Option<Connection>) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = c;
    }
}

impl Pool {
    /// Creates the pool and starts connecting in the background; never fails. Use
    /// [`Pool::connect`] to wait for (and report the error of) the first connection.
    pub fn new(config: Config, pool: PoolConfig) -> Pool {
        let size = pool.size.max(1);
        let (shutdown, _) = watch::channel(());
        let inner = Arc::new(Inner {
            slots: (0..size).map(|_| Slot::default()).collect(),
            permits: Arc::new(Semaphore::new(size)),
            ready: Notify::new(),
            connected: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            config,
            pool: PoolConfig { size, ..pool },
            _shutdown: shutdown,
        });
        for i in 0..size {
            tokio::spawn(supervise(
                Arc::downgrade(&inner),
                inner._shutdown.subscribe(),
                i,
            ));
        }
        Pool { inner }
    }

    /// Connects one connection first (so a wrong password or database name is reported here),
    /// then starts the pool.
    pub async fn connect(config: Config, pool: PoolConfig) -> Result<Pool, Error> {
        drop(Connection::connect(&config).await?);
        let p = Pool::new(config, pool);
        p.wait_connected(p.inner.pool.acquire_timeout).await?;
        Ok(p)
    }

    /// Waits until at least one connection is up.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), Error> {
        tokio::time::timeout(timeout, async {
            loop {
                let notified = self.inner.ready.notified();
                if self.inner.connected.load(Ordering::Acquire) > 0 {
                    return;
                }
                notified.await;
            }
        })
        .await
        .map_err(|_| Error::Unavailable)
    }

    /// The connection settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// True when at least one connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire) > 0
    }

    /// A snapshot of the pool.
    pub fn status(&self) -> PoolStatus {
        let s = &self.inner.slots;
        PoolStatus {
            size: s.len(),
            connected: self.inner.connected.load(Ordering::Acquire),
            in_flight: s.iter().map(|s| s.in_flight.load(Ordering::Relaxed)).sum(),
            checked_out: s
                .iter()
                .filter(|s| s.checked_out.load(Ordering::Relaxed))
                .count(),
        }
    }

    /// Exclusive use of one connection until the guard is dropped. Waiters are served in order.
    pub async fn acquire(&self) -> Result<PooledConnection, Error> {
        let inner = &self.inner;
        let timeout = inner.pool.acquire_timeout;
        tokio::time::timeout(timeout, async {
            let permit = inner
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Error::PoolClosed)?;
            loop {
                let notified = inner.ready.notified();
                // A permit guarantees a slot that is not checked out; it may be reconnecting.
                for (i, slot) in inner.slots.iter().enumerate() {
                    if let Some(conn) = slot.get() {
                        if slot
                            .checked_out
                            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                            .is_ok()
                        {
                            return Ok(PooledConnection {
                                conn,
                                slot: i,
                                pool: self.inner.clone(),
                                _permit: permit,
                            });
                        }
                    }
                }
                if inner.failing.load(Ordering::Acquire)
                    && inner.connected.load(Ordering::Acquire) == 0
                {
                    return Err(Error::Unavailable);
                }
                notified.await;
            }
        })
        .await
        .map_err(|_| Error::Unavailable)?
    }

    /// The connected, shared slot with the fewest pipelines in flight.
    async fn pick(&self) -> Result<(usize, Connection), Error> {
        let inner = &self.inner;
        let deadline = tokio::time::Instant::now() + inner.pool.acquire_timeout;
        loop {
            let notified = inner.ready.notified();
            let best = inner
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.checked_out.load(Ordering::Relaxed))
                .filter_map(|(i, s)| s.get().map(|c| (i, c, s.in_flight.load(Ordering::Relaxed))))
                .min_by_key(|(_, _, n)| *n);
            if let Some((i, c, _)) = best {
                return Ok((i, c));
            }
            if inner.failing.load(Ordering::Acquire) {
                return Err(Error::Unavailable);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Error::Unavailable);
            }
        }
    }

    async fn with_slot<T>(
        &self,
        f: impl AsyncFnOnce(&Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let (i, conn) = self.pick().await?;
        let slot = &self.inner.slots[i];
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        let _guard = InFlightGuard(&slot.in_flight);
        f(&conn).await
    }
}

struct InFlightGuard<'a>(&'a AtomicUsize);
impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Client for Pool {
    async fn send(&self, pipeline: Pipeline) -> Result<Vec<SegmentResult>, Error> {
        self.with_slot(async |c| c.send(pipeline).await).await
    }

    async fn prepare_typed(
        &self,
        sql: &str,
        types: &[postgres_protocol::Oid],
    ) -> Result<Statement, Error> {
        self.with_slot(async |c| c.prepare_typed(sql, types).await)
            .await
    }
}

/// A connection checked out of a [`Pool`]; returned when dropped.
#[derive(Debug)]
pub struct PooledConnection {
    conn: Connection,
    slot: usize,
    pool: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl Deref for PooledConnection {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        self.pool.slots[self.slot]
            .checked_out
            .store(false, Ordering::Release);
        self.pool.ready.notify_waiters();
    }
}

/// One health check. Liveness is judged by progress, not by a ping's queue time: a ping waits
/// behind the statements already in flight on a pipelining connection, so an idle connection
/// must answer it within `health_timeout`, while a busy one is alive for as long as the server
/// keeps sending frames (or has been silent for less than `stall_timeout`: a long statement
/// sends nothing until it ends).
async fn check(conn: &Connection, pc: &PoolConfig) -> Result<(), String> {
    let ping = conn.send(Pipeline::new().sync_owned());
    tokio::pin!(ping);
    loop {
        match tokio::time::timeout(pc.health_timeout, &mut ping).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => return Err(format!("health check failed: {e}")),
            Err(_) if conn.pending() <= 1 => {
                return Err("health check timed out on an idle connection".into());
            }
            Err(_) if conn.since_last_frame() >= pc.stall_timeout => {
                return Err(format!(
                    "connection stalled: busy and silent for {:?}",
                    conn.since_last_frame()
                ));
            }
            // Busy: statements ahead of the ping are running.
            Err(_) => {}
        }
    }
}

/// Keeps one slot connected for as long as the pool lives.
async fn supervise(pool: Weak<Inner>, mut shutdown: watch::Receiver<()>, idx: usize) {
    let mut backoff = None::<Duration>;
    loop {
        let Some(inner) = pool.upgrade() else { return };
        let (config, pc) = (inner.config.clone(), inner.pool);
        drop(inner);
        if let Some(delay) = backoff {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
        }
        let conn = tokio::select! {
            c = Connection::connect(&config) => c,
            _ = shutdown.changed() => return,
        };
        let Some(inner) = pool.upgrade() else { return };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                inner.failing.store(true, Ordering::Release);
                // Wake waiters so they can fail fast instead of sitting out their timeout.
                inner.ready.notify_waiters();
                let next = backoff.map_or(pc.min_backoff, |b| (b * 2).min(pc.max_backoff));
                // Loud once per outage and slot, quiet while it lasts.
                if backoff.is_none() {
                    tracing::warn!(slot = idx, error = %e, "database connection failed; retrying with backoff");
                } else {
                    tracing::debug!(slot = idx, error = %e, "database connection failed; retrying in {next:?}");
                }
                backoff = Some(next);
                continue;
            }
        };
        if backoff.is_some() {
            tracing::info!(slot = idx, "database connection re-established");
        }
        backoff = None;
        let slot = &inner.slots[idx];
        slot.set(Some(conn.clone()));
        inner.connected.fetch_add(1, Ordering::AcqRel);
        inner.failing.store(false, Ordering::Release);
        inner.ready.notify_waiters();
        drop(inner);

        // Watch the connection until it dies or stops answering.
        loop {
            tokio::select! {
                _ = conn.closed() => break,
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(pc.health_interval) => {
                    if let Err(why) = check(&conn, &pc).await {
                        tracing::warn!(slot = idx, "{why}");
                        conn.abort();
                        break;
                    }
                }
            }
        }
        let Some(inner) = pool.upgrade() else { return };
        inner.slots[idx].set(None);
        inner.connected.fetch_sub(1, Ordering::AcqRel);
        tracing::warn!(slot = idx, "database connection lost");
        // Reconnect at once the first time; back off if that fails.
    }
}
