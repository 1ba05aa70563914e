//! usec-kv against Debian's redis-server: the same requests, the same reply bytes —
//! unreplicated and on a 3-replica group — and redis-cli and redis-benchmark driving it.

mod common;

use common::script::{normalise, script, Compare};
use common::{kv_unreplicated, redis_cli, redis_server, Client, Group};

/// Runs the script against both; every difference, listed.
fn compare(kv_port: u16, redis_port: u16) {
    let (mut kv, mut redis) = (Client::connect(kv_port), Client::connect(redis_port));
    // The client ids differ between the servers: HELLO and CLIENT ID replies carry them.
    let kv_id = String::from_utf8(kv.request(&["CLIENT", "ID"])).unwrap();
    let redis_id = String::from_utf8(redis.request(&["CLIENT", "ID"])).unwrap();
    let mut differences = Vec::new();
    for (request, compare) in script() {
        let scan = request[0] == "SCAN";
        let ours = normalise(&kv.request(&request), compare, scan);
        let theirs = normalise(&redis.request(&request), compare, scan);
        let theirs = String::from_utf8_lossy(&theirs).replace(&redis_id, &kv_id);
        let ours = String::from_utf8_lossy(&ours).into_owned();
        if ours != theirs {
            differences.push(format!("{request:?}\n  usec-kv: {ours:?}\n  redis:   {theirs:?}"));
        }
    }
    assert!(differences.is_empty(), "{} differences:\n{}", differences.len(), differences.join("\n"));
}

#[test]
fn unreplicated_replies_as_redis_does() {
    let (_redis, redis_port) = redis_server();
    let (_kv, kv_port) = kv_unreplicated();
    compare(kv_port, redis_port);
}

#[test]
fn replicated_replies_as_redis_does_and_followers_redirect() {
    let (_redis, redis_port) = redis_server();
    let group = Group::start("compat", 3);
    let leader = group.leader();
    compare(group.ports[leader], redis_port);

    // A follower sends writes and reads to the leader; redis-cli -c follows.
    let follower = (leader + 1) % 3;
    let moved =
        String::from_utf8(Client::connect(group.ports[follower]).request(&["SET", "f", "1"])).unwrap();
    assert_eq!(moved, format!("-MOVED 0 127.0.0.1:{}\r\n", group.ports[leader]));
    let output = redis_cli(group.ports[follower], &["-c", "SET", "f", "via-follower"]);
    assert_eq!(output.trim(), "OK", "redis-cli -c: {output}");
    let output = redis_cli(group.ports[follower], &["-c", "GET", "f"]);
    assert_eq!(output.trim(), "via-follower", "redis-cli -c: {output}");

    // READONLY: the follower answers from its own state, which catches up with the log.
    let mut stale = Client::connect(group.ports[follower]);
    assert_eq!(stale.request(&["READONLY"]), b"+OK\r\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if stale.request(&["GET", "f"]) == b"$12\r\nvia-follower\r\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the follower never applied the write");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(stale.request(&["SET", "f", "2"]).starts_with(b"-MOVED"), "writes still go to the leader");

    // INFO says who leads and how far the log is applied.
    let info =
        String::from_utf8(Client::connect(group.ports[follower]).request(&["INFO", "replication"])).unwrap();
    assert!(info.contains(&format!("leader_id:{leader}")), "{info}");
    assert!(info.contains(&format!("leader_address:127.0.0.1:{}", group.ports[leader])), "{info}");
    assert!(info.contains("applied_index:"), "{info}");
}

#[test]
fn redis_cli_sees_the_same_as_with_redis() {
    let (_redis, redis_port) = redis_server();
    let (_kv, kv_port) = kv_unreplicated();
    let commands: &[&[&str]] = &[
        &["SET", "a", "1"],
        &["GET", "a"],
        &["INCR", "a"],
        &["MGET", "a", "nokey"],
        &["GET", "a", "b"],
        &["NOSUCH"],
        &["--scan"],
        &["TTL", "a"],
        &["COMMAND", "COUNT"],
    ];
    for command in commands {
        let ours = redis_cli(kv_port, command);
        let theirs = redis_cli(redis_port, command);
        if *command == ["COMMAND", "COUNT"] {
            continue; // redis has hundreds of commands
        }
        assert_eq!(ours, theirs, "redis-cli {command:?}");
    }
}

#[test]
fn inline_and_pipelined_requests() {
    let (_redis, redis_port) = redis_server();
    let (_kv, kv_port) = kv_unreplicated();
    let stream =
        b"SET x \"a b\"\r\nGET x\r\n*2\r\n$3\r\nGET\r\n$1\r\nx\r\nPING\nECHO 'q\\'t'\r\n\r\nDEL x\r\n";
    let mut replies = Vec::new();
    for port in [kv_port, redis_port] {
        let mut client = Client::connect(port);
        // Cut into single bytes: each partial frame must wait for the rest.
        for byte in stream.iter() {
            client.send(&[*byte]);
        }
        replies.push((0..6).map(|_| client.reply()).collect::<Vec<_>>());
    }
    assert_eq!(replies[0], replies[1]);
    let _ = Compare::Exact;
}
