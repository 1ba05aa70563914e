//! One trial: a fresh peer, a warm-up that counts false suspicions of the live peer, then
//! SIGKILL, and the three instants that matter — the kill sent, the exit reported by the
//! kernel to a thread blocked in `waitpid`, and the detector's suspicion.

use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use usec_benches::pinning::pin_current_thread;
use usec_lease_clock::clock::{CalibratedClock, Clock};
use usec_lease_clock::detector::{FailureDetector, Observation};
use usec_lease_clock::heartbeat::{HeartbeatMonitor, HeartbeatReader, ReaderConfig, VerbsHeartbeats};
use usec_verbs::{ConnectOptions, Context};

use crate::peer::{watched, KillablePeer};

/// How long a killed peer may go unnoticed before the trial fails.
const DETECTION_LIMIT: Duration = Duration::from_secs(5);

/// The instants of one trial, on the calibrated clock.
#[derive(Clone, Copy, Debug)]
pub struct Instants {
    pub killed_ns: u64,
    pub exit_reported_ns: u64,
    pub detected_ns: u64,
    /// Suspicions of the live peer during the warm-up.
    pub false_suspicions: u32,
    /// How long the warm-up ran.
    pub warm_ns: u64,
}

/// What a trial needs.
pub struct TrialSetup<'a> {
    pub device: &'a str,
    pub clock: &'a CalibratedClock,
    pub reader: ReaderConfig,
    pub peer_core: Option<usize>,
    /// Where the thread blocked in `waitpid` runs (`None`: unpinned).
    pub waiter_core: Option<usize>,
    pub warmup: Duration,
}

/// Runs one trial with the detector `make_detector(now)` builds watching the peer; it is
/// built once the peer is connected, so that a timeout detector's silence starts then.
pub fn run(
    setup: &TrialSetup<'_>,
    make_detector: impl FnOnce(u64) -> Box<dyn FailureDetector + Send>,
) -> Result<Instants> {
    let context = Context::open(setup.device).with_context(|| format!("opening {}", setup.device))?;
    let pd = context.alloc_pd()?;
    let mut heartbeats = VerbsHeartbeats::new(&pd, &[watched()])?;
    let mut peer = KillablePeer::spawn()?;
    let ready = peer.connect(setup.device, setup.peer_core, &heartbeats.local(watched())?)?;
    heartbeats.connect(watched(), &ready.endpoint.parse()?, &ConnectOptions::default())?;
    let clock = setup.clock;
    let now = clock.now_ns();
    let reader = HeartbeatReader::new(setup.reader, [watched()], now);
    let mut monitor = HeartbeatMonitor::new(reader, vec![make_detector(now)]);

    // A busy machine (or a VM whose vCPUs the host preempts) stalls the peer now and then,
    // and a short read period takes such a stall for a failure: count those false
    // suspicions, and kill only while the peer is trusted.
    let warm_start = Instant::now();
    let mut false_suspicions = 0;
    while warm_start.elapsed() < setup.warmup || monitor.verdict(watched()).is_suspected() {
        false_suspicions += u32::from(watch(clock, &mut monitor, &mut heartbeats).is_some());
        if warm_start.elapsed() > setup.warmup + DETECTION_LIMIT {
            bail!("the live peer stayed suspected for {DETECTION_LIMIT:?} after the warm-up");
        }
    }
    let warm_ns = warm_start.elapsed().as_nanos() as u64;

    // This thread sends SIGKILL, then hands the child to a waiter thread that blocks in
    // `waitpid` until the kernel reports the exit (see `--waiter-on` for where it runs).
    let (give, take) = mpsc::channel::<Child>();
    let waiter_clock = clock.clone();
    let waiter_core = setup.waiter_core;
    let waiter = std::thread::spawn(move || -> Result<u64> {
        pin_current_thread(waiter_core);
        let mut child = take.recv().context("the trial ended before the kill")?;
        child.wait().context("waiting for the peer's exit")?;
        Ok(waiter_clock.now_ns())
    });
    let mut child = peer.take_child();
    let killed_ns = clock.now_ns();
    let killed = child.kill();
    // The waiter reaps the child whether or not the kill worked.
    give.send(child).context("handing the child to the waiter")?;
    killed.context("SIGKILL")?;
    let started = Instant::now();
    let detected_ns = loop {
        if let Some(at) = watch(clock, &mut monitor, &mut heartbeats) {
            break at;
        }
        if started.elapsed() > DETECTION_LIMIT {
            bail!("the killed peer was not suspected within {DETECTION_LIMIT:?}");
        }
    };
    let exit_reported_ns = waiter.join().expect("the waiter thread panicked")?;
    Ok(Instants { killed_ns, exit_reported_ns, detected_ns, false_suspicions, warm_ns })
}

/// One turn of the detector loop: PeerLost events, reads, verdict. Returns the time of a
/// suspicion.
#[inline]
fn watch(
    clock: &CalibratedClock,
    monitor: &mut HeartbeatMonitor<Box<dyn FailureDetector + Send>>,
    heartbeats: &mut VerbsHeartbeats,
) -> Option<u64> {
    let now = clock.now_ns();
    for peer in heartbeats.poll_lost_peers() {
        monitor.observe(now, peer, Observation::PeerLost);
    }
    // The glue's CQ is its own: nothing else completes there.
    monitor.tick(now, heartbeats, &mut |other| panic!("a foreign completion on the heartbeat CQ: {other:?}"));
    let mut suspected = None;
    while let Some(change) = monitor.poll_change() {
        if change.verdict.is_suspected() {
            suspected = Some(now);
        }
    }
    suspected
}
