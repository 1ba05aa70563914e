//! Value buffers: values wider than a slot, written by their proposer into each acceptor
//! before the accept CAS that points at them, and validated by whoever reads them.
//!
//! # A bank
//!
//! A bank is a run of 64-byte lines. Each line is 56 bytes of payload and an 8-byte tag at
//! its end, `instance (48 bits) ‖ ballot (16 bits)`: the instance and the ballot under
//! which the proposer wrote the value. The payload of the lines, in order, is a header
//! `len u16 ‖ checksum u64` and then the value; the checksum is XXH3-64 over the tag, the
//! length and the value. Only the lines the value needs are written.
//!
//! A reader takes a bank for a value only if every line it needs carries the same tag and
//! the checksum matches: a bank half overwritten (its writer died mid-WRITE, or a READ met
//! a WRITE in flight, in whatever order the NIC fetched the bytes) fails one or the other,
//! and so does a bank of another instance or ballot, or memory never written.
//!
//! # Why two banks, alternated
//!
//! A proposer writes a new value (a later ballot of the same instance) into the bank that
//! does *not* hold its last completed write to that acceptor. So the last completed write
//! survives a WRITE torn by a crash — and that write has a ballot at least the one the
//! acceptor's slot says it accepted (the WRITE went before the accept CAS, on the same
//! QP). A reader that finds a slot saying "accepted at ballot h" therefore always finds,
//! on that acceptor, a whole bank of that instance with a ballot `b ≥ h`, and may take its
//! value: for `b = h` it is the accepted value; for `b > h` it is a value its proposer
//! chose after a successful prepare at `b`, hence *safe at b* (no other value was or
//! will be chosen below `b`), and no ballot between `h` and the reader's own can be
//! chosen (every member of the reader's quorum promised the reader's ballot having
//! accepted nothing above `h`). Either way it is the only value that can be chosen.

use xxhash_rust::xxh3::Xxh3;

use crate::ballot::Ballot;
use crate::layout::Layout;

/// Bytes of a line.
pub const LINE_BYTES: usize = 64;
/// Bytes of a line's tag (at its end).
pub const TAG_BYTES: usize = 8;
/// Bytes of payload per line.
pub const LINE_PAYLOAD_BYTES: usize = LINE_BYTES - TAG_BYTES;
/// Bytes of the header at the start of the payload: length and checksum.
pub const HEADER_BYTES: usize = 10;
/// Instances above this do not fit a tag's 48 bits (2.8 × 10^14 views: never reached).
pub const MAX_INSTANCE: u64 = (1 << 48) - 1;

/// A value read back from a bank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    /// The instance it was written for.
    pub instance: u64,
    /// The ballot it was written under.
    pub ballot: Ballot,
    /// The value.
    pub value: Vec<u8>,
}

/// What a read of a proposer's two banks gave, for one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// A whole bank of the instance, with a ballot at least the one asked for.
    Value(Content),
    /// No such bank, but a bank of a later instance: the instance asked for is decided and
    /// its buffers here already reused.
    Newer {
        /// The later instance.
        instance: u64,
    },
    /// Neither: torn, stale, or never written.
    Missing,
}

fn tag(instance: u64, ballot: Ballot) -> u64 {
    assert!(instance <= MAX_INSTANCE, "instance {instance} does not fit 48 bits");
    (instance << 16) | u64::from(ballot.0)
}

fn checksum(tag: u64, value: &[u8]) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(&tag.to_le_bytes());
    hasher.update(&(value.len() as u16).to_le_bytes());
    hasher.update(value);
    hasher.digest()
}

/// Lines a value of `len` bytes takes.
pub fn lines_for(len: usize) -> usize {
    (HEADER_BYTES + len).div_ceil(LINE_PAYLOAD_BYTES)
}

/// The bytes to WRITE into a bank: `value` for `instance` under `ballot`, in as many lines
/// as it needs. Panics if the value does not fit `layout`.
pub fn encode(layout: &Layout, instance: u64, ballot: Ballot, value: &[u8]) -> Vec<u8> {
    assert!(
        value.len() <= layout.value_bytes_max,
        "a value of {} bytes in a bank for {}",
        value.len(),
        layout.value_bytes_max
    );
    let tag = tag(instance, ballot);
    let mut stream = Vec::with_capacity(HEADER_BYTES + value.len());
    stream.extend_from_slice(&(value.len() as u16).to_le_bytes());
    stream.extend_from_slice(&checksum(tag, value).to_le_bytes());
    stream.extend_from_slice(value);
    let lines = lines_for(value.len());
    let mut bytes = vec![0u8; lines * LINE_BYTES];
    for (line, chunk) in bytes.chunks_exact_mut(LINE_BYTES).enumerate() {
        let from = (line * LINE_PAYLOAD_BYTES).min(stream.len());
        let to = ((line + 1) * LINE_PAYLOAD_BYTES).min(stream.len());
        chunk[..to - from].copy_from_slice(&stream[from..to]);
        chunk[LINE_PAYLOAD_BYTES..].copy_from_slice(&tag.to_le_bytes());
    }
    bytes
}

fn line_tag(bank: &[u8], line: usize) -> u64 {
    let end = (line + 1) * LINE_BYTES;
    u64::from_le_bytes(bank[end - TAG_BYTES..end].try_into().expect("8 bytes"))
}

/// The value in one bank, if the bank is whole: every line it needs tagged alike, the
/// checksum right. `None` for a torn, foreign or never-written bank.
pub fn decode(bank: &[u8]) -> Option<Content> {
    if bank.len() < LINE_BYTES {
        return None;
    }
    let tag = line_tag(bank, 0);
    if tag == 0 {
        return None; // never written: instances start at 1
    }
    let len = usize::from(u16::from_le_bytes([bank[0], bank[1]]));
    let lines = lines_for(len);
    if lines * LINE_BYTES > bank.len() || (1..lines).any(|line| line_tag(bank, line) != tag) {
        return None;
    }
    let mut stream = Vec::with_capacity(HEADER_BYTES + len);
    for line in 0..lines {
        stream.extend_from_slice(&bank[line * LINE_BYTES..line * LINE_BYTES + LINE_PAYLOAD_BYTES]);
    }
    let expected = u64::from_le_bytes(stream[2..HEADER_BYTES].try_into().expect("8 bytes"));
    let value = &stream[HEADER_BYTES..HEADER_BYTES + len];
    (checksum(tag, value) == expected).then(|| Content {
        instance: tag >> 16,
        ballot: Ballot(tag as u16),
        value: value.to_vec(),
    })
}

/// Reads both banks of one proposer at one position (`banks`, as one READ fetched them)
/// for `instance`: the whole bank of that instance with the highest ballot at least
/// `at_least`, else whether a later instance has taken the position.
pub fn pick(layout: &Layout, banks: &[u8], instance: u64, at_least: Ballot) -> Found {
    let bank_bytes = layout.bank_bytes();
    assert_eq!(banks.len(), 2 * bank_bytes, "both banks");
    let contents: Vec<Content> = banks.chunks_exact(bank_bytes).filter_map(decode).collect();
    let best = contents
        .iter()
        .filter(|content| content.instance == instance && content.ballot >= at_least)
        .max_by_key(|content| content.ballot);
    if let Some(content) = best {
        return Found::Value(content.clone());
    }
    match contents.iter().map(|content| content.instance).filter(|&other| other > instance).max() {
        Some(newer) => Found::Newer { instance: newer },
        None => Found::Missing,
    }
}

/// Which bank a proposer writes next at one acceptor, for the instance it works on.
///
/// The bank holding the last *completed* write is never the next target, whatever
/// happened to writes since: a WRITE that failed (torn, for all we know) leaves its bank
/// the target again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BankChooser {
    instance: u64,
    last_completed: Option<u8>,
}

impl BankChooser {
    /// The bank to write next for `instance` (a new instance forgets the old one's banks:
    /// they hold an earlier instance, decided, and either may go).
    pub fn next(&mut self, instance: u64) -> u8 {
        if self.instance != instance {
            *self = BankChooser { instance, last_completed: None };
        }
        match self.last_completed {
            Some(bank) => 1 - bank,
            None => 0,
        }
    }

    /// A WRITE to `bank` for `instance` completed.
    pub fn completed(&mut self, instance: u64, bank: u8) {
        if self.instance == instance {
            self.last_completed = Some(bank);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout { ring: 4, proposers: 3, value_bytes_max: 150 }
    }

    fn banks(layout: &Layout, first: &[u8], second: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; 2 * layout.bank_bytes()];
        bytes[..first.len()].copy_from_slice(first);
        let at = layout.bank_bytes();
        bytes[at..at + second.len()].copy_from_slice(second);
        bytes
    }

    #[test]
    fn a_value_round_trips_whatever_its_length() {
        let layout = layout();
        for len in [0, 1, 45, 46, 47, 101, 102, 150] {
            let value: Vec<u8> = (0..len).map(|byte| byte as u8 ^ 0x5a).collect();
            let bytes = encode(&layout, 77, Ballot(5), &value);
            assert_eq!(bytes.len(), lines_for(len) * LINE_BYTES);
            let mut bank = vec![0u8; layout.bank_bytes()];
            bank[..bytes.len()].copy_from_slice(&bytes);
            assert_eq!(
                decode(&bank),
                Some(Content { instance: 77, ballot: Ballot(5), value }),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn torn_stale_and_blank_banks_are_never_taken_for_a_value() {
        let layout = layout();
        let old = encode(&layout, 3, Ballot(2), &[1u8; 150]);
        let new = encode(&layout, 7, Ballot(2), &[2u8; 150]);
        assert_eq!(decode(&vec![0u8; layout.bank_bytes()]), None, "never written");
        // Torn anywhere: the first k bytes new, the rest old (unless that is one or the other).
        for cut in 1..new.len() {
            let mut torn = old.clone();
            torn[..cut].copy_from_slice(&new[..cut]);
            if torn != old && torn != new {
                assert_eq!(decode(&torn), None, "torn at byte {cut}");
            }
        }
        // New payload under old tags (a READ that fetched each tag before its line's bytes).
        let mut mixed = old.clone();
        for line in 0..lines_for(150) {
            let payload = line * LINE_BYTES..line * LINE_BYTES + LINE_PAYLOAD_BYTES;
            mixed[payload.clone()].copy_from_slice(&new[payload]);
        }
        assert_eq!(decode(&mixed), None, "the checksum catches a payload under a stale tag");
        // One flipped bit anywhere but in the padding after the value, which means nothing.
        let last = lines_for(150) - 1;
        let padding = last * LINE_BYTES + (HEADER_BYTES + 150 - last * LINE_PAYLOAD_BYTES)
            ..last * LINE_BYTES + LINE_PAYLOAD_BYTES;
        for at in (0..new.len()).filter(|at| !padding.contains(at)) {
            let mut flipped = new.clone();
            flipped[at] ^= 0x10;
            assert_eq!(decode(&flipped), None, "bit flipped at byte {at}");
        }
    }

    #[test]
    fn pick_takes_the_instance_asked_for_at_or_above_the_ballot() {
        let layout = layout();
        let low = encode(&layout, 9, Ballot(2), b"two");
        let high = encode(&layout, 9, Ballot(5), b"five");
        let both = banks(&layout, &low, &high);
        let value = |found: Found| match found {
            Found::Value(content) => Some(content.value),
            _ => None,
        };
        assert_eq!(value(pick(&layout, &both, 9, Ballot(2))), Some(b"five".to_vec()), "the highest ballot");
        assert_eq!(value(pick(&layout, &both, 9, Ballot(5))), Some(b"five".to_vec()));
        assert_eq!(pick(&layout, &both, 9, Ballot(6)), Found::Missing, "nothing at or above b6");
        assert_eq!(pick(&layout, &both, 13, Ballot(1)), Found::Missing, "another instance");
        let later = banks(&layout, &low, &encode(&layout, 13, Ballot(1), b"later"));
        assert_eq!(pick(&layout, &later, 9, Ballot(3)), Found::Newer { instance: 13 });
        assert_eq!(value(pick(&layout, &later, 9, Ballot(2))), Some(b"two".to_vec()));
    }

    #[test]
    fn the_bank_of_the_last_completed_write_is_never_the_next_target() {
        let mut chooser = BankChooser::default();
        assert_eq!(chooser.next(4), 0);
        chooser.completed(4, 0);
        assert_eq!(chooser.next(4), 1);
        // That write failed: bank 1 is the target again, bank 0 keeps the last good value.
        assert_eq!(chooser.next(4), 1);
        chooser.completed(4, 1);
        assert_eq!(chooser.next(4), 0);
        // A completion of another instance's write changes nothing; a new instance starts over.
        chooser.completed(3, 0);
        assert_eq!(chooser.next(4), 0);
        assert_eq!(chooser.next(5), 0);
    }
}
