//! Mu replicas as processes on the soft provider (one host, one shared-memory fabric): a
//! leader SIGSTOPped and resumed, a follower SIGKILLed and a fresh process rejoining in its
//! place, a leader SIGKILLed. Every replica runs a client; at the end no acknowledged
//! command may be missing from any replica's history. See [`common::crash_scenario`].
//! The same group on membership views: a follower replaced by a fresh process that
//! regains its vote, then the leader killed ([`common::views_replacement_scenario`]).

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::group::{Launcher, Limits};
use common::{crash_scenario, views_replacement_scenario};

fn soft_launcher() -> Launcher {
    let fabric = format!("soft:mu-node-{}-{}", std::process::id(), rand_suffix());
    Launcher {
        label: "soft",
        command: Box::new(move |_| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_usec-mu-node"));
            command.args(["--device", &fabric]);
            command
        }),
        listen: Box::new(|_| SocketAddr::from(([127, 0, 0, 1], 0))),
        // Three replicas and their clients share the machine's cores (two, in CI) with the
        // rest of the test run: cooperative threads, heartbeats read every millisecond and
        // 8 misses to a suspicion, so that a node descheduled for a few milliseconds is
        // not taken for dead. The client pauses so that the history stays small; the log
        // ring is small, so that a replica restarted fresh is brought back by a snapshot.
        args: [
            "--capacity",
            "64",
            "--pacing",
            "cooperative",
            "--heartbeat-period-us",
            "1000",
            "--suspect-after",
            "8",
            "--client-pause-us",
            "300",
        ]
        .map(String::from)
        .to_vec(),
        limits: Limits {
            answer: Duration::from_secs(20),
            ready: Duration::from_secs(30),
            leader: Duration::from_secs(20),
            progress: Duration::from_secs(20),
            step_down: Duration::from_secs(20),
            catch_up: Duration::from_secs(30),
            converge: Duration::from_secs(20),
            poll: Duration::from_millis(2),
        },
    }
}

/// A suffix that keeps two runs of this test apart on one machine.
fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        % 1_000_000_007
}

#[test]
fn a_stopped_leader_steps_down_a_crashed_follower_rejoins_a_killed_leader_is_replaced() {
    crash_scenario(soft_launcher());
}

#[test]
fn on_views_a_replaced_follower_votes_again_and_outlives_the_leader() {
    let mut launcher = soft_launcher();
    // A lease of milliseconds: the replicas share loaded cores (as in usec-kv's tests).
    launcher.args.extend(["--views", "--lease-us", "2000", "--view-scan-us", "200"].map(String::from));
    views_replacement_scenario(launcher);
}
