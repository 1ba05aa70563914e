//! What the sans-IO roles ask for, and what they are told back.
//!
//! A role returns [`Action`]s — a CAS on a slot, a WRITE into a buffer, a READ — addressed
//! to an acceptor by its index and an offset in its region (see [`crate::layout`]), each
//! with a [`Token`]. The driver carries them out (a work request on a qp-pool QP, or the
//! same operation on local memory when the acceptor is the node itself) and hands each
//! one's [`Outcome`] back with its token, in the order the acceptor executed them. Every
//! action comes back exactly once, a failure included; a role never waits for anything
//! else.

use usec_qp_pool::wr_kind::RegisteredKind;

/// Which role posted an operation, and what kind it is (a work-request kind each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// A proposer's CAS on a slot.
    Cas,
    /// A proposer's WRITE into its value buffer.
    Write,
    /// A proposer's READ of value buffers.
    ProposerRead,
    /// A learner's READ of slots or value buffers.
    LearnerRead,
}

impl OpClass {
    /// Its kind in qp-pool's registry.
    pub fn kind(self) -> RegisteredKind {
        match self {
            OpClass::Cas => RegisteredKind::PaxosCas,
            OpClass::Write => RegisteredKind::PaxosWrite,
            OpClass::ProposerRead => RegisteredKind::PaxosProposerRead,
            OpClass::LearnerRead => RegisteredKind::PaxosLearnerRead,
        }
    }

    /// The class of a registered kind, if it is one of these.
    pub fn of_kind(kind: RegisteredKind) -> Option<OpClass> {
        [OpClass::Cas, OpClass::Write, OpClass::ProposerRead, OpClass::LearnerRead]
            .into_iter()
            .find(|class| class.kind() == kind)
    }

    /// Whether a proposer (rather than a learner) posted it.
    pub fn is_proposer(self) -> bool {
        !matches!(self, OpClass::LearnerRead)
    }
}

/// Names one operation: its class, its acceptor, and its poster's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Token {
    /// What it is.
    pub class: OpClass,
    /// The acceptor's index.
    pub acceptor: u16,
    /// The poster's counter (the driver may keep only its low 44 bits).
    pub sequence: u64,
}

/// An operation on an acceptor's region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Compare-and-swap of the 8-byte word at `offset`.
    Cas {
        /// Its name.
        token: Token,
        /// Where.
        offset: usize,
        /// The value predicted.
        compare: u64,
        /// The value written if the prediction holds.
        swap: u64,
    },
    /// WRITE of `bytes` at `offset`.
    Write {
        /// Its name.
        token: Token,
        /// Where.
        offset: usize,
        /// What.
        bytes: Vec<u8>,
    },
    /// READ of `len` bytes at `offset`.
    Read {
        /// Its name.
        token: Token,
        /// Where.
        offset: usize,
        /// How much.
        len: usize,
    },
}

impl Action {
    /// Its token.
    pub fn token(&self) -> Token {
        match self {
            Action::Cas { token, .. } | Action::Write { token, .. } | Action::Read { token, .. } => *token,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// A CAS ran: `old` is the word it found (the swap happened iff it equals the
    /// prediction).
    Swapped {
        /// The word before.
        old: u64,
    },
    /// A WRITE landed.
    Written,
    /// A READ's bytes.
    Read(&'a [u8]),
    /// It failed, or its fate is unknown (the QP broke; a CAS may or may not have run).
    Failed,
}

/// A sans-IO role the drivers can run: actions out, outcomes in, time passed in.
pub trait Role {
    /// Moves the role's time on (timeouts, back-offs, periodic reads).
    fn tick(&mut self, now_ns: u64);

    /// The next operation to carry out, if any.
    fn poll_action(&mut self) -> Option<Action>;

    /// How one of its operations ended, at `now_ns` on the role's clock.
    fn handle_completion(&mut self, now_ns: u64, token: Token, outcome: Outcome<'_>);
}
