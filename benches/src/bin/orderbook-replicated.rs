//! `orderbook-replicated`: what replication adds to one order of the order book — the
//! same seeded stream applied by a book alone (unreplicated: decode, match, encode) and
//! proposed to a three-replica Mu group whose state machine is the book (replicated:
//! proposal to commit, the leader's apply included), in the same run; and orders per
//! second through the group, one at a time.
//!
//! This process is replica 0 and leads; it proposes in its own loop, pinned to the leader
//! core, each command once the previous one committed. The followers are two replica
//! processes sharing the other core (as in `mu-latency`). A sample cut by a leader change
//! is dropped and counted; the run waits for replica 0 to lead again and goes on.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use serde::Serialize;
use usec_benches::latency::{LatencySummary, Recorder};
use usec_benches::mu::clock::SharedClock;
use usec_benches::mu::launch::{await_leadership, Group, GroupPlan, ProcessPlan};
use usec_benches::mu::machine::{Machine, MachineKind};
use usec_benches::mu::replica::{self, Pacing};
use usec_benches::mu::settings::GroupSettings;
use usec_benches::order_stream::{self, StreamCommand};
use usec_benches::pinning::{choose_cores, pin_current_thread, usable_cores, CorePair, Pinning};
use usec_benches::report::provider_label;
use usec_benches::run_info::RunInfo;
use usec_lease_clock::clock::Clock;
use usec_replication::apps::orderbook::OrderBook;
use usec_replication::cft::{Event, RoleKind};
use usec_replication::driver::MuDriver;
use usec_replication::log::CommandId;
use usec_replication::StateMachine;

/// One order applied by a book alone and through a Mu group of three.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Commands measured.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    commands: u64,
    /// Commands applied first and not measured (the book fills up).
    #[arg(long, default_value_t = 20_000)]
    warmup: u64,
    /// Seed of the order stream.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Symbols traded.
    #[arg(long, default_value_t = 8)]
    symbols: usize,
    /// Accounts trading.
    #[arg(long, default_value_t = 1_000)]
    accounts: usize,
    /// Core of the leader (this process), then the core the two followers share.
    #[arg(long, default_value_t = CorePair::default())]
    cores: CorePair,
    /// Heartbeat READ period of the failure detectors (patient, as in `mu-latency`).
    #[arg(long, default_value_t = 100_000)]
    heartbeat_period_ns: u64,
    /// Idle turns of a follower before it yields its core.
    #[arg(long, default_value_t = 16)]
    follower_spins: u32,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    run: RunInfo,
    provider: String,
    leader: Pinning,
    followers: Vec<(u16, Pinning, String)>,
    group_description: String,
    seed: u64,
    commands: u64,
    warmup: u64,
    trades_in_stream: u64,
    unreplicated_orders: LatencySummary,
    unreplicated_all: LatencySummary,
    replicated_orders: LatencySummary,
    replicated_all: LatencySummary,
    /// Replicated minus unreplicated new-order medians.
    added_ns: i64,
    /// Replicated over unreplicated new-order medians.
    ratio: f64,
    replicated_commands_per_second: f64,
    unreplicated_commands_per_second: f64,
    interruptions: Vec<String>,
    books_agree: bool,
}

/// A sample gives up after this long.
const SAMPLE_LIMIT_NS: u64 = 1_000_000_000;

fn main() -> Result<()> {
    if let Some(role) = usec_benches::peer::role() {
        return match role.as_str() {
            replica::PEER_ROLE => replica::serve(),
            other => bail!("unknown peer role {other:?}"),
        };
    }
    let options = Options::parse();
    let usable = usable_cores();
    let cores = choose_cores(options.cores, &usable)?;
    let mut run = RunInfo::collect(usable.len());
    run.timer = "CLOCK_MONOTONIC (vDSO clock_gettime) around each apply / from before the proposal to after \
                 the turn that committed"
        .into();
    let leader = pin_current_thread(cores.map(|pair| pair.initiator));
    eprintln!("making a stream of {} commands ...", options.warmup + options.commands);
    let (stream, trades) = order_stream::make(
        options.seed,
        options.symbols,
        options.accounts,
        options.warmup + options.commands,
    );
    let warmup = options.warmup as usize;
    let clock = SharedClock;

    // Unreplicated: a book alone, each command timed.
    let (mut unrepl_orders, mut unrepl_all) = (Recorder::new(), Recorder::new());
    let mut alone = OrderBook::new();
    let mut response = Vec::with_capacity(4096);
    let start = Instant::now();
    for (index, StreamCommand { is_order, bytes }) in stream.iter().enumerate() {
        response.clear();
        let before = clock.now_ns();
        alone.apply(bytes, &mut response);
        let took = clock.now_ns() - before;
        if index >= warmup {
            unrepl_all.record_ns(took);
            if *is_order {
                unrepl_orders.record_ns(took);
            }
        }
    }
    let unreplicated_commands_per_second = stream.len() as f64 / start.elapsed().as_secs_f64();

    // Replicated: the same stream through the group.
    let device = usec_benches::default_soft_device(None);
    let settings = GroupSettings {
        heartbeat_period_ns: options.heartbeat_period_ns,
        snapshot_bytes: 64 << 20,
        machine: MachineKind::OrderBook,
        ..GroupSettings::default()
    };
    let follower = |me| ProcessPlan {
        me,
        core: cores.map(|pair| pair.peer),
        pacing: Pacing::Cooperative { spins: options.follower_spins },
        load: false,
    };
    let plan = GroupPlan {
        device: device.clone(),
        settings,
        command_bytes: 64,
        processes: vec![follower(1), follower(2)],
        local: Some(0),
    };
    eprintln!("starting a group of 3 on {device} ...");
    let mut group = Group::launch(&plan)?;
    let mut driver = group.local.take().expect("this process is replica 0");
    driver.keep_events(true);
    let provider = provider_label(driver.cluster().context());
    await_leadership(&mut driver, &clock)?;
    let (mut repl_orders, mut repl_all) = (Recorder::new(), Recorder::new());
    let mut interruptions = Vec::new();
    let mut sequence = 0;
    let start = clock.now_ns();
    let mut measured_from = start;
    for (index, StreamCommand { is_order, bytes }) in stream.iter().enumerate() {
        if index == warmup {
            measured_from = clock.now_ns();
        }
        loop {
            sequence += 1;
            match propose(&mut driver, &clock, CommandId { client: 1, sequence }, bytes)? {
                Ok(took) => {
                    if index >= warmup {
                        repl_all.record_ns(took);
                        if *is_order {
                            repl_orders.record_ns(took);
                        }
                    }
                    break;
                }
                Err(why) => {
                    interruptions.push(why);
                    if interruptions.len() > 100 {
                        bail!("over 100 leader changes: the machine is too busy to measure on");
                    }
                    await_leadership(&mut driver, &clock)?;
                    // Proposed again under a new id: if the first was committed after all,
                    // the book applies the command twice, which the comparison below sees.
                }
            }
        }
    }
    let replicated_commands_per_second =
        options.commands as f64 / ((clock.now_ns() - measured_from) as f64 / 1e9);
    let books_agree = match driver.replica().state_machine() {
        Machine::OrderBook(book) => book.snapshot() == alone.snapshot(),
        Machine::Counter(_) | Machine::Kv(_) => false,
    };
    let followers: Vec<(u16, Pinning, String)> = group
        .processes
        .iter()
        .map(|process| (process.plan.me, process.pinning.clone(), process.plan.pacing.to_string()))
        .collect();
    for process in group.processes.drain(..) {
        process.stop()?;
    }
    let (unreplicated_orders, replicated_orders) = (unrepl_orders.summary(), repl_orders.summary());
    let report = Report {
        benchmark: "orderbook-replicated",
        run,
        provider,
        leader,
        followers,
        group_description: settings.describe(),
        seed: options.seed,
        commands: options.commands,
        warmup: options.warmup,
        trades_in_stream: trades,
        added_ns: replicated_orders.p50_ns as i64 - unreplicated_orders.p50_ns as i64,
        ratio: replicated_orders.p50_ns as f64 / unreplicated_orders.p50_ns.max(1) as f64,
        unreplicated_orders,
        unreplicated_all: unrepl_all.summary(),
        replicated_orders,
        replicated_all: repl_all.summary(),
        replicated_commands_per_second,
        unreplicated_commands_per_second,
        interruptions,
        books_agree,
    };
    print(&report);
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    // A proposal cut by a leader change may have been committed after all, and proposed
    // again: only an uninterrupted run must end with the same book.
    if !report.books_agree && report.interruptions.is_empty() {
        bail!("the leader's book differs from the book that applied the stream alone");
    }
    Ok(())
}

/// Proposes `command` and turns until it commits: the nanoseconds from before the
/// proposal to after the turn that reported the commit, or why a leader change cut it.
fn propose(
    driver: &mut MuDriver<Machine>,
    clock: &SharedClock,
    id: CommandId,
    command: &[u8],
) -> Result<std::result::Result<u64, String>> {
    let start = clock.now_ns();
    driver.replica_mut().propose(id, command)?;
    loop {
        driver.turn(clock.now_ns());
        let end = clock.now_ns();
        for event in driver.drain_events() {
            match event {
                Event::Committed { id: done, .. } if done == id => return Ok(Ok(end - start)),
                Event::NotCommitted { id: done, leader } if done == id => {
                    return Ok(Err(format!("{id:?} not committed, the leader is now {leader:?}")));
                }
                Event::Superseded { id: done } if done == id => bail!("{id:?} superseded"),
                Event::RoleChanged { role, leader } if role != RoleKind::Leader => {
                    return Ok(Err(format!("replica 0 became {role:?} (leader {leader:?})")));
                }
                _ => {}
            }
        }
        if end - start > SAMPLE_LIMIT_NS {
            bail!("{id:?} not committed within {SAMPLE_LIMIT_NS} ns: {}", driver.replica().describe());
        }
    }
}

fn print(report: &Report) {
    let run = &report.run;
    println!("{}: one order through a book alone and through Mu (3 replicas)", report.benchmark);
    println!("provider: {}", report.provider);
    run.warn_if_debug();
    let followers: Vec<String> = report
        .followers
        .iter()
        .map(|(me, pinning, pacing)| format!("replica {me} {pinning}, {pacing}"))
        .collect();
    println!(
        "{}; cores used: leader (this process, replica 0) {}, busy-poll; {}",
        run.provenance(),
        report.leader,
        followers.join("; ")
    );
    println!("timer: {} (one read ~{} ns)", run.timer, run.timer_overhead_ns);
    println!("group: {}", report.group_description);
    println!(
        "{} commands after {} of warm-up, seed {}; {} trades in the stream",
        report.commands, report.warmup, report.seed, report.trades_in_stream
    );
    if !report.interruptions.is_empty() {
        println!(
            "WARNING: {} proposals cut by leader changes and proposed again: {:?}",
            report.interruptions.len(),
            report.interruptions
        );
    }
    println!("new order (BUY/SELL), unreplicated apply:       {}", report.unreplicated_orders);
    println!("new order (BUY/SELL), Mu propose -> commit:     {}", report.replicated_orders);
    println!("any command, unreplicated apply:                {}", report.unreplicated_all);
    println!("any command, Mu propose -> commit:              {}", report.replicated_all);
    println!(
        "throughput, one command at a time: unreplicated {:.0} commands/s, replicated {:.0} commands/s",
        report.unreplicated_commands_per_second, report.replicated_commands_per_second
    );
    println!("books agree: {}", report.books_agree);
    println!(
        "new-order medians: replicated - unreplicated {} ns, ratio {:.2}",
        report.added_ns, report.ratio
    );
}
