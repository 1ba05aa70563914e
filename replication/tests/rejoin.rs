//! A crashed replica restarted as a fresh process (empty state machine, new regions and
//! QPs, [`Start::Rejoin`](usec_replication::cft::Start::Rejoin)) that rejoins the running
//! group through qp-pool's rejoin bootstrap, on the simulator: the survivors refresh what
//! they knew of the old process, a leader catches the new one up (here from a snapshot:
//! the log ring moved on while it was down), and it counts in quorums again.

use usec_replication::cft::MuConfig;
use usec_replication::driver::sim::SimGroup;
use usec_replication::driver::{ClientError, DetectorConfig};
use usec_replication::log::CommandId;
use usec_replication::History;
use usec_verbs::sim::LatencyModel;

const MS: u64 = 1_000_000;

fn config() -> MuConfig {
    MuConfig {
        capacity: 32,
        slot_bytes: 512,
        snapshot_bytes: 1 << 16,
        read_chunk: 4,
        pipeline: 8,
        ..MuConfig::default()
    }
}

fn group(name: &str, seed: u64) -> SimGroup<History> {
    let name = format!("rejoin-{name}-{seed}-{}", std::process::id());
    let group =
        SimGroup::new(&name, seed, 3, &config(), DetectorConfig::default(), &[], History::default).unwrap();
    group.fabric.set_latency(LatencyModel::uniform(800, 1_200));
    group
}

/// The replica that leads, alone among the running ones, once there is one.
fn leader(group: &mut SimGroup<History>) -> Option<usize> {
    let running = |group: &SimGroup<History>| -> Vec<usize> {
        group.leaders().into_iter().filter(|&index| !group.members[index].paused).collect()
    };
    group.run_until(20 * MS, |group| running(group).len() == 1).then(|| running(group)[0])
}

fn propose(
    group: &mut SimGroup<History>,
    via: usize,
    id: CommandId,
    command: &[u8],
) -> Result<(), ClientError> {
    let ticket = group.driver(via).expect("alive").client(id.client).submit_as(id, command)?;
    let mut outcome = None;
    group.run_until(20 * MS, |_| {
        outcome = outcome.take().or_else(|| ticket.try_take());
        outcome.is_some()
    });
    outcome.unwrap_or(Err(ClientError::TimedOut(std::time::Duration::from_millis(20)))).map(drop)
}

/// Decides commands `from..to` of client 1 through whoever leads; false if the group
/// could not (no single leader, or a command not decided, within 50 tries).
fn decide(group: &mut SimGroup<History>, from: u64, to: u64) -> bool {
    for sequence in from..to {
        let id = CommandId { client: 1, sequence };
        let command = format!("c{sequence}").into_bytes();
        let decided =
            (0..50).any(|_| leader(group).is_some_and(|via| propose(group, via, id, &command).is_ok()));
        if !decided {
            return false;
        }
    }
    true
}

fn history(group: &SimGroup<History>, index: usize) -> Vec<Vec<u8>> {
    group.driver(index).expect("alive").replica().state_machine().applied.clone()
}

fn expected(to: u64) -> Vec<Vec<u8>> {
    (1..to).map(|sequence| format!("c{sequence}").into_bytes()).collect()
}

/// Runs until restarted member `index` runs, applied what the others did, and counts in
/// quorums.
fn caught_up(group: &mut SimGroup<History>, index: usize, to: u64) -> bool {
    group.run_until(200 * MS, |group| {
        !group.is_booting(index)
            && group.driver(index).is_some_and(|driver| {
                driver.replica().is_eligible() && driver.replica().state_machine().applied == expected(to)
            })
    })
}

/// A follower crashes; the ring moves on past everything it held; a fresh process takes
/// its place, is brought back (by a snapshot) and counts in quorums: once the leader
/// crashes too, the group goes on with it.
#[test]
fn a_crashed_follower_restarted_fresh_catches_up_and_counts_again() {
    for seed in 1..=5 {
        let mut group = group("follower", seed);
        assert_eq!(leader(&mut group), Some(0), "seed {seed}");
        assert!(decide(&mut group, 1, 11), "seed {seed}");
        group.crash(2);
        // More than the ring holds: the new process needs a snapshot.
        assert!(decide(&mut group, 11, 51), "seed {seed}: 0 and 1 go on");
        group.restart(2, History::default()).unwrap();
        assert!(
            caught_up(&mut group, 2, 51),
            "seed {seed}: node 2 {:?}",
            group.driver(2).map(|d| d.replica().describe())
        );
        assert_eq!(group.driver(0).unwrap().counts().rejoins, 1, "seed {seed}: 0 saw the new process join");
        let restored = group.driver(2).unwrap().replica().stats().snapshots_restored;
        assert!(restored >= 1, "seed {seed}: caught up from a snapshot");

        // Node 0 crashes: 1 and the new 2 are a majority.
        group.crash(0);
        assert!(decide(&mut group, 51, 61), "seed {seed}: 1 leads with the new 2");
        group.run_for(5 * MS);
        assert_eq!(history(&group, 1), expected(61), "seed {seed}");
        assert_eq!(history(&group, 2), expected(61), "seed {seed}");
    }
}

/// The lowest id crashes and comes back fresh while a higher id leads.
///
/// Mu's rule is that the lowest live id leads, and a leader that sees a lower id alive
/// steps down. A replica restarted with `Start::Rejoin` is alive but does not campaign
/// until a leader has caught it up: the leader steps down as soon as it trusts the new
/// process again (its fresh failure detector trusts from the start), nobody catches the
/// new process up, and nobody leads — for good.
#[test]

fn the_lowest_id_restarted_fresh_lets_the_group_go_on() {
    for seed in 1..=5 {
        let mut group = group("lowest", seed);
        assert_eq!(leader(&mut group), Some(0), "seed {seed}");
        assert!(decide(&mut group, 1, 11), "seed {seed}");
        group.crash(0);
        assert!(decide(&mut group, 11, 21), "seed {seed}: 1 and 2 go on");
        group.restart(0, History::default()).unwrap();
        group.run_until(50 * MS, |group| !group.is_booting(0));
        let roles: Vec<_> = (1..3).map(|index| group.driver(index).unwrap().replica().role()).collect();
        assert!(
            decide(&mut group, 21, 31),
            "seed {seed}: nothing decided after node 0 came back; roles of 1 and 2: {roles:?}, now {:?}",
            (0..3).map(|index| group.driver(index).unwrap().replica().describe()).collect::<Vec<_>>()
        );
        assert!(caught_up(&mut group, 0, 31), "seed {seed}: node 0 caught up");
    }
}

/// The leader campaigns late in its process's life, crashes, and comes back fresh: the
/// new process numbers its permission requests from its own clock, which starts at its
/// start, below the numbers its predecessor used last. Once it counts again every
/// replica defers to it (the lowest id), so it must be answered — a follower that went
/// on ignoring requests numbered below the old process's left the group without a leader
/// until the new process's clock caught up with the old one's.
#[test]
fn a_restarted_leader_is_answered_though_its_clock_starts_again() {
    for seed in 1..=5 {
        let mut group = group("renumbered", seed);
        assert_eq!(leader(&mut group), Some(0), "seed {seed}");
        assert!(decide(&mut group, 1, 11), "seed {seed}");
        // Node 0 campaigns again a second (of its clock) later: deposed while paused, it
        // takes over on resuming.
        group.quantum_ns = 10_000;
        group.run_for(1_000 * MS);
        group.quantum_ns = 250;
        group.pause(0);
        assert!(decide(&mut group, 11, 21), "seed {seed}: 1 leads while 0 is paused");
        group.resume(0);
        // Deposed, it can decide again only under a new candidacy's permissions.
        assert!(decide(&mut group, 21, 31), "seed {seed}: decided after 0 resumed");
        assert_eq!(leader(&mut group), Some(0), "seed {seed}: node 0 leads again once resumed");
        assert!(
            group.driver(0).unwrap().replica().stats().candidacies >= 2,
            "seed {seed}: node 0 campaigned again"
        );
        group.crash(0);
        assert!(decide(&mut group, 31, 41), "seed {seed}: 1 and 2 go on");
        group.restart(0, History::default()).unwrap();
        assert!(caught_up(&mut group, 0, 41), "seed {seed}: node 0 caught up");
        let now = |group: &SimGroup<History>| -> Vec<String> {
            (0..3).map(|index| group.driver(index).unwrap().replica().describe()).collect()
        };
        // It counts again and campaigns, the lowest id: the others must answer it.
        let decided = decide(&mut group, 41, 51);
        assert!(decided, "seed {seed}: nothing decided once the new node 0 counted; now {:?}", now(&group));
        let leads = leader(&mut group);
        assert_eq!(leads, Some(0), "seed {seed}: the lowest id leads; now {:?}", now(&group));
    }
}
