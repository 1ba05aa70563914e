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

use usec_check::seeds::Seeds;

fn main() -> ExitCode {
    let seeds = Seeds::from_env(1_000);
    let mut totals = run::Totals::default();
    let Some(elapsed) =
        seeds.run("vopr", "cargo test -p usec-replication --test vopr --", run::run, |summary| {
            totals.add(summary)
        })
    else {
        return ExitCode::FAILURE;
    };
    println!("vopr: {} seeds from {} passed in {elapsed:.1?}: {totals}", seeds.count, seeds.first);
    ExitCode::SUCCESS
}
