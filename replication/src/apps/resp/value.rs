//! [`Value`]: a RESP2 reply as a tree — what a client makes of the bytes a server sent.
//! Servers write their replies straight into buffers ([`super::reply`]); clients (test
//! clients, load generators) read them back with [`Value::decode`], which takes exactly
//! the replies [`super::scan::reply_len`] finds whole.

use crate::apps::resp::number::write_i64;
use crate::apps::resp::scan::{next_item, Item, MalformedReply};

/// Arrays nested deeper than this are refused by [`Value::decode`], so that decoding,
/// comparing and dropping a value never recurse deeply (no server here nests more than
/// four).
pub const DEPTH_MAX: usize = 256;

/// A RESP2 value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`.
    Simple(Vec<u8>),
    /// `-CODE message`.
    Error(Vec<u8>),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nabc`.
    Bulk(Vec<u8>),
    /// `$-1`.
    NullBulk,
    /// `*2\r\n...`.
    Array(Vec<Value>),
    /// `*-1`.
    NullArray,
}

/// Why [`Value::decode`] refused a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not RESP2.
    #[error(transparent)]
    Malformed(#[from] MalformedReply),
    /// Arrays nested deeper than [`DEPTH_MAX`].
    #[error("arrays nested deeper than {DEPTH_MAX}")]
    TooDeep,
}

impl Value {
    /// Appends the RESP encoding.
    ///
    /// # Panics
    ///
    /// If a simple string or an error holds `\r\n`: it cannot be framed (values that
    /// [`Value::decode`] gave never do).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let line = |out: &mut Vec<u8>, kind: u8, text: &[u8]| {
            assert!(!text.windows(2).any(|pair| pair == b"\r\n"), "a RESP line cannot hold \\r\\n");
            out.push(kind);
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        };
        match self {
            Value::Simple(text) => line(out, b'+', text),
            Value::Error(text) => line(out, b'-', text),
            Value::Integer(value) => {
                out.push(b':');
                write_i64(out, *value);
                out.extend_from_slice(b"\r\n");
            }
            Value::Bulk(bytes) => crate::apps::resp::reply::bulk(out, bytes),
            Value::NullBulk => out.extend_from_slice(crate::apps::resp::reply::NULL),
            Value::Array(items) => {
                crate::apps::resp::reply::array(out, items.len());
                for item in items {
                    item.encode(out);
                }
            }
            Value::NullArray => out.extend_from_slice(b"*-1\r\n"),
        }
    }

    /// The RESP encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// The reply at the front of `bytes` and its length, `None` if it is not all there.
    pub fn decode(bytes: &[u8]) -> Result<Option<(Value, usize)>, DecodeError> {
        // Arrays being filled: their elements so far, and how many they have in all.
        let mut open: Vec<(Vec<Value>, u64)> = Vec::new();
        let mut pos = 0;
        loop {
            let next = next_item(&bytes[pos..]).map_err(|MalformedReply(at)| MalformedReply(pos + at))?;
            let Some((item, len)) = next else { return Ok(None) };
            pos += len;
            let mut value = match item {
                Item::Array(count) if count > 0 => {
                    if open.len() == DEPTH_MAX {
                        return Err(DecodeError::TooDeep);
                    }
                    // No room reserved: the count is the peer's word, not yet bytes.
                    open.push((Vec::new(), count));
                    continue;
                }
                Item::Array(_) => Value::Array(Vec::new()),
                Item::Simple(text) => Value::Simple(text.to_vec()),
                Item::Error(text) => Value::Error(text.to_vec()),
                Item::Integer(value) => Value::Integer(value),
                Item::Bulk(bytes) => Value::Bulk(bytes.to_vec()),
                Item::NullBulk => Value::NullBulk,
                Item::NullArray => Value::NullArray,
            };
            // The value may complete its array, and that one its own, and so on.
            loop {
                let Some((items, count)) = open.last_mut() else { return Ok(Some((value, pos))) };
                items.push(value);
                if (items.len() as u64) < *count {
                    break;
                }
                let (items, _) = open.pop().expect("just looked");
                value = Value::Array(items);
            }
        }
    }

    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(bytes) | Value::Simple(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The value of an integer.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(value) => Some(*value),
            _ => None,
        }
    }

    /// The elements of an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let line = prop::collection::vec(any::<u8>(), 0..8)
            .prop_filter("no CRLF", |text| !text.windows(2).any(|pair| pair == b"\r\n"));
        let leaf = prop_oneof![
            line.clone().prop_map(Value::Simple),
            line.prop_map(Value::Error),
            any::<i64>().prop_map(Value::Integer),
            prop::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bulk),
            Just(Value::NullBulk),
            Just(Value::NullArray),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| prop::collection::vec(inner, 0..4).prop_map(Value::Array))
    }

    proptest! {
        /// Encoded values decode to themselves, at every cut incomplete, and the scanner
        /// agrees on where they end.
        #[test]
        fn values_round_trip(value in value()) {
            let bytes = value.to_bytes();
            prop_assert_eq!(Value::decode(&bytes), Ok(Some((value, bytes.len()))));
            prop_assert_eq!(crate::apps::resp::scan::reply_len(&bytes), Ok(Some(bytes.len())));
            for cut in 0..bytes.len() {
                prop_assert_eq!(Value::decode(&bytes[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn deep_nesting_is_refused_and_counts_are_not_trusted() {
        let deep = b"*1\r\n".repeat(DEPTH_MAX + 1);
        assert_eq!(Value::decode(&deep), Err(DecodeError::TooDeep));
        let fine = [b"*1\r\n".repeat(DEPTH_MAX), b":1\r\n".to_vec()].concat();
        assert!(Value::decode(&fine).unwrap().is_some());
        assert_eq!(Value::decode(b"*9223372036854775807\r\n:1\r\n"), Ok(None));
        assert_eq!(Value::decode(b":1\r\n?\r\n"), Ok(Some((Value::Integer(1), 4))));
        assert_eq!(Value::decode(b"*2\r\n:1\r\n?\r\n"), Err(DecodeError::Malformed(MalformedReply(8))));
    }
}
