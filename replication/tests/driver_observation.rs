//! What a driver lets a measurement see, on the simulator: a takeover's stages in the
//! order the benchmarks time them (suspicion, permissions, recovery, leadership), and
//! bare WRITEs on the replica's own log QPs that leave the replica working.

use usec_qp_pool::{NodeId, WrId, WrKind};
use usec_replication::cft::cluster_port::{LOG_REGION, LOG_ROLE};
use usec_replication::cft::{Event, MuConfig, Replica, RoleKind, Takeover};
use usec_replication::driver::sim::SimGroup;
use usec_replication::driver::DetectorConfig;
use usec_replication::log::CommandId;
use usec_replication::History;
use usec_verbs::{RemoteAddr, SendWr};

const MS: u64 = 1_000_000;
const SEED: u64 = 11;

fn config() -> MuConfig {
    MuConfig { capacity: 32, slot_bytes: 512, snapshot_bytes: 1 << 16, pipeline: 8, ..MuConfig::default() }
}

fn group(name: &str) -> SimGroup<History> {
    println!("seed {SEED}");
    let config = config();
    let name = format!("observation-{name}-{}", std::process::id());
    let mut group =
        SimGroup::new(&name, SEED, 3, &config, DetectorConfig::default(), &[], History::default).unwrap();
    assert!(group.run_until(10 * MS, |group| group.leaders() == [0]), "node 0 never led");
    group
}

fn node(id: u16) -> NodeId {
    NodeId::new(id).unwrap()
}

/// Steps until `index` leads, noting after each step the stages it reached first, as the
/// failover benchmark does around its turns.
fn stages_until_leading(group: &mut SimGroup<History>, index: usize, old: NodeId) -> Vec<String> {
    let mut seen = Vec::new();
    let mut note = |what: String| {
        if !seen.contains(&what) {
            seen.push(what);
        }
    };
    let limit = group.fabric.now_ns() + 20 * MS;
    while group.fabric.now_ns() < limit {
        group.step();
        let driver = group.driver(index).expect("alive");
        let replica = driver.replica();
        if driver.suspects(old) {
            note("suspects".into());
        }
        match replica.takeover() {
            Some(Takeover::Permissions) => note("permissions".into()),
            Some(Takeover::Recovery) => note("recovery".into()),
            None => {}
        }
        if replica.role() == RoleKind::Leader {
            assert_eq!(replica.takeover(), None, "a leader is not taking over");
            note("leads".into());
            return seen;
        }
    }
    panic!("node {index} never led; saw {seen:?}");
}

#[test]
fn a_takeover_is_seen_stage_by_stage() {
    let mut group = group("stages");
    assert_eq!(group.driver(1).unwrap().replica().takeover(), None, "a follower is not taking over");
    assert!(!group.driver(1).unwrap().suspects(node(0)));
    group.crash(0);
    let stages = stages_until_leading(&mut group, 1, node(0));
    assert_eq!(stages, ["suspects", "permissions", "recovery", "leads"]);
}

#[test]
fn bare_writes_on_the_log_qps_leave_the_replica_working() {
    let mut group = group("bare");
    const BARE: WrKind = WrKind::application(3);
    let driver = group.driver_mut(0).unwrap();
    driver.keep_events(true);
    let layout = config().layout(3);
    let (cluster, _) = driver.parts_mut();
    let role = cluster.role(LOG_ROLE).unwrap();
    let source = cluster.region(LOG_REGION).unwrap().sge(layout.snapshot_offset(), 64).unwrap();
    for peer in [node(1), node(2)] {
        let target = cluster.remote_region(peer, LOG_REGION).unwrap();
        let remote = RemoteAddr::within(&target, layout.snapshot_offset() as u64, 64).unwrap();
        let wr_id = WrId::new(BARE, peer, 1).unwrap().to_raw();
        cluster.post_send(peer, role, &[SendWr::write(wr_id, remote, &source)]).unwrap();
    }
    // Both complete on the replica's poller, as the replica's own would, and are not its.
    // Nobody turns meanwhile (a turn would take them): a few fabric latencies, far below
    // what a failure detector notices.
    let mut bare = 0;
    let limit = group.fabric.now_ns() + 20_000;
    while bare < 2 && group.fabric.now_ns() < limit {
        let (_, poller) = group.driver_mut(0).unwrap().parts_mut();
        let mut theirs = Vec::new();
        for polled in poller.poll() {
            assert!(polled.completion.status.is_success(), "{polled:?}");
            if polled.wr_id.kind() == BARE {
                assert!(!Replica::<History>::owns(polled.completion.wr_id));
                bare += 1;
            } else {
                theirs.push((polled.completion.wr_id, polled.completion.status));
            }
        }
        let driver = group.driver_mut(0).unwrap();
        for (wr_id, status) in theirs {
            driver.replica_mut().handle_completion(wr_id, status);
        }
        group.fabric.advance_by(group.quantum_ns);
    }
    assert_eq!(bare, 2, "the bare WRITEs did not complete");
    // The replica goes on committing.
    let id = CommandId { client: 1, sequence: 1 };
    group.driver_mut(0).unwrap().replica_mut().propose(id, b"after").unwrap();
    assert!(group.run_until(5 * MS, |group| group.driver(0).unwrap().replica().applied_index() == 1));
    let events: Vec<Event> = group.driver_mut(0).unwrap().drain_events().collect();
    assert!(events.iter().any(|event| matches!(event, Event::Committed { id: done, .. } if *done == id)));
}
