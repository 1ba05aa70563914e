//! `active-lease`: what the hot-path check of an Active(view) lease costs —
//! `ActiveLease::is_active(view, now)`, which a leader calls before serving each read
//! locally. uKharon reports ~40 ns per request for its `Active(M)` check; here it is an
//! equality and two compares on three cached words.
//!
//! Four scenarios, alternating block by block on one pinned core, each timed in batches of
//! `--batch` calls (one `Instant` pair per batch, so the timer's cost is spread thin):
//!
//! - (a) the loop floor: the same loop passing the same values through `black_box`;
//! - (b) `is_active` with `now` given (the clock read excluded);
//! - (c) a read of the calibrated clock alone (the TSC where it is usable);
//! - (d) a clock read and `is_active`: what a request pays.
//!
//! Each reports the per-call cost (batch time / batch size) at the median and the mean
//! over batches, and (b) − (a) and (d) − (a) say what the check adds. The lease is kept
//! `&`-borrowed through `black_box` on every call, so its words are loaded each time as a
//! serving loop would. Figures from a shared machine carry its load average.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use serde::Serialize;
use usec_benches::latency::{LatencySummary, Recorder};
use usec_benches::pinning::{pin_current_thread, usable_cores, Pinning};
use usec_benches::run_info::{load_average, RunInfo};
use usec_lease_clock::clock::{CalibratedClock, CalibrationOptions, Clock};
use usec_lease_clock::lease::{ActiveConfig, ActiveLease, ViewSummary, Voter, VoterSet};
use usec_qp_pool::NodeId;

/// The cost of `ActiveLease::is_active`, with and without the clock read.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Timed batches per scenario.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    samples: u64,
    /// Calls per timed batch.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Blocks the samples are split into; the scenarios alternate block by block.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    blocks: u64,
    /// The core to pin to.
    #[arg(long, default_value_t = 0)]
    core: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One scenario's figures.
#[derive(Debug, Serialize)]
struct Scenario {
    name: &'static str,
    /// Per-call cost at the median batch, in nanoseconds.
    p50_per_call_ns: f64,
    /// Per-call cost over all batches, in nanoseconds.
    mean_per_call_ns: f64,
    /// Per-call cost at the 99th-percentile batch.
    p99_per_call_ns: f64,
    /// The batches' own distribution.
    batches: LatencySummary,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    run: RunInfo,
    clock: String,
    pinning: Pinning,
    load_average_before: Option<[f64; 3]>,
    load_average_after: Option<[f64; 3]>,
    samples: u64,
    batch: u64,
    blocks: u64,
    scenarios: Vec<Scenario>,
    /// (b) − (a) at the median and the mean: the check alone.
    is_active_net_ns: (f64, f64),
    /// Calls of (b) and (d) that found the view inactive (a batch preempted past its
    /// lease); expected 0.
    inactive_answers: u64,
    /// (d) − (a): the check and the clock read it needs.
    with_clock_net_ns: (f64, f64),
}

/// Δ for the benchmark: the check costs the same whatever Δ is; a long one keeps renewals
/// (done between batches, untimed) rare and a batch well inside one lease.
const LEASE_NS: u64 = 100_000_000;

/// A member that learned view 1 on `clock` and renewed it until it became active.
fn active_member(clock: &impl Clock) -> Result<ActiveLease> {
    let config =
        ActiveConfig { lease_ns: LEASE_NS, renew_before_ns: LEASE_NS / 2, ..ActiveConfig::default() };
    let mut lease = ActiveLease::new(config)?;
    let voters = VoterSet::new(
        (0..3).map(|node| Voter { node: NodeId::new(node).expect("a node id"), incarnation: 0 }),
    );
    lease.on_view_learned(clock.now_ns(), &ViewSummary { view_id: 1, voters });
    // The view starts S ≈ Δ later; until then the member renews as its loop would.
    while !lease.is_active(1, clock.now_ns()) {
        renew(&mut lease, clock);
        std::hint::spin_loop();
    }
    Ok(lease)
}

/// What the member's background renewal does, with an immediate confirmation standing in
/// for the majority read (there is no membership service here).
fn renew(lease: &mut ActiveLease, clock: &impl Clock) {
    if let Some(renewal) = lease.poll_renewal(clock.now_ns()) {
        lease.on_confirmed(clock.now_ns(), renewal);
    }
}

fn main() -> Result<()> {
    let options = Options::parse();
    let usable = usable_cores();
    if !usable.is_empty() && !usable.contains(&options.core) {
        bail!("core {} is not usable here (usable cores: {usable:?}); pick one with --core", options.core);
    }
    let mut run = RunInfo::collect(usable.len());
    run.timer = format!("std::time::Instant around each batch of {} calls", options.batch);
    let pinning = pin_current_thread(Some(options.core));
    let clock = CalibratedClock::calibrate(&CalibrationOptions::default())?;
    let load_average_before = load_average();
    let mut lease = active_member(&clock)?;
    let view = 1u64;

    let names =
        ["(a) loop floor", "(b) is_active, now given", "(c) clock read", "(d) clock read + is_active"];
    let mut recorders: Vec<Recorder> = names.iter().map(|_| Recorder::new()).collect();
    let (batch, per_block) = (options.batch, options.samples.div_ceil(options.blocks));
    let mut left = options.samples;
    let mut hits = 0u64;
    while left > 0 {
        let count = per_block.min(left);
        for _ in 0..count {
            let from_ns = clock.now_ns();
            time(&mut recorders[0], || {
                for offset in 0..batch {
                    black_box((black_box(view), black_box(from_ns + offset)));
                }
            });
        }
        for _ in 0..count {
            renew(&mut lease, &clock);
            // `now` as a caller that read the clock already passes it: inside the lease.
            let from_ns = clock.now_ns();
            hits += time(&mut recorders[1], || {
                let mut active = 0;
                for offset in 0..batch {
                    active +=
                        u64::from(black_box(&lease).is_active(black_box(view), black_box(from_ns + offset)));
                }
                active
            });
        }
        for _ in 0..count {
            time(&mut recorders[2], || {
                for _ in 0..batch {
                    black_box(clock.now_ns());
                }
            });
        }
        for _ in 0..count {
            renew(&mut lease, &clock);
            hits += time(&mut recorders[3], || {
                let mut active = 0;
                for _ in 0..batch {
                    active += u64::from(black_box(&lease).is_active(black_box(view), clock.now_ns()));
                }
                active
            });
        }
        left -= count;
    }
    let load_average_after = load_average();
    // A batch preempted for longer than Δ/2 outlives its lease; the answer costs the same.
    let inactive_answers = 2 * options.samples * batch - hits;
    let scenarios: Vec<Scenario> = names
        .iter()
        .zip(&recorders)
        .map(|(&name, recorder)| {
            let batches = recorder.summary();
            Scenario {
                name,
                p50_per_call_ns: batches.p50_ns as f64 / batch as f64,
                mean_per_call_ns: batches.mean_ns / batch as f64,
                p99_per_call_ns: batches.p99_ns as f64 / batch as f64,
                batches,
            }
        })
        .collect();
    let net = |index: usize| {
        (
            scenarios[index].p50_per_call_ns - scenarios[0].p50_per_call_ns,
            scenarios[index].mean_per_call_ns - scenarios[0].mean_per_call_ns,
        )
    };
    let report = Report {
        benchmark: "active-lease",
        run,
        clock: clock.report().to_string(),
        pinning,
        load_average_before,
        load_average_after,
        samples: options.samples,
        batch,
        blocks: options.blocks,
        is_active_net_ns: net(1),
        inactive_answers,
        with_clock_net_ns: net(3),
        scenarios,
    };
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print(&report);
    Ok(())
}

/// Runs one batch, records its duration, and passes on what it returned.
fn time<T>(recorder: &mut Recorder, batch: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let result = batch();
    recorder.record_ns(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
    result
}

fn print(report: &Report) {
    let run = &report.run;
    println!(
        "{}: the cost of ActiveLease::is_active(view, now), the hot-path Active(view) check",
        report.benchmark
    );
    run.warn_if_debug();
    let load = |load: Option<[f64; 3]>| {
        load.map_or_else(
            || "unknown".to_string(),
            |[one, five, fifteen]| format!("{one:.2} {five:.2} {fifteen:.2}"),
        )
    };
    let online = run.cores_online.map_or_else(|| "unknown".to_string(), |cores| cores.to_string());
    println!(
        "{}; cores: {online} online, {} usable, 1 used: {}",
        run.provenance(),
        run.cores_usable,
        report.pinning
    );
    println!(
        "load average (1, 5, 15 min) before {}, after {}: other work on the machine shares its cores",
        load(report.load_average_before),
        load(report.load_average_after)
    );
    println!("clock: {}", report.clock);
    println!(
        "{} batches of {} calls per scenario, in {} alternating blocks; timer: {} (one read ~{} ns)",
        report.samples, report.batch, report.blocks, run.timer, run.timer_overhead_ns
    );
    println!("{:<30} {:>10} {:>10} {:>10}", "per call", "p50", "mean", "p99");
    for scenario in &report.scenarios {
        println!(
            "{:<30} {:>7.2} ns {:>7.2} ns {:>7.2} ns",
            scenario.name, scenario.p50_per_call_ns, scenario.mean_per_call_ns, scenario.p99_per_call_ns
        );
    }
    let (p50, mean) = report.is_active_net_ns;
    println!("is_active alone, (b) − (a): p50 {p50:.2} ns, mean {mean:.2} ns");
    let (p50, mean) = report.with_clock_net_ns;
    println!("with the clock read, (d) − (a): p50 {p50:.2} ns, mean {mean:.2} ns");
    if report.inactive_answers > 0 {
        println!(
            "note: {} calls found the view inactive (batches preempted past the lease)",
            report.inactive_answers
        );
    }
}
