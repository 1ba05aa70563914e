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
    wait_for, Bootstrap, Cluster, ClusterSpec, Link, MemoryHub, MemoryNetwork, Network, NodeConfig, NodeId,
    Poller, Progress, QuorumWaiter, Received, RoleSpec, SimDriver, WrId, WrKind,
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
            boots.push(Bootstrap::start(&context, sim_config(&spec, node(id)), Box::new(network)).unwrap());
        }
        let mut clusters: Vec<Cluster> = drive(boots).into_iter().map(|result| result.unwrap()).collect();
        let pollers = clusters.iter_mut().map(|cluster| cluster.take_poller(&[]).unwrap()).collect();
        SimCluster { fabric, sim_nodes, clusters, pollers, taps, hub }
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
