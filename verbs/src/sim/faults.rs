//! Injected faults: crash, pause and resume a node, partition and heal a link.

use crate::event::{AsyncEvent, AsyncEventKind};
use crate::sim::node::NodeId;
use crate::sim::trace::{TraceEvent, TraceKind};
use crate::sim::wire::Event;
use crate::sim::world::World;
use crate::sim::PEER_LOST_DELAY_NS;

impl World {
    /// The node stops for good: its QPs, memory registrations, CQs and events vanish, what
    /// it sent is lost, and the peers of its QPs hear of it after
    /// [`PEER_LOST_DELAY_NS`].
    pub(crate) fn crash(&mut self, victim: NodeId) {
        if self.is_crashed(victim) {
            return;
        }
        let now = self.now();
        self.record(TraceEvent::new(now, TraceKind::Crash, victim));
        let mut notices = Vec::new();
        for (index, node) in self.nodes.iter().enumerate() {
            if index == victim.0 as usize || node.crashed {
                continue;
            }
            for (&qp_num, qp) in &node.qps {
                if qp.remote.is_some_and(|remote| remote.node == victim) {
                    notices.push((NodeId(index as u32), qp_num, qp.incarnation));
                }
            }
        }
        let timers: Vec<_> = self.node(victim).qps.values().filter_map(|qp| qp.send.timer).collect();
        for timer in timers {
            self.scheduler.cancel(timer);
        }
        self.node_mut(victim).vanish();
        for (node, qp_num, incarnation) in notices {
            let event = Event::PeerLost { node, qp_num, incarnation, lost: victim };
            self.schedule(now + PEER_LOST_DELAY_NS, event);
        }
    }

    /// A node notices that the peer of one of its QPs crashed.
    pub(crate) fn on_peer_lost(&mut self, node: NodeId, qp_num: u32, incarnation: u64, lost: NodeId) {
        let Some(qp) = self.qp(node, qp_num) else { return };
        let still_connected = qp.incarnation == incarnation && qp.remote.is_some_and(|r| r.node == lost);
        if !still_connected {
            return;
        }
        self.node_mut(node)
            .events
            .push_back(AsyncEvent { kind: AsyncEventKind::PeerLost, qp_num: Some(qp_num) });
        let mut event = TraceEvent::new(self.now(), TraceKind::PeerLost, node);
        event.peer = Some(lost);
        event.qp_num = qp_num;
        self.record(event);
    }

    /// The node's process stops; its NIC goes on serving peers, but what it posts waits.
    pub(crate) fn pause(&mut self, node: NodeId) {
        let state = self.node_mut(node);
        if state.crashed || state.paused {
            return;
        }
        state.paused = true;
        self.record(TraceEvent::new(self.now(), TraceKind::Pause, node));
    }

    /// The node's process continues: what it posted while paused goes out now.
    pub(crate) fn resume(&mut self, node: NodeId) {
        let state = self.node_mut(node);
        if !state.paused {
            return;
        }
        state.paused = false;
        let qp_nums: Vec<u32> = state.qps.keys().copied().collect();
        self.record(TraceEvent::new(self.now(), TraceKind::Resume, node));
        for qp_num in qp_nums {
            self.transmit_pending(node, qp_num);
        }
    }

    /// Messages between `a` and `b`, in either direction, are lost until healed.
    pub(crate) fn partition(&mut self, a: NodeId, b: NodeId) {
        self.node(a);
        self.node(b);
        if self.set_partitioned(a, b, true) {
            let mut event = TraceEvent::new(self.now(), TraceKind::Partition, a.min(b));
            event.peer = Some(a.max(b));
            self.record(event);
        }
    }

    /// Messages between `a` and `b` flow again (those lost stay lost).
    pub(crate) fn heal(&mut self, a: NodeId, b: NodeId) {
        self.node(a);
        self.node(b);
        if self.set_partitioned(a, b, false) {
            let mut event = TraceEvent::new(self.now(), TraceKind::Heal, a.min(b));
            event.peer = Some(a.max(b));
            self.record(event);
        }
    }
}
