//! The VOPR of Mu on membership views (uKharon): the real replica, membership service and
//! Active(view) leases, simulated. Leadership follows views; leaders answer reads locally
//! while their view is active.
//!
//! One `u64` seed drives the group's size and sizes, the fabric's latency, the clocks'
//! drift (within the lease's ρ), what clients write and where, and the faults: crashes (of
//! the leader half the time) — the failure detectors remove the member from the next view
//! —, restarts of crashed members as new processes (added back to the view, caught up by
//! Mu, promoted back to a voter), pauses (a paused leader wakes up with its old view and tries to read locally) and
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

use usec_check::seeds::Seeds;

fn main() -> ExitCode {
    let seeds = Seeds::from_env(1_000);
    let mut totals = run::Totals::default();
    let Some(elapsed) =
        seeds.run("views_vopr", "cargo test -p usec-replication --test views_vopr --", run::run, |summary| {
            totals.add(summary)
        })
    else {
        return ExitCode::FAILURE;
    };
    println!("views_vopr: {} seeds from {} passed in {elapsed:.1?}: {totals}", seeds.count, seeds.first);
    ExitCode::SUCCESS
}
