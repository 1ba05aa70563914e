//! [`MembershipNode`]: a consensus member, wired — its cluster, the Paxos port, a
//! [`ViewChange`], heartbeats and a failure detector per peer — turned one step at a time
//! by [`MembershipNode::turn`]. No protocol logic: verdicts go into the view change, views
//! learned come out.

use std::collections::VecDeque;

use rand::RngCore;
use usec_lease_clock::detector::{
    AnyOf, HeartbeatCounter, Observation, PeerLossDetector, ScoreConfig, ScoreDetector,
};
use usec_lease_clock::heartbeat::{HeartbeatMonitor, PoolHeartbeats, ReaderConfig};
use usec_qp_pool::{Cluster, ControlEvent, NodeConfig, NodeId, Poller};

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::port::PaxosPort;
use crate::view::{Member, View};
use crate::view_change::{ViewChange, ViewChangeConfig, ViewEvent};

/// How a node watches its peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detectors {
    /// Heartbeat READs.
    pub reader: ReaderConfig,
    /// Mu's score on the counter read.
    pub score: ScoreConfig,
    /// This node bumps its own counter this often (more often than peers read it).
    pub bump_period_ns: u64,
}

impl Default for Detectors {
    fn default() -> Detectors {
        Detectors { reader: ReaderConfig::default(), score: ScoreConfig::default(), bump_period_ns: 5_000 }
    }
}

/// A peer's detector: the score on its heartbeat, or the provider saying its process died.
fn detector(config: &Detectors) -> AnyOf {
    AnyOf::new(vec![
        Box::new(ScoreDetector::new(config.score)) as Box<_>,
        Box::new(PeerLossDetector::new()) as Box<_>,
    ])
}

/// Control-plane work is looked at every this many turns.
const CONTROL_EVERY: u64 = 64;

/// A consensus member: see the [module documentation](self).
#[derive(Debug)]
pub struct MembershipNode<R> {
    cluster: Cluster,
    port: PaxosPort,
    poller: Poller,
    view_change: ViewChange<R>,
    heartbeats: PoolHeartbeats,
    monitor: HeartbeatMonitor<AnyOf>,
    counter: HeartbeatCounter,
    detectors: Detectors,
    events: VecDeque<ViewEvent>,
    turns: u64,
}

impl<R: RngCore> MembershipNode<R> {
    /// Adds what a member needs (the Paxos role and regions, heartbeats) to a node's
    /// configuration; every node of the group does the same, with the same `acceptors`.
    pub fn configure(node: NodeConfig, layout: &Layout, acceptors: &[NodeId]) -> Result<NodeConfig> {
        let is_acceptor = acceptors.contains(&node.me);
        let node = PaxosPort::configure(node, layout, acceptors.len(), is_acceptor)?;
        PoolHeartbeats::configure(node).map_err(Error::heartbeat("adding heartbeats"))
    }

    /// The member of a cluster bootstrapped with [`MembershipNode::configure`], starting
    /// from `view` at `now_ns`.
    pub fn new(
        mut cluster: Cluster,
        config: ViewChangeConfig,
        acceptors: &[NodeId],
        view: View,
        detectors: Detectors,
        rng: R,
        now_ns: u64,
    ) -> Result<MembershipNode<R>> {
        let port = PaxosPort::new(&cluster, config.layout, acceptors)?;
        let poller = cluster.take_poller(&[port.role()]).map_err(Error::pool("taking the Paxos CQ"))?;
        let heartbeats = PoolHeartbeats::new(&mut cluster).map_err(Error::heartbeat("heartbeats"))?;
        let reader = heartbeats.reader(detectors.reader, now_ns);
        let detector_set = (0..reader.peers().len()).map(|_| detector(&detectors)).collect();
        let monitor = HeartbeatMonitor::new(reader, detector_set);
        let view_change = ViewChange::new(config, view, rng, now_ns)?;
        Ok(MembershipNode {
            cluster,
            port,
            poller,
            view_change,
            heartbeats,
            monitor,
            counter: HeartbeatCounter::new(detectors.bump_period_ns),
            detectors,
            events: VecDeque::new(),
            turns: 0,
        })
    }

    /// This process replaces an earlier one of its node (a restart): its acceptor memory
    /// is blank, and is not used — by this process either — until a view names this
    /// process (see [`PaxosPort`]'s "A restarted acceptor").
    pub fn restarted(mut self) -> MembershipNode<R> {
        self.port.suspend_local();
        self
    }

    /// One step: heartbeats and verdicts, the control plane now and then, completions,
    /// the view change's tick, its operations posted. True if something happened.
    pub fn turn(&mut self, now_ns: u64) -> bool {
        self.turns += 1;
        if let Some(value) = self.counter.tick(now_ns) {
            self.heartbeats.publish(value);
        }
        self.monitor.tick(now_ns, &mut self.heartbeats.port(&mut self.cluster), &mut |_| {});
        while let Some(change) = self.monitor.poll_change() {
            self.view_change.handle_verdict(now_ns, change.peer, change.verdict.is_suspected());
        }
        if self.turns % CONTROL_EVERY == 0 {
            self.control_plane(now_ns);
        }
        let busy = self.port.deliver(&mut self.poller, now_ns, &mut self.view_change);
        self.view_change.tick(now_ns);
        self.port.post_all(&mut self.cluster, &mut self.view_change);
        let mut learned = false;
        while let Some(event) = self.view_change.poll_event() {
            learned = true;
            let ViewEvent::Learned { view, .. } = &event;
            // A restarted acceptor a view names serves the instances above it.
            for member in view.members() {
                self.port.admit(&self.cluster, member.node, member.incarnation);
            }
            self.events.push_back(event);
        }
        busy || learned
    }

    fn control_plane(&mut self, now_ns: u64) {
        while let Some(event) = self.cluster.poll_control_at(now_ns) {
            self.port.handle_control(&event);
            if let ControlEvent::Rejoined { peer, incarnation } = event {
                // The view may name the new process already (learned before the rejoin).
                if self.view_change.view().contains(peer, incarnation) {
                    self.port.admit(&self.cluster, peer, incarnation);
                }
            }
            if let Some(peer) = self.heartbeats.rejoined_peer(&event) {
                self.monitor.rejoined(now_ns, peer, detector(&self.detectors));
            }
        }
        while let Some(event) = self.cluster.poll_event() {
            if let Some(peer) = self.heartbeats.lost_peer(&event) {
                self.monitor.observe(now_ns, peer, Observation::PeerLost);
            }
        }
        self.port.maintain(&mut self.cluster, now_ns);
    }

    /// The next view learned, with the local time it was learned at.
    pub fn poll_event(&mut self) -> Option<ViewEvent> {
        self.events.pop_front()
    }

    /// The latest view known.
    pub fn view(&self) -> &View {
        self.view_change.view()
    }

    /// The operator adds `member`.
    pub fn add(&mut self, now_ns: u64, member: Member) {
        self.view_change.add(now_ns, member);
    }

    /// The operator removes `node`'s member.
    pub fn remove(&mut self, now_ns: u64, node: NodeId) {
        self.view_change.remove(now_ns, node);
    }

    /// Whether this node's detector suspects `peer` now.
    pub fn suspects(&self, peer: NodeId) -> bool {
        self.monitor.verdict(peer).is_suspected()
    }

    /// The view change role.
    pub fn view_change(&self) -> &ViewChange<R> {
        &self.view_change
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }
}
