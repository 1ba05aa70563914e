//! The VOPR of Mu: the real replica code, simulated to death.
//!
//! One `u64` seed drives everything: the group's size and sizes (ring, slot, pipeline),
//! the fabric's latency, the clocks' drift, what clients propose and where, and the
//! faults — crashes (of the leader half the time), restarts of crashed members as new
//! processes without their state (they rejoin, are caught up, and count again only once a
//! leader confirmed them), pauses and resumes (a paused leader wakes up and keeps
//! writing), members descheduled for a while (their core taken: not stopped, so their
//! processes probe alive), partitions and heals. Crashed and not-yet-confirmed members together stay a
//! minority. A safety phase with faults, then a liveness phase without: every paused node
//! resumes, every link heals, every crashed member restarts.
//!
//! What a crashed process applied stays in the checks below, next to its successor's.
//!
//! Checked on every run:
//! - all replicas' applied commands are prefixes of one sequence (checked as it runs);
//! - no command is applied twice;
//! - no command acknowledged to a client is lost (it is in the final sequence);
//! - once faults stop, with a majority up and connected, a new command commits within a
//!   bounded virtual time, and every live replica applies everything.
//!
//! `cargo test -p usec-replication --test vopr` runs the regular seeds;
//! `-- --seeds N` runs N, `-- --seed S` replays one, `-- --first F` starts elsewhere.
//! A failing seed is printed with the command that replays it; `--verbose` traces each
//! replica's decisions, and `USEC_VOPR_FABRIC_TRACE=1` (or `=all`) adds the fabric's lost
//! and failed operations (or all of them).

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
                eprintln!("vopr: seed {seed} FAILED: {failure}");
                eprintln!("vopr: replay with: cargo test -p usec-replication --test vopr -- --seed {seed}");
                return ExitCode::FAILURE;
            }
            Err(_) => {
                eprintln!("vopr: seed {seed} PANICKED (see above)");
                eprintln!("vopr: replay with: cargo test -p usec-replication --test vopr -- --seed {seed}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "vopr: {} seeds from {} passed in {:.1?}: {}",
        options.seeds,
        options.first,
        start.elapsed(),
        totals
    );
    ExitCode::SUCCESS
}
