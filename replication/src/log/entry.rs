//! Log entries: self-validating, so a reader never needs writes to land in address order.
//!
//! An entry fills the start of a slot:
//!
//! ```text
//! 0   check     u64   xxh3 of bytes 8 .. 40 + len (seeded for entries)
//! 8   index     u64   its position in the log (absolute, never wraps)
//! 16  proposal  u64   the proposal number of the leader that wrote it
//! 24  commit    u64   that leader's commit index when it wrote it: entries below are decided
//! 32  len       u32   payload bytes
//! 36  kind      u8    1 = commands, 2 = no-op
//! 37  (zero)    3 bytes
//! 40  payload   len bytes
//! ```
//!
//! Mu's entries end in a canary byte and rely on a WRITE's bytes landing in increasing
//! address order, which ConnectX does and the spec does not promise. A checksum over the
//! whole entry is portable: a reader that catches an entry half-written (or a slot still
//! holding an older entry, or garbage) sees a check that does not match and reads again
//! later. A 64-bit hash makes a torn mixture that validates a 2^-64 event per read.
//!
//! The slot position is `index % capacity`; the index inside tells which lap of the ring
//! the slot holds, so a stale entry from an earlier lap is never taken for a new one.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Bytes before the payload.
pub const ENTRY_HEADER_BYTES: usize = 40;

const ENTRY_SEED: u64 = 0x6d75_656e_7472_7921; // "muentry!"

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A batch of client commands ([`crate::log::batch`]).
    Commands,
    /// Nothing: fills a position a new leader found empty.
    Noop,
}

impl EntryKind {
    fn code(self) -> u8 {
        match self {
            EntryKind::Commands => 1,
            EntryKind::Noop => 2,
        }
    }

    fn from_code(code: u8) -> Option<EntryKind> {
        match code {
            1 => Some(EntryKind::Commands),
            2 => Some(EntryKind::Noop),
            _ => None,
        }
    }
}

/// An entry's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryHeader {
    /// Its log position.
    pub index: u64,
    /// The proposal number it was written with.
    pub proposal: u64,
    /// The writer's commit index at the time (at most `index`).
    pub commit: u64,
    /// Payload bytes.
    pub len: u32,
    /// What the payload is.
    pub kind: EntryKind,
}

impl EntryHeader {
    /// Bytes the entry occupies (header and payload).
    pub fn total_len(&self) -> usize {
        ENTRY_HEADER_BYTES + self.len as usize
    }

    /// Reads the header fields without checking anything but their shape: `None` when the
    /// kind is unknown or the payload would not fit `slot_bytes`.
    pub fn peek(bytes: &[u8], slot_bytes: usize) -> Option<EntryHeader> {
        let header = bytes.get(..ENTRY_HEADER_BYTES)?;
        let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(header[32..36].try_into().expect("4 bytes"));
        let kind = EntryKind::from_code(header[36])?;
        if ENTRY_HEADER_BYTES + len as usize > slot_bytes || header[37..40] != [0; 3] {
            return None;
        }
        Some(EntryHeader { index: word(8), proposal: word(16), commit: word(24), len, kind })
    }
}

/// Writes an entry into the start of `slot` and returns its length in bytes.
///
/// Panics if the payload does not fit: callers size batches to the slot.
pub fn encode_entry(slot: &mut [u8], header: &EntryHeader, payload: &[u8]) -> usize {
    assert_eq!(header.len as usize, payload.len(), "the header's len is the payload's");
    assert!(header.commit <= header.index + 1, "an entry never claims itself decided");
    let total = header.total_len();
    assert!(total <= slot.len(), "entry of {total} bytes in a slot of {}", slot.len());
    slot[8..16].copy_from_slice(&header.index.to_le_bytes());
    slot[16..24].copy_from_slice(&header.proposal.to_le_bytes());
    slot[24..32].copy_from_slice(&header.commit.to_le_bytes());
    slot[32..36].copy_from_slice(&header.len.to_le_bytes());
    slot[36] = header.kind.code();
    slot[37..40].fill(0);
    slot[ENTRY_HEADER_BYTES..total].copy_from_slice(payload);
    let check = xxh3_64_with_seed(&slot[8..total], ENTRY_SEED);
    slot[..8].copy_from_slice(&check.to_le_bytes());
    total
}

/// Checks a copy of a slot: the header if the slot holds a whole, valid entry.
pub fn verify_entry(slot: &[u8]) -> Option<EntryHeader> {
    let header = EntryHeader::peek(slot, slot.len())?;
    let check = u64::from_le_bytes(slot[..8].try_into().expect("8 bytes"));
    (check == xxh3_64_with_seed(&slot[8..header.total_len()], ENTRY_SEED)).then_some(header)
}

/// The payload of a slot [`verify_entry`] accepted.
pub fn entry_payload<'a>(slot: &'a [u8], header: &EntryHeader) -> &'a [u8] {
    &slot[ENTRY_HEADER_BYTES..header.total_len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(index: u64, len: usize) -> EntryHeader {
        EntryHeader { index, proposal: 3, commit: index, len: len as u32, kind: EntryKind::Commands }
    }

    #[test]
    fn an_empty_slot_holds_no_entry() {
        assert_eq!(verify_entry(&[0u8; 256]), None);
    }

    #[test]
    fn an_entry_round_trips() {
        let mut slot = [0u8; 256];
        let written = encode_entry(&mut slot, &header(9, 5), b"hello");
        assert_eq!(written, ENTRY_HEADER_BYTES + 5);
        let seen = verify_entry(&slot).expect("valid");
        assert_eq!(seen, header(9, 5));
        assert_eq!(entry_payload(&slot, &seen), b"hello");
    }

    #[test]
    fn a_payload_longer_than_the_slot_is_refused_not_read_past() {
        let mut slot = [0u8; 64];
        encode_entry(&mut slot, &header(1, 4), b"abcd");
        slot[32..36].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(verify_entry(&slot), None);
    }

    proptest! {
        /// Any mixture of two entries in one slot (a WRITE of the second landing in any
        /// order over the first: every subset of bytes taken from it) validates as one of
        /// them or as nothing.
        #[test]
        fn torn_slots_never_validate_as_a_mixture(
            first in proptest::collection::vec(any::<u8>(), 0..100),
            second in proptest::collection::vec(any::<u8>(), 0..100),
            taken in proptest::collection::vec(any::<bool>(), 256),
        ) {
            let (mut old, mut new) = ([0u8; 256], [0u8; 256]);
            encode_entry(&mut old, &header(4, first.len()), &first);
            encode_entry(&mut new, &EntryHeader { proposal: 9, ..header(4, second.len()) }, &second);
            let mixed: Vec<u8> = (0..256).map(|at| if taken[at] { new[at] } else { old[at] }).collect();
            match verify_entry(&mixed) {
                None => {}
                Some(seen) => {
                    let payload = entry_payload(&mixed, &seen);
                    prop_assert!(
                        (seen.proposal == 3 && payload == &first[..]) || (seen.proposal == 9 && payload == &second[..])
                    );
                }
            }
        }
    }
}
