//! Active(view) leases in deterministic simulation: the real [`ActiveLease`] on 2–5
//! members whose [`SimClock`]s drift within ρ (mostly at its edges), 3 or 5 acceptors whose
//! slots are a reused ring, views decided one after the other — some compatible with the
//! one before, most not — faster than a lease at times, reads and learns delayed by several
//! leases or lost, members paused for up to four leases. At every virtual instant at which
//! some member's answer can change, every member (paused ones too: "if it looked now") is
//! asked whether its view is active, and the promise of the rule is checked: no two views
//! of different epochs are active at once, and nothing of an older epoch is active once a
//! newer epoch has been. Once views stop changing, every member must be active in the last.
//!
//! `cargo test -p usec-lease-clock --test sim_active_lease` runs seeds 0 to 999;
//! `USEC_ACTIVE_LEASE_SEEDS=N` runs N of them and `USEC_ACTIVE_LEASE_FIRST=F` starts at F;
//! `USEC_SEED=S` replays seed S alone with a trace of its events. A failing seed is printed
//! with the command that replays it.
//!
//! [`ActiveLease`]: usec_lease_clock::lease::ActiveLease
//! [`SimClock`]: usec_lease_clock::clock::SimClock

mod world;

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use usec_lease_clock::lease::DriftBound;

use world::{Params, Stats, Violation, World};

/// The seeds to run and whether to trace them.
struct Seeds {
    first: u64,
    count: u64,
    trace: bool,
}

fn seeds(default_count: u64) -> Seeds {
    let number = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|text| text.parse::<u64>().unwrap_or_else(|_| panic!("{name}={text:?} is not a number")))
    };
    if let Some(seed) = number("USEC_SEED") {
        return Seeds { first: seed, count: 1, trace: true };
    }
    Seeds {
        first: number("USEC_ACTIVE_LEASE_FIRST").unwrap_or(0),
        count: number("USEC_ACTIVE_LEASE_SEEDS").unwrap_or(default_count),
        trace: false,
    }
}

/// Runs `seed` with the parameters it draws (ρ forced to `rho_ppm` if given), the members
/// assuming `assumed(ρ)` as their drift bound.
fn run_seed(
    name: &str,
    seed: u64,
    rho_ppm: Option<u32>,
    assumed: impl Fn(u32) -> DriftBound,
    trace: bool,
) -> (Params, Result<Stats, Violation>) {
    let params = Params::draw(&mut ChaCha8Rng::seed_from_u64(seed), rho_ppm);
    if trace {
        eprintln!("seed {seed}: {params:?}");
    }
    let world = World::new(name, seed, params.clone(), assumed(params.rho_ppm), trace);
    (params, world.run())
}

#[test]
fn no_two_epochs_are_ever_active_at_once() {
    let Seeds { first, count, trace } = seeds(1_000);
    let started = Instant::now();
    let mut totals = Stats::default();
    for seed in first..first + count {
        let true_bound = |rho_ppm| DriftBound::from_ppm(rho_ppm).expect("ρ below 100 %");
        let (params, outcome) = run_seed("active-lease", seed, None, true_bound, trace);
        let stats = outcome.unwrap_or_else(|violation| {
            panic!(
                "seed {seed}: at virtual {} ns: {}\n  {params:?}\n  replay with \
                 USEC_SEED={seed} cargo test -p usec-lease-clock --test sim_active_lease",
                violation.at_ns, violation.what
            )
        });
        totals.checks += stats.checks;
        totals.handovers += stats.handovers;
        totals.seamless_inheritances += stats.seamless_inheritances;
        totals.confirmations += stats.confirmations;
        totals.reads_lost += stats.reads_lost;
        totals.pauses += stats.pauses;
        totals.refuted_reads += stats.refuted_reads;
        if let Some(gap) = stats.min_gap_ns {
            totals.min_gap_ns = Some(totals.min_gap_ns.map_or(gap, |min| min.min(gap)));
        }
    }
    eprintln!("seeds {first}..{}: {totals:?} in {:.1} s", first + count, started.elapsed().as_secs_f64());
    if count >= 100 {
        // The scenarios must exercise what the rule is about.
        assert!(totals.handovers > count, "few handovers between epochs: {totals:?}");
        assert!(totals.seamless_inheritances > count / 10, "compatible views hardly inherited: {totals:?}");
        assert!(totals.refuted_reads > count && totals.pauses > count, "few faults: {totals:?}");
    }
}

/// The same runs with members that leave the drift factor out of the wait (`S = Δ + 1`,
/// uKharon's rule without its slack), on clocks 5–20 % apart: the check catches it.
#[test]
fn the_rule_without_the_drift_factor_is_caught() {
    let Seeds { first, count, trace } = seeds(1_000);
    for seed in first..first + count {
        let rho_ppm = 50_000 + (seed % 4) as u32 * 50_000;
        let (params, outcome) =
            run_seed("active-lease-naive", seed, Some(rho_ppm), |_| DriftBound::zero(), trace);
        if let Err(violation) = outcome {
            eprintln!(
                "seed {seed} (of {count} from {first}): caught at virtual {} ns: {} (ρ {} ppm, Δ {} ns)",
                violation.at_ns, violation.what, params.rho_ppm, params.lease_ns
            );
            return;
        }
    }
    panic!("{count} seeds from {first} ran without catching the rule that ignores drift");
}

/// A seed is the whole run: the same seed gives the same run, event for event, so a failing
/// seed replays.
#[test]
fn the_same_seed_replays_the_same_run() {
    let outcome = |name: &str, seed: u64| {
        let true_bound = |rho_ppm| DriftBound::from_ppm(rho_ppm).expect("ρ below 100 %");
        format!("{:?}", run_seed(name, seed, None, true_bound, false))
    };
    for seed in 0..20 {
        assert_eq!(
            outcome("active-lease-replay-a", seed),
            outcome("active-lease-replay-b", seed),
            "seed {seed}"
        );
    }
}
