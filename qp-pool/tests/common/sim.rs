//! A cluster on the sim provider, every node in one thread: the handshake over the
//! in-memory network (no sockets), bootstrap driven with fake time, the fabric's seeded
//! scheduler under the verbs, every wait on a [`SimDriver`] with virtual deadlines, and taps
//! that slip bytes or failures into a node's links.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use usec_qp_pool::wire::Message;
use usec_qp_pool::{
    wait_for, Bootstrap, Cluster, ClusterSpec, ControlEvent, Link, MemoryHub, MemoryNetwork, Network,
    NodeConfig, NodeId, Poller, Progress, QuorumWaiter, Received, RoleSpec, SimDriver, WrId, WrKind,
};
use usec_verbs::sim::{self, SimFabric};
use usec_verbs::{AccessFlags, Payload, RemoteAddr, SendWr};

use super::{node, ELECTION, LOG_WRITE, REGION, REGION_LEN, REPLICATION};

/// Prints the seed if the test fails while it is alive.
pub struct SeedGuard(pub u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("FAILING SEED: {} (replay with USEC_SEED={})", self.0, self.0);
        }
    }
}

/// The seeds to run: `USEC_SEED` alone if set, else `0..count`.
pub fn seeds(count: u64) -> Vec<u64> {
    match std::env::var("USEC_SEED") {
        Ok(seed) => vec![seed.parse().expect("USEC_SEED is a number")],
        Err(_) => (0..count).collect(),
    }
}

pub struct SimCluster {
    pub fabric: SimFabric,
    pub sim_nodes: Vec<sim::NodeId>,
    pub clusters: Vec<Cluster>,
    pub pollers: Vec<Poller>,
    /// What each node's links read before what the peer sent.
    pub taps: Vec<Tap>,
    pub hub: MemoryHub,
}

/// Bytes, or a failure, slipped into every link of one node: what a broken or hostile peer
/// would make it read.
#[derive(Clone, Debug, Default)]
pub struct Tap(Arc<Mutex<TapState>>);

#[derive(Debug, Default)]
pub struct TapState {
    bytes: VecDeque<u8>,
    read_error: Option<io::ErrorKind>,
}

impl Tap {
    pub fn inject(&self, message: &Message) {
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        self.inject_bytes(&bytes);
    }

    pub fn inject_bytes(&self, bytes: &[u8]) {
        self.0.lock().unwrap().bytes.extend(bytes);
    }

    pub fn fail_reads(&self, kind: io::ErrorKind) {
        self.0.lock().unwrap().read_error = Some(kind);
    }
}

#[derive(Debug)]
pub struct TappedNetwork {
    pub inner: MemoryNetwork,
    pub tap: Tap,
}

impl Network for TappedNetwork {
    fn accept(&mut self) -> io::Result<Option<Box<dyn Link>>> {
        let link = self.inner.accept()?;
        Ok(link.map(|inner| Box::new(TappedLink { inner, tap: self.tap.clone() }) as Box<dyn Link>))
    }

    fn dial(&mut self, addr: SocketAddr) -> io::Result<Box<dyn Link>> {
        let inner = self.inner.dial(addr)?;
        Ok(Box::new(TappedLink { inner, tap: self.tap.clone() }))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

#[derive(Debug)]
pub struct TappedLink {
    inner: Box<dyn Link>,
    tap: Tap,
}

impl Link for TappedLink {
    fn write_some(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.inner.write_some(bytes)
    }

    fn read_some(&mut self, buffer: &mut [u8]) -> io::Result<Received> {
        let mut state = self.tap.0.lock().unwrap();
        if let Some(kind) = state.read_error {
            return Err(io::Error::new(kind, "injected by the test"));
        }
        if !state.bytes.is_empty() {
            let count = state.bytes.len().min(buffer.len());
            for (slot, byte) in buffer.iter_mut().zip(state.bytes.drain(..count)) {
                *slot = byte;
            }
            return Ok(Received::Data(count));
        }
        drop(state);
        self.inner.read_some(buffer)
    }

    fn close(&mut self) {
        self.inner.close()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// What each node reported, in order.
pub type Events = Vec<(NodeId, ControlEvent)>;

/// What [`SimCluster::start_process`] gives back.
pub type Started = (usec_qp_pool::Result<Cluster>, sim::NodeId, Events, Duration);

/// Every cluster's control events at `now_ns`, into `events`.
pub fn poll_all(clusters: &mut [Cluster], now_ns: u64, events: &mut Events) {
    for cluster in clusters {
        let me = cluster.me();
        events.extend(std::iter::from_fn(|| cluster.poll_control_at(now_ns)).map(|event| (me, event)));
    }
}

/// What `observer` reported.
pub fn of(events: &Events, observer: NodeId) -> Vec<ControlEvent> {
    events.iter().filter(|(me, _)| *me == observer).map(|(_, event)| event.clone()).collect()
}

/// A node's process seen by a test that drives several at once: bootstrapping, then
/// serving its cluster.
pub struct Process {
    boot: Option<Bootstrap>,
    cluster: Option<Cluster>,
}

impl Process {
    pub fn new(boot: Bootstrap) -> Process {
        Process { boot: Some(boot), cluster: None }
    }

    /// One turn at `now_ns`: a poll of its bootstrap (finished once done), or of its
    /// cluster's control connections (their events into `events`).
    pub fn turn(&mut self, now_ns: u64, events: &mut Events) {
        if let Some(boot) = &mut self.boot {
            if boot.poll(now_ns).unwrap() == Progress::Done {
                self.cluster = Some(self.boot.take().expect("booting").finish().unwrap());
            }
        } else if let Some(cluster) = &mut self.cluster {
            let me = cluster.me();
            events.extend(std::iter::from_fn(|| cluster.poll_control_at(now_ns)).map(|event| (me, event)));
        }
    }

    pub fn is_running(&self) -> bool {
        self.cluster.is_some()
    }

    pub fn boot(&self) -> Option<&Bootstrap> {
        self.boot.as_ref()
    }

    pub fn into_cluster(self) -> Cluster {
        self.cluster.expect("a running process")
    }
}

pub fn addr(id: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, id as u8 + 1], 7000))
}

pub fn sim_spec(n: u16, seed: u64) -> ClusterSpec {
    ClusterSpec::new("sim", &format!("seed-{seed}"), (0..n).map(|id| (node(id), addr(id)))).unwrap()
}

pub fn sim_config(spec: &ClusterSpec, me: NodeId) -> NodeConfig {
    let region = Arc::new(usec_verbs::Region::new(REGION_LEN).unwrap());
    NodeConfig::new(spec.clone(), me)
        .role(RoleSpec::new(REPLICATION, AccessFlags::REMOTE_WRITE | AccessFlags::REMOTE_READ))
        .role(RoleSpec::new(ELECTION, AccessFlags::REMOTE_READ))
        .region(REGION, &region, AccessFlags::all_remote())
        .deadline(Duration::from_secs(5))
        .incarnation(1)
}

/// Polls every bootstrap in turn, fake time advancing 1 ms per round, until all are done.
pub fn drive(mut boots: Vec<Bootstrap>) -> Vec<usec_qp_pool::Result<Cluster>> {
    let mut now_ns = 0;
    let mut results: Vec<Option<usec_qp_pool::Result<()>>> = boots.iter().map(|_| None).collect();
    while results.iter().any(Option::is_none) {
        for (boot, result) in boots.iter_mut().zip(&mut results) {
            if result.is_none() {
                match boot.poll(now_ns) {
                    Ok(Progress::Done) => *result = Some(Ok(())),
                    Ok(_) => {}
                    Err(error) => *result = Some(Err(error)),
                }
            }
        }
        now_ns += 1_000_000;
    }
    boots
        .into_iter()
        .zip(results)
        .map(|(boot, result)| result.expect("decided").and_then(|()| boot.finish()))
        .collect()
}

impl SimCluster {
    pub fn new(test: &str, seed: u64, n: u16) -> SimCluster {
        SimCluster::with_spec(test, seed, sim_spec(n, seed))
    }

    /// The nodes of `spec` (whose addresses are [`addr`]'s), bootstrapped.
    pub fn with_spec(test: &str, seed: u64, spec: ClusterSpec) -> SimCluster {
        SimCluster::with_configs(test, seed, spec, |config| config)
    }

    /// The nodes of `spec`, each with [`sim_config`] changed by `tweak`, bootstrapped.
    pub fn with_configs(
        test: &str,
        seed: u64,
        spec: ClusterSpec,
        tweak: impl Fn(NodeConfig) -> NodeConfig,
    ) -> SimCluster {
        let fabric = SimFabric::create(&format!("qp-pool-{test}-{seed}"), seed).unwrap();
        let hub = MemoryHub::new();
        let n = spec.nodes.len() as u16;
        let mut sim_nodes = Vec::new();
        let mut boots = Vec::new();
        let taps: Vec<Tap> = (0..n).map(|_| Tap::default()).collect();
        for id in 0..n {
            let (sim_node, context) = fabric.open_node().unwrap();
            sim_nodes.push(sim_node);
            let network =
                TappedNetwork { inner: hub.listen(addr(id)).unwrap(), tap: taps[id as usize].clone() };
            let config = tweak(sim_config(&spec, node(id)));
            boots.push(Bootstrap::start(&context, config, Box::new(network)).unwrap());
        }
        let mut clusters: Vec<Cluster> = drive(boots).into_iter().map(|result| result.unwrap()).collect();
        let pollers = clusters.iter_mut().map(|cluster| cluster.take_poller(&[]).unwrap()).collect();
        SimCluster { fabric, sim_nodes, clusters, pollers, taps, hub }
    }

    /// A fresh process (a new sim node) that starts with `config` (rejoining or joining the
    /// running cluster), listening on `listen`: it and every cluster are polled in virtual
    /// time, 1 ms a round, until it is done. Returns its outcome, its sim node, what the
    /// clusters reported, and how long it took.
    pub fn start_process(&mut self, config: NodeConfig, listen: SocketAddr) -> Started {
        let (sim_node, context) = self.fabric.open_node().unwrap();
        let network = self.hub.listen(listen).unwrap();
        let mut boot = Bootstrap::start(&context, config, Box::new(network)).unwrap();
        let mut events = Vec::new();
        let mut now_ns = 0;
        let result = loop {
            poll_all(&mut self.clusters, now_ns, &mut events);
            match boot.poll(now_ns) {
                Ok(Progress::Done) => break boot.finish(),
                Ok(_) => now_ns += 1_000_000,
                Err(error) => break Err(error),
            }
        };
        // The others see the end of the handshake on their next poll.
        poll_all(&mut self.clusters, now_ns, &mut events);
        (result, sim_node, events, Duration::from_nanos(now_ns))
    }

    /// Puts a process that (re)joined into the cluster at `index` (clusters, pollers and
    /// sim nodes keep the same order), or after the others when `index` is their count.
    pub fn install(&mut self, index: usize, mut cluster: Cluster, sim_node: sim::NodeId) {
        self.pollers.insert(index, cluster.take_poller(&[]).unwrap());
        self.clusters.insert(index, cluster);
        if index == self.sim_nodes.len() {
            self.sim_nodes.push(sim_node);
        } else {
            self.sim_nodes[index] = sim_node;
        }
    }

    /// The index of node `id` among the clusters.
    pub fn index_of(&self, id: NodeId) -> usize {
        self.clusters.iter().position(|cluster| cluster.me() == id).expect("a node of the cluster")
    }

    /// Posts one WRITE of `entry` from `from` to `to` at the entry's slot.
    pub fn write(&mut self, from: usize, to: NodeId, kind: WrKind, entry: u64) {
        let cluster = &mut self.clusters[from];
        let role = cluster.role(REPLICATION).unwrap();
        let region = cluster.remote_region(to, REGION).unwrap();
        let target = RemoteAddr::within(&region, entry * 8, 8).unwrap();
        let wr_id = WrId::new(kind, to, entry).unwrap().to_raw();
        let bytes = entry.to_le_bytes();
        cluster.post_send(to, role, &[SendWr::write(wr_id, target, Payload::Inline(&bytes))]).unwrap();
    }

    /// Node `from` writes `entry` to all its peers and waits for `need` of them.
    pub fn replicate(
        &mut self,
        from: usize,
        waiter: &mut QuorumWaiter,
        entry: u64,
        need: usize,
    ) -> usec_qp_pool::Result<usec_qp_pool::QuorumOutcome> {
        let peers: Vec<NodeId> = self.clusters[from].peers().collect();
        for &peer in &peers {
            self.write(from, peer, LOG_WRITE, entry);
        }
        let key = waiter.begin(LOG_WRITE, entry, &peers, need).unwrap();
        let mut driver = SimDriver::new(&self.fabric);
        let deadline_ns = driver.deadline_in(30_000_000_000);
        let result =
            wait_for(&mut self.pollers[from], waiter, key, deadline_ns, &mut driver, &mut |polled: &_| {
                panic!("a completion of another kind: {polled:?}")
            });
        waiter.finish(key).unwrap();
        result
    }

    /// Polls node `index` until `waiter` has seen `peer` fail (or gives up).
    pub fn drain_until_failed(&mut self, index: usize, waiter: &mut QuorumWaiter, peer: NodeId) {
        for _ in 0..1_000_000 {
            if waiter.is_failed(peer) {
                return;
            }
            for polled in self.pollers[index].poll() {
                assert!(waiter.observe(polled.wr_id, polled.completion.status));
            }
        }
        panic!("node {peer} never failed");
    }

    pub fn read(&self, index: usize, entry: u64) -> u64 {
        let mut bytes = [0u8; 8];
        self.clusters[index].region(REGION).unwrap().region().read(entry as usize * 8, &mut bytes).unwrap();
        u64::from_le_bytes(bytes)
    }
}
