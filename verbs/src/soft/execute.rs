//! Executing one send work request: in the requester's thread, straight into the
//! responder's mapped memory, with the checks a responder NIC makes, in the order the
//! fence with the responder needs (see `fence.rs`, steps R1 to R6): raise the in-flight
//! marker, check the responder QP, derive the pointers, validate the QP again, copy, lower.
//! One-sided operations are here; SENDs and WRITE_WITH_IMMs, which consume a RECV, are in
//! `two_sided.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use usec_regions::copy::{ordered_copy, ordered_write};
use usec_regions::Region;

use crate::access::{AccessFlags, RemoteOpKind};
use crate::completion::Status;
use crate::emulation::checks::{self, MrInfo};
use crate::qp::QpState;
use crate::soft::completion_queue::ring_doorbell;
use crate::soft::fence::{Intent, Marker};
use crate::soft::layout::{generation_matches, split_key, AsyncFlag, ControlBlock, QpSlot, SlotWord};
use crate::soft::layout::{ACCESS_BITS, KEY_GENERATION_BITS, MAX_MR, QPN_GENERATION_BITS};
use crate::soft::node::{Node, MAX_SGE};
use crate::soft::peer::{MappedObject, Peer};
use crate::soft::receive_queue::ReceiveQueue;
use crate::soft::two_sided::PendingRecv;
use crate::work_request::{Payload, SendOp, SendWr};

/// Times a request starts over because its responder QP changed under it, or is redone
/// because its responder revoked it, before it gives up.
pub(crate) const ATTEMPTS: usize = 8;

/// The connection of a QP to its peer QP.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    pub peer: Arc<Peer>,
    pub target_slot: usize,
    pub target_qpn: u32,
}

impl Link {
    pub(crate) fn target(&self) -> &QpSlot {
        &self.peer.block().qps[self.target_slot]
    }
}

/// How an execution ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done, with this status and completion byte length.
    Complete { status: Status, byte_len: u32 },
    /// The responder had no RECV posted: retry after its RNR timer.
    ReceiverNotReady,
    /// The responder QP does not (yet, or any more) serve us: retry until the timeout.
    TargetNotReady,
    /// The responder is moving the memory to a fresh file (see `fence.rs`): retry shortly.
    /// A live responder finishes a move in about the time it takes to copy the region, so
    /// no transport timeout runs for it.
    Moving,
}

impl Outcome {
    pub(crate) fn fail(status: Status) -> Outcome {
        Outcome::Complete { status, byte_len: 0 }
    }

    fn succeeded(self) -> bool {
        matches!(self, Outcome::Complete { status: Status::Success, .. })
    }
}

/// Where one attempt under a raised marker got.
pub(crate) enum Step {
    /// Finished, one way or the other.
    Done(Outcome),
    /// A two-sided request placed its data; its RECV completes once the marker is down.
    Placed(PendingRecv),
}

/// Why the responder memory an operation names cannot be used now.
pub(crate) enum Refusal {
    /// The responder refuses the access, with this status.
    Refused(Status),
    /// The memory is moving to a fresh file: try again shortly.
    Moving,
}

/// What a requester found of its responder QP (steps R2 and R4 of the fence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checked {
    pub word: u64,
    pub rq_generation: u32,
}

impl Checked {
    pub(crate) fn unpacked(self) -> SlotWord {
        SlotWord::unpack(self.word)
    }
}

/// Mappings of the peer's objects, private to one requester so the hot path takes no lock.
#[derive(Debug, Default)]
pub(crate) struct MapCache {
    mrs: Vec<Option<(u32, u64, Arc<Region>)>>,
    receive_queue: Option<(u32, ReceiveQueue)>,
}

impl MapCache {
    /// The mapping of the peer's MR `slot` at `generation`, of its file of `epoch`.
    /// Borrowed, not cloned: an Arc clone per operation costs two locked instructions on
    /// the hot path.
    pub(crate) fn mr(&mut self, peer: &Peer, slot: usize, generation: u32, epoch: u64) -> Option<&Region> {
        if self.mrs.len() <= slot {
            self.mrs.resize(slot + 1, None);
        }
        let fresh = !matches!(&self.mrs[slot], Some((known, at, _)) if *known == generation && *at == epoch);
        if fresh {
            let region = peer.map(MappedObject::Mr(slot), generation, epoch)?;
            self.mrs[slot] = Some((generation, epoch, region));
        }
        self.mrs[slot].as_ref().map(|(_, _, region)| region.as_ref())
    }

    pub(crate) fn receive_queue(&mut self, link: &Link, rq_generation: u32) -> Option<&ReceiveQueue> {
        let fresh = !matches!(&self.receive_queue, Some((cached, _)) if *cached == rq_generation);
        if fresh {
            let owner = &link.target().owner;
            let region = link.peer.map(MappedObject::ReceiveQueue(link.target_slot), rq_generation, 0)?;
            let capacity = u64::from(owner.rq_capacity.load(Ordering::Acquire));
            let stride = owner.rq_stride.load(Ordering::Acquire) as usize;
            // A ring whose header does not fit its mapping cannot be trusted with a message:
            // treated as one with no RECV posted, so the request fails by its RNR budget.
            self.receive_queue = Some((rq_generation, ReceiveQueue::mapped(region, capacity, stride).ok()?));
        }
        self.receive_queue.as_ref().map(|(_, queue)| queue)
    }
}

/// An MR as a node's control block describes it, if `key` names a live registration.
pub(crate) struct MrView {
    pub info: MrInfo,
    pub slot: usize,
    pub generation: u32,
    pub file_offset: u64,
    pub epoch: u64,
}

/// Reads the MR `key` names: its epoch first, then its word (the order step R3 needs).
pub(crate) fn mr_info(block: &ControlBlock, key: u32) -> Option<MrView> {
    let (slot, carried) = split_key(key);
    if slot >= MAX_MR {
        return None;
    }
    let mr = &block.mrs[slot];
    let epoch = mr.epoch.load(Ordering::SeqCst);
    let word = SlotWord::load(&mr.word, Ordering::SeqCst);
    if !word.valid || !generation_matches(word.generation, carried, KEY_GENERATION_BITS) {
        return None;
    }
    let info = MrInfo {
        pd: mr.pd.load(Ordering::Relaxed),
        addr: mr.addr.load(Ordering::Relaxed),
        len: mr.len.load(Ordering::Relaxed),
        access: word.access,
    };
    Some(MrView {
        info,
        slot,
        generation: word.generation,
        file_offset: mr.file_offset.load(Ordering::Relaxed),
        epoch,
    })
}

/// A contiguous piece of memory, local or mapped from the peer.
#[derive(Clone, Copy)]
pub(crate) struct Piece {
    pub ptr: *mut u8,
    pub len: usize,
    /// Registered memory, which other agents may write while we read it (so it is read
    /// atomically), rather than an inline payload borrowed for the post.
    pub shared: bool,
}

impl Piece {
    pub(crate) const EMPTY: Piece = Piece { ptr: std::ptr::null_mut(), len: 0, shared: true };

    /// Copies the piece's first `len` bytes to `dst` as a WRITE lands.
    ///
    /// # Safety
    /// `len <= self.len`, the piece is live, and `dst` is valid for writes of `len` bytes
    /// apart from the piece.
    pub(crate) unsafe fn copy_to(&self, dst: *mut u8, len: usize) {
        if self.shared {
            // SAFETY: forwarded contract; registered memory may be written, as `ordered_copy` needs.
            unsafe { ordered_copy(dst, self.ptr, len) };
        } else {
            // SAFETY: forwarded contract; an inline payload is a live `&[u8]` of at least `len` bytes.
            unsafe { ordered_write(dst, std::slice::from_raw_parts(self.ptr, len)) };
        }
    }
}

/// One requester QP executing work requests.
pub(crate) struct Requester<'a> {
    pub node: &'a Node,
    pub slot: usize,
    pub qp_num: u32,
    pub pd: u32,
    pub link: &'a Link,
    pub cache: &'a mut MapCache,
}

impl Requester<'_> {
    /// Executes `wr` against the peer. The caller turns the outcome into a completion.
    pub(crate) fn execute(&mut self, wr: &SendWr<'_>) -> Outcome {
        if let Err(status) = checks::check_request_shape(wr) {
            return Outcome::fail(status);
        }
        let marker = Marker::new(&self.node.block().qps[self.slot].outbound.in_flight);
        let intent = Intent::of(&wr.op);
        let mut raised = marker.raise(intent);
        let mut step = self.execute_marked(wr);
        for attempt in 1.. {
            let kept = marker.lower(raised);
            let last = attempt == ATTEMPTS;
            step = match step {
                Step::Done(outcome) if kept || !outcome.succeeded() => return outcome,
                // Revoked: its bytes may have gone to a file the responder left behind.
                Step::Done(_)
                    if last || matches!(wr.op, SendOp::CompareSwap { .. } | SendOp::FetchAdd { .. }) =>
                {
                    // An atomic's effect may or may not have been copied: it cannot run again.
                    return Outcome::fail(Status::RemoteOperationError);
                }
                Step::Done(_) => {
                    raised = marker.raise(intent);
                    self.execute_marked(wr)
                }
                Step::Placed(pending) if kept => return self.complete_recv(&pending),
                Step::Placed(pending) if last => return self.give_up_recv(&pending),
                Step::Placed(pending) => {
                    raised = marker.raise(intent);
                    self.place_again(wr, pending)
                }
            };
        }
        unreachable!("the loop returns by its last attempt")
    }

    fn execute_marked(&mut self, wr: &SendWr<'_>) -> Step {
        let mut pieces = [Piece::EMPTY; MAX_SGE as usize];
        let writes_locally =
            matches!(wr.op, SendOp::Read { .. } | SendOp::CompareSwap { .. } | SendOp::FetchAdd { .. });
        let count = match self.local_pieces(&wr.payload, writes_locally, &mut pieces) {
            Ok(count) => count,
            Err(status) => return Step::Done(Outcome::fail(status)),
        };
        let local = &pieces[..count];
        for _ in 0..ATTEMPTS {
            let checked = match self.check_target() {
                Ok(checked) => checked,
                Err(outcome) => return Step::Done(outcome),
            };
            let step = match wr.op {
                SendOp::Send | SendOp::SendWithImm { .. } => self.send(checked, local, wr),
                SendOp::WriteWithImm { .. } => self.write_with_imm(checked, local, wr),
                _ => self.one_sided(checked, local, wr).map(Step::Done),
            };
            if let Some(step) = step {
                return step;
            }
            // The responder QP changed between the check and the copy: check again.
        }
        Step::Done(Outcome::TargetNotReady)
    }

    /// Step R2: the responder QP serves us.
    pub(crate) fn check_target(&self) -> Result<Checked, Outcome> {
        if self.link.peer.is_gone() {
            return Err(Outcome::fail(Status::RetryExceeded));
        }
        let owner = &self.link.target().owner;
        let checked = Checked {
            word: owner.word.load(Ordering::SeqCst),
            rq_generation: owner.rq_generation.load(Ordering::SeqCst),
        };
        let word = checked.unpacked();
        let ours = owner.peer_qpn.load(Ordering::Acquire) == self.qp_num
            && owner.peer_nonce.load(Ordering::Acquire) == self.node.identity.nonce;
        let (_, carried) = split_key(self.link.target_qpn);
        if !word.valid
            || !generation_matches(word.generation, carried, QPN_GENERATION_BITS)
            || !word.state.serves_peer()
            || !ours
        {
            return Err(Outcome::TargetNotReady);
        }
        Ok(checked)
    }

    /// Step R4: whether the responder QP is still as checked (SENDs ignore its access
    /// flags). The receive queue generation changes at every reset, so a QP reset and
    /// reconnected meanwhile does not pass.
    pub(crate) fn still(&self, checked: Checked, ignore_access: bool) -> bool {
        let owner = &self.link.target().owner;
        let word = owner.word.load(Ordering::SeqCst);
        let rq_generation = owner.rq_generation.load(Ordering::SeqCst);
        let mask = if ignore_access { !ACCESS_BITS } else { u64::MAX };
        word & mask == checked.word & mask && rq_generation == checked.rq_generation
    }

    pub(crate) fn target_pd(&self) -> u32 {
        self.link.target().owner.pd.load(Ordering::Relaxed)
    }

    /// Validates the local SGEs (or takes the inline bytes) as pointers into our memory.
    pub(crate) fn local_pieces(
        &self,
        payload: &Payload<'_>,
        needs_write: bool,
        out: &mut [Piece],
    ) -> Result<usize, Status> {
        match payload {
            Payload::Inline(bytes) => {
                out[0] = Piece { ptr: bytes.as_ptr() as *mut u8, len: bytes.len(), shared: false };
                Ok(1)
            }
            Payload::Sges(sges) => {
                let block = self.node.block();
                for (piece, sge) in out.iter_mut().zip(sges.iter()) {
                    let view = mr_info(block, sge.lkey);
                    checks::check_local(view.as_ref().map(|view| &view.info), self.pd, sge, needs_write)?;
                    *piece = Piece { ptr: sge.addr as *mut u8, len: sge.len as usize, shared: true };
                }
                Ok(sges.len())
            }
        }
    }

    /// Step R3 for one remote range: resolves `len` bytes at `addr` under `rkey` in the
    /// peer's memory, as the responder would check them with `rights`.
    pub(crate) fn remote_ptr(
        &mut self,
        rights: AccessFlags,
        kind: RemoteOpKind,
        addr: u64,
        rkey: u32,
        len: u64,
    ) -> Result<Option<*mut u8>, Refusal> {
        let target_pd = self.target_pd();
        let found = mr_info(self.link.peer.block(), rkey);
        let offset =
            checks::check_remote(found.as_ref().map(|view| &view.info), target_pd, rights, kind, addr, len)
                .map_err(Refusal::Refused)?;
        if len == 0 && kind != RemoteOpKind::Atomic {
            return Ok(None);
        }
        let view = found.expect("check_remote accepted a non-empty access");
        let at = (view.file_offset + offset) as usize;
        self.pointer(&view, at, len as usize, Status::RemoteAccessError).map(Some)
    }

    /// The mapping half of step R3: a pointer to `len` bytes at `at` in the file of
    /// `view`'s epoch. `Moving` while the memory moves; `missing` if it cannot be mapped.
    pub(crate) fn pointer(
        &mut self,
        view: &MrView,
        at: usize,
        len: usize,
        missing: Status,
    ) -> Result<*mut u8, Refusal> {
        if view.epoch & 1 == 1 {
            return Err(Refusal::Moving);
        }
        let Some(mapping) = self.cache.mr(&self.link.peer, view.slot, view.generation, view.epoch) else {
            let now = self.link.peer.block().mrs[view.slot].epoch.load(Ordering::SeqCst);
            return Err(if now != view.epoch { Refusal::Moving } else { Refusal::Refused(missing) });
        };
        if at.checked_add(len).is_none_or(|end| end > mapping.len()) {
            return Err(Refusal::Refused(missing));
        }
        // The mapping stays in the cache, alive, until the cache is next asked for this
        // slot, which no caller does while it uses the pointer.
        // SAFETY: `at + len` lies inside the mapping (checked just above).
        Ok(unsafe { mapping.as_ptr().add(at) })
    }

    /// READ, WRITE and the atomics. `None`: the responder QP changed after the check.
    fn one_sided(&mut self, checked: Checked, local: &[Piece], wr: &SendWr<'_>) -> Option<Outcome> {
        let total: usize = local.iter().map(|piece| piece.len).sum();
        let (kind, remote) = match wr.op {
            SendOp::Write { remote } => (RemoteOpKind::Write, remote),
            SendOp::Read { remote } => (RemoteOpKind::Read, remote),
            SendOp::CompareSwap { remote, .. } | SendOp::FetchAdd { remote, .. } => {
                (RemoteOpKind::Atomic, remote)
            }
            _ => unreachable!("two-sided operations are handled elsewhere"),
        };
        let len = if kind == RemoteOpKind::Atomic { 8 } else { total as u64 };
        let rights = checked.unpacked().access;
        let target = match self.remote_ptr(rights, kind, remote.addr, remote.rkey, len) {
            Ok(target) => target,
            Err(Refusal::Refused(status)) => return Some(self.responder_rejects(checked, status)),
            Err(Refusal::Moving) => return Some(Outcome::Moving),
        };
        if !self.still(checked, false) {
            return None;
        }
        let Some(target) = target else {
            return Some(Outcome::Complete { status: Status::Success, byte_len: 0 });
        };
        Some(match wr.op {
            SendOp::Write { .. } => {
                gather_into(target, local);
                Outcome::Complete { status: Status::Success, byte_len: 0 }
            }
            SendOp::Read { .. } => {
                scatter_from(target, local);
                Outcome::Complete { status: Status::Success, byte_len: total as u32 }
            }
            SendOp::CompareSwap { compare, swap, .. } => {
                // check_remote refused misaligned atomics, and mappings are page aligned.
                // SAFETY: `target` is 8-byte aligned and 8 bytes of the mapping are in bounds.
                let word = unsafe { &*(target as *const AtomicU64) };
                let old = match word.compare_exchange(compare, swap, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(old) | Err(old) => old,
                };
                deliver_atomic_result(old, local);
                Outcome::Complete { status: Status::Success, byte_len: 8 }
            }
            SendOp::FetchAdd { add, .. } => {
                // SAFETY: as for compare-and-swap.
                let word = unsafe { &*(target as *const AtomicU64) };
                let old = word.fetch_add(add, Ordering::SeqCst);
                deliver_atomic_result(old, local);
                Outcome::Complete { status: Status::Success, byte_len: 8 }
            }
            _ => unreachable!(),
        })
    }

    /// A responder that rejects a request moves its own QP to ERROR too and raises an
    /// async event there (IBV_EVENT_QP_ACCESS_ERR or _REQ_ERR); the requester gets `status`.
    pub(crate) fn responder_rejects(&self, checked: Checked, status: Status) -> Outcome {
        let event = match status {
            Status::RemoteAccessError => AsyncFlag::AccessError,
            _ => AsyncFlag::RequestError,
        };
        self.fail_target(checked, event);
        Outcome::fail(status)
    }

    /// Moves the responder QP to ERROR, if it is still as checked (a QP that changed
    /// meanwhile — reset and reconnected, say — is not ours to fail), flags the async event
    /// its owner will report, and rings its doorbell so its poller flushes the posted RECVs.
    pub(crate) fn fail_target(&self, checked: Checked, event: AsyncFlag) {
        let owner = &self.link.target().owner;
        let mut failed = checked.unpacked();
        failed.state = QpState::Error;
        if owner
            .word
            .compare_exchange(checked.word, failed.pack(), Ordering::SeqCst, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        owner.async_flags.fetch_or(event as u32, Ordering::AcqRel);
        let recv_cq = owner.recv_cq.load(Ordering::Acquire) as usize;
        if let Some(cq) = self.link.peer.block().cqs.get(recv_cq) {
            ring_doorbell(&cq.doorbell);
        }
    }
}

pub(crate) fn gather_into(mut dst: *mut u8, local: &[Piece]) {
    for piece in local {
        // The remote range was bounds-checked for exactly the pieces' total length.
        // SAFETY: `dst` has room for every piece, and the pieces are validated local memory.
        unsafe {
            piece.copy_to(dst, piece.len);
            dst = dst.add(piece.len);
        }
    }
}

fn scatter_from(mut src: *mut u8, local: &[Piece]) {
    for piece in local {
        // SAFETY: as in `gather_into`, in the other direction.
        unsafe {
            ordered_copy(piece.ptr, src, piece.len);
            src = src.add(piece.len);
        }
    }
}

fn deliver_atomic_result(old: u64, local: &[Piece]) {
    let bytes = old.to_ne_bytes();
    // check_request_shape guaranteed exactly one 8-byte local piece.
    // SAFETY: the piece is 8 bytes of validated, locally writable memory.
    unsafe { ordered_write(local[0].ptr, &bytes) };
}
