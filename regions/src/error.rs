//! The crate's error type.

/// What went wrong with a region.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A range `offset..offset + len` that does not fit (or overflows).
    #[error("range {offset}+{len} is out of bounds of a region of {region_len} bytes")]
    OutOfBounds {
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// Length of the region (or sub-range) it was checked against.
        region_len: u64,
    },
    /// An offset that is not a multiple of the alignment the access needs.
    #[error("offset {offset} is not {align}-byte aligned")]
    Misaligned {
        /// The offending offset.
        offset: u64,
        /// The alignment needed.
        align: u64,
    },
    /// A region of zero bytes was asked for.
    #[error("a region must not be empty")]
    EmptyRegion,
    /// A length that overflows when rounded up to whole pages.
    #[error("a region of {len} bytes is too large")]
    TooLarge {
        /// The requested length.
        len: usize,
    },
    /// `HugePages::Required` could not be met.
    #[error("huge pages unavailable: {reason}")]
    HugePagesUnavailable {
        /// Why (typically: no 2 MiB pages reserved in /proc/sys/vm/nr_hugepages).
        reason: String,
    },
    /// A file to be mapped is shorter than the mapping asked for.
    #[error("file of {file_len} bytes is shorter than the {len} bytes to map")]
    FileTooShort {
        /// The file's length.
        file_len: u64,
        /// The mapping length asked for.
        len: usize,
    },
    /// Elements `first..first + count` of a typed view that has `view_len` elements.
    #[error("elements {first}+{count} are out of bounds of a view of {view_len} elements")]
    IndexOutOfBounds {
        /// First element asked for.
        first: usize,
        /// Number of elements asked for.
        count: usize,
        /// Number of elements in the view.
        view_len: usize,
    },
    /// A buffer whose length must match a view's exactly does not.
    #[error("buffer holds {actual} elements, the view has {expected}")]
    LengthMismatch {
        /// Elements in the view.
        expected: usize,
        /// Elements in the buffer handed in.
        actual: usize,
    },
    /// An alignment that is zero or not a power of two.
    #[error("alignment {align} is not a power of two")]
    InvalidAlignment {
        /// The alignment asked for.
        align: usize,
    },
    /// An arena has too little space left for an allocation.
    #[error("arena exhausted: {requested} bytes aligned to {align} asked for, {remaining} bytes remain")]
    ArenaExhausted {
        /// Bytes asked for.
        requested: usize,
        /// Alignment asked for.
        align: usize,
        /// Bytes left in the arena before aligning.
        remaining: usize,
    },
    /// A slab was asked for slots of zero bytes.
    #[error("slab slots must not be empty")]
    EmptySlot,
    /// A slot handed to a slab that did not allocate it.
    #[error("slot belongs to slab {slot_slab_id}, not to slab {slab_id}")]
    ForeignSlot {
        /// The slab that allocated the slot.
        slot_slab_id: u64,
        /// The slab it was handed to.
        slab_id: u64,
    },
    /// A slot that is not allocated right now: freed already (a double free), or a handle
    /// from an earlier allocation of the same index.
    #[error("slot {index} is not allocated (freed already, or a stale handle)")]
    SlotNotAllocated {
        /// Index of the slot in its slab.
        index: usize,
    },
    /// A remote range `addr..addr + len` that wraps around the address space.
    #[error("remote range {addr:#x}+{len} overflows the address space")]
    RemoteRangeOverflow {
        /// Start address.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// An absolute access `addr..addr + len` that does not lie in a remote region.
    #[error("access {addr:#x}+{len} is outside remote region {region_addr:#x}+{region_len}")]
    RemoteOutOfBounds {
        /// Start of the access.
        addr: u64,
        /// Length of the access.
        len: u64,
        /// Start of the remote region.
        region_addr: u64,
        /// Length of the remote region.
        region_len: u64,
    },
    /// A serialised remote region descriptor of the wrong length.
    #[error("remote region descriptor is {actual} bytes, expected {expected}")]
    DescriptorLength {
        /// Bytes handed in.
        actual: usize,
        /// Bytes a descriptor of this version has.
        expected: usize,
    },
    /// Bytes that do not start with the remote region descriptor magic byte.
    #[error("not a remote region descriptor: first byte {found:#04x}, expected {expected:#04x}")]
    DescriptorMagic {
        /// The first byte found.
        found: u8,
        /// The magic byte.
        expected: u8,
    },
    /// A remote region descriptor of a version this build does not decode.
    #[error("remote region descriptor version {found} is not supported (this build reads {supported})")]
    DescriptorVersion {
        /// The version found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn os(op: &'static str, source: std::io::Error) -> Error {
        Error::Os { op, source }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
