//! Memory regions: registered memory, and the keys and SGEs that name it.

use std::fmt;
use std::sync::Arc;

use usec_regions::Region;

use crate::access::AccessFlags;
use crate::error::{Error, Result};
use crate::provider::MrOps;
use crate::work_request::{RemoteAddr, Sge};

/// A registration of (part of) a [`Region`] (`ibv_mr`). Dropping it deregisters: once the
/// drop returns, no operation through its keys lands in the memory.
///
/// The MR keeps its region alive, so the memory a provider may touch outlives every use.
pub struct MemoryRegion {
    // Declared first so it drops (deregisters) before the region is released.
    inner: Box<dyn MrOps>,
    region: Arc<Region>,
    offset: usize,
    len: usize,
    access: AccessFlags,
}

impl fmt::Debug for MemoryRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRegion")
            .field("addr", &format_args!("{:#x}", self.addr()))
            .field("len", &self.len)
            .field("lkey", &self.lkey())
            .field("rkey", &self.rkey())
            .field("access", &self.access)
            .finish()
    }
}

impl MemoryRegion {
    pub(crate) fn new(
        inner: Box<dyn MrOps>,
        region: Arc<Region>,
        offset: usize,
        len: usize,
        access: AccessFlags,
    ) -> MemoryRegion {
        MemoryRegion { inner, region, offset, len, access }
    }

    /// Local key, for SGEs.
    pub fn lkey(&self) -> u32 {
        self.inner.lkey()
    }

    /// Remote key, for peers.
    pub fn rkey(&self) -> u32 {
        self.inner.rkey()
    }

    /// Address of the first registered byte.
    pub fn addr(&self) -> u64 {
        self.region.addr() + self.offset as u64
    }

    /// Registered length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty registrations are refused.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Current rights.
    pub fn access(&self) -> AccessFlags {
        self.access
    }

    /// The region registered.
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// Offset of the registration within its region.
    pub fn region_offset(&self) -> usize {
        self.offset
    }

    /// An SGE for `len` bytes at `offset` into the registration, bounds-checked.
    pub fn sge(&self, offset: usize, len: u32) -> Result<Sge> {
        self.check(offset, len as usize)?;
        Ok(Sge { addr: self.addr() + offset as u64, len, lkey: self.lkey() })
    }

    /// What a peer needs to reach `offset` into the registration.
    pub fn remote_addr(&self, offset: usize) -> Result<RemoteAddr> {
        self.check(offset, 0)?;
        Ok(RemoteAddr { addr: self.addr() + offset as u64, rkey: self.rkey() })
    }

    /// The descriptor of the whole registration, to hand to peers.
    pub fn remote_region(&self) -> usec_regions::RemoteRegion {
        usec_regions::RemoteRegion::new(self.addr(), self.len as u64, self.rkey())
            .expect("a mapped range cannot wrap the address space")
    }

    /// Changes the rights (`ibv_rereg_mr` with `IBV_REREG_MR_CHANGE_ACCESS`). When this
    /// returns, no operation with the old rights can still land. The keys may change.
    pub fn rereg_access(&mut self, access: AccessFlags) -> Result<()> {
        if !access.valid_for_mr() {
            return Err(Error::invalid(format!(
                "MR access {access:?}: remote write and remote atomic need LOCAL_WRITE too"
            )));
        }
        self.inner.rereg_access(access)?;
        self.access = access;
        Ok(())
    }

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::invalid(format!(
                "range {offset}+{len} is outside the registration of {} bytes",
                self.len
            ))),
        }
    }
}
