//! The replicated log as it sits in registered memory: the regions' [layout], the
//! self-validating [entries](entry) in a ring of slots, [batches](batch) of commands, and
//! the small [records](record) replicas exchange by writing each other's memory.

pub mod batch;
pub mod entry;
pub mod layout;
pub mod local;
pub mod record;

pub use batch::{BatchBuilder, CommandId};
pub use entry::{EntryHeader, EntryKind};
pub use layout::{InboxLine, Layout};
pub use record::{Record, RecordKind};

/// What a replica publishes about itself in its status record, for a candidate or a
/// leader to READ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Entries below this are decided, as far as the replica knows.
    pub commit: u64,
    /// Entries below this are applied to its state machine.
    pub applied: u64,
    /// Entries from `applied` up to (not including) this are present and valid in its log.
    pub present: u64,
    /// Whether it may count in quorums: false for a replica that restarted with an empty
    /// state and has not been brought up to date yet.
    pub eligible: bool,
}

impl Status {
    /// As a record.
    pub fn to_record(self) -> Record {
        Record::new(RecordKind::Status, &[self.commit, self.applied, self.present, u64::from(self.eligible)])
    }

    /// From a line holding a status record.
    pub fn decode(line: &[u8]) -> Option<Status> {
        let record = Record::decode(line, RecordKind::Status)?;
        let [commit, applied, present, eligible, ..] = record.fields;
        (applied <= present && applied <= commit && eligible <= 1).then_some(Status {
            commit,
            applied,
            present,
            eligible: eligible == 1,
        })
    }
}
