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
//!
//! # The core, by hand
//!
//! The set never touches memory itself: it says what to WRITE or READ where, and learns how
//! it went. Here three memory nodes are plain byte arrays, and the driver's part (done by
//! [`RegisterPort`] on RDMA) is a loop of a few lines. On the simulator and the soft
//! provider, see `tests/bft_registers_sim.rs` and `tools/bft-memory/tests`.
//!
//! ```
//! use usec_replication::bft::register::{
//!     Action, Event, Outcome, ReadResult, RegisterConfig, RegisterLayout, RegisterSet,
//! };
//!
//! let layout = RegisterLayout::for_ctbcast(3, 128); // 256 registers per replica, 96-byte values
//! let mut memory_nodes = vec![vec![0u8; layout.memory_bytes()]; 3];
//! let mut writer = RegisterSet::new(RegisterConfig::new(layout, 3, 0))?;
//! let mut reader = RegisterSet::new(RegisterConfig::new(layout, 3, 1))?;
//!
//! // What a port does: carry each action out, hand its outcome back.
//! let mut carry_out = |set: &mut RegisterSet, crashed: usize| {
//!     while let Some(action) = set.poll_action() {
//!         let token = action.token();
//!         match action {
//!             _ if action.memory_node() == crashed => set.handle_completion(0, token, Outcome::Failed),
//!             Action::Write { memory_node, offset, bytes, .. } => {
//!                 memory_nodes[memory_node][offset..offset + bytes.len()].copy_from_slice(&bytes);
//!                 set.handle_completion(0, token, Outcome::Written);
//!             }
//!             Action::Read { memory_node, offset, len, .. } => {
//!                 let copy = memory_nodes[memory_node][offset..offset + len].to_vec();
//!                 set.handle_completion(0, token, Outcome::Read(&copy));
//!             }
//!         }
//!     }
//! };
//!
//! // Replica 0 publishes {hash, signature} for message 300 of its first broadcaster...
//! let (slot, incarnation) = layout.ctbcast_register(128, 0, 300).expect("in range");
//! let op = writer.write(slot, incarnation, &[7; 96])?;
//! carry_out(&mut writer, 2); // memory node 2 is down: a majority is enough
//! assert_eq!(writer.poll_event(), Some(Event::Written { op, slot, incarnation }));
//!
//! // ... and replica 1 reads it, with another memory node down.
//! let op = reader.read(0, slot)?;
//! carry_out(&mut reader, 0);
//! let Some(Event::Read { op: done, result, .. }) = reader.poll_event() else { panic!("no read") };
//! assert_eq!((done, result), (op, ReadResult::Value { incarnation, value: vec![7; 96] }));
//! # Ok::<(), usec_replication::Error>(())
//! ```

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
