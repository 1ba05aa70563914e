//! Work requests: what is posted to a QP's send and receive queues.
//!
//! Local memory is named by scatter/gather elements ([`Sge`]) carrying an lkey, exactly as
//! in libibverbs, and every provider validates them as a NIC does (unknown lkey, range
//! outside the MR, or missing local write complete with [`Status::LocalProtectionError`]).
//! Inline payloads are plain byte slices copied at post time.
//!
//! [`Status::LocalProtectionError`]: crate::Status::LocalProtectionError

use usec_regions::RemoteRegion;

use crate::completion::CompletionOpcode;
use crate::error::{Error, Result};

/// A scatter/gather element: `len` bytes at `addr` inside the local MR whose lkey is `lkey`.
///
/// Laid out as `struct ibv_sge`, so the ibverbs provider hands a caller's SGEs to
/// libibverbs in place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Sge {
    /// Address in this process (as the MR's `addr` counts).
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Local key of the MR the bytes belong to.
    pub lkey: u32,
}

/// Where a one-sided operation goes: an address in the peer's registered memory and the
/// rkey of the MR that covers it.
///
/// Derive it from the [`RemoteRegion`] the peer handed out, with [`RemoteAddr::within`],
/// so that an offset bug is an error here rather than a remote access error that fails
/// both QPs:
///
/// ```
/// use usec_regions::RemoteRegion;
/// use usec_verbs::RemoteAddr;
///
/// let region = RemoteRegion::new(0x10_000, 4096, 0x2a)?; // what the peer sent
/// let slot = RemoteAddr::within(&region, 512, 64)?; // 64 bytes at offset 512
/// assert_eq!((slot.addr, slot.rkey), (0x10_200, 0x2a));
/// assert!(RemoteAddr::within(&region, 4090, 8).is_err()); // would run past the end
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Its fields are public for the rare program that must name an address no descriptor
/// covers (a test of the responder's own checks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RemoteAddr {
    /// Address in the peer's address space.
    pub addr: u64,
    /// Remote key of the peer's MR.
    pub rkey: u32,
}

impl RemoteAddr {
    /// The address of an access of `len` bytes at `offset` into `region`, under its rkey,
    /// after checking that all of them lie inside it (overflow included). An empty access
    /// may sit at the end. [`Error::OutsideRegion`] otherwise, naming the region, the
    /// offset and the length.
    pub fn within(region: &RemoteRegion, offset: u64, len: u64) -> Result<RemoteAddr> {
        let addr =
            region.addr_of(offset, len).map_err(|_| Error::OutsideRegion { region: *region, offset, len })?;
        Ok(RemoteAddr { addr, rkey: region.rkey() })
    }

    /// `self` moved `offset` bytes forward (wrapping arithmetic is left to the responder's
    /// bounds check, which rejects it).
    pub fn offset(self, offset: u64) -> RemoteAddr {
        RemoteAddr { addr: self.addr.wrapping_add(offset), rkey: self.rkey }
    }
}

/// The operation of a send-queue work request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOp {
    /// RDMA WRITE of the payload to `remote`.
    Write {
        /// Destination.
        remote: RemoteAddr,
    },
    /// RDMA WRITE that also consumes a RECV at the peer and delivers `imm` with it.
    WriteWithImm {
        /// Destination.
        remote: RemoteAddr,
        /// Immediate data (host order here; providers convert for the wire).
        imm: u32,
    },
    /// RDMA READ from `remote` into the payload's SGEs.
    Read {
        /// Source.
        remote: RemoteAddr,
    },
    /// Two-sided SEND into the peer's next RECV.
    Send,
    /// SEND that carries `imm` to the receiver's completion.
    SendWithImm {
        /// Immediate data.
        imm: u32,
    },
    /// 8-byte compare-and-swap at `remote` (8-byte aligned); the old value lands in the
    /// payload's single 8-byte SGE.
    CompareSwap {
        /// Target word.
        remote: RemoteAddr,
        /// Value expected.
        compare: u64,
        /// Value written when it matches.
        swap: u64,
    },
    /// 8-byte fetch-and-add at `remote` (8-byte aligned); the old value lands in the
    /// payload's single 8-byte SGE.
    FetchAdd {
        /// Target word.
        remote: RemoteAddr,
        /// Addend (wrapping).
        add: u64,
    },
}

impl SendOp {
    /// The completion opcode this operation reports.
    pub fn completion_opcode(&self) -> CompletionOpcode {
        match self {
            SendOp::Write { .. } | SendOp::WriteWithImm { .. } => CompletionOpcode::Write,
            SendOp::Read { .. } => CompletionOpcode::Read,
            SendOp::Send | SendOp::SendWithImm { .. } => CompletionOpcode::Send,
            SendOp::CompareSwap { .. } => CompletionOpcode::CompareSwap,
            SendOp::FetchAdd { .. } => CompletionOpcode::FetchAdd,
        }
    }

    /// Whether the payload may be inline (only data the responder receives can be).
    pub fn allows_inline(&self) -> bool {
        matches!(
            self,
            SendOp::Write { .. } | SendOp::WriteWithImm { .. } | SendOp::Send | SendOp::SendWithImm { .. }
        )
    }

    /// The remote address of a one-sided operation.
    pub fn remote(&self) -> Option<RemoteAddr> {
        match *self {
            SendOp::Write { remote }
            | SendOp::WriteWithImm { remote, .. }
            | SendOp::Read { remote }
            | SendOp::CompareSwap { remote, .. }
            | SendOp::FetchAdd { remote, .. } => Some(remote),
            SendOp::Send | SendOp::SendWithImm { .. } => None,
        }
    }

    /// Whether the operation consumes a RECV at the responder.
    pub fn consumes_recv(&self) -> bool {
        matches!(self, SendOp::Send | SendOp::SendWithImm { .. } | SendOp::WriteWithImm { .. })
    }

    /// The immediate data carried, if any.
    pub fn imm(&self) -> Option<u32> {
        match *self {
            SendOp::WriteWithImm { imm, .. } | SendOp::SendWithImm { imm } => Some(imm),
            _ => None,
        }
    }
}

/// The local side of a send work request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// Gather from (or, for READ and atomics, scatter into) registered memory.
    Sges(&'a [Sge]),
    /// Bytes copied into the work request at post time; the slice may be reused as soon as
    /// the post returns. Limited by the QP's `max_inline_data`.
    Inline(&'a [u8]),
}

impl Payload<'_> {
    /// Total bytes named by the payload (saturating; providers reject oversize totals).
    pub fn len(&self) -> u64 {
        match self {
            Payload::Sges(sges) => sges.iter().map(|sge| u64::from(sge.len)).sum(),
            Payload::Inline(bytes) => bytes.len() as u64,
        }
    }

    /// Whether the payload carries no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> From<&'a Sge> for Payload<'a> {
    fn from(sge: &'a Sge) -> Payload<'a> {
        Payload::Sges(std::slice::from_ref(sge))
    }
}

impl<'a> From<&'a [Sge]> for Payload<'a> {
    fn from(sges: &'a [Sge]) -> Payload<'a> {
        Payload::Sges(sges)
    }
}

/// A send-queue work request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendWr<'a> {
    /// Returned untouched in the completion.
    pub wr_id: u64,
    /// The operation.
    pub op: SendOp,
    /// Local memory (or inline bytes).
    pub payload: Payload<'a>,
    /// Generate a completion on success (errors always complete).
    pub signaled: bool,
    /// Wait for earlier READs and atomics on this QP to finish before starting.
    pub fence: bool,
}

impl<'a> SendWr<'a> {
    /// A signaled request.
    pub fn new(wr_id: u64, op: SendOp, payload: impl Into<Payload<'a>>) -> SendWr<'a> {
        SendWr { wr_id, op, payload: payload.into(), signaled: true, fence: false }
    }

    /// RDMA WRITE of `payload` to `remote`.
    pub fn write(wr_id: u64, remote: RemoteAddr, payload: impl Into<Payload<'a>>) -> SendWr<'a> {
        SendWr::new(wr_id, SendOp::Write { remote }, payload)
    }

    /// RDMA READ of `remote` into `payload`.
    pub fn read(wr_id: u64, remote: RemoteAddr, payload: impl Into<Payload<'a>>) -> SendWr<'a> {
        SendWr::new(wr_id, SendOp::Read { remote }, payload)
    }

    /// SEND of `payload`.
    pub fn send(wr_id: u64, payload: impl Into<Payload<'a>>) -> SendWr<'a> {
        SendWr::new(wr_id, SendOp::Send, payload)
    }

    /// Compare-and-swap at `remote`, the old value into `result` (an 8-byte SGE).
    pub fn compare_swap(
        wr_id: u64,
        remote: RemoteAddr,
        compare: u64,
        swap: u64,
        result: &'a Sge,
    ) -> SendWr<'a> {
        SendWr::new(wr_id, SendOp::CompareSwap { remote, compare, swap }, result)
    }

    /// Fetch-and-add at `remote`, the old value into `result` (an 8-byte SGE).
    pub fn fetch_add(wr_id: u64, remote: RemoteAddr, add: u64, result: &'a Sge) -> SendWr<'a> {
        SendWr::new(wr_id, SendOp::FetchAdd { remote, add }, result)
    }

    /// The same request with the completion suppressed on success.
    pub fn unsignaled(mut self) -> SendWr<'a> {
        self.signaled = false;
        self
    }

    /// The same request with the fence flag set.
    pub fn fenced(mut self) -> SendWr<'a> {
        self.fence = true;
        self
    }
}

/// A receive-queue work request: buffers for one incoming SEND (or the completion of one
/// WRITE_WITH_IMM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvWr<'a> {
    /// Returned untouched in the completion.
    pub wr_id: u64,
    /// Where an incoming SEND's bytes are scattered, in order.
    pub sges: &'a [Sge],
}

impl<'a> RecvWr<'a> {
    /// A receive into `sges`.
    pub fn new(wr_id: u64, sges: &'a [Sge]) -> RecvWr<'a> {
        RecvWr { wr_id, sges }
    }
}
