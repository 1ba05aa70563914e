//! Access rights of memory regions and queue pairs.

bitflags::bitflags! {
    /// What an MR, or the responder side of a QP, allows.
    ///
    /// A one-sided operation lands only if both the target MR and the target QP allow it.
    /// As in libibverbs, remote write and remote atomic rights on an MR require local write.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct AccessFlags: u32 {
        /// The local HCA may write the memory (RECV buffers, READ and atomic results).
        const LOCAL_WRITE = 1 << 0;
        /// Peers may RDMA WRITE into it.
        const REMOTE_WRITE = 1 << 1;
        /// Peers may RDMA READ from it.
        const REMOTE_READ = 1 << 2;
        /// Peers may run compare-and-swap and fetch-and-add on it.
        const REMOTE_ATOMIC = 1 << 3;
    }
}

impl AccessFlags {
    /// Every right: what a region used freely by all peers is registered with.
    pub fn all_remote() -> AccessFlags {
        AccessFlags::LOCAL_WRITE
            | AccessFlags::REMOTE_WRITE
            | AccessFlags::REMOTE_READ
            | AccessFlags::REMOTE_ATOMIC
    }

    /// Whether these flags are acceptable for a memory registration.
    pub(crate) fn valid_for_mr(self) -> bool {
        let needs_local_write = self.intersects(AccessFlags::REMOTE_WRITE | AccessFlags::REMOTE_ATOMIC);
        !needs_local_write || self.contains(AccessFlags::LOCAL_WRITE)
    }

    /// The right a remote operation of `kind` needs.
    pub(crate) fn needed_for(kind: RemoteOpKind) -> AccessFlags {
        match kind {
            RemoteOpKind::Write => AccessFlags::REMOTE_WRITE,
            RemoteOpKind::Read => AccessFlags::REMOTE_READ,
            RemoteOpKind::Atomic => AccessFlags::REMOTE_ATOMIC,
        }
    }
}

/// The kinds of one-sided operation, by the right they need at the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RemoteOpKind {
    Write,
    Read,
    Atomic,
}
