//! `failure-detect`: how long each failure detector of `usec-lease-clock` takes to suspect
//! a peer process that is SIGKILLed while it beats.
//!
//! Per trial: a fresh peer process bumps its heartbeat counter in a tight loop (pinned to
//! the peer core); this process (pinned to the initiator core) reads it by RDMA READ every
//! `--period-ns` and runs the detector; after a warm-up in which the peer must stay
//! trusted, a waiter thread SIGKILLs the peer and blocks in `waitpid` until the kernel
//! reports the exit. Three instants on one calibrated clock give:
//!
//! - kill → detected: what an application sees;
//! - exit → detected: the detector's own latency after the kernel reported the exit (it
//!   can be negative: the detector may beat the waiter's wake-up);
//! - kill → exit: what the kernel takes to tear the process down.
//!
//! Detectors: `score` (Mu's: +up on change, −down otherwise, suspect below a threshold),
//! `timeout` (uKharon's: no change for `--silence-ns`, or `--failed-reads` failed reads)
//! and `peer-death` (the soft provider's pidfd-based `PeerLost` event).
#![forbid(unsafe_code)]

mod peer;
mod trial;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, ValueEnum};
use serde::Serialize;
use usec_benches::latency::{LatencySummary, Recorder};
use usec_benches::pinning::{choose_cores, pin_current_thread, usable_cores, CorePair, Pinning};
use usec_benches::run_info::RunInfo;
use usec_lease_clock::clock::{CalibratedClock, CalibrationOptions};
use usec_lease_clock::detector::{
    FailureDetector, PeerLossDetector, ScoreConfig, ScoreDetector, TimeoutConfig, TimeoutDetector,
};
use usec_lease_clock::heartbeat::ReaderConfig;

/// Failure detection latency on the soft provider: peer SIGKILLed → suspected.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Trials per detector.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    trials: u64,
    /// Detectors to measure, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "score,timeout,peer-death")]
    detectors: Vec<Kind>,
    /// Heartbeat read period.
    #[arg(long, default_value_t = 30_000)]
    period_ns: u64,
    /// A read not completed within this counts as a timeout.
    #[arg(long, default_value_t = 20_000)]
    read_timeout_ns: u64,
    /// Score detector: misses from full score to suspicion (score_max − suspect_below + 1
    /// with steps of 1; Mu's +3 / −1 otherwise).
    #[arg(long, default_value_t = 4)]
    score_misses: u32,
    /// Timeout detector: silence that means failure.
    #[arg(long, default_value_t = 100_000)]
    silence_ns: u64,
    /// Timeout detector: consecutive failed reads that mean failure.
    #[arg(long, default_value_t = 2)]
    failed_reads: u32,
    /// Where the thread blocked in `waitpid` on the peer runs: on the initiator's core (it
    /// preempts the detector loop for a moment when it wakes, as the provider's own pidfd
    /// watcher does), on the peer's core (idle once the peer is dead: on a VM, waking an
    /// idle vCPU can take longer than the detection), or anywhere.
    #[arg(long, value_enum, default_value = "initiator")]
    waiter_on: WaiterOn,
    /// Warm-up per trial; suspicions of the live peer meanwhile are counted, and the kill
    /// waits until the peer is trusted.
    #[arg(long, default_value_t = 20)]
    warmup_ms: u64,
    /// Cores of this process and of the peer process.
    #[arg(long, default_value_t = CorePair::default())]
    cores: CorePair,
    /// Device (default: a fresh soft fabric, `soft:usec-benches-<pid>`).
    #[arg(long)]
    device: Option<String>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum WaiterOn {
    Initiator,
    Peer,
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    Score,
    Timeout,
    PeerDeath,
}

/// Percentiles of a signed latency.
#[derive(Clone, Copy, Debug, Serialize)]
struct SignedSummary {
    count: usize,
    min_ns: i64,
    p50_ns: i64,
    p99_ns: i64,
    max_ns: i64,
    /// Trials in which the detector beat the waiter's report of the exit.
    negative: usize,
}

impl SignedSummary {
    fn of(mut samples: Vec<i64>) -> SignedSummary {
        samples.sort_unstable();
        let at = |quantile: f64| {
            let index = ((quantile * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[index]
        };
        SignedSummary {
            count: samples.len(),
            min_ns: samples[0],
            p50_ns: at(0.5),
            p99_ns: at(0.99),
            max_ns: samples[samples.len() - 1],
            negative: samples.iter().filter(|&&sample| sample < 0).count(),
        }
    }
}

#[derive(Debug, Serialize)]
struct DetectorFigures {
    detector: Kind,
    settings: String,
    kill_to_detected: LatencySummary,
    exit_to_detected: SignedSummary,
    kill_to_exit: LatencySummary,
    /// Suspicions of the live peer during the warm-ups.
    false_suspicions: u64,
    /// The warm-ups' total length.
    warmup_ns: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    provider: &'static str,
    device: String,
    run: RunInfo,
    clock: String,
    initiator: Pinning,
    peer_core: Option<usize>,
    trials: u64,
    period_ns: u64,
    read_timeout_ns: u64,
    waiter_on: WaiterOn,
    detectors: Vec<DetectorFigures>,
}

impl Options {
    fn score(&self) -> Result<ScoreConfig> {
        // Steps of 1, no ceiling effects: suspect after exactly `score_misses` misses.
        let config = ScoreConfig {
            score_up: 3,
            score_down: 1,
            score_max: self.score_misses + 2,
            suspect_below: 3,
            trust_at: 3,
        };
        config.validate()?;
        if config.misses_to_suspect() != self.score_misses {
            bail!("--score-misses {} is not reachable", self.score_misses);
        }
        Ok(config)
    }

    fn detector(&self, kind: Kind, now_ns: u64) -> Result<(Box<dyn FailureDetector + Send>, String)> {
        Ok(match kind {
            Kind::Score => {
                let config = self.score()?;
                (Box::new(ScoreDetector::new(config)), format!("{config:?}"))
            }
            Kind::Timeout => {
                let config = TimeoutConfig { silence_ns: self.silence_ns, failed_reads: self.failed_reads };
                config.validate()?;
                (Box::new(TimeoutDetector::new(config, now_ns)), format!("{config:?}"))
            }
            Kind::PeerDeath => (Box::new(PeerLossDetector::new()), "PeerLost event (pidfd watcher)".into()),
        })
    }
}

fn main() -> Result<()> {
    if let Some(role) = usec_benches::peer::role() {
        return match role.as_str() {
            peer::PEER_ROLE => peer::serve(),
            other => bail!("unknown peer role {other:?}"),
        };
    }
    let options = Options::parse();
    let usable = usable_cores();
    let cores = choose_cores(options.cores, &usable)?;
    let mut run = RunInfo::collect(usable.len());
    let initiator = pin_current_thread(cores.map(|pair| pair.initiator));
    let clock = CalibratedClock::calibrate(&CalibrationOptions::default())?;
    run.timer = format!("usec-lease-clock CalibratedClock: {}", clock.report());
    let device = usec_benches::default_soft_device(options.device.clone());
    if !device.starts_with("soft:") {
        bail!("{device}: this benchmark kills peer processes; it runs on the soft provider");
    }
    let reader = ReaderConfig { period_ns: options.period_ns, timeout_ns: options.read_timeout_ns };
    let setup = trial::TrialSetup {
        device: &device,
        clock: &clock,
        reader,
        peer_core: cores.map(|pair| pair.peer),
        waiter_core: match options.waiter_on {
            WaiterOn::Initiator => cores.map(|pair| pair.initiator),
            WaiterOn::Peer => cores.map(|pair| pair.peer),
            WaiterOn::Any => None,
        },
        warmup: Duration::from_millis(options.warmup_ms),
    };
    let mut figures = Vec::new();
    for &kind in &options.detectors {
        eprintln!("{kind:?}: {} trials ...", options.trials);
        let (mut kill_to_detected, mut kill_to_exit, mut exit_to_detected) =
            (Recorder::new(), Recorder::new(), Vec::new());
        let mut settings = String::new();
        let (mut false_suspicions, mut warmup_ns) = (0, 0);
        for number in 0..options.trials {
            settings = options.detector(kind, 0)?.1;
            let make = |now_ns| options.detector(kind, now_ns).expect("checked above").0;
            let instants = trial::run(&setup, make).with_context(|| format!("{kind:?} trial {number}"))?;
            kill_to_detected.record_ns(instants.detected_ns.saturating_sub(instants.killed_ns));
            kill_to_exit.record_ns(instants.exit_reported_ns.saturating_sub(instants.killed_ns));
            exit_to_detected.push(instants.detected_ns as i64 - instants.exit_reported_ns as i64);
            false_suspicions += u64::from(instants.false_suspicions);
            warmup_ns += instants.warm_ns;
        }
        figures.push(DetectorFigures {
            detector: kind,
            settings,
            kill_to_detected: kill_to_detected.summary(),
            exit_to_detected: SignedSummary::of(exit_to_detected),
            kill_to_exit: kill_to_exit.summary(),
            false_suspicions,
            warmup_ns,
        });
    }
    let report = Report {
        benchmark: "failure-detect",
        provider: "soft (userspace RDMA over shared memory; not a NIC)",
        device,
        run,
        clock: clock.report().to_string(),
        initiator,
        peer_core: cores.map(|pair| pair.peer),
        trials: options.trials,
        period_ns: options.period_ns,
        read_timeout_ns: options.read_timeout_ns,
        waiter_on: options.waiter_on,
        detectors: figures,
    };
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print(&report);
    Ok(())
}

fn print(report: &Report) {
    let run = &report.run;
    println!("failure-detect: peer process SIGKILLed while beating -> suspected, per detector");
    println!("provider: {} on {}", report.provider, report.device);
    run.warn_if_debug();
    println!("{}; this process {}, peer core {:?}", run.provenance(), report.initiator, report.peer_core);
    println!("clock: {}", report.clock);
    println!("the thread blocked in waitpid on the peer runs on: {:?} core", report.waiter_on);
    println!(
        "{} trials per detector; heartbeat READ every {} ns, read timeout {} ns; peer bumps in a tight loop",
        report.trials, report.period_ns, report.read_timeout_ns
    );
    for figures in &report.detectors {
        let signed = &figures.exit_to_detected;
        println!("{:?} ({})", figures.detector, figures.settings);
        println!("    kill -> detected: {}", figures.kill_to_detected);
        println!(
            "    exit -> detected: p50 {} ns  p99 {} ns  min {} ns  max {} ns  ({} of {} before the waiter saw the exit)",
            signed.p50_ns, signed.p99_ns, signed.min_ns, signed.max_ns, signed.negative, signed.count
        );
        println!("    kill -> exit reported by waitpid: {}", figures.kill_to_exit);
        println!(
            "    false suspicions of the live peer: {} in {:.1} s of warm-up ({:.1} per second)",
            figures.false_suspicions,
            figures.warmup_ns as f64 / 1e9,
            figures.false_suspicions as f64 / (figures.warmup_ns as f64 / 1e9)
        );
    }
}
