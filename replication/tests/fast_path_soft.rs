//! The leader's fast path on the soft provider, whose WRITEs complete as they are posted
//! (as `mu-latency` runs it): three replicas bootstrapped in threads of this process, then
//! turned by the test's thread, one turn at a time, so what a single turn of the leader
//! does can be seen — and what it allocates, counted by this binary's global allocator.

mod support;

use std::time::{Duration, Instant};

use usec_check::allocations::{allocations_in, CountingAllocator};
use usec_lease_clock::clock::{Clock, MonotonicClock};
use usec_lease_clock::detector::ScoreConfig;
use usec_lease_clock::heartbeat::ReaderConfig;
use usec_replication::cft::{Event, MuConfig, RoleKind};
use usec_replication::driver::{DetectorConfig, MuDriver};
use usec_replication::log::CommandId;
use usec_replication::{History, RestoreError, StateMachine};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// A state machine that counts commands and answers nothing: an empty response is an
/// event that allocates nothing, so what a test counts is the replica's own.
#[derive(Debug, Default)]
struct Tally {
    applied: u64,
}

impl StateMachine for Tally {
    fn apply(&mut self, _command: &[u8], _response: &mut Vec<u8>) {
        self.applied += 1;
    }

    fn snapshot(&self) -> Vec<u8> {
        self.applied.to_le_bytes().to_vec()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let bytes = snapshot.try_into().map_err(|_| RestoreError("not a count".into()))?;
        self.applied = u64::from_le_bytes(bytes);
        Ok(())
    }
}

fn config() -> MuConfig {
    MuConfig { capacity: 64, pipeline: 8, slot_bytes: 512, snapshot_bytes: 1 << 16, ..MuConfig::default() }
}

/// Three bootstrapped drivers (node 0 first), none turned yet.
fn start<S: StateMachine + Default>(device: &str, config: &MuConfig) -> Vec<MuDriver<S>> {
    // Slow detectors: one thread turns all three replicas, on a machine others share.
    let detectors = DetectorConfig {
        reader: ReaderConfig { period_ns: 100_000_000, timeout_ns: 1_000_000_000 },
        score: ScoreConfig { score_max: 10, ..ScoreConfig::default() },
        bump_period_ns: 250_000,
        ..DetectorConfig::default()
    };
    support::soft_group::start("fast-path", device, config, detectors)
}

fn committed(events: &[Event], id: CommandId) -> bool {
    events.iter().any(|event| matches!(event, Event::Committed { id: done, .. } if *done == id))
}

/// Turns all three until node 0 (the lowest id) leads and has committed command
/// `(1, 1)`: a majority of followers granted it their logs and are being copied to.
fn lead_and_commit_one<S: StateMachine>(drivers: &mut [MuDriver<S>], clock: &MonotonicClock) {
    for driver in drivers.iter_mut() {
        driver.keep_events(true);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = CommandId { client: 1, sequence: 1 };
    let mut proposed = false;
    loop {
        for driver in drivers.iter_mut() {
            driver.turn(clock.now_ns());
        }
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
}

/// On a fabric that completes a WRITE as it is posted, the turn that replicates a command
/// also decides it: the leader does not wait a whole turn of housekeeping for completions
/// that are already there.
#[test]
fn the_leader_decides_a_command_in_the_turn_that_replicates_it() {
    let device = format!("soft:mu-fast-path-{}", std::process::id());
    let mut drivers = start::<History>(&device, &config());
    let clock = MonotonicClock::new();
    lead_and_commit_one(&mut drivers, &clock);
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

/// Proposing a command allocates nothing (it is copied into the buffer of an earlier
/// one), nor does the turn that replicates, decides and applies it (its batch is built in
/// the buffer of an applied one; the response, empty here, aside).
#[test]
fn the_leaders_fast_path_allocates_nothing_per_command() {
    let device = format!("soft:mu-fast-path-alloc-{}", std::process::id());
    // A ring longer than the run: the followers, not turned, never apply, and a leader
    // does not reuse a slot before a majority applied it.
    let mut drivers = start::<Tally>(&device, &MuConfig { capacity: 256, ..config() });
    let clock = MonotonicClock::new();
    lead_and_commit_one(&mut drivers, &clock);
    let leader = &mut drivers[0];
    let command = [7u8; 64];
    let (mut proposing, mut turning) = (Vec::new(), Vec::new());
    for sequence in 2..=200 {
        let id = CommandId { client: 1, sequence };
        let (allocations, ()) = allocations_in(|| leader.replica_mut().propose(id, &command).unwrap());
        proposing.push(allocations);
        let (allocations, decided) = allocations_in(|| {
            leader.turn(clock.now_ns());
            leader
                .drain_events()
                .any(|event| matches!(event, Event::Committed { id: done, .. } if done == id))
        });
        assert!(decided, "command {sequence} not decided in its turn: {}", leader.replica().describe());
        turning.push(allocations);
    }
    println!("allocations per proposal: {proposing:?}\nper turn: {turning:?}");
    // The first commands fill the buffers the others reuse.
    assert!(proposing[10..].iter().all(|&count| count == 0), "proposing allocates: {proposing:?}");
    // Every 256 turns the driver looks at qp-pool's control plane, which allocates: at
    // most one of these turns did (heartbeat READs, which also allocate, are 100 ms apart).
    let allocating = turning[10..].iter().filter(|&&count| count > 0).count();
    assert!(allocating <= 1, "turns allocate: {turning:?}");
    assert_eq!(leader.replica().state_machine().applied, 200);
}
