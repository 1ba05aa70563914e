//! uKharon-style membership (placeholder doc; the tour comes with the drivers).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod backoff;
pub mod ballot;
pub mod buffer;
pub mod driver;
mod error;
pub mod layout;
pub mod learner;
pub mod op;
pub mod port;
pub mod proposer;
pub mod slot;
pub mod view;
pub mod view_change;

pub use backoff::BackoffConfig;
pub use ballot::Ballot;
pub use driver::{Detectors, MembershipNode, PaxosDriver};
pub use error::{Error, Result};
pub use layout::Layout;
pub use learner::{Learned, Learner, LearnerConfig};
pub use op::{Action, OpClass, Outcome, Role, Token};
pub use port::PaxosPort;
pub use proposer::{Proposer, ProposerConfig, ProposerEvent, ProposerStats};
pub use slot::Slot;
pub use view::{Member, MemberKind, View};
pub use view_change::{ViewChange, ViewChangeConfig, ViewEvent};
