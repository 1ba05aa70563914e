//! Why an input was refused, and the counters that keep every refusal visible.
//!
//! A Byzantine peer controls the bytes it writes into our rings and registers, so nothing
//! it sends may panic us or grow our memory: each refusal is a value of [`Reject`] returned
//! to the driver and counted in [`Stats`], and the input is otherwise ignored. A torn entry
//! (a WRITE still landing) is refused the same way as garbage; the driver reads the slot
//! again later.

use std::collections::BTreeMap;

use usec_qp_pool::NodeId;

/// Why an input was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reject {
    /// Fewer bytes than the entry header, or than the header says the entry holds.
    #[error("truncated entry: {len} bytes, {needed} needed")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// Bytes the entry needs.
        needed: usize,
    },
    /// The checksum does not match: a torn write, garbage, or a forged header.
    #[error("entry checksum mismatch (torn or garbage)")]
    Checksum,
    /// An entry kind this version does not know.
    #[error("unknown entry kind {0}")]
    UnknownKind(u8),
    /// A payload whose length does not fit its kind.
    #[error("{kind} entry with a {len}-byte payload")]
    PayloadLength {
        /// The entry's kind.
        kind: &'static str,
        /// Its payload bytes.
        len: usize,
    },
    /// A message longer than the configured maximum.
    #[error("message of {len} bytes, at most {max} allowed")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The entry names another broadcaster's stream.
    #[error("entry for broadcaster {found}'s stream, this is {expected}'s")]
    WrongBroadcaster {
        /// This stream's broadcaster.
        expected: NodeId,
        /// The one the entry names.
        found: u16,
    },
    /// The entry claims a sender other than the channel it arrived on.
    #[error("entry claims sender {claimed} but came from {from}")]
    WrongSender {
        /// Whose channel (ring) it arrived on.
        from: NodeId,
        /// The sender it names.
        claimed: u16,
    },
    /// A kind of entry this sender may not send to us (an echo from the broadcaster, a
    /// message from a receiver, anything from a stranger).
    #[error("{kind} entry from {from}, who may not send it here")]
    UnexpectedSender {
        /// Who sent it.
        from: NodeId,
        /// Its kind.
        kind: &'static str,
    },
    /// An index so large that index arithmetic could overflow.
    #[error("index {0} is out of range")]
    IndexOutOfRange(u64),
    /// Older than the tail: the stream has moved on and the index is no longer kept.
    #[error("index {index} is older than the tail (oldest kept: {oldest_kept})")]
    Stale {
        /// The index.
        index: u64,
        /// The oldest index still kept.
        oldest_kept: u64,
    },
    /// Further ahead than the receiver keeps state for.
    #[error("index {index} is too far ahead (newest accepted: {newest_accepted})")]
    TooFarAhead {
        /// The index.
        index: u64,
        /// The newest index that would have been accepted.
        newest_accepted: u64,
    },
    /// The same input again (a replay, or the ring read twice).
    #[error("duplicate {kind} for index {index}")]
    Duplicate {
        /// Its kind.
        kind: &'static str,
        /// The index.
        index: u64,
    },
    /// Different content for an index that already has some from this sender: the first
    /// is kept (a correct sender never does this).
    #[error("conflicting {kind} for index {index}; the first is kept")]
    Conflicting {
        /// Its kind.
        kind: &'static str,
        /// The index.
        index: u64,
    },
    /// A signature that does not verify for the broadcaster, the index and our message.
    #[error("signature for index {index} does not verify")]
    ForgedSignature {
        /// The index.
        index: u64,
    },
}

impl Reject {
    /// A short stable name for counting.
    pub fn name(&self) -> &'static str {
        match self {
            Reject::Truncated { .. } => "truncated",
            Reject::Checksum => "checksum",
            Reject::UnknownKind(_) => "unknown-kind",
            Reject::PayloadLength { .. } => "payload-length",
            Reject::TooLarge { .. } => "too-large",
            Reject::WrongBroadcaster { .. } => "wrong-broadcaster",
            Reject::WrongSender { .. } => "wrong-sender",
            Reject::UnexpectedSender { .. } => "unexpected-sender",
            Reject::IndexOutOfRange(_) => "index-out-of-range",
            Reject::Stale { .. } => "stale",
            Reject::TooFarAhead { .. } => "too-far-ahead",
            Reject::Duplicate { .. } => "duplicate",
            Reject::Conflicting { .. } => "conflicting",
            Reject::ForgedSignature { .. } => "forged-signature",
        }
    }
}

/// What a role has done and refused so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages delivered on the fast path (all echoes matched).
    pub delivered_fast: u64,
    /// Messages delivered on the slow path (signature and registers checked).
    pub delivered_slow: u64,
    /// Indices given up without delivery (left the tail, or proven equivocation).
    pub abandoned: u64,
    /// Indices that entered the slow path.
    pub slow_paths: u64,
    /// Signatures produced (broadcaster).
    pub signatures_made: u64,
    /// Signatures checked (receiver), valid or not.
    pub signatures_checked: u64,
    /// Signatures that came after their message was delivered on the fast path (the
    /// broadcaster signs ahead of need): not needed, not kept, not a fault.
    pub late_signatures: u64,
    /// Register reads whose owner proved Byzantine (bad verdict, garbage, bad signature).
    pub byzantine_registers: u64,
    /// Equivocations proven.
    pub equivocations: u64,
    /// Register reads that reached no majority of memory nodes (and were asked again).
    pub registers_unavailable: u64,
    /// Refused inputs, by [`Reject::name`].
    pub rejected: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Counts `reject` and hands it back, for `return Err(self.stats.refuse(..))`.
    pub(crate) fn refuse(&mut self, reject: Reject) -> Reject {
        *self.rejected.entry(reject.name()).or_default() += 1;
        reject
    }

    /// All refusals together.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}
