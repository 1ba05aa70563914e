//! Replicated applications: state machines, and the drivers that put them on the network.
//!
//! - [`kv`]: a key-value store that Redis clients drive;
//! - [`resp`]: the protocol they speak;
//! - [`server`]: the front end that serves an application over RESP, unreplicated or
//!   through Mu.

pub mod kv;
pub mod resp;
pub mod server;
