//! The VOPR of Mu on membership views (uKharon): the real replica, membership service and
//! Active(view) leases, simulated. Leadership follows views; leaders answer reads locally
//! while their view is active.
//!
//! One `u64` seed drives the group's size and sizes, the fabric's latency, the clocks'
//! drift (within the lease's ρ), what clients write and where, and the faults: crashes (of
//! the leader half the time) — the failure detectors remove the member from the next view
//! —, restarts of crashed members as new processes (added back to the view, caught up by
//! Mu), pauses (a paused leader wakes up with its old view and tries to read locally) and
//! resumes (the member is added back). A safety phase with faults, then a liveness phase
//! without.
//!
//! Checked on every run:
//! - all replicas' applied commands are prefixes of one sequence; none applied twice;
//! - no command acknowledged to a client is lost;
//! - **no local read is stale**: a read answered locally at virtual time `t` sees a state
//!   holding every write acknowledged before `t`;
//! - at no virtual instant do two replicas both answer reads locally;
//! - once faults stop, a new command commits and a local read is answered within a
//!   bounded virtual time.
//!
//! `cargo test -p usec-replication --test views_vopr` runs the regular seeds;
//! `-- --seeds N` runs N, `-- --seed S` replays one (verbose), `-- --first F` starts
//! elsewhere. A failing seed is printed with the command that replays it.

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
        match std::panic::catch_unwind(|| run::run(seed, options.verbose)) {
            Ok(Ok(summary)) => {
                if std::env::var("USEC_VOPR_EACH").is_ok() {
                    println!("seed {seed}: {summary:?}");
                }
                totals.add(&summary)
            }
            Ok(Err(failure)) => {
                eprintln!("views_vopr: seed {seed} FAILED: {failure}");
                eprintln!("views_vopr: replay with: cargo test -p usec-replication --test views_vopr -- --seed {seed}");
                return ExitCode::FAILURE;
            }
            Err(_) => {
                eprintln!("views_vopr: seed {seed} PANICKED (see above)");
                eprintln!("views_vopr: replay with: cargo test -p usec-replication --test views_vopr -- --seed {seed}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "views_vopr: {} seeds from {} passed in {:.1?}: {}",
        options.seeds,
        options.first,
        start.elapsed(),
        totals
    );
    ExitCode::SUCCESS
}
