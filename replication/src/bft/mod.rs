//! uBFT: Byzantine state machine replication on 2f+1 replicas, over disaggregated memory.
//!
//! - [`ctbcast`] — Consistent Tail Broadcast: a broadcaster's messages reach every correct
//!   receiver identically, in microseconds when everyone is up (echoes, no signatures) and
//!   with Ed25519 signatures and SWMR registers when someone is not.

pub mod ctbcast;
