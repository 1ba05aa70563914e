//! One RDMA verbs API over three providers.
//!
//! A device name picks the provider: `soft:<fabric>` is userspace RDMA over shared memory
//! between processes of one host, `sim:<name>` the same semantics in one process under
//! virtual time ([`sim`]), and any other name (`mlx5_0`, `rxe0`) a libibverbs device
//! (cargo feature `ibverbs`). [`Context::provider`] says which, as a [`ProviderKind`]
//! whose predicates ([`ProviderKind::is_emulated`], [`ProviderKind::has_real_time`], …)
//! are what callers should branch on, never the variant itself. The objects are the verbs ones: a [`Context`] per opened
//! device, [`ProtectionDomain`]s, [`MemoryRegion`]s over [`Region`]s, [`CompletionQueue`]s,
//! and reliable-connected [`QueuePair`]s that go RESET → INIT → RTR → RTS against a peer's
//! [`Endpoint`].
//!
//! ```
//! use std::sync::Arc;
//! use usec_verbs::{AccessFlags, Completion, Context, Payload, QpOptions, Region, SendWr, Status};
//!
//! // Two nodes of one simulated fabric; "soft:demo" would do the same across processes.
//! let (a, b) = (Context::open("sim:crate-doc")?, Context::open("sim:crate-doc")?);
//! let (pd_a, pd_b) = (a.alloc_pd()?, b.alloc_pd()?);
//! let (mut cq_a, cq_b) = (a.create_cq(16)?, b.create_cq(16)?);
//! let memory = Arc::new(Region::new(4096)?);
//! let mr = pd_b.register(&memory, AccessFlags::all_remote())?;
//! let mut qp_a = pd_a.create_qp(&cq_a, &cq_a, &QpOptions::default())?;
//! let mut qp_b = pd_b.create_qp(&cq_b, &cq_b, &QpOptions::default())?;
//! // Endpoints travel as bytes (or hex text) in real programs.
//! qp_a.connect(&qp_b.endpoint(), &Default::default())?;
//! qp_b.connect(&qp_a.endpoint(), &Default::default())?;
//!
//! // A one-sided WRITE into b's memory, b's CPU uninvolved.
//! let target = mr.remote_addr(128)?;
//! qp_a.post_send(&[SendWr::write(7, target, Payload::Inline(b"hello"))])?;
//! let mut done = [Completion::default(); 1];
//! while cq_a.poll(&mut done) == 0 {}
//! assert_eq!((done[0].wr_id, done[0].status), (7, Status::Success));
//! let mut landed = [0u8; 5];
//! memory.read(128, &mut landed)?;
//! assert_eq!(&landed, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Safety of posting
//!
//! Posting is safe, by ownership and by validation, as on a NIC: local memory is named by
//! SGEs whose lkey every provider checks (an unknown key, a range outside the MR, or a
//! missing local write right completes with [`Status::LocalProtectionError`]); an MR keeps
//! its [`Region`] alive, and deregistering it waits for operations in flight; inline
//! payloads are byte slices copied at post time. Registered memory is shared with other
//! agents, so [`Region`] only hands out copies and atomics on its safe paths.
//!
//! ## Semantics every provider keeps
//!
//! RC ordering; a WRITE's bytes land in increasing address order, the last 8-byte word
//! last; one-sided operations checked against the rkey, bounds, and both the MR's and the
//! responder QP's rights (an error moves both QPs to ERROR, later requests flush); after
//! [`QueuePair::set_access`] or [`MemoryRegion::rereg_access`] returns, no operation with
//! the old rights can land, nor after a responder QP is destroyed, reset or moved to ERROR,
//! nor after an MR is deregistered — not even one of a peer process stopped (SIGSTOP) in
//! the middle of it, whose operation then fails (the soft provider revokes it within a
//! bounded time; see the README's known limits); requests to a dead peer fail instead of
//! hanging; `wr_id`s come back untouched.
//!
//! ## Errors to branch on
//!
//! Conditions a caller acts on are typed, not text: connecting to a peer that is gone is
//! [`Error::PeerUnreachable`] with a [`PeerLoss`] (its process exited, its pidfd reported
//! the death, the node closed or crashed, no such node or QP, a stale endpoint;
//! [`PeerLoss::process_died`] sums it up), an endpoint that does not fit is
//! [`Error::BadEndpoint`] with a [`BadEndpoint`] (another provider's or another fabric's,
//! the wrong link layer, undecodable), and an unknown device prefix is
//! [`Error::UnknownProvider`].
#![deny(missing_docs)]

mod access;
mod completion;
mod completion_queue;
mod device;
mod emulation;
mod error;
mod event;
#[cfg(feature = "ibverbs")]
mod ibverbs;
mod memory_region;
mod primitive;
mod probe;
mod protection_domain;
mod provider;
pub mod qp;
pub mod sim;
mod soft;
mod work_request;

pub use access::AccessFlags;
pub use completion::{Completion, CompletionOpcode, Status};
pub use completion_queue::CompletionQueue;
pub use device::{devices, Context, DeviceAttributes, DeviceInfo, LinkLayer, PortAttributes, PortState};
pub use error::{BadEndpoint, Error, Incompatibility, PeerLoss, PostRejection, Result};
pub use event::{AsyncEvent, AsyncEventKind};
pub use memory_region::MemoryRegion;
pub use probe::PeerProbe;
pub use protection_domain::ProtectionDomain;
pub use provider::ProviderKind;
pub use qp::{ConnectOptions, Endpoint, QpCaps, QpOptions, QpState, QueuePair};
pub use usec_regions::Region;
pub use work_request::{Payload, RecvWr, RemoteAddr, SendOp, SendWr, Sge};
