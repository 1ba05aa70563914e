//! [`KvMachine`]: the key-value store as a [`StateMachine`]. Commands arrive encoded
//! ([`Command`]), replies leave as RESP bytes ready for a client.
//!
//! Time: each command carries the time its proposer stamped; the machine's clock is the
//! largest stamp applied so far, so time never runs backwards across a change of leader
//! whose clock is behind, and every replica expires the same keys at the same command.
//! Nothing here reads a clock.

use crate::apps::kv::command::{Command, Condition, DecodeError, ExpireFlags, SetExpiry};
use crate::apps::kv::glob;
use crate::apps::kv::keyspace::{Keyspace, Value};
use crate::apps::resp::number::parse_i64;
use crate::apps::resp::reply;
use crate::state_machine::{RestoreError, StateMachine};

/// Redis's largest string (`proto-max-bulk-len`).
pub const MAX_STRING_BYTES: usize = 512 << 20;

/// The snapshot format's version.
const SNAPSHOT_VERSION: u8 = 1;

/// The key-value store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvMachine {
    keys: Keyspace,
    /// The largest stamp applied: the machine's time, in Unix milliseconds.
    clock_ms: i64,
}

impl KvMachine {
    /// An empty store.
    pub fn new() -> KvMachine {
        KvMachine::default()
    }

    /// Keys held (expired ones not yet reclaimed included).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Its time: the largest stamp applied.
    pub fn clock_ms(&self) -> i64 {
        self.clock_ms
    }

    /// Answers a read-only command without changing anything (a follower's stale read,
    /// at the time stamped in it). Writes are refused.
    pub fn read(&self, command: &[u8], response: &mut Vec<u8>) {
        match Command::decode(command) {
            Ok((stamp, command)) if command.is_read() => {
                self.answer(&command, stamp.max(self.clock_ms), response)
            }
            Ok(_) => reply::error(response, "READONLY You can't write against a read only replica."),
            Err(error) => corrupt(error, response),
        }
    }

    /// Applies a decoded command at `now_ms`.
    fn execute(&mut self, command: &Command<'_>, now_ms: i64, out: &mut Vec<u8>) {
        if command.is_read() {
            return self.answer(command, now_ms, out);
        }
        match *command {
            Command::Set { key, value, condition, expiry, get } => {
                self.set(key, value, condition, expiry, get, now_ms, out)
            }
            Command::GetSet { key, value } => {
                reply::bulk_or_null(out, self.keys.get(key, now_ms).map(|value| value.bytes.as_slice()));
                self.keys.set(key, value.to_vec(), None, false);
            }
            Command::SetNx { key, value } => {
                if self.keys.get(key, now_ms).is_some() {
                    out.extend_from_slice(reply::ZERO);
                } else {
                    self.keys.set(key, value.to_vec(), None, false);
                    out.extend_from_slice(reply::ONE);
                }
            }
            Command::Del { keys } => {
                let mut removed = 0;
                for key in keys.iter() {
                    // An expired key goes, but does not count (Redis expires it first).
                    let live = self.keys.get(key, now_ms).is_some();
                    if self.keys.remove(key) && live {
                        removed += 1;
                    }
                }
                reply::integer(out, removed);
            }
            Command::IncrBy { key, delta } => self.incr_by(key, delta, now_ms, out),
            Command::MSet { pairs } => {
                let mut items = pairs.iter();
                while let (Some(key), Some(value)) = (items.next(), items.next()) {
                    self.keys.set(key, value.to_vec(), None, false);
                }
                out.extend_from_slice(reply::OK);
            }
            Command::Append { key, value } => match self.keys.get_mut(key, now_ms) {
                Some(old) => {
                    if old.bytes.len() + value.len() > MAX_STRING_BYTES {
                        reply::error(out, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
                        return;
                    }
                    old.bytes.extend_from_slice(value);
                    reply::integer(out, old.bytes.len() as i64);
                }
                None => {
                    self.keys.set(key, value.to_vec(), None, false);
                    reply::integer(out, value.len() as i64);
                }
            },
            Command::Expire { key, amount, seconds, flags } => {
                self.expire(key, amount, seconds, flags, now_ms, out)
            }
            Command::Persist { key } => {
                let has_deadline =
                    self.keys.get(key, now_ms).is_some_and(|value| value.expires_at_ms.is_some());
                if has_deadline {
                    self.keys.set_deadline(key, None, now_ms);
                }
                reply::integer(out, i64::from(has_deadline));
            }
            Command::FlushAll => {
                self.keys.clear();
                out.extend_from_slice(reply::OK);
            }
            _ => unreachable!("reads are answered above"),
        }
    }

    #[allow(clippy::too_many_arguments)] // SET's options, as the command has them
    fn set(
        &mut self,
        key: &[u8],
        value: &[u8],
        condition: Condition,
        expiry: SetExpiry,
        get: bool,
        now_ms: i64,
        out: &mut Vec<u8>,
    ) {
        let (deadline, keep) = match expiry {
            SetExpiry::Clear => (None, false),
            SetExpiry::Keep => (None, true),
            SetExpiry::In(ms) => match now_ms.checked_add(ms).filter(|&at| at > 0) {
                Some(at) => (Some(at), false),
                None => return reply::error(out, "ERR invalid expire time in 'set' command"),
            },
            SetExpiry::At(ms) => (Some(ms), false),
        };
        let old = self.keys.get(key, now_ms);
        if get {
            reply::bulk_or_null(out, old.map(|value| value.bytes.as_slice()));
        }
        let found = old.is_some();
        let refused = match condition {
            Condition::Always => false,
            Condition::IfAbsent => found,
            Condition::IfPresent => !found,
        };
        if refused {
            if !get {
                out.extend_from_slice(reply::NULL);
            }
            return;
        }
        // An expired key's old deadline must not be kept.
        let keep = keep && found;
        if !found {
            self.keys.remove(key);
        }
        self.keys.set(key, value.to_vec(), deadline, keep);
        if !get {
            out.extend_from_slice(reply::OK);
        }
    }

    fn incr_by(&mut self, key: &[u8], delta: i64, now_ms: i64, out: &mut Vec<u8>) {
        let current = match self.keys.get_mut(key, now_ms) {
            Some(value) => match parse_i64(&value.bytes) {
                Some(number) => number,
                None => return reply::error(out, "ERR value is not an integer or out of range"),
            },
            None => 0,
        };
        let Some(next) = current.checked_add(delta) else {
            return reply::error(out, "ERR increment or decrement would overflow");
        };
        let mut digits = Vec::with_capacity(20);
        crate::apps::resp::number::write_i64(&mut digits, next);
        match self.keys.get_mut(key, now_ms) {
            Some(value) => value.bytes = digits,
            None => self.keys.set(key, digits, None, false),
        }
        reply::integer(out, next);
    }

    /// Redis 7.0's `expireGenericCommand`, step by step.
    fn expire(
        &mut self,
        key: &[u8],
        amount: i64,
        seconds: bool,
        flags: ExpireFlags,
        now_ms: i64,
        out: &mut Vec<u8>,
    ) {
        let invalid =
            || format!("ERR invalid expire time in '{}' command", if seconds { "expire" } else { "pexpire" });
        let when = if seconds { amount.checked_mul(1000) } else { Some(amount) };
        let Some(when) = when.and_then(|when| when.checked_add(now_ms)) else {
            return reply::error(out, invalid());
        };
        let Some(value) = self.keys.get(key, now_ms) else {
            return out.extend_from_slice(reply::ZERO);
        };
        let current = value.expires_at_ms;
        let refused = (flags.has(ExpireFlags::NX) && current.is_some())
            || (flags.has(ExpireFlags::XX) && current.is_none())
            || (flags.has(ExpireFlags::GT) && current.is_none_or(|current| when <= current))
            || (flags.has(ExpireFlags::LT) && current.is_some_and(|current| when >= current));
        if refused {
            return out.extend_from_slice(reply::ZERO);
        }
        if when <= now_ms {
            self.keys.remove(key);
        } else {
            self.keys.set_deadline(key, Some(when), now_ms);
        }
        out.extend_from_slice(reply::ONE);
    }

    /// Answers a read-only command at `now_ms`.
    fn answer(&self, command: &Command<'_>, now_ms: i64, out: &mut Vec<u8>) {
        let get = |key: &[u8]| self.keys.get(key, now_ms);
        match *command {
            Command::Get { key } => reply::bulk_or_null(out, get(key).map(|value| value.bytes.as_slice())),
            Command::Exists { keys } => {
                reply::integer(out, keys.iter().filter(|key| get(key).is_some()).count() as i64)
            }
            Command::MGet { keys } => {
                reply::array(out, keys.len());
                for key in keys.iter() {
                    reply::bulk_or_null(out, get(key).map(|value| value.bytes.as_slice()));
                }
            }
            Command::StrLen { key } => {
                reply::integer(out, get(key).map_or(0, |value| value.bytes.len() as i64))
            }
            Command::GetRange { key, start, end } => match get(key) {
                Some(value) => reply::bulk(out, range(&value.bytes, start, end)),
                None => out.extend_from_slice(reply::EMPTY_BULK),
            },
            Command::Ttl { key, millis } => reply::integer(out, ttl(get(key), now_ms, millis)),
            Command::Keys { pattern } => {
                let all = pattern == b"*";
                let keys: Vec<&[u8]> = self
                    .keys
                    .live_keys(now_ms)
                    .map(|key| key.bytes())
                    .filter(|key| all || glob::matches(pattern, key))
                    .collect();
                reply::array(out, keys.len());
                for key in keys {
                    reply::bulk(out, key);
                }
            }
            Command::Scan { cursor, pattern, count, type_name } => {
                let mut found: Vec<&[u8]> = Vec::new();
                let wanted_type = type_name.is_none_or(|name| name.eq_ignore_ascii_case(b"string"));
                let count = usize::try_from(count).unwrap_or(usize::MAX);
                let next = self.keys.scan(cursor, count, now_ms, |key| {
                    if wanted_type && pattern.is_none_or(|pattern| glob::matches(pattern, key.bytes())) {
                        found.push(key.bytes());
                    }
                });
                reply::array(out, 2);
                reply::bulk_u64(out, next);
                reply::array(out, found.len());
                for key in found {
                    reply::bulk(out, key);
                }
            }
            Command::Type { key } => reply::simple(out, if get(key).is_some() { "string" } else { "none" }),
            Command::DbSize => reply::integer(out, self.keys.len() as i64),
            _ => unreachable!("only reads are answered here"),
        }
    }
}

/// GETRANGE's slice, as Redis 7.0's `getrangeCommand` computes it.
fn range(bytes: &[u8], start: i64, end: i64) -> &[u8] {
    let len = bytes.len() as i64;
    if start < 0 && end < 0 && start > end {
        return &[];
    }
    let start = if start < 0 { (len + start).max(0) } else { start };
    let mut end = if end < 0 { (len + end).max(0) } else { end };
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return &[];
    }
    &bytes[start as usize..=end as usize]
}

/// TTL/PTTL's answer: -2 absent, -1 no deadline, else what is left (seconds rounded).
fn ttl(value: Option<&Value>, now_ms: i64, millis: bool) -> i64 {
    let Some(value) = value else { return -2 };
    let Some(at) = value.expires_at_ms else { return -1 };
    let left = (at - now_ms).max(0);
    if millis {
        left
    } else {
        (left + 500) / 1000
    }
}

fn corrupt(error: DecodeError, out: &mut Vec<u8>) {
    reply::error(out, format!("ERR corrupt command in the log: {error}"));
}

impl StateMachine for KvMachine {
    fn apply(&mut self, command: &[u8], response: &mut Vec<u8>) {
        match Command::decode(command) {
            Ok((stamp, command)) => {
                self.clock_ms = self.clock_ms.max(stamp);
                let now_ms = self.clock_ms;
                self.keys.reclaim_expired(now_ms);
                self.execute(&command, now_ms, response);
            }
            Err(error) => corrupt(error, response),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut bytes = vec![SNAPSHOT_VERSION];
        bytes.extend_from_slice(&self.clock_ms.to_le_bytes());
        bytes.extend_from_slice(&(self.keys.len() as u64).to_le_bytes());
        for (key, value) in self.keys.entries() {
            bytes.extend_from_slice(&(key.bytes().len() as u32).to_le_bytes());
            bytes.extend_from_slice(key.bytes());
            bytes.extend_from_slice(&(value.bytes.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&value.bytes);
            match value.expires_at_ms {
                Some(at) => {
                    bytes.push(1);
                    bytes.extend_from_slice(&at.to_le_bytes());
                }
                None => bytes.push(0),
            }
        }
        bytes
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let refuse = |why: &str| RestoreError(format!("kv snapshot: {why}"));
        let mut reader = crate::codec::Reader::new(snapshot);
        let version = reader.bytes(1).ok_or_else(|| refuse("empty"))?[0];
        if version != SNAPSHOT_VERSION {
            return Err(refuse(&format!("version {version}, expected {SNAPSHOT_VERSION}")));
        }
        let clock_ms = reader.u64().ok_or_else(|| refuse("no clock"))? as i64;
        let count = reader.u64().ok_or_else(|| refuse("no count"))?;
        let mut keys = Keyspace::default();
        for _ in 0..count {
            let len = reader.u32().ok_or_else(|| refuse("a key is cut"))? as usize;
            let key = reader.bytes(len).ok_or_else(|| refuse("a key is cut"))?;
            let len = reader.u32().ok_or_else(|| refuse("a value is cut"))? as usize;
            let value = reader.bytes(len).ok_or_else(|| refuse("a value is cut"))?.to_vec();
            let expires_at_ms = match reader.bytes(1).ok_or_else(|| refuse("a deadline is cut"))?[0] {
                0 => None,
                1 => Some(reader.u64().ok_or_else(|| refuse("a deadline is cut"))? as i64),
                _ => return Err(refuse("a deadline flag is neither 0 nor 1")),
            };
            keys.insert_restored(key, Value { bytes: value, expires_at_ms });
        }
        if !reader.is_empty() {
            return Err(refuse("bytes after the last key"));
        }
        if keys.len() as u64 != count {
            return Err(refuse("a key is listed twice"));
        }
        *self = KvMachine { keys, clock_ms };
        Ok(())
    }
}

#[cfg(test)]
mod tests;
