//! The leader's fast path on the soft provider, whose WRITEs complete as they are posted
//! (as `mu-latency` runs it): three replicas bootstrapped in threads of this process, then
//! turned by the test's thread, one turn at a time, so what a single turn of the leader
//! does can be seen — and what it allocates, counted by this binary's global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use usec_lease_clock::clock::{Clock, MonotonicClock};
use usec_lease_clock::detector::ScoreConfig;
use usec_lease_clock::heartbeat::ReaderConfig;
use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId, TcpNetwork};
use usec_replication::cft::{Event, MuConfig, RoleKind};
use usec_replication::driver::{DetectorConfig, MuDriver};
use usec_replication::log::CommandId;
use usec_replication::{History, RestoreError, StateMachine};
use usec_verbs::Context;

/// The system allocator, counting the allocations of a thread while it asks to.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: allocations during thread teardown, after the locals are gone, are not ours.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees are ours; counting touches only thread-local cells, never the heap.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller keeps `alloc`'s contract (a non-zero-sized layout).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller passes a block of this allocator (hence of `System`) and its layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block of this allocator (hence of `System`) and its layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made by `body` on this thread.
fn allocations_in<T>(body: impl FnOnce() -> T) -> (u64, T) {
    ALLOCATIONS.with(|count| count.set(0));
    COUNTING.with(|counting| counting.set(true));
    let result = body();
    COUNTING.with(|counting| counting.set(false));
    (ALLOCATIONS.with(Cell::get), result)
}

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
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let nodes = listeners
        .iter()
        .enumerate()
        .map(|(id, listener)| (NodeId::new(id as u16).unwrap(), listener.local_addr().unwrap()));
    let spec = ClusterSpec::new("fast-path", &ClusterSpec::fresh_run(), nodes).unwrap();
    // Slow detectors: one thread turns all three replicas, on a machine others share.
    let detectors = DetectorConfig {
        reader: ReaderConfig { period_ns: 100_000_000, timeout_ns: 1_000_000_000 },
        score: ScoreConfig { score_max: 10, ..ScoreConfig::default() },
        bump_period_ns: 250_000,
        ..DetectorConfig::default()
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
                    let node = MuDriver::<S>::configure(node, config).unwrap();
                    let network = TcpNetwork::from_listener(listener).unwrap();
                    let cluster = Cluster::bootstrap_with(&context, node, Box::new(network)).unwrap();
                    let now = MonotonicClock::new().now_ns();
                    MuDriver::new(cluster, config.clone(), detectors, S::default(), now).unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().unwrap()).collect()
    })
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
