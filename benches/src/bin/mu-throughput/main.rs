//! `mu-throughput`: commands per second a Mu leader commits with batching and pipelining,
//! against the batch size (commands per entry at most), for each pipeline depth (entries
//! in flight per follower at most); three replicas on the soft provider.
//!
//! This process is replica 0 and leads; its own loop keeps enough commands proposed that
//! every batch can fill (`pipeline × batch × 2`, within the queue limit) and counts the
//! commits for `--seconds`. The followers are two replica processes sharing the other
//! core; unlike the latency path, they do spend CPU here: each applies every entry, and
//! the leader may reuse a slot only once a majority applied it. Each configuration runs in
//! a fresh group (the batch and the pipeline are fixed at start).
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use serde::Serialize;
use usec_benches::mu::clock::SharedClock;
use usec_benches::mu::launch::{Group, GroupPlan, ProcessPlan};
use usec_benches::mu::machine::Machine;
use usec_benches::mu::replica::{self, Pacing};
use usec_benches::mu::settings::GroupSettings;
use usec_benches::pinning::{choose_cores, pin_current_thread, usable_cores, CorePair, Pinning};
use usec_benches::plot::{self, Curve};
use usec_benches::report::provider_label;
use usec_benches::run_info::{load_average, RunInfo};
use usec_lease_clock::clock::Clock;
use usec_replication::cft::{Event, RoleKind};
use usec_replication::driver::MuDriver;
use usec_replication::log::CommandId;

/// Mu commit throughput against batch size, per pipeline depth.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Batch sizes (commands per entry at most).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32")]
    batches: Vec<usize>,
    /// Pipeline depths (entries in flight per follower at most).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pipelines: Vec<u64>,
    /// Seconds measured per configuration.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Seconds run first in each configuration and not counted.
    #[arg(long, default_value_t = 0.2)]
    warmup_seconds: f64,
    /// Command size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Core of the leader (this process), then the core the two followers share.
    #[arg(long, default_value_t = CorePair::default())]
    cores: CorePair,
    /// Heartbeat READ period of the failure detectors. Longer than Mu's 30 µs by default:
    /// what is measured here is the fast path, and on a shared 2-core machine a follower
    /// starved of its core for a few hundred microseconds would otherwise depose the leader.
    #[arg(long, default_value_t = 100_000)]
    heartbeat_period_ns: u64,
    /// Idle turns of a follower before it yields its core.
    #[arg(long, default_value_t = 16)]
    follower_spins: u32,
    /// Runs of one configuration lost to a leader change before the benchmark gives up
    /// (each is reported; the figure comes from the first run that completes).
    #[arg(long, default_value_t = 10)]
    attempts: usize,
    /// Also write the report as JSON here, and the curves next to it
    /// (`<name>-batches.svg`).
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One configuration's figures.
#[derive(Debug, Serialize)]
struct Point {
    pipeline: u64,
    batch: usize,
    commands_per_second: f64,
    entries_per_second: f64,
    /// Commands per entry, on average.
    mean_batch: f64,
    measured_ns: u64,
    /// Attempts lost to a leader change before this one.
    interrupted: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    provider: String,
    run: RunInfo,
    leader: Pinning,
    followers: String,
    size: usize,
    group: GroupSettings,
    points: Vec<Point>,
    load_before: Option<[f64; 3]>,
    load_after: Option<[f64; 3]>,
    svg: Option<PathBuf>,
}

fn main() -> Result<()> {
    if let Some(role) = usec_benches::peer::role() {
        return match role.as_str() {
            replica::PEER_ROLE => replica::serve(),
            other => bail!("unknown peer role {other:?}"),
        };
    }
    let options = Options::parse();
    let load_before = load_average();
    let usable = usable_cores();
    let cores = choose_cores(options.cores, &usable)?;
    let mut run = RunInfo::collect(usable.len());
    run.timer = "CLOCK_MONOTONIC (vDSO clock_gettime) at the start and the end of the counted window".into();
    let leader = pin_current_thread(cores.map(|pair| pair.initiator));
    let mut points = Vec::new();
    let mut provider = String::new();
    let mut fabric = 0;
    for &pipeline in &options.pipelines {
        for &batch in &options.batches {
            let settings = GroupSettings {
                pipeline,
                batch_commands: batch,
                slot_bytes: (batch * (options.size + 64) + 256).next_multiple_of(64).max(4096 + 256),
                capacity: 1024.max(pipeline * 4),
                queue_limit: 4096.max(pipeline as usize * batch * 2),
                heartbeat_period_ns: options.heartbeat_period_ns,
                ..GroupSettings::default()
            };
            eprintln!("pipeline {pipeline}, batch {batch} ...");
            let mut interrupted = 0;
            let point = loop {
                fabric += 1;
                let device = format!("soft:usec-mu-throughput-{}-{fabric}", std::process::id());
                let follower = |me| ProcessPlan {
                    me,
                    core: cores.map(|pair| pair.peer),
                    pacing: Pacing::Cooperative { spins: options.follower_spins },
                    load: false,
                };
                let plan = GroupPlan {
                    device,
                    settings,
                    command_bytes: options.size,
                    processes: vec![follower(1), follower(2)],
                    local: Some(0),
                };
                let mut group = Group::launch(&plan)?;
                let mut driver = group.local.take().expect("this process is replica 0");
                provider = provider_label(driver.cluster().context());
                match measure(&mut driver, &options, &settings)? {
                    Ok((commands, entries, measured_ns)) => {
                        let seconds = measured_ns as f64 / 1e9;
                        break Point {
                            pipeline,
                            batch,
                            commands_per_second: commands as f64 / seconds,
                            entries_per_second: entries as f64 / seconds,
                            mean_batch: commands as f64 / entries.max(1) as f64,
                            measured_ns,
                            interrupted,
                        };
                    }
                    Err(why) => {
                        for line in driver.replica_mut().take_trace().iter().rev().take(30).rev() {
                            eprintln!("replica 0: {line}");
                        }
                        eprintln!("interrupted: {why}; replica 0: {}", driver.replica().describe());
                        interrupted += 1;
                        if interrupted == options.attempts {
                            bail!(
                                "pipeline {pipeline}, batch {batch}: {} attempts lost to leader changes \
                                 (followers starved of their core suspect the leader: is the machine busy?)",
                                options.attempts
                            );
                        }
                    }
                }
            };
            points.push(point);
        }
    }
    let svg = options.json.as_ref().map(|json| plot::beside(json, "-batches"));
    if let Some(path) = &svg {
        let curves: Vec<Curve> = options
            .pipelines
            .iter()
            .map(|&pipeline| Curve {
                label: format!("pipeline {pipeline}"),
                points: points
                    .iter()
                    .filter(|point| point.pipeline == pipeline)
                    .map(|point| (point.batch as f64, point.commands_per_second))
                    .collect(),
            })
            .collect();
        let title =
            format!("Mu commits/s against batch size, 3 replicas, {} B commands, {provider}", options.size);
        plot::write_curves(
            path,
            &title,
            "batch size (commands per entry at most)",
            "commands committed per second",
            &curves,
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    let followers = match cores {
        Some(pair) => format!(
            "replicas 1 and 2 pinned to core {}, cooperative (yield after {} idle turns)",
            pair.peer, options.follower_spins
        ),
        None => "replicas 1 and 2 unpinned".into(),
    };
    let report = Report {
        benchmark: "mu-throughput",
        provider,
        run,
        leader,
        followers,
        size: options.size,
        group: GroupSettings { heartbeat_period_ns: options.heartbeat_period_ns, ..GroupSettings::default() },
        points,
        load_before,
        load_after: load_average(),
        svg,
    };
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print(&report);
    Ok(())
}

/// Turns until replica 0 leads, warms up, then counts commits for the window:
/// `(commands, entries, nanoseconds)`, or why a leader change spoilt it.
fn measure(
    driver: &mut MuDriver<Machine>,
    options: &Options,
    settings: &GroupSettings,
) -> Result<std::result::Result<(u64, u64, u64), String>> {
    driver.keep_events(true);
    driver.replica_mut().set_trace(std::env::var_os("USEC_MU_TRACE").is_some());
    let clock = SharedClock;
    let start = clock.now_ns();
    while driver.replica().role() != RoleKind::Leader {
        driver.turn(clock.now_ns());
        driver.drain_events().for_each(drop);
        if clock.now_ns() - start > 10_000_000_000 {
            bail!("replica 0 did not lead within 10 s");
        }
    }
    let window = (settings.pipeline as usize * settings.batch_commands * 2).min(settings.queue_limit);
    let command = vec![0x42u8; options.size];
    let (mut sequence, mut outstanding) = (0u64, 0usize);
    let warm_until = clock.now_ns() + (options.warmup_seconds * 1e9) as u64;
    let mut counted: Option<(u64, u64, u64)> = None; // (start, commits, entries) once counting
    let measure_ns = (options.seconds * 1e9) as u64;
    loop {
        while outstanding < window {
            sequence += 1;
            let id = CommandId { client: 1, sequence };
            if driver.replica_mut().propose(id, &command).is_err() {
                break;
            }
            outstanding += 1;
        }
        let now = clock.now_ns();
        driver.turn(now);
        let mut committed = 0;
        for event in driver.drain_events() {
            match event {
                Event::Committed { .. } => committed += 1,
                Event::RoleChanged { role, leader } if role != RoleKind::Leader => {
                    return Ok(Err(format!("replica 0 became {role:?} (leader {leader:?})")));
                }
                Event::NotCommitted { id, leader } => {
                    return Ok(Err(format!(
                        "{id:?} not committed: replica 0 lost its leadership (leader {leader:?})"
                    )));
                }
                Event::Superseded { id } => bail!("{id:?} superseded: commands were reordered"),
                _ => {}
            }
        }
        outstanding -= committed;
        match &mut counted {
            // Entries applied, not created: created ones run ahead of commits by the pipeline.
            None if now >= warm_until => counted = Some((now, 0, driver.replica().applied_index())),
            None => {}
            Some((from, commits, entries)) => {
                *commits += committed as u64;
                if now - *from >= measure_ns {
                    let entries = driver.replica().applied_index() - *entries;
                    return Ok(Ok((*commits, entries, now - *from)));
                }
            }
        }
    }
}

fn print(report: &Report) {
    let run = &report.run;
    println!(
        "mu-throughput: commands committed per second at the Mu leader, 3 replicas, against the batch size"
    );
    println!("provider: {}", report.provider);
    run.warn_if_debug();
    println!(
        "{}; cores used: leader (this process, replica 0) {}, busy-poll; {}",
        run.provenance(),
        report.leader,
        report.followers
    );
    let load = |load: Option<[f64; 3]>| {
        load.map_or("unknown".into(), |[one, five, _]| format!("{one:.2} (1 min), {five:.2} (5 min)"))
    };
    println!("load average: {} before, {} after", load(report.load_before), load(report.load_after));
    println!("{} B commands; each configuration in a fresh group: {}", report.size, report.group.describe());
    println!(
        "{:>9} {:>6} {:>14} {:>13} {:>11}",
        "pipeline", "batch", "commands/s", "entries/s", "mean batch"
    );
    for point in &report.points {
        println!(
            "{:>9} {:>6} {:>14.0} {:>13.0} {:>11.2}{}",
            point.pipeline,
            point.batch,
            point.commands_per_second,
            point.entries_per_second,
            point.mean_batch,
            if point.interrupted > 0 {
                format!("  ({} attempts lost to leader changes)", point.interrupted)
            } else {
                String::new()
            }
        );
    }
    if let Some(path) = &report.svg {
        println!("curves: {}", path.display());
    }
}
