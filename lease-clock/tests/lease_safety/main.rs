//! The lease rule's safety, checked on the real [`LeaseHolder`] and [`LeaseGrantor`]:
//! holders and a grantor whose clocks run at adversarial piecewise rates anywhere within
//! `[1 − ρ, 1 + ρ]`, requests at arbitrary times, message delays from zero to several
//! leases — and never two holders believing at the same real instant. A grantor that
//! leaves the drift factor out of its wait is caught, which shows the check has teeth.
//! `active.rs` does the same for Active(view) leases at a view change.
//!
//! The proptest runs are seeded from `USEC_SEED` (or a fresh seed, printed);
//! `USEC_LEASE_CASES` sets how many scenarios the safety property runs (3 000 by default).
//!
//! [`LeaseHolder`]: usec_lease_clock::lease::LeaseHolder
//! [`LeaseGrantor`]: usec_lease_clock::lease::LeaseGrantor

mod active;
#[path = "../common/mod.rs"]
mod common;
mod model;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestError, TestRunner};
use usec_lease_clock::lease::DriftBound;

use model::{run, Ask, ClockSpec, Scenario, MILLION};

/// A rate within ρ, the extremes most often: the adversary's favourites.
fn rate(rho_ppm: u32) -> impl Strategy<Value = u64> {
    let (slowest, fastest) = (MILLION - u64::from(rho_ppm), MILLION + u64::from(rho_ppm));
    prop_oneof![2 => Just(slowest), 2 => Just(fastest), 1 => slowest..=fastest]
}

fn clock(rho_ppm: u32, horizon_ns: u64) -> impl Strategy<Value = ClockSpec> {
    let stretches = prop::collection::vec((1..=horizon_ns, rate(rho_ppm)), 1..4);
    (0..1u64 << 40, stretches).prop_map(|(offset_ns, stretches)| ClockSpec { offset_ns, stretches })
}

/// Scenarios with 2 or 3 holders, ρ drawn by `rho_ppm`, Δ up to 50 µs, asks over 20 Δ.
fn scenario(rho_ppm: impl Strategy<Value = u32>) -> impl Strategy<Value = Scenario> {
    let slack = prop_oneof![Just(0u64), 0..1_000u64];
    (rho_ppm, 1..=50_000u64, slack, 2..=3usize).prop_flat_map(|(rho_ppm, lease_ns, slack_ns, holders)| {
        let horizon_ns = 20 * lease_ns;
        let delay = prop_oneof![3 => Just(0u64), 3 => 0..=lease_ns / 10, 2 => 0..=3 * lease_ns];
        let ask = (0..holders, 0..horizon_ns, delay.clone(), delay).prop_map(
            |(holder, at_ns, request_delay_ns, reply_delay_ns)| Ask {
                holder,
                at_ns,
                request_delay_ns,
                reply_delay_ns,
            },
        );
        let clocks = prop::collection::vec(clock(rho_ppm, horizon_ns), holders + 1);
        (clocks, prop::collection::vec(ask, 1..40)).prop_map(move |(clocks, asks)| Scenario {
            rho_ppm,
            lease_ns,
            slack_ns,
            clocks,
            asks,
        })
    })
}

/// A runner seeded from `USEC_SEED` (printed). Shrinking nested strategies can take
/// minutes, so it is bounded by time; `shrink: false` reports the first failure found.
fn runner(what: &str, cases: u32, shrink: bool) -> TestRunner {
    let seed = common::seed(what);
    let config = Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: if shrink { u32::MAX } else { 0 },
        max_shrink_time: 20_000,
        ..Config::default()
    };
    TestRunner::new(config)
}

#[test]
fn two_holders_never_believe_at_once() {
    // USEC_LEASE_CASES raises the count for a longer hunt.
    let cases = std::env::var("USEC_LEASE_CASES").ok().and_then(|text| text.parse().ok()).unwrap_or(3_000);
    let mut runner = runner("lease safety", cases, true);
    let rho = prop_oneof![Just(0u32), 1..1_000u32, 1_000..200_000u32];
    let (grants, handovers) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let result = runner.run(&scenario(rho), |scenario| {
        let drift = DriftBound::from_ppm(scenario.rho_ppm).expect("ρ below 100 %");
        match run(&scenario, drift) {
            Ok(stats) => {
                grants.set(grants.get() + stats.grants);
                handovers.set(handovers.get() + stats.handovers);
                Ok(())
            }
            Err(overlap) => Err(TestCaseError::fail(format!("{overlap:?}"))),
        }
    });
    if let Err(error) = result {
        panic!("two holders believed at once: {error}");
    }
    let (grants, handovers) = (grants.get(), handovers.get());
    eprintln!("{grants} grants, {handovers} handovers between holders");
    assert!(handovers > 1_000, "the scenarios hardly ever hand the lease over ({handovers})");
}

#[test]
fn a_grantor_that_ignores_drift_is_caught() {
    let mut runner = runner("lease without the drift factor", 20_000, false);
    let tried = std::cell::Cell::new(0);
    let result = runner.run(&scenario(10_000..200_000u32), |scenario| {
        tried.set(tried.get() + 1);
        match run(&scenario, DriftBound::zero()) {
            Ok(_) => Ok(()),
            Err(overlap) => Err(TestCaseError::fail(format!("{overlap:?}"))),
        }
    });
    eprintln!("{} scenarios run before the first counterexample", tried.get());
    match result {
        Err(TestError::Fail(why, scenario)) => {
            eprintln!(
                "counterexample, as expected: {why}\n  ρ {} ppm, Δ {} ns",
                scenario.rho_ppm, scenario.lease_ns
            );
        }
        other => panic!("no counterexample found for a grantor without the drift factor: {other:?}"),
    }
}

/// Holder 0's clock runs 10 % slow and the grantor's 10 % fast; holder 1 asks the moment
/// the grantor's wait ends. Without the drift factor the grantor hands over while holder 0
/// still believes; with it, the handover comes one nanosecond after holder 0's belief ends.
#[test]
fn the_worst_case_by_hand() {
    let rho_ppm = 100_000;
    let exact = ClockSpec { offset_ns: 0, stretches: vec![(1, MILLION)] };
    let slow = ClockSpec { offset_ns: 0, stretches: vec![(1, MILLION - 100_000)] };
    let fast = ClockSpec { offset_ns: 0, stretches: vec![(1, MILLION + 100_000)] };
    let ask = |holder, at_ns| Ask { holder, at_ns, request_delay_ns: 0, reply_delay_ns: 0 };
    let scenario = |second_ask_ns| Scenario {
        rho_ppm,
        lease_ns: 10_000,
        slack_ns: 0,
        clocks: vec![slow.clone(), exact.clone(), fast.clone()],
        asks: vec![ask(0, 0), ask(1, second_ask_ns)],
    };
    // Holder 0 believes over [0, 11 112): 0.9 × 11 112 ≥ 10 000 first there.
    let naive = run(&scenario(9_100), DriftBound::zero()).expect_err("Δ on a fast clock ends early");
    assert_eq!((naive.first, naive.second), ((0, 0, 11_112), (1, 9_100, 19_100)));
    // W = ⌈10 000 × 1.1 / 0.9⌉ + 1 = 12 224 on the grantor's clock, reached at 11 113.
    let drift = DriftBound::from_ppm(rho_ppm).unwrap();
    assert_eq!(run(&scenario(11_112), drift).unwrap().handovers, 0, "denied one nanosecond early");
    assert_eq!(run(&scenario(11_113), drift).unwrap().handovers, 1);
}

#[test]
fn model_clocks_read_and_invert_exactly() {
    let spec = ClockSpec { offset_ns: 5, stretches: vec![(10, MILLION / 2), (10, 2 * MILLION)] };
    let clock = model::ModelClock::new(&spec);
    assert_eq!([clock.read(0), clock.read(3), clock.read(10), clock.read(12)], [5, 6, 10, 14]);
    assert_eq!(clock.first_reaching(6, 0), 2);
    assert_eq!(clock.first_reaching(10, 0), 10);
    assert_eq!(clock.first_reaching(14, 0), 12);
    assert_eq!(clock.first_reaching(5, 7), 7);
    for real in 0..40 {
        let value = clock.read(real);
        let first = clock.first_reaching(value, 0);
        assert!(first <= real && clock.read(first) == value && (first == 0 || clock.read(first - 1) < value));
    }
}
