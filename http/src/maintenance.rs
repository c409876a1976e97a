//! Maintenance modes (api.md §5), shared by every server through the settings table.
//!
//! Each server holds the modes in memory (pop maintenance here, push maintenance in the
//! engine's disk buffer) and re-reads the settings every `settings_refresh`. A change made
//! through this server is applied in memory and stored; the refresh must not undo it with a
//! value it read before the change was stored. A generation counter orders the two: a change
//! bumps it before it applies and again once the store has committed, and a refresh applies
//! what it read only if the generation did not move while it was reading. The counter's lock
//! is never held across an `.await`.
//!
//! Cancel-safety: a change cancelled between its two bumps leaves memory ahead of the
//! database; the next refresh reads the stored value and applies it, so every server agrees
//! again within one refresh interval.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use queen_engine::{Engine, EngineError};

/// One of the two maintenance modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
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
    generation: Mutex<u64>,
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
        {
            let mut generation = self.lock();
            *generation += 1;
            self.apply(engine, mode, on)?;
        }
        engine
            .set_setting(mode.key(), if on { "true" } else { "false" })
            .await?;
        *self.lock() += 1;
        Ok(())
    }

    /// Re-reads both modes from the settings and applies them unless a change was made here
    /// while reading. Read errors leave the modes as they are.
    pub(crate) async fn refresh(&self, engine: &Engine) {
        let seen = *self.lock();
        let mut read = Vec::with_capacity(2);
        for mode in [Mode::Pop, Mode::Push] {
            if let Ok(v) = engine.setting(mode.key()).await {
                read.push((mode, v.as_deref() == Some("true")));
            }
        }
        let generation = self.lock();
        if *generation != seen {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        // The counter stays consistent even if a holder panicked: it is only ever incremented.
        self.generation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
