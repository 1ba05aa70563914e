//! uKharon-style membership (placeholder doc; the tour comes with the drivers).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod backoff;
pub mod ballot;
pub mod buffer;
mod error;
pub mod layout;
pub mod op;
pub mod proposer;
pub mod slot;

pub use backoff::BackoffConfig;
pub use ballot::Ballot;
pub use error::{Error, Result};
pub use layout::Layout;
pub use op::{Action, OpClass, Outcome, Role, Token};
pub use proposer::{Proposer, ProposerConfig, ProposerEvent, ProposerStats};
pub use slot::Slot;
