//! Reads by offset and partition discovery (docs/api.md, "Reads by offset"): what Queen's
//! clients call `queue.fetch` and `queue.changed_since`.
//!
//! Neither takes a lease, moves a cursor or needs an ack. A partition's offsets are its
//! positions less one, so they follow commit order, as pops do: a reader that goes on from one
//! past the last offset it read never misses a message committed later. Both run on the
//! inspection pool (a large read never queues in front of pushes and pops) as one statement each
//! (`sql/functions/reads.sql`), so they are cancel-safe like every inspection read: a caller that
//! goes away drops the future and the pool cancels the statement.

use queen_wire::Timestamp;
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::EngineError;

/// Entries of one fetch at most.
pub const FETCH_ENTRIES_MAX: usize = 1024;
/// The most payload bytes one entry, and one call, reads (larger budgets are read as this).
pub const FETCH_BYTES_MAX: i64 = 8 * 1024 * 1024;
/// Records one call reads at most, shared out between its entries (at least one each).
const FETCH_ROWS_PER_CALL: usize = 20_000;
/// Records one entry reads at most.
const FETCH_ROWS_PER_ENTRY: usize = 1_000;
/// Partitions of one discovery page at most.
pub const CHANGED_PAGE_MAX: i32 = 1_000;

/// What to read of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchEntry {
    /// Queue name.
    pub queue: String,
    /// Partition name.
    pub partition: String,
    /// The first offset wanted.
    pub offset: i64,
    /// Payload bytes this entry may read (the first record is read whatever its size).
    pub max_bytes: i64,
}

/// Why an entry read nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// The queue or the partition does not exist.
    UnknownPartition,
    /// The offset is below the oldest one stored (retention removed it) or past the high
    /// watermark (the partition was deleted and written again).
    OffsetOutOfRange,
}

/// One record read by offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    /// Its offset in the partition.
    pub offset: i64,
    /// The transactionId it was pushed with.
    pub transaction_id: String,
    /// Its payload's JSON text as pushed (decrypted).
    pub payload: String,
    /// When it was stored.
    pub created_at: Timestamp,
}

/// What a fetch read of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchedEntry {
    /// Records from the entry's offset on, in offset order.
    pub records: Vec<FetchedRecord>,
    /// The next offset the partition will assign.
    pub high_watermark: i64,
    /// The oldest offset still stored.
    pub log_start_offset: i64,
    /// Why nothing was read, when that is an error.
    pub error: Option<FetchError>,
}

/// One page of partition discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedQuery {
    /// Queue name.
    pub queue: String,
    /// Partitions written at or after this time (all of them when None).
    pub since: Option<Timestamp>,
    /// The page cursor: the `next` of the page before.
    pub after: Option<i64>,
    /// Partitions per page (1 to [`CHANGED_PAGE_MAX`]).
    pub limit: i32,
}

/// One partition of a discovery page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedPartition {
    /// Partition name.
    pub name: String,
    /// Partition id.
    pub id: Uuid,
    /// The offset of its last record (-1 when none was ever written).
    pub last_offset: i64,
    /// The oldest offset still stored.
    pub log_start: i64,
    /// When it was last written (None: never).
    pub last_write_at: Option<Timestamp>,
}

/// A page of partition discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedPage {
    /// False when the queue does not exist (then there are no partitions).
    pub queue_found: bool,
    /// The partitions, in the order they were created.
    pub partitions: Vec<ChangedPartition>,
    /// The cursor of the next page; None on the last one.
    pub next: Option<i64>,
    /// Every push that started before this time is counted in the page: pass it as the next
    /// `since` to see only what changed after.
    pub safe_time: Timestamp,
}

/// Records per entry for a call of `entries` entries.
fn rows_per_entry(entries: usize) -> i32 {
    let rows = (FETCH_ROWS_PER_CALL / entries.max(1)).clamp(1, FETCH_ROWS_PER_ENTRY);
    i32::try_from(rows).unwrap_or(1)
}

/// Trims the records read to the byte budgets, in entry order. An entry keeps records while the
/// payload bytes before them are under its own budget (`budgets`, one per entry: its first
/// record always). A record that would take the call past `max_bytes` is left for the next call
/// with the rest of its entry (the reader asks again from its next offset); a later entry's
/// smaller records may still fit. The first record of the call is kept whatever its size.
fn trim_to_budgets(entries: &mut [FetchedEntry], budgets: &[i64], max_bytes: i64) {
    let mut spent: i64 = 0;
    let mut kept_any = false;
    for (e, &budget) in entries.iter_mut().zip(budgets) {
        let mut own: i64 = 0;
        let mut keep = 0;
        for r in &e.records {
            let size = i64::try_from(r.payload.len()).unwrap_or(i64::MAX);
            if own >= budget || (kept_any && spent.saturating_add(size) > max_bytes) {
                break;
            }
            own = own.saturating_add(size);
            spent = spent.saturating_add(size);
            kept_any = true;
            keep += 1;
        }
        e.records.truncate(keep);
    }
}

impl Engine {
    /// Reads records by offset: for each entry, from its offset on, while its budget and the
    /// call's (`max_bytes`, at most [`FETCH_BYTES_MAX`]) last. Answers one result per entry, in
    /// order. The entries must be at most [`FETCH_ENTRIES_MAX`] (the caller checks).
    pub async fn fetch(
        &self,
        entries: &[FetchEntry],
        max_bytes: i64,
    ) -> Result<Vec<FetchedEntry>, EngineError> {
        let inner = self.inner();
        let st = inner.st()?;
        let c = st.cols.fetch;
        let queues: Vec<&str> = entries.iter().map(|e| e.queue.as_str()).collect();
        let partitions: Vec<&str> = entries.iter().map(|e| e.partition.as_str()).collect();
        let offsets: Vec<i64> = entries.iter().map(|e| e.offset).collect();
        let rows = inner
            .inspect(
                &st.fetch,
                &[
                    &queues,
                    &partitions,
                    &offsets,
                    &rows_per_entry(entries.len()),
                ],
            )
            .await?;
        let mut out = vec![FetchedEntry::default(); entries.len()];
        for r in &rows {
            let ord: i32 = r.get(c.ord)?;
            let Some((entry, asked)) = usize::try_from(ord)
                .ok()
                .and_then(|o| o.checked_sub(1))
                .and_then(|i| Some((out.get_mut(i)?, entries.get(i)?)))
            else {
                return Err(EngineError::Internal(format!(
                    "fetch answered entry {ord} of {}",
                    entries.len()
                )));
            };
            entry.high_watermark = r.get(c.high_watermark)?;
            entry.log_start_offset = r.get(c.log_start)?;
            if !r.get::<bool>(c.found)? {
                entry.error = Some(FetchError::UnknownPartition);
                continue;
            }
            if asked.offset < entry.log_start_offset || asked.offset > entry.high_watermark {
                entry.error = Some(FetchError::OffsetOutOfRange);
                continue;
            }
            let Some(offset) = r.get::<Option<i64>>(c.record_offset)? else {
                continue;
            };
            entry.records.push(FetchedRecord {
                offset,
                transaction_id: r.get(c.transaction_id)?,
                payload: crate::payload::stored(inner, r, c.payload, c.sealed)?
                    .unwrap_or_else(|| "null".to_owned()),
                created_at: r.get(c.created_at)?,
            });
        }
        let budgets: Vec<i64> = entries
            .iter()
            .map(|e| e.max_bytes.clamp(1, FETCH_BYTES_MAX))
            .collect();
        trim_to_budgets(&mut out, &budgets, max_bytes.clamp(1, FETCH_BYTES_MAX));
        Ok(out)
    }

    /// One page of the partitions of a queue written at or after `since`, in creation order.
    pub async fn changed_partitions(&self, q: &ChangedQuery) -> Result<ChangedPage, EngineError> {
        let inner = self.inner();
        let st = inner.st()?;
        let c = st.cols.changed_partitions;
        let limit = q.limit.clamp(1, CHANGED_PAGE_MAX);
        // One more than the page: whether there is a next page, without asking for it.
        let rows = inner
            .inspect(
                &st.changed_partitions,
                &[&q.queue, &q.since, &q.after, &(limit + 1)],
            )
            .await?;
        let first = rows.first().ok_or_else(|| {
            EngineError::Internal("changed_partitions answered no row".to_owned())
        })?;
        let mut page = ChangedPage {
            queue_found: first.get(c.queue_found)?,
            partitions: Vec::with_capacity(rows.len()),
            next: None,
            safe_time: first.get(c.safe_time)?,
        };
        if !page.queue_found {
            return Ok(page);
        }
        let page_len = usize::try_from(limit).unwrap_or(usize::MAX);
        for r in rows.iter().take(page_len) {
            // The row of an empty page carries no partition.
            let Some(num) = r.get::<Option<i64>>(c.num)? else {
                continue;
            };
            let last_position: i64 = r.get(c.last_position)?;
            page.partitions.push(ChangedPartition {
                name: r.get(c.name)?,
                id: r.get(c.id)?,
                last_offset: last_position - 1,
                log_start: r.get(c.log_start)?,
                last_write_at: r.get(c.last_message_at)?,
            });
            if rows.len() > page_len {
                page.next = Some(num);
            }
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sizes: &[usize]) -> FetchedEntry {
        FetchedEntry {
            records: sizes
                .iter()
                .zip(0..)
                .map(|(&n, offset)| FetchedRecord {
                    offset,
                    transaction_id: offset.to_string(),
                    payload: "x".repeat(n),
                    created_at: Timestamp(0),
                })
                .collect(),
            ..FetchedEntry::default()
        }
    }

    fn kept(entries: &[FetchedEntry]) -> Vec<usize> {
        entries.iter().map(|e| e.records.len()).collect()
    }

    /// Trims with every entry's own budget unbounded.
    fn trim_call(entries: &mut [FetchedEntry], max_bytes: i64) {
        let budgets = vec![i64::MAX; entries.len()];
        trim_to_budgets(entries, &budgets, max_bytes);
    }

    #[test]
    fn the_call_budget_keeps_each_entrys_records_up_to_the_first_that_does_not_fit() {
        let mut es = vec![entry(&[4, 4]), entry(&[4, 4]), entry(&[1, 1, 1])];
        trim_call(&mut es, 10);
        assert_eq!(kept(&es), [2, 0, 2]);
    }

    #[test]
    fn the_first_record_of_a_call_is_kept_whatever_its_size() {
        let mut es = vec![entry(&[]), entry(&[100, 1]), entry(&[1])];
        trim_call(&mut es, 10);
        assert_eq!(kept(&es), [0, 1, 0]);
    }

    #[test]
    fn an_entry_reads_while_the_bytes_before_a_record_are_under_its_budget() {
        let mut es = vec![entry(&[3, 3, 3]), entry(&[50, 1]), entry(&[2, 2, 2])];
        trim_to_budgets(&mut es, &[5, 1, 4], 1_000);
        // 0 < 5 and 3 < 5: two records (6 bytes); the first always; 0 and 2 under 4.
        assert_eq!(kept(&es), [2, 1, 2]);
    }

    #[test]
    fn rows_are_shared_out_between_entries_and_never_fall_to_zero() {
        assert_eq!(rows_per_entry(1), 1_000);
        assert_eq!(rows_per_entry(1_000), 20);
        assert_eq!(rows_per_entry(1_024), 19);
        assert_eq!(rows_per_entry(1_000_000), 1);
        assert_eq!(rows_per_entry(0), 1_000);
    }
}
