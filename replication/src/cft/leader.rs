//! `Leader`: Mu's fast path — one WRITE of each entry into each follower's log, decided
//! once a majority (the leader included) holds it.
//!
//! - **Entries.** Waiting commands are batched into an entry, written into the leader's
//!   own slot, and WRITTEN from there (zero copy) into the same slot of every follower
//!   that is being copied to, at most `pipeline` undecided entries at a time. Each
//!   follower's log receives the leader's entries in order (RC), so "follower F
//!   acknowledged entry i" means F holds every entry below i too.
//! - **Commit.** The commit index is the largest `c` such that a majority holds all
//!   entries below `c`. Each entry carries the commit index of its writing; when nothing
//!   new comes for `idle_commit_ns` the leader WRITEs a commit record instead, so the
//!   last entry does not stay undecided at the followers.
//! - **Followers joining.** A follower that grants (at the candidacy or later) has its
//!   head READ; if its promise is above ours a newer leader exists and this one steps
//!   down. Otherwise the promise is written (the barrier: every completion of an earlier
//!   leadership on that QP precedes it) and copying starts where its log stops being
//!   known-decided — or, if the leader's ring moved past that point, with a snapshot
//!   WRITTEN into its snapshot area.
//! - **Applying its own entries.** The leader applies the entries it created from the
//!   batches it built, not from its log: nobody else writes its log while it leads (it
//!   took back every write right when it became a candidate, and grants one only after
//!   stepping down), so a batch is the payload its followers were sent, byte for byte, and
//!   reading the entry back and checking its checksum again would only cost time. Entries
//!   it adopted in recovery are applied from its log, as a follower applies.
//! - **Recycling without waiting.** The slot of entry `i − capacity` is reused for entry
//!   `i` only once a majority (read from followers' status records every
//!   `status_read_period_ns`) has applied it, and no WRITE of it is still in flight. A
//!   crashed follower is not in that majority's way; a follower that falls behind the
//!   ring gets a snapshot.

use std::cmp::Reverse;
use std::collections::VecDeque;

use usec_qp_pool::majority;

use crate::cft::candidate::{
    ask_permission, collect_grants, post_head_read, post_promise, read_heads, split_term_sequence,
    term_sequence,
};
use crate::cft::local::{Local, Queued};
use crate::cft::op::{Op, OpKind};
use crate::cft::peers::{Barrier, Peer, Peers};
use crate::cft::port::{Channel, Place, Port, Source};
use crate::cft::tracked::Tracked;
use crate::log::batch::BatchBuilder;
use crate::log::entry::{EntryHeader, EntryKind, ENTRY_HEADER_BYTES};
use crate::log::layout::{COMMIT_OFFSET, SNAPSHOT_RECORD_OFFSET};
use crate::log::local::SlotRead;
use crate::log::record::{Record, RecordKind};
use crate::state_machine::StateMachine;

/// Why a leader stops leading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StepDown {
    /// A follower holds a promise above ours: a newer candidate prepared.
    Superseded,
    /// Fewer than a majority can still be written.
    LostMajority,
}

/// The snapshot a leader keeps in its own area for pushes.
#[derive(Clone, Debug)]
struct HeldSnapshot {
    index: u64,
    len: usize,
    record: [u8; crate::log::record::RECORD_BYTES],
}

/// A replica leading.
#[derive(Debug)]
pub(crate) struct Leader {
    term: u64,
    proposal: u64,
    /// The next entry to create.
    pub(crate) next_index: u64,
    /// Its own log holds every entry from here to `next_index`, as far as it checked
    /// ([`Leader::holds_from`] checks further down on demand).
    floor: u64,
    first_number: u64,
    permission_number: u64,
    asked_ns: u64,
    batch: BatchBuilder,
    /// Entries created in this leadership and not applied yet, oldest first: index and
    /// batch (see the module doc on applying them).
    own: VecDeque<(u64, Vec<u8>)>,
    /// Buffers of batches applied, to build the next ones in.
    spare: Vec<Vec<u8>>,
    last_entry_ns: u64,
    /// The snapshot in its own snapshot area, and the pushes of it in flight. (Boxed: a
    /// leader rarely holds one, and the role it is a variant of stays small.)
    snapshot: Option<Box<HeldSnapshot>>,
    pushes: usize,
    group: usize,
    header: Vec<u8>,
    /// Entries are created, empty if no command waits, up to here: a newcomer admitted
    /// counts only past an entry created after its admission.
    confirm_until: u64,
    /// The promise record of `proposal`, encoded once: it is written to every follower
    /// that joins.
    promise: [u8; crate::log::record::RECORD_BYTES],
}

impl Leader {
    /// Leads from a recovered log: entries below `next_index` are in its own log, those
    /// below `commit` decided.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new<S: StateMachine>(
        term: u64,
        proposal: u64,
        next_index: u64,
        now_ns: u64,
        first_number: u64,
        permission_number: u64,
        local: &mut Local<S>,
        peers: &Peers,
    ) -> Leader {
        let limit = local.config.slot_bytes - ENTRY_HEADER_BYTES;
        Leader {
            term,
            proposal,
            next_index,
            floor: next_index,
            first_number,
            permission_number,
            asked_ns: now_ns,
            batch: BatchBuilder::new(limit),
            own: VecDeque::new(),
            spare: Vec::new(),
            last_entry_ns: now_ns,
            snapshot: None,
            pushes: 0,
            group: peers.len() + 1,
            header: vec![0; ENTRY_HEADER_BYTES],
            confirm_until: 0,
            promise: Record::new(RecordKind::Promise, &[proposal]).encode(),
        }
    }

    /// One turn: take late grants, start copying to new followers, decide what a majority
    /// holds, apply it, create entries, post them, and keep idle followers informed.
    pub(crate) fn step<S: StateMachine>(
        &mut self,
        now_ns: u64,
        local: &mut Local<S>,
        peers: &mut Peers,
        port: &mut Tracked<'_>,
        inbox_due: bool,
    ) -> Result<(), StepDown> {
        if inbox_due {
            collect_grants(local, peers, self.first_number);
            self.ask_missing(now_ns, local, peers, port);
        }
        read_heads(now_ns, self.term, local, peers, port);
        self.admit_followers(now_ns, local, peers, port)?;
        if 1 + peers.iter().filter(|peer| peer.granted).count() < majority(self.group) {
            return Err(StepDown::LostMajority);
        }
        self.decide(local, peers);
        self.create_entries(now_ns, local, peers);
        for peer in peers.iter_mut() {
            self.copy_to(local, peer, port);
        }
        self.idle_commit(now_ns, local, peers, port);
        self.refresh_statuses(now_ns, local, peers, port);
        Ok(())
    }

    fn ask_missing<S>(&mut self, now_ns: u64, local: &Local<S>, peers: &mut Peers, port: &mut Tracked<'_>) {
        if peers.iter().all(|peer| peer.granted) {
            return;
        }
        if now_ns.saturating_sub(self.asked_ns) >= local.config.permission_retry_ns {
            self.asked_ns = now_ns;
            self.permission_number += 1;
        }
        ask_permission(self.permission_number, local, peers, port);
    }

    /// Followers whose head arrived: write the promise, then start copying.
    fn admit_followers<S: StateMachine>(
        &mut self,
        _now_ns: u64,
        local: &mut Local<S>,
        peers: &mut Peers,
        port: &mut Tracked<'_>,
    ) -> Result<(), StepDown> {
        let promise = self.promise;
        // A newcomer (its grant said it lost its state) may have promised, before it lost
        // it, more than it now shows; it counts only once it applied an entry created
        // after this admission, decided by a majority that left it out.
        let confirm = self.next_index + 1;
        let log_start = self.log_start(local);
        let capacity = local.config.capacity;
        for peer in peers.iter_mut().filter(|peer| peer.live && !peer.snapshot_pushing) {
            // Copying overwrote the slot it was to apply next (it was paused, or slow):
            // only a snapshot brings it back.
            let applied = peer.head.map_or(0, |head| head.status.applied).max(peer.pushed);
            if peer.next > applied + capacity {
                peer.live = false;
                self.push_snapshot(local, peer, port);
            }
        }
        for peer in peers.iter_mut().filter(|peer| peer.granted && !peer.live) {
            let Some(head) = peer.head else { continue };
            if head.promise > self.proposal {
                return Err(StepDown::Superseded);
            }
            match peer.barrier {
                Barrier::None if counts(peer) => post_promise(peer, &promise, self.proposal, self.term, port),
                Barrier::None => {
                    self.confirm_until = self.confirm_until.max(confirm);
                    let newcomer_promise =
                        Record::new(RecordKind::Promise, &[self.proposal, confirm]).encode();
                    post_promise(peer, &newcomer_promise, self.proposal, self.term, port);
                }
                Barrier::Posted => {}
                Barrier::Done if peer.snapshot_pushing => {}
                Barrier::Done => {
                    let from = head.copy_from();
                    let id = peer.id.get();
                    local
                        .note(|| format!("copies to {id} from {from} (log from {log_start}), head {head:?}"));
                    if self.holds_from(local, from) {
                        peer.next = from;
                        peer.acked = from;
                        peer.commit_sent = 0;
                        peer.live = true;
                    } else {
                        self.push_snapshot(local, peer, port);
                    }
                }
            }
        }
        Ok(())
    }

    /// The oldest entry its own log holds, as far as it checked.
    fn log_start<S>(&self, local: &Local<S>) -> u64 {
        self.floor.max(self.next_index.saturating_sub(local.config.capacity))
    }

    /// Whether its own log holds every entry from `from` to `next_index`: the slots below
    /// what it checked so far are checked now, down to `from` at most. A new leader used to
    /// check its whole ring at once, backwards until a slot did not hold its entry: with a
    /// full ring of 1,024 slots, 0.3 ms in the turn it took over, before its first entry;
    /// a follower usually needs the last entry or two.
    fn holds_from<S: StateMachine>(&mut self, local: &mut Local<S>, from: u64) -> bool {
        let lowest = self.next_index.saturating_sub(local.config.capacity);
        if from < lowest {
            return false;
        }
        while self.floor > from.max(lowest) {
            local.stats.own_slots_checked += 1;
            match local.log.read_slot(self.floor - 1, &mut local.slot) {
                SlotRead::Entry(_) => self.floor -= 1,
                _ => return false,
            }
        }
        true
    }

    fn push_snapshot<S: StateMachine>(
        &mut self,
        local: &mut Local<S>,
        peer: &mut Peer,
        port: &mut Tracked<'_>,
    ) {
        let stale = self.snapshot.as_ref().map(|held| held.index);
        if stale.is_none_or(|index| !self.holds_from(local, index)) {
            if self.pushes > 0 {
                return; // the area is being read by another push
            }
            let bytes = local.applier.snapshot();
            if bytes.len() > local.config.snapshot_bytes {
                return; // cannot be transferred: the follower stays behind
            }
            let record = local.log.store_snapshot(local.applied, &bytes);
            self.snapshot = Some(Box::new(HeldSnapshot {
                index: local.applied,
                len: bytes.len(),
                record: record.encode(),
            }));
        }
        let held = self.snapshot.as_ref().expect("stored above");
        let area = Place::log(local.log.layout().snapshot_offset());
        let sequence = term_sequence(self.term, held.index);
        let bytes_id = Op::new(OpKind::SnapshotBytes, peer.id, sequence).wr_id();
        let record_id = Op::new(OpKind::SnapshotRecord, peer.id, sequence).wr_id();
        // The bytes first, then the record that makes them valid: RC keeps the order.
        let posted = port.write(peer.id, bytes_id, Source::Local(area, held.len), area).and_then(|()| {
            port.write(peer.id, record_id, Source::Bytes(&held.record), Place::log(SNAPSHOT_RECORD_OFFSET))
        });
        match posted {
            Ok(()) => {
                peer.snapshot_pushing = true;
                self.pushes += 1;
                local.stats.snapshots_pushed += 1;
            }
            Err(_) => {
                peer.broken[Channel::Log.index()] = true;
                peer.drop_out();
            }
        }
    }

    /// Moves the commit index to what a majority holds, and applies.
    pub(crate) fn decide<S: StateMachine>(&mut self, local: &mut Local<S>, peers: &Peers) {
        let mut held: [u64; 16] = [0; 16];
        let mut count = 0;
        held[count] = self.next_index;
        count += 1;
        for peer in peers.iter().filter(|peer| peer.live && counts(peer)) {
            if count < held.len() {
                held[count] = peer.acked;
                count += 1;
            }
        }
        let need = majority(self.group);
        if count >= need {
            held[..count].sort_unstable_by_key(|&value| Reverse(value));
            local.learn_commit(held[need - 1]);
        }
        while let Some(&(index, _)) = self.own.front() {
            if index >= local.commit || index > local.applied {
                break; // not decided yet, or entries before it are to be applied from the log
            }
            let (_, batch) = self.own.pop_front().expect("just looked");
            if index == local.applied {
                local.apply_own(&batch);
            }
            self.spare.push(batch);
        }
        local.apply_decided();
    }

    /// Whether entry `index` may be created now (see the module doc on recycling).
    fn may_create<S>(&self, index: u64, local: &Local<S>, peers: &Peers) -> bool {
        let config = &local.config;
        if index - local.commit >= config.pipeline {
            return false;
        }
        let Some(reused) = index.checked_sub(config.capacity) else { return true };
        let mut applied: [u64; 16] = [0; 16];
        let mut count = 0;
        applied[count] = local.applied;
        count += 1;
        for peer in peers.iter().filter(|peer| peer.granted) {
            if count < applied.len() {
                applied[count] = peer.head.map_or(0, |head| head.status.applied);
                count += 1;
            }
        }
        applied[..count].sort_unstable_by_key(|&value| Reverse(value));
        let need = majority(self.group);
        let majority_applied = if count >= need { applied[need - 1] } else { 0 };
        // A WRITE of the reused slot may still be reading it for a live follower; one
        // that failed took the rest of its QP's work with it.
        reused < majority_applied
            && peers.iter().all(|peer| !(peer.live && peer.next > reused && peer.acked <= reused))
    }

    fn create_entries<S: StateMachine>(&mut self, now_ns: u64, local: &mut Local<S>, peers: &Peers) {
        while (!local.queue.is_empty() || self.next_index < self.confirm_until)
            && self.may_create(self.next_index, local, peers)
        {
            self.batch.clear();
            while let Some(queued) = local.queue.front() {
                if self.batch.len() == local.config.batch_commands
                    || !self.batch.push(queued.id, &queued.command)
                {
                    break;
                }
                let Queued { id, command } = local.queue.pop_front().expect("just looked");
                local.awaiting.insert(id);
                local.recycle(command);
            }
            let header = EntryHeader {
                index: self.next_index,
                proposal: self.proposal,
                commit: local.commit.min(self.next_index),
                len: self.batch.bytes().len() as u32,
                kind: EntryKind::Commands,
            };
            let mut slot = std::mem::take(&mut local.slot);
            local.log.write_entry(&header, self.batch.bytes(), &mut slot);
            local.slot = slot;
            let (index, commands) = (self.next_index, self.batch.len());
            if self.own.len() >= local.config.capacity as usize {
                // Its applying stalls (it cannot, while it leads): the log serves instead.
                self.own.pop_front();
            }
            let batch = self.batch.take(self.spare.pop().unwrap_or_default());
            self.own.push_back((index, batch));
            local.note(|| format!("creates {index} ({commands} commands)"));
            self.next_index += 1;
            self.last_entry_ns = now_ns;
            local.stats.entries += 1;
        }
    }

    /// Posts what `peer` lacks of the log, within the pipeline.
    fn copy_to<S>(&mut self, local: &Local<S>, peer: &mut Peer, port: &mut Tracked<'_>) {
        if !peer.live || peer.barrier != Barrier::Done || !peer.usable(Channel::Log) {
            return;
        }
        while peer.next < self.next_index && peer.next - peer.acked < local.config.pipeline {
            let index = peer.next;
            let offset = local.log.layout().entry_offset(index);
            let Some(len) = self.own_entry_len(index).or_else(|| self.logged_entry_len(local, index)) else {
                // Not in its own log after all: start this follower over from a snapshot.
                peer.live = false;
                peer.head = None;
                return;
            };
            let wr_id = Op::new(OpKind::Entry, peer.id, term_sequence(self.term, index)).wr_id();
            let source = Source::Local(Place::log(offset), len);
            if port.write(peer.id, wr_id, source, Place::log(offset)).is_err() {
                peer.broken[Channel::Log.index()] = true;
                peer.drop_out();
                return;
            }
            peer.next += 1;
        }
    }

    /// The length of entry `index` if this leadership created it and has not applied it:
    /// it is in its own slot as built (see the module doc on applying), no need to look.
    fn own_entry_len(&self, index: u64) -> Option<usize> {
        let &(first, _) = self.own.front()?;
        let (at, batch) = self.own.get(usize::try_from(index.checked_sub(first)?).ok()?)?;
        (*at == index).then_some(ENTRY_HEADER_BYTES + batch.len())
    }

    /// The length of entry `index` as its own slot's header says, if the slot holds it.
    fn logged_entry_len<S>(&mut self, local: &Local<S>, index: u64) -> Option<usize> {
        let offset = local.log.layout().entry_offset(index);
        local.log.log_region().read(offset, &mut self.header).expect("slots lie inside the log");
        let header = EntryHeader::peek(&self.header, local.config.slot_bytes)?;
        (header.index == index).then(|| header.total_len())
    }

    fn idle_commit<S>(&mut self, now_ns: u64, local: &Local<S>, peers: &mut Peers, port: &mut Tracked<'_>) {
        if now_ns.saturating_sub(self.last_entry_ns) < local.config.idle_commit_ns {
            return;
        }
        for peer in peers.iter_mut().filter(|peer| peer.live && peer.usable(Channel::Log)) {
            let commit = local.commit.min(peer.next);
            if peer.next != self.next_index || commit <= peer.commit_sent {
                continue;
            }
            let record = Record::new(RecordKind::Commit, &[commit, self.proposal]).encode();
            let wr_id = Op::new(OpKind::Commit, peer.id, term_sequence(self.term, commit)).wr_id();
            if port.write(peer.id, wr_id, Source::Bytes(&record), Place::log(COMMIT_OFFSET)).is_err() {
                peer.broken[Channel::Log.index()] = true;
                peer.drop_out();
                continue;
            }
            peer.commit_sent = commit;
        }
    }

    fn refresh_statuses<S>(
        &mut self,
        now_ns: u64,
        local: &Local<S>,
        peers: &mut Peers,
        port: &mut Tracked<'_>,
    ) {
        let blocked = !local.queue.is_empty() && !self.may_create(self.next_index, local, peers);
        let period =
            if blocked { local.config.status_read_period_ns / 8 } else { local.config.status_read_period_ns };
        for peer in peers.iter_mut().filter(|peer| peer.live) {
            if now_ns.saturating_sub(peer.head_read_ns) >= period {
                post_head_read(now_ns, self.term, peer, local, port);
            }
        }
    }

    /// A completion of one of the leadership's operations.
    pub(crate) fn on_success(&mut self, op: Op, peers: &mut Peers) {
        let Some(peer) = peers.get_mut(op.peer) else { return };
        let (term, value) = split_term_sequence(op.sequence);
        let ours = term == self.term & crate::cft::candidate::TERM_TAG;
        match op.kind {
            OpKind::Entry if ours && peer.live => {
                // Sequence numbers hold 40 bits of index: restore the rest from `next`.
                let index = restore_index(value, peer.next);
                peer.acked = peer.acked.max(index + 1);
            }
            OpKind::SnapshotRecord if ours && peer.snapshot_pushing => {
                peer.snapshot_pushing = false;
                self.pushes = self.pushes.saturating_sub(1);
                let index = self.snapshot.as_ref().map_or(0, |held| held.index);
                peer.pushed = index;
                peer.next = index;
                peer.acked = index;
                peer.commit_sent = 0;
                peer.live = true;
            }
            _ => {}
        }
    }

    /// A push failed with its peer.
    pub(crate) fn on_failure(&mut self, op: Op) {
        if op.kind == OpKind::SnapshotRecord {
            self.pushes = self.pushes.saturating_sub(1);
        }
    }

    /// The proposal number it leads with.
    pub(crate) fn proposal(&self) -> u64 {
        self.proposal
    }

    /// Its latest permission request number.
    pub(crate) fn permission_number(&self) -> u64 {
        self.permission_number
    }
}

/// The full index whose low 40 bits are `low`, closest below `next`.
fn restore_index(low: u64, next: u64) -> u64 {
    let mask = (1u64 << 40) - 1;
    let candidate = (next & !mask) | low;
    if candidate >= next {
        candidate.saturating_sub(1 << 40)
    } else {
        candidate
    }
}

/// Whether a follower's acknowledgements count towards a majority: it granted as a replica
/// that kept its state, or its status says a leader has since confirmed it.
pub(crate) fn counts(peer: &Peer) -> bool {
    peer.eligible || peer.head.is_some_and(|head| head.status.eligible)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_come_back_from_40_bits() {
        assert_eq!(restore_index(5, 10), 5);
        let big = (3u64 << 40) + 7;
        assert_eq!(restore_index(big & ((1 << 40) - 1), big + 3), big);
        assert_eq!(restore_index((1 << 40) - 1, 1 << 40), (1 << 40) - 1);
    }
}
