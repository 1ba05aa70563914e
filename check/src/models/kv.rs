//! [`Kv`]: a key-value store of strings with Redis's semantics for the commands a client
//! of our replicated KV records; partitioned by key.

use serde::{Deserialize, Serialize};

use crate::bytes::Bytes;
use crate::model::Model;

/// What Redis answers to `INCR` on a value that is not a base-10 64-bit integer.
pub const NOT_AN_INTEGER: &str = "value is not an integer or out of range";
/// What Redis answers when `INCRBY` would leave the 64-bit range.
pub const OVERFLOW: &str = "increment or decrement would overflow";

/// A command on one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvInput {
    /// `GET key`.
    Get(Bytes),
    /// `SET key value`.
    Set(Bytes, Bytes),
    /// `GETSET key value` (or `SET key value GET`).
    GetSet(Bytes, Bytes),
    /// `DEL key`.
    Del(Bytes),
    /// `EXISTS key`.
    Exists(Bytes),
    /// `INCRBY key by` (`INCR`: by 1, `DECR`: by -1).
    IncrBy(Bytes, i64),
    /// `APPEND key value`.
    Append(Bytes, Bytes),
}

/// Its answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOutput {
    /// `+OK`.
    Ok,
    /// A bulk string, or nil.
    Value(Option<Bytes>),
    /// An integer: keys deleted, existence, the new value, the new length.
    Integer(i64),
    /// An error, without its `ERR ` prefix.
    Error(String),
}

/// The key-value model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kv;

/// Parses a value as Redis does for `INCR`: only the canonical decimal form of an i64
/// (no sign `+`, no leading zeros or spaces, no `-0`).
fn as_integer(value: &[u8]) -> Option<i64> {
    let number: i64 = std::str::from_utf8(value).ok()?.parse().ok()?;
    (number.to_string().as_bytes() == value).then_some(number)
}

impl Model for Kv {
    type Input = KvInput;
    type Output = KvOutput;
    /// The key's value; `None`: absent.
    type State = Option<Bytes>;
    type Key = Bytes;

    fn init(&self) -> Option<Bytes> {
        None
    }

    fn step(&self, state: &Option<Bytes>, input: &KvInput) -> (Option<Bytes>, KvOutput) {
        match input {
            KvInput::Get(_) => (state.clone(), KvOutput::Value(state.clone())),
            KvInput::Set(_, value) => (Some(value.clone()), KvOutput::Ok),
            KvInput::GetSet(_, value) => (Some(value.clone()), KvOutput::Value(state.clone())),
            KvInput::Del(_) => (None, KvOutput::Integer(i64::from(state.is_some()))),
            KvInput::Exists(_) => (state.clone(), KvOutput::Integer(i64::from(state.is_some()))),
            KvInput::IncrBy(_, by) => {
                let current = match state {
                    None => 0,
                    Some(value) => match as_integer(value.as_slice()) {
                        Some(number) => number,
                        None => return (state.clone(), KvOutput::Error(NOT_AN_INTEGER.into())),
                    },
                };
                match current.checked_add(*by) {
                    Some(next) => (Some(Bytes::from(next.to_string().as_str())), KvOutput::Integer(next)),
                    None => (state.clone(), KvOutput::Error(OVERFLOW.into())),
                }
            }
            KvInput::Append(_, suffix) => {
                let mut value = state.clone().unwrap_or_default();
                value.0.extend_from_slice(suffix.as_slice());
                let length = i64::try_from(value.0.len()).expect("values are far below 2^63 bytes");
                (Some(value), KvOutput::Integer(length))
            }
        }
    }

    fn key(&self, input: &KvInput) -> Bytes {
        match input {
            KvInput::Get(key)
            | KvInput::Set(key, _)
            | KvInput::GetSet(key, _)
            | KvInput::Del(key)
            | KvInput::Exists(key)
            | KvInput::IncrBy(key, _)
            | KvInput::Append(key, _) => key.clone(),
        }
    }

    fn is_read_only(&self, input: &KvInput) -> bool {
        matches!(input, KvInput::Get(_) | KvInput::Exists(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(inputs: &[KvInput]) -> Vec<KvOutput> {
        let mut state = Kv.init();
        inputs
            .iter()
            .map(|input| {
                let (next, output) = Kv.step(&state, input);
                state = next;
                output
            })
            .collect()
    }

    #[test]
    fn commands_answer_as_redis_does() {
        let key = || Bytes::from("k");
        let outputs = run(&[
            KvInput::Get(key()),
            KvInput::IncrBy(key(), 5),
            KvInput::Append(key(), Bytes::from("0")),
            KvInput::GetSet(key(), Bytes::from("x")),
            KvInput::IncrBy(key(), 1),
            KvInput::Exists(key()),
            KvInput::Del(key()),
            KvInput::Del(key()),
            KvInput::Set(key(), Bytes::from(i64::MAX.to_string().as_str())),
            KvInput::IncrBy(key(), 1),
            KvInput::Set(key(), Bytes::from("007")),
            KvInput::IncrBy(key(), 1),
        ]);
        assert_eq!(
            outputs,
            vec![
                KvOutput::Value(None),
                KvOutput::Integer(5),
                KvOutput::Integer(2),
                KvOutput::Value(Some(Bytes::from("50"))),
                KvOutput::Error(NOT_AN_INTEGER.into()),
                KvOutput::Integer(1),
                KvOutput::Integer(1),
                KvOutput::Integer(0),
                KvOutput::Ok,
                KvOutput::Error(OVERFLOW.into()),
                KvOutput::Ok,
                KvOutput::Error(NOT_AN_INTEGER.into()),
            ]
        );
    }

    #[test]
    fn only_canonical_integers_count() {
        for (text, number) in [
            ("0", Some(0)),
            ("-12", Some(-12)),
            ("+1", None),
            ("01", None),
            ("-0", None),
            (" 1", None),
            ("", None),
        ] {
            assert_eq!(as_integer(text.as_bytes()), number, "{text:?}");
        }
    }
}
