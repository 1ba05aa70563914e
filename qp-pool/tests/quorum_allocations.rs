//! The completion loop allocates nothing: `QuorumWaiter::observe` and `status` (called on
//! every spin of `wait_for`) are counted by a global allocator, over many random
//! completions, failures and revivals.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use usec_check::allocations::{allocations_in, CountingAllocator};
use usec_qp_pool::{NodeId, QuorumStatus, QuorumWaiter, WrId, WrKind};
use usec_verbs::Status;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn node(id: u16) -> NodeId {
    NodeId::new(id).unwrap()
}

#[test]
fn observe_and_status_never_allocate() {
    let seed: u64 = std::env::var("USEC_SEED").map_or(0x5eed, |seed| seed.parse().expect("a number"));
    eprintln!("seed {seed} (replay with USEC_SEED={seed})");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let peers: Vec<NodeId> = [1, 2, 3, 5, 8, 13, 21, 4095].into_iter().map(node).collect();
    let (kinds, foreign) = ([WrKind::application(0), WrKind::application(1)], WrKind::application(2));
    let mut waiter = QuorumWaiter::new();
    let mut keys = Vec::new();
    for (round, kind) in (0..6).zip(kinds.iter().cycle()) {
        keys.push(waiter.begin(*kind, round, &peers, 1 + round as usize).unwrap());
    }
    // Drawn before counting: the steps themselves are not what is measured.
    let steps: Vec<(u8, usize, u64, bool)> = (0..20_000)
        .map(|_| {
            (rng.gen_range(0..10), rng.gen_range(0..peers.len()), rng.gen_range(0..8), rng.gen_bool(0.7))
        })
        .collect();
    let mut met = 0;
    let (allocations, ()) = allocations_in(|| {
        for &(action, peer, sequence, success) in &steps {
            let peer = peers[peer];
            match action {
                0 => waiter.mark_failed(peer),
                1 => {
                    waiter.revive(peer);
                }
                2 => {
                    let id = WrId::new(foreign, peer, sequence).unwrap();
                    assert!(!waiter.observe(id, Status::Success));
                }
                _ => {
                    let kind = kinds[usize::from(action % 2)];
                    let status = if success { Status::Success } else { Status::RetryExceeded };
                    // Rounds in flight and sequences that are not (late completions) alike.
                    assert!(waiter.observe(WrId::new(kind, peer, sequence).unwrap(), status));
                }
            }
            for &key in &keys {
                if waiter.status(key).unwrap() == QuorumStatus::Met {
                    met += 1;
                }
            }
        }
    });
    assert_eq!(allocations, 0, "observe and status allocated {allocations} times");
    assert!(met > 0, "the rounds were met now and then: the loop did its work");
}
