//! Replication on the usec toolkit: services made fault tolerant without giving up
//! microseconds.
//!
//! - [`bft`] — **uBFT**: Byzantine SMR on 2f+1 replicas; so far its Consistent Tail
//!   Broadcast ([`bft::ctbcast`]) and its disaggregated memory: passive memory nodes and
//!   the single-writer registers replicas keep on them, replicated over majorities.
//! - [`cft`] — **Mu**: crash-tolerant state machine replication. The leader replicates a
//!   command with one RDMA WRITE into each follower's log; RDMA permissions make it the
//!   only writer; a new leader takes over in well under a millisecond.
//! - What the systems share: the [`StateMachine`] trait, the [`applier`] that applies
//!   each command once, the replicated [`log`] as it sits in registered memory (layout,
//!   self-validating entries, batches, records), and the work-request kinds registered in
//!   `usec_qp_pool::RegisteredKind`.
//! - [`driver`] — the loops that turn the sans-IO roles: a pinned busy-poll thread, a
//!   cooperative loop for small machines, and a simulated group under virtual time.
//! - [`apps`] — replicated applications: an order-matching engine.
//!
//! # A tour
//!
//! Three replicas of a command history on the simulator — the same code that runs over
//! the soft provider or a NIC, driven in virtual time. A leader is elected, a client's
//! commands are decided and applied everywhere; the leader crashes and another takes
//! over without losing anything.
//!
//! ```
//! use usec_replication::cft::MuConfig;
//! use usec_replication::driver::sim::SimGroup;
//! use usec_replication::driver::DetectorConfig;
//! use usec_replication::History;
//!
//! let config = MuConfig { capacity: 64, pipeline: 8, slot_bytes: 512, snapshot_bytes: 1 << 16, ..MuConfig::default() };
//! let mut group = SimGroup::new("tour", 42, 3, &config, DetectorConfig::default(), &[], History::default)?;
//!
//! // The lowest live id leads once permissions are switched and recovery is done.
//! assert!(group.run_until(5_000_000, |group| group.leaders() == [0]));
//!
//! // A client hands commands to the leader's thread and gets each response (here: its
//! // position in the history) once a majority holds it.
//! let mut client = group.driver(0).unwrap().client(1);
//! let tickets: Vec<_> = ["deposit 10", "withdraw 3"]
//!     .iter()
//!     .map(|command| client.submit(command.as_bytes()))
//!     .collect::<Result<_, _>>()?;
//! let mut responses = vec![None; tickets.len()];
//! group.run_until(5_000_000, |_| {
//!     for (ticket, response) in tickets.iter().zip(&mut responses) {
//!         *response = response.take().or_else(|| ticket.try_take());
//!     }
//!     responses.iter().all(Option::is_some)
//! });
//! assert_eq!(responses[1], Some(Ok(2u64.to_le_bytes().to_vec())));
//!
//! // The leader crashes; the next lowest id takes over and the history goes on.
//! group.crash(0);
//! assert!(group.run_until(5_000_000, |group| group.leaders() == [1]));
//! let ticket = group.driver(1).unwrap().client(2).submit(b"deposit 5")?;
//! let mut response = None;
//! group.run_until(5_000_000, |_| {
//!     response = response.take().or_else(|| ticket.try_take());
//!     response.is_some()
//! });
//! assert_eq!(response, Some(Ok(3u64.to_le_bytes().to_vec())));
//! group.run_for(1_000_000);
//! let history = &group.driver(2).unwrap().replica().state_machine().applied;
//! assert_eq!(history, &[b"deposit 10".to_vec(), b"withdraw 3".to_vec(), b"deposit 5".to_vec()]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod applier;
pub mod apps;
pub mod bft;
pub mod cft;
mod codec;
pub mod driver;
pub mod error;
pub mod log;
pub mod state_machine;

pub use error::{Error, Result};
pub use state_machine::{History, RestoreError, StateMachine};
