//! The heartbeat glue on a `usec-qp-pool` cluster, under the sim provider: nodes
//! bootstrapped over the in-memory network in this thread, then the same reader and
//! detectors as everywhere, fed through [`PoolHeartbeats`]. A paused node is suspected
//! (its READs show no change) and trusted again on resume; a crash is suspected by every
//! survivor, through the score detector and through the cluster's `PeerLost` events.

#[path = "../common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use usec_lease_clock::clock::{Clock, SimClock};
use usec_lease_clock::detector::{
    AnyOf, FailureDetector, HeartbeatCounter, Observation, PeerLossDetector, ScoreConfig, ScoreDetector,
    Verdict,
};
use usec_lease_clock::heartbeat::{HeartbeatMonitor, PoolHeartbeats, ReaderConfig};
use usec_qp_pool::{Bootstrap, Cluster, ClusterSpec, MemoryHub, NodeConfig, NodeId, Progress, WrId, WrKind};
use usec_verbs::sim::{self, SimFabric};
use usec_verbs::{Completion, CompletionOpcode, RemoteAddr, SendWr, Status};

struct Node {
    sim_node: sim::NodeId,
    /// Completions of other kinds that the monitor handed back.
    others: Vec<Completion>,
    clock: SimClock,
    counter: HeartbeatCounter,
    monitor: HeartbeatMonitor<Box<dyn FailureDetector + Send>>,
    heartbeats: PoolHeartbeats,
    cluster: Cluster,
}

impl Node {
    fn tick(&mut self) {
        let now = self.clock.now_ns();
        if let Some(value) = self.counter.tick(now) {
            self.heartbeats.publish(value);
        }
        while let Some(event) = self.cluster.poll_event() {
            if let Some(peer) = self.heartbeats.lost_peer(&event) {
                self.monitor.observe(now, peer, Observation::PeerLost);
            }
        }
        let others = &mut self.others;
        self.monitor.tick(now, &mut self.heartbeats.port(&mut self.cluster), &mut |other| others.push(other));
    }
}

fn id(index: usize) -> NodeId {
    NodeId::new(index as u16).unwrap()
}

fn addr(id: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, id as u8 + 1], 7000))
}

/// Bootstraps nodes `ids` on `fabric`, each polled in turn with fake time.
fn bootstrap(fabric: &SimFabric, hub: &MemoryHub, ids: &[u16], seed: u64) -> Vec<(sim::NodeId, Cluster)> {
    let nodes = ids.iter().map(|&id| (NodeId::new(id).unwrap(), addr(id)));
    let spec = ClusterSpec::new("lease-clock", &format!("seed-{seed}"), nodes).unwrap();
    let mut boots = Vec::new();
    let mut sim_nodes = Vec::new();
    for &id in ids {
        let (sim_node, context) = fabric.open_node().unwrap();
        let config = NodeConfig::new(spec.clone(), NodeId::new(id).unwrap())
            .deadline(Duration::from_secs(5))
            .incarnation(1);
        let config = PoolHeartbeats::configure(config).unwrap();
        boots.push(Bootstrap::start(&context, config, Box::new(hub.listen(addr(id)).unwrap())).unwrap());
        sim_nodes.push(sim_node);
    }
    let mut done = vec![false; boots.len()];
    let mut now_ns = 0;
    while done.iter().any(|done| !done) {
        for (boot, done) in boots.iter_mut().zip(&mut done) {
            if !*done {
                *done = boot.poll(now_ns).expect("bootstrap") == Progress::Done;
            }
        }
        now_ns += 1_000_000;
    }
    sim_nodes.into_iter().zip(boots).map(|(sim_node, boot)| (sim_node, boot.finish().unwrap())).collect()
}

#[test]
fn a_crashed_node_of_a_pool_cluster_is_suspected_by_every_survivor() {
    let seed = common::seed("pool heartbeats");
    let fabric = SimFabric::create(&format!("lease-clock-pool-{seed}"), seed).unwrap();
    let mut nodes: Vec<Node> = bootstrap(&fabric, &MemoryHub::new(), &[0, 1, 2], seed)
        .into_iter()
        .map(|(sim_node, mut cluster)| {
            let heartbeats = PoolHeartbeats::new(&mut cluster).unwrap();
            let clock = SimClock::new(&fabric);
            let reader = heartbeats.reader(ReaderConfig::default(), clock.now_ns());
            let detectors = (heartbeats.peers().iter())
                .map(|_| -> Box<dyn FailureDetector + Send> {
                    Box::new(AnyOf::new(vec![
                        Box::new(ScoreDetector::new(ScoreConfig::default())),
                        Box::new(PeerLossDetector::new()),
                    ]))
                })
                .collect();
            let monitor = HeartbeatMonitor::new(reader, detectors);
            Node {
                sim_node,
                others: Vec::new(),
                clock,
                counter: HeartbeatCounter::new(5_000),
                monitor,
                heartbeats,
                cluster,
            }
        })
        .collect();
    fabric.set_auto_advance(false);
    let run = |nodes: &mut [Node], span_ns: u64, crashed: Option<usize>| {
        let end = fabric.now_ns() + span_ns;
        while fabric.now_ns() < end {
            fabric.advance_by(1_000);
            for (index, node) in nodes.iter_mut().enumerate() {
                if Some(index) != crashed {
                    node.tick();
                }
            }
        }
    };
    run(&mut nodes, 500_000, None);
    for (observer, node) in nodes.iter().enumerate() {
        for peer in (0..3).filter(|&peer| peer != observer).map(id) {
            assert_eq!(node.monitor.verdict(peer), Verdict::Trusted, "seed {seed}: {observer} about {peer}");
        }
        assert!(node.counter.value() > 50, "seed {seed}: node {observer} beat");
    }
    // A pause: the paused node's word stays readable but stops changing, so only the
    // READs through the pool's heartbeat role can reveal it.
    fabric.pause(nodes[2].sim_node);
    run(&mut nodes, 300_000, Some(2));
    assert!(nodes[0].monitor.verdict(id(2)).is_suspected(), "seed {seed}: the paused node is suspected");
    fabric.resume(nodes[2].sim_node);
    run(&mut nodes, 150_000, None);
    assert_eq!(
        nodes[0].monitor.verdict(id(2)),
        Verdict::Trusted,
        "seed {seed}: trusted again after resuming"
    );

    fabric.crash(nodes[1].sim_node);
    let crashed_at = fabric.now_ns();
    run(&mut nodes, 200_000, Some(1));
    for observer in [0, 2] {
        match nodes[observer].monitor.verdict(id(1)) {
            Verdict::Suspected { .. } => {}
            Verdict::Trusted => {
                panic!("seed {seed}: node {observer} still trusts the node crashed at {crashed_at}")
            }
        }
        assert_eq!(nodes[observer].monitor.verdict(id(2 - observer)), Verdict::Trusted, "seed {seed}");
    }
}

#[test]
fn only_members_of_a_sparse_cluster_are_watched() {
    let seed = common::seed("sparse pool heartbeats");
    let fabric = SimFabric::create(&format!("lease-clock-sparse-{seed}"), seed).unwrap();
    let ids = [0u16, 5, 9];
    let mut nodes: Vec<Node> = bootstrap(&fabric, &MemoryHub::new(), &ids, seed)
        .into_iter()
        .map(|(sim_node, mut cluster)| {
            let heartbeats = PoolHeartbeats::new(&mut cluster).unwrap();
            let clock = SimClock::new(&fabric);
            let reader = heartbeats.reader(ReaderConfig::default(), clock.now_ns());
            let detectors = (heartbeats.peers().iter())
                .map(|_| -> Box<dyn FailureDetector + Send> {
                    Box::new(ScoreDetector::new(ScoreConfig::default()))
                })
                .collect();
            let monitor = HeartbeatMonitor::new(reader, detectors);
            Node {
                sim_node,
                others: Vec::new(),
                clock,
                counter: HeartbeatCounter::new(5_000),
                monitor,
                heartbeats,
                cluster,
            }
        })
        .collect();
    fabric.set_auto_advance(false);
    let mut changes = Vec::new();
    while fabric.now_ns() < 500_000 {
        fabric.advance_by(1_000);
        for node in &mut nodes {
            node.tick();
            changes.extend(std::iter::from_fn(|| node.monitor.poll_change()).map(|change| change.peer));
        }
    }
    assert!(
        changes.iter().all(|peer| ids.contains(&peer.get())),
        "seed {seed}: verdicts about nodes the cluster does not have: {changes:?}"
    );
    for node in &nodes {
        let me = node.cluster.me();
        let others: Vec<NodeId> =
            ids.iter().map(|&id| NodeId::new(id).unwrap()).filter(|&id| id != me).collect();
        assert_eq!(node.monitor.reader().peers().collect::<Vec<_>>(), others, "seed {seed}: node {me} reads");
        for &peer in &others {
            assert_eq!(
                node.monitor.verdict(peer),
                Verdict::Trusted,
                "seed {seed}: node {me} about node {peer}"
            );
        }
    }
}

#[test]
fn another_roles_read_on_the_heartbeat_qp_comes_back_out_of_the_monitor() {
    let seed = common::seed("shared heartbeat CQ");
    let fabric = SimFabric::create(&format!("lease-clock-shared-cq-{seed}"), seed).unwrap();
    let mut nodes: Vec<Node> = bootstrap(&fabric, &MemoryHub::new(), &[0, 1], seed)
        .into_iter()
        .map(|(sim_node, mut cluster)| {
            let heartbeats = PoolHeartbeats::new(&mut cluster).unwrap();
            let clock = SimClock::new(&fabric);
            let reader = heartbeats.reader(ReaderConfig::default(), clock.now_ns());
            let detectors = (heartbeats.peers().iter())
                .map(|_| -> Box<dyn FailureDetector + Send> {
                    Box::new(ScoreDetector::new(ScoreConfig::default()))
                })
                .collect();
            let monitor = HeartbeatMonitor::new(reader, detectors);
            Node {
                sim_node,
                others: Vec::new(),
                clock,
                counter: HeartbeatCounter::new(5_000),
                monitor,
                heartbeats,
                cluster,
            }
        })
        .collect();
    fabric.set_auto_advance(false);
    // Another role of node 0 (say, uKharon's lease renewal) READs node 1's word through
    // the heartbeat QP, into node 0's own slot, which the heartbeat reader never uses.
    let (leader, peer) = (&mut nodes[0], id(1));
    let role = leader.heartbeats.role();
    let word = leader.cluster.remote_region(peer, PoolHeartbeats::REGION).unwrap();
    let remote = RemoteAddr::within(&word, 0, 8).unwrap();
    let into = leader.cluster.region(PoolHeartbeats::REGION).unwrap().sge(64, 8).unwrap();
    let renewal = WrId::new(WrKind::application(9), peer, 42).unwrap();
    leader.cluster.post_send(peer, role, &[SendWr::read(renewal.to_raw(), remote, &into)]).unwrap();
    while fabric.now_ns() < 200_000 && nodes[0].others.is_empty() {
        fabric.advance_by(1_000);
        for node in &mut nodes {
            node.tick();
        }
    }
    let others: Vec<Completion> = nodes[0].others.clone();
    assert_eq!(others.len(), 1, "seed {seed}: {others:?}");
    let completion = others[0];
    assert_eq!(WrId::from_raw(completion.wr_id), renewal, "seed {seed}: its wr_id, untouched");
    assert_eq!(
        (completion.status, completion.opcode, completion.byte_len),
        (Status::Success, CompletionOpcode::Read, 8)
    );
    assert_eq!(nodes[0].monitor.verdict(peer), Verdict::Trusted, "seed {seed}: heartbeats went on meanwhile");
    assert!(nodes[1].others.is_empty(), "seed {seed}");
}

/// The detectors every test node runs for each peer: Mu's score, and the provider's word.
fn detector() -> Box<dyn FailureDetector + Send> {
    Box::new(AnyOf::new(vec![
        Box::new(ScoreDetector::new(ScoreConfig::default())),
        Box::new(PeerLossDetector::new()),
    ]))
}

impl Node {
    fn start(fabric: &SimFabric, sim_node: sim::NodeId, mut cluster: Cluster) -> Node {
        let heartbeats = PoolHeartbeats::new(&mut cluster).unwrap();
        let clock = SimClock::new(fabric);
        let reader = heartbeats.reader(ReaderConfig::default(), clock.now_ns());
        let detectors = heartbeats.peers().iter().map(|_| detector()).collect();
        let monitor = HeartbeatMonitor::new(reader, detectors);
        Node {
            sim_node,
            others: Vec::new(),
            clock,
            counter: HeartbeatCounter::new(5_000),
            monitor,
            heartbeats,
            cluster,
        }
    }

    /// [`Node::tick`], serving the control connections too (restarted peers rejoin there).
    fn tick_and_serve(&mut self) {
        let now = self.clock.now_ns();
        while let Some(event) = self.cluster.poll_control_at(now) {
            if let Some(peer) = self.heartbeats.rejoined_peer(&event) {
                self.monitor.rejoined(now, peer, detector());
            }
        }
        self.tick();
    }
}

#[test]
fn a_crashed_node_restarted_in_its_place_is_trusted_again() {
    let seed = common::seed("pool heartbeats across a rejoin");
    let fabric = SimFabric::create(&format!("lease-clock-rejoin-{seed}"), seed).unwrap();
    let hub = MemoryHub::new();
    let mut nodes: Vec<Option<Node>> = bootstrap(&fabric, &hub, &[0, 1, 2], seed)
        .into_iter()
        .map(|(sim_node, cluster)| Some(Node::start(&fabric, sim_node, cluster)))
        .collect();
    fabric.set_auto_advance(false);
    let spec = nodes[0].as_ref().unwrap().cluster.spec().clone();
    let run = |nodes: &mut [Option<Node>], span_ns: u64| {
        let end = fabric.now_ns() + span_ns;
        while fabric.now_ns() < end {
            fabric.advance_by(1_000);
            for node in nodes.iter_mut().flatten() {
                node.tick_and_serve();
            }
        }
    };
    run(&mut nodes, 300_000);
    // Node 1 crashes: both survivors suspect it.
    fabric.crash(nodes[1].as_ref().unwrap().sim_node);
    nodes[1] = None;
    run(&mut nodes, 300_000);
    for observer in [0, 2] {
        assert!(nodes[observer].as_ref().unwrap().monitor.verdict(id(1)).is_suspected(), "seed {seed}");
    }
    // A fresh process of node 1 rejoins, with a new sim node, QPs and heartbeat region.
    let (sim_node, context) = fabric.open_node().unwrap();
    let config = NodeConfig::new(spec, id(1)).rejoin(true).incarnation(2);
    let config = PoolHeartbeats::configure(config).unwrap();
    let mut boot = Bootstrap::start(&context, config, Box::new(hub.listen(addr(1)).unwrap())).unwrap();
    let started = fabric.now_ns();
    let cluster = loop {
        fabric.advance_by(1_000);
        for node in nodes.iter_mut().flatten() {
            node.tick_and_serve();
        }
        if boot.poll(fabric.now_ns() - started).unwrap() == Progress::Done {
            break boot.finish().unwrap();
        }
    };
    nodes[1] = Some(Node::start(&fabric, sim_node, cluster));
    run(&mut nodes, 300_000);
    for (observer, node) in nodes.iter().enumerate() {
        let node = node.as_ref().unwrap();
        for peer in (0..3).filter(|&peer| peer != observer).map(id) {
            assert_eq!(node.monitor.verdict(peer), Verdict::Trusted, "seed {seed}: {observer} about {peer}");
        }
    }
}
