//! The ibverbs provider: any libibverbs device (`mlx5_0`, `rxe0`, `siw0`), through
//! `rdma-sys`.
//!
//! The NIC does the work here; this module translates the API's types to libibverbs'
//! structures and back, owns the raw objects in small RAII handles, and adds what the
//! C toolkits left to the caller:
//!
//! - **Devices by name.** A device is opened by its name, never "the last one"; no
//!   device at all is [`NoDevice`](crate::Error::NoDevice), an unknown name
//!   [`UnknownDevice`](crate::Error::UnknownDevice) with the names that exist
//!   ([`device`]).
//! - **Ports and GIDs.** [`QpOptions`](crate::QpOptions) picks the port and the GID
//!   index; the port's link layer decides the addressing: LID routing on InfiniBand
//!   (global routing when both sides select a GID index), GID routing on RoCE (index 0
//!   unless chosen). A bad port, an index past the GID table, or an empty GID entry is a
//!   clear error at QP creation ([`address`]).
//! - **Inline data** is capped at what the device accepts, probed once per opened device
//!   by creating throwaway QPs, since `ibv_query_device` does not report it.
//! - **Memory registration** failing for lack of locked memory names `ulimit -l` and the
//!   current limit ([`memory_region`]).
//! - **Access changes on a connected QP** use `ibv_modify_qp(IBV_QP_ACCESS_FLAGS)`; a
//!   device that refuses gets a reconnect that keeps the peer working ([`access`]).
//! - **Posting** builds work-request chains on the stack, no allocation ([`post`]);
//!   **polling** converts completions from a batch allocated once per CQ
//!   ([`completion_queue`]).
//!
//! # What safe code can make the NIC touch
//!
//! Posting is safe in this API because the device checks every SGE against the memory
//! registrations of the QP's protection domain (lkey, bounds, local write), as it does for
//! remote keys, and every registration keeps its memory alive
//! ([`MemoryRegion`](crate::MemoryRegion) holds its `Region`). The one thing libibverbs
//! reads without a key check is an inline payload, copied from the SGE's address at post
//! time: that is why only [`Payload::Inline`](crate::Payload::Inline), a `&[u8]` borrowed
//! for the duration of the post, ever sets `IBV_SEND_INLINE`.
//!
//! # Known limits
//!
//! - iWARP devices (`siw`, `irdma` in iWARP mode) open and register memory, but their RC
//!   connections are set up by the connection manager (`rdma_cm`), which this provider
//!   does not use: connecting a QP on one fails with a message saying so.
//! - The opcode of a failed completion is what the device reports; the verbs
//!   specification leaves it undefined (only `wr_id`, `status` and `qp_num` are).
//! - What SoftRoCE (`rxe`, Linux 6.1, rdma-core 44) does differently from a NIC, as seen
//!   by the tests in the SoftRoCE VM: no QP async events (`QP_ACCESS_ERR`, `QP_REQ_ERR`) reach the responder; misaligned
//!   atomics and atomics whose local SGE is not 8 bytes are refused at post time (EINVAL)
//!   instead of completing with an error; an unknown lkey completes as
//!   `LocalQpOperationError`; a SEND larger than the RECV fails at the sender as
//!   `RemoteOperationError`; the send queue takes more than the reported `max_send_wr`
//!   before refusing; `ibv_rereg_mr` is unsupported (MR access changes register anew, so
//!   the keys change); atomics are atomic only against the device (`atomics_global` is
//!   false); inline data is capped at 512 bytes; failed completions report opcode SEND,
//!   even for receives; RECVs posted to a QP in ERROR are flushed only because this
//!   provider moves the QP to ERROR again after posting them.
//! - Testing knob: the environment variable `USEC_IBVERBS_ACCESS_FALLBACK=always`, read
//!   when a QP is created, makes that QP take the reconnect path of an access change even
//!   where the device supports `ibv_modify_qp` with access flags (used by the SoftRoCE
//!   tests, since rxe supports it).

mod access;
mod address;
mod completion_queue;
mod convert;
mod device;
mod event;
mod memory_region;
mod post;
mod protection_domain;
mod queue_pair;
mod raw;
mod transitions;

use std::sync::Arc;

use crate::error::Result;
use crate::provider::DeviceOps;

/// Opens the ibverbs device called `name`.
pub(crate) fn open(name: &str) -> Result<Arc<dyn DeviceOps>> {
    Ok(Arc::new(device::IbvDevice::open(name)?))
}

/// The names of the ibverbs devices of this machine (empty when there are none, or when
/// the kernel has no RDMA support).
pub(crate) fn device_names() -> Result<Vec<String>> {
    device::device_names()
}
