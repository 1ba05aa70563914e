//! `Local`: what a replica holds whatever its role — its own log, its state machine,
//! how far it knows the log is decided and how far it applied it, and the commands it
//! proposed that wait for an outcome.

use std::collections::{BTreeSet, VecDeque};

use usec_qp_pool::NodeId;

use crate::applier::{Applied, Applier};
use crate::cft::config::{MuConfig, Start};
use crate::cft::event::Event;
use crate::log::batch::commands;
use crate::log::entry::{entry_payload, EntryKind};
use crate::log::local::{LocalLog, SlotRead};
use crate::log::{CommandId, Status};
use crate::state_machine::StateMachine;

/// What a replica has done, counted (for tests, benchmarks and operators).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Candidacies started.
    pub candidacies: u64,
    /// Leaderships taken.
    pub leaderships: u64,
    /// Entries created as leader.
    pub entries: u64,
    /// Entries adopted in recovery.
    pub adopted: u64,
    /// Snapshots pushed to followers.
    pub snapshots_pushed: u64,
    /// Snapshots pulled as a candidate.
    pub snapshots_pulled: u64,
    /// Snapshots restored (pushed or pulled).
    pub snapshots_restored: u64,
    /// Permissions granted to candidates.
    pub grants: u64,
    /// Slots of its own log checked as leader, to know from how far back it can copy
    /// entries to a follower (rather than push a snapshot).
    pub own_slots_checked: u64,
}

/// Buffers of commands kept for reuse at most.
const SPARE_COMMANDS: usize = 64;

/// A command waiting for a leader to put it in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Queued {
    pub(crate) id: CommandId,
    pub(crate) command: Vec<u8>,
}

/// A replica's own state.
#[derive(Debug)]
pub(crate) struct Local<S> {
    pub(crate) me: NodeId,
    pub(crate) config: MuConfig,
    pub(crate) log: LocalLog,
    pub(crate) applier: Applier<S>,
    /// Entries below are decided.
    pub(crate) commit: u64,
    /// Entries below are applied.
    pub(crate) applied: u64,
    /// Whether it counts in quorums (see [`Start::Rejoin`]).
    pub(crate) eligible: bool,
    /// Entries below were read once for the commit index they carry.
    pub(crate) scanned: u64,
    /// Its slot at `applied` holds a later lap: it must be brought back by a snapshot.
    pub(crate) behind: bool,
    /// Commands waiting to be put in the log.
    pub(crate) queue: VecDeque<Queued>,
    /// Buffers of commands put in the log, for the next proposals to be copied into.
    spare_commands: Vec<Vec<u8>>,
    /// Commands in the log whose outcome this replica reports when it applies them.
    pub(crate) awaiting: BTreeSet<CommandId>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: Stats,
    /// Decisions worth reading when a simulation fails, when tracing is on.
    pub(crate) trace: Option<Vec<String>>,
    published: Option<Status>,
    /// Scratch: one slot.
    pub(crate) slot: Vec<u8>,
    response: Vec<u8>,
}

impl<S: StateMachine> Local<S> {
    pub(crate) fn new(me: NodeId, config: MuConfig, log: LocalLog, machine: S) -> Local<S> {
        let eligible = config.start == Start::Initial;
        let local = Local {
            me,
            log,
            applier: Applier::new(machine),
            commit: 0,
            applied: 0,
            eligible,
            behind: false,
            scanned: 0,
            queue: VecDeque::new(),
            spare_commands: Vec::new(),
            awaiting: BTreeSet::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            trace: None,
            published: None,
            slot: vec![0; config.slot_bytes],
            response: Vec::new(),
            config,
        };
        local.log.publish_status(local.status(local.applied));
        local
    }

    /// Queues a command, copied into the buffer of an earlier one if there is one: a
    /// replica that proposes one command at a time allocates nothing for it.
    pub(crate) fn enqueue(&mut self, id: CommandId, command: &[u8]) {
        let mut buffer = self.spare_commands.pop().unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(command);
        self.queue.push_back(Queued { id, command: buffer });
    }

    /// Takes back the buffer of a command that left the queue for the log.
    pub(crate) fn recycle(&mut self, command: Vec<u8>) {
        if self.spare_commands.len() < SPARE_COMMANDS {
            self.spare_commands.push(command);
        }
    }

    /// Records a decision when tracing is on.
    pub(crate) fn note(&mut self, what: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(what());
        }
    }

    /// Takes a commit index learnt from a leader (an entry, a commit record) or decided
    /// here.
    pub(crate) fn learn_commit(&mut self, commit: u64) {
        if commit > self.commit {
            self.commit = commit;
        }
    }

    /// Applies decided entries present in the log, in order, reporting the outcome of
    /// commands proposed here. Stops at an entry not (yet) readable.
    pub(crate) fn apply_decided(&mut self) {
        while self.applied < self.commit {
            let index = self.applied;
            match self.log.read_slot(index, &mut self.slot) {
                SlotRead::Entry(header) => {
                    if header.kind == EntryKind::Commands {
                        let slot = std::mem::take(&mut self.slot);
                        self.apply_batch(entry_payload(&slot, &header));
                        self.slot = slot;
                    }
                    self.applied += 1;
                    self.behind = false;
                }
                // A later lap: the entry was recycled before this replica applied it.
                SlotRead::OtherIndex(seen) if seen > index => {
                    self.behind = true;
                    break;
                }
                // Being rewritten (a new leader catching this replica up with the same
                // decided value), or not landed yet: look again later.
                SlotRead::OtherIndex(_) | SlotRead::Empty => break,
            }
        }
        // A newcomer counts once it applied past an entry its admitting leader created
        // after admitting it (see `Leader::admit_followers`).
        if !self.eligible {
            let confirm = self.log.promise_confirm();
            if confirm > 0 && self.applied >= confirm {
                self.eligible = true;
                self.note(|| format!("counts again: applied {confirm}, confirmed by its leader"));
            }
        }
    }

    /// Applies the next entry to apply, decided, from `batch`, its payload as this replica
    /// built it: a leader's own entry, which it need not read back from its log.
    pub(crate) fn apply_own(&mut self, batch: &[u8]) {
        debug_assert!(self.applied < self.commit, "only a decided entry is applied");
        self.apply_batch(batch);
        self.applied += 1;
        self.behind = false;
    }

    /// Applies the commands of a batch, reporting the outcome of those proposed here.
    fn apply_batch(&mut self, batch: &[u8]) {
        for (id, command) in commands(batch).expect("a leader writes only well-formed batches") {
            let applied = self.applier.apply(id, command, &mut self.response);
            if self.awaiting.remove(&id) {
                self.events.push_back(match applied {
                    Applied::Fresh | Applied::Repeat => {
                        Event::Committed { id, response: self.response.clone() }
                    }
                    Applied::Stale => Event::Superseded { id },
                });
            }
        }
    }

    /// Replaces the state with a snapshot taken at `index`; false if it does not restore.
    pub(crate) fn restore(&mut self, index: u64, snapshot: &[u8]) -> bool {
        if index <= self.applied {
            return true;
        }
        if self.applier.restore(snapshot).is_err() {
            return false;
        }
        let before = self.applied;
        self.applied = index;
        self.stats.snapshots_restored += 1;
        self.note(|| format!("restored a snapshot at {index} (applied was {before})"));
        self.learn_commit(index);
        self.behind = false;
        self.apply_decided();
        true
    }

    /// The first index from `applied` whose slot does not hold a valid entry of its own.
    pub(crate) fn present(&mut self) -> u64 {
        let mut index = self.applied;
        let limit = self.applied + self.config.capacity;
        while index < limit {
            match self.log.read_slot(index, &mut self.slot) {
                SlotRead::Entry(_) => index += 1,
                _ => break,
            }
        }
        index
    }

    pub(crate) fn status(&self, present: u64) -> Status {
        Status {
            commit: self.commit,
            applied: self.applied,
            present: present.max(self.applied),
            eligible: self.eligible,
        }
    }

    /// Publishes the status if it changed (`present` exact when given, else kept).
    pub(crate) fn publish(&mut self, present: Option<u64>) {
        let present = present.unwrap_or_else(|| self.published.map_or(0, |status| status.present));
        let status = self.status(present);
        if self.published != Some(status) {
            self.log.publish_status(status);
            self.published = Some(status);
        }
    }

    /// Fails every command waiting here: this replica will not report them committed.
    pub(crate) fn abandon_proposals(&mut self, leader: Option<NodeId>) {
        for id in std::mem::take(&mut self.awaiting) {
            self.events.push_back(Event::NotCommitted { id, leader });
        }
        for queued in self.queue.drain(..) {
            self.events.push_back(Event::NotCommitted { id: queued.id, leader });
        }
    }
}
