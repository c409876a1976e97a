//! The disk buffer: pushes stay durable while PostgreSQL is unreachable and are replayed exactly
//! once when it returns (docs/semantics.md, "Disk buffer").
//!
//! **Routing.** A push goes to the database unless (a) push maintenance is on, or (b) one of its
//! partitions still has records in the buffer — then it goes behind them, so each partition's
//! order holds across the outage. A push that meets a connection error (not a data error) falls
//! back to the buffer with the transactionIds it already had, so a push that did commit before
//! the connection died is deduplicated on replay.
//!
//! **Durability.** A buffered push is answered only after its records are fsynced (the log's
//! group fsync). Per-partition counts of records not yet replayed are kept in memory; they are
//! raised *before* the append, so no direct push can overtake a buffered one.
//!
//! **Replay.** A task reads the log oldest first and pushes records in batches through the
//! normal push path, while the database answers and push maintenance is off. Counts drop once a
//! batch has committed. Drained segments are deleted. On start-up the whole log is scanned to
//! rebuild the counts, so a restart with a non-empty log resumes where it was (records replayed
//! twice after a crash are duplicates by transactionId and stored once).

pub(crate) mod log;
pub(crate) mod record;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use self::log::{Log, Next, SegmentReader, segment_path, segments};
use self::record::{DecodeError, Record};
use crate::crypto::Cipher;
use crate::engine::Inner;

/// Records replayed per statement.
const REPLAY_BATCH: usize = 500;
/// Longest pause between two attempts at the same records.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Records held at once by the start-up scan.
const SCAN_BATCH: usize = 10_000;

/// Where and how to keep the buffer.
#[derive(Debug, Clone)]
pub struct BufferConfig {
    /// Directory of the segment files.
    pub dir: PathBuf,
    /// A segment is closed once it is larger than this.
    pub segment_bytes: u64,
    /// Pushes that would take the segment files past this many bytes are refused (0: no limit).
    pub max_bytes: u64,
    /// Failed replays of a batch before it is split into single records, and of a single record
    /// before it is quarantined.
    pub replay_attempts: u32,
    /// Pause after the first failed replay; it doubles with each failure (at most 30 s).
    pub replay_backoff: Duration,
}

impl BufferConfig {
    /// Defaults for `dir` (64 MiB segments, no size limit).
    pub fn new(dir: impl Into<PathBuf>) -> BufferConfig {
        BufferConfig {
            dir: dir.into(),
            segment_bytes: 64 * 1024 * 1024,
            max_bytes: 0,
            replay_attempts: 5,
            replay_backoff: Duration::from_secs(1),
        }
    }
}

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppendError {
    /// The records would take the buffer past its size limit; nothing was written.
    #[error("the disk buffer is full ({limit} bytes)")]
    Full { limit: u64 },
    /// Writing failed; nothing was acknowledged.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Figures of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferStatus {
    /// Records waiting to be replayed.
    pub pending: u64,
    /// Records that could not be read (damaged on disk).
    pub failed: u64,
    /// Records set aside (kept on disk) after the database kept refusing them; see
    /// `Engine::replay_quarantine`.
    pub quarantined: u64,
    /// Records replayed since start.
    pub replayed: u64,
    /// The database answers.
    pub db_healthy: bool,
    /// Push maintenance is on.
    pub maintenance: bool,
    /// Bytes of the segment files.
    pub bytes: u64,
    /// The size limit (0: none).
    pub max_bytes: u64,
}

#[derive(Debug)]
pub(crate) struct DiskBuffer {
    log: Log,
    attempts: u32,
    backoff: Duration,
    /// Records the replay set aside, in a log of their own (`<dir>/quarantine`): never
    /// dropped, never in the way of the records behind them.
    quarantine: Log,
    quarantined: AtomicU64,
    /// Seals records written to the log (the server's payload key), and opens them.
    cipher: Option<Cipher>,
    max_bytes: u64,
    /// Bytes of appends under way (counted against `max_bytes` before they are written).
    reserved: AtomicU64,
    pending: Mutex<HashMap<(String, String), u64>>,
    pending_total: AtomicU64,
    failed: AtomicU64,
    replayed: AtomicU64,
    maintenance: AtomicBool,
    /// Set once the log has been empty since start (the start-up replay caught up).
    caught_up: AtomicBool,
    /// Pushes are failing over to the buffer (for logging the transition once).
    pub(crate) failing_over: AtomicBool,
    wake: Notify,
}

impl DiskBuffer {
    /// Opens the log, repairs a torn tail and counts what is left to replay. Refuses to open a
    /// log holding sealed records this `cipher` cannot open (no key, or another key): starting
    /// would skip them, and they are accepted pushes.
    pub(crate) fn open(config: &BufferConfig, cipher: Option<Cipher>) -> io::Result<DiskBuffer> {
        let (log, recovery) = Log::open(&config.dir, config.segment_bytes)?;
        let (quarantine, _) = Log::open(&config.dir.join("quarantine"), config.segment_bytes)?;
        if recovery.truncated_bytes > 0 {
            tracing::warn!(
                bytes = recovery.truncated_bytes,
                "cut a torn record off the buffer (never acknowledged)"
            );
        }
        let buffer = DiskBuffer {
            log,
            attempts: config.replay_attempts.max(1),
            backoff: config.replay_backoff,
            quarantine,
            quarantined: AtomicU64::new(0),
            cipher,
            max_bytes: config.max_bytes,
            reserved: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            pending_total: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            maintenance: AtomicBool::new(false),
            caught_up: AtomicBool::new(false),
            failing_over: AtomicBool::new(false),
            wake: Notify::new(),
        };
        let mut reader = Reader::new(buffer.log.dir());
        let mut sealed = 0u64;
        let mut on_bad = |e: DecodeError, segment: u64| match e {
            DecodeError::Sealed => sealed += 1,
            DecodeError::Corrupt => buffer.count_undecodable(segment),
        };
        // In bounded batches: only the counts are kept, however large the log.
        while let Some(batch) =
            reader.next_batch(SCAN_BATCH, buffer.cipher.as_ref(), &mut on_bad)?
        {
            for r in &batch {
                buffer.raise(&r.queue, &r.partition, 1);
            }
        }
        if sealed > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} holds {sealed} encrypted records {}; start the server with the key \
                     they were written with, as QUEEN_ENCRYPTION_KEY or in \
                     QUEEN_ENCRYPTION_KEY_PREVIOUS",
                    config.dir.display(),
                    if buffer.cipher.is_some() {
                        "that none of the configured keys opens"
                    } else {
                        "and no encryption key is configured"
                    },
                ),
            ));
        }
        let mut quarantined = 0u64;
        let mut q = Reader::new(buffer.quarantine.dir());
        while let Some(batch) = q.next_batch(SCAN_BATCH, buffer.cipher.as_ref(), &mut |_, _| {
            quarantined += 1
        })? {
            quarantined += batch.len() as u64;
        }
        buffer.quarantined.store(quarantined, Ordering::Release);
        if quarantined > 0 {
            tracing::warn!(
                quarantined,
                "the buffer holds quarantined records (see /api/v1/status/buffers)"
            );
        }
        let pending = buffer.pending_total.load(Ordering::Acquire);
        if pending > 0 {
            tracing::info!(pending, dir = %config.dir.display(), "buffer has records to replay");
        } else {
            buffer.caught_up.store(true, Ordering::Release);
        }
        Ok(buffer)
    }

    /// Counts a record that cannot be read (and is skipped).
    fn count_undecodable(&self, segment: u64) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        tracing::error!(segment, "undecodable buffer record skipped");
    }

    fn raise(&self, queue: &str, partition: &str, n: u64) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *p.entry((queue.to_owned(), partition.to_owned()))
            .or_default() += n;
        self.pending_total.fetch_add(n, Ordering::AcqRel);
    }

    fn lower(&self, queue: &str, partition: &str, n: u64) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let key = (queue.to_owned(), partition.to_owned());
        if let Some(c) = p.get_mut(&key) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                p.remove(&key);
            }
        }
        self.pending_total.fetch_sub(n, Ordering::AcqRel);
    }

    /// Whether a push of these (queue, partition) pairs must go through the buffer.
    pub(crate) fn must_buffer<'a>(
        &self,
        mut pairs: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> bool {
        if self.maintenance.load(Ordering::Acquire) {
            return true;
        }
        if self.pending_total.load(Ordering::Acquire) == 0 {
            return false;
        }
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pairs.any(|(q, part)| p.contains_key(&(q.to_owned(), part.to_owned())))
    }

    /// Appends records durably (returns after fsync), or refuses them all when they would take
    /// the log past its size limit.
    ///
    /// Cancel-safety: the size reservation is released by a guard; the counts raised before the
    /// append are not lowered if the future is dropped while the writer has the records, since
    /// they may be on disk (an extra count only routes a partition's pushes through the buffer
    /// until the replay has passed it).
    pub(crate) async fn append(&self, records: &[Record]) -> Result<(), AppendError> {
        let encoded: Vec<Vec<u8>> = records
            .iter()
            .map(|r| r.encode(self.cipher.as_ref()))
            .collect();
        let size = encoded.iter().map(|b| log::stored_len(b.len())).sum();
        let _reservation = self.reserve(size)?;
        for r in records {
            self.raise(&r.queue, &r.partition, 1);
        }
        if let Err(e) = self.log.append(encoded).await {
            for r in records {
                self.lower(&r.queue, &r.partition, 1);
            }
            return Err(e.into());
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Counts `size` bytes against the limit until the returned guard is dropped (by then the
    /// log counts what was written).
    fn reserve(&self, size: u64) -> Result<Reservation<'_>, AppendError> {
        let reserved = self.reserved.fetch_add(size, Ordering::AcqRel) + size;
        let reservation = Reservation { buffer: self, size };
        if self.max_bytes > 0 && self.log.bytes() + reserved > self.max_bytes {
            return Err(AppendError::Full {
                limit: self.max_bytes,
            });
        }
        Ok(reservation)
    }

    /// Sets a record aside: written to the quarantine log (durably) and no longer pending.
    async fn quarantine(&self, record: &Record, why: &str) -> io::Result<()> {
        self.quarantine
            .append(vec![record.encode(self.cipher.as_ref())])
            .await?;
        self.lower(&record.queue, &record.partition, 1);
        self.quarantined.fetch_add(1, Ordering::AcqRel);
        tracing::error!(
            queue = %record.queue, partition = %record.partition,
            transaction_id = %record.transaction_id, error = %why,
            "buffered record quarantined: the database keeps refusing it (kept on disk; \
             POST /api/v1/system/buffer/quarantine/replay tries it again)"
        );
        Ok(())
    }

    /// Moves every quarantined record back into the log, to be replayed again (behind what is
    /// pending). Returns how many.
    pub(crate) async fn requeue_quarantine(&self) -> io::Result<u64> {
        let mut reader = Reader::new(self.quarantine.dir());
        let mut moved = 0u64;
        while let Some(batch) =
            reader.next_batch(SCAN_BATCH, self.cipher.as_ref(), &mut |_, segment| {
                self.count_undecodable(segment)
            })?
        {
            for r in &batch {
                self.raise(&r.queue, &r.partition, 1);
            }
            let encoded = batch
                .iter()
                .map(|r| r.encode(self.cipher.as_ref()))
                .collect();
            self.log.append(encoded).await?;
            moved += batch.len() as u64;
        }
        self.quarantine.rotate().await?;
        for id in segments(self.quarantine.dir())? {
            if id != self.quarantine.current_segment() {
                self.quarantine.remove_segment(id)?;
            }
        }
        self.quarantined.store(0, Ordering::Release);
        self.caught_up.store(false, Ordering::Release);
        self.wake.notify_one();
        Ok(moved)
    }

    pub(crate) fn set_maintenance(&self, on: bool) {
        self.maintenance.store(on, Ordering::Release);
        self.wake.notify_one();
    }

    pub(crate) fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// Whether pushes go through the buffer now, or pushes it holds still wait for their
    /// replay: a write that bypasses the buffer would overtake them.
    pub(crate) fn holds_pushes(&self) -> bool {
        self.maintenance.load(Ordering::Acquire)
            || self.pending_total.load(Ordering::Acquire) > 0
            || !self.caught_up()
    }

    pub(crate) fn status(&self, db_healthy: bool) -> BufferStatus {
        BufferStatus {
            pending: self.pending_total.load(Ordering::Acquire),
            failed: self.failed.load(Ordering::Relaxed),
            quarantined: self.quarantined.load(Ordering::Acquire),
            replayed: self.replayed.load(Ordering::Relaxed),
            db_healthy,
            maintenance: self.maintenance.load(Ordering::Acquire),
            bytes: self.log.bytes(),
            max_bytes: self.max_bytes,
        }
    }
}

/// Bytes of an append under way, counted against the size limit while it lasts.
struct Reservation<'a> {
    buffer: &'a DiskBuffer,
    size: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.buffer.reserved.fetch_sub(self.size, Ordering::AcqRel);
    }
}

/// Walks the segments oldest first.
struct Reader {
    dir: PathBuf,
    segment: Option<(u64, SegmentReader)>,
}

impl Reader {
    fn new(dir: &Path) -> Reader {
        Reader {
            dir: dir.to_owned(),
            segment: None,
        }
    }

    /// Opens the oldest segment if none is open yet.
    fn ensure_open(&mut self) -> io::Result<()> {
        if self.segment.is_none() {
            if let Some(&id) = segments(&self.dir)?.first() {
                self.segment = Some((id, SegmentReader::open(&segment_path(&self.dir, id), 0)?));
            }
        }
        Ok(())
    }

    /// The next records (at most `max`), or `None` at the end of what is written. Records that
    /// cannot be decoded are skipped and handed to `on_bad` with their segment.
    fn next_batch(
        &mut self,
        max: usize,
        cipher: Option<&Cipher>,
        on_bad: &mut dyn FnMut(DecodeError, u64),
    ) -> io::Result<Option<Vec<Record>>> {
        self.ensure_open()?;
        let mut out = Vec::new();
        while out.len() < max {
            let Some((id, reader)) = &mut self.segment else {
                break;
            };
            let bad = match reader.next()? {
                Next::Record(body) => {
                    match Record::decode(&body, cipher) {
                        Ok(r) => out.push(r),
                        Err(e) => on_bad(e, *id),
                    }
                    continue;
                }
                Next::End => false,
                Next::Bad => true,
            };
            // End of this segment (or an unreadable record): move on only if a newer segment
            // exists, which means this one is complete; otherwise wait for more to be written.
            let id = *id;
            let Some(next) = segments(&self.dir)?.into_iter().find(|&s| s > id) else {
                break;
            };
            if bad {
                on_bad(DecodeError::Corrupt, id);
                tracing::error!(
                    segment = id,
                    "corrupt buffer segment: the rest of it is skipped"
                );
            }
            self.segment = Some((
                next,
                SegmentReader::open(&segment_path(&self.dir, next), 0)?,
            ));
        }
        Ok((!out.is_empty()).then_some(out))
    }

    /// Segment ids strictly older than the one being read (fully read, safe to delete).
    fn finished_segments(&self) -> io::Result<Vec<u64>> {
        let Some((current, _)) = &self.segment else {
            return Ok(Vec::new());
        };
        Ok(segments(&self.dir)?
            .into_iter()
            .filter(|s| s < current)
            .collect())
    }

    fn at_segment(&self) -> Option<u64> {
        self.segment.as_ref().map(|(id, _)| *id)
    }

    /// Steps onto the next segment when the current one has been read to its end and a newer
    /// one exists (without reading any record of the newer one).
    fn advance_over_end(&mut self) -> io::Result<()> {
        let Some((id, reader)) = &self.segment else {
            return Ok(());
        };
        let len = std::fs::metadata(segment_path(&self.dir, *id))?.len();
        if reader.offset < len {
            return Ok(());
        }
        let id = *id;
        if let Some(next) = segments(&self.dir)?.into_iter().find(|&s| s > id) {
            self.segment = Some((
                next,
                SegmentReader::open(&segment_path(&self.dir, next), 0)?,
            ));
        }
        Ok(())
    }
}

/// A batch waiting to be tried (again), with the failures it has had.
struct Attempt {
    records: Vec<Record>,
    failures: u32,
}

/// Replays the buffer into the database for as long as the engine lives.
///
/// A batch the database refuses — or that breaks the connection while the pool otherwise
/// answers — is tried again with a growing pause (1 s, 2 s, 4 s, ... at most 30 s); after
/// `replay_attempts` failures it is split into single records, and a single record that fails
/// as often is quarantined: kept on disk, counted, out of the way of the records behind it.
/// Refusals that pass by themselves or by configuration (a full queue, a missing key) and an
/// unreachable database are waited out without counting. Nothing accepted is ever dropped.
pub(crate) fn start_replayer(engine: Weak<Inner>) {
    let buffer = match engine.upgrade().and_then(|i| i.buffer().cloned()) {
        Some(b) => b,
        None => return,
    };
    tokio::spawn(async move {
        let mut reader = Reader::new(buffer.log.dir());
        // Batches read but not stored yet, tried again before anything newer (log order).
        let mut again: VecDeque<Attempt> = VecDeque::new();
        loop {
            let idle = buffer.pending_total.load(Ordering::Acquire) == 0 && again.is_empty();
            let connected = match engine.upgrade() {
                Some(i) => i.pool().is_connected(),
                None => return,
            };
            let paused = buffer.maintenance.load(Ordering::Acquire) || !connected;
            if idle || paused {
                if idle {
                    buffer.caught_up.store(true, Ordering::Release);
                    if let Err(e) = cleanup(&buffer.log, &mut reader).await {
                        tracing::warn!(error = %e, "buffer cleanup failed");
                    }
                }
                let wait = if paused {
                    Duration::from_millis(100)
                } else {
                    Duration::from_secs(1)
                };
                let _ = tokio::time::timeout(wait, buffer.wake.notified()).await;
                continue;
            }
            let attempt = match again.pop_front() {
                Some(a) => a,
                // The start-up scan opened every sealed record older than this process, and the
                // newer ones were sealed with its key: what does not open here is damage.
                None => match reader.next_batch(
                    REPLAY_BATCH,
                    buffer.cipher.as_ref(),
                    &mut |_, segment| buffer.count_undecodable(segment),
                ) {
                    Ok(Some(records)) => Attempt {
                        records,
                        failures: 0,
                    },
                    Ok(None) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reading the buffer failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            let items: Vec<_> = attempt
                .records
                .iter()
                .cloned()
                .map(Record::into_item)
                .collect();
            let (result, still_connected) = match engine.upgrade() {
                Some(inner) => {
                    let r = crate::push::push(&inner, &items).await;
                    (r, inner.pool().is_connected())
                }
                None => return,
            };
            let e = match result {
                Ok(_) => {
                    for r in &attempt.records {
                        buffer.lower(&r.queue, &r.partition, 1);
                    }
                    buffer
                        .replayed
                        .fetch_add(attempt.records.len() as u64, Ordering::Relaxed);
                    continue;
                }
                Err(e) => e,
            };
            if (e.is_unavailable() && !still_connected) || e.is_transient_refusal() {
                // The database is down, a queue is full, a key is missing: wait, uncounted.
                tracing::debug!(error = %e, "replay paused");
                again.push_front(attempt);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            let failures = attempt.failures + 1;
            if failures < buffer.attempts {
                let pause = (buffer.backoff * 2u32.saturating_pow(failures - 1)).min(MAX_BACKOFF);
                tracing::warn!(error = %e, records = attempt.records.len(), failures, ?pause,
                    "replay of buffered records failed; trying again");
                again.push_front(Attempt {
                    records: attempt.records,
                    failures,
                });
                tokio::time::sleep(pause).await;
            } else if attempt.records.len() > 1 {
                // One record must not hold the others hostage: one at a time, in order.
                tracing::warn!(error = %e, records = attempt.records.len(),
                    "a replay batch keeps failing; replaying its records one by one");
                for r in attempt.records.into_iter().rev() {
                    again.push_front(Attempt {
                        records: vec![r],
                        failures: 0,
                    });
                }
            } else {
                for r in &attempt.records {
                    while let Err(io) = buffer.quarantine(r, &e.to_string()).await {
                        tracing::error!(error = %io, "cannot write the quarantine; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    });
}

/// With everything replayed: closes a drained current segment and deletes every segment read
/// completely, so a restart does not scan (and replay again) what is already stored.
async fn cleanup(log: &Log, reader: &mut Reader) -> io::Result<()> {
    reader.ensure_open()?;
    if reader.at_segment() == Some(log.current_segment()) {
        let len = std::fs::metadata(segment_path(log.dir(), log.current_segment()))?.len();
        if len > 8 {
            log.rotate().await?;
        }
    }
    reader.advance_over_end()?;
    for id in reader.finished_segments()? {
        log.remove_segment(id)?;
    }
    Ok(())
}

/// Builds records from push items that already carry their transactionIds.
pub(crate) fn records_of(items: &[crate::model::PushItem]) -> Vec<Record> {
    items
        .iter()
        .map(|it| Record {
            queue: it.queue.clone(),
            partition: it.partition.clone(),
            payload: it.payload.to_string(),
            transaction_id: it.transaction_id.clone().unwrap_or_default(),
            trace_id: it.trace_id,
            producer_sub: it.producer_sub.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::engine::{Engine, EngineConfig};
    use crate::model::PopRequest;

    fn record(txid: &str, payload: &str) -> Record {
        Record {
            queue: "q".into(),
            partition: "p".into(),
            payload: payload.into(),
            transaction_id: txid.into(),
            trace_id: None,
            producer_sub: None,
        }
    }

    /// A record the database refuses for good (written here past the push checks, as a record
    /// from an older server could be) is quarantined alone after its attempts: the records
    /// around it in the same replay batch are stored, in order, and it stays on disk to be
    /// replayed on request. (Before: the replay dropped it.)
    #[tokio::test]
    async fn a_record_the_database_refuses_is_quarantined_alone() {
        let db = queen_wire::embedded::test_config("buffer_refused")
            .await
            .expect("test database");
        let pool = queen_wire::Pool::connect(db, queen_wire::PoolConfig::default())
            .await
            .expect("pool");
        let dir = std::env::temp_dir().join(format!("queen-buffer-refused-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let engine = Engine::start(
            pool,
            EngineConfig {
                listen: false,
                buffer: Some(BufferConfig {
                    replay_attempts: 2,
                    replay_backoff: Duration::from_millis(10),
                    ..BufferConfig::new(&dir)
                }),
                ..EngineConfig::default()
            },
        )
        .await
        .expect("engine");
        engine
            .set_maintenance(crate::maintenance::Mode::Push, true)
            .await
            .expect("maintenance");
        let buffer = engine.inner().buffer().cloned().expect("buffer");
        buffer
            .append(&[
                record("a", "1"),
                // PostgreSQL text cannot hold NUL.
                Record {
                    producer_sub: Some("x\0y".into()),
                    ..record("b", "2")
                },
                record("c", "3"),
            ])
            .await
            .expect("append");
        engine
            .set_maintenance(crate::maintenance::Mode::Push, false)
            .await
            .expect("maintenance");
        let deadline = Instant::now() + Duration::from_secs(30);
        while buffer.status(true).pending > 0 {
            assert!(Instant::now() < deadline, "the replay did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let status = buffer.status(true);
        assert_eq!((status.replayed, status.quarantined), (2, 1));
        let popped = engine
            .pop(
                &PopRequest {
                    batch: 10,
                    ..PopRequest::new("q")
                },
                None,
            )
            .await
            .expect("pop")
            .expect("messages");
        let payloads: Vec<&str> = popped.messages.iter().map(|m| m.payload.as_str()).collect();
        assert_eq!(payloads, ["1", "3"]);
        // Kept on disk, counted again by a buffer opened on the same directory.
        let reopened = DiskBuffer::open(&BufferConfig::new(&dir), None).expect("reopen");
        assert_eq!(reopened.status(true).quarantined, 1);
        drop(reopened);
        // Sent back to be replayed: it is refused again and set aside again, nothing lost.
        assert_eq!(engine.replay_quarantine().await.expect("requeue"), 1);
        let deadline = Instant::now() + Duration::from_secs(30);
        while buffer.status(true).quarantined != 1 || buffer.status(true).pending > 0 {
            assert!(
                Instant::now() < deadline,
                "the record did not come back to the quarantine"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
