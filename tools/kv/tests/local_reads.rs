//! Reads on membership views (`--views`), from outside: the leader answers GETs from its
//! own state while its Active(view) lease holds (INFO's `local_reads` counts them), a
//! follower sends its clients to the leader, and a group without views never reads
//! locally. (That a lease run out sends reads through the log is the front end's unit
//! test, `apps::server::mu`; that no local read is stale, `tests/faults` and the
//! replication crate's `views_vopr`.)

mod common;

use common::{Client, Group};

/// INFO replication's `field` on the replica at `port`.
fn info(port: u16, field: &str) -> String {
    let text = String::from_utf8(Client::connect(port).request(&["INFO", "replication"])).unwrap();
    let prefix = format!("{field}:");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {field} in {text}"))
        .to_string()
}

fn count(port: u16, field: &str) -> u64 {
    info(port, field).parse().unwrap()
}

#[test]
fn the_leader_of_a_view_answers_gets_locally_and_followers_redirect_them() {
    // A lease of 2 ms: on two shared cores most reads find it active (with 20 µs, a
    // replica thread that waited for a core has often let it lapse: those reads go
    // through the log, which is correct but not what this test looks at).
    let group = Group::start_with("local-reads", 3, &["--views", "--lease-us", "2000"]);
    let leader = group.leader();
    // The lowest id of the first view leads.
    assert_eq!(leader, 0);
    let mut client = Client::connect(group.ports[leader]);
    assert_eq!(client.request(&["SET", "k", "v"]), b"+OK\r\n");
    assert_eq!(info(group.ports[leader], "usec_local_reads"), "leases");
    let (local_before, log_before) =
        (count(group.ports[leader], "local_reads"), count(group.ports[leader], "log_reads"));
    const READS: u64 = 200;
    for _ in 0..READS {
        assert_eq!(client.request(&["GET", "k"]), b"$1\r\nv\r\n");
    }
    assert_eq!(client.request(&["EXISTS", "k", "nothing"]), b":1\r\n");
    let local = count(group.ports[leader], "local_reads") - local_before;
    let log = count(group.ports[leader], "log_reads") - log_before;
    println!("of {} reads, {local} answered locally, {log} through the log", READS + 1);
    assert_eq!(local + log, READS + 1, "every read was answered one way or the other");
    assert!(local > 0, "no read was answered locally");
    // A write still goes through the log, and a read right after sees it.
    assert_eq!(client.request(&["SET", "k", "w"]), b"+OK\r\n");
    assert_eq!(client.request(&["GET", "k"]), b"$1\r\nw\r\n");

    for follower in (0..3).filter(|&id| id != leader) {
        let port = group.ports[follower];
        let reply = Client::connect(port).request(&["GET", "k"]);
        let moved = format!("-MOVED 0 127.0.0.1:{}\r\n", group.ports[leader]);
        assert_eq!(String::from_utf8_lossy(&reply), moved, "replica {follower}");
        assert_eq!(count(port, "local_reads"), 0, "follower {follower} answered a read locally");
    }
}

#[test]
fn without_views_every_read_goes_through_the_log() {
    let group = Group::start("log-reads", 3);
    let leader = group.leader();
    let port = group.ports[leader];
    let mut client = Client::connect(port);
    assert_eq!(client.request(&["SET", "k", "v"]), b"+OK\r\n");
    for _ in 0..20 {
        assert_eq!(client.request(&["GET", "k"]), b"$1\r\nv\r\n");
    }
    assert_eq!(info(port, "usec_local_reads"), "off");
    assert_eq!(count(port, "local_reads"), 0);
    assert_eq!(count(port, "log_reads"), 20);
}
