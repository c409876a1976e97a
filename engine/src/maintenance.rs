//! Maintenance modes (docs/api.md, "Operations"), shared by every server through the settings table.
//!
//! Each server holds the modes in memory (pop maintenance here, push maintenance in the
//! engine's disk buffer) and re-reads the settings every `settings_refresh`. A change made
//! through this server is applied in memory and stored; the refresh must not undo it with a
//! value it read before the change was stored. A change counts itself in flight from before
//! it applies until its store has committed (or failed), bumping a generation at both ends; a
//! refresh applies what it read only if no change is in flight and the generation did not move
//! while it was reading — so what it read was committed after every change it could undo. The
//! lock over the two counters is never held across an `.await`.
//!
//! The HTTP layer calls [`Engine::set_maintenance`] and [`Engine::maintenance_on`]; the
//! engine re-reads the stored modes every [`EngineConfig::settings_refresh`](crate::EngineConfig::settings_refresh) in a task of its
//! own, which ends with the engine.
//!
//! Cancel-safety: a change cancelled while storing leaves flight (a drop guard) and may leave
//! memory ahead of the database; the next refresh reads the stored value and applies it, so
//! every server agrees again within one refresh interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Weak};

use crate::engine::{Engine, Inner};
use crate::error::EngineError;

/// One of the two maintenance modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pops answer empty.
    Pop,
    /// Every push goes to the disk buffer; replay pauses.
    Push,
}

impl Mode {
    /// Setting key of the mode.
    fn key(self) -> &'static str {
        match self {
            Mode::Pop => "maintenance.pop",
            Mode::Push => "maintenance.push",
        }
    }
}

/// This server's view of the maintenance modes.
#[derive(Debug, Default)]
pub(crate) struct Maintenance {
    pop: AtomicBool,
    changes: Mutex<Changes>,
}

/// Local changes, for ordering them against refreshes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Changes {
    /// Bumped when a change starts and when it ends.
    generation: u64,
    /// Changes applied here whose store has not finished.
    in_flight: u32,
}

/// A change in flight; ends it when dropped (finished, failed or cancelled).
struct InFlight<'a>(&'a Maintenance);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut c = self.0.lock();
        c.generation += 1;
        c.in_flight -= 1;
    }
}

impl Maintenance {
    /// Whether `mode` is on on this server.
    pub(crate) fn is_on(&self, engine: &Engine, mode: Mode) -> bool {
        match mode {
            Mode::Pop => self.pop.load(Ordering::Relaxed),
            Mode::Push => engine.buffer_status().is_some_and(|b| b.maintenance),
        }
    }

    /// Turns `mode` on or off here and in the settings every server follows. Push maintenance
    /// is refused (before anything is stored) on a server without a disk buffer.
    pub(crate) async fn set(
        &self,
        engine: &Engine,
        mode: Mode,
        on: bool,
    ) -> Result<(), EngineError> {
        let _in_flight = {
            let mut c = self.lock();
            self.apply(engine, mode, on)?;
            c.generation += 1;
            c.in_flight += 1;
            InFlight(self)
        };
        engine
            .set_setting(mode.key(), if on { "true" } else { "false" })
            .await
    }

    /// Re-reads both modes from the settings and applies them unless a change made here was in
    /// flight while reading. Read errors leave the modes as they are.
    pub(crate) async fn refresh(&self, engine: &Engine) {
        let seen = *self.lock();
        let mut read = Vec::with_capacity(2);
        for mode in [Mode::Pop, Mode::Push] {
            if let Ok(v) = engine.setting(mode.key()).await {
                read.push((mode, v.as_deref() == Some("true")));
            }
        }
        let now = self.lock();
        if seen.in_flight > 0 || *now != seen {
            return;
        }
        for (mode, on) in read {
            // Push maintenance stored by another server cannot apply without a buffer here;
            // this server keeps taking pushes directly.
            let _ = self.apply(engine, mode, on);
        }
    }

    fn apply(&self, engine: &Engine, mode: Mode, on: bool) -> Result<(), EngineError> {
        match mode {
            Mode::Pop => {
                self.pop.store(on, Ordering::Relaxed);
                Ok(())
            }
            Mode::Push => engine.set_push_maintenance(on),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Changes> {
        // No holder can panic between updates of the two counters; a poisoned lock is as good.
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Engine {
    /// Whether maintenance `mode` is on on this server.
    pub fn maintenance_on(&self, mode: Mode) -> bool {
        self.inner().maintenance().is_on(self, mode)
    }

    /// Turns maintenance `mode` on or off here and for every server attached to the database.
    pub async fn set_maintenance(&self, mode: Mode, on: bool) -> Result<(), EngineError> {
        self.inner().maintenance().set(self, mode, on).await
    }

    /// Re-reads the modes other servers may have changed.
    pub async fn refresh_maintenance(&self) {
        self.inner().maintenance().refresh(self).await;
    }
}

/// Starts the refresh task: re-reads the modes at once, then every `settings_refresh`.
pub(crate) fn start(inner: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            let Some(inner) = inner.upgrade() else { return };
            let every = inner.config().settings_refresh;
            let engine = Engine::from_inner(inner);
            engine.refresh_maintenance().await;
            drop(engine);
            tokio::time::sleep(every).await;
        }
    });
}
