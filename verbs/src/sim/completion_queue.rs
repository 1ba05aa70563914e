//! Completion queues: their state in the fabric, overrun, polling (with auto-advance), and
//! the handle behind the public [`CompletionQueue`](crate::CompletionQueue).

use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;

use crate::completion::Completion;
use crate::error::{Error, Result};
use crate::event::{AsyncEvent, AsyncEventKind};
use crate::provider::CqOps;
use crate::qp::QpState;
use crate::sim::device::{crashed_error, MAX_CQ_PER_NODE};
use crate::sim::fabric::Shared;
use crate::sim::node::{Node, NodeId};
use crate::sim::trace::{TraceEvent, TraceKind};
use crate::sim::world::World;

/// Which queue of its QP a completion retires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WorkQueue {
    Send,
    Recv,
}

/// A CQ as the fabric sees it.
#[derive(Debug)]
pub(crate) struct CompletionQueueState {
    depth: u32,
    entries: VecDeque<Entry>,
}

#[derive(Debug)]
struct Entry {
    completion: Completion,
    queue: WorkQueue,
    post_seq: u64,
}

impl World {
    pub(crate) fn create_cq(&mut self, node: NodeId, depth: u32) -> Result<u32> {
        if self.is_crashed(node) {
            return Err(crashed_error(node));
        }
        let state = self.node_mut(node);
        if state.cqs.len() >= MAX_CQ_PER_NODE as usize {
            return Err(Error::ResourceExhausted { what: "CQs", limit: u64::from(MAX_CQ_PER_NODE) });
        }
        let id = state.next_cq;
        state.next_cq += 1;
        // Room for the usual case up front; a deep CQ grows as it fills.
        let entries = VecDeque::with_capacity(depth.min(4096) as usize);
        state.cqs.insert(id, CompletionQueueState { depth, entries });
        Ok(id)
    }

    pub(crate) fn destroy_cq(&mut self, node: NodeId, cq: u32) {
        self.node_mut(node).cqs.remove(&cq);
    }

    /// Pushes a completion. A full CQ keeps it anyway (nothing is lost), raises
    /// `CqOverrun` and moves the QP concerned to ERROR, once per QP.
    pub(crate) fn push_completion(
        &mut self,
        node: NodeId,
        cq: u32,
        queue: WorkQueue,
        post_seq: u64,
        completion: Completion,
    ) {
        let mut event = TraceEvent::new(self.now(), TraceKind::Completion, node);
        event.qp_num = completion.qp_num;
        event.opcode = Some(completion.opcode);
        event.len = u64::from(completion.byte_len);
        event.status = completion.status;
        event.wr_id = completion.wr_id;
        self.record(event);
        let Node { crashed, cqs, qps, events, .. } = self.node_mut(node);
        if *crashed {
            return;
        }
        // A destroyed CQ swallows what its QPs still produce.
        let Some(state) = cqs.get_mut(&cq) else { return };
        let overrun = state.entries.len() >= state.depth as usize;
        state.entries.push_back(Entry { completion, queue, post_seq });
        let qp_num = completion.qp_num;
        let qp_fails = overrun && qps.get(&qp_num).is_some_and(|qp| qp.state != QpState::Error);
        if qp_fails {
            events.push_back(AsyncEvent { kind: AsyncEventKind::CqOverrun, qp_num: Some(qp_num) });
            self.record(TraceEvent { kind: TraceKind::CqOverrun, ..event });
            self.qp_to_error(node, qp_num);
        }
    }

    /// Moves completions into `out`; each one retires its work request (and, for the send
    /// queue, the unsignaled ones before it).
    pub(crate) fn poll_cq(&mut self, node: NodeId, cq: u32, out: &mut [Completion]) -> usize {
        let Node { crashed, cqs, qps, .. } = self.node_mut(node);
        if *crashed {
            return 0;
        }
        let Some(state) = cqs.get_mut(&cq) else { return 0 };
        let mut polled = 0;
        while polled < out.len() {
            let Some(entry) = state.entries.pop_front() else { break };
            if let Some(qp) = qps.get_mut(&entry.completion.qp_num) {
                let retired_below = match entry.queue {
                    WorkQueue::Send => &mut qp.send.retired_below,
                    WorkQueue::Recv => &mut qp.recv.retired_below,
                };
                *retired_below = (*retired_below).max(entry.post_seq + 1);
            }
            out[polled] = entry.completion;
            polled += 1;
        }
        polled
    }
}

/// The provider object behind a [`CompletionQueue`](crate::CompletionQueue).
#[derive(Debug)]
pub(crate) struct SimCq {
    pub(crate) fabric: Arc<Shared>,
    pub(crate) node: NodeId,
    pub(crate) cq: u32,
    pub(crate) depth: u32,
}

impl CqOps for SimCq {
    /// With auto-advance on, a poll that finds nothing runs the fabric's next event and
    /// looks again, so code that spins on `poll` makes progress in virtual time.
    fn poll(&mut self, out: &mut [Completion]) -> usize {
        let mut world = self.fabric.world();
        let polled = world.poll_cq(self.node, self.cq, out);
        if polled > 0 || out.is_empty() || !world.auto_advance {
            return polled;
        }
        world.step();
        world.poll_cq(self.node, self.cq, out)
    }

    fn depth(&self) -> u32 {
        self.depth
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for SimCq {
    fn drop(&mut self) {
        self.fabric.world().destroy_cq(self.node, self.cq);
    }
}
