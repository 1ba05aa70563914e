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
//! Permission changes and the retirement of a QP (destroy, reset, ERROR) are fenced (see
//! `execute.rs`), peer processes are watched through
//! pidfds so operations to a dead one fail within microseconds, and a SEND that finds no
//! RECV is retried after the responder's RNR timer.
//!
//! Known differences from a NIC, by design:
//! - A peer stopped (SIGSTOP) in the middle of an operation delays a permission change of
//!   its responder until it resumes or dies: the change cannot return while an operation
//!   checked against the old rights might still land.
//! - Receive completions live in their QP's receive queue, so they never overrun a CQ;
//!   send completions do, and then fail the QP and raise `CqOverrun`.
//! - Deferred requests (RNR, responder not ready) progress when the QP is posted to or its
//!   send CQ is polled.

mod completion_queue;
mod deferred;
mod execute;
mod fabric;
mod layout;
mod liveness;
#[cfg(all(loom, test))]
mod loom_tests;
mod memory_region;
mod node;
mod peer;
mod process;
mod queue_pair;
mod receive_queue;

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
