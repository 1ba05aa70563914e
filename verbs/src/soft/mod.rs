//! The soft provider: userspace RDMA over shared memory between processes of one host.
//!
//! Device name `soft:<fabric>`. Opening it creates a node: a control block file published
//! in the fabric directory (see [`fabric`]), through which peers find the node's MRs, QPs
//! and CQ doorbells. Registered memory is a [`Region`](usec_regions::Region) (a memfd);
//! a peer maps it through `/proc/<pid>/fd/<n>` on first use.
//!
//! One-sided operations run in the requester's thread, straight into the responder's
//! mapped memory, with every check a responder NIC makes (rkey, bounds, MR and QP rights,
//! atomic alignment, QP state and connection): zero copy, and the responder's CPU is not
//! involved. WRITE bytes land in increasing address order, the last 8-byte word last.
//! Permission changes, the retirement of a QP (destroy, reset, ERROR) and deregistration
//! are fenced (see `fence.rs`): once they return, nothing checked against the old rights
//! lands. A peer that cannot be waited for — stopped (SIGSTOP) or descheduled in the
//! middle of an operation — is waited for at most `fence::WAIT_BOUND` (200 µs), then
//! revoked: the memory it may write moves to a fresh memfd at the same address, contents
//! copied (`relocation.rs`), so its late bytes land in an orphaned file, and its operation
//! completes with an error. Peer processes are watched through pidfds so operations to a
//! dead one fail within microseconds, and a SEND that finds no RECV is retried after the
//! responder's RNR timer. A dying peer is reported (`PeerLost`) sooner still, from a word
//! in its control block that the kernel marks as the process starts to exit
//! (`death_word.rs`).
//!
//! Known differences from a NIC, by design:
//! - Revoking a stuck peer costs a copy of the regions it may write (one MR's region for a
//!   WRITE or atomic; for a SEND through a retired QP, every region of the QP's PD), and
//!   this process's own accesses to a region wait while it moves (see
//!   [`Region::relocate`](usec_regions::Region::relocate), which installs a SIGSEGV handler
//!   on first use; system calls on the region meanwhile fail with `EFAULT`). Operations of
//!   other peers in flight on a moving region are revoked too: WRITEs, READs and the data
//!   of SENDs are redone, atomics fail with `RemoteOperationError` (their effect may or may
//!   not have been copied). A WRITE that was revoked may have landed in part or whole and
//!   still complete with an error.
//! - A QP in ERROR reports a RECV that a stopped peer had claimed only once the peer
//!   resumes or dies.
//! - Receive completions live in their QP's receive queue, so they never overrun a CQ;
//!   send completions do, and then fail the QP and raise `CqOverrun`.
//! - Deferred requests (RNR, responder not ready) progress when the QP is posted to or its
//!   send CQ is polled.

mod completion_queue;
mod death_word;
mod deferred;
mod execute;
mod fabric;
mod fence;
mod layout;
mod liveness;
#[cfg(all(loom, test))]
mod loom_fence;
#[cfg(all(loom, test))]
mod loom_tests;
mod memory_region;
mod node;
mod peer;
mod process;
mod queue_pair;
mod receive_queue;
mod relocation;
mod two_sided;

use std::sync::Arc;

use crate::error::Result;
use crate::provider::DeviceOps;

/// Opens `soft:<fabric>`: a new node on that fabric.
pub(crate) fn open(fabric: &str) -> Result<Arc<dyn DeviceOps>> {
    Ok(Arc::new(node::SoftDevice { node: node::Node::open(fabric)? }))
}

/// Fabrics that exist in the fabric directory.
pub(crate) fn fabrics() -> Result<Vec<String>> {
    fabric::list_fabrics()
}
