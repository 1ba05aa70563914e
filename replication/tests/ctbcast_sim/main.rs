//! Deterministic simulation of CTBcast: the real `Broadcaster` and `Receiver` (sans IO)
//! driven over a simulated network and SWMR registers, with correct, crashed, paused and
//! Byzantine participants, for many seeds.
//!
//! Every run checks, as events happen: no correct receiver delivers an index twice; no two
//! correct receivers deliver different messages for one index; with a correct broadcaster,
//! every delivery is its message and no equivocation is ever "proven"; every proof
//! verifies; correct writers keep the register contract. At the end, with a correct
//! broadcaster, every correct receiver that is not crashed has delivered the last `tail`
//! messages (tail validity; sent after any lossy phase heals). Scenario-specific: with
//! everyone up, no loss and messages paced (none overtaking another by a tail), every
//! message is delivered and nothing takes the slow path; with a receiver crashed from the
//! start, nothing is delivered on the fast path.
//!
//! `USEC_CTBCAST_SEED=<n>` replays one seed and prints what happened; `USEC_CTBCAST_SEEDS`
//! sets how many seeds the sweep runs (default 1,200).

mod byzantine;
mod checker;
mod world;

use ed25519_dalek::SigningKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use usec_replication::bft::ctbcast::{Broadcaster, CtbConfig, DeliveryPath, Keyring, Receiver};

use byzantine::{ByzantineBroadcaster, ByzantineReceiver};
use checker::Checker;
use world::{node, Faults, Liveness, Node, Role, World};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// Not in the sweep: a broadcaster that signs a different message for each receiver
    /// at every index, messages paced and the tail long enough that no slow path is cut
    /// short.
    SignedEquivocation,
    AllCorrect,
    CrashedReceiver,
    PausedReceiver,
    ByzantineBroadcaster,
    ByzantineReceiver,
    /// A Byzantine broadcaster and a receiver holding its key, against two correct ones.
    Colluding,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario::AllCorrect,
    Scenario::CrashedReceiver,
    Scenario::PausedReceiver,
    Scenario::ByzantineBroadcaster,
    Scenario::ByzantineReceiver,
    Scenario::Colluding,
];

/// What one seed did, for the sweep's coverage check.
#[derive(Debug, Default)]
struct Outcome {
    fast: usize,
    slow: usize,
    proofs: usize,
    abandoned: usize,
    rejected: u64,
    byzantine_registers: u64,
}

fn run(seed: u64, verbose: bool) -> Outcome {
    run_scenario(seed, SCENARIOS[(seed % SCENARIOS.len() as u64) as usize], verbose)
}

fn run_scenario(seed: u64, scenario: Scenario, verbose: bool) -> Outcome {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let processes = match scenario {
        Scenario::Colluding => 4,
        Scenario::ByzantineReceiver => rng.gen_range(3..=4),
        _ => 3,
    };
    let tail = if scenario == Scenario::SignedEquivocation { 8 } else { [2, 4, 8][rng.gen_range(0..3)] };
    let messages = rng.gen_range(10..40);
    let lossy =
        matches!(scenario, Scenario::AllCorrect | Scenario::PausedReceiver | Scenario::ByzantineReceiver)
            && rng.gen_ratio(1, 3);
    let config = CtbConfig {
        broadcaster: node(0),
        receivers: (1..processes).map(node).collect(),
        tail,
        max_message_bytes: 512,
        // Short enough that both echo forms occur with the 0–200-byte messages.
        echo_copy_below_bytes: 100,
        fast_path_timeout_ns: 100_000,
        sign_ahead: rng.gen_bool(0.5),
        verify_ahead: rng.gen_bool(0.5),
    };
    let keys: Vec<SigningKey> = (0..processes).map(|_| SigningKey::from_bytes(&rng.gen())).collect();
    let keyring = Keyring::new(keys.iter().enumerate().map(|(id, key)| (node(id), key.verifying_key())));
    let broadcaster_correct = !matches!(
        scenario,
        Scenario::ByzantineBroadcaster | Scenario::Colluding | Scenario::SignedEquivocation
    );
    let byzantine_receiver = match scenario {
        Scenario::ByzantineReceiver | Scenario::Colluding => Some(processes - 1),
        _ => None,
    };
    let nodes = (0..processes)
        .map(|id| {
            let role = match id {
                0 if broadcaster_correct => {
                    Role::Broadcaster(Broadcaster::new(config.clone(), keys[0].clone()).unwrap())
                }
                0 if scenario == Scenario::SignedEquivocation => Role::ByzantineBroadcaster(
                    ByzantineBroadcaster::always_equivocating(config.clone(), keys[0].clone()),
                ),
                0 => Role::ByzantineBroadcaster(ByzantineBroadcaster::new(config.clone(), keys[0].clone())),
                id if Some(id) == byzantine_receiver => {
                    let colluding = (scenario == Scenario::Colluding).then(|| keys[0].clone());
                    Role::ByzantineReceiver(ByzantineReceiver::new(id, config.clone(), colluding))
                }
                id => Role::Receiver(Receiver::new(config.clone(), node(id), keyring.clone()).unwrap()),
            };
            Node { role, liveness: Liveness::Up }
        })
        .collect();
    let faults = Faults {
        delay_ns: (500, 20_000),
        drop_per_million: if lossy { rng.gen_range(20_000..300_000) } else { 0 },
        heal_at_ns: if lossy { u64::MAX } else { 0 },
        register_step_ns: (500, 5_000),
        byzantine_verdict_per_million: 200_000,
    };
    let mut world =
        World::new(rng.clone(), nodes, tail, faults.clone(), Checker::new(broadcaster_correct, keyring));
    // Paced: messages at least 25 µs apart, so with at most 20 µs of delay none overtakes
    // another by a whole tail (its echoes would then be too far ahead to keep).
    let paced = rng.gen_bool(0.5) || scenario == Scenario::SignedEquivocation;
    let gap_ns = match rng.gen_range(0..3) {
        _ if paced => (25_000, 60_000),
        0 => (0, 2_000),
        _ => (1_000, 60_000),
    };
    match scenario {
        Scenario::CrashedReceiver => world.nodes[2].liveness = Liveness::Crashed,
        Scenario::PausedReceiver => {
            let until = rng.gen_range(10_000..2_000_000);
            world.pause(2, until);
        }
        _ => {}
    }
    world.start_broadcasts(messages, gap_ns);
    world.run(messages * gap_ns.1 + 20_000_000);
    let checker = &world.checker;
    let outcome = Outcome {
        fast: checker.count(DeliveryPath::Fast),
        slow: checker.count(DeliveryPath::Slow),
        proofs: checker.proofs.len(),
        abandoned: checker.abandoned.values().map(Vec::len).sum(),
        rejected: world.receivers().map(|(_, receiver)| receiver.stats().rejected_total()).sum(),
        byzantine_registers: world
            .receivers()
            .map(|(_, receiver)| receiver.stats().byzantine_registers)
            .sum(),
    };
    if verbose {
        println!(
            "seed {seed}: {scenario:?}, {processes} processes, tail {tail}, {messages} messages, {config:?}"
        );
        println!("faults {faults:?}, gap {gap_ns:?}, ended at {} ns", world.now);
        for (id, receiver) in world.receivers() {
            println!("node {id}: {:?}", receiver.stats());
            println!("  delivered {:?}", checker.delivered.get(&id).map(|d| d.keys().collect::<Vec<_>>()));
            println!("  abandoned {:?}", checker.abandoned.get(&id));
        }
        println!("{outcome:?}");
    }
    if broadcaster_correct {
        // Tail validity: the last `tail` messages reach every correct receiver still running.
        let live: Vec<usize> = world
            .receivers()
            .filter(|(id, _)| world.nodes[*id].liveness != Liveness::Crashed)
            .map(|(id, _)| id)
            .collect();
        checker.check_delivered(&live, messages.saturating_sub(tail)..messages);
    }
    let slow_paths: u64 = world.receivers().map(|(_, receiver)| receiver.stats().slow_paths).sum();
    match scenario {
        Scenario::AllCorrect if !lossy && paced => {
            assert_eq!(slow_paths, 0, "everyone up, no loss, paced: the fast path alone must deliver");
            checker.check_delivered(&[1, 2], 0..messages);
        }
        Scenario::CrashedReceiver => assert_eq!(outcome.fast, 0, "a crashed receiver never echoes"),
        Scenario::SignedEquivocation => {
            // Both receivers write before they read, so at least one sees the other's
            // signed message: every index is proven, and none is delivered by both.
            let proven: std::collections::BTreeSet<u64> =
                checker.proofs.iter().map(|proof| proof.index).collect();
            assert_eq!(proven, (0..messages).collect(), "every equivocated index is proven");
            assert_eq!(outcome.fast, 0);
        }
        _ => {}
    }
    outcome
}

fn run_reporting(seed: u64, verbose: bool) -> Outcome {
    report_failure(seed, "", || run(seed, verbose))
}

fn report_failure(
    seed: u64,
    test_filter: &str,
    run: impl FnOnce() -> Outcome + std::panic::UnwindSafe,
) -> Outcome {
    match std::panic::catch_unwind(run) {
        Ok(outcome) => outcome,
        Err(panic) => {
            eprintln!(
                "ctbcast simulation failed at seed {seed}; replay with \
                 USEC_CTBCAST_SEED={seed} cargo test -p usec-replication --test ctbcast_sim {test_filter} -- --nocapture"
            );
            std::panic::resume_unwind(panic)
        }
    }
}

#[test]
fn ctbcast_simulation_over_many_seeds() {
    if let Ok(seed) = std::env::var("USEC_CTBCAST_SEED") {
        let seed = seed.parse().expect("USEC_CTBCAST_SEED is a number");
        run_reporting(seed, true);
        return;
    }
    let seeds: u64 = std::env::var("USEC_CTBCAST_SEEDS").map_or(1_200, |n| n.parse().expect("a number"));
    println!("ctbcast simulation: seeds 0..{seeds}");
    let mut total = Outcome::default();
    for seed in 0..seeds {
        let outcome = run_reporting(seed, false);
        total.fast += outcome.fast;
        total.slow += outcome.slow;
        total.proofs += outcome.proofs;
        total.abandoned += outcome.abandoned;
        total.rejected += outcome.rejected;
        total.byzantine_registers += outcome.byzantine_registers;
    }
    println!("{total:?}");
    // The sweep must have exercised what it claims to check.
    if seeds >= 100 {
        assert!(total.fast > 0 && total.slow > 0, "both paths delivered: {total:?}");
        assert!(total.proofs > 0, "some equivocation was proven: {total:?}");
        assert!(total.abandoned > 0 && total.rejected > 0 && total.byzantine_registers > 0, "{total:?}");
    }
}

#[test]
fn signed_equivocation_is_always_proven() {
    let verbose = std::env::var("USEC_CTBCAST_SEED").ok();
    let seeds: Vec<u64> = match &verbose {
        Some(seed) => vec![seed.parse().expect("USEC_CTBCAST_SEED is a number")],
        None => (0..200).collect(),
    };
    for seed in seeds {
        report_failure(seed, "signed_equivocation", || {
            run_scenario(seed, Scenario::SignedEquivocation, verbose.is_some())
        });
    }
}
