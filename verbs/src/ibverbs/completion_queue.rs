//! Completion queues: `ibv_poll_cq` into a fixed-size batch allocated once per CQ,
//! converted into the caller's slice. No allocation on the poll path.

use std::any::Any;
use std::fmt;
use std::io;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use rdma_sys::{ibv_cq, ibv_create_cq, ibv_destroy_cq, ibv_poll_cq, ibv_wc, ibv_wc_flags};

use crate::completion::{Completion, CompletionOpcode, Status};
use crate::error::{Error, Result};
use crate::ibverbs::convert::{imm_from_wire, opcode_from_ibv, status_from_ibv};
use crate::ibverbs::device::{ContextHandle, DeviceShared};
use crate::ibverbs::raw::{last_os_error, zeroed};
use crate::provider::CqOps;

/// Completions taken from the device per `ibv_poll_cq` call.
const BATCH: usize = 32;

/// An `ibv_cq`, destroyed on drop. QPs that use it hold an `Arc` of it, so it outlives
/// them even when the public `CompletionQueue` is dropped first.
pub(crate) struct CqHandle {
    raw: NonNull<ibv_cq>,
    _context: Arc<ContextHandle>,
}

// SAFETY: CQ verbs are thread-safe in libibverbs; polling goes through `IbvCq`, which
// needs `&mut`, and QPs only pass the pointer to `ibv_create_qp`.
unsafe impl Send for CqHandle {}
// SAFETY: as above.
unsafe impl Sync for CqHandle {}

impl fmt::Debug for CqHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CqHandle({:p})", self.raw)
    }
}

impl CqHandle {
    pub(crate) fn create(context: &Arc<ContextHandle>, depth: u32) -> io::Result<CqHandle> {
        let depth = i32::try_from(depth).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: the context is open; no completion channel, no user context.
        let raw = unsafe { ibv_create_cq(context.as_ptr(), depth, ptr::null_mut(), ptr::null_mut(), 0) };
        let raw = NonNull::new(raw).ok_or_else(last_os_error)?;
        Ok(CqHandle { raw, _context: Arc::clone(context) })
    }

    pub(crate) fn as_ptr(&self) -> *mut ibv_cq {
        self.raw.as_ptr()
    }
}

impl Drop for CqHandle {
    fn drop(&mut self) {
        // Every QP using the CQ holds an Arc of this handle, so none is left.
        // SAFETY: created by `ibv_create_cq`, destroyed once, here.
        unsafe { ibv_destroy_cq(self.raw.as_ptr()) };
    }
}

/// A completion queue of an ibverbs device.
pub(crate) struct IbvCq {
    pub device: Arc<DeviceShared>,
    pub handle: Arc<CqHandle>,
    depth: u32,
    /// Where `ibv_poll_cq` writes, allocated (zeroed) once. Providers need not write every
    /// field of a failed completion (the spec makes only `wr_id`, `status`, `qp_num` and
    /// `vendor_err` valid then), so the buffer is initialised memory throughout rather
    /// than a fresh uninitialised batch that could be read where nothing was written.
    batch: Box<[ibv_wc; BATCH]>,
}

impl fmt::Debug for IbvCq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IbvCq")
            .field("device", &self.device.name)
            .field("handle", &self.handle)
            .field("depth", &self.depth)
            .finish()
    }
}

impl IbvCq {
    pub(crate) fn create(device: &Arc<DeviceShared>, depth: u32) -> Result<IbvCq> {
        let handle = CqHandle::create(&device.context, depth)
            .map_err(|error| Error::os(format!("ibv_create_cq({}, {depth} entries)", device.name), error))?;
        // `cqe` is the capacity the device actually gave (at least `depth`), set at creation.
        // SAFETY: a live CQ, read through a plain field.
        let actual = unsafe { (*handle.as_ptr()).cqe };
        Ok(IbvCq {
            device: Arc::clone(device),
            handle: Arc::new(handle),
            depth: u32::try_from(actual).unwrap_or(depth),
            batch: Box::new(std::array::from_fn(|_| zeroed())),
        })
    }
}

/// The API's completion for a work completion.
pub(crate) fn completion_from_wc(wc: &ibv_wc) -> Completion {
    let status = status_from_ibv(wc.status);
    let opcode = opcode_from_ibv(wc.opcode);
    let with_imm = wc.wc_flags & ibv_wc_flags::IBV_WC_WITH_IMM.0 != 0;
    let imm = with_imm.then(|| {
        // With IBV_WC_WITH_IMM set, the device wrote the immediate data there.
        // SAFETY: both members of the union are `u32`, so either reading is defined.
        imm_from_wire(unsafe { wc.imm_data_invalidated_rkey_union.imm_data })
    });
    let byte_len = match opcode {
        // The API reports lengths where they mean something: received, read, atomics.
        CompletionOpcode::Recv | CompletionOpcode::RecvWithImm | CompletionOpcode::Read => wc.byte_len,
        CompletionOpcode::CompareSwap | CompletionOpcode::FetchAdd => 8,
        _ => 0,
    };
    let byte_len = if status == Status::Success { byte_len } else { 0 };
    Completion { wr_id: wc.wr_id, status, opcode, byte_len, imm, qp_num: wc.qp_num }
}

impl CqOps for IbvCq {
    fn poll(&mut self, out: &mut [Completion]) -> usize {
        let mut filled = 0;
        while filled < out.len() {
            let want = (out.len() - filled).min(BATCH);
            // `batch` has room for `want` entries, which the device fills from the start.
            // SAFETY: a live CQ polled by its one owner (`&mut self`) into room for `want` entries.
            let got = unsafe { ibv_poll_cq(self.handle.as_ptr(), want as i32, self.batch.as_mut_ptr()) };
            // A negative return is a device error; nothing was written.
            let got = usize::try_from(got).unwrap_or(0).min(want);
            for (slot, wc) in out[filled..filled + got].iter_mut().zip(self.batch.iter()) {
                *slot = completion_from_wc(wc);
            }
            filled += got;
            if got < want {
                break;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ibverbs::convert::imm_to_wire;
    use rdma_sys::{ibv_wc_opcode, ibv_wc_status};

    #[test]
    fn work_completions_convert() {
        let mut wc: ibv_wc = zeroed();
        wc.wr_id = 0xfeed;
        wc.status = ibv_wc_status::IBV_WC_SUCCESS;
        wc.opcode = ibv_wc_opcode::IBV_WC_RECV_RDMA_WITH_IMM;
        wc.byte_len = 12;
        wc.qp_num = 77;
        wc.wc_flags = ibv_wc_flags::IBV_WC_WITH_IMM.0;
        wc.imm_data_invalidated_rkey_union.imm_data = imm_to_wire(0xa1b2_c3d4);
        let completion = completion_from_wc(&wc);
        assert_eq!(
            completion,
            Completion {
                wr_id: 0xfeed,
                status: Status::Success,
                opcode: CompletionOpcode::RecvWithImm,
                byte_len: 12,
                imm: Some(0xa1b2_c3d4),
                qp_num: 77,
            }
        );
        wc.status = ibv_wc_status::IBV_WC_WR_FLUSH_ERR;
        wc.wc_flags = 0;
        let flushed = completion_from_wc(&wc);
        assert_eq!((flushed.status, flushed.imm, flushed.byte_len), (Status::Flushed, None, 0));
        wc.status = ibv_wc_status::IBV_WC_SUCCESS;
        wc.opcode = ibv_wc_opcode::IBV_WC_FETCH_ADD;
        assert_eq!(completion_from_wc(&wc).byte_len, 8);
        wc.opcode = ibv_wc_opcode::IBV_WC_RDMA_WRITE;
        assert_eq!(completion_from_wc(&wc).byte_len, 0);
    }
}
