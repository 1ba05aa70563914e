//! What a proposer keeps per acceptor: its best knowledge of the slots, the one chain of
//! operations it has in flight there, what it wants to post next, and which bank to write.
//!
//! At most one chain is in flight per acceptor — a CAS, a WRITE then a CAS, or a READ —
//! so the slot word it knows is exactly the acceptor's after the last completion (a CAS
//! that ran returns what it found: the prediction, in which case the swap is there now,
//! or the word that beat it). A CAS that failed in transit (the QP broke) may or may not
//! have run: the knowledge is then kept as it was, and the next CAS, mispredicting,
//! brings back the truth. Posting one chain at a time also bounds what a slow or
//! unreachable acceptor holds of the proposer's queues: a new round waits for its chain.

use crate::ballot::Ballot;
use crate::buffer::BankChooser;
use crate::slot::Slot;

/// What a chain in flight does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChainKind {
    /// A prepare CAS.
    Prepare { compare: Slot, swap: Slot },
    /// A value WRITE into `bank`, then an accept CAS; `proposal` indexes the instance's
    /// proposals.
    Accept { compare: Slot, swap: Slot, bank: u8, proposal: usize },
    /// A READ of a proposer's two banks.
    Read,
}

/// A chain in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chain {
    /// The sequence number of its tokens.
    pub sequence: u64,
    /// The `propose` call, instance and round it was posted for.
    pub generation: u64,
    pub instance: u64,
    pub round: u64,
    pub kind: ChainKind,
}

/// What to post when the acceptor's chain is done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Want {
    #[default]
    Nothing,
    Prepare,
    Accept,
    Read,
}

/// Where an acceptor stands in the current round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Mark {
    /// No answer yet.
    #[default]
    Waiting,
    /// Promised the round's ballot, having accepted `accepted` (in this instance).
    Promised { accepted: Ballot },
    /// Accepted the round's value.
    Accepted,
    /// Promised a higher ballot.
    Refused,
    /// Unreachable for now (an operation failed).
    Down,
}

impl Mark {
    /// Whether the acceptor can no longer help this round.
    pub fn is_lost(self) -> bool {
        matches!(self, Mark::Refused | Mark::Down)
    }
}

/// One acceptor, as the proposer sees it.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    /// The last known word of each ring position.
    pub known: Vec<Slot>,
    pub chain: Option<Chain>,
    pub want: Want,
    pub banks: BankChooser,
    pub mark: Mark,
    /// Mispredicted CASes this round (each one means the slot moved under the proposer).
    pub mispredictions: u32,
}

impl Link {
    pub fn new(ring: usize) -> Link {
        Link {
            known: vec![Slot::EMPTY; ring],
            chain: None,
            want: Want::Nothing,
            banks: BankChooser::default(),
            mark: Mark::Waiting,
            mispredictions: 0,
        }
    }

    /// Takes a CAS's outcome into the knowledge of `position`: the swap if the prediction
    /// held, else the word found.
    pub fn learn(&mut self, position: usize, compare: Slot, swap: Slot, old: u64) -> bool {
        let swapped = old == compare.to_word();
        self.known[position] = if swapped { swap } else { Slot::from_word(old) };
        swapped
    }
}
