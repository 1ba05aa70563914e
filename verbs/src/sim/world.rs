//! The whole simulated fabric behind one lock: clock and event queue, nodes, links, trace.
//!
//! Methods here are the glue; what a requester, a responder, a CQ or a fault does lives
//! in their own files as further `impl World` blocks.

use std::collections::{BTreeMap, BTreeSet};

use crate::sim::latency::LatencyModel;
use crate::sim::node::{Node, NodeId};
use crate::sim::queue_pair::QueuePairState;
use crate::sim::scheduler::{EventId, Scheduler};
use crate::sim::trace::{Trace, TraceEvent};
use crate::sim::wire::Event;

/// The state of one fabric.
#[derive(Debug)]
pub(crate) struct World {
    /// Identity of the fabric in endpoints (unique per fabric in the process).
    pub(crate) fabric_id: u64,
    pub(crate) scheduler: Scheduler<Event>,
    pub(crate) nodes: Vec<Node>,
    /// Unordered pairs, stored (smaller, larger).
    partitions: BTreeSet<(NodeId, NodeId)>,
    latency: LatencyModel,
    /// Per-link overrides, stored (smaller, larger): both directions.
    link_latency: BTreeMap<(NodeId, NodeId), LatencyModel>,
    pub(crate) auto_advance: bool,
    pub(crate) trace: Trace,
}

impl World {
    pub(crate) fn new(fabric_id: u64, seed: u64) -> World {
        World {
            fabric_id,
            scheduler: Scheduler::new(seed),
            nodes: Vec::new(),
            partitions: BTreeSet::new(),
            latency: LatencyModel::default(),
            link_latency: BTreeMap::new(),
            auto_advance: true,
            trace: Trace::new(),
        }
    }

    pub(crate) fn now(&self) -> u64 {
        self.scheduler.now_ns()
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        let index = id.0 as usize;
        assert!(index < self.nodes.len(), "{id} is not a node of this fabric");
        &self.nodes[index]
    }

    pub(crate) fn node_mut(&mut self, id: NodeId) -> &mut Node {
        let index = id.0 as usize;
        assert!(index < self.nodes.len(), "{id} is not a node of this fabric");
        &mut self.nodes[index]
    }

    pub(crate) fn add_node(&mut self) -> NodeId {
        let id = NodeId(u32::try_from(self.nodes.len()).expect("fewer than 2^32 nodes"));
        self.nodes.push(Node::default());
        id
    }

    /// A QP of a live node.
    pub(crate) fn qp(&self, node: NodeId, qp_num: u32) -> Option<&QueuePairState> {
        self.nodes.get(node.0 as usize)?.qps.get(&qp_num)
    }

    pub(crate) fn qp_mut(&mut self, node: NodeId, qp_num: u32) -> Option<&mut QueuePairState> {
        self.nodes.get_mut(node.0 as usize)?.qps.get_mut(&qp_num)
    }

    pub(crate) fn is_crashed(&self, node: NodeId) -> bool {
        self.node(node).crashed
    }

    pub(crate) fn schedule(&mut self, at_ns: u64, event: Event) -> EventId {
        self.scheduler.schedule(at_ns, event)
    }

    pub(crate) fn record(&mut self, event: TraceEvent) {
        self.trace.record(event);
    }

    // ---- links ----

    pub(crate) fn set_latency(&mut self, model: LatencyModel) {
        self.latency = model;
    }

    pub(crate) fn latency(&self) -> LatencyModel {
        self.latency
    }

    pub(crate) fn set_link_latency(&mut self, a: NodeId, b: NodeId, model: LatencyModel) {
        self.link_latency.insert(pair(a, b), model);
    }

    /// A one-way latency from `from` to `to` for a message carrying `bytes`.
    pub(crate) fn sample_latency(&mut self, from: NodeId, to: NodeId, bytes: u64) -> u64 {
        let model = self.link_latency.get(&pair(from, to)).copied().unwrap_or(self.latency);
        model.sample(self.scheduler.rng(), bytes)
    }

    pub(crate) fn set_partitioned(&mut self, a: NodeId, b: NodeId, partitioned: bool) -> bool {
        if a == b {
            return false;
        }
        if partitioned {
            self.partitions.insert(pair(a, b))
        } else {
            self.partitions.remove(&pair(a, b))
        }
    }

    pub(crate) fn partitioned(&self, a: NodeId, b: NodeId) -> bool {
        a != b && self.partitions.contains(&pair(a, b))
    }

    /// Whether a message from `from` to `to` can travel now.
    pub(crate) fn link_up(&self, from: NodeId, to: NodeId) -> bool {
        !self.is_crashed(from) && !self.is_crashed(to) && !self.partitioned(from, to)
    }

    // ---- running ----

    /// Runs the next event; false when there is none.
    pub(crate) fn step(&mut self) -> bool {
        let Some(event) = self.scheduler.pop() else { return false };
        match event {
            Event::Deliver(request) => self.on_request(*request),
            Event::Respond(response) => self.on_response(*response),
            Event::AckTimer { node, qp_num, incarnation } => self.on_ack_timer(node, qp_num, incarnation),
            Event::RnrResend { node, qp_num, incarnation, seq } => {
                self.on_rnr_resend(node, qp_num, incarnation, seq)
            }
            Event::PeerLost { node, qp_num, incarnation, lost } => {
                self.on_peer_lost(node, qp_num, incarnation, lost)
            }
        }
        true
    }

    /// Runs every event due at or before `at_ns`, then sets the clock to `at_ns` (unless it
    /// is in the past).
    pub(crate) fn advance_to(&mut self, at_ns: u64) {
        while self.scheduler.next_at_ns().is_some_and(|next| next <= at_ns) {
            self.step();
        }
        self.scheduler.advance_clock(at_ns);
    }

    pub(crate) fn run_until_idle(&mut self, max_events: usize) -> usize {
        let mut ran = 0;
        while ran < max_events && self.step() {
            ran += 1;
        }
        ran
    }
}

/// An unordered pair of nodes, as a key.
fn pair(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}
