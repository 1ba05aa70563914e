//! CTBcast on RDMA: a participant's roles driven over rings and registers.
//!
//! - which ring each entry takes, and the group's ring plan: [`channels`];
//! - CTBcast's register actions on the replicated registers of the memory nodes:
//!   [`registers`];
//! - one participant, turned step by step: [`participant`] ([`CtbNode`]);
//! - lying broadcasters for the multi-process tests: [`byzantine`].
//!
//! The node is a driver in the sense of [`crate::driver`]: it owns the cluster, ports and
//! roles, and moves bytes and completions between them; the protocol is the roles'.

pub mod byzantine;
pub mod channels;
pub mod participant;
pub mod registers;
#[cfg(test)]
mod tests;

pub use byzantine::Behaviour;
pub use channels::{P2pConfig, P2P_STREAM};
pub use participant::{CtbNode, CtbNodeConfig, NodeStats};
