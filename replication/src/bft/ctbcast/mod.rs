//! Consistent Tail Broadcast (CTBcast), uBFT's building block, sans IO.
//!
//! One broadcaster numbers messages and sends them to a fixed set of receivers. Every
//! correct receiver that delivers index `i` delivers the same message for it, even when the
//! broadcaster is Byzantine (**consistency**); when the broadcaster is correct, every
//! correct receiver delivers each of its last `tail` messages (**tail validity**). Older
//! ones may be skipped, which is what bounds memory: rings and registers of `tail` slots.
//!
//! # How
//!
//! - **Fast path** (microseconds, no signatures): the broadcaster writes `{index, message}`
//!   into each receiver's ring; each receiver echoes what it got to the others (a copy
//!   below 8 KiB, else a BLAKE3 hash) and delivers once *every* other receiver's echo
//!   matches. Every correct receiver keeps the first message it gets for an index and
//!   echoes only that, so a fast delivery means all correct receivers hold the same bytes.
//! - **Slow path** (a receiver is silent, slow or lying): entered by the receiver's own
//!   fast-path timeout, never from outside. The broadcaster's Ed25519 signature over
//!   `(broadcaster, index, blake3(message))` goes into the receiver's SWMR register at
//!   slot `index % tail`, incarnation `index / tail + 1`; the receiver then reads every
//!   other receiver's register there and delivers when none holds a different signed
//!   message ([`slow_path`]). Two different signed messages for one index are an
//!   [`EquivocationProof`] anyone can check.
//!
//! # An example
//!
//! One broadcaster and two receivers, every action carried by hand (a driver does this
//! with RDMA WRITEs and register operations):
//!
//! ```
//! use ed25519_dalek::SigningKey;
//! use usec_qp_pool::NodeId;
//! use usec_replication::bft::ctbcast::{Action, Broadcaster, CtbConfig, DeliveryPath, Event, Keyring, Receiver};
//!
//! let id = |n| NodeId::new(n).unwrap();
//! let key = SigningKey::from_bytes(&[42; 32]); // from a key store in real life
//! let keys = Keyring::new([(id(0), key.verifying_key())]);
//! let config = CtbConfig { broadcaster: id(0), receivers: vec![id(1), id(2)], ..CtbConfig::default() };
//! let mut broadcaster = Broadcaster::new(config.clone(), key)?;
//! let mut receivers = [Receiver::new(config.clone(), id(1), keys.clone())?, Receiver::new(config, id(2), keys)?];
//!
//! let index = broadcaster.broadcast(b"prepare view 0, batch 1")?;
//! let mut in_flight: Vec<(NodeId, NodeId, Vec<u8>)> = Vec::new(); // (from, to, entry)
//! while let Some(Action::Send { to, bytes }) = broadcaster.poll_action() {
//!     in_flight.push((id(0), to, bytes));
//! }
//! let now_ns = 1_000;
//! while let Some((from, to, bytes)) = in_flight.pop() {
//!     let receiver = &mut receivers[to.get() as usize - 1];
//!     receiver.handle_entry(now_ns, from, &bytes)?;
//!     while let Some(action) = receiver.poll_action() {
//!         if let Action::Send { to: next, bytes } = action {
//!             in_flight.push((to, next, bytes)); // an echo
//!         }
//!     }
//! }
//! for receiver in &mut receivers {
//!     let event = receiver.poll_event();
//!     assert_eq!(event, Some(Event::Delivered { index, message: b"prepare view 0, batch 1".to_vec(), path: DeliveryPath::Fast }));
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Choices, and why
//!
//! - **Sans IO.** [`Broadcaster`] and [`Receiver`] take entries, register completions and
//!   `now` as inputs and return [`Action`]s (`Send`, `RegisterWrite`, `RegisterRead`) and
//!   [`Event`]s. The same code runs under an RDMA driver (Send = WRITE into the ring slot
//!   `index % tail` the sender owns in the receiver's memory), on the soft provider, and in
//!   the deterministic simulation of `tests/ctbcast_sim`.
//! - **Self-judging ring entries** ([`entry`]): checksum, index, stream and sender in
//!   every entry, so a torn, garbage or earlier-lap slot is refused without trusting the
//!   order in which a WRITE's bytes land.
//! - **The signed statement names broadcaster and index next to the hash**
//!   ([`signature`]); `verify_strict`; no hand-written crypto (ed25519-dalek, blake3,
//!   xxhash-rust).
//! - **Signatures off the fast path, and pipelined.** Receivers verify only what a slow
//!   path needs; the broadcaster signs ahead of need in `tick`, after the message's sends
//!   are queued ([`CtbConfig::sign_ahead`]), so a slow path starts with the signature in
//!   hand (or asks for it, signed once per index); with [`CtbConfig::verify_ahead`] a
//!   receiver also verifies it while idle, leaving the slow path only its register write
//!   and reads. One signature per index, not per batch: a register holds one index's
//!   `{hash, signature}` and must be checkable alone.
//! - **Everything malformed is a [`Reject`]**, counted in [`Stats`], never a panic and
//!   never unbounded memory: the receiver keeps a window of `2 × tail` indices.
//! - **Giving up is safe, delivering twice never happens.** When the stream moves a tail
//!   past an index (in the ring, or a newer signed lap in someone's register), the index is
//!   abandoned ([`Event::Abandoned`]) rather than risked.
//!
//! # On RDMA
//!
//! [`crate::bft::node::CtbNode`] carries the actions out: a `Send` becomes a WRITE into a
//! ring the sender owns in the receiver's memory ([`crate::bft::transport`]; one ring of
//! `tail` slots per kind of entry, a broadcaster's message `i` in slot `i % tail`), and
//! `RegisterWrite`/`RegisterRead` become operations on the replicated SWMR registers of
//! the memory nodes (incarnations are 64 bits on both sides; a read that reaches no
//! majority comes back as [`RegisterReadResult::Unavailable`] and is asked again after
//! the fast-path timeout). Consensus on top is [`super::consensus`].

mod action;
mod broadcaster;
mod config;
pub mod entry;
mod instance;
mod proof;
mod receiver;
mod reject;
pub mod signature;
pub mod slow_path;
#[cfg(test)]
mod tests;

pub use action::{AbandonReason, Action, DeliveryPath, Event, RegisterReadResult};
pub use broadcaster::Broadcaster;
pub use config::{CtbConfig, INDEX_LIMIT, TAIL_MAX};
pub use entry::{Body, Entry, Hash, SignatureBytes};
pub use proof::EquivocationProof;
pub use receiver::Receiver;
pub use reject::{Reject, Stats};
pub use signature::{Keyring, SignedHash, REGISTER_VALUE_BYTES};
