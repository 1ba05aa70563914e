//! A replica that lost its process comes back with `--rejoin`, whatever its id: it joins
//! the running group (dialing its peers, lower ids too, which finished their own start
//! long ago), is caught up, and serves what was written while it was away.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Group};

#[test]
fn a_killed_follower_of_any_id_rejoins_and_catches_up() {
    let mut group = Group::start("rejoin", 3);
    let leader = group.leader();
    for id in (0..3).filter(|&id| id != leader) {
        let mut client = Client::connect(group.ports[leader]);
        assert_eq!(client.request(&["SET", "before", &id.to_string()]), b"+OK\r\n");
        group.replicas[id].0.kill().unwrap();
        group.replicas[id].0.wait().unwrap();
        // Two of three still decide.
        assert_eq!(client.request(&["SET", "away", &id.to_string()]), b"+OK\r\n");
        group.restart(id);
        let mut rejoined = Client::connect(group.ports[id]);
        assert_eq!(rejoined.request(&["READONLY"]), b"+OK\r\n");
        let deadline = Instant::now() + Duration::from_secs(30);
        let expected = format!("$1\r\n{id}\r\n").into_bytes();
        while rejoined.request(&["GET", "away"]) != expected {
            assert!(
                Instant::now() < deadline,
                "replica {id} never applied what was written while it was away"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(rejoined.request(&["GET", "before"]), expected);
    }
}
