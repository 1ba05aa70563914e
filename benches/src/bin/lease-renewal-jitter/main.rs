//! `lease-renewal-jitter`: a `LeaseHolder` in this process keeps renewing a microsecond
//! lease from a `LeaseGrantor` in a peer process (SENDs over the soft provider), first on
//! a quiet machine, then with busy threads competing for both cores. Reports the
//! distribution of the intervals between renewals, of the margin left on the lease when
//! each renewal landed, and every expiry (the lease lapsing while wanted).
#![forbid(unsafe_code)]

mod grantor;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use serde::Serialize;
use usec_benches::latency::{LatencySummary, Recorder};
use usec_benches::pinning::{choose_cores, pin_current_thread, usable_cores, CorePair, Pinning};
use usec_benches::run_info::RunInfo;
use usec_lease_clock::clock::{CalibratedClock, CalibrationOptions, Clock};
use usec_lease_clock::lease::{
    DriftBound, GrantorConfig, HolderConfig, LeaseChannel, LeaseHolder, LeaseMessage, ReplyEffect,
};
use usec_verbs::Context;

/// Lease renewal jitter on the soft provider, quiet and under load.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// How long each scenario renews.
    #[arg(long, default_value_t = 3_000)]
    duration_ms: u64,
    /// Δ, the lease the grantor hands out.
    #[arg(long, default_value_t = 20_000)]
    lease_ns: u64,
    /// The holder renews once less than this is left.
    #[arg(long, default_value_t = 10_000)]
    renew_before_ns: u64,
    /// The holder asks again after this long without an answer.
    #[arg(long, default_value_t = 5_000)]
    retry_ns: u64,
    /// The drift bound ρ the grantor assumes.
    #[arg(long, default_value_t = 1_000)]
    rho_ppm: u32,
    /// The grantor's slack.
    #[arg(long, default_value_t = 1_000)]
    slack_ns: u64,
    /// Busy threads (in this process, pinned round-robin over the cores) in the loaded
    /// scenario.
    #[arg(long, default_value_t = 2)]
    load_threads: usize,
    /// Cores of this process and of the grantor process.
    #[arg(long, default_value_t = CorePair::default())]
    cores: CorePair,
    /// Device (default: a fresh soft fabric, `soft:usec-benches-<pid>`).
    #[arg(long)]
    device: Option<String>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Scenario {
    name: String,
    load_threads: usize,
    renewals: u64,
    denials: u64,
    /// Times the lease lapsed while the holder wanted it.
    expiries: u64,
    /// Time without the lease, summed over the expiries.
    unleased_ns: u64,
    renewal_interval: LatencySummary,
    margin_at_renewal: LatencySummary,
    /// The lapses, as durations.
    gaps: Option<LatencySummary>,
    /// Requests dropped because the send queue was full (the grantor was not taking them).
    requests_dropped: u64,
    /// Turns of the holder's loop that started more than 1 ms after the previous one.
    holder_stalls_over_1ms: u64,
    /// The longest such gap.
    holder_longest_stall_ns: u64,
    /// The grantor's view of its own loop.
    grantor: grantor::GrantorStats,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    provider: &'static str,
    device: String,
    run: RunInfo,
    holder_clock: String,
    grantor_clock: String,
    holder: Pinning,
    grantor: Pinning,
    lease_ns: u64,
    renew_before_ns: u64,
    retry_ns: u64,
    grantor_wait_ns: u64,
    duration_ms: u64,
    scenarios: Vec<Scenario>,
}

fn main() -> Result<()> {
    if let Some(role) = usec_benches::peer::role() {
        return match role.as_str() {
            grantor::PEER_ROLE => grantor::serve(),
            other => bail!("unknown peer role {other:?}"),
        };
    }
    let options = Options::parse();
    let usable = usable_cores();
    let cores = choose_cores(options.cores, &usable)?;
    let mut run = RunInfo::collect(usable.len());
    let holder_pinning = pin_current_thread(cores.map(|pair| pair.initiator));
    let clock = CalibratedClock::calibrate(&CalibrationOptions::default())?;
    run.timer = format!("usec-lease-clock CalibratedClock: {}", clock.report());
    let device = usec_benches::default_soft_device(options.device.clone());
    let config = GrantorConfig {
        lease_ns: options.lease_ns,
        drift: DriftBound::from_ppm(options.rho_ppm)?,
        slack_ns: options.slack_ns,
    };
    let (mut scenarios, mut grantor_pinning, mut grantor_clock) = (Vec::new(), None, String::new());
    for load_threads in [0, options.load_threads] {
        let name =
            if load_threads == 0 { "quiet".to_string() } else { format!("{load_threads} busy threads") };
        eprintln!("{name}: renewing for {} ms ...", options.duration_ms);
        let context = Context::open(&device).with_context(|| format!("opening {device}"))?;
        let pd = context.alloc_pd()?;
        let mut channel = LeaseChannel::new(&pd, grantor::grantor_node(), 64)?;
        let (peer, pinning, peer_clock) =
            grantor::start(&mut channel, &device, cores.map(|pair| pair.peer), &config)?;
        grantor_pinning = Some(pinning);
        grantor_clock = peer_clock;
        let load = Load::start(load_threads, &usable);
        let scenario = renew(&options, &clock, &mut channel, name, load_threads);
        drop(load);
        let stats = grantor::stop(peer)?;
        drop(channel);
        scenarios.push(Scenario { grantor: stats, ..scenario? });
    }
    let report = Report {
        benchmark: "lease-renewal-jitter",
        provider: "soft (userspace RDMA over shared memory; not a NIC)",
        device,
        run,
        holder_clock: clock.report().to_string(),
        grantor_clock,
        holder: holder_pinning,
        grantor: grantor_pinning.expect("at least one scenario ran"),
        lease_ns: options.lease_ns,
        renew_before_ns: options.renew_before_ns,
        retry_ns: options.retry_ns,
        grantor_wait_ns: config.wait_ns(),
        duration_ms: options.duration_ms,
        scenarios,
    };
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print(&report);
    Ok(())
}

/// The holder's loop for one scenario.
fn renew(
    options: &Options,
    clock: &CalibratedClock,
    channel: &mut LeaseChannel,
    name: String,
    load_threads: usize,
) -> Result<Scenario> {
    let config = HolderConfig { renew_before_ns: options.renew_before_ns, retry_after_ns: options.retry_ns };
    let mut holder = LeaseHolder::new(grantor::holder_node(), config);
    let (mut intervals, mut margins, mut gaps) = (Recorder::new(), Recorder::new(), Recorder::new());
    let (mut renewals, mut denials, mut expiries, mut unleased_ns) = (0, 0, 0, 0);
    let (mut last_grant_ns, mut held, mut lapsed_at) = (None::<u64>, false, None::<u64>);
    let end = Instant::now() + Duration::from_millis(options.duration_ms);
    let (mut spins, mut requests_dropped, mut stalls, mut longest_stall_ns) = (0u32, 0, 0, 0);
    let mut last_turn_ns = clock.now_ns();
    loop {
        spins = spins.wrapping_add(1);
        if spins % 256 == 0 && Instant::now() >= end {
            break;
        }
        let now = clock.now_ns();
        let gap = now.saturating_sub(last_turn_ns);
        if gap > 1_000_000 {
            stalls += 1;
            longest_stall_ns = longest_stall_ns.max(gap);
        }
        last_turn_ns = now;
        let valid = holder.is_valid(now);
        if held && !valid {
            expiries += 1;
            lapsed_at = Some(now);
        }
        if !held && valid {
            if let Some(since) = lapsed_at.take() {
                gaps.record_ns(now - since);
                unleased_ns += now - since;
            }
        }
        held = valid;
        if let Some(request) = holder.poll_request(now) {
            requests_dropped += u64::from(!channel.send(&LeaseMessage::Request(request))?);
        }
        while let Some(message) = channel.poll()? {
            let LeaseMessage::Reply(reply) = message else { bail!("the grantor sent a request") };
            let now = clock.now_ns();
            let margin = holder.remaining_ns(now);
            match holder.on_reply(now, &reply) {
                ReplyEffect::Granted { .. } => {
                    if let Some(previous) = last_grant_ns.replace(now) {
                        intervals.record_ns(now - previous);
                        margins.record_ns(margin);
                    }
                    renewals += 1;
                }
                ReplyEffect::Denied { .. } => denials += 1,
                ReplyEffect::Ignored => {}
            }
        }
    }
    if renewals < 2 {
        bail!("{name}: the holder was granted the lease {renewals} times ({denials} denials, spins {spins})");
    }
    let gaps = (expiries > 0 && gaps.summary().count > 0).then(|| gaps.summary());
    Ok(Scenario {
        name,
        load_threads,
        renewals,
        denials,
        expiries,
        unleased_ns,
        renewal_interval: intervals.summary(),
        margin_at_renewal: margins.summary(),
        gaps,
        requests_dropped,
        holder_stalls_over_1ms: stalls,
        holder_longest_stall_ns: longest_stall_ns,
        grantor: grantor::GrantorStats::default(),
    })
}

/// Busy threads until dropped, pinned round-robin over the usable cores (threads would
/// otherwise inherit the holder's pinning).
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(threads: usize, cores: &[usize]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|index| {
                let stop = Arc::clone(&stop);
                let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
                std::thread::spawn(move || {
                    pin_current_thread(core);
                    let mut value = index as u64 + 1;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            value = black_box(value.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
                        }
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn print(report: &Report) {
    let run = &report.run;
    println!("lease-renewal-jitter: a holder renews a lease from a grantor process, quiet and under load");
    println!("provider: {} on {}", report.provider, report.device);
    run.warn_if_debug();
    println!("{}; holder {}, grantor {}", run.provenance(), report.holder, report.grantor);
    println!("holder clock: {}", report.holder_clock);
    println!("grantor clock: {}", report.grantor_clock);
    println!(
        "Δ {} ns, renew with {} ns left, re-ask after {} ns; grantor's handover wait W {} ns; {} ms per scenario",
        report.lease_ns, report.renew_before_ns, report.retry_ns, report.grantor_wait_ns, report.duration_ms
    );
    for scenario in &report.scenarios {
        println!(
            "{}: {} grants, {} denials, {} expiries ({:.3} ms without the lease)",
            scenario.name,
            scenario.renewals,
            scenario.denials,
            scenario.expiries,
            scenario.unleased_ns as f64 / 1e6
        );
        println!("    renewal interval: {}", scenario.renewal_interval);
        println!("    margin left at renewal: {}", scenario.margin_at_renewal);
        if let Some(gaps) = &scenario.gaps {
            println!("    lapses: {gaps}");
        }
        let grantor = &scenario.grantor;
        println!(
            "    loops off their core > 1 ms: holder {} (longest {:.2} ms), grantor {} (longest {:.2} ms); \
             dropped (send queue full): {} requests, {} replies",
            scenario.holder_stalls_over_1ms,
            scenario.holder_longest_stall_ns as f64 / 1e6,
            grantor.stalls_over_1ms,
            grantor.longest_stall_ns as f64 / 1e6,
            scenario.requests_dropped,
            grantor.replies_dropped
        );
    }
}
