//! Checking what clients of a replicated service saw.
//!
//! Clients record each operation's invocation and answer with a [`Recorder`] (one per
//! process, shared by its threads; times on the host's monotonic clock); the history
//! ([`Operation`]s, saved as JSON lines — see [`history`]) is then checked against a
//! [`Model`] of the service by the [`linearizability`] checker, a Wing–Gong search with
//! memoization in the manner of Porcupine: is there one order of the operations, each
//! taking effect at one instant between its invocation and its answer, that the model
//! explains? Operations whose answer never came may have taken effect or not.
//!
//! Models: [`models::Kv`] (Redis's string commands, checked key by key) and
//! [`models::Register`].
//!
//! `check-history FILE...` (this crate's binary) checks saved histories from the shell.
//!
//! Why a crate of its own: it knows nothing of RDMA or replication, it is used by tests
//! of several crates and by tools (the cluster's fault tests, `check-history`), and on
//! its own it builds and tests in seconds.
//!
//! # Example
//!
//! A write and a read that overlap can be ordered either way; a read that starts after a
//! write finished must see it.
//!
//! ```
//! use usec_check::linearizability::{check, Options, Verdict};
//! use usec_check::models::{Register, RegisterInput, RegisterOutput};
//! use usec_check::Operation;
//!
//! let write = Operation::returned(1, RegisterInput::Write(7), 0, 10, RegisterOutput::Ok);
//! let overlapping = Operation::returned(2, RegisterInput::Read, 5, 20, RegisterOutput::Value(0));
//! assert!(check(&Register, &[write.clone(), overlapping], &Options::default()).is_linearizable());
//!
//! let stale = Operation::returned(2, RegisterInput::Read, 15, 20, RegisterOutput::Value(0));
//! let verdict = check(&Register, &[write, stale], &Options::default());
//! let Verdict::NotLinearizable(counterexample) = &verdict else { panic!("{verdict}") };
//! assert_eq!(counterexample.prefix.as_ref().unwrap().1.index, 1); // the stale read
//! println!("{verdict}");
//! ```
#![deny(missing_docs)]
// Unsafe code only where a global allocator needs it (`allocations`).
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod allocations;
mod bytes;
mod error;
pub mod history;
pub mod linearizability;
mod model;
pub mod models;
mod recorder;
pub mod seeds;

pub use bytes::Bytes;
pub use error::Error;
pub use history::{Event, Operation, Outcome};
pub use model::Model;
pub use recorder::{monotonic_ns, Invocation, Recorder};
