//! The comparison script: every command usec-kv serves and the errors Redis gives for
//! them, run against redis-server and usec-kv, replies compared byte for byte.

use usec_replication::apps::resp::scan::split_replies;

/// How replies are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// Byte for byte.
    Exact,
    /// The same elements in any order (KEYS; SCAN's key list): key order is each
    /// server's own.
    Unordered,
}

/// (request, comparison). Keys are set before they are listed; no reply depends on time
/// beyond a second's rounding.
pub fn script() -> Vec<(Vec<&'static str>, Compare)> {
    use Compare::*;
    let lines: &[(&str, Compare)] = &[
        ("FLUSHALL", Exact),
        ("PING", Exact),
        ("PING hello", Exact),
        ("PING a b", Exact),
        ("ECHO hi", Exact),
        ("ECHO", Exact),
        ("GET", Exact),
        ("GET nokey", Exact),
        ("SET", Exact),
        ("SET k", Exact),
        ("SET k v", Exact),
        ("GET k", Exact),
        ("SET k v2 GET", Exact),
        ("SET k v3 NX", Exact),
        ("SET k v3 XX", Exact),
        ("SET new v XX", Exact),
        ("SET new v NX GET", Exact),
        ("SET k v NX XX", Exact),
        ("SET k v EX", Exact),
        ("SET k v EX 0", Exact),
        ("SET k v EX -5", Exact),
        ("SET k v EX abc", Exact),
        ("SET k v PX 1.5", Exact),
        ("SET k v EX 10 PX 10", Exact),
        ("SET k v KEEPTTL EX 10", Exact),
        ("SET k v EX 9223372036854775807", Exact),
        ("SET k v BOGUS", Exact),
        ("SET k v EX 100", Exact),
        ("TTL k", Exact),
        ("SET k v2 KEEPTTL", Exact),
        ("TTL k", Exact),
        ("SET k v3", Exact),
        ("TTL k", Exact),
        ("SET k v EXAT 99999999999", Exact),
        ("TTL k", Exact),
        ("SET k v PXAT 1", Exact),
        ("GET k", Exact),
        ("GETSET", Exact),
        ("GETSET g 1", Exact),
        ("GETSET g 2", Exact),
        ("SETNX g 3", Exact),
        ("SETNX h 3", Exact),
        ("SETNX h", Exact),
        ("DEL", Exact),
        ("DEL g h nokey g", Exact),
        ("EXISTS", Exact),
        ("SET e 1", Exact),
        ("EXISTS e e nokey", Exact),
        ("INCR", Exact),
        ("INCR n", Exact),
        ("INCRBY n 10", Exact),
        ("INCRBY n x", Exact),
        ("INCRBY n 1 2", Exact),
        ("DECR n", Exact),
        ("DECRBY n 5", Exact),
        ("DECRBY n -9223372036854775808", Exact),
        ("SET n 9223372036854775807", Exact),
        ("INCR n", Exact),
        ("SET n -9223372036854775808", Exact),
        ("DECR n", Exact),
        ("SET s abc", Exact),
        ("INCR s", Exact),
        ("SET s 012", Exact),
        ("INCR s", Exact),
        ("SET s \" 1\"", Exact),
        ("MGET", Exact),
        ("MGET e nokey s", Exact),
        ("MSET", Exact),
        ("MSET a", Exact),
        ("MSET a 1 b", Exact),
        ("MSET a 1 b 2", Exact),
        ("MGET a b", Exact),
        ("APPEND", Exact),
        ("APPEND ap hello", Exact),
        ("APPEND ap \" world\"", Exact),
        ("GET ap", Exact),
        ("STRLEN ap", Exact),
        ("STRLEN nokey", Exact),
        ("STRLEN", Exact),
        ("GETRANGE ap 0 4", Exact),
        ("GETRANGE ap -5 -1", Exact),
        ("GETRANGE ap 5 2", Exact),
        ("GETRANGE ap -1 -5", Exact),
        ("GETRANGE ap 0 100", Exact),
        ("GETRANGE ap -100 2", Exact),
        ("GETRANGE nokey 0 1", Exact),
        ("GETRANGE ap x 1", Exact),
        ("GETRANGE ap 0", Exact),
        ("EXPIRE", Exact),
        ("EXPIRE ap", Exact),
        ("EXPIRE nokey 10", Exact),
        ("EXPIRE ap x", Exact),
        ("EXPIRE ap 100 NX XX", Exact),
        ("EXPIRE ap 100 GT LT", Exact),
        ("EXPIRE ap 100 BOGUS", Exact),
        ("EXPIRE ap 100 XX", Exact),
        ("EXPIRE ap 100 GT", Exact),
        ("EXPIRE ap 100 NX", Exact),
        ("TTL ap", Exact),
        ("EXPIRE ap 50 GT", Exact),
        ("EXPIRE ap 200 GT", Exact),
        ("EXPIRE ap 300 LT", Exact),
        ("EXPIRE ap 100 LT", Exact),
        ("EXPIRE ap 100 XX LT", Exact),
        ("TTL ap", Exact),
        ("PEXPIRE ap 100000", Exact),
        ("PTTL nokey", Exact),
        ("PTTL a", Exact),
        ("EXPIRE ap 9223372036854775807", Exact),
        ("PEXPIRE ap 9223372036854775807", Exact),
        ("EXPIRE ap -9223372036854775808", Exact),
        ("PERSIST", Exact),
        ("PERSIST ap", Exact),
        ("PERSIST ap", Exact),
        ("TTL ap", Exact),
        ("PERSIST nokey", Exact),
        ("EXPIRE ap 0", Exact),
        ("GET ap", Exact),
        ("TTL", Exact),
        ("TTL a b", Exact),
        ("KEYS", Exact),
        ("KEYS *", Unordered),
        ("KEYS ?", Unordered),
        ("KEYS [ab]", Unordered),
        ("KEYS *e*", Unordered),
        ("KEYS nomatch*", Exact),
        ("SCAN", Exact),
        ("SCAN x", Exact),
        ("SCAN 0 COUNT 0", Exact),
        ("SCAN 0 COUNT x", Exact),
        ("SCAN 0 COUNT", Exact),
        ("SCAN 0 BOGUS 1", Exact),
        ("SCAN 0 COUNT 1000", Unordered),
        ("SCAN 0 COUNT 1000 MATCH a*", Unordered),
        ("SCAN 0 COUNT 1000 TYPE string", Unordered),
        ("SCAN 0 COUNT 1000 TYPE list", Unordered),
        ("TYPE a", Exact),
        ("TYPE nokey", Exact),
        ("TYPE", Exact),
        ("DBSIZE", Exact),
        ("DBSIZE x", Exact),
        ("SELECT 0", Exact),
        ("SELECT 1", Exact),
        ("SELECT x", Exact),
        ("SELECT", Exact),
        ("HELLO 2", Exact),
        ("HELLO x", Exact),
        ("HELLO 4", Exact),
        ("HELLO 2 SETNAME", Exact),
        ("HELLO 2 SETNAME me", Exact),
        ("CLIENT GETNAME", Exact),
        ("CLIENT SETNAME", Exact),
        ("CLIENT SETNAME \"a b\"", Exact),
        ("CLIENT SETNAME other", Exact),
        ("CLIENT GETNAME", Exact),
        ("CLIENT SETNAME \"\"", Exact),
        ("CLIENT GETNAME", Exact),
        ("CLIENT GETNAME x", Exact),
        ("CLIENT BOGUS", Exact),
        ("CLIENT", Exact),
        ("COMMAND COUNT x", Exact),
        ("COMMAND BOGUS", Exact),
        ("COMMAND INFO get set nosuch", Exact),
        ("COMMAND DOCS get mset", Exact),
        ("CONFIG GET save", Exact),
        ("CONFIG GET appendonly", Exact),
        ("CONFIG GET", Exact),
        ("NOSUCH", Exact),
        ("NOSUCH a b", Exact),
        ("FLUSHALL BOGUS", Exact),
        ("FLUSHALL SYNC extra", Exact),
        ("FLUSHALL ASYNC", Exact),
        ("DBSIZE", Exact),
        ("get lower", Exact),
        ("SeT MiXeD case", Exact),
        ("GET MiXeD", Exact),
    ];
    lines.iter().map(|(line, compare)| (split(line), *compare)).collect()
}

/// Splits on spaces, keeping `"…"` together (quotes dropped).
fn split(line: &'static str) -> Vec<&'static str> {
    let mut words = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').expect("closed quote");
            words.push(&quoted[..end]);
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            words.push(&rest[..end]);
            rest = rest[end..].trim_start();
        }
    }
    words
}

/// A reply made comparable: for [`Compare::Unordered`], the bulks of its key list sorted
/// (`scan`: the list is the second element, after the cursor).
pub fn normalise(reply: &[u8], compare: Compare, scan: bool) -> Vec<u8> {
    if compare == Compare::Exact || reply.starts_with(b"-") {
        return reply.to_vec();
    }
    let header_end = |bytes: &[u8]| bytes.windows(2).position(|pair| pair == b"\r\n").unwrap() + 2;
    let mut prefix = Vec::new();
    let mut rest = reply;
    if scan {
        let (replies, _) = split_replies(&reply[4..]).unwrap();
        prefix.extend_from_slice(&reply[..4 + replies[0].len()]);
        rest = &reply[4 + replies[0].len()..];
    }
    let end = header_end(rest);
    prefix.extend_from_slice(&rest[..end]);
    let (mut items, _) = split_replies(&rest[end..]).unwrap();
    items.sort();
    for item in items {
        prefix.extend_from_slice(item);
    }
    prefix
}
