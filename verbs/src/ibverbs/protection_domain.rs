//! Protection domains.

use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

use usec_regions::Region;

use rdma_sys::{ibv_alloc_pd, ibv_dealloc_pd, ibv_pd};

use crate::access::AccessFlags;
use crate::error::{Error, Result};
use crate::ibverbs::completion_queue::IbvCq;
use crate::ibverbs::device::{ContextHandle, DeviceShared};
use crate::ibverbs::memory_region::IbvMr;
use crate::ibverbs::queue_pair::IbvQp;
use crate::ibverbs::raw::last_os_error;
use crate::provider::{CqOps, MrOps, PdOps, QpOps};
use crate::qp::QpOptions;

/// An `ibv_pd`, deallocated on drop. MRs and QPs hold an `Arc` of it.
pub(crate) struct PdHandle {
    raw: NonNull<ibv_pd>,
    _context: Arc<ContextHandle>,
}

// SAFETY: PD verbs (register, create QP, dealloc) are thread-safe in libibverbs; the
// handle itself is immutable.
unsafe impl Send for PdHandle {}
// SAFETY: as above.
unsafe impl Sync for PdHandle {}

impl fmt::Debug for PdHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PdHandle({:p})", self.raw)
    }
}

impl PdHandle {
    pub(crate) fn alloc(context: &Arc<ContextHandle>) -> io::Result<PdHandle> {
        // SAFETY: the context is open (the Arc keeps it so).
        let raw = unsafe { ibv_alloc_pd(context.as_ptr()) };
        let raw = NonNull::new(raw).ok_or_else(last_os_error)?;
        Ok(PdHandle { raw, _context: Arc::clone(context) })
    }

    pub(crate) fn as_ptr(&self) -> *mut ibv_pd {
        self.raw.as_ptr()
    }
}

impl Drop for PdHandle {
    fn drop(&mut self) {
        // MRs and QPs of the PD hold Arcs of this handle, so none is left.
        // SAFETY: allocated by `ibv_alloc_pd`, freed once, here.
        unsafe { ibv_dealloc_pd(self.raw.as_ptr()) };
    }
}

/// A protection domain of an ibverbs device.
#[derive(Debug)]
pub(crate) struct IbvPd {
    pub device: Arc<DeviceShared>,
    pub handle: Arc<PdHandle>,
}

impl IbvPd {
    pub(crate) fn alloc(device: &Arc<DeviceShared>) -> Result<IbvPd> {
        let handle = PdHandle::alloc(&device.context)
            .map_err(|error| Error::os(format!("ibv_alloc_pd({})", device.name), error))?;
        Ok(IbvPd { device: Arc::clone(device), handle: Arc::new(handle) })
    }
}

impl PdOps for IbvPd {
    fn register(
        &self,
        region: &Arc<Region>,
        offset: usize,
        len: usize,
        access: AccessFlags,
    ) -> Result<Box<dyn MrOps>> {
        Ok(Box::new(IbvMr::register(self, region, offset, len, access)?))
    }

    fn create_qp(
        &self,
        send_cq: &dyn CqOps,
        recv_cq: &dyn CqOps,
        options: &QpOptions,
    ) -> Result<Box<dyn QpOps>> {
        let send_cq = self.own_cq(send_cq)?;
        let recv_cq = self.own_cq(recv_cq)?;
        Ok(Box::new(IbvQp::create(self, send_cq, recv_cq, options)?))
    }
}

impl IbvPd {
    /// The CQ as this device's own.
    fn own_cq<'a>(&self, cq: &'a dyn CqOps) -> Result<&'a IbvCq> {
        let cq = cq.as_any().downcast_ref::<IbvCq>().ok_or(Error::ForeignObject("the completion queue"))?;
        if !Arc::ptr_eq(&cq.device, &self.device) {
            return Err(Error::ForeignObject("the completion queue"));
        }
        Ok(cq)
    }
}
