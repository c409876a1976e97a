//! TransactionIds as stored (docs/storage.md): a canonical UUID — lowercase, hyphenated, what
//! Queen's clients generate — as a 16-byte `uuid`, anything else as text. Each form has its
//! unique index per partition; a push finds duplicates by inserting.
//!
//! The same split is written in SQL (`queen.split_txid`) for the statements that take a
//! transactionId as text.

use uuid::Uuid;

/// A transactionId split for storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxId<'a> {
    /// A canonical UUID.
    Uuid(Uuid),
    /// Anything else.
    Text(&'a str),
}

impl<'a> TxId<'a> {
    /// Splits a transactionId. A UUID in any other spelling (upper case, braces, no hyphens)
    /// stays text, so every transactionId prints back exactly as it was given.
    pub(crate) fn of(txid: &'a str) -> TxId<'a> {
        match Uuid::try_parse(txid) {
            Ok(u) if txid.len() == 36 && u.hyphenated().to_string() == txid => TxId::Uuid(u),
            _ => TxId::Text(txid),
        }
    }

    /// The `txuuid` column.
    pub(crate) fn uuid(self) -> Option<Uuid> {
        match self {
            TxId::Uuid(u) => Some(u),
            TxId::Text(_) => None,
        }
    }

    /// The `txtext` column.
    pub(crate) fn text(self) -> Option<&'a str> {
        match self {
            TxId::Uuid(_) => None,
            TxId::Text(t) => Some(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uuids_are_stored_as_uuids_everything_else_as_text() {
        let u = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        assert_eq!(
            TxId::of(u).uuid().map(|u| u.to_string()).as_deref(),
            Some(u)
        );
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
    }
}
