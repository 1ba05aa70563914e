//! Why an input was refused, and what a role has done and refused so far.

use std::collections::BTreeMap;

use thiserror::Error;

/// An input the consensus roles refused. Refusals change nothing and are counted in
/// [`Stats`]; every one is what a Byzantine (or broken) sender, or a stale copy, produces.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Reject {
    /// Fewer bytes than the message's fields need.
    #[error("truncated {what}")]
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// Bytes left over after the message.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A message kind this version does not know.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// A length field beyond what the configuration allows.
    #[error("{what} of {len} exceeds the limit {max}")]
    TooLarge {
        /// What is too long.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A sender this role does not know, or who may not send this.
    #[error("{kind} from {from}, who may not send it")]
    UnexpectedSender {
        /// Who sent it.
        from: String,
        /// What it was.
        kind: &'static str,
    },
    /// A client request whose signature does not verify (a forged or altered request).
    #[error("request {number} of client {client} is not signed by that client")]
    ForgedRequest {
        /// The client it claims.
        client: u32,
        /// Its number.
        number: u64,
    },
    /// A signature share, certificate or reply signature that does not verify.
    #[error("bad signature on {what}")]
    BadSignature {
        /// What carried it.
        what: &'static str,
    },
    /// A certificate with too few distinct signers.
    #[error("certificate with {found} distinct valid signers, {needed} needed")]
    ThinCertificate {
        /// Valid distinct signers found.
        found: usize,
        /// Needed.
        needed: usize,
    },
    /// A message for a view this replica has left, or a slot below its stable checkpoint.
    #[error("stale {what}")]
    Stale {
        /// What was stale.
        what: &'static str,
    },
    /// A message that contradicts the protocol: a prepare from a non-leader, a second
    /// prepare for a slot, a new view that re-proposes the wrong batch, a slot out of the
    /// window, a second seal for a view.
    #[error("invalid {what}")]
    Invalid {
        /// What rule it broke.
        what: &'static str,
    },
    /// The same input again.
    #[error("duplicate {what}")]
    Duplicate {
        /// What.
        what: &'static str,
    },
    /// The CTBcast layer refused the entry carrying it.
    #[error("ctbcast: {0}")]
    Ctbcast(#[from] crate::bft::ctbcast::Reject),
}

impl Reject {
    /// A short stable name for counting.
    pub fn name(&self) -> &'static str {
        match self {
            Reject::Truncated { .. } => "truncated",
            Reject::Trailing(_) => "trailing",
            Reject::UnknownKind(_) => "unknown-kind",
            Reject::TooLarge { .. } => "too-large",
            Reject::UnexpectedSender { .. } => "unexpected-sender",
            Reject::ForgedRequest { .. } => "forged-request",
            Reject::BadSignature { .. } => "bad-signature",
            Reject::ThinCertificate { .. } => "thin-certificate",
            Reject::Stale { what } => match *what {
                "request" => "stale-request",
                "prepare" => "stale-prepare",
                "share" => "stale-share",
                "checkpoint" => "stale-checkpoint",
                "catch-up" => "stale-catch-up",
                "new view" => "stale-new-view",
                _ => "stale",
            },
            Reject::Invalid { .. } => "invalid",
            Reject::Duplicate { what } => match *what {
                "request" => "duplicate-request",
                "promise" => "duplicate-promise",
                "commit" => "duplicate-commit",
                "share" => "duplicate-share",
                "recap request" => "duplicate-recap-request",
                _ => "duplicate",
            },
            Reject::Ctbcast(inner) => match inner.name() {
                "truncated" => "ctbcast-truncated",
                "checksum" => "ctbcast-checksum",
                "unknown-kind" => "ctbcast-unknown-kind",
                "payload-length" => "ctbcast-payload-length",
                "too-large" => "ctbcast-too-large",
                "wrong-broadcaster" => "ctbcast-wrong-broadcaster",
                "wrong-sender" => "ctbcast-wrong-sender",
                "unexpected-sender" => "ctbcast-unexpected-sender",
                "index-out-of-range" => "ctbcast-index-out-of-range",
                "stale" => "ctbcast-stale",
                "too-far-ahead" => "ctbcast-too-far-ahead",
                "duplicate" => "ctbcast-duplicate",
                "conflicting" => "ctbcast-conflicting",
                "forged-signature" => "ctbcast-forged-signature",
                _ => "ctbcast",
            },
        }
    }
}

/// What a replica has done and refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Slots decided because every replica promised the same batch.
    pub decided_fast: u64,
    /// Slots decided by f + 1 commits carrying prepare certificates.
    pub decided_slow: u64,
    /// Requests applied to the state machine (duplicates skipped are not counted).
    pub executed: u64,
    /// Requests skipped at execution because the client's number was already executed.
    pub deduplicated: u64,
    /// Checkpoints that became stable here.
    pub stable_checkpoints: u64,
    /// Views this replica moved to.
    pub view_changes: u64,
    /// New views this replica built as leader.
    pub new_views_built: u64,
    /// Slots a new view's leader re-proposed with a batch derived from the seals.
    pub reproposals: u64,
    /// Client signatures checked (a request taken from its client is not checked again
    /// when a prepare carries the same bytes).
    pub requests_verified: u64,
    /// Slots executed from a catch-up (decided batches fetched from another replica).
    pub caught_up_slots: u64,
    /// States installed from a state transfer (too far behind for a catch-up).
    pub state_transfers: u64,
    /// States sent to a replica too far behind for a catch-up.
    pub states_sent: u64,
    /// Streams given up for good: a proven equivocation, a recap that contradicts its
    /// stream.
    pub broken_streams: u64,
    /// Gaps found in other replicas' streams (we fell more than a CTBcast tail behind).
    pub stream_gaps: u64,
    /// Streams restarted from a recap after a gap.
    pub resynced_streams: u64,
    /// Recaps of our own stream we CTBcast (another replica asked).
    pub recaps_sent: u64,
    /// Views we left because we had lost our leader's stream (asking to be let back in).
    pub rejoin_seals: u64,
    /// Views we left to follow a replica sealed past us while we ran on the slow path.
    pub rejoin_follows: u64,
    /// Two different batches decided for one slot: never, unless more than f replicas are
    /// Byzantine. The simulation's checker asserts it stays zero within the bound.
    pub conflicting_decisions: u64,
    /// Refused inputs, by [`Reject::name`].
    pub rejected: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Counts `reject` and hands it back.
    pub(crate) fn refuse(&mut self, reject: Reject) -> Reject {
        *self.rejected.entry(reject.name()).or_default() += 1;
        reject
    }

    /// All refusals together.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}
