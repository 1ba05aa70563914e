//! `paxos-decide`: how long one-sided Paxos over RDMA compare-and-swap takes to decide an
//! instance (`usec-membership`), on the soft provider.
//!
//! Three nodes in threads of this process, each its own soft device on one fabric,
//! bootstrapped into a qp-pool cluster over loopback TCP; each is an acceptor and runs a
//! proposer and a learner through the real `PaxosDriver` (its own acceptor through local
//! atomics, the two others through RDMA). Values are a full view (16 members, 186 bytes),
//! so every accept WRITEs four 64-byte lines before its CAS. Measured, one after the other
//! in one run:
//!
//! - (a) baseline: one RDMA CAS round trip from node 0 to node 1's slot (the unit a
//!   Paxos phase costs);
//! - (b) uncontended: node 0 alone decides instance after instance; a sample is
//!   `propose` → the proposer reports the instance decided (prepare and accept, each a
//!   round trip to the two remote acceptors);
//! - (c) contended: the three nodes propose every instance at once, each moving on as soon
//!   as it knows the last one decided; a sample is one node's `propose` → that node knows
//!   the instance decided (its own value won, it adopted the winner's, or its learner read
//!   the decision), lost rounds and back-offs included.
//!
//! On a 2-core machine the three busy-polling threads share the cores (they yield every
//! few turns): contention here includes the scheduler's. The report says how many cores
//! were usable, where each thread was pinned, and the load average before and after.
#![forbid(unsafe_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use clap::Parser;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use usec_benches::latency::{LatencySummary, Recorder};
use usec_benches::pinning::{pin_current_thread, usable_cores, Pinning};
use usec_benches::run_info::{load_average, RunInfo};
use usec_lease_clock::clock::{Clock, MonotonicClock};
use usec_membership::{
    Action, Layout, Learner, LearnerConfig, Member, MemberKind, OpClass, Outcome, PaxosDriver, PaxosPort,
    Proposer, ProposerConfig, ProposerEvent, Role, Token, View,
};
use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId, TcpNetwork};
use usec_verbs::Context;

/// Decision latency of one-sided Paxos on the soft provider.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Instances measured in each of (b) and (c).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    instances: u64,
    /// Instances decided first in each, not measured.
    #[arg(long, default_value_t = 1_000)]
    warmup: u64,
    /// CAS round trips measured for (a).
    #[arg(long, default_value_t = 20_000)]
    round_trips: u64,
    /// Cores for the three nodes' threads, `a,b,c` (default: unpinned).
    #[arg(long)]
    cores: Option<String>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

const NODES: usize = 3;
const PHASE_BOOT: u8 = 0;
const PHASE_BASELINE: u8 = 1;
const PHASE_ALONE: u8 = 2;
const PHASE_CONTENDED: u8 = 3;
const PHASE_STOP: u8 = 4;

/// What the node threads share with the main thread.
struct Shared {
    phase: AtomicU8,
    /// Per node, the phase it finished last.
    finished: Vec<AtomicU8>,
    /// The last instance of the uncontended phase (where the contended one starts).
    alone_end: AtomicU64,
    barrier: Barrier,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    run: RunInfo,
    provider: String,
    load_before: Option<[f64; 3]>,
    load_after: Option<[f64; 3]>,
    pinning: Vec<Pinning>,
    value_bytes: usize,
    cas_round_trip: LatencySummary,
    uncontended: LatencySummary,
    contended: LatencySummary,
    contended_lost_rounds: u64,
    contended_rounds: u64,
}

/// A node's proposer and learner.
struct Participant {
    proposer: Proposer<ChaCha8Rng>,
    learner: Learner,
}

impl Role for Participant {
    fn tick(&mut self, now_ns: u64) {
        self.proposer.tick(now_ns);
        self.learner.tick(now_ns);
    }

    fn poll_action(&mut self) -> Option<Action> {
        self.proposer.poll_action().or_else(|| self.learner.poll_action())
    }

    fn handle_completion(&mut self, now_ns: u64, token: Token, outcome: Outcome<'_>) {
        if token.class.is_proposer() {
            self.proposer.handle_completion(now_ns, token, outcome);
        } else {
            self.learner.handle_completion(now_ns, token, outcome);
        }
    }
}

/// One CAS at a time on acceptor 1's slot 0, predicting a word no slot holds: it never
/// changes the slot.
#[derive(Default)]
struct CasProbe {
    pending: Option<Action>,
    done: bool,
}

impl Role for CasProbe {
    fn tick(&mut self, _now_ns: u64) {}

    fn poll_action(&mut self) -> Option<Action> {
        self.pending.take()
    }

    fn handle_completion(&mut self, _now_ns: u64, _token: Token, outcome: Outcome<'_>) {
        assert!(matches!(outcome, Outcome::Swapped { .. }), "the probe CAS failed: {outcome:?}");
        self.done = true;
    }
}

fn node(id: usize) -> NodeId {
    NodeId::new(id as u16).expect("small")
}

fn main() -> Result<()> {
    let options = Options::parse();
    let usable = usable_cores();
    let cores: Vec<Option<usize>> = match &options.cores {
        None => vec![None; NODES],
        Some(list) => {
            let parsed: Result<Vec<usize>, _> = list.split(',').map(|core| core.trim().parse()).collect();
            let parsed = parsed.context("--cores takes three core numbers, a,b,c")?;
            if parsed.len() != NODES {
                return Err(anyhow!("--cores takes three core numbers, a,b,c"));
            }
            parsed.into_iter().map(Some).collect()
        }
    };
    let mut run = RunInfo::collect(usable.len());
    run.timer = "CLOCK_MONOTONIC around each decision (and each CAS)".to_string();
    let load_before = load_average();
    let device = format!("soft:paxos-decide-{}", std::process::id());
    let listeners: Vec<TcpListener> =
        (0..NODES).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    let addrs = listeners.iter().map(|listener| listener.local_addr()).collect::<Result<Vec<_>, _>>()?;
    let spec = ClusterSpec::new(
        "paxos-decide",
        &ClusterSpec::fresh_run(),
        (0..NODES).map(|id| (node(id), addrs[id])),
    )?;
    let layout = Layout::default();
    let value = View::new(1, (0..16).map(|id| Member::new(node(id), 1, MemberKind::App)).collect())?.encode();
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(PHASE_BOOT),
        finished: (0..NODES).map(|_| AtomicU8::new(PHASE_BOOT)).collect(),
        alone_end: AtomicU64::new(0),
        barrier: Barrier::new(NODES),
    });
    let outcome: Vec<Result<NodeOutcome>> = std::thread::scope(|scope| {
        let threads: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(id, listener)| {
                let (spec, device, shared, value) =
                    (spec.clone(), device.clone(), shared.clone(), value.clone());
                let options = &options;
                let core = cores[id];
                scope.spawn(move || {
                    run_node(id, core, &device, spec, listener, layout, &value, &shared, options)
                })
            })
            .collect();
        for phase in [PHASE_BASELINE, PHASE_ALONE, PHASE_CONTENDED] {
            shared.phase.store(phase, Ordering::SeqCst);
            while shared.finished.iter().any(|done| done.load(Ordering::SeqCst) < phase)
                && !threads.iter().any(|thread| thread.is_finished())
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            eprintln!("phase {phase} done");
        }
        shared.phase.store(PHASE_STOP, Ordering::SeqCst);
        threads.into_iter().map(|thread| thread.join().expect("no panic")).collect()
    });
    let outcomes = outcome.into_iter().collect::<Result<Vec<NodeOutcome>>>()?;
    let load_after = load_average();
    let mut contended = Recorder::new();
    for outcome in &outcomes {
        contended.merge(&outcome.contended);
    }
    let report = Report {
        benchmark: "paxos-decide",
        provider: "soft (userspace RDMA over shared memory, one process, a thread per node)".to_string(),
        run,
        load_before,
        load_after,
        pinning: outcomes.iter().map(|outcome| outcome.pinning.clone()).collect(),
        value_bytes: value.len(),
        cas_round_trip: outcomes[0].baseline.summary(),
        uncontended: outcomes[0].alone.summary(),
        contended: contended.summary(),
        contended_lost_rounds: outcomes.iter().map(|outcome| outcome.lost_rounds).sum(),
        contended_rounds: outcomes.iter().map(|outcome| outcome.rounds).sum(),
    };
    print(&report);
    if let Some(path) = &options.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn print(report: &Report) {
    report.run.warn_if_debug();
    let pinning: Vec<String> = report.pinning.iter().map(ToString::to_string).collect();
    println!("paxos-decide: one-sided Paxos, 3 acceptors, {}", report.provider);
    println!("{}; threads: {}", report.run.provenance(), pinning.join(", "));
    let load = |load: Option<[f64; 3]>| {
        load.map_or("unknown".to_string(), |[one, five, _]| format!("{one:.2} (1 min), {five:.2} (5 min)"))
    };
    println!("load average before: {}; after: {}", load(report.load_before), load(report.load_after));
    println!("values: {} bytes (a view of 16 members)", report.value_bytes);
    println!("(a) CAS round trip, node 0 -> node 1:      {}", report.cas_round_trip);
    println!("(b) decision, 1 proposer (uncontended):   {}", report.uncontended);
    println!("(c) decision, 3 proposers (contended):    {}", report.contended);
    println!(
        "    contended: {} rounds, {} lost ({:.1} %)",
        report.contended_rounds,
        report.contended_lost_rounds,
        100.0 * report.contended_lost_rounds as f64 / report.contended_rounds.max(1) as f64
    );
    println!(
        "ratio {:.2} (uncontended decision / CAS round trip, medians)",
        report.uncontended.p50_ns as f64 / report.cas_round_trip.p50_ns.max(1) as f64
    );
}

/// What one node's thread measured.
struct NodeOutcome {
    pinning: Pinning,
    baseline: Recorder,
    alone: Recorder,
    contended: Recorder,
    rounds: u64,
    lost_rounds: u64,
}

#[allow(clippy::too_many_arguments)]
fn run_node(
    id: usize,
    core: Option<usize>,
    device: &str,
    spec: ClusterSpec,
    listener: TcpListener,
    layout: Layout,
    value: &[u8],
    shared: &Shared,
    options: &Options,
) -> Result<NodeOutcome> {
    let pinning = pin_current_thread(core);
    let context = Context::open(device)?;
    let config = PaxosPort::configure(NodeConfig::new(spec, node(id)), &layout, NODES, true)?;
    let cluster = Cluster::bootstrap_with(&context, config, Box::new(TcpNetwork::from_listener(listener)?))?;
    let acceptors: Vec<NodeId> = (0..NODES).map(node).collect();
    let mut driver = PaxosDriver::new(cluster, layout, &acceptors)?;
    let clock = MonotonicClock::new();
    let proposer =
        Proposer::new(layout, ProposerConfig::new(id as u16, NODES), ChaCha8Rng::seed_from_u64(id as u64))?;
    let learner =
        Learner::new(layout, LearnerConfig { acceptors: NODES, scan_period_ns: 5_000 }, 0, clock.now_ns());
    let mut participant = Participant { proposer, learner };
    let mut outcome = NodeOutcome {
        pinning,
        baseline: Recorder::new(),
        alone: Recorder::new(),
        contended: Recorder::new(),
        rounds: 0,
        lost_rounds: 0,
    };
    let mut decided = 0u64;
    loop {
        let phase = shared.phase.load(Ordering::SeqCst);
        if phase == PHASE_STOP {
            return Ok(outcome);
        }
        if shared.finished[id].load(Ordering::SeqCst) >= phase {
            // Serve the control plane, and let the others have the cores.
            driver.turn(clock.now_ns(), &mut participant);
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        match phase {
            PHASE_BASELINE if id == 0 => {
                let mut probe = CasProbe::default();
                for round_trip in 0..options.round_trips + options.warmup {
                    let token = Token { class: OpClass::Cas, acceptor: 1, sequence: round_trip };
                    probe.pending = Some(Action::Cas { token, offset: 0, compare: u64::MAX, swap: 0 });
                    probe.done = false;
                    let start = clock.now_ns();
                    while !probe.done {
                        driver.turn(clock.now_ns(), &mut probe);
                    }
                    if round_trip >= options.warmup {
                        outcome.baseline.record_ns(clock.now_ns() - start);
                    }
                }
            }
            PHASE_ALONE if id == 0 => {
                let end = options.instances + options.warmup;
                let start = decided + 1;
                decide(
                    &mut driver,
                    &mut participant,
                    &clock,
                    value,
                    start..=end,
                    &mut decided,
                    &mut |instance, ns| {
                        if instance > options.warmup {
                            outcome.alone.record_ns(ns);
                        }
                    },
                )?;
                shared.alone_end.store(end, Ordering::SeqCst);
            }
            PHASE_CONTENDED => {
                shared.barrier.wait();
                let first = shared.alone_end.load(Ordering::SeqCst) + 1;
                let end = first + options.instances + options.warmup - 1;
                let (before_rounds, before_lost) = {
                    let stats = participant.proposer.stats();
                    (stats.rounds, stats.lost_rounds)
                };
                let start = decided.max(first - 1) + 1;
                decide(
                    &mut driver,
                    &mut participant,
                    &clock,
                    value,
                    start..=end,
                    &mut decided,
                    &mut |instance, ns| {
                        if instance >= first + options.warmup {
                            outcome.contended.record_ns(ns);
                        }
                    },
                )?;
                let stats = participant.proposer.stats();
                outcome.rounds = stats.rounds - before_rounds;
                outcome.lost_rounds = stats.lost_rounds - before_lost;
            }
            _ => {}
        }
        shared.finished[id].store(phase, Ordering::SeqCst);
    }
}

/// Proposes each instance of `instances` once the one before is known decided, and
/// records `propose` → known decided for each through `sample`.
fn decide(
    driver: &mut PaxosDriver,
    participant: &mut Participant,
    clock: &MonotonicClock,
    value: &[u8],
    instances: std::ops::RangeInclusive<u64>,
    decided: &mut u64,
    sample: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let end = *instances.end();
    let mut proposed_at: Option<(u64, u64)> = None;
    let mut turns = 0u64;
    while *decided < end {
        let now = clock.now_ns();
        if participant.proposer.is_idle() && proposed_at.is_none_or(|(instance, _)| instance <= *decided) {
            let instance = *decided + 1;
            participant.proposer.propose(now, instance, value)?;
            proposed_at = Some((instance, now));
        }
        driver.turn(now, participant);
        let mut known = *decided;
        while let Some(event) = participant.proposer.poll_event() {
            match event {
                ProposerEvent::Decided { instance, .. } => known = known.max(instance),
                ProposerEvent::Obsolete { .. } => participant.learner.wake(now),
                ProposerEvent::Unchosen { instance } => known = known.max(instance - 1),
                ProposerEvent::Exhausted { instance } => {
                    return Err(anyhow!("ballots ran out in {instance}"))
                }
            }
        }
        while let Some(learned) = participant.learner.poll_event() {
            known = known.max(learned.instance);
        }
        if known > *decided {
            *decided = known;
            participant.learner.advance_to(known);
            if participant.proposer.instance().is_some_and(|instance| instance <= known) {
                participant.proposer.abandon();
            }
            if let Some((instance, at)) = proposed_at.filter(|(instance, _)| *instance <= known) {
                sample(instance, clock.now_ns() - at);
            }
        }
        turns += 1;
        if turns % 256 == 0 {
            std::thread::yield_now(); // three polling threads may share fewer cores
        }
    }
    Ok(())
}
