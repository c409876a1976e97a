//! The body of one buffered push item.
//!
//! ```text
//!   plain:  u8 1 | str queue | str partition | str payload | str transactionId
//!                | u8 has_trace [16 bytes trace id]
//!                | u8 has_sub   [str producerSub]
//!   sealed: u8 2 | nonce ‖ AES-256-GCM(plain body) ‖ tag
//!   str = u32 little-endian length + UTF-8 bytes
//! ```
//!
//! A server with an encryption key (`QUEEN_ENCRYPTION_KEY`) writes sealed records, so nothing
//! pushed — payload, queue or partition — sits in the buffer in plaintext. Plain records (written
//! without a key) are still read with one. The log's CRC already catches damage on disk, so a
//! sealed record that does not open means a missing or different key, never corruption.
//!
//! Every buffered item carries its transactionId (generated before the first attempt), which is
//! what makes replay idempotent.

use uuid::Uuid;

use crate::crypto::Cipher;
use crate::model::PushItem;

const PLAIN: u8 = 1;
const SEALED: u8 = 2;

/// Why a record body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Not a record of any known layout.
    Corrupt,
    /// Sealed, and this server has no key or another key.
    Sealed,
}

/// An item as stored in the log (the transactionId is always set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub queue: String,
    pub partition: String,
    pub payload: String,
    pub transaction_id: String,
    pub trace_id: Option<Uuid>,
    pub producer_sub: Option<String>,
}

impl Record {
    pub(crate) fn into_item(self) -> PushItem {
        PushItem {
            queue: self.queue,
            partition: self.partition,
            payload: self.payload.into(),
            transaction_id: Some(self.transaction_id),
            trace_id: self.trace_id,
            producer_sub: self.producer_sub,
        }
    }

    /// The record as written to the log: sealed when a cipher is given.
    pub(crate) fn encode(&self, cipher: Option<&Cipher>) -> Vec<u8> {
        let plain = self.encode_plain();
        match cipher {
            None => plain,
            Some(c) => {
                let sealed = c.encrypt(&plain);
                let mut b = Vec::with_capacity(1 + sealed.len());
                b.push(SEALED);
                b.extend_from_slice(&sealed);
                b
            }
        }
    }

    /// Reads a record written by [`encode`](Record::encode).
    pub(crate) fn decode(b: &[u8], cipher: Option<&Cipher>) -> Result<Record, DecodeError> {
        match b.first() {
            Some(&PLAIN) => Record::decode_plain(b).ok_or(DecodeError::Corrupt),
            Some(&SEALED) => {
                let plain = cipher
                    .ok_or(DecodeError::Sealed)?
                    .decrypt(&b[1..])
                    .map_err(|_| DecodeError::Sealed)?;
                // Inside a sealed record only the plain layout is valid.
                Record::decode_plain(&plain).ok_or(DecodeError::Corrupt)
            }
            _ => Err(DecodeError::Corrupt),
        }
    }

    fn encode_plain(&self) -> Vec<u8> {
        let mut b =
            Vec::with_capacity(32 + self.queue.len() + self.partition.len() + self.payload.len());
        b.push(PLAIN);
        for s in [
            &self.queue,
            &self.partition,
            &self.payload,
            &self.transaction_id,
        ] {
            put_str(&mut b, s);
        }
        match self.trace_id {
            Some(t) => {
                b.push(1);
                b.extend_from_slice(t.as_bytes());
            }
            None => b.push(0),
        }
        match &self.producer_sub {
            Some(s) => {
                b.push(1);
                put_str(&mut b, s);
            }
            None => b.push(0),
        }
        b
    }

    fn decode_plain(mut b: &[u8]) -> Option<Record> {
        if take(&mut b, 1)?[0] != PLAIN {
            return None;
        }
        let queue = get_str(&mut b)?;
        let partition = get_str(&mut b)?;
        let payload = get_str(&mut b)?;
        let transaction_id = get_str(&mut b)?;
        // Presence flags are exactly 0 or 1: anything else is damage.
        let trace_id = match take(&mut b, 1)?[0] {
            0 => None,
            1 => Some(Uuid::from_slice(take(&mut b, 16)?).ok()?),
            _ => return None,
        };
        let producer_sub = match take(&mut b, 1)?[0] {
            0 => None,
            1 => Some(get_str(&mut b)?),
            _ => return None,
        };
        b.is_empty().then_some(Record {
            queue,
            partition,
            payload,
            transaction_id,
            trace_id,
            producer_sub,
        })
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Some(head)
}

fn get_str(b: &mut &[u8]) -> Option<String> {
    let len = u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize;
    String::from_utf8(take(b, len)?.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn record() -> Record {
        Record {
            queue: "q".into(),
            partition: "pä".into(),
            payload: r#"{"card":"4111"}"#.into(),
            transaction_id: "t".into(),
            trace_id: Some(Uuid::now_v7()),
            producer_sub: Some("me".into()),
        }
    }

    #[test]
    fn roundtrip_and_rejects_garbage() {
        let r = record();
        let enc = r.encode(None);
        assert_eq!(Record::decode(&enc, None), Ok(r.clone()));
        let bare = Record {
            trace_id: None,
            producer_sub: None,
            ..r
        };
        assert_eq!(Record::decode(&bare.encode(None), None), Ok(bare));
        let corrupt = Err(DecodeError::Corrupt);
        assert_eq!(Record::decode(&enc[..enc.len() - 1], None), corrupt);
        assert_eq!(Record::decode(&[3], None), corrupt);
        assert_eq!(Record::decode(&[], None), corrupt);
        let mut long = enc;
        long.push(0);
        assert_eq!(Record::decode(&long, None), corrupt, "trailing bytes");
    }

    #[test]
    fn sealed_records_hide_everything_and_need_their_key() {
        let key = Cipher::from_hex(KEY).unwrap();
        let other = Cipher::from_hex(&KEY.replace("1f", "ff")).unwrap();
        let r = record();
        let sealed = r.encode(Some(&key));
        for plain in [&b"4111"[..], "pä".as_bytes(), b"me"] {
            assert!(
                !sealed.windows(plain.len()).any(|w| w == plain),
                "no plaintext in a sealed record"
            );
        }
        assert_eq!(Record::decode(&sealed, Some(&key)), Ok(r.clone()));
        assert_eq!(Record::decode(&sealed, None), Err(DecodeError::Sealed));
        assert_eq!(
            Record::decode(&sealed, Some(&other)),
            Err(DecodeError::Sealed)
        );
        // Records written without a key are still read with one.
        assert_eq!(Record::decode(&r.encode(None), Some(&key)), Ok(r));
    }
}

#[cfg(test)]
mod fuzz {
    //! The record decoder on arbitrary bytes — random, and valid records cut or flipped —
    //! never panics, and what it decodes it decodes exactly. `PROPTEST_CASES` sets the count.

    use super::*;
    use proptest::prelude::*;

    fn record() -> impl Strategy<Value = Record> {
        (
            ".{0,8}",
            ".{0,8}",
            ".{0,64}",
            ".{0,16}",
            proptest::option::of(any::<u128>()),
            proptest::option::of(".{0,8}"),
        )
            .prop_map(
                |(queue, partition, payload, transaction_id, trace, sub)| Record {
                    queue,
                    partition,
                    payload,
                    transaction_id,
                    trace_id: trace.map(Uuid::from_u128),
                    producer_sub: sub,
                },
            )
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Record::decode(&bytes, None);
        }

        #[test]
        fn records_round_trip_and_damage_is_caught(r in record(), cut in any::<usize>(), flip in any::<(usize, u8)>()) {
            let b = r.encode(None);
            prop_assert_eq!(Record::decode(&b, None), Ok(r.clone()));
            let cut = cut % b.len();
            prop_assert!(Record::decode(&b[..cut], None).is_err());
            let mut damaged = b;
            let at = flip.0 % damaged.len();
            damaged[at] ^= flip.1 | 1;
            // A flipped byte either fails to decode or decodes to something else: never a panic.
            if let Ok(d) = Record::decode(&damaged, None) {
                prop_assert_ne!(d, r);
            }
        }
    }
}
