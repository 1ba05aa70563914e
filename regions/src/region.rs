//! [`Region`]: one shared, file-backed mapping that a provider can register.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use memmap2::{MmapOptions, MmapRaw};

use crate::copy::{ordered_write, shared_fill, shared_read};
use crate::error::{Error, Result};
use crate::fault_guard::GuardedRange;
use crate::huge_pages::{huge_pages_available, shmem_huge_policy};

/// Size of the huge pages this crate asks for.
pub const HUGE_PAGE_BYTES: usize = 2 << 20;

/// Whether a region should be backed by huge pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HugePages {
    /// Use 2 MiB hugetlb pages when the machine has them reserved, else small pages.
    #[default]
    IfAvailable,
    /// Always use small pages.
    Never,
    /// Fail unless 2 MiB hugetlb pages can back the whole region.
    Required,
}

/// What actually backs a region, reported so benchmarks and logs can say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// An anonymous memfd on 2 MiB hugetlb pages.
    HugePages,
    /// An anonymous memfd on small pages; `fallback_reason` says why huge pages were not
    /// used when they were asked for.
    SmallPages {
        /// Why hugetlb pages were not used (`None` when they were not asked for).
        fallback_reason: Option<String>,
    },
    /// A file the caller named or handed over (e.g. a shared control file, or a peer's
    /// memory opened through `/proc/<pid>/fd`).
    File,
}

impl fmt::Display for Backing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backing::HugePages => write!(f, "memfd, 2 MiB huge pages"),
            Backing::SmallPages { fallback_reason: None } => write!(f, "memfd, small pages"),
            Backing::SmallPages { fallback_reason: Some(why) } => {
                write!(f, "memfd, small pages (huge pages unavailable: {why})")
            }
            Backing::File => write!(f, "shared file"),
        }
    }
}

/// How to create a [`Region`].
#[derive(Clone, Debug)]
pub struct RegionOptions {
    /// Length in bytes; rounded up to the page size (4 KiB, or 2 MiB on huge pages).
    pub len: usize,
    /// Huge page policy.
    pub huge_pages: HugePages,
    /// A name shown in `/proc/<pid>/maps` (memfd name), for debugging.
    pub name: String,
    /// Touch every page at creation so that no page fault lands on a hot path.
    pub populate: bool,
}

impl RegionOptions {
    /// Options for a region of `len` bytes with the defaults: huge pages if available,
    /// populated.
    pub fn new(len: usize) -> Self {
        RegionOptions { len, huge_pages: HugePages::default(), name: "usec-region".into(), populate: true }
    }
}

/// A shared, file-backed mapping: the unit of memory that providers register.
///
/// The bytes are shared with other agents (a NIC, other processes through the soft
/// provider), so a `Region` never gives out `&[u8]` on its safe paths: reads and writes are
/// bounds-checked copies ([`Region::read`], [`Region::write`]) and 8-byte atomics
/// ([`Region::atomic_u64`]). The mapping is page aligned and lives as long as the `Region`.
///
/// To carve it up, take a [`Slice`](crate::Slice) of it ([`Region::slice`],
/// [`Region::whole`]) and hand that to an [`Arena`](crate::Arena) or a
/// [`Slab`](crate::Slab).
///
/// [`Region::relocate`] moves the pages to a fresh file at the same address, so that a
/// process still mapping the old file can no longer reach them.
pub struct Region {
    pub(crate) map: MmapRaw,
    /// The descriptors the region has handed out, the current file's last. A move makes
    /// every one name the fresh file (dup2) and keeps them open as long as the region, so
    /// a descriptor handed out by [`Region::fd`] never closes (or gets reused) under its
    /// borrower.
    pub(crate) files: Mutex<Vec<File>>,
    /// The current file's descriptor (that of the last of `files`).
    pub(crate) fd: AtomicI32,
    /// Set on the first move: the range whose faults wait for moves.
    pub(crate) guard: OnceLock<GuardedRange>,
    pub(crate) len: usize,
    pub(crate) backing: Backing,
    pub(crate) transparent_huge_pages_eligible: bool,
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("addr", &format_args!("{:#x}", self.addr()))
            .field("len", &self.len)
            .field("backing", &self.backing)
            .field("transparent_huge_pages_eligible", &self.transparent_huge_pages_eligible)
            .finish()
    }
}

impl Region {
    /// A populated memfd region of at least `len` bytes, on huge pages when available.
    pub fn new(len: usize) -> Result<Region> {
        Region::with_options(&RegionOptions::new(len))
    }

    /// A memfd region as `options` say.
    pub fn with_options(options: &RegionOptions) -> Result<Region> {
        if options.len == 0 {
            return Err(Error::EmptyRegion);
        }
        let fallback_reason = match options.huge_pages {
            HugePages::Never => None,
            HugePages::IfAvailable | HugePages::Required => {
                match Region::create_memfd(options, true) {
                    Ok(region) => return Ok(region),
                    Err(err) => {
                        // The error alone ("mmap: Cannot allocate memory") does not say that
                        // the usual cause is an empty hugetlb pool; the report does.
                        let reason = format!("{err} ({})", huge_pages_available());
                        if options.huge_pages == HugePages::Required {
                            return Err(Error::HugePagesUnavailable { reason });
                        }
                        Some(reason)
                    }
                }
            }
        };
        let mut region = Region::create_memfd(options, false)?;
        region.backing = Backing::SmallPages { fallback_reason };
        Ok(region)
    }

    #[cfg(not(miri))]
    fn create_memfd(options: &RegionOptions, huge: bool) -> Result<Region> {
        let page = if huge { HUGE_PAGE_BYTES } else { page_size() };
        let len = options.len.checked_next_multiple_of(page).ok_or(Error::TooLarge { len: options.len })?;
        let file = memfd(&options.name, huge, len)?;
        let backing = if huge { Backing::HugePages } else { Backing::SmallPages { fallback_reason: None } };
        // Transparent huge pages only pay off, and only fit, in regions of a huge page or more.
        let advise_huge_pages = !huge && len >= HUGE_PAGE_BYTES;
        Region::map_file(file, len, options.populate, backing, advise_huge_pages)
    }

    /// Miri interprets neither `memfd_create` nor shared file mappings, so under Miri a
    /// region is a private anonymous mapping of small pages, and its file the read end of
    /// a pipe that nothing maps. That is enough for what Miri checks: the crate's
    /// in-process code (copies, slices, views, arenas, slabs) and the soft provider's ring
    /// logic over one mapping.
    #[cfg(miri)]
    fn create_memfd(options: &RegionOptions, huge: bool) -> Result<Region> {
        if huge {
            return Err(Error::os("memfd_create", std::io::ErrorKind::Unsupported.into()));
        }
        let len =
            options.len.checked_next_multiple_of(page_size()).ok_or(Error::TooLarge { len: options.len })?;
        let map = MmapOptions::new().len(len).map_anon().map_err(|e| Error::os("mmap", e))?;
        let (reader, _writer) = std::io::pipe().map_err(|e| Error::os("pipe", e))?;
        let file = File::from(std::os::fd::OwnedFd::from(reader));
        Ok(Region {
            map: map.into(),
            fd: AtomicI32::new(file.as_raw_fd()),
            files: Mutex::new(vec![file]),
            guard: OnceLock::new(),
            len,
            backing: Backing::SmallPages { fallback_reason: None },
            transparent_huge_pages_eligible: false,
        })
    }

    /// Maps an existing file (shared), e.g. a control file in a directory, or another
    /// process's memfd opened through `/proc/<pid>/fd/<n>`. The file must be at least
    /// `len` bytes long.
    pub fn from_file(file: File, len: usize, populate: bool) -> Result<Region> {
        if len == 0 {
            return Err(Error::EmptyRegion);
        }
        let file_len = file.metadata().map_err(|e| Error::os("fstat", e))?.len();
        if file_len < len as u64 {
            return Err(Error::FileTooShort { file_len, len });
        }
        Region::map_file(file, len, populate, Backing::File, false)
    }

    fn map_file(
        file: File,
        len: usize,
        populate: bool,
        backing: Backing,
        advise_huge_pages: bool,
    ) -> Result<Region> {
        // No MAP_POPULATE: the huge page advice must come before the first fault, or the
        // pages are already small. `prefault` populates afterwards.
        let map = MmapOptions::new().len(len).map_raw(&file).map_err(|e| Error::os("mmap", e))?;
        let transparent_huge_pages_eligible = advise_huge_pages && advise_transparent_huge_pages(&map, len);
        if populate {
            prefault(&map, len)?;
        }
        let fd = AtomicI32::new(file.as_raw_fd());
        Ok(Region {
            map,
            files: Mutex::new(vec![file]),
            fd,
            guard: OnceLock::new(),
            len,
            backing,
            transparent_huge_pages_eligible,
        })
    }

    /// Length in bytes (a whole number of pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: regions are never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Start of the mapping in this process.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Start of the mapping as an address (what verbs calls `addr`).
    pub fn addr(&self) -> u64 {
        self.as_ptr() as u64
    }

    /// What backs this region.
    pub fn backing(&self) -> &Backing {
        &self.backing
    }

    /// Whether this small-page memfd region may be given transparent huge pages: it is at
    /// least [`HUGE_PAGE_BYTES`] long, was advised with `madvise(MADV_HUGEPAGE)`, and the
    /// kernel's shmem policy honoured such advice when it was created. The kernel may still
    /// use small pages where it finds no free 2 MiB block. Always false for hugetlb and
    /// file-backed regions.
    pub fn transparent_huge_pages_eligible(&self) -> bool {
        self.transparent_huge_pages_eligible
    }

    /// The file behind the mapping, so another process can map the same pages. After a
    /// [`Region::relocate`] this is the fresh file, and so is what earlier descriptors
    /// name; they all stay open as long as the region.
    pub fn fd(&self) -> BorrowedFd<'_> {
        // Every descriptor ever stored in `fd` belongs to a file in `files`, closed only on drop.
        // SAFETY: so the descriptor stays open while `self` is borrowed.
        unsafe { BorrowedFd::borrow_raw(self.fd.load(Ordering::Acquire)) }
    }

    /// Checks that `offset..offset + len` lies inside the region (overflow included).
    pub fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::OutOfBounds {
                offset: offset as u64,
                len: len as u64,
                region_len: self.len as u64,
            }),
        }
    }

    /// Copies `dst.len()` bytes at `offset` out of the region, with acquire loads of whole
    /// aligned words (see [`crate::copy::shared_read`]).
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.check_range(offset, dst.len())?;
        // SAFETY: the range lies in the mapping (checked); `dst` is a distinct buffer: no overlap.
        unsafe { shared_read(dst.as_mut_ptr(), self.as_ptr().add(offset), dst.len()) };
        Ok(())
    }

    /// Copies `src` into the region at `offset`, in increasing address order with the last
    /// word last (see [`crate::copy::ordered_write`]).
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<()> {
        self.check_range(offset, src.len())?;
        // `src` is a Rust slice, so it cannot alias the mapping, which is never handed out as one.
        // SAFETY: the range lies in the mapping (checked) and the two do not overlap.
        unsafe { ordered_write(self.as_ptr().add(offset), src) };
        Ok(())
    }

    /// Sets `len` bytes at `offset` to `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<()> {
        self.check_range(offset, len)?;
        // SAFETY: the range was checked to lie in the mapping.
        unsafe { shared_fill(self.as_ptr().add(offset), byte, len) };
        Ok(())
    }

    /// Reads a plain-old-data value at `offset` (any alignment).
    pub fn read_pod<T: bytemuck::Pod>(&self, offset: usize) -> Result<T> {
        let mut value = T::zeroed();
        self.read(offset, bytemuck::bytes_of_mut(&mut value))?;
        Ok(value)
    }

    /// Writes a plain-old-data value at `offset` (any alignment).
    pub fn write_pod<T: bytemuck::Pod>(&self, offset: usize, value: &T) -> Result<()> {
        self.write(offset, bytemuck::bytes_of(value))
    }

    /// The 8-byte word at `offset` as an atomic, for counters, flags and polling. `offset`
    /// must be 8-byte aligned.
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64> {
        self.check_range(offset, 8)?;
        if offset % 8 != 0 {
            return Err(Error::Misaligned { offset: offset as u64, align: 8 });
        }
        // AtomicU64 has the layout of u64 and is the sanctioned way to share a word with other agents;
        // the reference lives no longer than `self`, which keeps the mapping alive.
        // SAFETY: in bounds and 8-byte aligned (the mapping is page aligned).
        Ok(unsafe { &*(self.as_ptr().add(offset) as *const AtomicU64) })
    }

    /// The 4-byte word at `offset` as an atomic. `offset` must be 4-byte aligned.
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32> {
        self.check_range(offset, 4)?;
        if offset % 4 != 0 {
            return Err(Error::Misaligned { offset: offset as u64, align: 4 });
        }
        // SAFETY: as in `atomic_u64`, for a 4-byte aligned word.
        Ok(unsafe { &*(self.as_ptr().add(offset) as *const AtomicU32) })
    }

    /// The bytes at `offset..offset + len` as a slice.
    ///
    /// # Safety
    /// For as long as the slice lives nobody — no other thread, process, or RDMA operation
    /// — may write those bytes, and the range must be in bounds.
    pub unsafe fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        debug_assert!(self.check_range(offset, len).is_ok());
        // SAFETY: the caller promises bounds and the absence of concurrent writers.
        unsafe { std::slice::from_raw_parts(self.as_ptr().add(offset), len) }
    }

    /// The bytes at `offset..offset + len` as a mutable slice.
    ///
    /// # Safety
    /// For as long as the slice lives nobody else may read or write those bytes, and the
    /// range must be in bounds.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        debug_assert!(self.check_range(offset, len).is_ok());
        // SAFETY: the caller promises bounds and exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr().add(offset), len) }
    }
}

/// A new memfd of `len` bytes, on 2 MiB hugetlb pages if `huge`.
pub(crate) fn memfd(name: &str, huge: bool, len: usize) -> Result<File> {
    let name = CString::new(name.replace('\0', "_")).expect("NULs were replaced");
    let mut flags = libc::MFD_CLOEXEC;
    if huge {
        flags |= libc::MFD_HUGETLB | libc::MFD_HUGE_2MB;
    }
    // SAFETY: `name` is a valid NUL-terminated string; the flags are valid memfd flags.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    if fd < 0 {
        return Err(Error::os("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len as u64).map_err(|e| Error::os("ftruncate memfd", e))?;
    Ok(file)
}

/// Asks for transparent huge pages and says whether the kernel's policy lets them come.
fn advise_transparent_huge_pages(map: &MmapRaw, len: usize) -> bool {
    // MADV_HUGEPAGE changes only how future faults are served, never the contents.
    // SAFETY: the mapping is `len` bytes long and owned by us.
    let rc = unsafe { libc::madvise(map.as_mut_ptr().cast(), len, libc::MADV_HUGEPAGE) };
    // madvise succeeds even when the policy is `never`, so the policy decides.
    rc == 0 && shmem_huge_policy().is_some_and(|policy| policy.allows_advised_mappings())
}

fn prefault(map: &MmapRaw, len: usize) -> Result<()> {
    // MADV_POPULATE_WRITE allocates every page now and fails with an error we can report
    // (and fall back on), where a plain touch would SIGBUS on a hugetlb memfd without free
    // pages.
    // SAFETY: the mapping is `len` bytes long, writable, and owned by us.
    let rc = unsafe { libc::madvise(map.as_mut_ptr().cast(), len, libc::MADV_POPULATE_WRITE) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EINVAL) {
        return Err(Error::os("madvise(MADV_POPULATE_WRITE)", err));
    }
    // Kernels before 5.14 lack the advice: write-fault each page ourselves. Adding zero
    // atomically leaves the contents alone even if another process maps the file already.
    for offset in (0..len).step_by(page_size()) {
        // Atomics are how this crate shares bytes with other agents.
        // SAFETY: `offset < len` lies inside the mapping, and any address is aligned for an AtomicU8.
        let byte = unsafe { &*(map.as_mut_ptr().add(offset) as *const AtomicU8) };
        byte.fetch_add(0, Ordering::Relaxed);
    }
    Ok(())
}

/// The system's small page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}
