//! Completion queues of the soft provider.
//!
//! Send completions are produced in this process only (by the threads that post), so they
//! go through an in-process bounded queue. Receive completions are written by peers into
//! the receive queue entries themselves; the poller walks the receive queues of the QPs
//! attached to it, and a shared doorbell word tells it when there is anything to walk.

use std::any::Any;
use std::sync::{Arc, Mutex, Weak};

use crossbeam_queue::ArrayQueue;

use crate::completion::{Completion, CompletionOpcode, Status};
use crate::error::{Error, Result};
use crate::primitive::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::provider::CqOps;
use crate::qp::QpState;
use crate::soft::layout::MAX_CQ;
use crate::soft::node::Node;
use crate::soft::queue_pair::QpShared;
use crate::soft::receive_queue::{EntryState, ReceiveQueue};

/// A send completion on its way to the poller, with what queue-full accounting needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SendCompletion {
    pub completion: Completion,
    /// The work request's sequence number on its QP.
    pub sequence: u64,
    /// The QP's slot, whose retired counter the poller advances.
    pub slot: usize,
}

/// The receive side of one QP, as its receive CQ's poller sees it. A reset replaces it.
#[derive(Debug)]
pub(crate) struct RecvSource {
    pub qp: Weak<QpShared>,
    pub slot: usize,
    pub qp_num: u32,
    pub queue: ReceiveQueue,
    /// The next position to report (only the poller advances it).
    pub consumed: AtomicU64,
    /// Set when the QP is reset or destroyed: the source is dropped without completions.
    pub retired: AtomicBool,
}

/// How a receive source's poll ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourcePoll {
    /// Nothing more to report now.
    Idle,
    /// Waiting for a peer to finish an entry of a QP in error: poll again.
    Blocked,
}

impl RecvSource {
    /// The receive side of a QP whose ring starts at position `start`.
    pub(crate) fn new(
        qp: Weak<QpShared>,
        slot: usize,
        qp_num: u32,
        queue: ReceiveQueue,
        start: u64,
    ) -> RecvSource {
        RecvSource {
            qp,
            slot,
            qp_num,
            queue,
            consumed: AtomicU64::new(start),
            retired: AtomicBool::new(false),
        }
    }

    fn poll(&self, node: &Node, out: &mut [Completion], filled: &mut usize) -> SourcePoll {
        let in_error = || {
            let word = crate::soft::layout::SlotWord::load(
                &node.block().qps[self.slot].owner.word,
                Ordering::Acquire,
            );
            word.state == QpState::Error
        };
        let peer_gone = || {
            self.qp
                .upgrade()
                .and_then(|qp| qp.link.lock().expect("link lock").clone())
                .is_none_or(|link| link.peer.is_gone())
        };
        self.poll_entries(in_error, peer_gone, out, filled)
    }

    /// Reports the ring's finished entries in order into `out[*filled..]`. Once the QP is
    /// in error (`in_error`), it flushes the entries no peer took, waits for the ones a
    /// peer is filling, and flushes those too once that peer cannot finish them
    /// (`peer_gone`).
    pub(crate) fn poll_entries(
        &self,
        in_error: impl Fn() -> bool,
        peer_gone: impl Fn() -> bool,
        out: &mut [Completion],
        filled: &mut usize,
    ) -> SourcePoll {
        while *filled < out.len() {
            let position = self.consumed.load(Ordering::Relaxed);
            match self.queue.state(position) {
                EntryState::Done { wr_id, status, opcode, byte_len, imm } => {
                    out[*filled] = Completion { wr_id, status, opcode, byte_len, imm, qp_num: self.qp_num };
                    *filled += 1;
                    self.consumed.store(position + 1, Ordering::Release);
                }
                EntryState::Posted if in_error() => {
                    if self.queue.take(position) {
                        self.queue.complete(position, Status::Flushed, CompletionOpcode::Recv, 0, None);
                    }
                }
                EntryState::Taken if in_error() => {
                    if !peer_gone() {
                        return SourcePoll::Blocked;
                    }
                    // The peer died while filling it: nobody will ever finish it.
                    out[*filled] = Completion {
                        wr_id: self.queue.wr_id(position),
                        status: Status::Flushed,
                        opcode: CompletionOpcode::Recv,
                        byte_len: 0,
                        imm: None,
                        qp_num: self.qp_num,
                    };
                    *filled += 1;
                    self.consumed.store(position + 1, Ordering::Release);
                }
                _ => return SourcePoll::Idle,
            }
        }
        SourcePoll::Idle
    }
}

/// Tells the CQ's poller that a receive queue attached to it has news (a completed RECV,
/// a QP moved to error). Release: what was published before the ring is visible to a
/// poller that sees the ring.
pub(crate) fn ring_doorbell(doorbell: &AtomicU64) {
    doorbell.fetch_add(1, Ordering::Release);
}

/// When the poller walks its receive queues: when the doorbell rang since its last walk,
/// or when the last walk could not finish (it filled the caller's array, or waits on a
/// peer), so that an empty poll need not scan every ring.
#[derive(Debug)]
pub(crate) struct DoorbellWatch {
    seen: u64,
    walk_again: bool,
}

impl DoorbellWatch {
    pub(crate) fn new() -> DoorbellWatch {
        DoorbellWatch { seen: 0, walk_again: true }
    }

    /// Whether to walk now. Acquire pairs with [`ring_doorbell`]'s release: a walk that
    /// follows a ring sees what the ringer published before it.
    pub(crate) fn should_walk(&mut self, doorbell: &AtomicU64) -> bool {
        let rung = doorbell.load(Ordering::Acquire);
        if rung == self.seen && !self.walk_again {
            return false;
        }
        self.seen = rung;
        self.walk_again = false;
        true
    }

    /// The walk stopped before the end: walk again on the next poll.
    pub(crate) fn walk_again(&mut self) {
        self.walk_again = true;
    }
}

/// The parts of a CQ that its QPs reach.
#[derive(Debug)]
pub(crate) struct CqShared {
    node: Arc<Node>,
    slot: usize,
    sends: ArrayQueue<SendCompletion>,
    attached: Mutex<Vec<Arc<RecvSource>>>,
    attached_changed: AtomicBool,
    deferred: Mutex<Vec<Weak<QpShared>>>,
    has_deferred: AtomicBool,
}

impl CqShared {
    pub(crate) fn slot(&self) -> usize {
        self.slot
    }

    /// Queues a send completion; false when the CQ is full (an overrun).
    pub(crate) fn push(&self, completion: SendCompletion) -> bool {
        self.sends.push(completion).is_ok()
    }

    /// Hands a QP's receive queue to this CQ's poller.
    pub(crate) fn attach(&self, source: Arc<RecvSource>) {
        self.attached.lock().expect("attach lock").push(source);
        self.attached_changed.store(true, Ordering::Release);
        ring_doorbell(&self.node.block().cqs[self.slot].doorbell);
    }

    /// Asks the poller to make progress on a QP's deferred requests.
    pub(crate) fn watch_deferred(&self, qp: Weak<QpShared>) {
        let mut deferred = self.deferred.lock().expect("deferred list lock");
        if !deferred.iter().any(|known| known.ptr_eq(&qp)) {
            deferred.push(qp);
        }
        self.has_deferred.store(true, Ordering::Release);
    }

    fn progress_deferred(&self) {
        if !self.has_deferred.load(Ordering::Acquire) {
            return;
        }
        let qps: Vec<Arc<QpShared>> = {
            let mut deferred = self.deferred.lock().expect("deferred list lock");
            deferred.retain(|qp| qp.upgrade().is_some_and(|qp| qp.has_deferred.load(Ordering::Acquire)));
            if deferred.is_empty() {
                self.has_deferred.store(false, Ordering::Release);
            }
            deferred.iter().filter_map(Weak::upgrade).collect()
        };
        for qp in qps {
            qp.progress();
        }
    }
}

/// A completion queue of the soft provider.
#[derive(Debug)]
pub(crate) struct SoftCq {
    shared: Arc<CqShared>,
    sources: Vec<Arc<RecvSource>>,
    doorbell: DoorbellWatch,
    depth: u32,
}

impl SoftCq {
    pub(crate) fn new(node: &Arc<Node>, depth: u32) -> Result<SoftCq> {
        let slot = node
            .tables
            .lock()
            .expect("node tables")
            .cqs
            .allocate()
            .ok_or(Error::ResourceExhausted { what: "completion queues", limit: MAX_CQ as u64 })?
            .0;
        let shared = Arc::new(CqShared {
            node: Arc::clone(node),
            slot,
            sends: ArrayQueue::new(depth as usize),
            attached: Mutex::new(Vec::new()),
            attached_changed: AtomicBool::new(false),
            deferred: Mutex::new(Vec::new()),
            has_deferred: AtomicBool::new(false),
        });
        Ok(SoftCq { shared, sources: Vec::new(), doorbell: DoorbellWatch::new(), depth })
    }

    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.shared.node
    }

    pub(crate) fn shared(&self) -> &Arc<CqShared> {
        &self.shared
    }

    fn poll_receives(&mut self, out: &mut [Completion], filled: &mut usize) {
        // A plain load first: a locked swap on every (mostly empty) poll costs ~9 ns.
        if self.shared.attached_changed.load(Ordering::Acquire)
            && self.shared.attached_changed.swap(false, Ordering::AcqRel)
        {
            let mut attached = self.shared.attached.lock().expect("attach lock");
            self.sources.append(&mut attached);
        }
        if !self.doorbell.should_walk(&self.shared.node.block().cqs[self.shared.slot].doorbell) {
            return;
        }
        self.sources.retain(|source| !source.retired.load(Ordering::Acquire));
        for source in &self.sources {
            if let SourcePoll::Blocked = source.poll(&self.shared.node, out, filled) {
                self.doorbell.walk_again();
            }
            if *filled == out.len() {
                self.doorbell.walk_again();
                return;
            }
        }
    }
}

impl CqOps for SoftCq {
    fn poll(&mut self, out: &mut [Completion]) -> usize {
        self.shared.progress_deferred();
        let mut filled = 0;
        self.poll_receives(out, &mut filled);
        let block = self.shared.node.block();
        while filled < out.len() {
            let Some(send) = self.shared.sends.pop() else { break };
            block.qps[send.slot].outbound.send_retired.store(send.sequence, Ordering::Release);
            out[filled] = send.completion;
            filled += 1;
        }
        filled
    }

    fn depth(&self) -> u32 {
        self.depth
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for SoftCq {
    fn drop(&mut self) {
        self.shared.node.tables.lock().expect("node tables").cqs.release(self.shared.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work_request::Sge;

    fn poll(source: &RecvSource, in_error: bool, peer_gone: bool, out: &mut Vec<Completion>) -> SourcePoll {
        let mut batch = [Completion::default(); 8];
        let mut filled = 0;
        let outcome = source.poll_entries(|| in_error, || peer_gone, &mut batch, &mut filled);
        out.extend_from_slice(&batch[..filled]);
        outcome
    }

    /// The poller's walk over a mapped ring: done entries in order, then, once the QP is in
    /// error, a wait for the entry a live peer holds, and flushes once that peer is gone.
    #[test]
    fn the_poller_reports_in_order_waits_for_live_peers_and_flushes_once() {
        let queue = ReceiveQueue::create(4, 1).unwrap();
        let source = RecvSource::new(Weak::new(), 0, 3, queue.clone(), 0);
        let recv_taken = AtomicU64::new(0);
        for position in 0..3 {
            queue.post(position, 100 + position, &[Sge { addr: 0x1000, len: 8, lkey: 1 }]);
        }
        assert_eq!(queue.take_next(&recv_taken), Some(0));
        assert!(queue.complete(0, Status::Success, CompletionOpcode::Recv, 8, None));
        assert_eq!(queue.take_next(&recv_taken), Some(1), "a peer holds the second RECV");
        let mut seen = Vec::new();
        assert_eq!(poll(&source, false, false, &mut seen), SourcePoll::Idle);
        let received = Completion {
            wr_id: 100,
            status: Status::Success,
            opcode: CompletionOpcode::Recv,
            byte_len: 8,
            imm: None,
            qp_num: 3,
        };
        assert_eq!(seen, [received]);
        assert_eq!(
            poll(&source, true, false, &mut seen),
            SourcePoll::Blocked,
            "the peer may still finish it"
        );
        assert_eq!(seen.len(), 1);
        assert_eq!(poll(&source, true, true, &mut seen), SourcePoll::Idle);
        let flushed = |wr_id| Completion { wr_id, status: Status::Flushed, byte_len: 0, ..received };
        assert_eq!(seen, [received, flushed(101), flushed(102)]);
        assert_eq!(poll(&source, true, true, &mut seen), SourcePoll::Idle);
        assert_eq!(seen.len(), 3, "each RECV completes once");
        assert_eq!(queue.take_next(&recv_taken), None, "flushed RECVs cannot be taken");
    }
}
