//! Heartbeats, detectors and leases on the soft provider, with peers in real processes
//! that get SIGKILLed, SIGSTOPped and SIGCONTinued, and restarted into a running qp-pool
//! cluster.

mod child;
mod pool;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use child::{run_child, ChildPeer, CHILD_ROLE};
use libtest_mimic::{Arguments, Failed, Trial};
use usec_lease_clock::clock::{Clock, MonotonicClock};
use usec_lease_clock::detector::{
    FailureDetector, Observation, PeerLossDetector, ScoreConfig, ScoreDetector, TimeoutConfig,
    TimeoutDetector, Verdict,
};
use usec_lease_clock::heartbeat::{HeartbeatMonitor, HeartbeatReader, ReaderConfig, VerbsHeartbeats};
use usec_lease_clock::lease::{HolderConfig, LeaseChannel, LeaseHolder, LeaseMessage};
use usec_qp_pool::NodeId;
use usec_verbs::{ConnectOptions, Context};

type Outcome = Result<(), Failed>;
type Body = fn() -> Outcome;

/// Reads every millisecond: the child beats about every 70 µs (it sleeps between bumps),
/// and the machine running the tests may be busy enough to hold it off the CPU for a
/// while. (The `failure-detect` benchmark measures the microsecond settings.)
const READER: ReaderConfig = ReaderConfig { period_ns: 1_000_000, timeout_ns: 5_000_000 };
/// Generous: the machine running the tests may be busy.
const DETECTION_LIMIT: Duration = Duration::from_secs(2);

static NEXT_FABRIC: AtomicU32 = AtomicU32::new(0);

fn fresh_device() -> String {
    format!("soft:lease-clock-test-{}-{}", std::process::id(), NEXT_FABRIC.fetch_add(1, Ordering::Relaxed))
}

/// This process's side: the heartbeat glue for one peer and a monitor.
struct Watcher {
    monitor: HeartbeatMonitor<Box<dyn FailureDetector + Send>>,
    heartbeats: VerbsHeartbeats,
    clock: MonotonicClock,
    _context: Context,
}

/// The test process is node 0; its child, node 1.
fn child() -> NodeId {
    NodeId::new(1).expect("a node id")
}

impl Watcher {
    /// Spawns a heartbeat child and connects to it.
    fn start(detector: Box<dyn FailureDetector + Send>) -> Result<(Watcher, ChildPeer), Failed> {
        let device = fresh_device();
        let context = Context::open(&device)?;
        let pd = context.alloc_pd()?;
        let mut heartbeats = VerbsHeartbeats::new(&pd, &[child()])?;
        let mut peer = ChildPeer::spawn("heartbeat", &device)?;
        peer.handshake(|theirs| {
            heartbeats.connect(child(), &theirs.parse()?, &ConnectOptions::default())?;
            Ok(heartbeats.local(child())?.to_string())
        })?;
        let clock = MonotonicClock::new();
        let reader = HeartbeatReader::new(READER, [child()], clock.now_ns());
        let monitor = HeartbeatMonitor::new(reader, vec![detector]);
        Ok((Watcher { monitor, heartbeats, clock, _context: context }, peer))
    }

    /// Ticks until the peer's verdict is `suspected` (or `limit` passes); how long it took.
    fn until(&mut self, suspected: bool, limit: Duration) -> Result<Duration, Failed> {
        let start = Instant::now();
        loop {
            let now = self.clock.now_ns();
            for peer in self.heartbeats.poll_lost_peers() {
                self.monitor.observe(now, peer, Observation::PeerLost);
            }
            self.monitor
                .tick(now, &mut self.heartbeats, &mut |other| panic!("a foreign completion: {other:?}"));
            while self.monitor.poll_change().is_some() {}
            if self.monitor.verdict(child()).is_suspected() == suspected {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                let want = if suspected { "suspected" } else { "trusted" };
                return Err(format!("the peer was not {want} within {limit:?}").into());
            }
            // Leave the CPU to the child until the next read is due (or 100 µs pass, to
            // notice a PeerLost event).
            let next = self.monitor.reader().next_deadline_ns().unwrap_or(u64::MAX);
            let idle_ns = next.saturating_sub(self.clock.now_ns()).min(100_000);
            std::thread::sleep(Duration::from_nanos(idle_ns));
        }
    }

    /// Ticks until the live peer is trusted, so that a suspicion after the kill is the
    /// kill's. (How often a live peer is suspected by mistake depends on how the machine
    /// schedules the two processes: the `failure-detect` benchmark measures it; a test
    /// on a loaded 2-core machine cannot promise a number.)
    fn trusted_before_the_kill(&mut self) -> Outcome {
        self.until(false, DETECTION_LIMIT).map(|_| ())
    }
}

fn killed_peer_is_suspected(detector: Box<dyn FailureDetector + Send>, label: &str) -> Outcome {
    let (mut watcher, mut peer) = Watcher::start(detector)?;
    watcher.trusted_before_the_kill()?;
    peer.child.kill()?;
    let took = watcher.until(true, DETECTION_LIMIT)?;
    eprintln!("[soft] {label}: SIGKILLed peer suspected {took:?} after the kill was sent");
    Ok(())
}

fn score_detector_sees_a_killed_peer() -> Outcome {
    killed_peer_is_suspected(Box::new(ScoreDetector::new(ScoreConfig::default())), "score")
}

fn timeout_detector_sees_a_killed_peer() -> Outcome {
    let config = TimeoutConfig { silence_ns: 10_000_000, failed_reads: 2 };
    killed_peer_is_suspected(Box::new(TimeoutDetector::new(config, 0)), "timeout")
}

fn peer_loss_detector_sees_a_killed_peer() -> Outcome {
    killed_peer_is_suspected(Box::new(PeerLossDetector::new()), "peer loss (pidfd)")
}

fn stopped_peer_is_suspected_then_trusted_after_sigcont() -> Outcome {
    let (mut watcher, peer) = Watcher::start(Box::new(ScoreDetector::new(ScoreConfig::default())))?;
    watcher.trusted_before_the_kill()?;
    peer.signal("STOP")?;
    let suspected = watcher.until(true, DETECTION_LIMIT);
    peer.signal("CONT")?;
    let took = suspected?;
    let back = watcher.until(false, DETECTION_LIMIT)?;
    eprintln!("[soft] score: SIGSTOPped peer suspected after {took:?}, trusted {back:?} after SIGCONT");
    match watcher.monitor.verdict(child()) {
        Verdict::Trusted => Ok(()),
        verdict => Err(format!("after SIGCONT: {verdict:?}").into()),
    }
}

fn lease_from_a_grantor_process_lapses_when_it_dies() -> Outcome {
    let device = fresh_device();
    let context = Context::open(&device)?;
    let pd = context.alloc_pd()?;
    let mut channel = LeaseChannel::new(&pd, NodeId::new(1)?, 16)?; // the grantor child is node 1
    let mut peer = ChildPeer::spawn("grantor", &device)?;
    peer.handshake(|theirs| {
        channel.connect(&theirs.parse()?, &ConnectOptions::default())?;
        Ok(channel.endpoint().to_string())
    })?;
    // The grantor's Δ is 20 µs: renew with 15 µs left, as fast as the channel allows.
    let mut holder =
        LeaseHolder::new(NodeId::new(0)?, HolderConfig { renew_before_ns: 15_000, retry_after_ns: 50_000 });
    let clock = MonotonicClock::new();
    let (start, mut grants) = (Instant::now(), 0u64);
    while start.elapsed() < Duration::from_millis(50) {
        if let Some(request) = holder.poll_request(clock.now_ns()) {
            channel.send(&LeaseMessage::Request(request))?;
        }
        std::thread::yield_now();
        while let Some(LeaseMessage::Reply(reply)) = channel.poll()? {
            grants += u64::from(matches!(reply, usec_lease_clock::lease::LeaseReply::Granted { .. }));
            holder.on_reply(clock.now_ns(), &reply);
        }
    }
    if grants == 0 || holder.valid_until_ns().is_none() {
        return Err("the holder never got the lease".into());
    }
    let killed_at = clock.now_ns();
    peer.child.kill()?;
    peer.child.wait()?;
    let lapse = Instant::now();
    while holder.is_valid(clock.now_ns()) {
        if lapse.elapsed() > Duration::from_secs(1) {
            return Err("the lease outlived its grantor by a second".into());
        }
    }
    let left_ns = holder.valid_until_ns().unwrap_or(0).saturating_sub(killed_at);
    if left_ns > 20_000 {
        return Err(format!("{left_ns} ns of lease were left at the kill: more than Δ").into());
    }
    eprintln!("[soft] lease: {grants} grants in 50 ms; {left_ns} ns left when the grantor was killed");
    Ok(())
}

fn main() {
    if let Ok(role) = std::env::var(CHILD_ROLE) {
        run_child(&role);
        return;
    }
    let tests: [(&str, Body); 6] = [
        ("soft::score_detector_sees_a_killed_peer", score_detector_sees_a_killed_peer),
        ("soft::timeout_detector_sees_a_killed_peer", timeout_detector_sees_a_killed_peer),
        ("soft::peer_loss_detector_sees_a_killed_peer", peer_loss_detector_sees_a_killed_peer),
        (
            "soft::stopped_peer_is_suspected_then_trusted_after_sigcont",
            stopped_peer_is_suspected_then_trusted_after_sigcont,
        ),
        (
            "soft::lease_from_a_grantor_process_lapses_when_it_dies",
            lease_from_a_grantor_process_lapses_when_it_dies,
        ),
        (
            "soft::a_restarted_process_of_a_pool_peer_is_trusted_again",
            pool::a_restarted_process_of_a_pool_peer_is_trusted_again,
        ),
    ];
    let mut args = Arguments::from_args();
    // One at a time: each test busy-polls a core, and its child needs the other.
    args.test_threads = args.test_threads.or(Some(1));
    let trials = tests.into_iter().map(|(name, body)| Trial::test(name, body)).collect();
    libtest_mimic::run(&args, trials).exit();
}
