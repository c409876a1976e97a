//! TransactionIds as stored (docs/storage.md): a canonical UUID — lowercase, hyphenated, what
//! Queen's clients generate — as a 16-byte `uuid`, anything else as text; and a 64-bit key for
//! the (partition, key) index that dedupe and lookups go through, with the transactionId itself
//! rechecked. A UUID's key is its first 8 bytes (time-ordered for UUIDv7, so inserts append to
//! the index); a text one's is PostgreSQL's `hashtextextended(text, 0)`, which the database
//! computes (the server passes no key for it).
//!
//! The same split is written in SQL (`queen.split_txid`, `queen.uuid_key`) for the statements
//! that take a transactionId as text; a test checks the two agree.

use uuid::Uuid;

/// A transactionId split for storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxId<'a> {
    /// A canonical UUID, with its key.
    Uuid(Uuid, i64),
    /// Anything else; its key is computed by the database.
    Text(&'a str),
}

impl<'a> TxId<'a> {
    /// Splits a transactionId. A UUID in any other spelling (upper case, braces, no hyphens)
    /// stays text, so every transactionId prints back exactly as it was given.
    pub(crate) fn of(txid: &'a str) -> TxId<'a> {
        match Uuid::try_parse(txid) {
            Ok(u) if txid.len() == 36 && u.hyphenated().to_string() == txid => {
                TxId::Uuid(u, uuid_key(&u))
            }
            _ => TxId::Text(txid),
        }
    }

    /// The index key, when the server computes it (UUIDs).
    pub(crate) fn key(self) -> Option<i64> {
        match self {
            TxId::Uuid(_, k) => Some(k),
            TxId::Text(_) => None,
        }
    }

    /// The `txuuid` column.
    pub(crate) fn uuid(self) -> Option<Uuid> {
        match self {
            TxId::Uuid(u, _) => Some(u),
            TxId::Text(_) => None,
        }
    }

    /// The `txtext` column.
    pub(crate) fn text(self) -> Option<&'a str> {
        match self {
            TxId::Uuid(..) => None,
            TxId::Text(t) => Some(t),
        }
    }
}

/// The first 8 bytes of a UUID as a signed big-endian integer (`queen.uuid_key`).
pub(crate) fn uuid_key(u: &Uuid) -> i64 {
    let b = u.as_bytes();
    i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uuids_are_stored_as_uuids_everything_else_as_text() {
        let u = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let TxId::Uuid(parsed, key) = TxId::of(u) else {
            panic!("a canonical UUID")
        };
        assert_eq!(parsed.to_string(), u);
        assert_eq!(key, 0x0190_a1b2_c3d4_7e5f);
        for text in [
            "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B",
            "{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b}",
            "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b",
            "urn:uuid:0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            "order-42",
            "",
        ] {
            assert_eq!(TxId::of(text), TxId::Text(text), "{text}");
        }
        let high = Uuid::parse_str("ffffffff-ffff-ffff-ffff-ffffffffffff").unwrap();
        assert_eq!(uuid_key(&high), -1, "signed, as PostgreSQL's bigint");
    }
}
