//! A node's memory registrations, and the DMA a simulated NIC does through them.
//!
//! Every access is validated by key at the moment it happens, so an MR deregistered (or
//! re-registered with fewer rights) while an operation is in flight makes that operation
//! fail cleanly; the table holds an `Arc<Region>` per registration, so memory it touches is
//! never freed under it. Bytes move with [`Region::read`] and [`Region::write`], the latter
//! landing in increasing address order with the last word last, as RC WRITEs do.

use std::collections::BTreeMap;
use std::sync::Arc;

use usec_regions::Region;

use crate::access::{AccessFlags, RemoteOpKind};
use crate::completion::Status;
use crate::emulation::checks::{self, MrInfo};
use crate::work_request::Sge;

/// One registration.
#[derive(Debug)]
pub(crate) struct MemoryRegistration {
    pub(crate) pd: u32,
    pub(crate) region: Arc<Region>,
    pub(crate) region_offset: usize,
    pub(crate) addr: u64,
    pub(crate) len: u64,
    pub(crate) access: AccessFlags,
    pub(crate) rkey: u32,
}

impl MemoryRegistration {
    fn info(&self) -> MrInfo {
        MrInfo { pd: self.pd, addr: self.addr, len: self.len, access: self.access }
    }

    /// Byte offset in the region of `offset` into the registration.
    fn region_offset_of(&self, offset: u64) -> usize {
        self.region_offset + usize::try_from(offset).expect("checked against the MR length")
    }
}

/// A node's registrations by lkey, with the rkey index.
#[derive(Debug, Default)]
pub(crate) struct MemoryTable {
    by_lkey: BTreeMap<u32, MemoryRegistration>,
    lkey_of_rkey: BTreeMap<u32, u32>,
}

impl MemoryTable {
    pub(crate) fn len(&self) -> usize {
        self.by_lkey.len()
    }

    pub(crate) fn insert(&mut self, lkey: u32, registration: MemoryRegistration) {
        self.lkey_of_rkey.insert(registration.rkey, lkey);
        let previous = self.by_lkey.insert(lkey, registration);
        assert!(previous.is_none(), "lkey {lkey:#x} registered twice");
    }

    pub(crate) fn remove(&mut self, lkey: u32) {
        if let Some(registration) = self.by_lkey.remove(&lkey) {
            self.lkey_of_rkey.remove(&registration.rkey);
        }
    }

    pub(crate) fn set_access(&mut self, lkey: u32, access: AccessFlags) {
        if let Some(registration) = self.by_lkey.get_mut(&lkey) {
            registration.access = access;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.by_lkey.clear();
        self.lkey_of_rkey.clear();
    }

    fn by_rkey(&self, rkey: u32) -> Option<&MemoryRegistration> {
        self.lkey_of_rkey.get(&rkey).and_then(|lkey| self.by_lkey.get(lkey))
    }

    /// Checks local SGEs as the NIC does when it starts a request.
    pub(crate) fn check_local(&self, pd: u32, sges: &[Sge], needs_write: bool) -> Result<(), Status> {
        for sge in sges {
            self.locate(pd, sge, needs_write)?;
        }
        Ok(())
    }

    /// Validates and reads the bytes a WRITE or SEND sends.
    pub(crate) fn gather(&self, pd: u32, sges: &[Sge]) -> Result<Vec<u8>, Status> {
        let total: u64 = sges.iter().map(|sge| u64::from(sge.len)).sum();
        let mut bytes = vec![0u8; usize::try_from(total).map_err(|_| Status::LocalLengthError)?];
        let mut filled = 0;
        for sge in sges {
            let Some((registration, offset)) = self.locate(pd, sge, false)? else { continue };
            let len = sge.len as usize;
            registration
                .region
                .read(registration.region_offset_of(offset), &mut bytes[filled..filled + len])
                .expect("checked against the MR");
            filled += len;
        }
        Ok(bytes)
    }

    /// Validates every SGE `data` lands in, then writes it (a READ's data, an atomic's old
    /// value, a SEND into a RECV). `LocalLengthError` when the SGEs are too small.
    pub(crate) fn scatter(&self, pd: u32, sges: &[Sge], data: &[u8]) -> Result<(), Status> {
        let plan = checks::scatter_plan(sges, data.len() as u64)?;
        let mut targets = Vec::with_capacity(plan.len());
        for &(index, _, len) in &plan {
            let (registration, offset) = self.locate(pd, &sges[index], true)?.expect("pieces are not empty");
            targets.push((registration, registration.region_offset_of(offset), len as usize));
        }
        let mut taken = 0;
        for (registration, region_offset, len) in targets {
            registration
                .region
                .write(region_offset, &data[taken..taken + len])
                .expect("checked against the MR");
            taken += len;
        }
        Ok(())
    }

    /// The registration and offset a one-sided operation at the responder addresses, after
    /// every check a NIC makes (`None` for a zero-length READ or WRITE, which touches
    /// nothing and is not checked).
    pub(crate) fn check_remote(
        &self,
        qp_pd: u32,
        qp_access: AccessFlags,
        kind: RemoteOpKind,
        addr: u64,
        rkey: u32,
        len: u64,
    ) -> Result<Option<(&MemoryRegistration, usize)>, Status> {
        let registration = self.by_rkey(rkey);
        let info = registration.map(MemoryRegistration::info);
        let offset = checks::check_remote(info.as_ref(), qp_pd, qp_access, kind, addr, len)?;
        if len == 0 && kind != RemoteOpKind::Atomic {
            return Ok(None);
        }
        let registration = registration.expect("check_remote refuses unknown keys");
        Ok(Some((registration, registration.region_offset_of(offset))))
    }

    /// The registration and offset of a local SGE (`None` for an empty one).
    fn locate(
        &self,
        pd: u32,
        sge: &Sge,
        needs_write: bool,
    ) -> Result<Option<(&MemoryRegistration, u64)>, Status> {
        let registration = self.by_lkey.get(&sge.lkey);
        let info = registration.map(MemoryRegistration::info);
        let offset = checks::check_local(info.as_ref(), pd, sge, needs_write)?;
        if sge.len == 0 {
            return Ok(None);
        }
        Ok(Some((registration.expect("check_local refuses unknown keys"), offset)))
    }
}
