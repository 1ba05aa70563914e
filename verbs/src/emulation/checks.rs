//! The checks a NIC makes, as pure functions: at post time (what `ibv_post_send` refuses)
//! and at execution (what completes with an error status). The soft and sim providers both
//! call these, so they cannot drift apart.

use crate::access::{AccessFlags, RemoteOpKind};
use crate::completion::Status;
use crate::error::PostRejection;
use crate::qp::QpCaps;
use crate::work_request::{Payload, RecvWr, SendOp, SendWr, Sge};

/// Largest message, as on InfiniBand (2^31 bytes).
pub(crate) const MAX_MESSAGE_BYTES: u64 = 1 << 31;

/// What the responder knows about one of its MRs when an operation arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MrInfo {
    /// The protection domain it was registered in.
    pub pd: u32,
    /// First registered address (in the owner's address space).
    pub addr: u64,
    /// Registered length.
    pub len: u64,
    /// Current rights.
    pub access: AccessFlags,
}

/// Refusals at post time of a send request, against the QP's caps.
pub(crate) fn check_send_post(wr: &SendWr<'_>, caps: &QpCaps) -> Result<(), PostRejection> {
    match wr.payload {
        Payload::Sges(sges) if sges.len() > caps.max_send_sge as usize => {
            Err(PostRejection::TooManySges { given: sges.len(), max: caps.max_send_sge })
        }
        Payload::Inline(_) if !wr.op.allows_inline() => {
            Err(PostRejection::InlineNotAllowed { op: op_name(&wr.op) })
        }
        Payload::Inline(bytes) if bytes.len() > caps.max_inline_data as usize => {
            Err(PostRejection::InlineTooLarge { len: bytes.len(), max: caps.max_inline_data })
        }
        _ => Ok(()),
    }
}

/// Refusals at post time of a receive request.
pub(crate) fn check_recv_post(wr: &RecvWr<'_>, caps: &QpCaps) -> Result<(), PostRejection> {
    if wr.sges.len() > caps.max_recv_sge as usize {
        return Err(PostRejection::TooManySges { given: wr.sges.len(), max: caps.max_recv_sge });
    }
    Ok(())
}

/// Errors the requester finds in its own request before anything goes on the wire:
/// atomics need exactly one 8-byte local buffer, and messages are at most 2^31 bytes.
pub(crate) fn check_request_shape(wr: &SendWr<'_>) -> Result<(), Status> {
    if matches!(wr.op, SendOp::CompareSwap { .. } | SendOp::FetchAdd { .. }) {
        return match wr.payload {
            Payload::Sges([sge]) if sge.len == 8 => Ok(()),
            _ => Err(Status::LocalLengthError),
        };
    }
    if wr.payload.len() > MAX_MESSAGE_BYTES {
        return Err(Status::LocalLengthError);
    }
    Ok(())
}

/// Validates a local SGE against the MR its lkey names (`None` when the lkey is unknown);
/// returns the offset into the MR. Zero-length SGEs are not checked, as on NICs.
pub(crate) fn check_local(
    mr: Option<&MrInfo>,
    qp_pd: u32,
    sge: &Sge,
    needs_write: bool,
) -> Result<u64, Status> {
    if sge.len == 0 {
        return Ok(0);
    }
    let mr = mr.ok_or(Status::LocalProtectionError)?;
    let writable = !needs_write || mr.access.contains(AccessFlags::LOCAL_WRITE);
    if mr.pd != qp_pd || !writable {
        return Err(Status::LocalProtectionError);
    }
    offset_within(mr, sge.addr, u64::from(sge.len)).ok_or(Status::LocalProtectionError)
}

/// Validates a one-sided operation at the responder: the responder QP's rights, the MR its
/// rkey names (`None` when unknown), PD, MR rights, bounds, and atomic alignment. Returns
/// the offset into the MR. Zero-length READs and WRITEs are not checked (IB spec: the R_Key of
/// a zero-length transfer is not validated).
pub(crate) fn check_remote(
    mr: Option<&MrInfo>,
    qp_pd: u32,
    qp_access: AccessFlags,
    kind: RemoteOpKind,
    addr: u64,
    len: u64,
) -> Result<u64, Status> {
    if len == 0 && kind != RemoteOpKind::Atomic {
        return Ok(0);
    }
    if kind == RemoteOpKind::Atomic && (len != 8 || addr % 8 != 0) {
        return Err(Status::RemoteInvalidRequest);
    }
    let needed = AccessFlags::needed_for(kind);
    // An operation the responder QP's access flags do not enable is an invalid request
    // (ibv_poll_cq(3): IBV_WC_REM_INV_REQ_ERR); a key, PD, MR-right or bounds problem is a
    // protection (access) error.
    if !qp_access.contains(needed) {
        return Err(Status::RemoteInvalidRequest);
    }
    let mr = mr.ok_or(Status::RemoteAccessError)?;
    if mr.pd != qp_pd || !mr.access.contains(needed) {
        return Err(Status::RemoteAccessError);
    }
    offset_within(mr, addr, len).ok_or(Status::RemoteAccessError)
}

/// `addr..addr + len` as an offset into the MR, if it lies inside (overflow included).
fn offset_within(mr: &MrInfo, addr: u64, len: u64) -> Option<u64> {
    let offset = addr.checked_sub(mr.addr)?;
    let end = offset.checked_add(len)?;
    (end <= mr.len).then_some(offset)
}

/// Scatters `len` incoming bytes over a RECV's SGEs: returns (sge index, offset in the
/// SGE, bytes) pieces, or `LocalLengthError` when the buffers are too small.
pub(crate) fn scatter_plan(sges: &[Sge], len: u64) -> Result<Vec<(usize, u64, u64)>, Status> {
    let mut pieces = Vec::new();
    let mut left = len;
    for (index, sge) in sges.iter().enumerate() {
        if left == 0 {
            break;
        }
        let take = left.min(u64::from(sge.len));
        if take > 0 {
            pieces.push((index, 0, take));
        }
        left -= take;
    }
    if left > 0 {
        return Err(Status::LocalLengthError);
    }
    Ok(pieces)
}

/// A name for messages.
pub(crate) fn op_name(op: &SendOp) -> &'static str {
    match op {
        SendOp::Write { .. } => "WRITE",
        SendOp::WriteWithImm { .. } => "WRITE_WITH_IMM",
        SendOp::Read { .. } => "READ",
        SendOp::Send => "SEND",
        SendOp::SendWithImm { .. } => "SEND_WITH_IMM",
        SendOp::CompareSwap { .. } => "CMP_SWAP",
        SendOp::FetchAdd { .. } => "FETCH_ADD",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MR: MrInfo = MrInfo { pd: 1, addr: 0x1000, len: 0x100, access: AccessFlags::all() };

    #[test]
    fn remote_checks() {
        let all = AccessFlags::all();
        let write = RemoteOpKind::Write;
        assert_eq!(check_remote(Some(&MR), 1, all, write, 0x1000, 0x100), Ok(0));
        assert_eq!(check_remote(Some(&MR), 1, all, write, 0x10ff, 1), Ok(0xff));
        assert_eq!(check_remote(Some(&MR), 1, all, write, 0x10ff, 2), Err(Status::RemoteAccessError));
        assert_eq!(check_remote(Some(&MR), 1, all, write, 0xfff, 1), Err(Status::RemoteAccessError));
        assert_eq!(check_remote(Some(&MR), 1, all, write, u64::MAX, 2), Err(Status::RemoteAccessError));
        assert_eq!(check_remote(None, 1, all, write, 0x1000, 1), Err(Status::RemoteAccessError));
        assert_eq!(check_remote(Some(&MR), 2, all, write, 0x1000, 1), Err(Status::RemoteAccessError));
        let no_write = all - AccessFlags::REMOTE_WRITE;
        assert_eq!(check_remote(Some(&MR), 1, no_write, write, 0x1000, 1), Err(Status::RemoteInvalidRequest));
        let mr_no_read = MrInfo { access: all - AccessFlags::REMOTE_READ, ..MR };
        assert_eq!(
            check_remote(Some(&mr_no_read), 1, all, RemoteOpKind::Read, 0x1000, 1),
            Err(Status::RemoteAccessError)
        );
        assert_eq!(check_remote(None, 1, AccessFlags::empty(), write, 0, 0), Ok(0));
        let atomic = RemoteOpKind::Atomic;
        assert_eq!(check_remote(Some(&MR), 1, all, atomic, 0x1008, 8), Ok(8));
        assert_eq!(check_remote(Some(&MR), 1, all, atomic, 0x1004, 8), Err(Status::RemoteInvalidRequest));
        assert_eq!(check_remote(Some(&MR), 1, all, atomic, 0x10f8, 8), Ok(0xf8));
        assert_eq!(check_remote(Some(&MR), 1, all, atomic, 0x1100, 8), Err(Status::RemoteAccessError));
    }

    #[test]
    fn local_checks() {
        let sge = Sge { addr: 0x1010, len: 16, lkey: 0 };
        assert_eq!(check_local(Some(&MR), 1, &sge, true), Ok(0x10));
        let read_only = MrInfo { access: AccessFlags::REMOTE_READ, ..MR };
        assert_eq!(check_local(Some(&read_only), 1, &sge, true), Err(Status::LocalProtectionError));
        assert_eq!(check_local(Some(&read_only), 1, &sge, false), Ok(0x10));
        assert_eq!(check_local(None, 1, &sge, false), Err(Status::LocalProtectionError));
        let past = Sge { addr: 0x10f8, len: 9, lkey: 0 };
        assert_eq!(check_local(Some(&MR), 1, &past, false), Err(Status::LocalProtectionError));
    }

    #[test]
    fn scatter() {
        let sges = [
            Sge { addr: 0, len: 4, lkey: 0 },
            Sge { addr: 0, len: 0, lkey: 0 },
            Sge { addr: 0, len: 8, lkey: 0 },
        ];
        assert_eq!(scatter_plan(&sges, 10), Ok(vec![(0, 0, 4), (2, 0, 6)]));
        assert_eq!(scatter_plan(&sges, 12), Ok(vec![(0, 0, 4), (2, 0, 8)]));
        assert_eq!(scatter_plan(&sges, 13), Err(Status::LocalLengthError));
        assert_eq!(scatter_plan(&sges, 0), Ok(vec![]));
    }
}
