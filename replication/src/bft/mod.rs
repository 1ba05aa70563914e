//! uBFT: Byzantine fault-tolerant state machine replication on 2f + 1 replicas, with
//! disaggregated memory standing in for the extra replicas BFT usually needs.
//!
//! - [`consensus`] — the replicated state machine on CTBcast, sans IO: leader per view,
//!   batched and pipelined prepares, the fast path when all 2f + 1 promise, the slow path
//!   by f + 1 Ed25519 shares, checkpoints, catch-up, view change by timeouts, and the
//!   client library; simulated with Byzantine replicas in `tests/bft_sim`.
//! - [`ctbcast`] — Consistent Tail Broadcast: a broadcaster's messages reach every correct
//!   receiver identically, in microseconds when everyone is up (echoes, no signatures) and
//!   with Ed25519 signatures and SWMR registers when someone is not.
//! - The disaggregated memory: passive [memory nodes](memory_node) that only register
//!   memory, and the single-writer [registers](register) replicas keep on them (CTBcast's
//!   slow path publishes `{hash, signature}` there).
//! - [`transport`] — rings in registered memory that only their sender may WRITE, read by
//!   polling: tail rings for CTBcast, credit rings (backpressure) for point-to-point
//!   messages.
//! - [`node`] — a CTBcast participant on RDMA ([`node::CtbNode`]): its broadcaster and the
//!   receivers of the others' streams over rings and the memory nodes' registers; with
//!   simulated Byzantine broadcasters (equivocation, garbage) for the process tests.
//!
//! # Why the memory is built this way
//!
//! - **Memory nodes are passive.** Their CPU sets up QPs at start-up and then only serves
//!   control-plane events (a reconnecting replica); every register write and read is a
//!   one-sided RDMA operation. They fail by crashing only, so majorities of them suffice.
//! - **Single writer by RDMA rights, not by trust.** A memory node gives each replica a
//!   protection domain of its own in which that replica's slice of the registers is
//!   registered writable and the whole read-only (qp-pool's
//!   [grants](usec_qp_pool::NodeConfig::grant)). A write anywhere else completes with a
//!   remote access error, on a NIC as on the soft and sim providers: a Byzantine replica
//!   cannot touch another's registers, whatever rkey it forges.
//! - **Self-validating copies.** A register is two sub-slots, each `{xxh3(incarnation ‖
//!   value), incarnation, value}`; the writer alternates them, so a torn read is detected
//!   and the other sub-slot holds the previous write. What no correct writer leaves behind
//!   is reported as Byzantine.
//! - **Majorities that are majorities.** `n / 2 + 1` of `n` memory nodes, right for even
//!   `n` (the prototype's `(n + 1) / 2` is not).
//! - **Sans IO.** [`register::RegisterSet`] returns RDMA actions and takes completions and
//!   time; [`register::RegisterPort`] carries them out on a qp-pool cluster, so the same
//!   code runs on a NIC, on the soft provider, and under the deterministic simulator.
//!
//! [`driver`] carries consensus's actions out: its CTBcast streams over [`transport`]'s
//! rings and the memory nodes' registers, signature shares and catch-up on point-to-point
//! rings, client requests and replies over TCP (uBFT uses RDMA RPC there).
//!
//! Not yet: state snapshots for a replica more than two windows behind.

pub mod consensus;
pub mod ctbcast;
pub mod driver;
pub mod memory_node;
pub mod node;
pub mod register;
pub mod transport;
