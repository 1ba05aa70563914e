//! The VOPR of one-sided Paxos: the real proposer, learner and port code on simulated
//! clusters, seed by seed.
//!
//! One `u64` seed picks everything: 3 or 5 acceptors, 1 to 5 contending proposers (on
//! nodes of their own, or on the acceptors' nodes, reaching their own acceptor through
//! local memory), the ring's length (1 to 16 positions: slots reused across many
//! instances), the values' sizes, the first instance (sometimes just below 2^32, so that
//! slot tags wrap), the fabric's latency and its spikes, the clocks' drift, and the
//! faults: crashes of proposers and of a minority of acceptors, pauses and resumes of
//! any node (a paused proposer wakes up with its old state and carries on), partitions
//! (lost messages: retransmitted, or failing the QPs, which are then repaired) and heals.
//! A safety phase with faults, then a liveness phase without.
//!
//! Checked on every run:
//! - one decision per instance, ever: every proposer's decision and every learner's
//!   learning of an instance is the same value;
//! - that value was proposed for that instance;
//! - once faults stop, every live proposer gets past the last instance, and a learner
//!   that proposes nothing learns it.
//!
//! `cargo test -p usec-membership --test vopr` runs the regular seeds; `-- --seeds N`
//! runs N, `-- --first F` starts elsewhere, `-- --seed S` (or `USEC_SEED=S`) replays one
//! seed with a trace of faults and of every proposer's rounds.

mod run;

use std::process::ExitCode;
use std::time::Instant;

struct Options {
    first: u64,
    seeds: u64,
    verbose: bool,
}

fn options() -> Options {
    let mut options = Options { first: 0, seeds: 1_000, verbose: false };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> u64 {
            args.next()
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("{what} takes a number"))
        };
        match arg.as_str() {
            "--seed" => {
                options.first = number("--seed");
                options.seeds = 1;
                options.verbose = true;
            }
            "--seeds" => options.seeds = number("--seeds"),
            "--first" => options.first = number("--first"),
            "--verbose" => options.verbose = true,
            // What cargo's test runner passes along (filters, --nocapture, ...): ignored.
            _ => {}
        }
    }
    if let Ok(seed) = std::env::var("USEC_SEED") {
        options.first = seed.parse().expect("USEC_SEED is a number");
        options.seeds = 1;
        options.verbose = true;
    }
    options
}

fn main() -> ExitCode {
    let options = options();
    let start = Instant::now();
    let mut totals = run::Totals::default();
    for seed in options.first..options.first + options.seeds {
        let replay = format!("cargo test -p usec-membership --test vopr -- --seed {seed}");
        match std::panic::catch_unwind(|| run::run(seed, options.verbose)) {
            Ok(Ok(summary)) => totals.add(&summary),
            Ok(Err(failure)) => {
                eprintln!("paxos vopr: seed {seed} FAILED: {failure}");
                eprintln!("paxos vopr: replay with: {replay}");
                return ExitCode::FAILURE;
            }
            Err(_) => {
                eprintln!("paxos vopr: seed {seed} PANICKED (see above)");
                eprintln!("paxos vopr: replay with: {replay}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "paxos vopr: {} seeds from {} passed in {:.1?}: {totals}",
        options.seeds,
        options.first,
        start.elapsed()
    );
    ExitCode::SUCCESS
}
