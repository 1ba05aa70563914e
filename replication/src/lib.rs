//! Replication on the usec toolkit.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod applier;
pub mod cft;
pub mod driver;
mod codec;
pub mod error;
pub mod log;
pub mod state_machine;

pub use error::{Error, Result};
pub use state_machine::{History, RestoreError, StateMachine};
