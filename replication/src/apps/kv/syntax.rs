//! Requests to [`Command`]s: the KV's command table, arity and option parsing, with the
//! errors Redis 7.0 gives for them, word for word. What only the state can decide (a
//! deadline that overflows once the time is added, a value that is not a number) is left
//! to the state machine.

use crate::apps::kv::command::{Command, Condition, ExpireFlags, List, SetExpiry};
use crate::apps::resp::number::{parse_cursor, parse_i64};
use crate::apps::resp::{reply, Args};
use crate::apps::server::Prepared;

/// The KV's commands (lower case), for COMMAND's replies.
pub const COMMANDS: &[&str] = &[
    "get", "set", "getset", "setnx", "del", "exists", "incr", "incrby", "decr", "decrby", "mget", "mset",
    "append", "strlen", "getrange", "expire", "pexpire", "ttl", "pttl", "persist", "keys", "scan", "type",
    "dbsize", "flushall",
];

const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";

/// `name` in lower case, if it is short enough to be a command's.
pub(crate) fn lower_name(name: &[u8], buffer: &mut [u8; 24]) -> Option<usize> {
    if name.len() > buffer.len() {
        return None;
    }
    for (slot, byte) in buffer.iter_mut().zip(name) {
        *slot = byte.to_ascii_lowercase();
    }
    Some(name.len())
}

/// Redis's arity rule: positive is exact, negative is a minimum.
fn arity_ok(arity: i32, argc: usize) -> bool {
    let argc = argc as i64;
    if arity > 0 {
        argc == i64::from(arity)
    } else {
        argc >= -i64::from(arity)
    }
}

/// `-ERR wrong number of arguments for 'name' command`.
pub fn wrong_arity(out: &mut Vec<u8>, name: &str) {
    reply::error(out, format!("ERR wrong number of arguments for '{name}' command"));
}

fn integer(arg: &[u8]) -> Result<i64, &'static str> {
    parse_i64(arg).ok_or(NOT_INTEGER)
}

/// Turns a request into an encoded command stamped `stamp_ms`, or writes the error.
/// [`Prepared::Unknown`] when the command is not the KV's.
pub fn prepare(args: Args<'_>, stamp_ms: i64, command: &mut Vec<u8>, out: &mut Vec<u8>) -> Prepared {
    let mut name_buffer = [0u8; 24];
    let Some(len) = lower_name(args.get(0), &mut name_buffer) else { return Prepared::Unknown };
    let Ok(name) = std::str::from_utf8(&name_buffer[..len]) else { return Prepared::Unknown };
    let Some(arity) = arity(name) else { return Prepared::Unknown };
    if !arity_ok(arity, args.len()) || (name == "mset" && args.len() % 2 == 0) {
        wrong_arity(out, name);
        return Prepared::Replied;
    }
    match parse(name, args) {
        Ok(parsed) => {
            parsed.encode(stamp_ms, command);
            if parsed.is_read() {
                Prepared::Read
            } else {
                Prepared::Write
            }
        }
        Err(error) => {
            reply::error(out, error);
            Prepared::Replied
        }
    }
}

fn arity(name: &str) -> Option<i32> {
    Some(match name {
        "get" | "incr" | "decr" | "strlen" | "ttl" | "pttl" | "persist" | "keys" | "type" => 2,
        "getset" | "setnx" | "incrby" | "decrby" | "append" => 3,
        "set" | "mset" | "expire" | "pexpire" => -3,
        "del" | "exists" | "mget" | "scan" => -2,
        "getrange" => 4,
        "dbsize" => 1,
        "flushall" => -1,
        _ => return None,
    })
}

/// The command, arity already checked.
fn parse<'a>(name: &str, args: Args<'a>) -> Result<Command<'a>, String> {
    let key = || args.get(1);
    Ok(match name {
        "get" => Command::Get { key: key() },
        "set" => parse_set(args)?,
        "getset" => Command::GetSet { key: key(), value: args.get(2) },
        "setnx" => Command::SetNx { key: key(), value: args.get(2) },
        "del" => Command::Del { keys: List::Args { args, from: 1 } },
        "exists" => Command::Exists { keys: List::Args { args, from: 1 } },
        "mget" => Command::MGet { keys: List::Args { args, from: 1 } },
        "mset" => Command::MSet { pairs: List::Args { args, from: 1 } },
        "incr" => Command::IncrBy { key: key(), delta: 1 },
        "decr" => Command::IncrBy { key: key(), delta: -1 },
        "incrby" => Command::IncrBy { key: key(), delta: integer(args.get(2))? },
        "decrby" => {
            let delta = integer(args.get(2))?;
            if delta == i64::MIN {
                return Err("ERR decrement would overflow".into());
            }
            Command::IncrBy { key: key(), delta: -delta }
        }
        "append" => Command::Append { key: key(), value: args.get(2) },
        "strlen" => Command::StrLen { key: key() },
        "getrange" => {
            let start = integer(args.get(2))?;
            let end = integer(args.get(3))?;
            Command::GetRange { key: key(), start, end }
        }
        "expire" | "pexpire" => {
            let flags = parse_expire_options(args)?;
            let amount = integer(args.get(2))?;
            Command::Expire { key: key(), amount, seconds: name == "expire", flags }
        }
        "ttl" => Command::Ttl { key: key(), millis: false },
        "pttl" => Command::Ttl { key: key(), millis: true },
        "persist" => Command::Persist { key: key() },
        "keys" => Command::Keys { pattern: key() },
        "scan" => parse_scan(args)?,
        "type" => Command::Type { key: key() },
        "dbsize" => Command::DbSize,
        "flushall" => {
            if args.len() > 2 {
                return Err(SYNTAX.into());
            }
            if args.len() == 2 && !is(args.get(1), "async") && !is(args.get(1), "sync") {
                return Err(SYNTAX.into());
            }
            Command::FlushAll
        }
        other => unreachable!("{other} has an arity but no parser"),
    })
}

fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// SET's options, in Redis's `parseExtendedStringArgumentsOrReply` order and rules: NX/XX
/// exclusive, one of EX/PX/EXAT/PXAT/KEEPTTL (the same one may repeat, the last wins),
/// then the expiry's number.
fn parse_set<'a>(args: Args<'a>) -> Result<Command<'a>, String> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Unit {
        Ex,
        Px,
        ExAt,
        PxAt,
    }
    let (mut condition, mut get, mut keep) = (Condition::Always, false, false);
    let mut expire: Option<(Unit, &[u8])> = None;
    let mut index = 3;
    while index < args.len() {
        let option = args.get(index);
        let next = (index + 1 < args.len()).then(|| args.get(index + 1));
        let unit_set = |unit: Unit| expire.is_some_and(|(set, _)| set != unit);
        if is(option, "nx") && condition != Condition::IfPresent {
            condition = Condition::IfAbsent;
        } else if is(option, "xx") && condition != Condition::IfAbsent {
            condition = Condition::IfPresent;
        } else if is(option, "get") {
            get = true;
        } else if is(option, "keepttl") && expire.is_none() {
            keep = true;
        } else if let (Some(unit), Some(next)) = (
            [("ex", Unit::Ex), ("px", Unit::Px), ("exat", Unit::ExAt), ("pxat", Unit::PxAt)]
                .into_iter()
                .find(|(word, _)| is(option, word))
                .map(|(_, unit)| unit),
            next,
        ) {
            if keep || unit_set(unit) {
                return Err(SYNTAX.into());
            }
            expire = Some((unit, next));
            index += 1;
        } else {
            return Err(SYNTAX.into());
        }
        index += 1;
    }
    let expiry = match expire {
        None if keep => SetExpiry::Keep,
        None => SetExpiry::Clear,
        Some((unit, amount)) => {
            let amount = integer(amount)?;
            let seconds = matches!(unit, Unit::Ex | Unit::ExAt);
            if amount <= 0 || (seconds && amount > i64::MAX / 1000) {
                return Err("ERR invalid expire time in 'set' command".into());
            }
            let ms = if seconds { amount * 1000 } else { amount };
            match unit {
                Unit::Ex | Unit::Px => SetExpiry::In(ms),
                Unit::ExAt | Unit::PxAt => SetExpiry::At(ms),
            }
        }
    };
    Ok(Command::Set { key: args.get(1), value: args.get(2), condition, expiry, get })
}

/// EXPIRE's NX/XX/GT/LT, as Redis's `parseExtendedExpireArgumentsOrReply`.
fn parse_expire_options(args: Args<'_>) -> Result<ExpireFlags, String> {
    let mut flags = 0;
    for option in args.iter_from(3) {
        flags |= match () {
            _ if is(option, "nx") => ExpireFlags::NX,
            _ if is(option, "xx") => ExpireFlags::XX,
            _ if is(option, "gt") => ExpireFlags::GT,
            _ if is(option, "lt") => ExpireFlags::LT,
            _ => return Err(format!("ERR Unsupported option {}", String::from_utf8_lossy(c_string(option)))),
        };
    }
    let flags = ExpireFlags(flags);
    if flags.has(ExpireFlags::NX) && flags.0 != ExpireFlags::NX {
        return Err("ERR NX and XX, GT or LT options at the same time are not compatible".into());
    }
    if flags.has(ExpireFlags::GT) && flags.has(ExpireFlags::LT) {
        return Err("ERR GT and LT options at the same time are not compatible".into());
    }
    Ok(flags)
}

/// An argument as C's `%s` prints it: up to its first NUL.
pub(crate) fn c_string(arg: &[u8]) -> &[u8] {
    let end = arg.iter().position(|&byte| byte == 0).unwrap_or(arg.len());
    &arg[..end]
}

fn parse_scan<'a>(args: Args<'a>) -> Result<Command<'a>, String> {
    let cursor = parse_cursor(args.get(1)).ok_or("ERR invalid cursor")?;
    let (mut pattern, mut count, mut type_name) = (None, 10u64, None);
    let mut index = 2;
    while index < args.len() {
        let option = args.get(index);
        let has_value = index + 1 < args.len();
        if is(option, "count") && has_value {
            let value = integer(args.get(index + 1))?;
            if value < 1 {
                return Err(SYNTAX.into());
            }
            count = value as u64;
        } else if is(option, "match") && has_value {
            let value = args.get(index + 1);
            pattern = (value != b"*").then_some(value);
        } else if is(option, "type") && has_value {
            type_name = Some(args.get(index + 1));
        } else {
            return Err(SYNTAX.into());
        }
        index += 2;
    }
    Ok(Command::Scan { cursor, pattern, count, type_name })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(words: &[&str]) -> (Prepared, String) {
        let bytes: Vec<u8> = words.concat().into_bytes();
        let mut ranges = Vec::new();
        let mut at = 0;
        for word in words {
            ranges.push(at..at + word.len());
            at += word.len();
        }
        let (mut command, mut out) = (Vec::new(), Vec::new());
        let prepared = prepare(Args::new(&bytes, &ranges), 0, &mut command, &mut out);
        (prepared, String::from_utf8(out).unwrap())
    }

    #[test]
    fn errors_before_the_log() {
        assert_eq!(run(&["GET"]).1, "-ERR wrong number of arguments for 'get' command\r\n");
        assert_eq!(run(&["mset", "a", "b", "c"]).1, "-ERR wrong number of arguments for 'mset' command\r\n");
        assert_eq!(run(&["set", "a", "b", "ex"]).1, "-ERR syntax error\r\n");
        assert_eq!(run(&["set", "a", "b", "ex", "0"]).1, "-ERR invalid expire time in 'set' command\r\n");
        assert_eq!(run(&["set", "a", "b", "px", "x"]).1, "-ERR value is not an integer or out of range\r\n");
        assert_eq!(run(&["set", "a", "b", "nx", "xx"]).1, "-ERR syntax error\r\n");
        assert_eq!(run(&["decrby", "a", "-9223372036854775808"]).1, "-ERR decrement would overflow\r\n");
        assert_eq!(run(&["expire", "a", "1", "bogus"]).1, "-ERR Unsupported option bogus\r\n");
        assert_eq!(run(&["scan", "x"]).1, "-ERR invalid cursor\r\n");
        assert_eq!(run(&["scan", "0", "count", "0"]).1, "-ERR syntax error\r\n");
        assert_eq!(run(&["nosuch"]).0, Prepared::Unknown);
        assert_eq!(run(&["GET", "k"]).0, Prepared::Read);
        assert_eq!(run(&["SeT", "k", "v", "EX", "5", "GET"]).0, Prepared::Write);
    }
}
