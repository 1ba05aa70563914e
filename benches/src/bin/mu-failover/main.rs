//! `mu-failover`: how long a Mu group of three replica processes on the soft provider takes
//! from a signal to its leader (SIGKILL, then SIGSTOP) to the first command committed by
//! the new leader, phase by phase; and how many leader changes a group left alone makes.
//!
//! Each trial starts a fresh group on a fresh fabric: replica 0 busy-polls the leader core
//! and leads, replicas 1 and 2 share the other core and yield it when idle; whoever leads
//! keeps one command of its own in flight. This process (the orchestrator, asleep most of
//! the time) sends the signal and reads back what the survivors noted after their turns,
//! every instant on `CLOCK_MONOTONIC`, which all processes share:
//!
//! - detection: signal → the new leader's detector suspects replica 0;
//! - permission switch: → a majority granted it their logs (the candidacy asked, the
//!   followers revoked replica 0's write right and granted the candidate's);
//! - recovery: → it leads (its log caught up, the undecided entries adopted);
//! - first commit: → the first command it proposed is committed;
//!
//! Then a group with no load is watched for `--quiet-secs` and its candidacies,
//! leaderships and suspicions are counted: each is a spurious leader change (or the
//! start of one).
//!
//! `USEC_MU_TRACE=1` prints, around each failover and for the quiet group, what every
//! replica decided, and its long turns and gaps between turns, on one time line.
#![forbid(unsafe_code)]

mod trial;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, ValueEnum};
use nix::sys::signal::Signal;
use serde::Serialize;
use usec_benches::latency::{LatencySummary, Recorder};
use usec_benches::mu::replica;
use usec_benches::mu::settings::GroupSettings;
use usec_benches::pinning::{choose_cores, usable_cores, CorePair};
use usec_benches::plot::{self, TimelinePanel, TimelineRow};
use usec_benches::run_info::{load_average, RunInfo};

use trial::{Failover, Outcome, Quiet, TrialSetup};

/// Trials given up before their signal, at most (or as many as asked for, if more).
const DISTURBED_MAX: u64 = 20;

/// Mu failover on the soft provider: leader signalled → first commit by the new leader.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Trials per signal (0: none, only the quiet group).
    #[arg(long, default_value_t = 20)]
    trials: u64,
    /// Signals sent to the leader, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "kill,stop")]
    signals: Vec<SignalKind>,
    /// The leader runs this long under load before each signal.
    #[arg(long, default_value_t = 50)]
    warmup_ms: u64,
    /// Seconds a group without load is watched for spurious leader changes (0: none).
    /// The figure the README quotes is from 60.
    #[arg(long, default_value_t = 5)]
    quiet_secs: u64,
    /// Heartbeat READ period of the failure detectors.
    #[arg(long, default_value_t = GroupSettings::default().heartbeat_period_ns)]
    heartbeat_period_ns: u64,
    /// How long a silent replica whose process is alive (waiting for a CPU) is waited for
    /// before its silence counts against it (0: not at all, Mu's plain score).
    #[arg(long, default_value_t = GroupSettings::default().alive_patience_ns)]
    alive_patience_ns: u64,
    /// Core of replica 0 (the leader), then the core replicas 1 and 2 share.
    #[arg(long, default_value_t = CorePair::default())]
    cores: CorePair,
    /// Idle turns of a follower before it yields its core.
    #[arg(long, default_value_t = 16)]
    follower_spins: u32,
    /// Leadership on membership views (uKharon over Mu): the detectors feed a view change,
    /// the next view's designated leader campaigns once its Active(view) lease holds.
    /// Adds the phases "view decided" and "old view invalid" (the lease wait).
    #[arg(long)]
    views: bool,
    /// The Active(view) lease Δ with --views, in nanoseconds.
    #[arg(long, default_value_t = 20_000)]
    lease_ns: u64,
    /// Also write the report as JSON here, and the failover timeline next to it
    /// (`<name>-timeline.svg`).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum SignalKind {
    Kill,
    Stop,
}

impl SignalKind {
    fn signal(self) -> Signal {
        match self {
            SignalKind::Kill => Signal::SIGKILL,
            SignalKind::Stop => Signal::SIGSTOP,
        }
    }

    /// The target's median for the whole failover on the soft provider.
    fn target_ns(self) -> u64 {
        match self {
            SignalKind::Kill => 100_000,
            SignalKind::Stop => 1_000_000,
        }
    }
}

/// Percentiles of each phase for one signal.
#[derive(Debug, Serialize)]
struct Phases {
    signal: SignalKind,
    detection: LatencySummary,
    permission_switch: LatencySummary,
    recovery: LatencySummary,
    first_commit: LatencySummary,
    /// On views: detection → the view without the old leader learned by the new one.
    view_decided: Option<LatencySummary>,
    /// On views: → that view's lease holds (the old view's leases provably expired).
    old_view_invalid: Option<LatencySummary>,
    /// On views: → a majority granted the new leader their logs.
    permission_switch_after_lease: Option<LatencySummary>,
    total: LatencySummary,
    target_p50_ns: u64,
    target_met: bool,
    trials: Vec<Failover>,
    /// Trials not run: replica 0 was not the undisputed leader when the signal was due.
    disturbed: Vec<String>,
    /// SIGSTOP trials in which no survivor could take over while the leader stayed
    /// stopped (not in the figures above).
    stalled: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    provider: &'static str,
    run: RunInfo,
    cores: String,
    group: GroupSettings,
    group_description: String,
    warmup_ms: u64,
    signals: Vec<Phases>,
    quiet: Option<Quiet>,
    load_before: Option<[f64; 3]>,
    load_after: Option<[f64; 3]>,
    timeline_svg: Option<PathBuf>,
}

const PHASES: [&str; 4] = ["detection", "permission switch", "recovery", "first commit"];

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
    run.timer = "CLOCK_MONOTONIC (vDSO clock_gettime), shared by every process: the signal's instant here, \
                 the replicas' after the turns in which things happened"
        .into();
    let settings = GroupSettings {
        heartbeat_period_ns: options.heartbeat_period_ns,
        alive_patience_ns: options.alive_patience_ns,
        views_lease_ns: options.views.then_some(options.lease_ns),
        ..GroupSettings::default()
    };
    let setup = TrialSetup {
        fabric_prefix: format!("usec-mu-failover-{}", std::process::id()),
        settings,
        cores: cores.map(|pair| (pair.initiator, pair.peer)),
        follower_spins: options.follower_spins,
        warmup: Duration::from_millis(options.warmup_ms),
    };
    let mut signals = Vec::new();
    let mut number = 0;
    for &kind in options.signals.iter().filter(|_| options.trials > 0) {
        eprintln!("{kind:?}: {} trials ...", options.trials);
        let (mut trials, mut disturbed, mut stalled) = (Vec::new(), Vec::new(), Vec::new());
        while (trials.len() as u64) < options.trials {
            number += 1;
            match trial::run(&setup, number, kind.signal())
                .with_context(|| format!("{kind:?} trial {number}"))?
            {
                Outcome::Failover(failover) => trials.push(failover),
                Outcome::Stalled(why) => {
                    eprintln!("trial {number} stalled: {why}");
                    stalled.push(why);
                    if stalled.len() as u64 > DISTURBED_MAX.max(options.trials) {
                        bail!("{} trials stalled: {stalled:?}", stalled.len());
                    }
                }
                Outcome::Disturbed(why) => {
                    eprintln!("trial {number} not run: {why}");
                    disturbed.push(why);
                    if disturbed.len() as u64 > DISTURBED_MAX.max(options.trials) {
                        bail!("{} trials disturbed before the signal: {disturbed:?}", disturbed.len());
                    }
                }
            }
        }
        signals.push(phases(kind, trials, disturbed, stalled));
    }
    let quiet = if options.quiet_secs > 0 {
        eprintln!("a group without load, watched for {} s ...", options.quiet_secs);
        Some(trial::quiet(&setup, Duration::from_secs(options.quiet_secs))?)
    } else {
        None
    };
    let timeline_svg = options.json.as_ref().map(|json| plot::beside(json, "-timeline"));
    if let Some(path) = &timeline_svg {
        write_timeline(path, &signals).with_context(|| format!("writing {}", path.display()))?;
    }
    let cores = match cores {
        Some(pair) => format!(
            "replica 0 (the leader) pinned to core {}, busy-poll; replicas 1 and 2 pinned to core {}, cooperative \
             (yield after {} idle turns); this orchestrator unpinned, asleep but for the signal and the reports",
            pair.initiator, pair.peer, options.follower_spins
        ),
        None => "UNPINNED: fewer than two usable cores".into(),
    };
    let report = Report {
        benchmark: "mu-failover",
        provider: "soft provider (shared memory; processes on one machine, not a NIC)",
        run,
        cores,
        group: settings,
        group_description: settings.describe(),
        warmup_ms: options.warmup_ms,
        signals,
        quiet,
        load_before,
        load_after: load_average(),
        timeline_svg,
    };
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print(&report);
    Ok(())
}

fn phases(signal: SignalKind, trials: Vec<Failover>, disturbed: Vec<String>, stalled: Vec<String>) -> Phases {
    let summary = |phase: fn(&Failover) -> u64| {
        let mut recorder = Recorder::new();
        trials.iter().for_each(|trial| recorder.record_ns(phase(trial)));
        recorder.summary()
    };
    let total = summary(|trial| trial.committed_ns);
    let on_views = !trials.is_empty() && trials.iter().all(|trial| trial.view_active_ns.is_some());
    let view = |phase: fn(&Failover) -> u64| on_views.then(|| summary(phase));
    Phases {
        view_decided: view(|trial| trial.view_decided_ns.unwrap_or(0).saturating_sub(trial.suspected_ns)),
        old_view_invalid: view(|trial| {
            trial.view_active_ns.unwrap_or(0).saturating_sub(trial.view_decided_ns.unwrap_or(0))
        }),
        permission_switch_after_lease: view(|trial| {
            trial.granted_ns.saturating_sub(trial.view_active_ns.unwrap_or(0))
        }),
        signal,
        detection: summary(|trial| trial.suspected_ns),
        permission_switch: summary(|trial| trial.granted_ns - trial.suspected_ns),
        recovery: summary(|trial| trial.leader_ns - trial.granted_ns),
        first_commit: summary(|trial| trial.committed_ns - trial.leader_ns),
        target_p50_ns: signal.target_ns(),
        target_met: total.p50_ns < signal.target_ns(),
        total,
        trials,
        disturbed,
        stalled,
    }
}

fn write_timeline(path: &std::path::Path, signals: &[Phases]) -> Result<()> {
    let micros = |ns: u64| ns as f64 / 1_000.0;
    let panels: Vec<TimelinePanel> = signals
        .iter()
        .map(|phases| {
            let mut trials: Vec<&Failover> = phases.trials.iter().collect();
            trials.sort_by_key(|trial| trial.committed_ns);
            let rows = trials
                .iter()
                .enumerate()
                .map(|(index, trial)| {
                    let instants =
                        [0, trial.suspected_ns, trial.granted_ns, trial.leader_ns, trial.committed_ns];
                    let segments = (0..PHASES.len())
                        .map(|phase| (micros(instants[phase]), micros(instants[phase + 1]), phase))
                        .collect();
                    TimelineRow {
                        label: format!("#{}", index + 1),
                        segments,
                        ticks: trial.other_granted_ns.map(micros).into_iter().collect(),
                    }
                })
                .collect();
            TimelinePanel {
                title: format!(
                    "{:?}: signal → first commit by the new leader, {} trials by total (p50 {:.1} µs)",
                    phases.signal,
                    phases.trials.len(),
                    micros(phases.total.p50_ns)
                ),
                rows,
            }
        })
        .collect();
    plot::write_timeline(path, &PHASES, "other follower granted", &panels)
}

fn print(report: &Report) {
    let run = &report.run;
    println!(
        "mu-failover: leader signalled -> first command committed by the new leader, 3 replica processes"
    );
    println!("provider: {}", report.provider);
    run.warn_if_debug();
    println!("{}; cores used: {}", run.provenance(), report.cores);
    println!("timer: {}", run.timer);
    println!("group: {}", report.group_description);
    let load = |load: Option<[f64; 3]>| {
        load.map_or("unknown".into(), |[one, five, _]| format!("{one:.2} (1 min), {five:.2} (5 min)"))
    };
    println!("load average: {} before, {} after", load(report.load_before), load(report.load_after));
    for phases in &report.signals {
        let new_leaders: Vec<u16> = phases.trials.iter().map(|trial| trial.new_leader).collect();
        println!(
            "{:?} ({} trials, new leaders {:?}; replica 0 led {} ms under load first; {} trials not run, replica 0's \
             leadership disputed before the signal; {} stalled until the stopped leader was killed):",
            phases.signal,
            phases.trials.len(),
            new_leaders,
            report.warmup_ms,
            phases.disturbed.len(),
            phases.stalled.len()
        );
        println!("    detection:         {}", phases.detection);
        if let (Some(decided), Some(invalid), Some(switch)) =
            (&phases.view_decided, &phases.old_view_invalid, &phases.permission_switch_after_lease)
        {
            println!("    view decided:      {decided}");
            println!("    old view invalid:  {invalid}");
            println!("    permission switch: {switch} (from the new view's lease on)");
        } else {
            println!("    permission switch: {}", phases.permission_switch);
        }
        println!("    recovery:          {}", phases.recovery);
        println!("    first commit:      {}", phases.first_commit);
        println!("    total:             {}", phases.total);
        println!(
            "    target: total p50 < {} us: {}",
            phases.target_p50_ns / 1_000,
            if phases.target_met { "met" } else { "MISSED" }
        );
    }
    if let Some(quiet) = &report.quiet {
        println!(
            "quiet group watched {:.1} s: {} candidacies, {} leaderships, {} suspicions of live replicas \
             (per replica (id, candidacies, leaderships, suspicions): {:?})",
            quiet.watched_ns as f64 / 1e9,
            quiet.candidacies,
            quiet.leaderships,
            quiet.suspicions,
            quiet.per_replica
        );
        println!("spurious leader changes {}", quiet.leaderships);
    }
    if let Some(path) = &report.timeline_svg {
        println!("timeline: {}", path.display());
    }
}
