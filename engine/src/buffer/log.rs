//! The append-only log: segment files of checksummed records, written with group fsync.
//!
//! ```text
//!   segment file  seg-<id:020>.qlog
//!   header        "QLOG" | u32 version (1)                         (little-endian)
//!   record        u32 body length | u32 CRC32C(body) | body
//! ```
//!
//! **Writing.** One writer thread owns the current segment. Appenders send their records and
//! wait; the writer takes every request queued, writes them, calls `fdatasync` once and then
//! answers them all (group fsync): an append returns only once its records are on disk. A segment
//! is closed and a new one started once it exceeds the size limit, or on request (after a full
//! replay, so drained segments can be deleted). A write that fails (a full disk, an I/O error)
//! answers its appenders with the error and is cut off the segment again, so the records
//! appended after it follow a valid prefix; if it cannot be cut off, the writer moves on to a new
//! segment (the reader then skips the torn tail, which nobody was told was stored).
//!
//! **Size.** The log counts the bytes of its segment files (written by the writer, removed by
//! [`Log::remove_segment`]), so the buffer can refuse appends past a size limit.
//!
//! **Reading.** A [`Reader`] walks the segments oldest first from any position, independently of
//! the writer. A record whose length runs past the end of the file, or whose checksum does not
//! match, at the end of the newest segment is a torn write (the process died mid-append; it was
//! never acknowledged): [`Log::open`] truncates it. The same in an older segment is corruption:
//! the rest of that segment is skipped and counted as failed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use tokio::sync::oneshot;

const MAGIC: &[u8; 4] = b"QLOG";
const VERSION: u32 = 1;
const HEADER_LEN: u64 = 8;
const RECORD_HEAD: usize = 8;
/// Largest record accepted (a push body is at most the HTTP body limit).
pub(crate) const MAX_RECORD: usize = 64 * 1024 * 1024;

fn segment_name(id: u64) -> String {
    format!("seg-{id:020}.qlog")
}

fn segment_id(name: &str) -> Option<u64> {
    name.strip_prefix("seg-")?
        .strip_suffix(".qlog")?
        .parse()
        .ok()
}

/// Segment ids present in `dir`, ascending.
pub(crate) fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().to_str().and_then(segment_id))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

enum Req {
    Append(Vec<Vec<u8>>, oneshot::Sender<io::Result<()>>),
    Rotate(oneshot::Sender<io::Result<()>>),
}

/// Handle to the log's writer thread.
#[derive(Debug, Clone)]
pub(crate) struct Log {
    dir: PathBuf,
    tx: mpsc::Sender<Req>,
    /// Id of the segment being written.
    current: Arc<AtomicU64>,
    /// Bytes of the segment files.
    bytes: Arc<AtomicU64>,
    /// Test fault: the next write stores only this many bytes, then fails (0: none).
    #[cfg(test)]
    fault: Arc<AtomicU64>,
}

/// Bytes a record with a body of `body_len` bytes takes in a segment.
pub(crate) fn stored_len(body_len: usize) -> u64 {
    (RECORD_HEAD + body_len) as u64
}

/// What [`Log::open`] found.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Bytes of a torn last record that were cut off.
    pub truncated_bytes: u64,
}

impl Log {
    /// Opens (or creates) the log in `dir`, repairs a torn tail, and starts the writer thread.
    pub(crate) fn open(dir: &Path, segment_limit: u64) -> io::Result<(Log, Recovery)> {
        fs::create_dir_all(dir)?;
        let mut recovery = Recovery::default();
        let ids = segments(dir)?;
        let (id, file) = match ids.last() {
            Some(&last) => {
                let path = dir.join(segment_name(last));
                let valid = valid_prefix(&path)?;
                let len = fs::metadata(&path)?.len();
                let file = OpenOptions::new().read(true).write(true).open(&path)?;
                if valid < len {
                    recovery.truncated_bytes = len - valid;
                    file.set_len(valid)?;
                    file.sync_all()?;
                }
                (last, file)
            }
            None => (0, create_segment(dir, 0)?),
        };
        let current = Arc::new(AtomicU64::new(id));
        let mut on_disk = 0;
        for s in segments(dir)? {
            on_disk += fs::metadata(segment_path(dir, s))?.len();
        }
        let bytes = Arc::new(AtomicU64::new(on_disk));
        #[cfg(test)]
        let fault = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: dir.to_owned(),
            file,
            id,
            limit: segment_limit,
            current: current.clone(),
            bytes: bytes.clone(),
            #[cfg(test)]
            fault: fault.clone(),
        };
        std::thread::Builder::new()
            .name("queen-buffer-writer".into())
            .spawn(move || writer.run(&rx))?;
        Ok((
            Log {
                dir: dir.to_owned(),
                tx,
                current,
                bytes,
                #[cfg(test)]
                fault,
            },
            recovery,
        ))
    }

    /// Bytes of the segment files.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// Deletes a segment that is no longer read or written.
    pub(crate) fn remove_segment(&self, id: u64) -> io::Result<()> {
        let path = segment_path(&self.dir, id);
        let len = fs::metadata(&path)?.len();
        fs::remove_file(&path)?;
        self.bytes.fetch_sub(len, Ordering::AcqRel);
        Ok(())
    }

    /// Appends records; returns once they are on disk.
    pub(crate) async fn append(&self, records: Vec<Vec<u8>>) -> io::Result<()> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Req::Append(records, reply))
            .map_err(|_| io::Error::other("buffer writer stopped"))?;
        rx.await
            .map_err(|_| io::Error::other("buffer writer stopped"))?
    }

    /// Closes the current segment and starts a new one.
    pub(crate) async fn rotate(&self) -> io::Result<()> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Req::Rotate(reply))
            .map_err(|_| io::Error::other("buffer writer stopped"))?;
        rx.await
            .map_err(|_| io::Error::other("buffer writer stopped"))?
    }

    /// Id of the segment being written.
    pub(crate) fn current_segment(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
    let path = dir.join(segment_name(id));
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    f.write_all(MAGIC)?;
    f.write_all(&VERSION.to_le_bytes())?;
    f.sync_all()?;
    // Make the new file's directory entry durable too.
    File::open(dir)?.sync_all()?;
    Ok(f)
}

struct Writer {
    dir: PathBuf,
    file: File,
    id: u64,
    limit: u64,
    current: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    #[cfg(test)]
    fault: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<Req>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let mut buf = Vec::new();
            let mut waiting = Vec::new();
            let mut rotations = Vec::new();
            for req in batch {
                match req {
                    Req::Append(records, reply) => {
                        for r in &records {
                            buf.extend_from_slice(
                                &u32::try_from(r.len()).unwrap_or(u32::MAX).to_le_bytes(),
                            );
                            buf.extend_from_slice(&crc32c::crc32c(r).to_le_bytes());
                            buf.extend_from_slice(r);
                        }
                        waiting.push(reply);
                    }
                    Req::Rotate(reply) => rotations.push(reply),
                }
            }
            let result = self.write(&buf);
            for reply in waiting {
                let _ = reply.send(
                    result
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| io::Error::new(e.kind(), e.to_string())),
                );
            }
            for reply in rotations {
                let _ = reply.send(self.rotate());
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let mut start = self.file.seek(SeekFrom::End(0))?;
        if start >= self.limit {
            self.rotate()?;
            start = self.file.seek(SeekFrom::End(0))?;
        }
        match self.write_at_end(buf) {
            Ok(()) => {
                self.bytes.fetch_add(buf.len() as u64, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => {
                // Nobody is told these records are stored: cut them off, so the next append
                // does not land behind a torn record.
                let cut = self
                    .file
                    .set_len(start)
                    .and_then(|()| self.file.sync_data());
                if cut.is_err() {
                    // The torn tail stays; records go on in a new segment, and the reader
                    // skips the rest of this one.
                    let _ = self.rotate();
                }
                Err(e)
            }
        }
    }

    fn write_at_end(&mut self, buf: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        {
            let n = self.fault.swap(0, Ordering::AcqRel);
            if n > 0 {
                self.file.write_all(&buf[..(n as usize).min(buf.len())])?;
                return Err(io::Error::new(io::ErrorKind::StorageFull, "injected fault"));
            }
        }
        self.file.write_all(buf)?;
        self.file.sync_data()
    }

    fn rotate(&mut self) -> io::Result<()> {
        let next = self.id + 1;
        let file = create_segment(&self.dir, next)?;
        self.file.sync_all()?;
        self.file = file;
        self.id = next;
        self.current.store(next, Ordering::Release);
        self.bytes.fetch_add(HEADER_LEN, Ordering::AcqRel);
        Ok(())
    }
}

/// Length of the valid prefix of a segment (header plus whole records with good checksums).
fn valid_prefix(path: &Path) -> io::Result<u64> {
    let mut r = SegmentReader::open(path, HEADER_LEN)?;
    loop {
        match r.next()? {
            Next::Record(_) => {}
            Next::End | Next::Bad => return Ok(r.offset),
        }
    }
}

/// What a segment reader found next.
pub(crate) enum Next {
    Record(Vec<u8>),
    /// Clean end of what is written so far.
    End,
    /// A record that cannot be read: torn or corrupt.
    Bad,
}

/// Sequential reader of one segment.
pub(crate) struct SegmentReader {
    file: File,
    /// Offset of the next record.
    pub offset: u64,
    len: u64,
}

impl SegmentReader {
    pub(crate) fn open(path: &Path, offset: u64) -> io::Result<SegmentReader> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut head = [0u8; HEADER_LEN as usize];
        if len < HEADER_LEN || file.read_exact(&mut head).is_err() || &head[..4] != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a buffer segment", path.display()),
            ));
        }
        let version = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if version != VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: unsupported segment version {version}", path.display()),
            ));
        }
        let offset = offset.max(HEADER_LEN);
        file.seek(SeekFrom::Start(offset))?;
        Ok(SegmentReader { file, offset, len })
    }

    /// Reads the next record (re-checking the file length, which may have grown).
    pub(crate) fn next(&mut self) -> io::Result<Next> {
        if self.offset + RECORD_HEAD as u64 > self.len {
            self.len = self.file.metadata()?.len();
            if self.offset == self.len {
                return Ok(Next::End);
            }
            if self.offset + RECORD_HEAD as u64 > self.len {
                return Ok(Next::Bad);
            }
        }
        let mut head = [0u8; RECORD_HEAD];
        self.file.read_exact(&mut head)?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_RECORD
            || self.offset + (RECORD_HEAD + len) as u64 > self.file.metadata()?.len()
        {
            self.file.seek(SeekFrom::Start(self.offset))?;
            return Ok(Next::Bad);
        }
        let mut body = vec![0u8; len];
        self.file.read_exact(&mut body)?;
        if crc32c::crc32c(&body) != crc {
            self.file.seek(SeekFrom::Start(self.offset))?;
            return Ok(Next::Bad);
        }
        self.offset += (RECORD_HEAD + len) as u64;
        Ok(Next::Record(body))
    }
}

/// Path of segment `id` in `dir`.
pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(segment_name(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("queen-log-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn read_all(dir: &Path, id: u64) -> (Vec<Vec<u8>>, bool) {
        let mut r = SegmentReader::open(&segment_path(dir, id), 0).unwrap();
        let mut out = Vec::new();
        loop {
            match r.next().unwrap() {
                Next::Record(b) => out.push(b),
                Next::End => return (out, false),
                Next::Bad => return (out, true),
            }
        }
    }

    #[tokio::test]
    async fn append_read_and_group_fsync() {
        let dir = tmp("append");
        let (log, _) = Log::open(&dir, 1 << 20).unwrap();
        let mut tasks = Vec::new();
        for i in 0..50u8 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.append(vec![vec![i; 10], vec![i; 3]]).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let (recs, bad) = read_all(&dir, 0);
        assert!(!bad);
        assert_eq!(recs.len(), 100);
        // Each append's records stay together and in order.
        for pair in recs.chunks(2) {
            assert_eq!(pair[0].len(), 10);
            assert_eq!(pair[1].len(), 3);
            assert_eq!(pair[0][0], pair[1][0]);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_failed_write_is_cut_off_and_later_appends_stay_readable() {
        let dir = tmp("failed-write");
        let (log, _) = Log::open(&dir, 1 << 20).unwrap();
        log.append(vec![b"kept".to_vec()]).await.unwrap();
        let before = log.bytes();
        assert_eq!(before, HEADER_LEN + stored_len(4));
        // The disk fills in the middle of the next write: half a record reaches the file.
        log.fault.store(6, Ordering::Release);
        let err = log.append(vec![b"refused".to_vec()]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(log.bytes(), before, "nothing counted for the failed write");
        log.append(vec![b"after".to_vec()]).await.unwrap();
        let (recs, bad) = read_all(&dir, 0);
        assert!(!bad, "no torn record in front of later appends");
        assert_eq!(recs, vec![b"kept".to_vec(), b"after".to_vec()]);
        assert_eq!(
            log.bytes(),
            fs::metadata(segment_path(&dir, 0)).unwrap().len()
        );
        log.rotate().await.unwrap();
        log.remove_segment(0).unwrap();
        assert_eq!(
            log.bytes(),
            HEADER_LEN,
            "only the new segment's header is left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn torn_last_record_is_cut_on_reopen() {
        let dir = tmp("torn");
        {
            let (log, _) = Log::open(&dir, 1 << 20).unwrap();
            log.append(vec![b"one".to_vec(), b"two".to_vec()])
                .await
                .unwrap();
        }
        // A crash in the middle of the next append: a header and half a body.
        let path = segment_path(&dir, 0);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&10u32.to_le_bytes()).unwrap();
        f.write_all(&crc32c::crc32c(b"0123456789").to_le_bytes())
            .unwrap();
        f.write_all(b"01234").unwrap();
        drop(f);
        assert!(read_all(&dir, 0).1, "the torn record is detected");
        let (log, rec) = Log::open(&dir, 1 << 20).unwrap();
        assert_eq!(rec.truncated_bytes, 8 + 5);
        log.append(vec![b"three".to_vec()]).await.unwrap();
        let (recs, bad) = read_all(&dir, 0);
        assert!(!bad);
        assert_eq!(
            recs,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn checksum_mismatch_is_detected() {
        let dir = tmp("crc");
        {
            let (log, _) = Log::open(&dir, 1 << 20).unwrap();
            log.append(vec![b"good".to_vec(), b"flipped".to_vec()])
                .await
                .unwrap();
        }
        let path = segment_path(&dir, 0);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let (recs, bad) = read_all(&dir, 0);
        assert_eq!(recs, vec![b"good".to_vec()]);
        assert!(bad);
        // At the tail of the newest segment it counts as torn and is cut.
        let (_log, rec) = Log::open(&dir, 1 << 20).unwrap();
        assert_eq!(rec.truncated_bytes, (8 + 7) as u64);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn rotation_by_size_and_on_request() {
        let dir = tmp("rotate");
        let (log, _) = Log::open(&dir, 100).unwrap();
        for i in 0..10u8 {
            log.append(vec![vec![i; 40]]).await.unwrap();
        }
        let ids = segments(&dir).unwrap();
        assert!(ids.len() >= 4, "{ids:?}");
        assert_eq!(log.current_segment(), *ids.last().unwrap());
        log.rotate().await.unwrap();
        assert_eq!(log.current_segment(), ids.last().unwrap() + 1);
        let mut all = Vec::new();
        for id in segments(&dir).unwrap() {
            all.extend(read_all(&dir, id).0);
        }
        assert_eq!(all.len(), 10);
        assert!(
            all.iter().enumerate().all(|(i, r)| r[0] == i as u8),
            "order across segments"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn reopen_continues_the_last_segment() {
        let dir = tmp("reopen");
        {
            let (log, _) = Log::open(&dir, 1 << 20).unwrap();
            log.append(vec![b"a".to_vec()]).await.unwrap();
        }
        let (log, rec) = Log::open(&dir, 1 << 20).unwrap();
        assert_eq!(rec.truncated_bytes, 0);
        log.append(vec![b"b".to_vec()]).await.unwrap();
        assert_eq!(read_all(&dir, 0).0, vec![b"a".to_vec(), b"b".to_vec()]);
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod fuzz {
    //! A segment file of arbitrary content after a valid header: reading it never panics and
    //! never allocates more than a record may hold, whatever its length fields claim.

    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn arbitrary_segment_content_is_read_safely(body in prop::collection::vec(any::<u8>(), 0..2048)) {
            let dir = std::env::temp_dir().join(format!("queen-log-fuzz-{}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            let path = segment_path(&dir, 1);
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&VERSION.to_le_bytes());
            bytes.extend_from_slice(&body);
            fs::write(&path, &bytes).unwrap();
            let mut r = SegmentReader::open(&path, 0).unwrap();
            for _ in 0..body.len() + 1 {
                match r.next() {
                    Ok(Next::Record(rec)) => prop_assert!(rec.len() <= MAX_RECORD),
                    Ok(Next::End | Next::Bad) | Err(_) => break,
                }
            }
            let _ = fs::remove_file(&path);
        }
    }
}
