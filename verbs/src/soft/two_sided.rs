//! SEND and WRITE_WITH_IMM: requests that consume one of the responder's RECVs.
//!
//! The requester claims the RECV, places the data (into the RECV's buffers, or at the
//! WRITE_WITH_IMM's remote address), lowers its marker, and only then completes the RECV
//! (`fence.rs`, step R6): a RECV never reports data that a revocation left behind in an old
//! file. A revoked placement is redone while the RECV stays claimed; a placement that
//! cannot be made gives the RECV back as failed, as a responder NIC whose placement fails
//! does (the responder QP goes to ERROR too).

use std::time::{Duration, Instant};

use crate::access::RemoteOpKind;
use crate::completion::{CompletionOpcode, Status};
use crate::emulation::checks;
use crate::soft::completion_queue::ring_doorbell;
use crate::soft::execute::{
    gather_into, mr_info, Checked, Outcome, Piece, Refusal, Requester, Step, ATTEMPTS,
};
use crate::soft::layout::AsyncFlag;
use crate::soft::node::MAX_SGE;
use crate::soft::receive_queue::ReceiveQueue;
use crate::work_request::{SendOp, SendWr, Sge};

/// How long a placement waits for memory that is moving (a live responder moves a region
/// in about the time it takes to copy it) before it gives up.
const MOVE_PATIENCE: Duration = Duration::from_millis(50);

/// A claimed RECV whose data is placed, or is to be placed again.
pub(crate) struct PendingRecv {
    queue: ReceiveQueue,
    position: u64,
    opcode: CompletionOpcode,
    byte_len: u32,
    imm: Option<u32>,
}

/// Why a claimed RECV is given back as failed.
enum Abandon {
    /// The responder QP no longer serves us (retired while we were placing).
    NotServing,
    /// A buffer of the RECV failed the responder's local checks.
    RecvFailed(Checked, Status),
    /// The WRITE_WITH_IMM's target is refused under the responder's current rights.
    Refused(Checked, Status),
    /// Placement kept being revoked, or the memory kept moving, or our own memory went.
    GaveUp(Checked, Status),
}

impl Requester<'_> {
    /// SEND: claims the next RECV and places the message into its buffers. `None` if the
    /// responder QP changed before anything was claimed.
    pub(crate) fn send(&mut self, checked: Checked, local: &[Piece], wr: &SendWr<'_>) -> Option<Step> {
        let total: u64 = local.iter().map(|piece| piece.len as u64).sum();
        let Some((queue, position)) = self.take_recv(checked) else {
            return Some(Step::Done(Outcome::ReceiverNotReady));
        };
        let mut sges = [Sge::default(); MAX_SGE as usize];
        let sge_count = queue.read_sges(position, &mut sges);
        let pending = PendingRecv {
            queue,
            position,
            opcode: CompletionOpcode::Recv,
            byte_len: total as u32,
            imm: wr.op.imm(),
        };
        if checks::scatter_plan(&sges[..sge_count], total).is_err() {
            // The RECV is too small: the responder's RECV fails, its QP goes to error, and
            // the requester is told its request was invalid.
            self.finish_recv(&pending, Status::LocalLengthError);
            self.fail_target(checked, AsyncFlag::RequestError);
            return Some(Step::Done(Outcome::fail(Status::RemoteInvalidRequest)));
        }
        Some(self.place_and_hold(wr, local, pending))
    }

    /// WRITE_WITH_IMM: checks the target (before looking for a RECV, as a NIC does), claims
    /// the next RECV, and writes the data. `None` if the responder QP changed first.
    pub(crate) fn write_with_imm(
        &mut self,
        checked: Checked,
        local: &[Piece],
        wr: &SendWr<'_>,
    ) -> Option<Step> {
        let SendOp::WriteWithImm { remote, imm } = wr.op else { unreachable!() };
        let total: usize = local.iter().map(|piece| piece.len).sum();
        let rights = checked.unpacked().access;
        match self.remote_ptr(rights, RemoteOpKind::Write, remote.addr, remote.rkey, total as u64) {
            Ok(_) => {}
            Err(Refusal::Refused(status)) => {
                return Some(Step::Done(self.responder_rejects(checked, status)))
            }
            Err(Refusal::Moving) => return Some(Step::Done(Outcome::Moving)),
        }
        if !self.still(checked, false) {
            return None;
        }
        let Some((queue, position)) = self.take_recv(checked) else {
            return Some(Step::Done(Outcome::ReceiverNotReady));
        };
        let pending = PendingRecv {
            queue,
            position,
            opcode: CompletionOpcode::RecvWithImm,
            byte_len: total as u32,
            imm: Some(imm),
        };
        Some(self.place_and_hold(wr, local, pending))
    }

    /// After a revocation (the marker is raised again): places the data of `pending` anew.
    pub(crate) fn place_again(&mut self, wr: &SendWr<'_>, pending: PendingRecv) -> Step {
        let mut pieces = [Piece::EMPTY; MAX_SGE as usize];
        match self.local_pieces(&wr.payload, false, &mut pieces) {
            Ok(count) => self.place_and_hold(wr, &pieces[..count], pending),
            Err(status) => {
                let abandon = match self.check_target() {
                    Ok(checked) => Abandon::GaveUp(checked, status),
                    Err(_) => Abandon::NotServing,
                };
                Step::Done(self.abandon(&pending, abandon, status))
            }
        }
    }

    /// The marker is down and the data placed: the RECV completes.
    pub(crate) fn complete_recv(&self, pending: &PendingRecv) -> Outcome {
        self.finish_recv(pending, Status::Success);
        Outcome::Complete { status: Status::Success, byte_len: 0 }
    }

    /// Revoked on every attempt: the RECV fails.
    pub(crate) fn give_up_recv(&self, pending: &PendingRecv) -> Outcome {
        let abandon = match self.check_target() {
            Ok(checked) => Abandon::GaveUp(checked, Status::RemoteOperationError),
            Err(_) => Abandon::NotServing,
        };
        self.abandon(pending, abandon, Status::RemoteOperationError)
    }

    fn place_and_hold(&mut self, wr: &SendWr<'_>, local: &[Piece], pending: PendingRecv) -> Step {
        match self.place(wr, local, &pending) {
            Ok(()) => Step::Placed(pending),
            Err(abandon) => Step::Done(self.abandon(&pending, abandon, Status::RemoteOperationError)),
        }
    }

    /// Steps R2 to R5 for a claimed RECV: check, derive the destination, validate, copy.
    fn place(&mut self, wr: &SendWr<'_>, local: &[Piece], pending: &PendingRecv) -> Result<(), Abandon> {
        let is_send = matches!(wr.op, SendOp::Send | SendOp::SendWithImm { .. });
        let total: usize = local.iter().map(|piece| piece.len).sum();
        let mut moving_since: Option<Instant> = None;
        let mut changes = 0;
        loop {
            let checked = self.check_target().map_err(|_| Abandon::NotServing)?;
            let mut destinations = [Piece::EMPTY; MAX_SGE as usize];
            let derived = if is_send {
                self.recv_destinations(pending, total, &mut destinations)
            } else {
                let SendOp::WriteWithImm { remote, .. } = wr.op else { unreachable!() };
                let rights = checked.unpacked().access;
                self.remote_ptr(rights, RemoteOpKind::Write, remote.addr, remote.rkey, total as u64).map(
                    |ptr| {
                        destinations[0] =
                            Piece { ptr: ptr.unwrap_or(std::ptr::null_mut()), len: total, shared: true };
                        usize::from(ptr.is_some())
                    },
                )
            };
            let count = match derived {
                Ok(count) => count,
                Err(Refusal::Refused(status)) if is_send => return Err(Abandon::RecvFailed(checked, status)),
                Err(Refusal::Refused(status)) => return Err(Abandon::Refused(checked, status)),
                Err(Refusal::Moving) => {
                    let since = *moving_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > MOVE_PATIENCE {
                        return Err(Abandon::GaveUp(checked, Status::RemoteOperationError));
                    }
                    std::thread::yield_now();
                    continue;
                }
            };
            if !self.still(checked, is_send) {
                changes += 1;
                if changes == ATTEMPTS {
                    return Err(Abandon::GaveUp(checked, Status::RemoteOperationError));
                }
                continue;
            }
            copy_between(local, &destinations[..count]);
            return Ok(());
        }
    }

    /// Resolves the RECV's buffers as the responder does (lkey, bounds, local write right
    /// in the responder's PD) into pointers for `total` bytes.
    fn recv_destinations(
        &mut self,
        pending: &PendingRecv,
        total: usize,
        out: &mut [Piece],
    ) -> Result<usize, Refusal> {
        let target_pd = self.target_pd();
        // The entry is ours (taken), so its SGEs stay as the owner posted them.
        let mut sges = [Sge::default(); MAX_SGE as usize];
        let sge_count = pending.queue.read_sges(pending.position, &mut sges);
        let mut left = total;
        let mut count = 0;
        for sge in &sges[..sge_count] {
            if left == 0 {
                break;
            }
            let view = mr_info(self.link.peer.block(), sge.lkey);
            let offset = checks::check_local(view.as_ref().map(|view| &view.info), target_pd, sge, true)
                .map_err(Refusal::Refused)?;
            let take = left.min(sge.len as usize);
            if take == 0 {
                continue;
            }
            let view = view.expect("check_local accepted a non-empty SGE");
            let at = (view.file_offset + offset) as usize;
            let ptr = self.pointer(&view, at, sge.len as usize, Status::LocalProtectionError)?;
            out[count] = Piece { ptr, len: take, shared: true };
            count += 1;
            left -= take;
        }
        Ok(count)
    }

    /// Gives a claimed RECV back as failed and says how the request ends.
    fn abandon(&self, pending: &PendingRecv, abandon: Abandon, gave_up: Status) -> Outcome {
        match abandon {
            Abandon::NotServing => {
                // Retired: its RECVs flush anyway; the request waits for the QP to serve.
                self.finish_recv(pending, Status::Flushed);
                Outcome::TargetNotReady
            }
            Abandon::RecvFailed(checked, status) => {
                self.finish_recv(pending, status);
                self.fail_target(checked, AsyncFlag::RequestError);
                Outcome::fail(Status::RemoteOperationError)
            }
            Abandon::Refused(checked, status) => {
                self.finish_recv(pending, Status::Flushed);
                self.responder_rejects(checked, status)
            }
            Abandon::GaveUp(checked, status) => {
                self.finish_recv(pending, Status::LocalQpOperationError);
                self.fail_target(checked, AsyncFlag::RequestError);
                Outcome::fail(if status == Status::RemoteOperationError { gave_up } else { status })
            }
        }
    }

    /// Claims the responder's next posted RECV, if any.
    fn take_recv(&mut self, checked: Checked) -> Option<(ReceiveQueue, u64)> {
        let queue = self.cache.receive_queue(self.link, checked.rq_generation)?.clone();
        let position = queue.take_next(&self.link.target().inbound.recv_taken)?;
        Some((queue, position))
    }

    fn finish_recv(&self, pending: &PendingRecv, status: Status) {
        let byte_len = if status == Status::Success { pending.byte_len } else { 0 };
        let opcode = if status == Status::Success { pending.opcode } else { CompletionOpcode::Recv };
        let imm = pending.imm.filter(|_| status == Status::Success);
        if pending.queue.complete(pending.position, status, opcode, byte_len, imm) {
            let owner = &self.link.target().owner;
            let recv_cq = owner.recv_cq.load(std::sync::atomic::Ordering::Acquire) as usize;
            if let Some(cq) = self.link.peer.block().cqs.get(recv_cq) {
                ring_doorbell(&cq.doorbell);
            }
        }
    }
}

/// Copies the gathered local pieces into the destination pieces, in order.
fn copy_between(local: &[Piece], destinations: &[Piece]) {
    if let [only] = destinations {
        gather_into(only.ptr, local);
        return;
    }
    let mut sources = local.iter().copied().filter(|piece| piece.len > 0);
    let mut source = sources.next();
    for destination in destinations {
        let (mut dst, mut room) = (destination.ptr, destination.len);
        while room > 0 {
            let Some(piece) = source.as_mut() else { return };
            let take = room.min(piece.len);
            // The destinations were resolved and bounds-checked for exactly the pieces'
            // total, and the sources are validated local memory or the caller's inline bytes.
            // SAFETY: `take` bytes fit both the source piece and the destination, distinct memory.
            unsafe {
                piece.copy_to(dst, take);
                dst = dst.add(take);
                piece.ptr = piece.ptr.add(take);
            }
            piece.len -= take;
            room -= take;
            if piece.len == 0 {
                source = sources.next();
            }
        }
    }
}
