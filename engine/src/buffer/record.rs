//! The body of one buffered push item.
//!
//! ```text
//!   u8 version (1)
//!   str queue | str partition | str payload | str transactionId
//!   u8 has_trace [16 bytes trace id]
//!   u8 has_sub   [str producerSub]
//!   str = u32 little-endian length + UTF-8 bytes
//! ```
//!
//! Every buffered item carries its transactionId (generated before the first attempt), which is
//! what makes replay idempotent.

use uuid::Uuid;

use crate::model::PushItem;

const VERSION: u8 = 1;

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
            payload: self.payload,
            transaction_id: Some(self.transaction_id),
            trace_id: self.trace_id,
            producer_sub: self.producer_sub,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b =
            Vec::with_capacity(32 + self.queue.len() + self.partition.len() + self.payload.len());
        b.push(VERSION);
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

    pub(crate) fn decode(mut b: &[u8]) -> Option<Record> {
        if take(&mut b, 1)?[0] != VERSION {
            return None;
        }
        let queue = get_str(&mut b)?;
        let partition = get_str(&mut b)?;
        let payload = get_str(&mut b)?;
        let transaction_id = get_str(&mut b)?;
        let trace_id = match take(&mut b, 1)?[0] {
            0 => None,
            _ => Some(Uuid::from_slice(take(&mut b, 16)?).ok()?),
        };
        let producer_sub = match take(&mut b, 1)?[0] {
            0 => None,
            _ => Some(get_str(&mut b)?),
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

    #[test]
    fn roundtrip_and_rejects_garbage() {
        let r = Record {
            queue: "q".into(),
            partition: "pä".into(),
            payload: r#"{"a":1}"#.into(),
            transaction_id: "t".into(),
            trace_id: Some(Uuid::now_v7()),
            producer_sub: Some("me".into()),
        };
        let enc = r.encode();
        assert_eq!(Record::decode(&enc), Some(r.clone()));
        let bare = Record {
            trace_id: None,
            producer_sub: None,
            ..r
        };
        assert_eq!(Record::decode(&bare.encode()), Some(bare));
        assert_eq!(Record::decode(&enc[..enc.len() - 1]), None);
        assert_eq!(Record::decode(&[2]), None);
        let mut long = enc;
        long.push(0);
        assert_eq!(Record::decode(&long), None, "trailing bytes");
    }
}
