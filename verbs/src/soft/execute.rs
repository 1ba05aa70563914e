//! Executing one send work request: in the requester's thread, straight into the
//! responder's mapped memory, with the checks a responder NIC makes.
//!
//! The permission fence: before it looks at anything that rights or registrations govern,
//! the requester raises its in-flight marker (an odd value, stored with SeqCst in its own QP
//! slot), and lowers it (even) when the operation's bytes have landed. A responder that
//! changes rights, or retires its QP (destroy, reset, ERROR: a QP that serves its peer no
//! more), stores the new word with SeqCst and then waits until the marker of its peer is
//! not the odd value it saw. Either the requester's marker store comes first —
//! then the responder waits for the operation — or the responder's word store does — then
//! the requester reads the new rights. This is Dekker's handshake, so no operation checked
//! against old rights can land after the change returns. Local memory is fenced the same
//! way: deregistering an MR waits for every local requester's marker. Deregistration
//! fences the peers of live QPs only; it need not reach those of destroyed or reset QPs
//! because their retirement fenced them already.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use usec_regions::copy::{ordered_copy, ordered_write};
use usec_regions::Region;

use crate::access::RemoteOpKind;
use crate::completion::{CompletionOpcode, Status};
use crate::emulation::checks::{self, MrInfo};
use crate::qp::QpState;
use crate::soft::completion_queue::ring_doorbell;
use crate::soft::layout::{generation_matches, split_key, AsyncFlag, ControlBlock, QpSlot, SlotWord};
use crate::soft::layout::{KEY_GENERATION_BITS, MAX_MR, QPN_GENERATION_BITS};
use crate::soft::node::{Node, MAX_SGE};
use crate::soft::peer::{MappedObject, Peer};
use crate::soft::receive_queue::ReceiveQueue;
use crate::work_request::{Payload, SendOp, SendWr, Sge};

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
}

impl Outcome {
    fn fail(status: Status) -> Outcome {
        Outcome::Complete { status, byte_len: 0 }
    }
}

/// Mappings of the peer's objects, private to one requester so the hot path takes no lock.
#[derive(Debug, Default)]
pub(crate) struct MapCache {
    mrs: Vec<Option<(u32, Arc<Region>)>>,
    receive_queue: Option<(u32, ReceiveQueue)>,
}

impl MapCache {
    /// The mapping of the peer's MR `slot` at `generation`. Borrowed, not cloned: an Arc
    /// clone per operation costs two locked instructions on the hot path.
    fn mr(&mut self, peer: &Peer, slot: usize, generation: u32) -> Option<&Region> {
        if self.mrs.len() <= slot {
            self.mrs.resize(slot + 1, None);
        }
        let fresh = !matches!(&self.mrs[slot], Some((cached, _)) if *cached == generation);
        if fresh {
            self.mrs[slot] = Some((generation, peer.map(MappedObject::Mr(slot), generation)?));
        }
        self.mrs[slot].as_ref().map(|(_, region)| region.as_ref())
    }

    fn receive_queue(&mut self, link: &Link, rq_generation: u32) -> Option<&ReceiveQueue> {
        let fresh = !matches!(&self.receive_queue, Some((cached, _)) if *cached == rq_generation);
        if fresh {
            let owner = &link.target().owner;
            let region = link.peer.map(MappedObject::ReceiveQueue(link.target_slot), rq_generation)?;
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
fn mr_info(block: &ControlBlock, key: u32) -> Option<(MrInfo, usize, u32, u64)> {
    let (slot, carried) = split_key(key);
    if slot >= MAX_MR {
        return None;
    }
    let mr = &block.mrs[slot];
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
    Some((info, slot, word.generation, mr.file_offset.load(Ordering::Relaxed)))
}

/// A contiguous piece of local memory.
#[derive(Clone, Copy)]
struct Piece {
    ptr: *mut u8,
    len: usize,
    /// Registered memory, which other agents may write while we read it (so it is read
    /// atomically), rather than an inline payload borrowed for the post.
    shared: bool,
}

impl Piece {
    /// Copies the piece's first `len` bytes to `dst` as a WRITE lands.
    ///
    /// # Safety
    /// `len <= self.len`, the piece is live, and `dst` is valid for writes of `len` bytes
    /// apart from the piece.
    unsafe fn copy_to(&self, dst: *mut u8, len: usize) {
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
        let marker = &self.node.block().qps[self.slot].outbound.in_flight;
        let raised = marker.load(Ordering::Relaxed) | 1;
        marker.store(raised, Ordering::SeqCst);
        let outcome = self.execute_marked(wr);
        marker.store(raised + 1, Ordering::Release);
        outcome
    }

    fn execute_marked(&mut self, wr: &SendWr<'_>) -> Outcome {
        let needs_write =
            matches!(wr.op, SendOp::Read { .. } | SendOp::CompareSwap { .. } | SendOp::FetchAdd { .. });
        let mut pieces = [Piece { ptr: std::ptr::null_mut(), len: 0, shared: true }; MAX_SGE as usize];
        let count = match self.local_pieces(&wr.payload, needs_write, &mut pieces) {
            Ok(count) => count,
            Err(status) => return Outcome::fail(status),
        };
        let local = &pieces[..count];
        if self.link.peer.is_gone() {
            return Outcome::fail(Status::RetryExceeded);
        }
        let target = self.link.target();
        let word = SlotWord::load(&target.owner.word, Ordering::SeqCst);
        let ours = target.owner.peer_qpn.load(Ordering::Acquire) == self.qp_num
            && target.owner.peer_nonce.load(Ordering::Acquire) == self.node.identity.nonce;
        let (_, carried) = split_key(self.link.target_qpn);
        if !word.valid
            || !generation_matches(word.generation, carried, QPN_GENERATION_BITS)
            || !word.state.serves_peer()
            || !ours
        {
            return Outcome::TargetNotReady;
        }
        let target_pd = target.owner.pd.load(Ordering::Relaxed);
        match wr.op {
            SendOp::Send | SendOp::SendWithImm { .. } => self.send(target_pd, local, wr),
            SendOp::WriteWithImm { .. } => self.write_with_imm(target_pd, word.access, local, wr),
            _ => self.one_sided(target_pd, word.access, local, wr),
        }
    }

    /// Validates the local SGEs (or takes the inline bytes) as pointers into our memory.
    fn local_pieces(
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
                    let info = mr_info(block, sge.lkey).map(|(info, ..)| info);
                    checks::check_local(info.as_ref(), self.pd, sge, needs_write)?;
                    *piece = Piece { ptr: sge.addr as *mut u8, len: sge.len as usize, shared: true };
                }
                Ok(sges.len())
            }
        }
    }

    /// Resolves `len` bytes at `addr` under `rkey` in the peer's memory.
    fn remote_ptr(
        &mut self,
        target_pd: u32,
        rights: crate::access::AccessFlags,
        kind: RemoteOpKind,
        addr: u64,
        rkey: u32,
        len: u64,
    ) -> Result<Option<*mut u8>, Status> {
        let found = mr_info(self.link.peer.block(), rkey);
        let offset =
            checks::check_remote(found.as_ref().map(|(info, ..)| info), target_pd, rights, kind, addr, len)?;
        if len == 0 && kind != RemoteOpKind::Atomic {
            return Ok(None);
        }
        let (_, slot, generation, file_offset) = found.expect("check_remote accepted a non-empty access");
        let mapping = self.cache.mr(&self.link.peer, slot, generation).ok_or(Status::RemoteAccessError)?;
        let at = (file_offset + offset) as usize;
        if at.checked_add(len as usize).is_none_or(|end| end > mapping.len()) {
            return Err(Status::RemoteAccessError);
        }
        // The mapping stays in the cache, alive, until the cache is next asked for this slot, which no
        // caller does while it uses the pointer.
        // SAFETY: `at + len` lies inside the mapping (checked just above).
        Ok(Some(unsafe { mapping.as_ptr().add(at) }))
    }

    fn one_sided(
        &mut self,
        target_pd: u32,
        rights: crate::access::AccessFlags,
        local: &[Piece],
        wr: &SendWr<'_>,
    ) -> Outcome {
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
        let target = match self.remote_ptr(target_pd, rights, kind, remote.addr, remote.rkey, len) {
            Ok(Some(ptr)) => ptr,
            Ok(None) => return Outcome::Complete { status: Status::Success, byte_len: 0 },
            Err(status) => return self.responder_rejects(status),
        };
        // The mapping stays alive in the cache for the rest of this call.
        match wr.op {
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
        }
    }

    fn write_with_imm(
        &mut self,
        target_pd: u32,
        rights: crate::access::AccessFlags,
        local: &[Piece],
        wr: &SendWr<'_>,
    ) -> Outcome {
        let SendOp::WriteWithImm { remote, imm } = wr.op else { unreachable!() };
        let total: usize = local.iter().map(|piece| piece.len).sum();
        let kind = RemoteOpKind::Write;
        let target = match self.remote_ptr(target_pd, rights, kind, remote.addr, remote.rkey, total as u64) {
            Ok(target) => target,
            Err(status) => return self.responder_rejects(status),
        };
        let Some((queue, position)) = self.take_recv() else { return Outcome::ReceiverNotReady };
        if let Some(ptr) = target {
            gather_into(ptr, local);
        }
        self.finish_recv(
            &queue,
            position,
            Status::Success,
            CompletionOpcode::RecvWithImm,
            total as u32,
            Some(imm),
        );
        Outcome::Complete { status: Status::Success, byte_len: 0 }
    }

    /// A responder that rejects a request moves its own QP to ERROR too and raises an
    /// async event there (IBV_EVENT_QP_ACCESS_ERR or _REQ_ERR); the requester gets `status`.
    fn responder_rejects(&self, status: Status) -> Outcome {
        let event = match status {
            Status::RemoteAccessError => AsyncFlag::AccessError,
            _ => AsyncFlag::RequestError,
        };
        self.fail_target(event);
        Outcome::fail(status)
    }

    fn send(&mut self, target_pd: u32, local: &[Piece], wr: &SendWr<'_>) -> Outcome {
        let total: u64 = local.iter().map(|piece| piece.len as u64).sum();
        let Some((queue, position)) = self.take_recv() else { return Outcome::ReceiverNotReady };
        let mut sges = [Sge::default(); MAX_SGE as usize];
        let count = queue.read_sges(position, &mut sges);
        let sges = &sges[..count];
        if checks::scatter_plan(sges, total).is_err() {
            // The RECV is too small: the responder's RECV fails, its QP goes to error, and
            // the requester is told its request was invalid.
            self.finish_recv(&queue, position, Status::LocalLengthError, CompletionOpcode::Recv, 0, None);
            self.fail_target(AsyncFlag::RequestError);
            return Outcome::fail(Status::RemoteInvalidRequest);
        }
        if let Err(status) = self.scatter_into_recv(target_pd, sges, local) {
            self.finish_recv(&queue, position, status, CompletionOpcode::Recv, 0, None);
            self.fail_target(AsyncFlag::RequestError);
            return Outcome::fail(Status::RemoteOperationError);
        }
        self.finish_recv(
            &queue,
            position,
            Status::Success,
            CompletionOpcode::Recv,
            total as u32,
            wr.op.imm(),
        );
        Outcome::Complete { status: Status::Success, byte_len: 0 }
    }

    /// Copies the gathered local pieces into the RECV's buffers, resolving each buffer as
    /// the responder does: lkey, bounds, and local write right in the responder's PD.
    fn scatter_into_recv(&mut self, target_pd: u32, sges: &[Sge], local: &[Piece]) -> Result<(), Status> {
        let mut source = local.iter().copied().filter(|piece| piece.len > 0);
        let mut current = source.next();
        for sge in sges {
            if current.is_none() {
                break;
            }
            let found = mr_info(self.link.peer.block(), sge.lkey);
            let offset = checks::check_local(found.as_ref().map(|(info, ..)| info), target_pd, sge, true)?;
            if sge.len == 0 {
                continue;
            }
            let (_, slot, generation, file_offset) = found.expect("check_local accepted a non-empty SGE");
            let mapping =
                self.cache.mr(&self.link.peer, slot, generation).ok_or(Status::LocalProtectionError)?;
            let at = (file_offset + offset) as usize;
            if at + sge.len as usize > mapping.len() {
                return Err(Status::LocalProtectionError);
            }
            let mut room = sge.len as usize;
            // SAFETY: `at + sge.len` lies inside the mapping (checked above).
            let mut dst = unsafe { mapping.as_ptr().add(at) };
            while room > 0 {
                let Some(piece) = current.as_mut() else { break };
                let take = room.min(piece.len);
                // The source piece is validated local memory or the caller's inline slice.
                // SAFETY: `take` bytes fit both the source piece and the destination buffer, distinct memory.
                unsafe {
                    piece.copy_to(dst, take);
                    dst = dst.add(take);
                    piece.ptr = piece.ptr.add(take);
                }
                piece.len -= take;
                room -= take;
                if piece.len == 0 {
                    current = source.next();
                }
            }
        }
        Ok(())
    }

    /// Claims the responder's next posted RECV, if any.
    fn take_recv(&mut self) -> Option<(ReceiveQueue, u64)> {
        let owner = &self.link.target().owner;
        let rq_generation = owner.rq_generation.load(Ordering::Acquire);
        let queue = self.cache.receive_queue(self.link, rq_generation)?.clone();
        let position = queue.take_next(&self.link.target().inbound.recv_taken)?;
        Some((queue, position))
    }

    fn finish_recv(
        &self,
        queue: &ReceiveQueue,
        position: u64,
        status: Status,
        opcode: CompletionOpcode,
        byte_len: u32,
        imm: Option<u32>,
    ) {
        if queue.complete(position, status, opcode, byte_len, imm) {
            let recv_cq = self.link.target().owner.recv_cq.load(Ordering::Acquire) as usize;
            if let Some(cq) = self.link.peer.block().cqs.get(recv_cq) {
                ring_doorbell(&cq.doorbell);
            }
        }
    }

    /// Moves the responder QP to ERROR, flags the async event its owner will report, and
    /// rings its doorbell so its poller flushes the posted RECVs.
    fn fail_target(&self, event: AsyncFlag) {
        self.link.target().owner.async_flags.fetch_or(event as u32, Ordering::AcqRel);
        let word = &self.link.target().owner.word;
        let mut current = word.load(Ordering::Acquire);
        loop {
            let mut unpacked = SlotWord::unpack(current);
            if !unpacked.valid || unpacked.state == QpState::Error {
                break;
            }
            unpacked.state = QpState::Error;
            match word.compare_exchange(current, unpacked.pack(), Ordering::SeqCst, Ordering::Acquire) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        let recv_cq = self.link.target().owner.recv_cq.load(Ordering::Acquire) as usize;
        if let Some(cq) = self.link.peer.block().cqs.get(recv_cq) {
            cq.doorbell.fetch_add(1, Ordering::Release);
        }
    }
}

fn gather_into(mut dst: *mut u8, local: &[Piece]) {
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
