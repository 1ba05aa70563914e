//! Memory registration: `ibv_reg_mr` over a range of a [`Region`], changes of rights with
//! `ibv_rereg_mr` (or a fresh registration where that is unsupported), and a clear error
//! when the locked-memory limit is what stands in the way.

use std::io;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use usec_regions::Region;

use rdma_sys::{ibv_dereg_mr, ibv_mr, ibv_reg_mr, ibv_rereg_mr, ibv_rereg_mr_err_code, ibv_rereg_mr_flags};

use crate::access::AccessFlags;
use crate::error::{Error, Result};
use crate::ibverbs::convert::access_to_ibv;
use crate::ibverbs::protection_domain::{IbvPd, PdHandle};
use crate::ibverbs::raw::last_os_error;
use crate::provider::MrOps;

/// A registration of `len` bytes at `addr`.
///
/// Should a re-registration fail after the old registration had to go (a kernel rereg
/// that failed midway, or a locked-memory limit too tight for two registrations), the
/// error says so and the keys read 0 until a later `rereg_access` succeeds.
#[derive(Debug)]
pub(crate) struct IbvMr {
    /// `None` only after a failed re-registration left no valid registration behind.
    raw: Option<NonNull<ibv_mr>>,
    pd: Arc<PdHandle>,
    device_name: String,
    addr: *mut u8,
    len: usize,
    lkey: u32,
    rkey: u32,
    // Keeps the registered memory mapped for as long as the registration exists (the
    // public MemoryRegion does too; this makes the provider safe on its own).
    _region: Arc<Region>,
}

// SAFETY: the MR verbs are thread-safe; `addr` is only an address handed to libibverbs,
// never dereferenced here; mutation (`rereg_access`) takes `&mut self`.
unsafe impl Send for IbvMr {}
// SAFETY: shared access only reads the cached keys.
unsafe impl Sync for IbvMr {}

impl IbvMr {
    pub(crate) fn register(
        pd: &IbvPd,
        region: &Arc<Region>,
        offset: usize,
        len: usize,
        access: AccessFlags,
    ) -> Result<IbvMr> {
        region.check_range(offset, len)?;
        // SAFETY: `offset + len` lies within the region's mapping (checked just above).
        let addr = unsafe { region.as_ptr().add(offset) };
        let raw = reg_mr(&pd.handle, addr, len, access)
            .map_err(|error| registration_error(&pd.device.name, len, error))?;
        let mut mr = IbvMr {
            raw: Some(raw),
            pd: Arc::clone(&pd.handle),
            device_name: pd.device.name.clone(),
            addr,
            len,
            lkey: 0,
            rkey: 0,
            _region: Arc::clone(region),
        };
        mr.refresh_keys();
        Ok(mr)
    }

    fn refresh_keys(&mut self) {
        let (lkey, rkey) = match self.raw {
            // libibverbs updates the keys on (re-)registration, which `&mut self` excludes meanwhile.
            // SAFETY: a live registration, read through plain fields.
            Some(raw) => unsafe { ((*raw.as_ptr()).lkey, (*raw.as_ptr()).rkey) },
            None => (0, 0),
        };
        self.lkey = lkey;
        self.rkey = rkey;
    }

    /// Registers the same range anew with `access`, then drops the old registration: when
    /// this returns, the old keys are invalid in the device. Where the locked-memory limit
    /// cannot hold both registrations at once, the old one goes first (the range is then
    /// briefly unregistered, which only ever takes rights away).
    fn replace(&mut self, access: AccessFlags) -> Result<()> {
        let fresh = match reg_mr(&self.pd, self.addr, self.len, access) {
            Ok(fresh) => fresh,
            Err(error) if self.raw.is_some() && is_memlock(&error) => {
                self.drop_registration();
                reg_mr(&self.pd, self.addr, self.len, access)
                    .map_err(|error| registration_error(&self.device_name, self.len, error))?
            }
            Err(error) => return Err(registration_error(&self.device_name, self.len, error)),
        };
        if let Some(old) = self.raw.replace(fresh) {
            dereg(old);
        }
        self.refresh_keys();
        Ok(())
    }

    /// Deregisters now; the keys read 0 until a registration succeeds again.
    fn drop_registration(&mut self) {
        if let Some(old) = self.raw.take() {
            dereg(old);
        }
        self.refresh_keys();
    }
}

fn is_memlock(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOMEM) | Some(libc::EPERM))
}

fn reg_mr(pd: &PdHandle, addr: *mut u8, len: usize, access: AccessFlags) -> io::Result<NonNull<ibv_mr>> {
    // The memory belongs to a Region the caller keeps alive for the registration's lifetime; the
    // access bits are plain `ibv_access_flags`.
    // SAFETY: the PD is live (the caller holds its handle) and `addr..addr + len` is mapped.
    let raw = unsafe { ibv_reg_mr(pd.as_ptr(), addr.cast(), len, access_to_ibv(access) as i32) };
    NonNull::new(raw).ok_or_else(last_os_error)
}

fn dereg(raw: NonNull<ibv_mr>) {
    // SAFETY: a registration of ours, deregistered once (the caller gave up its pointer).
    unsafe { ibv_dereg_mr(raw.as_ptr()) };
}

/// A failed registration, with the locked-memory limit spelled out when it is the likely
/// cause: the kernel pins registered pages and counts them against RLIMIT_MEMLOCK, and
/// answers ENOMEM (EPERM on some older kernels) when that would be exceeded.
fn registration_error(device: &str, len: usize, error: io::Error) -> Error {
    match memlock_limit() {
        Some(limit) if is_memlock(&error) => Error::ResourceExhausted {
            what: "locked memory to register (RLIMIT_MEMLOCK, in bytes; raise it with `ulimit -l`, \
                   `LimitMEMLOCK=` in a systemd unit, or `memlock` in /etc/security/limits.conf)",
            limit,
        },
        _ => Error::os(format!("ibv_reg_mr({device}, {len} bytes)"), error),
    }
}

/// The soft RLIMIT_MEMLOCK in bytes; `None` when unlimited or unreadable.
pub(crate) fn memlock_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid out-structure.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return None;
    }
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

impl MrOps for IbvMr {
    fn lkey(&self) -> u32 {
        self.lkey
    }

    fn rkey(&self) -> u32 {
        self.rkey
    }

    fn rereg_access(&mut self, access: AccessFlags) -> Result<()> {
        let Some(raw) = self.raw else {
            return self.replace(access);
        };
        let flags = ibv_rereg_mr_flags::IBV_REREG_MR_CHANGE_ACCESS.0 as i32;
        // Without CHANGE_PD and CHANGE_TRANSLATION the PD, address and length arguments are ignored.
        // SAFETY: a live registration of ours.
        let code = unsafe {
            ibv_rereg_mr(
                raw.as_ptr(),
                flags,
                ptr::null_mut(),
                ptr::null_mut(),
                0,
                access_to_ibv(access) as i32,
            )
        };
        let unsupported =
            || matches!(last_os_error().raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS));
        match code {
            // DO_FORK_OLD: the new registration is valid, only fork bookkeeping failed.
            0 | ibv_rereg_mr_err_code::IBV_REREG_MR_ERR_DO_FORK_OLD => {
                self.refresh_keys();
                Ok(())
            }
            // The old registration is still valid: libibverbs refused the input, or the
            // provider or kernel has no rereg (rxe answers ERR_CMD with EOPNOTSUPP).
            // Register anew, then drop the old one; the keys change.
            ibv_rereg_mr_err_code::IBV_REREG_MR_ERR_INPUT
            | ibv_rereg_mr_err_code::IBV_REREG_MR_ERR_DONT_FORK_NEW => self.replace(access),
            ibv_rereg_mr_err_code::IBV_REREG_MR_ERR_CMD if unsupported() => self.replace(access),
            // The kernel command failed and "the MR shouldn't be used": drop it first,
            // then register anew.
            _ => {
                self.drop_registration();
                self.replace(access)
            }
        }
    }
}

impl Drop for IbvMr {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            dereg(raw);
        }
    }
}
