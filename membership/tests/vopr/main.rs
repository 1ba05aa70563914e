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

use usec_check::seeds::Seeds;

fn main() -> ExitCode {
    let seeds = Seeds::from_env(1_000);
    let mut totals = run::Totals::default();
    let Some(elapsed) =
        seeds.run("paxos vopr", "cargo test -p usec-membership --test vopr --", run::run, |summary| {
            totals.add(summary)
        })
    else {
        return ExitCode::FAILURE;
    };
    println!("paxos vopr: {} seeds from {} passed in {elapsed:.1?}: {totals}", seeds.count, seeds.first);
    ExitCode::SUCCESS
}
