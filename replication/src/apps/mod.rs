//! Replicated applications: state machines, and the drivers that put them on the network.
//!
//! - [`kv`]: a key-value store that Redis clients drive;
//! - [`orderbook`]: an order-matching engine (limit and market orders, cancel, replace,
//!   price-time priority) with a compact binary command encoding and a text command set
//!   a RESP front end can hand over argument by argument;
//! - [`resp`]: the protocol their clients speak;
//! - [`server`]: the front end that serves an application over RESP, unreplicated or
//!   through Mu;
//! - [`fuzz`]: what the fuzz target checks, also run on stable over its corpus.

pub mod fuzz;
pub mod kv;
pub mod orderbook;
pub mod resp;
pub mod server;
