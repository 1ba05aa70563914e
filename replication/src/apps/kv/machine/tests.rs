use proptest::prelude::*;

use super::*;
use crate::apps::kv::command::List;
use crate::apps::resp::Args;
use crate::apps::server::Prepared;

/// Runs `line` (words split on spaces) at `stamp`: the reply.
fn run(machine: &mut KvMachine, line: &str, stamp: i64) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    let bytes = words.concat();
    let mut ranges = Vec::new();
    let mut at = 0;
    for word in &words {
        ranges.push(at..at + word.len());
        at += word.len();
    }
    let (mut command, mut reply) = (Vec::new(), Vec::new());
    let prepared = crate::apps::kv::syntax::prepare(
        Args::new(bytes.as_bytes(), &ranges),
        stamp,
        &mut command,
        &mut reply,
    );
    if matches!(prepared, Prepared::Read | Prepared::Write) {
        machine.apply(&command, &mut reply);
    }
    String::from_utf8(reply).unwrap()
}

#[test]
fn expiry_follows_the_stamps_only() {
    let mut machine = KvMachine::new();
    assert_eq!(run(&mut machine, "SET k v PX 100", 1_000), "+OK\r\n");
    assert_eq!(run(&mut machine, "PTTL k", 1_040), ":60\r\n");
    assert_eq!(run(&mut machine, "TTL k", 1_040), ":0\r\n");
    assert_eq!(run(&mut machine, "GET k", 1_099), "$1\r\nv\r\n");
    assert_eq!(run(&mut machine, "GET k", 1_100), "$-1\r\n");
    // A stamp from behind (a new leader whose clock is late) does not bring it back.
    assert_eq!(run(&mut machine, "GET k", 500), "$-1\r\n");
    assert_eq!(machine.clock_ms(), 1_100);
}

#[test]
fn reads_never_change_the_state() {
    let mut machine = KvMachine::new();
    run(&mut machine, "SET k v PX 10", 0);
    let before = machine.clone();
    let mut command = Vec::new();
    Command::Get { key: b"k" }.encode(50, &mut command);
    let mut reply = Vec::new();
    machine.read(&command, &mut reply);
    assert_eq!(reply, b"$-1\r\n");
    assert_eq!(machine, before, "a stale read removed an expired key");
    reply.clear();
    let mut write = Vec::new();
    Command::Del { keys: List::Encoded { count: 0, bytes: &[] } }.encode(0, &mut write);
    machine.read(&write, &mut reply);
    assert!(reply.starts_with(b"-READONLY"));
}

#[test]
fn redis_semantics() {
    let mut m = KvMachine::new();
    let cases: &[(&str, &str)] = &[
        ("SET a 1 GET", "$-1\r\n"),
        ("SET a 2 NX", "$-1\r\n"),
        ("SET a 3 XX GET", "$1\r\n1\r\n"),
        ("INCRBY a 5", ":8\r\n"),
        ("SET n 9223372036854775807", "+OK\r\n"),
        ("INCR n", "-ERR increment or decrement would overflow\r\n"),
        ("APPEND a xy", ":3\r\n"),
        ("INCR a", "-ERR value is not an integer or out of range\r\n"),
        ("GETRANGE a 0 -1", "$3\r\n8xy\r\n"),
        ("GETRANGE a -1 -2", "$0\r\n\r\n"),
        ("GETRANGE missing 0 5", "$0\r\n\r\n"),
        ("STRLEN a", ":3\r\n"),
        ("EXPIRE a 100 GT", ":0\r\n"),
        ("EXPIRE a 100 LT", ":1\r\n"),
        ("TTL a", ":100\r\n"),
        ("EXPIRE a 50 GT", ":0\r\n"),
        ("PERSIST a", ":1\r\n"),
        ("PERSIST a", ":0\r\n"),
        ("EXPIRE a -1", ":1\r\n"),
        ("EXISTS a n n", ":2\r\n"),
        ("MSET x 1 y 2", "+OK\r\n"),
        ("MGET x nope y", "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n"),
        ("DEL x y nope", ":2\r\n"),
        ("SETNX n 0", ":0\r\n"),
        ("GETSET n 5", "$19\r\n9223372036854775807\r\n"),
        ("TYPE n", "+string\r\n"),
        ("TYPE nope", "+none\r\n"),
        ("DBSIZE", ":1\r\n"),
        ("KEYS *", "*1\r\n$1\r\nn\r\n"),
        ("SCAN 0 MATCH n TYPE string", "*2\r\n$1\r\n0\r\n*1\r\n$1\r\nn\r\n"),
        ("FLUSHALL", "+OK\r\n"),
        ("DBSIZE", ":0\r\n"),
        ("EXPIRE n 9223372036854775", "-ERR invalid expire time in 'expire' command\r\n"),
    ];
    for (line, reply) in cases {
        assert_eq!(run(&mut m, line, 1_000), *reply, "{line}");
    }
}

#[test]
fn a_corrupt_command_gets_an_error_reply() {
    let mut machine = KvMachine::new();
    let mut reply = Vec::new();
    machine.apply(&[1, 2, 3], &mut reply);
    assert_eq!(reply, b"-ERR corrupt command in the log: malformed fields\r\n");
}

fn line() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec!["a", "b", "c"]);
    let op = prop::sample::select(vec![
        "SET {} v",
        "SET {} 5 PX 30",
        "SET {} w EX 1 NX",
        "INCR {}",
        "APPEND {} z",
        "EXPIRE {} 1",
        "PEXPIRE {} 20",
        "PERSIST {}",
        "DEL {}",
        "GETSET {} 1",
        "SET {} q KEEPTTL XX",
    ]);
    (op, key).prop_map(|(op, key)| op.replace("{}", key))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A snapshot taken anywhere restores to the same state (deadlines and the clock
    /// included), which then answers and evolves the same.
    #[test]
    fn snapshots_carry_everything(lines in prop::collection::vec((line(), 0i64..40), 1..40), split in any::<prop::sample::Index>()) {
        let at = split.index(lines.len());
        let mut machine = KvMachine::new();
        let mut stamp = 0;
        for (line, step) in &lines[..at] {
            stamp += step;
            run(&mut machine, line, stamp);
        }
        let snapshot = machine.snapshot();
        let mut restored = KvMachine::new();
        restored.restore(&snapshot).unwrap();
        prop_assert_eq!(&restored, &machine);
        for (line, step) in &lines[at..] {
            stamp += step;
            prop_assert_eq!(run(&mut machine, line, stamp), run(&mut restored, line, stamp));
        }
        prop_assert_eq!(restored.snapshot(), machine.snapshot());
        for cut in 0..snapshot.len() {
            prop_assert!(KvMachine::new().restore(&snapshot[..cut]).is_err());
        }
    }
}
