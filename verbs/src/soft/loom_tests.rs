//! Loom models of the soft provider's receive path: the ring a peer takes RECVs from and
//! completes them in, the CQ poller that reports them, and the doorbell between the two.
//!
//! Each model runs the real [`ReceiveQueue`], [`RecvSource::poll_entries`] and
//! [`DoorbellWatch`] code on a ring built from loom's atomics; loom explores every
//! interleaving of the threads, and every value a load may return under the orderings
//! used, up to a preemption bound (`LOOM_MAX_PREEMPTIONS`, 3 unless set). `tools/test-all`
//! runs them (the command is in the README).

use std::sync::{Arc, Weak};

use loom::thread;

use crate::completion::{Completion, CompletionOpcode, Status};
use crate::primitive::sync::atomic::{AtomicU64, Ordering};
use crate::soft::completion_queue::{ring_doorbell, DoorbellWatch, RecvSource, SourcePoll};
use crate::soft::receive_queue::ReceiveQueue;
use crate::work_request::Sge;

const QP_NUM: u32 = 9;
const FIRST: (u64, Sge) = (41, Sge { addr: 0x1000, len: 64, lkey: 7 });
const SECOND: (u64, Sge) = (42, Sge { addr: 0x2000, len: 32, lkey: 8 });

fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(body);
}

/// The receive side of one QP: its ring (one SGE per entry) and consumed position, the
/// owner's `recv_taken` word that the peer advances, and the CQ's doorbell.
#[derive(Clone)]
struct Rig {
    source: Arc<RecvSource>,
    recv_taken: Arc<AtomicU64>,
    doorbell: Arc<AtomicU64>,
}

impl Rig {
    fn new(capacity: u64) -> Rig {
        let queue = ReceiveQueue::modelled(capacity, 1);
        Rig {
            source: Arc::new(RecvSource::new(Weak::new(), 0, QP_NUM, queue, 0)),
            recv_taken: Arc::new(AtomicU64::new(0)),
            doorbell: Arc::new(AtomicU64::new(0)),
        }
    }

    fn queue(&self) -> &ReceiveQueue {
        &self.source.queue
    }

    /// The owner posts a RECV at `position`.
    fn post(&self, position: u64, (wr_id, sge): (u64, Sge)) {
        self.queue().post(position, wr_id, &[sge]);
    }

    /// The peer's half of a SEND, as the requester runs it: claims the next RECV, checks
    /// that it reads the SGE the owner posted there, completes it and rings the doorbell.
    /// Returns the position it claimed, if any.
    fn peer_sends(&self, posted: &[(u64, Sge)], byte_len: u32) -> Option<u64> {
        let position = self.queue().take_next(&self.recv_taken)?;
        let mut sges = [Sge::default(); 2];
        let count = self.queue().read_sges(position, &mut sges);
        assert_eq!(&sges[..count], &[posted[position as usize].1], "the SGE posted at {position}");
        if self.queue().complete(position, Status::Success, CompletionOpcode::Recv, byte_len, Some(byte_len))
        {
            ring_doorbell(&self.doorbell);
        }
        Some(position)
    }

    /// One poll of the CQ's receive side, as `SoftCq::poll` runs it for one source.
    fn poll(&self, watch: &mut DoorbellWatch, in_error: bool, peer_gone: bool, seen: &mut Vec<Completion>) {
        if !watch.should_walk(&self.doorbell) {
            return;
        }
        let mut batch = [Completion::default(); 4];
        let mut filled = 0;
        let outcome = self.source.poll_entries(|| in_error, || peer_gone, &mut batch, &mut filled);
        if outcome == SourcePoll::Blocked {
            watch.walk_again();
        }
        seen.extend_from_slice(&batch[..filled]);
    }
}

fn received((wr_id, _): (u64, Sge), byte_len: u32) -> Completion {
    let imm = Some(byte_len);
    Completion {
        wr_id,
        status: Status::Success,
        opcode: CompletionOpcode::Recv,
        byte_len,
        imm,
        qp_num: QP_NUM,
    }
}

fn flushed((wr_id, _): (u64, Sge)) -> Completion {
    let (opcode, imm) = (CompletionOpcode::Recv, None);
    Completion { wr_id, status: Status::Flushed, opcode, byte_len: 0, imm, qp_num: QP_NUM }
}

/// A peer that takes a RECV while the owner posts it reads the posted SGE; a poller that
/// runs meanwhile, then once more after the peer is done, reports the peer's completion
/// exactly once, with the peer's fields: a doorbell rung after the completion is never
/// missed, and a walk never sees the entry done without its fields.
#[test]
fn loom_posted_recv_reaches_the_peer_and_its_completion_the_poller() {
    model(|| {
        let rig = Rig::new(2);
        let peer = {
            let rig = rig.clone();
            thread::spawn(move || rig.peer_sends(&[FIRST], 5))
        };
        rig.post(0, FIRST);
        let mut watch = DoorbellWatch::new();
        let mut seen = Vec::new();
        rig.poll(&mut watch, false, false, &mut seen);
        let taken = peer.join().unwrap();
        rig.poll(&mut watch, false, false, &mut seen);
        match taken {
            Some(_) => assert_eq!(seen, [received(FIRST, 5)]),
            None => assert_eq!(seen, []),
        }
    });
}

/// Once the QP is in error, the poller flushes the RECVs no peer took, and waits for the
/// one a peer is filling: each RECV completes exactly once, as the peer's or as a flush.
#[test]
fn loom_a_recv_racing_a_flush_completes_exactly_once() {
    model(|| {
        let rig = Rig::new(2);
        rig.post(0, FIRST);
        let peer = {
            let rig = rig.clone();
            thread::spawn(move || rig.peer_sends(&[FIRST], 5))
        };
        let mut watch = DoorbellWatch::new();
        let mut seen = Vec::new();
        rig.poll(&mut watch, true, false, &mut seen);
        let taken = peer.join().unwrap();
        rig.poll(&mut watch, true, false, &mut seen);
        let expected = if taken.is_some() { received(FIRST, 5) } else { flushed(FIRST) };
        assert_eq!(seen, [expected]);
    });
}

/// A peer that dies between taking a RECV and completing it: the poller of the QP in error
/// reports the RECV flushed, exactly once, whether it or the peer claimed it first.
#[test]
fn loom_a_recv_taken_by_a_dead_peer_is_flushed_once() {
    model(|| {
        let rig = Rig::new(2);
        rig.post(0, FIRST);
        let peer = {
            let rig = rig.clone();
            thread::spawn(move || rig.queue().take_next(&rig.recv_taken))
        };
        let mut watch = DoorbellWatch::new();
        let mut seen = Vec::new();
        rig.poll(&mut watch, true, true, &mut seen);
        peer.join().unwrap();
        rig.poll(&mut watch, true, true, &mut seen);
        assert_eq!(seen, [flushed(FIRST)]);
    });
}

/// A one-entry ring reused: the owner reposts the slot once its poller reported the first
/// RECV, while the peer comes back for the next one. The peer never reads the first RECV's
/// SGE at the second position, and the poller reports both RECVs in order.
#[test]
fn loom_a_reused_slot_carries_only_its_own_recv() {
    model(|| {
        let rig = Rig::new(1);
        rig.post(0, FIRST);
        let peer = {
            let rig = rig.clone();
            thread::spawn(move || {
                rig.peer_sends(&[FIRST, SECOND], 5).expect("the first RECV was posted before");
                rig.peer_sends(&[FIRST, SECOND], 6)
            })
        };
        let mut watch = DoorbellWatch::new();
        let mut seen = Vec::new();
        while seen.is_empty() {
            rig.poll(&mut watch, false, false, &mut seen);
            thread::yield_now();
        }
        assert_eq!(rig.source.consumed.load(Ordering::Acquire), 1);
        rig.post(1, SECOND);
        let second = peer.join().unwrap();
        rig.poll(&mut watch, false, false, &mut seen);
        match second {
            Some(_) => assert_eq!(seen, [received(FIRST, 5), received(SECOND, 6)]),
            None => assert_eq!(seen, [received(FIRST, 5)]),
        }
    });
}
