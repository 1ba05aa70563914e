//! Failover on the simulator, part by part, in virtual time: how soon the survivors hear
//! of a dead leader, how soon a follower grants a candidate it first refused, and that a
//! replica whose own turns stall does not take its peers' silence for their death.
//!
//! The bounds are derived from the group's constants (the provider's report delay, the
//! driver's periods, the simulator's quantum), never from a wall clock.

use usec_qp_pool::NodeId;
use usec_replication::cft::MuConfig;
use usec_replication::driver::sim::SimGroup;
use usec_replication::driver::{DetectorConfig, PROVIDER_EVENTS_PERIOD_NS};
use usec_replication::History;
use usec_verbs::sim::PEER_LOST_DELAY_NS;

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
