//! `mu-latency`: how long Mu takes from a command's proposal to its commit at the leader,
//! three replicas on the soft provider, next to a baseline measured in the same run on the
//! same QPs — the bare RDMA work of the fast path (one WRITE of the command's size to each
//! follower, until the first completion) — for each command size. Prints percentiles per
//! size and, last, `ratio <Mu median / bare median>` for `--size`.
//!
//! A second bare loop, for explanation, WRITEs Mu's entry size one slot further at each
//! sample through a ring of the log's geometry: the baseline always WRITEs the same place,
//! which stays in the leader's caches and TLB, while Mu's entries walk through the
//! followers' logs (see `bare.rs`).
//!
//! This process is replica 0 and leads (the lowest id does); it measures in its own loop,
//! pinned to the leader core: propose, turn the driver until the `Committed` event. The
//! followers are two replica processes sharing the other core, yielding it when idle: on
//! Mu's fast path the leader WRITEs into their logs and no follower CPU is involved. The
//! two scenarios alternate block by block so that drifts of the machine weigh on both.
#![forbid(unsafe_code)]

mod bare;
mod proposer;

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use serde::Serialize;
use usec_benches::latency::{LatencySummary, Recorder};
use usec_benches::mu::clock::SharedClock;
use usec_benches::mu::launch::{await_leadership, Group, GroupPlan, ProcessPlan};
use usec_benches::mu::replica::{self, Pacing, ReplicaReport};
use usec_benches::mu::settings::GroupSettings;
use usec_benches::ping_pong::BlockPlan;
use usec_benches::pinning::{choose_cores, pin_current_thread, usable_cores, CorePair, Pinning};
use usec_benches::plot::{self, CdfSeries};
use usec_benches::report::provider_label;
use usec_benches::run_info::RunInfo;
use usec_lease_clock::clock::Clock;
use usec_replication::cft::RoleKind;
use usec_replication::driver::MuDriver;

use bare::BareWrites;
use proposer::Proposer;
use usec_benches::mu::machine::Machine;

/// Propose→commit latency of Mu at the leader against bare WRITEs on the same QPs.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Samples per size and scenario.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: u64,
    /// Samples run first at each size and discarded.
    #[arg(long, default_value_t = 2_000)]
    warmup: u64,
    /// Blocks each scenario's samples are split into; the scenarios alternate.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    blocks: u64,
    /// Samples discarded at the start of every later block.
    #[arg(long, default_value_t = 200)]
    block_warmup: u64,
    /// Command size of the last line's ratio.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Command sizes to measure (`--size` is added if missing).
    #[arg(long, value_delimiter = ',', default_value = "8,64,512,4096")]
    sizes: Vec<usize>,
    /// Core of the leader (this process), then the core the two followers share.
    #[arg(long, default_value_t = CorePair::default())]
    cores: CorePair,
    /// Heartbeat READ period of the failure detectors. Longer than Mu's 30 µs by default:
    /// what is measured here is the fast path, and on a shared 2-core machine a follower
    /// starved of its core for a few hundred microseconds would otherwise depose the leader.
    #[arg(long, default_value_t = 100_000)]
    heartbeat_period_ns: u64,
    /// Slots in each replica's log ring (of 4 KiB + 256 B each). Each entry takes a slot
    /// of its own, so the leader's WRITEs walk through this many slots of every log: the
    /// default ring is larger than the caches and TLBs of small machines hold, a smaller
    /// one shows what that costs (the bare WRITEs always reuse one place).
    #[arg(long, default_value_t = GroupSettings::default().capacity)]
    log_slots: u64,
    /// Idle turns of a follower before it yields its core.
    #[arg(long, default_value_t = 16)]
    follower_spins: u32,
    /// Device (default: a fresh soft fabric, `soft:usec-benches-<pid>`).
    #[arg(long)]
    device: Option<String>,
    /// Also write the report as JSON here, and the latency CDFs next to it
    /// (`<name>-cdf.svg`).
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Both scenarios at one size.
#[derive(Debug, Serialize)]
struct SizeFigures {
    size: usize,
    /// Bytes of the log entry Mu WRITEs to each follower for one command of this size.
    entry_bytes: usize,
    bare: LatencySummary,
    mu: LatencySummary,
    /// Bare WRITEs of the entry's size walking a ring of the log's geometry.
    ring: LatencySummary,
    ratio: f64,
    /// Mu's median over the ring's.
    ring_ratio: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    description: &'static str,
    provider: String,
    device: String,
    run: RunInfo,
    leader: Pinning,
    followers: Vec<(u16, Pinning, String)>,
    group: GroupSettings,
    group_description: String,
    plan: BlockPlan,
    sizes: Vec<SizeFigures>,
    /// Leaderships and candidacies seen in the group during the run (1 and 1: none lost).
    leaderships: u64,
    candidacies: u64,
    /// Samples interrupted by a loss of leadership, and why (not recorded).
    interruptions: Vec<String>,
    /// The machine's load averages (1, 5, 15 minutes) at the start and at the end.
    load_before: Option<[f64; 3]>,
    load_after: Option<[f64; 3]>,
    ratio_size: usize,
    ratio: f64,
    cdf_svg: Option<PathBuf>,
}

fn main() -> Result<()> {
    if let Some(role) = usec_benches::peer::role() {
        return match role.as_str() {
            replica::PEER_ROLE => replica::serve(),
            other => bail!("unknown peer role {other:?}"),
        };
    }
    let options = Options::parse();
    let mut sizes = options.sizes.clone();
    if !sizes.contains(&options.size) {
        sizes.push(options.size);
    }
    sizes.sort_unstable();
    sizes.dedup();
    let settings = GroupSettings {
        heartbeat_period_ns: options.heartbeat_period_ns,
        capacity: options.log_slots,
        bare_ring: true,
        ..GroupSettings::default()
    };
    let max = settings.mu().max_command_bytes();
    if let Some(&size) = sizes.iter().find(|&&size| size == 0 || size > max) {
        bail!("a command of {size} B: sizes go from 1 to {max} B");
    }
    let load_before = usec_benches::run_info::load_average();
    let usable = usable_cores();
    let cores = choose_cores(options.cores, &usable)?;
    let mut run = RunInfo::collect(usable.len());
    run.timer = "CLOCK_MONOTONIC (vDSO clock_gettime) read before the proposal / the first post and after \
                 the turn that committed / the poll that found the first completion"
        .into();
    let leader = pin_current_thread(cores.map(|pair| pair.initiator));
    let device = usec_benches::default_soft_device(options.device.clone());
    if !device.starts_with("soft:") {
        bail!("{device}: the followers run as processes of this machine; use a soft device");
    }
    let follower = |me| ProcessPlan {
        me,
        core: cores.map(|pair| pair.peer),
        pacing: Pacing::Cooperative { spins: options.follower_spins },
        load: false,
    };
    let plan = GroupPlan {
        device: device.clone(),
        settings,
        command_bytes: options.size,
        processes: vec![follower(1), follower(2)],
        local: Some(0),
    };
    eprintln!("starting a group of 3 on {device} ...");
    let mut group = Group::launch(&plan)?;
    let mut driver = group.local.take().expect("this process is replica 0");
    driver.keep_events(true);
    let clock = SharedClock;
    let provider = provider_label(driver.cluster().context());
    await_leadership(&mut driver, &clock)?;
    let blocks = BlockPlan {
        warmup: options.warmup,
        block_warmup: options.block_warmup,
        iterations: options.iterations,
        blocks: options.blocks,
    };
    let mut proposer = Proposer::new(1);
    driver.replica_mut().set_trace(std::env::var_os("USEC_MU_TRACE").is_some());
    let measured = measure(&mut driver, &clock, &mut proposer, &sizes, &blocks, &settings);
    let (measured, interruptions) = match measured {
        Ok(measured) => measured,
        Err(error) => {
            for line in driver.replica_mut().take_trace().iter().rev().take(40).rev() {
                eprintln!("replica 0: {line}");
            }
            eprintln!("replica 0: {}", driver.replica().describe());
            for process in group.processes.drain(..) {
                if let Ok(report) = process.stop() {
                    eprintln!("replica {} noted {:?}", report.me, report.marks);
                }
            }
            return Err(error);
        }
    };
    let stats = driver.replica().stats();
    let followers_pinning: Vec<(u16, Pinning, String)> = group
        .processes
        .iter()
        .map(|process| (process.plan.me, process.pinning.clone(), process.plan.pacing.to_string()))
        .collect();
    let mut reports: Vec<ReplicaReport> = Vec::new();
    for process in group.processes.drain(..) {
        reports.push(process.stop()?);
    }
    let leaderships = stats.leaderships + reports.iter().map(|report| report.leaderships).sum::<u64>();
    let candidacies = stats.candidacies + reports.iter().map(|report| report.candidacies).sum::<u64>();

    let cdf_svg = options.json.as_ref().map(|json| plot::beside(json, "-cdf"));
    if let Some(path) = &cdf_svg {
        let mut series = Vec::new();
        for (index, Measured { size, bare, mu, ring }) in measured.iter().enumerate() {
            series.push(CdfSeries {
                label: format!("Mu {size} B"),
                histogram: mu.histogram(),
                colour: 3 * index,
                thin: false,
            });
            series.push(CdfSeries {
                label: format!("bare {size} B"),
                histogram: bare.histogram(),
                colour: 3 * index + 1,
                thin: true,
            });
            series.push(CdfSeries {
                label: format!("bare ring {size} B"),
                histogram: ring.histogram(),
                colour: 3 * index + 2,
                thin: true,
            });
        }
        let title = format!("Mu propose→commit vs bare WRITEs, 3 replicas, {provider}");
        plot::write_cdf(path, &title, &series).with_context(|| format!("writing {}", path.display()))?;
    }
    let sizes: Vec<SizeFigures> = measured
        .iter()
        .map(|Measured { size, bare, mu, ring }| {
            let (bare, mu, ring) = (bare.summary(), mu.summary(), ring.summary());
            SizeFigures {
                size: *size,
                entry_bytes: proposer::entry_bytes(*size),
                bare,
                mu,
                ratio: mu.p50_ns as f64 / bare.p50_ns.max(1) as f64,
                ring,
                ring_ratio: mu.p50_ns as f64 / ring.p50_ns.max(1) as f64,
            }
        })
        .collect();
    let ratio = sizes.iter().find(|figures| figures.size == options.size).expect("added above").ratio;
    let report = Report {
        benchmark: "mu-latency",
        description:
            "propose→commit at the Mu leader (3 replicas) against bare WRITEs to each follower on the \
                      same QPs, first completion",
        provider,
        device,
        run,
        leader,
        followers: followers_pinning,
        group: settings,
        group_description: settings.describe(),
        plan: blocks,
        sizes,
        leaderships,
        candidacies,
        interruptions,
        load_before,
        load_after: usec_benches::run_info::load_average(),
        ratio_size: options.size,
        ratio,
        cdf_svg,
    };
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print(&report);
    Ok(())
}

/// What one sample came to.
#[derive(Debug)]
pub enum Sample {
    /// It took this many nanoseconds.
    Took(u64),
    /// The leader lost its leadership (or a QP broke) meanwhile: why.
    Interrupted(String),
}

/// Both scenarios at one size, measured.
#[derive(Debug)]
struct Measured {
    size: usize,
    bare: Recorder,
    mu: Recorder,
    ring: Recorder,
}

/// The scenarios of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Bare,
    Mu,
    Ring,
}

/// How long samples may go on failing after a leader change.
const RECOVERY_LIMIT_NS: u64 = 10_000_000_000;

/// Leadership losses a run survives; past that, the machine is too busy to measure on.
const INTERRUPTIONS_MAX: usize = 100;

/// Measures the three scenarios at each size, taking turns block by block. A sample interrupted by a
/// loss of leadership (a follower suspected the leader: on a loaded machine the leader's
/// core is taken away for longer than the detector's patience) is not recorded: the run
/// waits for replica 0 to lead again, discards a block warm-up, and goes on; the reasons
/// are returned.
fn measure(
    driver: &mut MuDriver<Machine>,
    clock: &SharedClock,
    proposer: &mut Proposer,
    sizes: &[usize],
    blocks: &BlockPlan,
    settings: &GroupSettings,
) -> Result<(Vec<Measured>, Vec<String>)> {
    let mut measured = Vec::new();
    let mut interruptions = Vec::new();
    // Since when samples fail, one leader change after another.
    let mut recovering: Option<u64> = None;
    for &size in sizes {
        eprintln!("{size} B ...");
        let mut bare = BareWrites::fixed(driver, settings, size)?;
        let mut ring = BareWrites::ring(driver, settings, proposer::entry_bytes(size))?;
        proposer.set_size(size);
        let (mut bare_recorder, mut mu_recorder, mut ring_recorder) =
            (Recorder::new(), Recorder::new(), Recorder::new());
        for (index, (warmup, iterations)) in blocks.blocks().into_iter().enumerate() {
            let mut order = [Scenario::Bare, Scenario::Mu, Scenario::Ring];
            order.rotate_left(index % 3);
            for scenario in order {
                let (mut recorded, mut discard) = (0, warmup);
                while recorded < iterations {
                    let sample = if scenario == Scenario::Mu {
                        proposer.sample(driver, clock)?
                    } else {
                        let walk = if scenario == Scenario::Bare { &mut bare } else { &mut ring };
                        let sample = walk.sample(driver, clock)?;
                        // Heartbeats, and the replica's own work, go on between samples.
                        driver.turn(clock.now_ns());
                        driver.drain_events().for_each(drop);
                        match driver.replica().role() {
                            RoleKind::Leader => sample,
                            role => Sample::Interrupted(format!("replica 0 became {role:?}")),
                        }
                    };
                    match sample {
                        Sample::Took(_) if discard > 0 => {
                            discard -= 1;
                            recovering = None;
                        }
                        Sample::Took(latency_ns) => {
                            recovering = None;
                            let recorder = match scenario {
                                Scenario::Bare => &mut bare_recorder,
                                Scenario::Mu => &mut mu_recorder,
                                Scenario::Ring => &mut ring_recorder,
                            };
                            recorder.record_ns(latency_ns);
                            recorded += 1;
                        }
                        Sample::Interrupted(why) => {
                            // One episode per loss, however many samples fail while the
                            // replica repairs its QPs and takes over again.
                            if recovering.is_none() {
                                eprintln!(
                                    "interrupted at {size} B: {why}; waiting for replica 0 to lead again"
                                );
                                interruptions.push(format!("{size} B: {why}"));
                                if interruptions.len() > INTERRUPTIONS_MAX {
                                    bail!("leadership lost {} times: {interruptions:?}", interruptions.len());
                                }
                            }
                            let since = *recovering.get_or_insert_with(|| clock.now_ns());
                            if clock.now_ns() - since > RECOVERY_LIMIT_NS {
                                bail!("no sample succeeded for {RECOVERY_LIMIT_NS} ns after a leader change; the last: {why}");
                            }
                            settle(driver, clock)?;
                            // A bare WRITE that failed left its QP in error, and the replica
                            // learns that only from a failure of its own: a command of its
                            // own makes it find and repair the QP.
                            while let Sample::Interrupted(_) = proposer.sample(driver, clock)? {
                                if clock.now_ns() - since > RECOVERY_LIMIT_NS {
                                    bail!("replica 0 did not commit again within {RECOVERY_LIMIT_NS} ns");
                                }
                                settle(driver, clock)?;
                            }
                            discard = blocks.block_warmup.max(1);
                        }
                    }
                }
            }
        }
        measured.push(Measured { size, bare: bare_recorder, mu: mu_recorder, ring: ring_recorder });
    }
    Ok((measured, interruptions))
}

/// Turns for a millisecond (QP repairs, a takeover), then until this replica leads.
fn settle(driver: &mut MuDriver<Machine>, clock: &SharedClock) -> Result<()> {
    let start = clock.now_ns();
    while clock.now_ns() - start < 1_000_000 {
        driver.turn(clock.now_ns());
        driver.drain_events().for_each(drop);
    }
    await_leadership(driver, clock)
}

fn print(report: &Report) {
    let run = &report.run;
    println!("{}: {}", report.benchmark, report.description);
    println!("provider: {} on {}", report.provider, report.device);
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
    let plan = &report.plan;
    println!(
        "{} samples per size and scenario in {} alternating blocks, after {} warm-up (then {} per block)",
        plan.iterations,
        plan.blocks().len(),
        plan.warmup,
        plan.block_warmup
    );
    let load = |load: Option<[f64; 3]>| {
        load.map_or("unknown".into(), |[one, five, _]| format!("{one:.2} (1 min), {five:.2} (5 min)"))
    };
    println!("load average: {} before, {} after", load(report.load_before), load(report.load_after));
    if report.leaderships != 1 || report.candidacies != 1 {
        println!(
            "WARNING: {} leaderships and {} candidacies in the group during the run (1 and 1 expected); {} samples \
             interrupted and not recorded: {:?}",
            report.leaderships,
            report.candidacies,
            report.interruptions.len(),
            report.interruptions
        );
    }
    for figures in &report.sizes {
        println!("{} B commands ({} B entries):", figures.size, figures.entry_bytes);
        println!("    (a) bare WRITE to each follower, first completion: {}", figures.bare);
        println!("    (b) Mu propose -> commit at the leader:            {}", figures.mu);
        println!("    (c) as (a), entry-sized, walking a log-like ring:  {}", figures.ring);
        println!("    Mu/bare medians: {:.2}; Mu/(c) medians: {:.2}", figures.ratio, figures.ring_ratio);
    }
    if let Some(path) = &report.cdf_svg {
        println!("latency CDFs: {}", path.display());
    }
    println!("ratio {:.2}", report.ratio);
}
