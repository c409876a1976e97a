//! How large what the API stores may be (docs/api.md, "Limits"), checked before anything
//! reaches the database or the disk buffer. Names and keys end up in btree indexes, whose rows
//! PostgreSQL caps at about 2,700 bytes: an oversized one would fail the statement — and every
//! request coalesced into it. Item counts bound what one request may cost in memory.

/// Queue, partition, consumer group, namespace, task, worker and trace names: 1 to this many
/// bytes of UTF-8, no control characters.
pub const NAME_MAX: usize = 255;
/// A transactionId, in bytes.
pub const TRANSACTION_ID_MAX: usize = 512;
/// Free text the server stores (an ack's error, a trace's event type), in bytes.
pub const TEXT_MAX: usize = 8192;
/// The `sub` of a token, stamped on pushed messages, in bytes.
pub const PRODUCER_MAX: usize = 1024;
/// Names one trace may carry.
pub const TRACE_NAMES_MAX: usize = 32;
/// Items of one push.
pub const PUSH_ITEMS_MAX: usize = 10_000;
/// Acknowledgements of one batch ack.
pub const ACK_ITEMS_MAX: usize = 10_000;
/// Operations of one transaction (and pushed items over all of them: [`PUSH_ITEMS_MAX`]).
pub const TX_OPERATIONS_MAX: usize = 1_000;
/// A stream state key, in bytes (it is part of the state table's primary key).
pub const STREAM_KEY_MAX: usize = 1024;
/// State operations of one stream cycle, and keys of one state read.
pub const STREAM_STATE_OPS_MAX: usize = 10_000;

const DAY: i64 = 86_400;
const YEAR: i64 = 365 * DAY;

/// The range of every integer queue option: what the engine can store and act on (an
/// out-of-range value is refused, never clamped). Seconds unless the name says otherwise.
pub const OPTION_RANGES: &[(&str, i64, i64)] = &[
    ("leaseTime", 1, 30 * DAY),
    ("maxSize", 0, 1_000_000_000_000),
    ("ttl", 0, 10 * YEAR),
    ("retryLimit", 0, 1_000_000),
    // Milliseconds.
    ("retryDelay", 0, DAY * 1000),
    ("priority", -1_000_000, 1_000_000),
    ("delayedProcessing", 0, YEAR),
    ("windowBuffer", 0, 30 * DAY),
    ("retentionSeconds", 0, 10 * YEAR),
    ("completedRetentionSeconds", 0, 10 * YEAR),
    ("maxWaitTimeSeconds", 0, 10 * YEAR),
];

/// The range of the integer queue option `name`.
pub fn option_range(name: &str) -> Option<(i64, i64)> {
    OPTION_RANGES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, lo, hi)| (lo, hi))
}

/// A name: 1 to [`NAME_MAX`] bytes, no control characters.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(format!("{what} name must be 1 to {NAME_MAX} bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} name must not contain control characters"));
    }
    Ok(())
}

/// A key-like string in a JSON body (a key of the key/value store, a lock's name or owner, a
/// timer's key): 1 to `max` bytes, no control characters, and not `forbidden` when given. The
/// error names the field `what`.
pub fn check_key<'a>(
    v: Option<&'a serde_json::Value>,
    what: &str,
    max: usize,
    forbidden: Option<char>,
) -> Result<&'a str, String> {
    match v {
        Some(serde_json::Value::String(s))
            if !s.is_empty()
                && s.len() <= max
                && !s.chars().any(|c| c.is_control() || Some(c) == forbidden) =>
        {
            Ok(s)
        }
        _ => Err(format!(
            "`{what}` must be a string of 1 to {max} bytes without control characters{}",
            forbidden.map(|c| format!(" or '{c}'")).unwrap_or_default()
        )),
    }
}

/// Text the server stores as given: at most `max` bytes and no NUL (PostgreSQL text cannot
/// hold it).
pub fn check_text(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!("{what} must be at most {max} bytes"));
    }
    if text.contains('\0') {
        return Err(format!("{what} must not contain the NUL character"));
    }
    Ok(())
}

/// A transactionId: 1 to [`TRANSACTION_ID_MAX`] bytes, no NUL.
pub fn check_transaction_id(what: &str, txid: &str) -> Result<(), String> {
    if txid.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    check_text(what, txid, TRANSACTION_ID_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_texts_and_transaction_ids() {
        assert!(check_name("queue", "orders.eu-1").is_ok());
        assert!(check_name("queue", &"q".repeat(NAME_MAX)).is_ok());
        assert!(check_name("queue", &"q".repeat(NAME_MAX + 1)).is_err());
        assert!(check_name("queue", "").is_err());
        assert!(check_name("queue", "a\tb").is_err());
        assert!(check_text("error", "x\0y", 10).is_err());
        assert!(check_text("error", &"é".repeat(5), 10).is_ok());
        assert!(
            check_text("error", &"é".repeat(6), 10).is_err(),
            "bytes, not characters"
        );
        assert!(check_transaction_id("transactionId", "").is_err());
        assert!(check_transaction_id("transactionId", &"t".repeat(TRANSACTION_ID_MAX)).is_ok());
        assert!(
            check_transaction_id("transactionId", &"t".repeat(TRANSACTION_ID_MAX + 1)).is_err()
        );
    }
}
