//! An acceptor slot: one 64-bit word in registered memory, changed only by RDMA
//! compare-and-swap.
//!
//! # Layout
//!
//! | bits | field | |
//! |---|---|---|
//! | 63..32 | `instance` (32 bits) | the low 32 bits of the instance (the view id) |
//! | 31..16 | `min_proposal` (16 bits) | the highest ballot promised |
//! | 15..0 | `accepted` (16 bits) | the ballot of the value accepted, 0 if none |
//!
//! uKharon packs `{instance u16, min_proposal u16, accepted_proposal u16, accepted_value
//! u16}`. Here the value field is gone and its 16 bits went to the instance, because the
//! value is implied: every accept is made by the ballot's own proposer and points at that
//! proposer's value buffer, so the accepted ballot names the value's owner
//! ([`Ballot::owner`]), and the buffer itself carries the ballot (see
//! [`crate::buffer`]). What the wider instance buys is the wrap-around margin: a slot is
//! read relative to the instance at hand by serial-number arithmetic (RFC 1982), which is
//! right as long as the slot is less than 2^31 instances away — a slot left behind by
//! 32,768 instances, which 16 bits would allow, is a few hundred milliseconds of
//! back-to-back view changes; 2^31 is six hours of them at 10 µs each, with that acceptor
//! unreachable throughout. A slot exactly 2^31 away counts as newer: the safe side, since
//! a newer slot is never overwritten (see [`Relation`]).
//!
//! Fresh memory is all zeroes: nothing promised, nothing accepted — the state every
//! instance starts from. No proposer ever writes that word (a ballot is at least 1), so a
//! zeroed slot is read as older than any instance, never as newer, even for an instance
//! just below a multiple of 2^32.

use std::fmt;

use crate::ballot::Ballot;

/// The state of one acceptor slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Slot {
    /// The low 32 bits of the instance the slot was last used for.
    pub instance: u32,
    /// The highest ballot promised in that instance.
    pub min_proposal: Ballot,
    /// The ballot of the value accepted in that instance, [`Ballot::NONE`] if none.
    pub accepted: Ballot,
}

/// Where a slot stands relative to the instance a proposer or learner works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// The slot was last used for an earlier instance: for this one it is empty, and a
    /// proposer may claim it. Instances start in order (a proposer starts instance `i`
    /// only once `i - 1` is decided), so that earlier instance is decided.
    Older,
    /// The slot belongs to this instance.
    Current,
    /// The slot belongs to a later instance: this one is decided, and the slot must not be
    /// touched for it.
    Newer,
}

impl Slot {
    /// A zeroed slot.
    pub const EMPTY: Slot = Slot { instance: 0, min_proposal: Ballot::NONE, accepted: Ballot::NONE };

    /// Decodes a word read from an acceptor.
    pub fn from_word(word: u64) -> Slot {
        Slot {
            instance: (word >> 32) as u32,
            min_proposal: Ballot((word >> 16) as u16),
            accepted: Ballot(word as u16),
        }
    }

    /// The word as it sits in memory.
    pub fn to_word(self) -> u64 {
        (u64::from(self.instance) << 32) | (u64::from(self.min_proposal.0) << 16) | u64::from(self.accepted.0)
    }

    /// Where the slot stands relative to `instance`. A zeroed slot was never touched (every
    /// slot a proposer writes has a ballot): it is older than any instance but those whose
    /// low 32 bits are 0, for which it is current — the same thing, an empty slot.
    pub fn relation(self, instance: u64) -> Relation {
        let distance = self.instance.wrapping_sub(instance as u32) as i32;
        match distance {
            0 => Relation::Current,
            _ if self == Slot::EMPTY => Relation::Older,
            // i32::MIN (exactly 2^31 away) is ambiguous: call it newer, never overwritten.
            d if d < 0 && d != i32::MIN => Relation::Older,
            _ => Relation::Newer,
        }
    }

    /// What the slot says for `instance`: itself if it is current, an empty slot of that
    /// instance if it is older, `None` if it is newer.
    pub fn for_instance(self, instance: u64) -> Option<Slot> {
        match self.relation(instance) {
            Relation::Current => Some(self),
            Relation::Older => Some(Slot::fresh(instance)),
            Relation::Newer => None,
        }
    }

    /// An empty slot of `instance`.
    pub fn fresh(instance: u64) -> Slot {
        Slot { instance: instance as u32, ..Slot::EMPTY }
    }

    /// The slot after a prepare at `ballot` for `instance` (which must not be newer):
    /// promised `ballot`, the value accepted in this instance kept.
    pub fn promised(self, instance: u64, ballot: Ballot) -> Slot {
        let current = self.for_instance(instance).expect("a prepare is never made on a newer slot");
        Slot { min_proposal: ballot, ..current }
    }

    /// The slot after an accept at `ballot` for `instance`.
    pub fn accepted(instance: u64, ballot: Ballot) -> Slot {
        Slot { instance: instance as u32, min_proposal: ballot, accepted: ballot }
    }

    /// The full instance a slot tag stands for, read relative to `near` (the latest
    /// instance the reader knows), or `None` if that would be below 0.
    pub fn resolve(self, near: u64) -> Option<u64> {
        let distance = i64::from(self.instance.wrapping_sub(near as u32) as i32);
        near.checked_add_signed(distance)
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{i{} promised {} accepted {}}}", self.instance, self.min_proposal, self.accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_field_by_field() {
        let slot = Slot { instance: 0xdead_beef, min_proposal: Ballot(0x1234), accepted: Ballot(0xabcd) };
        assert_eq!(slot.to_word(), 0xdead_beef_1234_abcd);
        assert_eq!(Slot::from_word(slot.to_word()), slot);
        assert_eq!(Slot::from_word(0), Slot::EMPTY);
        for word in [1u64, u64::MAX, 0x8000_0000_0000_0000, 0x0000_0001_0000_0000] {
            assert_eq!(Slot::from_word(word).to_word(), word);
        }
    }

    #[test]
    fn relation_is_serial_arithmetic_across_the_wrap() {
        let at = |instance: u64| Slot::fresh(instance);
        assert_eq!(at(7).relation(7), Relation::Current);
        assert_eq!(at(6).relation(7), Relation::Older);
        assert_eq!(at(8).relation(7), Relation::Newer);
        // Across 2^32: the slot of 2^32 - 1 is older than instance 2^32 + 3, whose tag is 3.
        let high = (1u64 << 32) - 1;
        assert_eq!(at(high).relation(high + 4), Relation::Older);
        assert_eq!(at(high + 4).relation(high), Relation::Newer);
        // Far behind (but less than 2^31): still older; exactly 2^31: newer (never reset).
        assert_eq!(at(10).relation(10 + (1 << 31) - 1), Relation::Older);
        assert_eq!(at(10).relation(10 + (1 << 31)), Relation::Newer);
        // A zeroed slot is an empty slot for any instance, even one just below 2^32 (to
        // which the tag 0 would otherwise look 5 instances ahead).
        assert_eq!(Slot::EMPTY.for_instance(1 << 32), Some(Slot::fresh(1 << 32)));
        assert_eq!(Slot::EMPTY.for_instance(5), Some(Slot::fresh(5)));
        assert_eq!(Slot::EMPTY.relation(high - 4), Relation::Older);
        assert_eq!(Slot { min_proposal: Ballot(1), ..Slot::EMPTY }.relation(high - 4), Relation::Newer);
    }

    #[test]
    fn prepare_keeps_the_accepted_value_of_its_own_instance_only() {
        let accepted = Slot::accepted(9, Ballot(4));
        assert_eq!(
            accepted.promised(9, Ballot(6)),
            Slot { instance: 9, min_proposal: Ballot(6), accepted: Ballot(4) }
        );
        // An older instance's acceptance means nothing for instance 9 + 16.
        assert_eq!(
            accepted.promised(25, Ballot(2)),
            Slot { instance: 25, min_proposal: Ballot(2), accepted: Ballot::NONE }
        );
        assert_eq!(accepted.for_instance(8), None);
    }

    #[test]
    fn resolve_recovers_full_instances_near_the_reader() {
        let high = (1u64 << 32) + 5;
        assert_eq!(Slot::fresh(high).resolve(high - 10), Some(high));
        assert_eq!(Slot::fresh(high - 10).resolve(high), Some(high - 10));
        assert_eq!(Slot::fresh(3).resolve(1), Some(3));
        assert_eq!(Slot::fresh(u64::from(u32::MAX)).resolve(1), None, "below 0");
    }
}
