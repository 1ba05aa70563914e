//! Moving a region to a fresh file at the same address: how a provider revokes a peer
//! process that maps the old file and cannot be waited for (stopped, or too slow).
//!
//! What a move guarantees, once [`Region::relocate`] returns:
//! 1. The region's address, length and contents are as before: every byte that was in the
//!    old file when the copy read it is in the fresh file.
//! 2. Nothing written to the old file afterwards is visible through the region: the region
//!    maps only the fresh file. A process that mapped the old file keeps an orphan.
//! 3. No access by this process's threads is lost: while the pages move they are
//!    inaccessible, and a thread that touches them waits in a fault handler until the move
//!    is over, then its load or store runs on the fresh file (see `fault_guard.rs`). A store
//!    that ran before the move began is in the old file before the copy starts: `mprotect`
//!    returns only once every CPU has dropped the old permission from its TLB, which
//!    drains that CPU's earlier stores.
//! 4. [`Region::fd`] names the fresh file, and so does every descriptor it handed out
//!    before (they stay open as long as the region); the old file's pages go once the last
//!    process that maps it lets go.
//!
//! Stores by other processes into the old file during the copy may or may not be copied;
//! the provider that moves a region must decide for itself what its peers' stores at that
//! moment mean (the soft provider revokes them and has them redo or fail).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use memmap2::MmapOptions;

use crate::copy::shared_read;
use crate::error::{Error, Result};
use crate::fault_guard::GuardedRange;
use crate::region::{memfd, Backing, Region};

/// A fresh file's temporary mapping, unmapped on drop unless it was moved into place.
struct FreshView {
    ptr: *mut libc::c_void,
    len: usize,
}

impl FreshView {
    fn map(fd: i32, len: usize) -> Result<FreshView> {
        // SAFETY: a new shared mapping of `len` bytes of `fd` at an address the kernel picks.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::os("mmap (fresh file)", std::io::Error::last_os_error()));
        }
        Ok(FreshView { ptr, len })
    }
}

impl Drop for FreshView {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: our own mapping of `len` bytes, used by nobody else.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

impl Region {
    /// Copies the old file into the fresh one: in the kernel where it can
    /// (`copy_file_range`, no page faults, no user-space reads of memory peers may be
    /// writing), else through mappings.
    fn copy_file(&self, old: &File, fresh_fd: i32, view: &FreshView) -> Result<()> {
        let old_fd = old.as_raw_fd();
        let (mut from, mut to) = (0 as libc::loff_t, 0 as libc::loff_t);
        while (to as usize) < self.len {
            let left = self.len - to as usize;
            // SAFETY: both descriptors are open files we own; the offsets are ours.
            let copied = unsafe { libc::copy_file_range(old_fd, &mut from, fresh_fd, &mut to, left, 0) };
            if copied <= 0 {
                break;
            }
        }
        if to as usize == self.len {
            return Ok(());
        }
        let old_view =
            MmapOptions::new().len(self.len).map_raw(old).map_err(|e| Error::os("mmap (old file)", e))?;
        // The fresh view is private to us; the old file may be written by peers meanwhile,
        // which is what shared_read allows.
        // SAFETY: both mappings are `len` bytes long and distinct.
        unsafe { shared_read(view.ptr as *mut u8, old_view.as_ptr(), self.len) };
        Ok(())
    }

    /// Moves the region's pages to a fresh memfd mapped at the same address, copying the
    /// contents, so that processes which mapped the old file can no longer reach the
    /// region (see the module docs for exactly what holds). Costs a copy of the region.
    ///
    /// While it runs, this process's own accesses to the region wait; system calls that
    /// read or write the region fail with `EFAULT`. The first call installs a SIGSEGV
    /// handler for the process (faults it does not own go on to the handler before it).
    /// A region registered with a NIC must not be moved: the NIC keeps the old pages. The
    /// soft provider moves the regions it registers itself, in step with its peers (see
    /// `usec-verbs`); moving one behind its back leaves its peers writing the old file.
    pub fn relocate(&self) -> Result<()> {
        // Serialises moves of this region, and guards `files`.
        let mut files = self.files.lock().expect("region files");
        let guard = match self.guard.get() {
            Some(guard) => guard,
            None => {
                let guard = GuardedRange::new(self.as_ptr() as usize, self.len)?;
                self.guard.get_or_init(|| guard)
            }
        };
        let huge = self.backing == Backing::HugePages;
        let fresh = memfd("usec-region-moved", huge, self.len)?;
        let fresh_fd = fresh.as_raw_fd();
        if !self.transparent_huge_pages_eligible {
            // Allocate the fresh pages before the region becomes inaccessible: the copy then
            // only copies. (Best effort: the copy allocates whatever this leaves out. Not
            // for transparent huge pages, which only a mapping's fault gives.)
            // SAFETY: fallocate on the fresh file we own.
            unsafe { libc::fallocate(fresh_fd, 0, 0, self.len as libc::off_t) };
        }
        let mut view = FreshView::map(fresh_fd, self.len)?;
        if self.transparent_huge_pages_eligible {
            // The advice belongs to the mapping and moves with it; given before the first
            // fault, the copy below can fault in huge pages.
            // SAFETY: our own fresh mapping; advice never changes contents.
            unsafe { libc::madvise(view.ptr, self.len, libc::MADV_HUGEPAGE) };
        }
        let current = files.last().expect("a region has a file");

        guard.set_moving(true);
        let moved = self.move_pages(&mut view, current, fresh_fd);
        guard.set_moving(false);
        moved?;

        // Every descriptor the region ever handed out now names the fresh file, and the old
        // file is ours no more: its pages go once the last process mapping it lets go.
        for old in files.iter() {
            // SAFETY: dup2 onto a descriptor we own; it stays open, naming the fresh file.
            unsafe { libc::dup2(fresh_fd, old.as_raw_fd()) };
        }
        self.fd.store(fresh_fd, Ordering::Release);
        files.push(fresh);
        Ok(())
    }

    /// With the range marked as moving: makes it inaccessible, copies the old file into
    /// the fresh one, and puts the fresh view in its place.
    fn move_pages(&self, view: &mut FreshView, old: &File, fresh_fd: i32) -> Result<()> {
        let target = self.as_ptr() as *mut libc::c_void;
        // From here this process's accesses fault and wait (see fault_guard.rs).
        // SAFETY: the region's own mapping; only its protection changes.
        if unsafe { libc::mprotect(target, self.len, libc::PROT_NONE) } != 0 {
            return Err(Error::os("mprotect", std::io::Error::last_os_error()));
        }
        if let Err(error) = self.copy_file(old, fresh_fd, view) {
            // SAFETY: the region's own range, given its rights back.
            unsafe { libc::mprotect(target, self.len, libc::PROT_READ | libc::PROT_WRITE) };
            return Err(error);
        }
        // mremap moves the fresh mapping, page tables and all, over the region in one step
        // and leaves the region untouched if it fails.
        // SAFETY: moves our fresh mapping onto the region's own range, same length.
        let moved = unsafe {
            libc::mremap(view.ptr, self.len, self.len, libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED, target)
        };
        if moved != libc::MAP_FAILED {
            view.ptr = std::ptr::null_mut();
            return Ok(());
        }
        // Kernels that cannot mremap this kind of mapping (older hugetlb): map the fresh
        // file over the range directly.
        // SAFETY: replaces the region's own range with a shared mapping of the fresh file.
        let mapped = unsafe {
            libc::mmap(
                target,
                self.len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fresh_fd,
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            let error = std::io::Error::last_os_error();
            // Give the old pages back rather than leave the range inaccessible.
            // SAFETY: the region's own range.
            unsafe { libc::mprotect(target, self.len, libc::PROT_READ | libc::PROT_WRITE) };
            return Err(Error::os("mmap (MAP_FIXED)", error));
        }
        Ok(())
    }
}
