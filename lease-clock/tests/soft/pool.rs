//! Heartbeats over a qp-pool cluster of processes: this test process is node 0, a child is
//! node 1. The child is SIGKILLed and suspected; a new process of node 1 rejoins the
//! running cluster, and node 0 trusts it again once it hands the rejoin to its monitor.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use usec_lease_clock::clock::{Clock, MonotonicClock};
use usec_lease_clock::detector::{
    AnyOf, FailureDetector, HeartbeatCounter, Observation, PeerLossDetector, ScoreConfig, ScoreDetector,
};
use usec_lease_clock::heartbeat::{HeartbeatMonitor, PoolHeartbeats};
use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId, TcpNetwork};
use usec_verbs::Context;

use crate::child::ChildPeer;
use crate::{fresh_device, DETECTION_LIMIT, READER};

type Outcome = Result<(), Failed>;

fn node(id: u16) -> NodeId {
    NodeId::new(id).expect("a node id")
}

fn config(spec: &ClusterSpec, me: NodeId, rejoin: bool) -> Result<NodeConfig, Failed> {
    let config = NodeConfig::new(spec.clone(), me).rejoin(rejoin).deadline(Duration::from_secs(20));
    Ok(PoolHeartbeats::configure(config)?)
}

/// What node 0 runs for each peer: Mu's score, and the provider's word (a pidfd here).
fn detector() -> Box<dyn FailureDetector + Send> {
    Box::new(AnyOf::new(vec![
        Box::new(ScoreDetector::new(ScoreConfig::default())),
        Box::new(PeerLossDetector::new()),
    ]))
}

/// Node 0: its cluster, heartbeats and monitor.
struct Watcher {
    monitor: HeartbeatMonitor<Box<dyn FailureDetector + Send>>,
    heartbeats: PoolHeartbeats,
    cluster: Cluster,
    clock: MonotonicClock,
    counter: HeartbeatCounter,
    rejoins: usize,
}

impl Watcher {
    fn tick(&mut self) -> Outcome {
        let now = self.clock.now_ns();
        if let Some(value) = self.counter.tick(now) {
            self.heartbeats.publish(value);
        }
        while let Some(event) = self.cluster.poll_control_at(now) {
            if let Some(peer) = self.heartbeats.rejoined_peer(&event) {
                self.monitor.rejoined(now, peer, detector());
                self.rejoins += 1;
            }
        }
        while let Some(event) = self.cluster.poll_event() {
            if let Some(peer) = self.heartbeats.lost_peer(&event) {
                self.monitor.observe(now, peer, Observation::PeerLost);
            }
        }
        let mut foreign = None;
        self.monitor
            .tick(now, &mut self.heartbeats.port(&mut self.cluster), &mut |other| foreign = Some(other));
        match foreign {
            Some(other) => Err(format!("a foreign completion: {other:?}").into()),
            None => Ok(()),
        }
    }

    /// Ticks until node 1's verdict is `suspected` (or `limit` passes); how long it took.
    fn until(&mut self, suspected: bool, limit: Duration) -> Result<Duration, Failed> {
        let start = Instant::now();
        loop {
            self.tick()?;
            if self.monitor.verdict(node(1)).is_suspected() == suspected {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                let want = if suspected { "suspected" } else { "trusted" };
                return Err(format!("node 1 was not {want} within {limit:?}").into());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// Starts a child as node 1 of `spec` (`rejoin`ing or not) and returns it once it said
/// where it listens; `introduce` then tells it the description.
fn spawn_node_one(device: &str) -> Result<(ChildPeer, SocketAddr), Failed> {
    let mut child = ChildPeer::spawn("pool", device)?;
    let line = child.read_line()?;
    let addr = line.strip_prefix("addr ").ok_or_else(|| format!("expected an address, got {line:?}"))?;
    Ok((child, addr.parse()?))
}

fn introduce(child: &mut ChildPeer, spec: &ClusterSpec, rejoin: bool) -> Outcome {
    child.send(&format!("me 1{}", if rejoin { " rejoin" } else { "" }))?;
    for line in spec.to_string().lines() {
        child.send(line)?;
    }
    child.send("end")
}

pub fn a_restarted_process_of_a_pool_peer_is_trusted_again() -> Outcome {
    let device = fresh_device();
    let (mut child, child_addr) = spawn_node_one(&device)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let nodes = [(node(0), listener.local_addr()?), (node(1), child_addr)];
    let spec = ClusterSpec::new("heartbeats", &ClusterSpec::fresh_run(), nodes)?;
    introduce(&mut child, &spec, false)?;
    let context = Context::open(&device)?;
    let network = TcpNetwork::from_listener(listener)?;
    let mut cluster = Cluster::bootstrap_with(&context, config(&spec, node(0), false)?, Box::new(network))?;
    let heartbeats = PoolHeartbeats::new(&mut cluster)?;
    let clock = MonotonicClock::new();
    let reader = heartbeats.reader(READER, clock.now_ns());
    let monitor = HeartbeatMonitor::new(reader, vec![detector()]);
    let counter = HeartbeatCounter::new(0);
    let mut watcher = Watcher { monitor, heartbeats, cluster, clock, counter, rejoins: 0 };
    expect_line(&mut child, "ready")?;
    watcher.until(false, DETECTION_LIMIT)?;

    child.child.kill()?;
    child.child.wait()?;
    let took = watcher.until(true, DETECTION_LIMIT)?;
    eprintln!("[soft] pool: SIGKILLed node 1 suspected {took:?} after the kill");

    let (mut fresh, _) = spawn_node_one(&device)?;
    introduce(&mut fresh, &spec, true)?;
    let back = watcher.until(false, Duration::from_secs(20))?;
    eprintln!("[soft] pool: node 1's new process rejoined and was trusted {back:?} after it started");
    if watcher.rejoins != 1 {
        return Err(format!("{} rejoins reported", watcher.rejoins).into());
    }
    // It stays trusted: a loaded 2-core machine may deschedule it long enough for the
    // score to dip, but nothing of the old process (its PeerLost, its stuck read) may keep
    // it suspected, so after any dip it is trusted again.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(100) {
        watcher.tick()?;
        std::thread::sleep(Duration::from_micros(100));
    }
    watcher.until(false, Duration::from_secs(5)).map_err(|_| "the new process stayed suspected")?;
    expect_line(&mut fresh, "ready")
}

fn expect_line(child: &mut ChildPeer, expected: &str) -> Outcome {
    let line = child.read_line()?;
    if line != expected {
        return Err(format!("expected {expected:?}, got {line:?}").into());
    }
    Ok(())
}

/// The child's side: node 1 of the description it is told, beating until killed or
/// orphaned.
pub fn serve_pool_child(device: &str) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("addr {}", listener.local_addr()?);
    let next = || -> Result<String, Failed> {
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line)? == 0 {
            return Err("stdin closed".into());
        }
        Ok(line.trim_end().to_string())
    };
    let first = next()?;
    let rejoin = first.ends_with(" rejoin");
    let mut text = String::new();
    loop {
        let line = next()?;
        if line == "end" {
            break;
        }
        text.push_str(&line);
        text.push('\n');
    }
    // The parent closing stdin (or dying) ends the child.
    std::thread::spawn(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|read| read > 0) {}
        std::process::exit(0);
    });
    let spec = ClusterSpec::parse(&text)?;
    let context = Context::open(device)?;
    let network = TcpNetwork::from_listener(listener)?;
    let mut cluster = Cluster::bootstrap_with(&context, config(&spec, node(1), rejoin)?, Box::new(network))?;
    let heartbeats = PoolHeartbeats::new(&mut cluster)?;
    println!("ready");
    std::io::stdout().flush()?;
    let (clock, mut counter) = (MonotonicClock::new(), HeartbeatCounter::new(0));
    loop {
        let now = clock.now_ns();
        if let Some(value) = counter.tick(now) {
            heartbeats.publish(value);
        }
        while cluster.poll_control_at(now).is_some() {}
        std::thread::sleep(Duration::from_micros(20));
    }
}
