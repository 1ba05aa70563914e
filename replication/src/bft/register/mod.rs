//! Single-writer multi-reader registers on disaggregated memory, as uBFT keeps them.
//!
//! Each replica owns a set of registers that it alone may write and every replica may
//! read. They live on passive [memory nodes](super::memory_node), 2f_m + 1 of them, each
//! holding a copy of every register; a write completes once a majority holds it, a read
//! takes the newest valid copy of a majority, so registers outlive f_m crashed memory
//! nodes. A replica's write is confined to its own registers by RDMA itself (its QP to a
//! memory node sits in a protection domain where only its slice is writable), so a
//! Byzantine replica can damage only its own registers — which readers then detect: every
//! copy validates itself with a hash, and what a correct writer never leaves behind is
//! reported as [`ReadResult::Byzantine`], never a panic.
//!
//! - the bytes of a register and their validation: [`sub_slot`];
//! - where registers sit on a memory node, and the memory they take: [`layout`];
//! - majorities, and what a read concludes: [`quorum`];
//! - the sans-IO core — commands in, RDMA actions out, completions in, events out:
//!   [`set`] ([`RegisterSet`]);
//! - the actions carried out on a qp-pool cluster, on any provider: [`port`]
//!   ([`RegisterPort`]);
//! - all of it in one value waited on through a qp-pool driver, for benchmarks, tests and
//!   tools: [`replica`] ([`RegisterReplica`]).

pub mod layout;
pub mod port;
pub mod quorum;
pub mod replica;
pub mod set;
pub mod sub_slot;
#[cfg(test)]
mod tests;

pub use layout::{RegisterLayout, CTBCAST_VALUE_BYTES};
pub use port::RegisterPort;
pub use quorum::{majority, Misbehaviour, ReadResult};
pub use replica::RegisterReplica;
pub use set::{Action, Event, OpId, Outcome, RegisterConfig, RegisterSet, Token};
