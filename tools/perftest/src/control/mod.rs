//! The TCP control connection, spoken as linux-rdma perftest speaks it, so that our server
//! works with perftest's client and perftest's server with our client.
//!
//! perftest's server listens on TCP port 18515 and its client connects. Both then exchange,
//! in lock step, the version, the page and cache line sizes, the MTU and a "key" message
//! per QP (its LID, QP number, PSN, rkey, buffer address and GID), and use further key
//! exchanges as barriers around the run and to close it; the bandwidth tests also exchange
//! their results ([`wire`] has the messages, [`handshake`] the order). Two usec-perftest
//! processes recognise each other by a mark in the version message and then also exchange
//! a [`hello::Hello`], so that a mismatch (another test, size, iteration count, duration,
//! QP count, provider) is one clear line on both sides, and on the soft and sim providers
//! their endpoints, which perftest's key message cannot carry. With perftest at the other
//! end, what perftest does not exchange cannot be checked: a version older than 5.70 is
//! refused in perftest's words, a peer whose outstanding reads show it runs a READ or
//! atomic test against our WRITE or SEND test (or the reverse) is refused at the first key,
//! and anything else shows as a step or a run that never completes, which times out.
//!
//! Every read is of a known, bounded length and has a timeout ([`Control`]); only the wait
//! for a peer's run takes as long as that run may take.

pub mod connection;
pub mod handshake;
pub mod hello;
pub mod wire;

pub use connection::Control;
pub use handshake::QpInfo;
