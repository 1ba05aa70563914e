//! A simulated cluster running the real heartbeat code: N nodes on one `SimFabric` with
//! auto-advance off, each with a drifting clock, a heartbeat counter, the verbs glue, and
//! a monitor with one detector per peer. The harness moves virtual time in small steps and
//! ticks every live node's roles at each step, as each node's driver loop would.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use usec_lease_clock::clock::{Clock, SimClock};
use usec_lease_clock::detector::{
    AnyOf, FailureDetector, HeartbeatCounter, Observation, PeerLossDetector, ScoreConfig, ScoreDetector,
    TimeoutConfig, TimeoutDetector, Verdict,
};
use usec_lease_clock::heartbeat::{HeartbeatMonitor, HeartbeatReader, ReaderConfig, VerbsHeartbeats};
use usec_qp_pool::NodeId as PoolNodeId;
use usec_verbs::qp::RtsAttributes;
use usec_verbs::sim::{LatencyModel, NodeId, SimFabric};
use usec_verbs::{ConnectOptions, Context};

static NEXT_FABRIC: AtomicU32 = AtomicU32::new(0);

/// Which detector every node runs for every peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectorKind {
    Score,
    Timeout,
    PeerLoss,
    /// All three, suspecting when any does.
    Any,
}

#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub nodes: usize,
    pub seed: u64,
    pub detector: DetectorKind,
    pub reader: ReaderConfig,
    pub score: ScoreConfig,
    pub timeout: TimeoutConfig,
    pub bump_period_ns: u64,
    /// Each node's clock drifts by a seeded rate within ±`rho_ppm`.
    pub rho_ppm: u32,
    pub latency: LatencyModel,
    /// Virtual time between two rounds of ticks.
    pub step_ns: u64,
    pub connect: ConnectOptions,
}

impl ClusterOptions {
    pub fn new(nodes: usize, seed: u64, detector: DetectorKind) -> ClusterOptions {
        ClusterOptions {
            nodes,
            seed,
            detector,
            reader: ReaderConfig::default(),
            score: ScoreConfig::default(),
            timeout: TimeoutConfig::default(),
            bump_period_ns: 5_000,
            rho_ppm: 1_000,
            latency: LatencyModel::uniform(500, 2_500),
            step_ns: 1_000,
            // ACK timeout 131 µs, 7 retries: a short partition heals by retransmission, a
            // dead peer fails reads after about a millisecond.
            connect: ConnectOptions {
                rts: RtsAttributes { timeout: 5, retry_count: 7, ..RtsAttributes::default() },
                ..ConnectOptions::default()
            },
        }
    }

    /// The most virtual time that may pass between the failure of a node and its
    /// suspection by a detector of this configuration (see the crate's detector docs):
    /// the read period, the read timeout, the rest of the misses at one per period, and
    /// margin for clock drift, a tick step and a round trip.
    pub fn detection_bound_ns(&self) -> u64 {
        let reader = &self.reader;
        let by_reads = |misses: u64| reader.period_ns + reader.timeout_ns + (misses - 1) * reader.period_ns;
        let local = match self.detector {
            DetectorKind::Score => by_reads(u64::from(self.score.misses_to_suspect())),
            DetectorKind::Timeout => {
                self.timeout.silence_ns.min(by_reads(u64::from(self.timeout.failed_reads)))
            }
            DetectorKind::PeerLoss => usec_verbs::sim::PEER_LOST_DELAY_NS,
            DetectorKind::Any => usec_verbs::sim::PEER_LOST_DELAY_NS,
        };
        let drifted = local + local * u64::from(self.rho_ppm) / 1_000_000 + 1;
        drifted + self.step_ns + 2 * max_latency_ns(&self.latency)
    }

    fn detector(&self, now_ns: u64) -> Box<dyn FailureDetector + Send> {
        match self.detector {
            DetectorKind::Score => Box::new(ScoreDetector::new(self.score)),
            DetectorKind::Timeout => Box::new(TimeoutDetector::new(self.timeout, now_ns)),
            DetectorKind::PeerLoss => Box::new(PeerLossDetector::new()),
            DetectorKind::Any => Box::new(AnyOf::new(vec![
                Box::new(ScoreDetector::new(self.score)),
                Box::new(TimeoutDetector::new(self.timeout, now_ns)),
                Box::new(PeerLossDetector::new()),
            ])),
        }
    }
}

fn max_latency_ns(model: &LatencyModel) -> u64 {
    use usec_verbs::sim::LatencyDistribution::*;
    let base = match model.distribution {
        Fixed { ns } => ns,
        Uniform { min_ns, max_ns } => min_ns.max(max_ns),
        Exponential { min_ns, mean_extra_ns } => min_ns + 40 * mean_extra_ns,
    };
    base + model.spikes.map_or(0, |spikes| spikes.max_extra_ns) + model.ns_per_kib
}

pub struct Node {
    pub id: NodeId,
    pub clock: SimClock,
    pub counter: HeartbeatCounter,
    pub monitor: HeartbeatMonitor<Box<dyn FailureDetector + Send>>,
    // Declared after the monitor and before the context: verbs objects go first.
    pub heartbeats: VerbsHeartbeats,
    _context: Context,
}

/// One change of verdict, in virtual time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceEntry {
    pub at_ns: u64,
    pub observer: usize,
    pub peer: usize,
    pub verdict: Verdict,
}

pub struct Cluster {
    pub fabric: SimFabric,
    pub nodes: Vec<Node>,
    pub trace: Vec<TraceEntry>,
    pub options: ClusterOptions,
    stopped: Vec<bool>,
}

/// The node id of node `index`.
fn pool_id(index: usize) -> PoolNodeId {
    PoolNodeId::new(u16::try_from(index).expect("a small cluster")).expect("a node id")
}

impl Cluster {
    pub fn new(options: ClusterOptions) -> Cluster {
        let name = format!("lease-clock-{}-{}", options.seed, NEXT_FABRIC.fetch_add(1, Ordering::Relaxed));
        let fabric = SimFabric::create(&name, options.seed).expect("a fresh fabric");
        fabric.set_auto_advance(false);
        fabric.set_latency(options.latency);
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0x5eed_c10c);
        let rho = i32::try_from(options.rho_ppm).expect("ρ fits");
        let mut nodes: Vec<Node> = (0..options.nodes)
            .map(|index| {
                let (id, context) = fabric.open_node().expect("a node");
                let clock =
                    SimClock::with_drift(&fabric, rng.gen_range(-rho..=rho), rng.gen_range(0..1 << 40));
                let pd = context.alloc_pd().expect("a PD");
                // Node `index` of the cluster is node id `index`; it watches every other.
                let peers: Vec<PoolNodeId> =
                    (0..options.nodes).filter(|&peer| peer != index).map(pool_id).collect();
                let heartbeats = VerbsHeartbeats::new(&pd, &peers).expect("heartbeat glue");
                let now = clock.now_ns();
                let reader = HeartbeatReader::new(options.reader, peers.iter().copied(), now);
                let detectors = peers.iter().map(|_| options.detector(now)).collect();
                let monitor = HeartbeatMonitor::new(reader, detectors);
                let counter = HeartbeatCounter::new(options.bump_period_ns);
                Node { id, clock, counter, monitor, heartbeats, _context: context }
            })
            .collect();
        for a in 0..options.nodes {
            for b in a + 1..options.nodes {
                let (a_end, b_end) = (
                    nodes[a].heartbeats.local(pool_id(b)).unwrap(),
                    nodes[b].heartbeats.local(pool_id(a)).unwrap(),
                );
                nodes[a].heartbeats.connect(pool_id(b), &b_end, &options.connect).expect("connect");
                nodes[b].heartbeats.connect(pool_id(a), &a_end, &options.connect).expect("connect");
            }
        }
        let stopped = vec![false; options.nodes];
        Cluster { fabric, nodes, trace: Vec::new(), options, stopped }
    }

    pub fn now_ns(&self) -> u64 {
        self.fabric.now_ns()
    }

    /// Runs `ns` of virtual time, ticking every live node after each step.
    pub fn run_for(&mut self, ns: u64) {
        let end = self.now_ns() + ns;
        while self.now_ns() < end {
            let next = (self.now_ns() + self.options.step_ns).min(end);
            self.fabric.advance_to(next);
            for index in 0..self.nodes.len() {
                if !self.stopped[index] {
                    self.tick(index);
                }
            }
        }
    }

    fn tick(&mut self, index: usize) {
        let at_ns = self.now_ns();
        let node = &mut self.nodes[index];
        let now = node.clock.now_ns();
        if let Some(value) = node.counter.tick(now) {
            node.heartbeats.publish(value);
        }
        for peer in node.heartbeats.poll_lost_peers() {
            node.monitor.observe(now, peer, Observation::PeerLost);
        }
        node.monitor.tick(now, &mut node.heartbeats, &mut |other| panic!("a foreign completion: {other:?}"));
        while let Some(change) = node.monitor.poll_change() {
            self.trace.push(TraceEntry {
                at_ns,
                observer: index,
                peer: usize::from(change.peer.get()),
                verdict: change.verdict,
            });
        }
    }

    pub fn crash(&mut self, node: usize) {
        self.fabric.crash(self.nodes[node].id);
        self.stopped[node] = true;
    }

    /// SIGSTOP: the node's roles stop running; its memory stays readable.
    pub fn pause(&mut self, node: usize) {
        self.fabric.pause(self.nodes[node].id);
        self.stopped[node] = true;
    }

    pub fn resume(&mut self, node: usize) {
        self.fabric.resume(self.nodes[node].id);
        self.stopped[node] = false;
    }

    /// The node's process stays alive but gets no CPU (another process has its core): it
    /// does not run, and the provider probes it alive — unlike [`Cluster::pause`].
    pub fn deschedule(&mut self, node: usize) {
        self.stopped[node] = true;
    }

    /// A descheduled node gets its core back.
    pub fn reschedule(&mut self, node: usize) {
        self.stopped[node] = false;
    }

    /// Cuts `node` off from every other node (or reconnects it).
    pub fn isolate(&mut self, node: usize, isolated: bool) {
        for other in 0..self.nodes.len() {
            let (a, b) = (self.nodes[node].id, self.nodes[other].id);
            if other != node {
                if isolated {
                    self.fabric.partition(a, b);
                } else {
                    self.fabric.heal(a, b);
                }
            }
        }
    }

    /// The nodes other than `except` still running.
    pub fn observers(&self, except: usize) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&index| index != except && !self.stopped[index]).collect()
    }

    pub fn verdict(&self, observer: usize, peer: usize) -> Verdict {
        self.nodes[observer].monitor.verdict(pool_id(peer))
    }

    /// When `observer` first suspected `peer` at or after `from_ns` (virtual time).
    pub fn suspected_at(&self, observer: usize, peer: usize, from_ns: u64) -> Option<u64> {
        self.trace
            .iter()
            .find(|entry| {
                entry.observer == observer
                    && entry.peer == peer
                    && entry.at_ns >= from_ns
                    && entry.verdict.is_suspected()
            })
            .map(|entry| entry.at_ns)
    }

    /// Suspicions recorded between `from_ns` and `to_ns`.
    pub fn suspicions_between(&self, from_ns: u64, to_ns: u64) -> Vec<TraceEntry> {
        self.trace
            .iter()
            .filter(|entry| entry.verdict.is_suspected() && (from_ns..to_ns).contains(&entry.at_ns))
            .copied()
            .collect()
    }

    /// A hash of the verdict trace and of the fabric's own trace.
    pub fn trace_hash(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.trace.hash(&mut hasher);
        self.fabric.trace_hash().hash(&mut hasher);
        hasher.finish()
    }
}
