//! [`LocalLog`]: a replica's own two regions, read and written by its own CPU.
//!
//! Everything here is a bounds-checked copy in or out of registered memory that peers
//! write concurrently, so every read is of a snapshot that may be torn; records and
//! entries carry checksums for exactly that reason, and callers only act on what
//! validated.

use std::sync::Arc;

use usec_regions::Region;

use crate::log::entry::{encode_entry, verify_entry, EntryHeader, ENTRY_HEADER_BYTES};
use crate::log::layout::{
    InboxLine, Layout, COMMIT_OFFSET, PROMISE_OFFSET, SNAPSHOT_RECORD_OFFSET, STATUS_OFFSET,
};
use crate::log::record::{Record, RecordKind, RECORD_BYTES};
use crate::log::Status;

/// A replica's log and control regions.
#[derive(Clone, Debug)]
pub struct LocalLog {
    layout: Layout,
    log: Arc<Region>,
    control: Arc<Region>,
}

/// What a slot held when read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotRead {
    /// A valid entry with the index asked for.
    Entry(EntryHeader),
    /// A valid entry of another lap of the ring.
    OtherIndex(u64),
    /// Nothing valid (never written, being written, or garbage).
    Empty,
}

impl LocalLog {
    /// Wraps the two regions, which must be at least as large as `layout` says.
    pub fn new(layout: Layout, log: Arc<Region>, control: Arc<Region>) -> LocalLog {
        assert!(log.len() >= layout.log_len(), "the log region is smaller than its layout");
        assert!(control.len() >= layout.control_len(), "the control region is smaller than its layout");
        LocalLog { layout, log, control }
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The log region.
    pub fn log_region(&self) -> &Arc<Region> {
        &self.log
    }

    /// The control region.
    pub fn control_region(&self) -> &Arc<Region> {
        &self.control
    }

    fn read_record(region: &Region, offset: usize, kind: RecordKind) -> Option<Record> {
        let mut line = [0u8; RECORD_BYTES];
        region.read(offset, &mut line).expect("records lie inside their region");
        Record::decode(&line, kind)
    }

    fn write_record(region: &Region, offset: usize, record: &Record) {
        region.write(offset, &record.encode()).expect("records lie inside their region");
    }

    /// The promise: the highest proposal number a candidate asked this replica for.
    pub fn promise(&self) -> u64 {
        Self::read_record(&self.log, PROMISE_OFFSET, RecordKind::Promise).map_or(0, |record| record.fields[0])
    }

    /// The index a leader that admitted this replica as a newcomer (a process that lost
    /// its state) asked it to apply before it counts again: 0 when none did. See
    /// [`crate::cft`] on amnesia.
    pub fn promise_confirm(&self) -> u64 {
        Self::read_record(&self.log, PROMISE_OFFSET, RecordKind::Promise).map_or(0, |record| record.fields[1])
    }

    /// Stores a promise (this replica's own candidacy).
    pub fn set_promise(&self, proposal: u64) {
        Self::write_record(&self.log, PROMISE_OFFSET, &Record::new(RecordKind::Promise, &[proposal]));
    }

    /// The commit record a leader left: `(commit, proposal)`.
    pub fn commit_record(&self) -> Option<(u64, u64)> {
        Self::read_record(&self.log, COMMIT_OFFSET, RecordKind::Commit)
            .map(|record| (record.fields[0], record.fields[1]))
    }

    /// Publishes this replica's status for peers to READ.
    pub fn publish_status(&self, status: Status) {
        Self::write_record(&self.log, STATUS_OFFSET, &status.to_record());
    }

    /// The snapshot record: `(index, len, digest)`.
    pub fn snapshot_record(&self) -> Option<(u64, u64, u64)> {
        Self::read_record(&self.log, SNAPSHOT_RECORD_OFFSET, RecordKind::Snapshot)
            .map(|record| (record.fields[0], record.fields[1], record.fields[2]))
    }

    /// Stores a snapshot's bytes and then its record, in this replica's snapshot area.
    pub fn store_snapshot(&self, index: u64, bytes: &[u8]) -> Record {
        assert!(bytes.len() <= self.layout.snapshot_bytes, "snapshots are checked against the area first");
        self.log.write(self.layout.snapshot_offset(), bytes).expect("inside the snapshot area");
        let record = snapshot_record(index, bytes);
        Self::write_record(&self.log, SNAPSHOT_RECORD_OFFSET, &record);
        record
    }

    /// The snapshot in the area, if its record is valid and its bytes match the digest.
    pub fn load_snapshot(&self, index: u64, len: u64, digest: u64) -> Option<Vec<u8>> {
        let len = usize::try_from(len).ok().filter(|&len| len <= self.layout.snapshot_bytes)?;
        let mut bytes = vec![0u8; len];
        self.log.read(self.layout.snapshot_offset(), &mut bytes).expect("inside the snapshot area");
        (snapshot_digest(index, &bytes) == digest).then_some(bytes)
    }

    /// Reads the slot of entry `index` into `buffer` (which grows to a slot) and says what
    /// it held.
    pub fn read_slot(&self, index: u64, buffer: &mut Vec<u8>) -> SlotRead {
        buffer.resize(self.layout.slot_bytes, 0);
        let offset = self.layout.entry_offset(index);
        // The header first: most reads of a slot find it not written yet.
        self.log.read(offset, &mut buffer[..ENTRY_HEADER_BYTES]).expect("slots lie inside the log");
        let Some(peek) = EntryHeader::peek(buffer, self.layout.slot_bytes) else { return SlotRead::Empty };
        classify(verify_entry_in(&self.log, offset, peek.total_len(), buffer), index)
    }

    /// Writes an entry into its slot.
    pub fn write_entry(&self, header: &EntryHeader, payload: &[u8], buffer: &mut Vec<u8>) -> usize {
        buffer.resize(self.layout.slot_bytes, 0);
        let len = encode_entry(buffer, header, payload);
        self.log
            .write(self.layout.entry_offset(header.index), &buffer[..len])
            .expect("slots lie inside the log");
        len
    }

    /// Copies a whole slot image (from a peer, read into scratch) into entry `index`'s slot.
    pub fn copy_slot_in(&self, index: u64, image: &[u8]) {
        self.log.write(self.layout.entry_offset(index), image).expect("slots lie inside the log");
    }

    /// The record in this replica's inbox `line` from `sender`.
    pub fn inbox(&self, sender: u16, line: InboxLine, kind: RecordKind) -> Option<Record> {
        Self::read_record(&self.control, self.layout.inbox_offset(sender, line), kind)
    }

    /// Erases every inbox line from `sender`: what a process that is gone wrote there must
    /// not be read as its successor's.
    pub fn clear_inbox(&self, sender: u16) {
        for line in InboxLine::ALL {
            let offset = self.layout.inbox_offset(sender, line);
            self.control.write(offset, &[0u8; RECORD_BYTES]).expect("records lie inside their region");
        }
    }

    /// Copies `len` bytes of the control region at `offset` into `buffer`.
    pub fn read_control(&self, offset: usize, buffer: &mut [u8]) {
        self.control.read(offset, buffer).expect("scratch lies inside the control region");
    }
}

fn verify_entry_in(log: &Region, offset: usize, len: usize, buffer: &mut [u8]) -> Option<EntryHeader> {
    log.read(offset, &mut buffer[..len]).expect("slots lie inside the log");
    verify_entry(&buffer[..len])
}

fn classify(header: Option<EntryHeader>, index: u64) -> SlotRead {
    match header {
        Some(header) if header.index == index => SlotRead::Entry(header),
        Some(header) => SlotRead::OtherIndex(header.index),
        None => SlotRead::Empty,
    }
}

/// The digest of a snapshot at `index`: xxh3 over the index and the bytes.
pub fn snapshot_digest(index: u64, bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, index ^ 0x736e_6170_7368_6f74)
}

/// The record describing a snapshot at `index`.
pub fn snapshot_record(index: u64, bytes: &[u8]) -> Record {
    Record::new(RecordKind::Snapshot, &[index, bytes.len() as u64, snapshot_digest(index, bytes)])
}
