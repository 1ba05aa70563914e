//! The BFT replica on RDMA: a consensus [`Replica`](super::consensus::Replica) whose
//! actions are carried over the CTBcast rings and the memory nodes' registers, and whose
//! clients reach it over TCP.
//!
//! - [`replica_node`]: [`ReplicaNode`] — the replica's CTBcast streams over the rings of
//!   [`super::transport`] and the registers of [`super::register`] (the same plumbing as
//!   [`super::node::CtbNode`], with the consensus core owning the CTBcast roles), its
//!   signature shares and catch-up over the point-to-point credit rings, and its replies
//!   queued for the client transport;
//! - [`framing`]: length-prefixed frames on a byte stream;
//! - [`client_link`]: the replica's side of the client transport ([`ClientServer`]) and
//!   the client's ([`ClientLink`], driving the sans-IO [`Client`](super::consensus::Client)).
//!
//! # The client transport, and what uBFT does instead
//!
//! uBFT's clients talk to replicas with RDMA RPC. Here a client opens one TCP connection
//! to each replica and sends length-prefixed frames holding the signed
//! [`Request`](super::consensus::Request) bytes; replicas answer with signed
//! [`Reply`](super::consensus::Reply) frames. TCP adds tens of microseconds on loopback,
//! so end-to-end latencies measured through it are not uBFT's; the replica-to-replica part
//! (CTBcast, registers, shares) is on RDMA. Nothing on the connection is trusted: the
//! hello that names the client only routes replies, requests are checked against the
//! client's public key, and the client accepts a result once f + 1 replicas signed it.

pub mod client_link;
pub mod framing;
pub mod replica_node;
#[cfg(test)]
mod tests;

pub use client_link::{ClientLink, ClientServer};
pub use replica_node::{ReplicaNode, ReplicaNodeConfig, ReplicaNodeStats};
