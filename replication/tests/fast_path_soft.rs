//! The leader's fast path on the soft provider, whose WRITEs complete as they are posted
//! (as `mu-latency` runs it): three replicas bootstrapped in threads of this process, then
//! turned by the test's thread, one turn at a time, so what a single turn of the leader
//! does can be seen.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use usec_lease_clock::clock::{Clock, MonotonicClock};
use usec_lease_clock::detector::ScoreConfig;
use usec_lease_clock::heartbeat::ReaderConfig;
use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId, TcpNetwork};
use usec_replication::cft::{Event, MuConfig, RoleKind};
use usec_replication::driver::{DetectorConfig, MuDriver};
use usec_replication::log::CommandId;
use usec_replication::History;
use usec_verbs::Context;

fn config() -> MuConfig {
    MuConfig { capacity: 64, pipeline: 8, slot_bytes: 512, snapshot_bytes: 1 << 16, ..MuConfig::default() }
}

/// Three bootstrapped drivers (node 0 first), none turned yet.
fn start(device: &str, config: &MuConfig) -> Vec<MuDriver<History>> {
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let nodes = listeners
        .iter()
        .enumerate()
        .map(|(id, listener)| (NodeId::new(id as u16).unwrap(), listener.local_addr().unwrap()));
    let spec = ClusterSpec::new("fast-path", &ClusterSpec::fresh_run(), nodes).unwrap();
    // Slow detectors: one thread turns all three replicas, on a machine others share.
    let detectors = DetectorConfig {
        reader: ReaderConfig { period_ns: 1_000_000, timeout_ns: 10_000_000 },
        score: ScoreConfig { score_max: 10, ..ScoreConfig::default() },
        bump_period_ns: 250_000,
    };
    std::thread::scope(|scope| {
        let threads: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(id, listener)| {
                let spec = spec.clone();
                scope.spawn(move || {
                    let context = Context::open(device).unwrap();
                    let node = NodeConfig::new(spec, NodeId::new(id as u16).unwrap());
                    let node = MuDriver::<History>::configure(node, config).unwrap();
                    let network = TcpNetwork::from_listener(listener).unwrap();
                    let cluster = Cluster::bootstrap_with(&context, node, Box::new(network)).unwrap();
                    let now = MonotonicClock::new().now_ns();
                    MuDriver::new(cluster, config.clone(), detectors, History::default(), now).unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().unwrap()).collect()
    })
}

fn committed(events: &[Event], id: CommandId) -> bool {
    events.iter().any(|event| matches!(event, Event::Committed { id: done, .. } if *done == id))
}

/// On a fabric that completes a WRITE as it is posted, the turn that replicates a command
/// also decides it: the leader does not wait a whole turn of housekeeping for completions
/// that are already there.
#[test]
fn the_leader_decides_a_command_in_the_turn_that_replicates_it() {
    let device = format!("soft:mu-fast-path-{}", std::process::id());
    let mut drivers = start(&device, &config());
    let clock = MonotonicClock::new();
    for driver in &mut drivers {
        driver.keep_events(true);
    }
    let turn_all = |drivers: &mut Vec<MuDriver<History>>| {
        for driver in drivers.iter_mut() {
            driver.turn(clock.now_ns());
        }
    };
    // Node 0 (the lowest id) leads, and commits a first command: a majority of followers
    // granted it their logs and are being copied to.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = CommandId { client: 1, sequence: 1 };
    let mut proposed = false;
    loop {
        turn_all(&mut drivers);
        if !proposed && drivers[0].replica().role() == RoleKind::Leader {
            drivers[0].replica_mut().propose(first, b"first").unwrap();
            proposed = true;
        }
        if proposed && committed(&drivers[0].take_events(), first) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 0 did not lead and commit: {}",
            drivers[0].replica().describe()
        );
    }
    // Now one command, one turn of the leader alone (the followers' CPUs are not involved).
    for sequence in 2..=20 {
        let id = CommandId { client: 1, sequence };
        drivers[0].replica_mut().propose(id, format!("command {sequence}").as_bytes()).unwrap();
        drivers[0].turn(clock.now_ns());
        let events = drivers[0].take_events();
        assert!(
            committed(&events, id),
            "command {sequence} not decided in the turn that replicated it: {events:?}; {}",
            drivers[0].replica().describe()
        );
    }
    let applied = &drivers[0].replica().state_machine().applied;
    assert_eq!(applied.len(), 20);
    assert_eq!(applied.last().unwrap(), b"command 20");
}
