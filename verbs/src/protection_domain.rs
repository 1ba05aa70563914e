//! Protection domains: the scope in which MRs and QPs may see each other.

use std::fmt;
use std::sync::Arc;

use usec_regions::Region;

use crate::access::AccessFlags;
use crate::completion_queue::CompletionQueue;
use crate::device::Context;
use crate::error::{Error, Result};
use crate::memory_region::MemoryRegion;
use crate::provider::PdOps;
use crate::qp::{QpOptions, QueuePair};

/// A protection domain (`ibv_pd`). An operation arriving on a QP can only touch MRs of the
/// QP's own PD.
///
/// Cheap to clone; MRs and QPs keep it alive.
#[derive(Clone)]
pub struct ProtectionDomain {
    pub(crate) inner: Arc<dyn PdOps>,
    pub(crate) context: Context,
}

impl fmt::Debug for ProtectionDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtectionDomain").field("device", &self.context.name()).finish()
    }
}

impl ProtectionDomain {
    /// The device it belongs to.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Registers the whole of `region`.
    pub fn register(&self, region: &Arc<Region>, access: AccessFlags) -> Result<MemoryRegion> {
        self.register_range(region, 0, region.len(), access)
    }

    /// Registers `len` bytes of `region` starting at `offset`. The MR keeps the region
    /// alive; remote peers address it by `region.addr() + offset` onwards.
    pub fn register_range(
        &self,
        region: &Arc<Region>,
        offset: usize,
        len: usize,
        access: AccessFlags,
    ) -> Result<MemoryRegion> {
        region.check_range(offset, len)?;
        if len == 0 {
            return Err(Error::invalid("cannot register an empty range"));
        }
        if !access.valid_for_mr() {
            return Err(Error::invalid(format!(
                "MR access {access:?}: remote write and remote atomic need LOCAL_WRITE too"
            )));
        }
        let max = self.context.attributes().max_mr_size;
        if len as u64 > max {
            return Err(Error::invalid(format!(
                "MR of {len} bytes exceeds the device's max_mr_size of {max}"
            )));
        }
        let inner = self.inner.register(region, offset, len, access)?;
        Ok(MemoryRegion::new(inner, Arc::clone(region), offset, len, access))
    }

    /// Creates a reliable-connected QP whose completions go to `send_cq` and `recv_cq`
    /// (which may be the same CQ).
    pub fn create_qp(
        &self,
        send_cq: &CompletionQueue,
        recv_cq: &CompletionQueue,
        options: &QpOptions,
    ) -> Result<QueuePair> {
        let attributes = self.context.attributes();
        let caps = &options.caps;
        let checks = [
            ("max_send_wr", caps.max_send_wr, attributes.max_qp_wr, 1),
            ("max_recv_wr", caps.max_recv_wr, attributes.max_qp_wr, 1),
            ("max_send_sge", caps.max_send_sge, attributes.max_sge, 1),
            ("max_recv_sge", caps.max_recv_sge, attributes.max_sge, 1),
            ("max_inline_data", caps.max_inline_data, attributes.max_inline_data, 0),
        ];
        for (what, value, max, min) in checks {
            if value < min || value > max {
                return Err(Error::invalid(format!(
                    "{what} = {value} outside {min}..={max} for this device"
                )));
            }
        }
        let inner = self.inner.create_qp(send_cq.inner.as_ref(), recv_cq.inner.as_ref(), options)?;
        Ok(QueuePair { inner, pd: self.clone() })
    }
}
