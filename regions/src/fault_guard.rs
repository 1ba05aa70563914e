//! Holding this process's own accesses while a region moves (see
//! [`Region::relocate`](crate::Region::relocate)).
//!
//! A move makes the region's pages inaccessible (`PROT_NONE`) while it copies them into a
//! fresh file, then maps the fresh file over the same addresses. A thread of this process
//! that touches the region meanwhile takes a SIGSEGV (`SEGV_ACCERR`). The handler installed
//! here finds the address in the table of guarded ranges, waits until that range's move
//! is over, and returns: the CPU then re-executes the access, which now reaches the fresh
//! file. Loads and stores are delayed, never lost, whatever path they take (the safe copy
//! paths, atomics handed out earlier, raw pointers).
//!
//! Any other fault goes to the handler that was installed before ours (Rust's stack
//! overflow handler, a sanitizer's, or the default action), so genuine crashes still crash.
//! The handler is installed on the first move only; a process that never moves a region
//! never has it.
//!
//! Kernel accesses are not held: a system call that reads or writes the region while it
//! moves (`read(2)` into it, say) fails with `EFAULT`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// `si_code` of a fault on a mapped page whose protection forbids the access (Linux's
/// `asm-generic/siginfo.h`; the libc crate does not export it).
const SEGV_ACCERR: libc::c_int = 2;

/// Ranges that can be guarded at once: one per region that has ever moved and still lives.
const SLOTS: usize = 1024;

/// One guarded range. `start == 0` marks a free slot.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    moving: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot =
    Slot { start: AtomicUsize::new(0), end: AtomicUsize::new(0), moving: AtomicBool::new(false) };
static TABLE: [Slot; SLOTS] = [FREE; SLOTS];
/// Slots ever used: the handler scans no further.
static HIGH_WATER: AtomicUsize = AtomicUsize::new(0);
/// The SIGSEGV disposition found when ours was installed.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// A range of addresses whose faults wait for its moves. Lives as long as its region, so
/// that a fault taken during a move but handled after it still finds the range.
#[derive(Debug)]
pub(crate) struct GuardedRange {
    index: usize,
}

impl GuardedRange {
    /// Guards `start..start + len`, installing the handler first if need be.
    pub(crate) fn new(start: usize, len: usize) -> Result<GuardedRange> {
        install()?;
        for (index, slot) in TABLE.iter().enumerate() {
            if slot.start.compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                slot.moving.store(false, Ordering::Relaxed);
                // The handler ignores the slot until `end` says how far it reaches.
                slot.end.store(start + len, Ordering::Release);
                HIGH_WATER.fetch_max(index + 1, Ordering::AcqRel);
                return Ok(GuardedRange { index });
            }
        }
        Err(Error::os("guarding a moved region", std::io::Error::other("too many moved regions alive")))
    }

    /// Marks the range as moving (faults in it wait) or not (they retry at once).
    pub(crate) fn set_moving(&self, moving: bool) {
        TABLE[self.index].moving.store(moving, Ordering::Release);
    }
}

impl Drop for GuardedRange {
    fn drop(&mut self) {
        let slot = &TABLE[self.index];
        slot.moving.store(false, Ordering::Release);
        slot.end.store(0, Ordering::Release);
        slot.start.store(0, Ordering::Release);
    }
}

fn install() -> Result<()> {
    static INSTALLED: OnceLock<std::result::Result<(), i32>> = OnceLock::new();
    let outcome = INSTALLED.get_or_init(|| {
        // SAFETY: a zeroed sigaction is a valid "out" argument; a null new action only reads.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above: reads the current SIGSEGV disposition into `previous`.
        if unsafe { libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut previous) } != 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        // Set before ours is live, so the handler always finds it.
        let _ = PREVIOUS.set(previous);
        // SAFETY: all-zero is a valid sigaction to fill in.
        let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
        ours.sa_sigaction = on_fault as *const () as usize;
        // SA_ONSTACK: a stack overflow, which we pass on, must run on the alternate stack.
        ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `ours` points at a handler with the SA_SIGINFO signature.
        if unsafe { libc::sigaction(libc::SIGSEGV, &ours, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        Ok(())
    });
    (*outcome).map_err(|code| Error::os("sigaction(SIGSEGV)", std::io::Error::from_raw_os_error(code)))
}

/// The SIGSEGV handler. Async-signal-safe: atomics, `sched_yield` and `sigaction` only.
extern "C" fn on_fault(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel hands an SA_SIGINFO handler a valid siginfo for the fault.
    let (address, code) = unsafe { ((*info).si_addr() as usize, (*info).si_code) };
    if code == SEGV_ACCERR {
        let used = HIGH_WATER.load(Ordering::Acquire).min(SLOTS);
        for slot in &TABLE[..used] {
            let start = slot.start.load(Ordering::Acquire);
            let end = slot.end.load(Ordering::Acquire);
            if start != 0 && (start..end).contains(&address) {
                while slot.moving.load(Ordering::Acquire) {
                    // SAFETY: sched_yield has no preconditions and is async-signal-safe.
                    unsafe { libc::sched_yield() };
                }
                // Returning re-executes the access, now on the fresh file.
                return;
            }
        }
    }
    pass_on(signal, info, context);
}

/// Hands a fault that is not ours to the disposition that was there before.
fn pass_on(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let previous = PREVIOUS.get().copied();
    match previous {
        Some(previous)
            if previous.sa_sigaction != libc::SIG_DFL && previous.sa_sigaction != libc::SIG_IGN =>
        {
            if previous.sa_flags & libc::SA_SIGINFO != 0 {
                type InfoHandler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);
                // SAFETY: with SA_SIGINFO the stored address is a three-argument handler.
                let handler: InfoHandler = unsafe { std::mem::transmute(previous.sa_sigaction) };
                handler(signal, info, context);
            } else {
                type PlainHandler = extern "C" fn(libc::c_int);
                // SAFETY: without SA_SIGINFO the stored address is a one-argument handler.
                let handler: PlainHandler = unsafe { std::mem::transmute(previous.sa_sigaction) };
                handler(signal);
            }
        }
        _ => {
            // The default action: restore it and return, so the access faults again and
            // the process dies of it as it would have without us.
            // SAFETY: all-zero with SIG_DFL (0) is the default disposition.
            let default: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: sigaction is async-signal-safe; `default` is a valid action.
            unsafe { libc::sigaction(signal, &default, std::ptr::null_mut()) };
        }
    }
}
