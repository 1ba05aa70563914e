//! [`SimCluster`]: nodes of a simulated fabric bootstrapped into one qp-pool cluster over
//! the in-memory network, each with its own drifting clock, and the faults a test injects:
//! crashes, restarts of crashed nodes as new processes, pauses (as SIGSTOP: the NIC still
//! serves peers), partitions and heals. Virtual
//! time moves only when the test says; the same seed replays the same run.

use std::net::SocketAddr;
use std::time::Duration;

use usec_lease_clock::clock::{Clock, SimClock};
use usec_qp_pool::{Bootstrap, Cluster, ClusterSpec, MemoryHub, NodeConfig, NodeId, Progress};
use usec_verbs::sim::{self, LatencyModel, SimFabric};

use crate::error::{Error, Result};

/// A node of a simulated cluster.
#[derive(Debug)]
pub struct SimNode {
    /// Its node on the fabric.
    pub sim_node: sim::NodeId,
    /// Its clock.
    pub clock: SimClock,
    /// Whether its process is stopped.
    pub paused: bool,
    /// Whether it crashed.
    pub crashed: bool,
}

/// Simulated nodes and their faults.
#[derive(Debug)]
pub struct SimCluster {
    /// The fabric.
    pub fabric: SimFabric,
    /// The nodes, by node id.
    pub nodes: Vec<SimNode>,
    hub: MemoryHub,
    spec: ClusterSpec,
}

fn addr(id: u16) -> SocketAddr {
    SocketAddr::from(([10, 11, (id >> 8) as u8, id as u8], 7000))
}

impl SimCluster {
    /// `n` nodes on a new fabric `name` seeded with `seed`, each node's clock drifting by
    /// the matching entry of `drift_ppm` (0 if missing), each configured by `configure`
    /// (roles and regions); returns the harness and every node's bootstrapped cluster.
    pub fn bootstrap(
        name: &str,
        seed: u64,
        n: u16,
        drift_ppm: &[i32],
        mut configure: impl FnMut(NodeConfig) -> Result<NodeConfig>,
    ) -> Result<(SimCluster, Vec<Cluster>)> {
        let fabric = SimFabric::create(name, seed).map_err(|error| Error::Config(error.to_string()))?;
        fabric.set_auto_advance(false);
        fabric.set_latency(LatencyModel::uniform(600, 1_400));
        let hub = MemoryHub::new();
        let ids = (0..n).map(|id| (NodeId::new(id).expect("small ids"), addr(id)));
        let spec = ClusterSpec::new("paxos-sim", &format!("seed-{seed}"), ids)
            .map_err(Error::pool("the description"))?;
        let mut boots = Vec::new();
        let mut nodes = Vec::new();
        for id in 0..n {
            let (sim_node, context) = fabric.open_node().map_err(|error| Error::Config(error.to_string()))?;
            let network = hub.listen(addr(id)).map_err(|error| Error::Config(error.to_string()))?;
            let node = configure(node_config(&spec, id, 1))?;
            boots
                .push(Bootstrap::start(&context, node, Box::new(network)).map_err(Error::pool("bootstrap"))?);
            let drift = drift_ppm.get(usize::from(id)).copied().unwrap_or(0);
            let clock = SimClock::with_drift(&fabric, drift, 1_000_000 * u64::from(id));
            nodes.push(SimNode { sim_node, clock, paused: false, crashed: false });
        }
        let clusters = bootstrap_all(boots)?;
        Ok((SimCluster { fabric, nodes, hub, spec }, clusters))
    }

    /// Starts process `incarnation` (above every earlier one) of crashed node `index`: a
    /// new node on the fabric, configured by `configure` as the first was, whose clock
    /// reads 0 from now. Returns its bootstrap (qp-pool's rejoin), to poll with
    /// [`SimCluster::now_ns`] while the others run, until done.
    pub fn restart(
        &mut self,
        index: usize,
        incarnation: u64,
        configure: impl FnOnce(NodeConfig) -> Result<NodeConfig>,
    ) -> Result<Bootstrap> {
        assert!(self.nodes[index].crashed, "node {index} is not crashed");
        let id = index as u16;
        let (sim_node, context) =
            self.fabric.open_node().map_err(|error| Error::Config(error.to_string()))?;
        let network = self.hub.listen(addr(id)).map_err(|error| Error::Config(error.to_string()))?;
        let node = configure(node_config(&self.spec, id, incarnation).rejoin(true))?;
        let boot = Bootstrap::start(&context, node, Box::new(network)).map_err(Error::pool("bootstrap"))?;
        let node = &mut self.nodes[index];
        node.sim_node = sim_node;
        node.clock = node.clock.restarted();
        node.crashed = false;
        node.paused = false;
        Ok(boot)
    }

    /// Node `index`'s clock, now.
    pub fn now_ns(&self, index: usize) -> u64 {
        self.nodes[index].clock.now_ns()
    }

    /// Whether node `index` runs (neither crashed nor paused).
    pub fn runs(&self, index: usize) -> bool {
        !self.nodes[index].crashed && !self.nodes[index].paused
    }

    /// Crashes node `index` for good.
    pub fn crash(&mut self, index: usize) {
        self.fabric.crash(self.nodes[index].sim_node);
        self.nodes[index].crashed = true;
    }

    /// Stops node `index`'s process (its NIC goes on serving one-sided operations).
    pub fn pause(&mut self, index: usize) {
        self.fabric.pause(self.nodes[index].sim_node);
        self.nodes[index].paused = true;
    }

    /// Lets node `index` run again.
    pub fn resume(&mut self, index: usize) {
        self.fabric.resume(self.nodes[index].sim_node);
        self.nodes[index].paused = false;
    }

    /// Cuts the link between two nodes (messages lost, retransmitted, failing after the
    /// ACK timeouts).
    pub fn partition(&mut self, a: usize, b: usize) {
        self.fabric.partition(self.nodes[a].sim_node, self.nodes[b].sim_node);
    }

    /// Restores the link between two nodes.
    pub fn heal(&mut self, a: usize, b: usize) {
        self.fabric.heal(self.nodes[a].sim_node, self.nodes[b].sim_node);
    }
}

/// Node `id`'s configuration, before the roles: process `incarnation`, short ACK timeouts.
fn node_config(spec: &ClusterSpec, id: u16, incarnation: u64) -> NodeConfig {
    let mut node = NodeConfig::new(spec.clone(), NodeId::new(id).expect("small ids"))
        .deadline(Duration::from_secs(60))
        .incarnation(incarnation);
    // An ACK timeout of about 1 ms, a few retries: a request stuck in a partition
    // fails within milliseconds of virtual time, and its QP is repaired after it.
    node.connect.rts.timeout = 8;
    node.connect.rts.retry_count = 3;
    node
}

/// Polls every bootstrap with fake time (1 ms a round) until all are done.
fn bootstrap_all(mut boots: Vec<Bootstrap>) -> Result<Vec<Cluster>> {
    let mut now_ns = 0;
    let mut done = vec![false; boots.len()];
    while done.iter().any(|done| !done) {
        for (boot, done) in boots.iter_mut().zip(&mut done) {
            if !*done {
                *done = boot.poll(now_ns).map_err(Error::pool("bootstrap"))? == Progress::Done;
            }
        }
        now_ns += 1_000_000;
    }
    boots.into_iter().map(|boot| boot.finish().map_err(Error::pool("bootstrap"))).collect()
}
