//! Rings in registered memory: how uBFT's processes put bytes in front of each other with
//! one-sided RDMA WRITEs, the receiver's CPU polling its own memory.
//!
//! Every (sender, receiver) pair has the rings a [`RingPlan`] lists, each named by a
//! [`StreamId`]: `slots` slots of a fixed size in the receiver's memory, which only that
//! sender may write (its QPs sit in a protection domain of their own at the receiver,
//! where only its rings are registered writable: [`port`]). Frame `s` of a ring goes to
//! slot `s % slots` and judges itself ([`frame`]: checksum over sequence and payload), so
//! a reader refuses torn, stale and garbage slots and reads them again later
//! ([`inbound`]'s rules).
//!
//! Two kinds of ring ([`RingMode`]):
//!
//! - **Tail** (CTBcast): a sender never waits; a reader that falls a whole ring behind
//!   loses the oldest frames and keeps the newest, which is what Consistent *Tail*
//!   Broadcast promises anyway. Memory is bounded by the ring.
//! - **Credit** (point-to-point messages of a consensus layer: replica to replica,
//!   replica to client): a sender never overwrites a frame its reader has not consumed.
//!   The reader publishes how far it has read in a counter (a plain store into its own
//!   memory); the sender knows the value it last read, and when it is a whole ring ahead
//!   of it, READs the counter again and refuses the send ([`SendError::Full`]) until room
//!   comes back. Backpressure costs one READ per ring-full, nothing on the common path,
//!   and memory stays bounded on both sides; what to do with a refused message (hold it,
//!   batch it later, drop it) is the caller's choice.
//!
//! - the slot format: [`frame`];
//! - which rings, and where: [`layout`];
//! - reading and writing one ring: `inbound`, `outbound`;
//! - all of it on a qp-pool cluster: [`port`] ([`RingPort`]).
//!
//! The port is a driver component like the register port: it posts on the cluster and
//! polls memory, and holds no protocol logic. Its busy loop belongs to its caller, who
//! may yield between polls.

pub mod frame;
mod inbound;
pub mod layout;
mod outbound;
pub mod port;
#[cfg(test)]
mod tests;

pub use inbound::InboundStats;
pub use layout::{RingMode, RingPlan, RingSpec, StreamId};
pub use port::{RingMemory, RingPort, RingStats, SendError};
