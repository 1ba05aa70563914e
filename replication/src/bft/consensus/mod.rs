//! uBFT's consensus on CTBcast, sans IO: 2f + 1 replicas, a leader per view, the fast path
//! when everyone answers, signatures only on the slow path, checkpoints, view change by
//! timeouts, and a client library.
//!
//! # The protocol
//!
//! Every replica has one CTBcast stream ([`super::ctbcast`]) that every other replica
//! receives, and processes each stream strictly in index order ([`stream`]): every correct
//! replica then sees the same messages of a replica in the same order, Byzantine or not.
//!
//! - **Normal case** ([`normal`]): the leader of view `v` (`replicas[v % n]`) CTBcasts
//!   `Prepare {v, slot, batch}` (batches of signed client requests, pipelined up to
//!   `window` slots); replicas check it and CTBcast `Promise`; decided on the **fast
//!   path** when all n promised the same batch (no signature anywhere), else, after the
//!   slow-path timeout, by Ed25519 shares: f + 1 make a prepare certificate
//!   ([`certificate`]), CTBcast in `Commit`; decided on f + 1 commits (**slow path**).
//! - **Execution** in slot order into a [`StateMachine`](crate::state_machine::StateMachine),
//!   each client number at most once, with signed replies; the [`Client`] accepts a result
//!   once f + 1 replicas signed it.
//! - **Checkpoints** every `window / 2` slots: replicas CTBcast a signed digest of their
//!   history and state; f + 1 equal digests make it stable and slide the window; a replica
//!   that missed decisions fetches the batches up to a stable checkpoint and checks them
//!   against it ([`catchup`](mod@catchup)), or, further behind than the batches kept, the
//!   state itself ([`state_transfer`]).
//! - **View change** ([`view_change`]) on the replicas' own timeouts: `Seal`, then the
//!   new leader's `NewView` naming f + 1 sealers, checked by everyone against the same
//!   streams, and re-proposals derived from them ([`derive`](mod@derive)).
//!
//! # IO
//!
//! A [`Replica`] takes ring entries ([`Replica::handle_ctbcast`]: any stream's, routed by
//! the entry's broadcaster field), register completions per stream, and point-to-point
//! messages; it emits [`Action::Ctbcast`] (a CTBcast action tagged with its stream: ring
//! write, register write or read), [`Action::ToReplica`] (signature shares) and
//! [`Action::ToClient`] (replies). Every input is bytes from the network: anything
//! malformed is a counted [`Reject`], never a panic, and every buffer is bounded by the
//! configuration (window, tail, batch, replicas, clients).
//!
//! # Choices, and why
//!
//! - **Client requests are Ed25519-signed** (see [`request`]): every replica must reach
//!   the same verdict on a request relayed by a possibly Byzantine leader.
//! - **Promises go through CTBcast**, not point to point, so what a replica promised is a
//!   fact every correct replica agrees on; that is what lets a new view built from only
//!   f + 1 seals keep a slot decided on the fast path without any signature on it (see
//!   [`derive`](mod@derive) for the argument). It costs one CTBcast per replica per slot.
//! - **A replica's state in a view change is not a claim it makes** but what its stream
//!   said before its seal. Lies are therefore limited to what the stream can carry, and
//!   those are checked: certificates verify, new views name real seals and stable
//!   checkpoints, re-proposals match the derivation.
//! - **Checkpoints are CTBcast and signed**: the stream pins who said what (f + 1 equal
//!   digests include a correct replica's), and the signatures make the stable checkpoint a
//!   certificate a replica that missed decisions can be shown ([`catchup`](mod@catchup)).
//!
//! # Not here
//!
//! - A stream with a proven equivocation here is given up for good: safe, but that
//!   sender's messages no longer count here. (A gap — more than a CTBcast tail behind —
//!   is repaired by a recap, see [`recap`](mod@recap).)
//! - A checkpoint encodes and hashes the whole state, on the executing replica's path,
//!   every `window / 2` slots (a KV of a million keys: about 150 ms in release, see
//!   `measure_kv_state_transfer`); an incremental state digest is not built.
//! - One outstanding request per client (uBFT allows a client window of 16).
//! - The RDMA driver is [`super::driver`]; the BFT KV's processes are `tools/bft-kv`.

mod action;
pub mod catchup;
pub mod certificate;
mod client;
mod config;
pub mod derive;
pub mod normal;
pub mod recap;
mod reject;
mod replica;
pub mod request;
pub mod state_transfer;
pub mod stream;
#[cfg(test)]
mod tests;
pub mod view_change;
pub mod wire;

pub use action::{Action, DecisionPath, Event};
pub use client::{Client, ClientSend};
pub use config::ConsensusConfig;
pub use reject::{Reject, Stats};
pub use replica::{Replica, Status, TamperFn};
pub use request::{ClientId, ClientKeyring, Reply, Request};
pub use wire::{batch_digest, Batch, DirectMessage, Limits, RecapPart, StreamMessage, STATE_CHUNK_BYTES};
