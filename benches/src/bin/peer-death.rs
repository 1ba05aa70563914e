//! `peer-death`: how soon the soft provider tells a process that its peer process died.
//!
//! The soft provider watches each peer process through a pidfd and reports its death as a
//! `PeerLost` async event on every QP connected to it (DESIGN.md: "detects process exit
//! in microseconds"; the target is under 100 µs after the exit). Each trial connects a QP
//! to a fresh peer process and spins on `Context::poll_event` until the event comes, after
//! the peer dies one of two ways:
//!
//! - (a) exit: the peer stamps `CLOCK_MONOTONIC` (one clock for every process of the
//!   machine) into our memory with an RDMA WRITE — which on the soft provider has landed
//!   when the post returns — and calls `exit` at once. Measured: our event time minus that
//!   stamp, i.e. the kernel's exit work for a small process plus the provider's detection.
//! - (b) SIGKILL: we stamp the clock right before `kill`. Measured: event time minus that
//!   stamp, so it also holds signal delivery and the kernel tearing the process down.
//!
//! Most of either is the kernel's exit path (unmapping, reaping threads), not detection.
//! To separate the two, a thread blocked in `waitid(WEXITED | WNOWAIT)` on the peer stamps
//! the moment the kernel reports the exit; the report gives death → kernel report and
//! kernel report → our event (negative when the event won the race).
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use usec_benches::latency::Recorder;
use usec_benches::peer::{channel_to_initiator, Peer};
use usec_benches::pinning::{choose_cores, pin_current_thread, usable_cores, CorePair};
use usec_benches::run_info::RunInfo;
use usec_regions::RemoteRegion;
use usec_verbs::{
    AccessFlags, AsyncEventKind, Completion, Context, Endpoint, Payload, QpOptions, RemoteAddr, SendWr,
};

const PEER_ROLE: &str = "peer-death";
/// How long a trial waits for the event before it fails.
const EVENT_LIMIT: Duration = Duration::from_secs(5);

/// Peer-death detection latency of the soft provider.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Trials per way of dying.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    trials: u64,
    /// Device (default: a fresh soft fabric, `soft:usec-benches-<pid>`).
    #[arg(long)]
    device: Option<String>,
    /// Cores of this process's polling thread and of the peer.
    #[arg(long, default_value_t = CorePair::default())]
    cores: CorePair,
}

#[derive(Debug, Serialize, Deserialize)]
enum ToPeer {
    Open {
        device: String,
        core: Option<usize>,
    },
    Connect {
        endpoint: String,
        /// The 8-byte stamp word, as a `RemoteRegion` descriptor.
        stamp: Vec<u8>,
    },
    /// Stamp the clock into our memory and exit.
    StampAndExit,
}

#[derive(Debug, Serialize, Deserialize)]
enum FromPeer {
    Opened { endpoint: String },
    Ready,
}

fn monotonic_ns() -> u64 {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always readable");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

/// The peer: connect, then wait; on `StampAndExit`, write the clock into the initiator's
/// memory and exit without unwinding anything.
fn serve() -> Result<()> {
    let mut channel = channel_to_initiator();
    let Some(ToPeer::Open { device, core }) = channel.receive()? else { bail!("expected Open") };
    pin_current_thread(core);
    let context = Context::open(&device)?;
    let pd = context.alloc_pd()?;
    let mut cq = context.create_cq(4)?;
    let mut qp = pd.create_qp(&cq, &cq, &QpOptions::default())?;
    channel.send(&FromPeer::Opened { endpoint: qp.endpoint().to_string() })?;
    let Some(ToPeer::Connect { endpoint, stamp }) = channel.receive()? else { bail!("expected Connect") };
    qp.connect(&endpoint.parse::<Endpoint>()?, &Default::default())?;
    channel.send(&FromPeer::Ready)?;
    match channel.receive()? {
        Some(ToPeer::StampAndExit) => {
            let now = monotonic_ns().to_ne_bytes();
            let target = RemoteAddr::within(&RemoteRegion::from_bytes(&stamp)?, 0, now.len() as u64)?;
            qp.post_send(&[SendWr::write(0, target, Payload::Inline(&now))])?;
            let mut done = [Completion::default(); 1];
            while cq.poll(&mut done) == 0 {}
            std::process::exit(0);
        }
        // The initiator closed the channel, or will SIGKILL us: wait.
        _ => loop {
            std::thread::park();
        },
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Death {
    Exit,
    Kill,
}

/// What one trial measured, in nanoseconds.
struct Timing {
    /// Death → our PeerLost event.
    death_to_event: u64,
    /// Death → the kernel reporting the exit to a waiting thread.
    death_to_kernel: u64,
    /// Kernel report → our event (negative: the event came first).
    kernel_to_event: i64,
}

/// One trial: a fresh QP to a fresh peer process, its death, our event.
fn trial(context: &Context, device: &str, peer_core: Option<usize>, death: Death) -> Result<Timing> {
    let pd = context.alloc_pd()?;
    let cq = context.create_cq(4)?;
    let stamp = Arc::new(usec_regions::Region::new(4096)?);
    let mr = pd.register(&stamp, AccessFlags::all_remote())?;
    let mut qp = pd.create_qp(&cq, &cq, &QpOptions::default())?;
    let mut peer = Peer::spawn(PEER_ROLE)?;
    peer.send(&ToPeer::Open { device: device.to_string(), core: peer_core })?;
    let FromPeer::Opened { endpoint } = peer.receive()? else { bail!("expected Opened") };
    qp.connect(&endpoint.parse::<Endpoint>()?, &Default::default())?;
    let word = mr.remote_region().sub(0, 8)?;
    peer.send(&ToPeer::Connect { endpoint: qp.endpoint().to_string(), stamp: word.to_bytes().to_vec() })?;
    let FromPeer::Ready = peer.receive()? else { bail!("expected Ready") };
    while context.poll_event().is_some() {}
    let pid = Pid::from_raw(peer.pid() as i32);
    // Unpinned, like the provider's own watcher: it blocks until the kernel reports.
    let kernel_report = std::thread::spawn(move || -> Result<u64> {
        waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT).context("waitid")?;
        Ok(monotonic_ns())
    });
    let died_ns = match death {
        Death::Exit => {
            peer.send(&ToPeer::StampAndExit)?;
            None
        }
        Death::Kill => {
            let now = monotonic_ns();
            kill(pid, Signal::SIGKILL).context("SIGKILL")?;
            Some(now)
        }
    };
    let start = Instant::now();
    let detected_ns = loop {
        match context.poll_event() {
            Some(event) if event.kind == AsyncEventKind::PeerLost && event.qp_num == Some(qp.qp_num()) => {
                break monotonic_ns();
            }
            _ if start.elapsed() > EVENT_LIMIT => {
                bail!("no PeerLost event {EVENT_LIMIT:?} after the peer died")
            }
            _ => {}
        }
    };
    let died_ns = died_ns.unwrap_or_else(|| stamp.read_pod::<u64>(0).expect("in bounds"));
    if died_ns == 0 {
        bail!("the peer's stamp never landed");
    }
    let kernel_ns = kernel_report.join().map_err(|_| anyhow::anyhow!("the waitid thread panicked"))??;
    drop(peer);
    Ok(Timing {
        death_to_event: detected_ns.saturating_sub(died_ns),
        death_to_kernel: kernel_ns.saturating_sub(died_ns),
        kernel_to_event: detected_ns as i64 - kernel_ns as i64,
    })
}

/// Median, 90th percentile, min and max of signed samples, in microseconds.
fn signed_summary(mut samples: Vec<i64>) -> String {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    format!("p50 {:.1} us  p90 {:.1} us  min {:.1} us  max {:.1} us", at(0.5), at(0.9), at(0.0), at(1.0))
}

fn main() -> Result<()> {
    if usec_benches::peer::role().as_deref() == Some(PEER_ROLE) {
        return serve();
    }
    let options = Options::parse();
    let usable = usable_cores();
    let cores = choose_cores(options.cores, &usable)?;
    let info = RunInfo::collect(usable.len());
    let device = usec_benches::default_soft_device(options.device.clone());
    let pinning = pin_current_thread(cores.map(|pair| pair.initiator));
    let peer_core = cores.map(|pair| pair.peer);
    let context = Context::open(&device)?;
    println!("peer-death: how soon {} reports a dead peer process (PeerLost async event)", device);
    println!(
        "{}; polling thread {pinning}, peer core {}; the provider's watcher thread unpinned",
        info.provenance(),
        peer_core.map_or("unpinned".to_string(), |core| core.to_string()),
    );
    info.warn_if_debug();
    for (death, label) in [
        (Death::Exit, "(a) the peer calls exit (death = its last clock stamp)"),
        (Death::Kill, "(b) the peer is SIGKILLed (death = our kill())"),
    ] {
        let (mut to_event, mut to_kernel, mut kernel_to_event) =
            (Recorder::new(), Recorder::new(), Vec::new());
        for _ in 0..options.trials {
            let timing = trial(&context, &device, peer_core, death)?;
            to_event.record_ns(timing.death_to_event);
            to_kernel.record_ns(timing.death_to_kernel);
            kernel_to_event.push(timing.kernel_to_event);
        }
        println!("{label}, {} trials", options.trials);
        println!("    death -> our PeerLost event:          {}", to_event.summary());
        println!("    death -> kernel reports the exit:     {}", to_kernel.summary());
        println!("    kernel reports the exit -> our event: {}", signed_summary(kernel_to_event));
    }
    Ok(())
}
