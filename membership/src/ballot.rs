//! Proposal numbers ("ballots"): 16 bits, distinct per proposer, and naming their owner.
//!
//! Proposer `k` of a group with room for `n` proposers uses `k + 1`, `k + 1 + n`,
//! `k + 1 + 2n`, … (uKharon's `p += n`): no two proposers ever share a ballot, and a ballot
//! says whose it is — which is why an acceptor slot needs no value field (see
//! [`crate::slot`]). 0 is no ballot at all: nothing promised, nothing accepted.

use std::fmt;

/// A proposal number; [`Ballot::NONE`] (0) is none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ballot(pub u16);

impl Ballot {
    /// No ballot: what a fresh or reset slot holds.
    pub const NONE: Ballot = Ballot(0);

    /// Whether it is a real ballot.
    pub fn is_some(self) -> bool {
        self != Ballot::NONE
    }

    /// Proposer `me`'s first ballot, with room for `stride` proposers (`me < stride`).
    pub fn first(me: u16, stride: u16) -> Ballot {
        assert!(me < stride, "proposer {me} does not fit a stride of {stride}");
        Ballot(me + 1)
    }

    /// Proposer `me`'s smallest ballot above `floor`, or `None` once 16 bits run out (after
    /// `65535 / stride` rounds of one instance: with 16 proposers, 4,095 rounds).
    pub fn next_above(me: u16, stride: u16, floor: Ballot) -> Option<Ballot> {
        let first = u32::from(Ballot::first(me, stride).0);
        let floor = u32::from(floor.0);
        let candidate = if first > floor {
            first
        } else {
            let rounds = (floor - first) / u32::from(stride) + 1;
            first + rounds * u32::from(stride)
        };
        u16::try_from(candidate).ok().map(Ballot)
    }

    /// The proposer whose ballot this is (`None` for [`Ballot::NONE`]).
    pub fn owner(self, stride: u16) -> Option<u16> {
        self.is_some().then(|| (self.0 - 1) % stride)
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_are_distinct_per_proposer_and_name_their_owner() {
        let stride = 5;
        let mut seen = std::collections::BTreeMap::new();
        for me in 0..stride {
            let mut ballot = Ballot::first(me, stride);
            for _ in 0..100 {
                assert_eq!(ballot.owner(stride), Some(me));
                assert!(seen.insert(ballot, me).is_none(), "{ballot} used twice");
                let next = Ballot::next_above(me, stride, ballot).expect("room");
                assert_eq!(next.0, ballot.0 + stride, "p += n");
                ballot = next;
            }
        }
        assert_eq!(Ballot::NONE.owner(stride), None);
    }

    #[test]
    fn next_above_jumps_past_any_floor() {
        for floor in 0..200u16 {
            for me in 0..3 {
                let next = Ballot::next_above(me, 3, Ballot(floor)).expect("room");
                assert!(next.0 > floor && next.0 <= floor + 3, "{next} after {floor}");
                assert_eq!(next.owner(3), Some(me));
            }
        }
        assert_eq!(Ballot::next_above(0, 1, Ballot(u16::MAX - 1)), Some(Ballot(u16::MAX)));
        assert_eq!(Ballot::next_above(0, 1, Ballot(u16::MAX)), None, "16 bits run out");
        assert_eq!(Ballot::next_above(3, 4, Ballot(65532)), None);
    }
}
