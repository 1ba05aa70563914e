//! Where a leader applies its own entries from: the batches it built, not its log read
//! back (on the simulator, 1 µs one way, so a WRITE is in flight long enough to act).

use usec_replication::cft::{Event, MuConfig, RoleKind};
use usec_replication::driver::sim::SimGroup;
use usec_replication::driver::DetectorConfig;
use usec_replication::log::local::SlotRead;
use usec_replication::log::CommandId;
use usec_replication::History;
use usec_verbs::sim::LatencyModel;

const MS: u64 = 1_000_000;
const SEED: u64 = 5;

fn config() -> MuConfig {
    MuConfig { capacity: 32, slot_bytes: 512, snapshot_bytes: 1 << 16, pipeline: 8, ..MuConfig::default() }
}

/// Nothing writes a leader's log while it leads, so the batch it built is what its
/// followers were sent: it applies that, and never reads the entry back. Spoiling its own
/// copy of an entry while the entry is on its way to the followers (nothing in the
/// protocol does: this only shows where the leader reads) changes nothing — the command
/// is decided, applied, and answered.
#[test]
fn a_leader_applies_its_own_entries_from_the_batches_it_built() {
    println!("seed {SEED}");
    let name = format!("leader-apply-{}", std::process::id());
    let mut group =
        SimGroup::new(&name, SEED, 3, &config(), DetectorConfig::default(), &[], History::default).unwrap();
    group.fabric.set_latency(LatencyModel::fixed(1_000));
    assert!(group.run_until(10 * MS, |group| group.leaders() == [0]), "node 0 never led");
    let driver = group.driver_mut(0).unwrap();
    driver.keep_events(true);
    let id = CommandId { client: 1, sequence: 1 };
    let entries = driver.replica().stats().entries;
    driver.replica_mut().propose(id, b"spoiled at home").unwrap();
    // One step creates the entry and posts its WRITEs; they land a microsecond later.
    group.step();
    let driver = group.driver_mut(0).unwrap();
    assert_eq!(driver.replica().stats().entries, entries + 1, "the entry was created in that step");
    assert_eq!(driver.replica().role(), RoleKind::Leader);
    let index = driver.replica().commit_index();
    assert_eq!(driver.replica().applied_index(), index, "nothing else waits to be applied");
    let log = driver.log();
    let offset = log.layout().entry_offset(index);
    log.log_region().fill(offset, 64, 0xa5).unwrap();
    assert_eq!(log.read_slot(index, &mut Vec::new()), SlotRead::Empty, "its own copy is spoiled");

    assert!(
        group.run_until(5 * MS, |group| group.driver(0).unwrap().replica().applied_index() > index),
        "the leader did not apply entry {index}: {}",
        group.driver(0).unwrap().replica().describe()
    );
    let driver = group.driver_mut(0).unwrap();
    let events: Vec<Event> = driver.drain_events().collect();
    assert!(
        events.iter().any(|event| matches!(event, Event::Committed { id: done, .. } if *done == id)),
        "{events:?}"
    );
    assert_eq!(driver.replica().state_machine().applied.last().unwrap(), b"spoiled at home");
    // The followers hold the entry as it was sent, and apply the same command.
    for follower in [1, 2] {
        assert!(group.run_until(5 * MS, |group| {
            group.driver(follower).unwrap().replica().state_machine().applied.last().map(Vec::as_slice)
                == Some(&b"spoiled at home"[..])
        }));
    }
}
