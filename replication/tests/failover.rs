//! Failover on the simulator, part by part, in virtual time: how soon the survivors hear
//! of a dead leader, how soon a follower grants a candidate it first refused, and that a
//! replica whose own turns stall does not take its peers' silence for their death.
//!
//! The bounds are derived from the group's constants (the provider's report delay, the
//! driver's periods, the simulator's quantum), never from a wall clock.

use usec_qp_pool::NodeId;
use usec_replication::cft::op::{Op, OpKind};
use usec_replication::cft::{MuConfig, RoleKind};
use usec_replication::driver::sim::SimGroup;
use usec_replication::driver::{DetectorConfig, PROVIDER_EVENTS_PERIOD_NS};
use usec_replication::log::CommandId;
use usec_replication::History;
use usec_verbs::sim::{TraceKind, PEER_LOST_DELAY_NS};

const MS: u64 = 1_000_000;
const SEED: u64 = 29;

fn config() -> MuConfig {
    MuConfig { capacity: 32, slot_bytes: 512, snapshot_bytes: 1 << 16, pipeline: 8, ..MuConfig::default() }
}

fn group(name: &str, detectors: DetectorConfig) -> SimGroup<History> {
    println!("seed {SEED}");
    let name = format!("failover-{name}-{}", std::process::id());
    let mut group = SimGroup::new(&name, SEED, 3, &config(), detectors, &[], History::default).unwrap();
    assert!(group.run_until(10 * MS, |group| group.leaders() == [0]), "node 0 never led");
    group
}

fn node(id: u16) -> NodeId {
    NodeId::new(id).unwrap()
}

/// The provider reports a crashed peer (on the soft provider: its process exited) after
/// `PEER_LOST_DELAY_NS`; each survivor's detector must take that report within the
/// driver's period for provider events and one turn — not after the control plane's next
/// look, hundreds of turns later, nor after four missed heartbeats.
#[test]
fn a_dead_leader_is_suspected_as_soon_as_the_provider_reports_it() {
    for round in 0..4 {
        let mut group = group(&format!("peer-lost-{round}"), DetectorConfig::default());
        // Crash at different instants of the drivers' periods.
        group.run_for(round * 700);
        let crashed_at = group.fabric.now_ns();
        group.crash(0);
        let mut suspected_at = [None; 3];
        while suspected_at[1..].iter().any(Option::is_none) && group.fabric.now_ns() < crashed_at + MS {
            group.step();
            for index in [1, 2] {
                if suspected_at[index].is_none() && group.driver(index).unwrap().suspects(node(0)) {
                    suspected_at[index] = Some(group.fabric.now_ns() - crashed_at);
                }
            }
        }
        let bound = PEER_LOST_DELAY_NS + PROVIDER_EVENTS_PERIOD_NS + 2 * group.quantum_ns;
        for index in [1, 2] {
            let after = suspected_at[index].expect("suspected within a millisecond");
            assert!(
                after <= bound,
                "round {round}: node {index} suspected the dead leader {after} ns after the crash (bound {bound})"
            );
        }
    }
}

/// A follower that refused a candidate because it still trusted the leader grants it as
/// soon as it stops trusting the leader, without waiting for the candidate to ask again
/// (`permission_retry_ns` later): with Mu's timings, the follower that asks first is
/// often a few microseconds ahead of the other in seeing the leader die.
///
/// Node 1 loses sight of node 0 (a cut link) and campaigns; node 2 still sees 0 and
/// refuses. Then 0 crashes: once 2 suspects 0, it grants 1 within one inbox period.
#[test]
fn a_refused_candidate_is_granted_once_the_leader_is_suspected() {
    let config = config();
    for round in 0..4 {
        let mut group = group(&format!("deferred-{round}"), DetectorConfig::default());
        group.partition(0, 1);
        assert!(
            group.run_until(5 * MS, |group| group.driver(1).unwrap().replica().role() == RoleKind::Candidate),
            "node 1 never campaigned"
        );
        // Node 2 has seen (and refused) a request; crash the leader at different phases of
        // node 1's asking.
        group.run_for(20_000 + round * 37_000);
        assert_eq!(group.driver(2).unwrap().replica().leader(), Some(node(0)), "node 2 still follows 0");
        let grants = group.driver(2).unwrap().replica().stats().grants;
        group.crash(0);
        let mut suspected_at = None;
        let limit = group.fabric.now_ns() + MS;
        while group.fabric.now_ns() < limit && group.driver(2).unwrap().replica().stats().grants == grants {
            group.step();
            if suspected_at.is_none() && group.driver(2).unwrap().suspects(node(0)) {
                suspected_at = Some(group.fabric.now_ns());
            }
        }
        let suspected_at = suspected_at.expect("node 2 suspected the dead leader");
        let granted_after = group.fabric.now_ns() - suspected_at;
        let bound = config.inbox_period_ns + 2 * group.quantum_ns;
        assert!(
            granted_after <= bound,
            "round {round}: node 2 granted node 1 {granted_after} ns after suspecting the leader (bound {bound})"
        );
        assert_eq!(group.driver(2).unwrap().replica().leader(), Some(node(1)));
    }
}

/// Recovery READs the slots the quorum may hold, not a fixed run: every member published
/// where its log stops (`present`) when it granted, and nothing can land there since, so
/// a new leader after a quiet crash reads one slot from each member (the first empty one,
/// which ends recovery), not `read_chunk` slots of 4 KiB each.
#[test]
fn recovery_reads_only_what_the_quorum_holds() {
    let config = MuConfig { read_chunk: 16, ..config() };
    println!("seed {SEED}");
    let name = format!("failover-recovery-reads-{}", std::process::id());
    let mut group =
        SimGroup::new(&name, SEED, 3, &config, DetectorConfig::default(), &[], History::default).unwrap();
    assert!(group.run_until(10 * MS, |group| group.leaders() == [0]), "node 0 never led");
    for sequence in 1..=5 {
        let id = CommandId { client: 1, sequence };
        group.driver_mut(0).unwrap().replica_mut().propose(id, b"a command").unwrap();
        assert!(group.run_until(MS, |group| group.driver(0).unwrap().replica().applied_index() == sequence));
    }
    // Idle: the commit record tells the followers.
    group.run_for(100_000);
    group.fabric.record_trace(true);
    group.crash(0);
    assert!(group.run_until(10 * MS, |group| group.leaders().len() == 1), "nobody took over");
    let new = group.leaders()[0] as u16;
    let sim_node = group.members[usize::from(new)].sim_node;
    let read: u64 = group
        .fabric
        .trace()
        .iter()
        .filter(|event| event.kind == TraceKind::Completion && event.node == sim_node)
        .filter(|event| Op::decode(event.wr_id).is_some_and(|op| op.kind == OpKind::SlotRead))
        .map(|event| event.len)
        .sum();
    let slot = config.slot_bytes as u64;
    assert!(read <= slot, "node {new} read {read} bytes of slots in recovery, more than one slot ({slot} B)");
}

/// A deposed leader that wakes up finds its WRITEs refused: its log QPs to the others
/// break and are reconnected (qp-pool's repair, over the control plane). It campaigns,
/// since it is the lowest id — but a grant is worth nothing while the QP to that
/// follower's log is down: the promise cannot be written, the member drops out, and the
/// candidacy starts over. It must wait for the repair instead of campaigning again and
/// again (each time making the others step down for nothing).
#[test]
fn a_candidate_waits_for_its_log_qps_to_be_repaired() {
    let mut group = group("repair", DetectorConfig::default());
    group.pause(0);
    // Node 0 still believes it leads: it is paused.
    assert!(group.run_until(10 * MS, |group| group.leaders() == [0, 1]), "node 1 never took over");
    let candidacies = group.driver(0).unwrap().replica().stats().candidacies;
    group.resume(0);
    assert!(group.run_until(20 * MS, |group| group.leaders() == [0]), "node 0 never led again");
    let again = group.driver(0).unwrap().replica().stats().candidacies - candidacies;
    assert!(again <= 1, "node 0 campaigned {again} times before it led again");
}

/// A leader whose core is taken away for a while (descheduled, not stopped: its process
/// probes alive) keeps its leadership when it gets the core back within the detectors'
/// patience; a stopped one is replaced without waiting for it. Before the patience, a
/// leader descheduled for four heartbeat periods (120 µs) was deposed.
#[test]
fn a_descheduled_leader_is_waited_for_and_a_stopped_one_is_not() {
    let patience = DetectorConfig::default().alive_patience_ns;
    let mut group = group("descheduled", DetectorConfig::default());
    for round in 0..4 {
        group.deschedule(0, patience / 2 + round * 50_000);
        group.run_for(patience);
        for index in [1, 2] {
            let replica = group.driver(index).unwrap().replica();
            assert_eq!(replica.stats().candidacies, 0, "round {round}: node {index} campaigned");
            assert_eq!(replica.leader(), Some(node(0)), "round {round}");
        }
    }
    let paused_at = group.fabric.now_ns();
    group.pause(0);
    assert!(
        group.run_until(patience / 2, |group| group.leaders() == [0, 1]),
        "node 1 waited for a stopped leader"
    );
    println!("a stopped leader replaced after {} ns", group.fabric.now_ns() - paused_at);
}

/// A follower trusts its leader for a while after the leader's entries advanced its
/// commit index (direct evidence of life, stronger than a stuck heartbeat READ). But when
/// the provider says the leader's process is gone, that evidence is stale: the follower
/// campaigns as soon as it knows, not when the grace runs out (200 µs later).
#[test]
fn a_dead_leader_is_not_trusted_on_stale_evidence() {
    for round in 0..4 {
        let mut group = group(&format!("stale-{round}"), DetectorConfig::default());
        // Commands until the crash: the followers' commit indices advance until then.
        let mut sequence = 0;
        let until = group.fabric.now_ns() + 200_000 + round * 13_000;
        while group.fabric.now_ns() < until {
            if group.driver(0).unwrap().replica().queued() == 0 {
                sequence += 1;
                let id = CommandId { client: 1, sequence };
                group.driver_mut(0).unwrap().replica_mut().propose(id, b"busy").unwrap();
            }
            group.step();
        }
        let crashed_at = group.fabric.now_ns();
        group.crash(0);
        let candidate = |group: &SimGroup<History>| {
            [1, 2].iter().any(|&index| group.driver(index).unwrap().replica().role() != RoleKind::Follower)
        };
        assert!(group.run_until(MS, candidate), "round {round}: nobody campaigned");
        let after = group.fabric.now_ns() - crashed_at;
        let bound = PEER_LOST_DELAY_NS + PROVIDER_EVENTS_PERIOD_NS + 2 * group.quantum_ns;
        assert!(
            after <= bound,
            "round {round}: the first candidacy came {after} ns after the crash (bound {bound})"
        );
    }
}

/// A new leader checks how far back its own log goes only as far as a follower needs (the
/// entry or two it lacks), not its whole ring: with 1,024 slots of 4 KiB that check took
/// a third of a millisecond in the turn it took over, before its first entry.
#[test]
fn a_new_leader_checks_only_the_slots_its_followers_need() {
    let config = config();
    let mut group = group("floor", DetectorConfig::default());
    for sequence in 1..=3 * config.capacity {
        let id = CommandId { client: 1, sequence };
        group.driver_mut(0).unwrap().replica_mut().propose(id, b"fill the ring").unwrap();
        assert!(group.run_until(MS, |group| group.driver(0).unwrap().replica().applied_index() == sequence));
    }
    group.run_for(100_000);
    group.crash(0);
    assert!(group.run_until(10 * MS, |group| group.leaders().len() == 1), "nobody took over");
    let id = CommandId { client: 1, sequence: 1_000 };
    let new = group.leaders()[0];
    group.driver_mut(new).unwrap().replica_mut().propose(id, b"after").unwrap();
    let applied = group.driver(new).unwrap().replica().applied_index();
    assert!(group.run_until(MS, |group| group.driver(new).unwrap().replica().applied_index() > applied));
    let checked = group.driver(new).unwrap().replica().stats().own_slots_checked;
    assert!(checked <= 2, "node {new} checked {checked} slots of its own log (ring of {})", config.capacity);
}
