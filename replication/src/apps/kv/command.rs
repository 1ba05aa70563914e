//! [`Command`]: what the KV applies, and its compact, versioned encoding in the log.
//!
//! ```text
//! version u8 (1) | stamp_ms i64 | opcode u8 | fields
//! bytes field:   len u32 | bytes
//! integer field: i64
//! list field:    count u32 | bytes field × count
//! ```
//!
//! The stamp is the time the proposing front end read when it took the command: the
//! state machine never reads a clock. Decoding checks every length against what is
//! there and never panics; a command it cannot read is answered with an error.

use crate::apps::resp::Args;

/// The encoding's version; a replica refuses commands of another.
pub const VERSION: u8 = 1;

/// How SET treats a key that exists or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Always set.
    Always,
    /// NX: only if absent.
    IfAbsent,
    /// XX: only if present.
    IfPresent,
}

/// What SET does to the key's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetExpiry {
    /// No deadline (any old one goes).
    Clear,
    /// KEEPTTL.
    Keep,
    /// EX/PX: this many milliseconds after the stamp (validated positive).
    In(i64),
    /// EXAT/PXAT: at this Unix time in milliseconds (validated positive).
    At(i64),
}

/// EXPIRE's NX/XX/GT/LT, as Redis's bit flags (checked one after another, as Redis does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireFlags(pub u8);

impl ExpireFlags {
    /// NX: only if it has no deadline.
    pub const NX: u8 = 1;
    /// XX: only if it has one.
    pub const XX: u8 = 2;
    /// GT: only if later than the current one (none counts as infinite).
    pub const GT: u8 = 4;
    /// LT: only if earlier than the current one (none counts as infinite).
    pub const LT: u8 = 8;

    /// Whether `flag` is set.
    pub fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }
}

/// A list of byte strings: straight from a request's arguments, or read from the log.
#[derive(Clone, Copy, Debug)]
pub enum List<'a> {
    /// Arguments `from..` of a request.
    Args {
        /// The request.
        args: Args<'a>,
        /// The first.
        from: usize,
    },
    /// An encoded list, already checked.
    Encoded {
        /// How many.
        count: u32,
        /// Their encoding.
        bytes: &'a [u8],
    },
}

impl<'a> List<'a> {
    /// How many.
    pub fn len(&self) -> usize {
        match self {
            List::Args { args, from } => args.len() - from,
            List::Encoded { count, .. } => *count as usize,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The byte strings, in order.
    pub fn iter(&self) -> ListIter<'a> {
        match *self {
            List::Args { args, from } => ListIter::Args { args, next: from },
            List::Encoded { bytes, .. } => ListIter::Encoded { rest: bytes },
        }
    }
}

/// The items of a [`List`].
#[derive(Clone, Debug)]
pub enum ListIter<'a> {
    /// Over arguments.
    #[doc(hidden)]
    Args {
        /// The request.
        args: Args<'a>,
        /// The next index.
        next: usize,
    },
    /// Over an encoding.
    #[doc(hidden)]
    Encoded {
        /// What is left.
        rest: &'a [u8],
    },
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            ListIter::Args { args, next } => {
                if *next >= args.len() {
                    return None;
                }
                *next += 1;
                Some(args.get(*next - 1))
            }
            ListIter::Encoded { rest } => {
                let mut reader = Reader { rest };
                let item = reader.bytes()?;
                *rest = reader.rest;
                Some(item)
            }
        }
    }
}

/// A command of the KV.
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs)] // the variants are Redis's commands, named after them
pub enum Command<'a> {
    Get {
        key: &'a [u8],
    },
    Set {
        key: &'a [u8],
        value: &'a [u8],
        condition: Condition,
        expiry: SetExpiry,
        get: bool,
    },
    GetSet {
        key: &'a [u8],
        value: &'a [u8],
    },
    SetNx {
        key: &'a [u8],
        value: &'a [u8],
    },
    Del {
        keys: List<'a>,
    },
    Exists {
        keys: List<'a>,
    },
    IncrBy {
        key: &'a [u8],
        delta: i64,
    },
    MGet {
        keys: List<'a>,
    },
    /// Key, value, key, value, …
    MSet {
        pairs: List<'a>,
    },
    Append {
        key: &'a [u8],
        value: &'a [u8],
    },
    StrLen {
        key: &'a [u8],
    },
    GetRange {
        key: &'a [u8],
        start: i64,
        end: i64,
    },
    /// EXPIRE (`seconds`) or PEXPIRE.
    Expire {
        key: &'a [u8],
        amount: i64,
        seconds: bool,
        flags: ExpireFlags,
    },
    /// TTL or PTTL (`millis`).
    Ttl {
        key: &'a [u8],
        millis: bool,
    },
    Persist {
        key: &'a [u8],
    },
    Keys {
        pattern: &'a [u8],
    },
    Scan {
        cursor: u64,
        pattern: Option<&'a [u8]>,
        count: u64,
        type_name: Option<&'a [u8]>,
    },
    Type {
        key: &'a [u8],
    },
    DbSize,
    FlushAll,
}

/// Why a command could not be read from the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Another encoding version.
    #[error("encoding version {0} (this replica reads {VERSION})")]
    Version(u8),
    /// An opcode it does not know.
    #[error("unknown opcode {0}")]
    Opcode(u8),
    /// A field runs past the end, or bytes are left over.
    #[error("malformed fields")]
    Malformed,
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.rest.len() {
            return None;
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(taken)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|bytes| bytes[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|bytes| u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn i64(&mut self) -> Option<i64> {
        let bytes = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Some(i64::from_le_bytes(array))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn optional(&mut self) -> Option<Option<&'a [u8]>> {
        match self.u8()? {
            0 => Some(None),
            1 => self.bytes().map(Some),
            _ => None,
        }
    }

    fn list(&mut self) -> Option<List<'a>> {
        let count = self.u32()?;
        let start = self.rest;
        for _ in 0..count {
            self.bytes()?;
        }
        let used = start.len() - self.rest.len();
        Some(List::Encoded { count, bytes: &start[..used] })
    }
}

mod opcode {
    pub const GET: u8 = 1;
    pub const SET: u8 = 2;
    pub const GETSET: u8 = 3;
    pub const SETNX: u8 = 4;
    pub const DEL: u8 = 5;
    pub const EXISTS: u8 = 6;
    pub const INCRBY: u8 = 7;
    pub const MGET: u8 = 8;
    pub const MSET: u8 = 9;
    pub const APPEND: u8 = 10;
    pub const STRLEN: u8 = 11;
    pub const GETRANGE: u8 = 12;
    pub const EXPIRE: u8 = 13;
    pub const TTL: u8 = 14;
    pub const PERSIST: u8 = 15;
    pub const KEYS: u8 = 16;
    pub const SCAN: u8 = 17;
    pub const TYPE: u8 = 18;
    pub const DBSIZE: u8 = 19;
    pub const FLUSHALL: u8 = 20;
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_list(out: &mut Vec<u8>, list: &List<'_>) {
    out.extend_from_slice(&(list.len() as u32).to_le_bytes());
    for item in list.iter() {
        put_bytes(out, item);
    }
}

fn put_optional(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            out.push(1);
            put_bytes(out, bytes);
        }
        None => out.push(0),
    }
}

impl<'a> Command<'a> {
    /// Whether it only reads (it may still reclaim expired keys, as every command does).
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Command::Get { .. }
                | Command::Exists { .. }
                | Command::MGet { .. }
                | Command::StrLen { .. }
                | Command::GetRange { .. }
                | Command::Ttl { .. }
                | Command::Keys { .. }
                | Command::Scan { .. }
                | Command::Type { .. }
                | Command::DbSize
        )
    }

    /// Appends its encoding, stamped with `stamp_ms`.
    pub fn encode(&self, stamp_ms: i64, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.extend_from_slice(&stamp_ms.to_le_bytes());
        match *self {
            Command::Get { key } => {
                out.push(opcode::GET);
                put_bytes(out, key);
            }
            Command::Set { key, value, condition, expiry, get } => {
                out.push(opcode::SET);
                put_bytes(out, key);
                put_bytes(out, value);
                out.push(match condition {
                    Condition::Always => 0,
                    Condition::IfAbsent => 1,
                    Condition::IfPresent => 2,
                });
                let (kind, amount) = match expiry {
                    SetExpiry::Clear => (0, 0),
                    SetExpiry::Keep => (1, 0),
                    SetExpiry::In(ms) => (2, ms),
                    SetExpiry::At(ms) => (3, ms),
                };
                out.push(kind);
                out.extend_from_slice(&amount.to_le_bytes());
                out.push(u8::from(get));
            }
            Command::GetSet { key, value }
            | Command::SetNx { key, value }
            | Command::Append { key, value } => {
                out.push(match self {
                    Command::GetSet { .. } => opcode::GETSET,
                    Command::SetNx { .. } => opcode::SETNX,
                    _ => opcode::APPEND,
                });
                put_bytes(out, key);
                put_bytes(out, value);
            }
            Command::Del { keys }
            | Command::Exists { keys }
            | Command::MGet { keys }
            | Command::MSet { pairs: keys } => {
                out.push(match self {
                    Command::Del { .. } => opcode::DEL,
                    Command::Exists { .. } => opcode::EXISTS,
                    Command::MGet { .. } => opcode::MGET,
                    _ => opcode::MSET,
                });
                put_list(out, &keys);
            }
            Command::IncrBy { key, delta } => {
                out.push(opcode::INCRBY);
                put_bytes(out, key);
                out.extend_from_slice(&delta.to_le_bytes());
            }
            Command::StrLen { key } | Command::Persist { key } | Command::Type { key } => {
                out.push(match self {
                    Command::StrLen { .. } => opcode::STRLEN,
                    Command::Persist { .. } => opcode::PERSIST,
                    _ => opcode::TYPE,
                });
                put_bytes(out, key);
            }
            Command::GetRange { key, start, end } => {
                out.push(opcode::GETRANGE);
                put_bytes(out, key);
                out.extend_from_slice(&start.to_le_bytes());
                out.extend_from_slice(&end.to_le_bytes());
            }
            Command::Expire { key, amount, seconds, flags } => {
                out.push(opcode::EXPIRE);
                put_bytes(out, key);
                out.extend_from_slice(&amount.to_le_bytes());
                out.push(u8::from(seconds));
                out.push(flags.0);
            }
            Command::Ttl { key, millis } => {
                out.push(opcode::TTL);
                put_bytes(out, key);
                out.push(u8::from(millis));
            }
            Command::Keys { pattern } => {
                out.push(opcode::KEYS);
                put_bytes(out, pattern);
            }
            Command::Scan { cursor, pattern, count, type_name } => {
                out.push(opcode::SCAN);
                out.extend_from_slice(&cursor.to_le_bytes());
                put_optional(out, pattern);
                out.extend_from_slice(&count.to_le_bytes());
                put_optional(out, type_name);
            }
            Command::DbSize => out.push(opcode::DBSIZE),
            Command::FlushAll => out.push(opcode::FLUSHALL),
        }
    }

    /// Reads an encoded command: its stamp and itself.
    pub fn decode(bytes: &'a [u8]) -> Result<(i64, Command<'a>), DecodeError> {
        let mut reader = Reader { rest: bytes };
        let version = reader.u8().ok_or(DecodeError::Malformed)?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let stamp = reader.i64().ok_or(DecodeError::Malformed)?;
        let code = reader.u8().ok_or(DecodeError::Malformed)?;
        let command = Self::fields(code, &mut reader)?.ok_or(DecodeError::Malformed)?;
        if !reader.rest.is_empty() {
            return Err(DecodeError::Malformed);
        }
        Ok((stamp, command))
    }

    fn fields(code: u8, r: &mut Reader<'a>) -> Result<Option<Command<'a>>, DecodeError> {
        let command = match code {
            opcode::GET => r.bytes().map(|key| Command::Get { key }),
            opcode::SET => (|| {
                let (key, value) = (r.bytes()?, r.bytes()?);
                let condition = match r.u8()? {
                    0 => Condition::Always,
                    1 => Condition::IfAbsent,
                    2 => Condition::IfPresent,
                    _ => return None,
                };
                let (kind, amount) = (r.u8()?, r.i64()?);
                let expiry = match kind {
                    0 => SetExpiry::Clear,
                    1 => SetExpiry::Keep,
                    2 => SetExpiry::In(amount),
                    3 => SetExpiry::At(amount),
                    _ => return None,
                };
                let get = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                Some(Command::Set { key, value, condition, expiry, get })
            })(),
            opcode::GETSET => (|| Some(Command::GetSet { key: r.bytes()?, value: r.bytes()? }))(),
            opcode::SETNX => (|| Some(Command::SetNx { key: r.bytes()?, value: r.bytes()? }))(),
            opcode::APPEND => (|| Some(Command::Append { key: r.bytes()?, value: r.bytes()? }))(),
            opcode::DEL => r.list().map(|keys| Command::Del { keys }),
            opcode::EXISTS => r.list().map(|keys| Command::Exists { keys }),
            opcode::MGET => r.list().map(|keys| Command::MGet { keys }),
            opcode::MSET => {
                r.list().filter(|pairs| pairs.len() % 2 == 0).map(|pairs| Command::MSet { pairs })
            }
            opcode::INCRBY => (|| Some(Command::IncrBy { key: r.bytes()?, delta: r.i64()? }))(),
            opcode::STRLEN => r.bytes().map(|key| Command::StrLen { key }),
            opcode::PERSIST => r.bytes().map(|key| Command::Persist { key }),
            opcode::TYPE => r.bytes().map(|key| Command::Type { key }),
            opcode::GETRANGE => {
                (|| Some(Command::GetRange { key: r.bytes()?, start: r.i64()?, end: r.i64()? }))()
            }
            opcode::EXPIRE => (|| {
                let (key, amount) = (r.bytes()?, r.i64()?);
                let seconds = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                let flags = r.u8().filter(|&flags| flags <= 15)?;
                Some(Command::Expire { key, amount, seconds, flags: ExpireFlags(flags) })
            })(),
            opcode::TTL => (|| {
                let key = r.bytes()?;
                let millis = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                Some(Command::Ttl { key, millis })
            })(),
            opcode::KEYS => r.bytes().map(|pattern| Command::Keys { pattern }),
            opcode::SCAN => (|| {
                let cursor = r.i64()? as u64;
                let pattern = r.optional()?;
                let count = r.i64()? as u64;
                let type_name = r.optional()?;
                Some(Command::Scan { cursor, pattern, count, type_name })
            })(),
            opcode::DBSIZE => Some(Command::DbSize),
            opcode::FLUSHALL => Some(Command::FlushAll),
            other => return Err(DecodeError::Opcode(other)),
        };
        Ok(command)
    }
}

#[cfg(test)]
mod tests;
