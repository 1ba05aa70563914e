//! The sim provider: RDMA between simulated nodes in this process, under virtual time and
//! a seeded scheduler, with injected faults.
//!
//! A [`SimFabric`] is a network of nodes; each node is one device
//! ([`Context`](crate::Context)), as one process with one NIC. Verbs objects on it behave
//! as on a NIC (the semantics every provider keeps, see below), but nothing happens in
//! real time: a message's one-way latency is sampled from the fabric's seeded RNG, and the
//! message arrives when the fabric runs that event. Same seed, same calls: same run, and
//! the same [`SimFabric::trace_hash`].
//!
//! # A tour
//!
//! Two nodes, a WRITE, a crash, and a replay:
//!
//! ```
//! use std::sync::Arc;
//! use usec_verbs::sim::{LatencyModel, SimFabric};
//! use usec_verbs::{AccessFlags, AsyncEventKind, Completion, ConnectOptions, QpOptions, Region, SendWr, Status};
//!
//! fn scenario(seed: u64) -> Result<u64, usec_verbs::Error> {
//!     let fabric = SimFabric::create("tour", seed)?;
//!     fabric.set_latency(LatencyModel::uniform(800, 1_200));
//!
//!     // Two nodes, each with memory, a CQ and a QP; the QPs connect to each other.
//!     let (_, a) = fabric.open_node()?;
//!     let (b_id, b) = fabric.open_node()?;
//!     let (pd_a, pd_b) = (a.alloc_pd()?, b.alloc_pd()?);
//!     let (memory_a, memory_b) = (Arc::new(Region::new(4096)?), Arc::new(Region::new(4096)?));
//!     let mr_a = pd_a.register(&memory_a, AccessFlags::all_remote())?;
//!     let mr_b = pd_b.register(&memory_b, AccessFlags::all_remote())?;
//!     let (mut cq_a, cq_b) = (a.create_cq(16)?, b.create_cq(16)?);
//!     let mut qp_a = pd_a.create_qp(&cq_a, &cq_a, &QpOptions::default())?;
//!     let mut qp_b = pd_b.create_qp(&cq_b, &cq_b, &QpOptions::default())?;
//!     let (endpoint_a, endpoint_b) = (qp_a.endpoint(), qp_b.endpoint());
//!     qp_a.connect(&endpoint_b, &ConnectOptions::default())?;
//!     qp_b.connect(&endpoint_a, &ConnectOptions::default())?;
//!
//!     // a WRITEs "hello" into b's memory. A poll that finds its CQ empty runs the
//!     // fabric's next event, so a plain spin loop makes progress in virtual time.
//!     memory_a.write(0, b"hello")?;
//!     qp_a.post_send(&[SendWr::write(1, mr_b.remote_addr(0)?, &mr_a.sge(0, 5)?)])?;
//!     let mut done = [Completion::default(); 1];
//!     while cq_a.poll(&mut done) == 0 {}
//!     assert_eq!((done[0].wr_id, done[0].status), (1, Status::Success));
//!     let mut landed = [0u8; 5];
//!     memory_b.read(0, &mut landed)?;
//!     assert_eq!(&landed, b"hello");
//!     assert!(fabric.now_ns() >= 1_600, "a round trip is two one-way latencies");
//!
//!     // b crashes. a's next WRITE fails once its ACK timer has expired on every retry,
//!     // and a has meanwhile heard of the loss through an asynchronous event.
//!     fabric.crash(b_id);
//!     qp_a.post_send(&[SendWr::write(2, mr_b.remote_addr(0)?, &mr_a.sge(0, 5)?)])?;
//!     while cq_a.poll(&mut done) == 0 {}
//!     assert_eq!((done[0].wr_id, done[0].status), (2, Status::RetryExceeded));
//!     assert_eq!(a.poll_event().map(|event| event.kind), Some(AsyncEventKind::PeerLost));
//!     Ok(fabric.trace_hash())
//! }
//!
//! // A fabric goes with its last handle, so its name is free again; the same seed replays
//! // the same run, another seed (almost surely) does not.
//! assert_eq!(scenario(42)?, scenario(42)?);
//! assert_ne!(scenario(42)?, scenario(43)?);
//! # Ok::<(), usec_verbs::Error>(())
//! ```
//!
//! `Context::open("sim:<name>")` opens a new node too, on the live fabric of that name or
//! on a new one with seed 0; [`SimFabric::of`] and [`SimFabric::node_of`] find the fabric
//! and node of any sim context.
//!
//! # Driving time
//!
//! With auto-advance on (the default) an empty poll runs one event. A protocol harness
//! turns it off ([`SimFabric::set_auto_advance`]) and moves time itself:
//! [`SimFabric::step`], [`SimFabric::advance_to`], [`SimFabric::run_until_idle`]. Time never
//! goes backwards and never moves on its own. A spin on `poll` that waits for something
//! that cannot come (a request held by a paused node) spins forever, as it would on a NIC.
//!
//! The fabric is `Send + Sync`, but a run is deterministic only when one thread drives it.
//!
//! # Timeline of a request
//!
//! A request posted on QP q at time t leaves at once (the NIC validates its local SGEs and
//! reads what it carries then) and arrives at t + latency(A → B), never before q's previous
//! request. There it is checked and executed: WRITEs land in increasing address order with
//! the last 8-byte word last, READs snapshot the bytes, atomics run on the responder's
//! memory, SENDs and WRITE_WITH_IMMs consume the next RECV. The response (ACK, data, NAK)
//! arrives a latency(B → A) later, never before q's previous response; READ and atomic data
//! land in the requester's SGEs then, and the send completion appears (if signaled, or on
//! error), always in post order. Requests of different QPs interleave by their sampled
//! times; ties break by the seed.
//!
//! # Semantics and the choices made where NICs differ
//!
//! - Checks come from the shared NIC checks (`emulation::checks`), as in the soft
//!   provider: post-time refusals, request shape, local SGEs (when the request starts, and
//!   again when READ or atomic data lands), remote checks (rkey, bounds, MR and QP rights,
//!   atomic alignment), RECV scatter.
//! - An error completion moves the requester QP to ERROR: every later and outstanding
//!   request, and every posted RECV, completes as `Flushed` (signaled or not). A flushed
//!   request may still have executed at the responder (its packet was on the wire, or
//!   only its ACK was).
//! - A request the responder refuses (rkey, bounds, MR or QP rights: `RemoteAccessError`;
//!   a misaligned atomic: `RemoteInvalidRequest`) is NAKed, and, as on a NIC, the
//!   responder QP goes to ERROR too, with a `QpAccessError` or `QpRequestError` event on
//!   its context. A RECV too small completes the RECV with `LocalLengthError` and fails the
//!   sender with `RemoteInvalidRequest`; a RECV whose SGEs fail the local checks completes
//!   with that status and fails the sender with `RemoteOperationError`; both move the
//!   responder QP to ERROR with `QpRequestError`.
//! - WRITE_WITH_IMM checks the rkey before looking for a RECV; without a RECV nothing is
//!   written (RNR).
//! - A request the responder does not answer (partition, crashed or paused-forever peer,
//!   QP missing, not RTR/RTS, or connected elsewhere) is retransmitted each ACK timeout
//!   ([`ack_timeout_ns`](crate::qp::ack_timeout_ns) of the RTS `timeout`; an "infinite"
//!   timeout 0 counts as [`UNLIMITED_ACK_TIMEOUT_NS`]) and fails with `RetryExceeded`
//!   after `retry_count` retransmissions: timeout × (retry count + 1) after the last
//!   progress. Retransmissions run at most once at the responder (a reply cache).
//! - RNR: the RNR NAK goes back, the requester waits the responder's `min_rnr_timer` and
//!   sends again, up to `rnr_retry` times (7: forever), then `RnrRetryExceeded`. Later
//!   requests of the QP wait behind it.
//! - Rights changes (`set_access`, `rereg_access`) take effect at once: a request executed
//!   later in virtual time is checked against the new rights. A deregistered MR or a
//!   destroyed QP fails later requests cleanly (remote access error, or dropped → retry
//!   exceeded); the fabric keeps each registered region alive while it is registered.
//! - A fenced request waits until earlier READs and atomics of its QP have completed.
//! - RESET empties the queues without completions and gives the QP a new PSN: a QP
//!   reconnects after both sides reset and exchange endpoints again.
//! - CQ overrun: the completion is kept anyway (a sim CQ never loses one), the QP concerned
//!   goes to ERROR and a `CqOverrun` event names it. A work request stops counting against
//!   `max_send_wr` / `max_recv_wr` when its completion, or a later one of the same queue,
//!   has been polled.
//! - Crash, pause, partition: see [`SimFabric::crash`], [`SimFabric::pause`],
//!   [`SimFabric::partition`]. Peers learn of a crash through a `PeerLost` event
//!   [`PEER_LOST_DELAY_NS`] after it, which models the soft provider's process-exit
//!   detection.
//! - Not modelled: MTU segmentation (a message is one packet), `max_rd_atomic` limits,
//!   completion moderation, PSN wrap.
//!
//! Device limits: 4096 QPs, 4096 CQs and 65 536 MRs per node, 16 384 work requests per
//! queue, 16 SGEs, 2^20 CQ entries, 2^40-byte MRs, 1 KiB inline, global atomics.

mod completion_queue;
mod device;
mod fabric;
mod faults;
mod latency;
mod memory;
mod node;
mod queue_pair;
mod requester;
mod responder;
mod scheduler;
mod trace;
mod wire;
mod world;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use fabric::SimFabric;
pub use latency::{LatencyDistribution, LatencyModel, LatencySpikes};
pub use node::NodeId;
pub use trace::{TraceEvent, TraceKind};

use crate::error::Result;
use crate::provider::DeviceOps;

/// How long after a crash the nodes connected to the crashed one get their `PeerLost`
/// events: 10 µs, about what the soft provider needs to see a process exit.
pub const PEER_LOST_DELAY_NS: u64 = 10_000;

/// The ACK timeout used when a QP's RTS `timeout` is 0 ("wait forever" on a NIC): one
/// second of virtual time per attempt, so that nothing in a simulation waits forever.
pub const UNLIMITED_ACK_TIMEOUT_NS: u64 = 1_000_000_000;

/// `Context::open("sim:<name>")`.
pub(crate) fn open(fabric: &str) -> Result<Arc<dyn DeviceOps>> {
    fabric::open_device(fabric)
}

/// The names of the live sim fabrics of this process.
pub(crate) fn fabrics() -> Result<Vec<String>> {
    Ok(fabric::live_names())
}
