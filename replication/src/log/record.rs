//! Records: the small fixed-size messages that sit on a cache line of their own in a
//! replica's memory (a promise, a commit notice, a status, a permission request, ...).
//!
//! A record is 64 bytes: `[check u64][tag u64][field u64; 6]`, little-endian. `check` is
//! an xxh3 hash of the other 56 bytes, so a record read while it is being written (a torn
//! read: the spec does not promise in which order a WRITE's bytes land) or never written
//! (all zeros: tag 0 is no record kind) is refused instead of misread. The tag says which
//! kind of record the line holds; readers refuse another kind.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Bytes of a record: one cache line.
pub const RECORD_BYTES: usize = 64;
/// Fields a record carries after its check and tag.
pub const RECORD_FIELDS: usize = 6;

/// Seeds the record checksum, so that a record never validates as an entry or vice versa.
const RECORD_SEED: u64 = 0x6d75_7265_636f_7264; // "murecord"

/// The kinds of record, one tag each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum RecordKind {
    /// A candidate's proposal number, promised by the replica: `[min_proposal]`.
    Promise = 0x5052_4f4d_0001,
    /// The leader's commit index for a follower: `[commit, proposal]`.
    Commit = 0x434f_4d4d_0002,
    /// What a replica publishes about itself: see [`crate::log::Status`].
    Status = 0x5354_4154_0003,
    /// The snapshot in the replica's snapshot area: `[index, len, digest, proposal]`.
    Snapshot = 0x534e_4150_0004,
    /// A candidate asks for the right to write: `[from, number]`.
    PermissionRequest = 0x5045_5251_0005,
    /// A follower granted it: `[from, number]`.
    PermissionAck = 0x5045_4143_0006,
    /// A candidate asks a replica to publish a snapshot: `[from, number]`.
    SnapshotRequest = 0x534e_5251_0007,
    /// The replica published one: `[from, number, index, len]`.
    SnapshotReady = 0x534e_5244_0008,
}

/// A record's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its kind.
    pub kind: RecordKind,
    /// Its fields (unused ones are 0).
    pub fields: [u64; RECORD_FIELDS],
}

impl Record {
    /// A record of `kind` with the first fields set from `fields`.
    pub fn new(kind: RecordKind, fields: &[u64]) -> Record {
        assert!(fields.len() <= RECORD_FIELDS, "a record has {RECORD_FIELDS} fields");
        let mut all = [0u64; RECORD_FIELDS];
        all[..fields.len()].copy_from_slice(fields);
        Record { kind, fields: all }
    }

    /// The 64 bytes to store.
    pub fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut line = [0u8; RECORD_BYTES];
        line[8..16].copy_from_slice(&(self.kind as u64).to_le_bytes());
        for (index, field) in self.fields.iter().enumerate() {
            let at = 16 + index * 8;
            line[at..at + 8].copy_from_slice(&field.to_le_bytes());
        }
        let check = xxh3_64_with_seed(&line[8..], RECORD_SEED);
        line[..8].copy_from_slice(&check.to_le_bytes());
        line
    }

    /// Decodes a line expected to hold a record of `kind`: `None` when it holds nothing
    /// valid (never written, torn, another kind).
    pub fn decode(line: &[u8], kind: RecordKind) -> Option<Record> {
        let line: &[u8; RECORD_BYTES] = line.get(..RECORD_BYTES)?.try_into().ok()?;
        let check = u64::from_le_bytes(line[..8].try_into().expect("8 bytes"));
        if check != xxh3_64_with_seed(&line[8..], RECORD_SEED) {
            return None;
        }
        let tag = u64::from_le_bytes(line[8..16].try_into().expect("8 bytes"));
        if tag != kind as u64 {
            return None;
        }
        let mut fields = [0u64; RECORD_FIELDS];
        for (index, field) in fields.iter_mut().enumerate() {
            let at = 16 + index * 8;
            *field = u64::from_le_bytes(line[at..at + 8].try_into().expect("8 bytes"));
        }
        Some(Record { kind, fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_zeroed_line_is_no_record() {
        for kind in [RecordKind::Promise, RecordKind::Commit, RecordKind::Status] {
            assert_eq!(Record::decode(&[0u8; RECORD_BYTES], kind), None);
        }
    }

    #[test]
    fn another_kind_is_refused() {
        let line = Record::new(RecordKind::Promise, &[7]).encode();
        assert_eq!(Record::decode(&line, RecordKind::Commit), None);
        assert_eq!(Record::decode(&line, RecordKind::Promise).map(|record| record.fields[0]), Some(7));
    }

    proptest! {
        #[test]
        fn round_trips(fields in proptest::array::uniform6(any::<u64>())) {
            let record = Record { kind: RecordKind::Status, fields };
            prop_assert_eq!(Record::decode(&record.encode(), RecordKind::Status), Some(record));
        }

        /// A line torn between two records (any prefix of the new one over the old one)
        /// decodes as one of them or as nothing, never as a mixture.
        #[test]
        fn torn_lines_are_never_mixtures(
            old in proptest::array::uniform6(any::<u64>()),
            new in proptest::array::uniform6(any::<u64>()),
            cut in 0usize..=RECORD_BYTES,
        ) {
            let (old, new) = (Record { kind: RecordKind::Commit, fields: old }, Record { kind: RecordKind::Commit, fields: new });
            let mut line = old.encode();
            line[..cut].copy_from_slice(&new.encode()[..cut]);
            let seen = Record::decode(&line, RecordKind::Commit);
            prop_assert!(seen.is_none() || seen == Some(old) || seen == Some(new));
        }
    }
}
