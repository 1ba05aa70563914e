//! The Active(view) rule at its edge, on clocks whose rates change piecewise within ρ:
//! member A keeps view 1 active from renewals whose reads may reach the acceptors the
//! instant before they move on to view 2; member B learns view 2 the moment it is decided
//! (or a little later) and starts it as soon as the rule lets it. The last real instant at
//! which the real [`ActiveLease`] of A finds view 1 active must come before the first at
//! which B's finds view 2 active. Leaving the drift factor out of the wait is caught.
//!
//! The simulation (`tests/sim_active_lease/`) runs whole memberships on constant-rate
//! clocks; this runs the two-member worst case, with rates that change under the members'
//! feet and delays down to zero, where a wrong wait shows first.
//!
//! [`ActiveLease`]: usec_lease_clock::lease::ActiveLease

use proptest::prelude::*;
use proptest::test_runner::TestError;
use usec_lease_clock::lease::{ActiveConfig, ActiveLease, DriftBound, Renewal, ViewSummary, Voter, VoterSet};
use usec_qp_pool::NodeId;

use crate::model::{ClockSpec, ModelClock};
use crate::{clock, runner};

/// A renewal of view 1 by A, in real time: issued at `at_ns`, reaching the acceptors
/// `read_delay_ns` later (it counts only if that is before view 2 was decided), confirmed
/// at A `reply_delay_ns` after that.
#[derive(Clone, Copy, Debug)]
struct Read {
    at_ns: u64,
    read_delay_ns: u64,
    reply_delay_ns: u64,
}

/// One view change.
#[derive(Clone, Debug)]
struct ViewChange {
    rho_ppm: u32,
    lease_ns: u64,
    /// A's clock, then B's.
    clocks: Vec<ClockSpec>,
    /// When a majority accepted view 2, in real time: A's reads that reach the acceptors
    /// from then on find the slot moved on.
    decided_ns: u64,
    /// B learns view 2 this long after it was decided.
    learn_delay_ns: u64,
    reads: Vec<Read>,
}

/// What a safe run saw.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    /// The end (exclusive) of A's last real instant with view 1 active, if it ever was.
    a_until: Option<u64>,
    /// B's first real instant with view 2 active.
    b_from: u64,
}

fn view(view_id: u64, nodes: &[u16]) -> ViewSummary {
    let voters =
        nodes.iter().map(|&node| Voter { node: NodeId::new(node).expect("a node id"), incarnation: 0 });
    ViewSummary { view_id, voters: VoterSet::new(voters) }
}

/// Runs `change` with members that assume the drift bound `assumed`; `Err` says how A's
/// view 1 and B's view 2 overlapped.
fn run(change: &ViewChange, assumed: DriftBound) -> Result<Outcome, String> {
    let (clock_a, clock_b) = (ModelClock::new(&change.clocks[0]), ModelClock::new(&change.clocks[1]));
    let config = ActiveConfig {
        lease_ns: change.lease_ns,
        drift: assumed,
        renew_before_ns: change.lease_ns / 2,
        retry_after_ns: 1,
    };
    // A learned view 1 at real time 0.
    let mut a = ActiveLease::new(config).expect("a valid configuration");
    a.on_view_learned(clock_a.read(0), &view(1, &[1, 2, 3]));
    let a_from = clock_a.first_reaching(a.active_from_ns().expect("view 1 is known"), 0);
    let mut confirmations: Vec<(u64, Renewal)> = change
        .reads
        .iter()
        .filter(|read| read.at_ns + read.read_delay_ns < change.decided_ns)
        .map(|read| {
            let renewal = Renewal { view_id: 1, issued_at_ns: clock_a.read(read.at_ns) };
            (read.at_ns + read.read_delay_ns + read.reply_delay_ns, renewal)
        })
        .collect();
    confirmations.sort_by_key(|&(at_ns, renewal)| (at_ns, renewal.issued_at_ns));
    // Between two confirmations A's state is fixed: it believes from its start (or the
    // confirmation) until its clock reaches the end so far.
    let mut a_until = None;
    for (index, &(at_ns, renewal)) in confirmations.iter().enumerate() {
        let until_local = a.on_confirmed(clock_a.read(at_ns), renewal).expect("view 1 is current");
        let next_ns = confirmations.get(index + 1).map_or(u64::MAX, |&(next, _)| next);
        let (from_ns, until_ns) =
            (at_ns.max(a_from), clock_a.first_reaching(until_local, at_ns).min(next_ns));
        if from_ns < until_ns {
            assert!(a.is_active(1, clock_a.read(from_ns)) && a.is_active(1, clock_a.read(until_ns - 1)));
            a_until = Some(until_ns);
        }
    }

    // B learns view 2 (voter 3 replaced by 4) when told, renews just before it may start.
    let mut b = ActiveLease::new(config).expect("a valid configuration");
    let learned_ns = change.decided_ns + change.learn_delay_ns;
    b.on_view_learned(clock_b.read(learned_ns), &view(2, &[1, 2, 4]));
    let b_from_local = b.active_from_ns().expect("view 2 is known");
    let issued_ns = clock_b.first_reaching(b_from_local - 1, learned_ns);
    let issued_local = clock_b.read(issued_ns);
    b.on_confirmed(issued_local, Renewal { view_id: 2, issued_at_ns: issued_local });
    let b_from = clock_b.first_reaching(b_from_local, issued_ns);
    assert!(b.is_active(2, clock_b.read(b_from)) && !b.is_active(2, clock_b.read(b_from - 1)));

    match a_until {
        Some(a_until) if a_until > b_from => Err(format!(
            "A finds view 1 active until real {a_until} ns, B finds view 2 active from {b_from} ns"
        )),
        _ => Ok(Outcome { a_until, b_from }),
    }
}

/// View changes with ρ drawn by `rho_ppm`, Δ up to 50 µs, the decision after A's start,
/// and reads clustered just before the decision as often as anywhere.
fn view_change(rho_ppm: impl Strategy<Value = u32>) -> impl Strategy<Value = ViewChange> {
    (rho_ppm, 2..=50_000u64).prop_flat_map(|(rho_ppm, lease_ns)| {
        let horizon_ns = 10 * lease_ns;
        let delay = prop_oneof![3 => Just(0u64), 2 => 0..=lease_ns / 10, 1 => 0..=3 * lease_ns];
        let decided = 3 * lease_ns..=7 * lease_ns;
        let clocks = prop::collection::vec(clock(rho_ppm, horizon_ns), 2);
        (clocks, decided, delay.clone()).prop_flat_map(move |(clocks, decided_ns, learn_delay_ns)| {
            let at = prop_oneof![
                2 => (0..=lease_ns / 100).prop_map(move |before| decided_ns - 1 - before),
                1 => 0..decided_ns + lease_ns,
            ];
            let delay = prop_oneof![3 => Just(0u64), 2 => 0..=lease_ns / 10, 1 => 0..=3 * lease_ns];
            let read = (at, delay.clone(), delay).prop_map(|(at_ns, read_delay_ns, reply_delay_ns)| Read {
                at_ns,
                read_delay_ns,
                reply_delay_ns,
            });
            prop::collection::vec(read, 1..8).prop_map(move |reads| ViewChange {
                rho_ppm,
                lease_ns,
                clocks: clocks.clone(),
                decided_ns,
                learn_delay_ns,
                reads,
            })
        })
    })
}

#[test]
fn an_old_view_is_never_active_once_a_new_one_is() {
    let cases = std::env::var("USEC_LEASE_CASES").ok().and_then(|text| text.parse().ok()).unwrap_or(3_000);
    let mut runner = runner("active view safety", cases, true);
    let rho = prop_oneof![Just(0u32), 1..1_000u32, 1_000..200_000u32];
    let (active, min_gap) = (std::cell::Cell::new(0u32), std::cell::Cell::new(u64::MAX));
    let result = runner.run(&view_change(rho), |change| {
        let drift = DriftBound::from_ppm(change.rho_ppm).expect("ρ below 100 %");
        let outcome = run(&change, drift).map_err(TestCaseError::fail)?;
        if let Some(a_until) = outcome.a_until {
            active.set(active.get() + 1);
            min_gap.set(min_gap.get().min(outcome.b_from - a_until));
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("an old view was active while a new one was: {error}");
    }
    eprintln!(
        "{} of the view changes had view 1 active at A; the closest handover left {} ns",
        active.get(),
        min_gap.get()
    );
    assert!(active.get() > cases / 2, "A's view was hardly ever active ({})", active.get());
}

#[test]
fn a_wait_without_the_drift_factor_is_caught() {
    let mut runner = runner("active view without the drift factor", 20_000, false);
    let result = runner.run(&view_change(10_000..200_000u32), |change| {
        run(&change, DriftBound::zero()).map(drop).map_err(TestCaseError::fail)
    });
    match result {
        Err(TestError::Fail(why, change)) => {
            eprintln!(
                "counterexample, as expected: {why}\n  ρ {} ppm, Δ {} ns",
                change.rho_ppm, change.lease_ns
            );
        }
        other => panic!("no counterexample found for a wait without the drift factor: {other:?}"),
    }
}

/// A's clock 10 % slow, B's 10 % fast; A's last renewal reaches the acceptors the instant
/// before view 2 is decided and B learns it at once. Without the drift factor B starts
/// while A still believes; with it, one nanosecond after.
#[test]
fn the_worst_case_by_hand() {
    let slow = ClockSpec { offset_ns: 0, stretches: vec![(1, 900_000)] };
    let fast = ClockSpec { offset_ns: 0, stretches: vec![(1, 1_100_000)] };
    let change = ViewChange {
        rho_ppm: 100_000,
        lease_ns: 9_000,
        clocks: vec![slow, fast],
        decided_ns: 30_001,
        learn_delay_ns: 0,
        reads: vec![Read { at_ns: 30_000, read_delay_ns: 0, reply_delay_ns: 0 }],
    };
    // A issues at local 27 000 and believes until local 36 000, real 40 000.
    let naive = run(&change, DriftBound::zero()).expect_err("Δ + 1 on a fast clock ends early");
    assert!(naive.contains("until real 40000 ns"), "{naive}");
    // S = ⌈9 000 × 1.1 / 0.9⌉ + 1 = 11 001 from B's local 33 001: local 44 002 at real 40 002.
    let outcome = run(&change, DriftBound::from_ppm(100_000).unwrap()).expect("safe");
    assert_eq!((outcome.a_until, outcome.b_from), (Some(40_000), 40_002));
}
