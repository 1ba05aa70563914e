//! `Candidate`: taking over as leader — Mu's slow path, tolerant of a minority failing.
//!
//! 1. **Permissions.** Take back every write right on its own log, ask every peer for
//!    the right to write theirs, and wait for a majority (itself included) of eligible
//!    replicas to grant it; ask again every `permission_retry_ns`. As soon as a peer
//!    grants, READ its log head (promise, commit record, status). From then on nobody
//!    but this candidate can land a WRITE in those logs.
//! 2. **Proposal number.** Above every promise in the quorum (its own included), unique
//!    to this replica (`p ≡ rank mod n`); promised by WRITE to each quorum member, posted
//!    before any entry on the same QP. `C`, the highest commit index in the quorum: every
//!    entry below is decided.
//! 3. **Catching itself up.** Its own log must hold the decided prefix: entries from what
//!    it applied up to `C` are READ from the member that knows `C`, or, if that member's
//!    ring moved past them, a snapshot is pulled from the member that applied the most
//!    (it stores one on request; the candidate READs it) — followed by whatever entries
//!    below `C` remain.
//! 4. **Recovery.** From `C` upward, READ each quorum member's slots a run at a time; at
//!    each index adopt the entry with the highest proposal among the quorum's and its own,
//!    rewritten with its own proposal number, and stop at the first index where nobody
//!    has one: nothing at or after it can have been decided (a leader writes each
//!    follower's log in order, so a decided entry has its predecessors on a majority).
//!
//! Then it leads, with the adopted entries first in its pipeline. Commands proposed to it
//! meanwhile wait and are replicated after them — never reported committed because an
//! old value was (the bug SEEDS.md records in Mu's code).

use usec_qp_pool::{majority, NodeId};

use crate::cft::follower::{send, Follower};
use crate::cft::local::Local;
use crate::cft::op::{Op, OpKind};
use crate::cft::peers::{Barrier, Head, Peers, HEAD_READ_BYTES};
use crate::cft::port::{Channel, Place, Port, Source};
use crate::cft::tracked::Tracked;
use crate::log::entry::{entry_payload, verify_entry, EntryHeader};
use crate::log::layout::{InboxLine, PROMISE_OFFSET};
use crate::log::local::SlotRead;
use crate::log::record::{Record, RecordKind};
use crate::state_machine::StateMachine;

/// Where a candidacy stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Permissions,
    CatchSelf {
        source: NodeId,
        next: u64,
        count: usize,
        reading: bool,
        arrived: bool,
    },
    PullSnapshot {
        source: NodeId,
        number: u64,
        asked_ns: u64,
        ready: Option<[u64; 3]>,
        reading: bool,
        arrived: bool,
    },
    Slots {
        next: u64,
        count: usize,
    },
}

/// What a step of the candidacy came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Still working.
    Working,
    /// Recovered: lead with entries below `next_index` in the log.
    Lead { next_index: u64 },
    /// The quorum fell apart: start over.
    Restart,
}

/// A replica taking over.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub(crate) term: u64,
    /// The permission request number of this candidacy (and the first one, whose acks
    /// still count).
    pub(crate) number: u64,
    pub(crate) first_number: u64,
    requested_ns: u64,
    pub(crate) phase: Phase,
    /// The proposal number, once chosen.
    pub(crate) proposal: Option<u64>,
    /// `C`: the highest commit index of the quorum.
    pub(crate) commit: u64,
    group: usize,
    rank: u64,
    /// When the current snapshot pull was first asked for.
    pull_started_ns: u64,
    /// Where the quorum's logs stop, as they were when it granted (the highest `present`
    /// of its members' heads and of its own log): recovery READs slots up to here at
    /// once. Only a size for the READs: recovery still stops at the first index nobody
    /// holds.
    present: u64,
}

/// The smallest proposal number above `promised` that is `rank` modulo `group`.
pub(crate) fn next_proposal(promised: u64, rank: u64, group: usize) -> u64 {
    let group = group as u64;
    (promised / group + 1) * group + rank
}

impl Candidate {
    /// Starts a candidacy: takes back its log, asks every peer for theirs.
    #[allow(clippy::too_many_arguments)] // the replica's parts, lent for the start
    pub(crate) fn start<S: StateMachine>(
        term: u64,
        number: u64,
        now_ns: u64,
        local: &mut Local<S>,
        peers: &mut Peers,
        follower: &mut Follower,
        port: &mut Tracked<'_>,
        rank: u64,
    ) -> Candidate {
        peers.reset();
        follower.revoke_all(peers, port);
        let candidate = Candidate {
            term,
            number,
            first_number: number,
            requested_ns: now_ns,
            phase: Phase::Permissions,
            proposal: None,
            commit: local.commit,
            group: peers.len() + 1,
            rank,
            pull_started_ns: 0,
            present: 0,
        };
        candidate.ask_permission(local, peers, port);
        candidate
    }

    /// Asks the peers that did not grant, and were not asked under the current number,
    /// for their log — once nothing of ours to their log is in flight (see `tracked`).
    fn ask_permission<S>(&self, local: &Local<S>, peers: &mut Peers, port: &mut Tracked<'_>) {
        ask_permission(self.number, local, peers, port);
    }

    /// Advances the candidacy as far as it can without waiting.
    pub(crate) fn step<S: StateMachine>(
        &mut self,
        now_ns: u64,
        local: &mut Local<S>,
        peers: &mut Peers,
        port: &mut Tracked<'_>,
    ) -> Outcome {
        collect_grants(local, peers, self.first_number);
        read_heads(now_ns, self.term, local, peers, port);
        if self.proposal.is_none() {
            return self.await_quorum(now_ns, local, peers, port);
        }
        if 1 + peers.members() < majority(self.group) {
            return Outcome::Restart;
        }
        match self.phase.clone() {
            Phase::Permissions => unreachable!("left once the proposal is chosen"),
            Phase::CatchSelf { .. } => self.catch_self(local, peers, port),
            Phase::PullSnapshot { .. } => self.pull_snapshot(now_ns, local, peers, port),
            Phase::Slots { .. } => self.recover_slots(local, peers, port),
        }
    }

    fn await_quorum<S: StateMachine>(
        &mut self,
        now_ns: u64,
        local: &mut Local<S>,
        peers: &mut Peers,
        port: &mut Tracked<'_>,
    ) -> Outcome {
        if 1 + peers.quorum() < majority(self.group) {
            if now_ns.saturating_sub(self.requested_ns) >= local.config.permission_retry_ns {
                self.number += 1;
                self.requested_ns = now_ns;
                // A restarted peer granted before a leader caught it up: ask it again, it
                // may count by now.
                for peer in peers.iter_mut().filter(|peer| peer.granted && !peer.eligible) {
                    peer.drop_out();
                }
            }
            self.ask_permission(local, peers, port);
            return Outcome::Working;
        }
        // A quorum granted and its heads are in: choose the proposal number and promise it.
        for peer in peers.iter_mut() {
            peer.member = peer.in_quorum();
        }
        let heads: Vec<Head> = peers.iter().filter(|peer| peer.member).filter_map(|peer| peer.head).collect();
        let promised = heads.iter().map(|head| head.promise).max().unwrap_or(0).max(local.log.promise());
        let proposal = next_proposal(promised, self.rank, self.group);
        local.log.set_promise(proposal);
        self.proposal = Some(proposal);
        self.commit = heads.iter().map(Head::commit).max().unwrap_or(0).max(local.commit);
        self.present = heads.iter().map(|head| head.status.present).max().unwrap_or(0).max(local.present());
        let members: Vec<String> = peers
            .iter()
            .filter(|peer| peer.member)
            .map(|peer| format!("{}:{:?}", peer.id.get(), peer.head))
            .collect();
        let commit = self.commit;
        local.note(|| format!("proposal {proposal} (promised {promised}), C {commit}, members {members:?}"));
        let promise = Record::new(RecordKind::Promise, &[proposal]).encode();
        for peer in peers.iter_mut().filter(|peer| peer.member) {
            post_promise(peer, &promise, proposal, self.term, port);
        }
        self.phase = self.catch_up_or_recover(local, peers);
        Outcome::Working
    }

    /// After the proposal (or a pulled snapshot): fetch the decided entries it lacks, or
    /// go on to recovery.
    ///
    /// The entries below `C` are read from a member that knows `C`. If every such member
    /// has left the quorum since `C` was chosen, `C` becomes the highest commit index of
    /// the members that remain: they are still a majority that promised this proposal, so
    /// recovery from the lower `C` adopts, at each index, the highest-proposal entry of a
    /// majority — the decided one where there is one — exactly as a candidacy that had
    /// started with this quorum would.
    fn catch_up_or_recover<S: StateMachine>(&mut self, local: &mut Local<S>, peers: &Peers) -> Phase {
        local.apply_decided();
        if local.applied >= self.commit {
            return Phase::Slots { next: self.commit, count: 0 };
        }
        let knows_commit = |peer: &&crate::cft::peers::Peer| {
            peer.member && peer.head.is_some_and(|head| head.commit() >= self.commit)
        };
        let source = peers.iter().filter(knows_commit).min_by_key(|peer| peer.id).map(|peer| peer.id);
        match source {
            Some(source) => {
                Phase::CatchSelf { source, next: local.applied, count: 0, reading: false, arrived: false }
            }
            None => {
                let remaining = peers
                    .iter()
                    .filter(|peer| peer.member)
                    .filter_map(|peer| peer.head.map(|head| head.commit()))
                    .max()
                    .unwrap_or(0)
                    .max(local.commit);
                if remaining < self.commit {
                    let before = self.commit;
                    local.note(|| format!("C {before} -> {remaining}: who knew it left the quorum"));
                    self.commit = remaining;
                    return self.catch_up_or_recover(local, peers);
                }
                // Only its own log knows C: it has every entry below C (it applies them).
                Phase::Slots { next: self.commit, count: 0 }
            }
        }
    }

    fn catch_self<S: StateMachine>(
        &mut self,
        local: &mut Local<S>,
        peers: &mut Peers,
        port: &mut Tracked<'_>,
    ) -> Outcome {
        let Phase::CatchSelf { source, next, count, reading, arrived } = self.phase.clone() else {
            unreachable!()
        };
        let Some(peer) = peers.get_mut(source).filter(|peer| peer.member) else {
            self.phase = self.catch_up_or_recover(local, peers);
            return Outcome::Working;
        };
        if !reading {
            let count =
                run_length(next, self.commit, local.log.layout().capacity, local.log.layout().read_chunk);
            if post_slot_read(self.term, peer, next, count, local, port) {
                self.phase = Phase::CatchSelf { source, next, count, reading: true, arrived: false };
            }
            return Outcome::Working;
        }
        if !arrived {
            return Outcome::Working;
        }
        let layout = *local.log.layout();
        let mut image = vec![0u8; layout.slot_bytes];
        for at in 0..count {
            let index = next + at as u64;
            local
                .log
                .read_control(layout.scratch_slots_offset(source.get()) + at * layout.slot_bytes, &mut image);
            match verify_entry(&image) {
                Some(header) if header.index == index => {
                    local.log.copy_slot_in(index, &image[..header.total_len()]);
                    local.note(|| {
                        format!("catch-self {index} from {} (proposal {})", source.get(), header.proposal)
                    });
                }
                // Its ring moved past this entry: pull a snapshot from whoever applied most.
                _ => {
                    self.phase = self.snapshot_phase(peers);
                    return Outcome::Working;
                }
            }
        }
        let next = next + count as u64;
        if next >= self.commit {
            local.learn_commit(self.commit);
            local.apply_decided();
            self.phase = Phase::Slots { next: self.commit, count: 0 };
        } else {
            self.phase = Phase::CatchSelf { source, next, count: 0, reading: false, arrived: false };
        }
        Outcome::Working
    }

    fn snapshot_phase(&mut self, peers: &Peers) -> Phase {
        let source = peers
            .iter()
            .filter(|peer| peer.member)
            .max_by_key(|peer| (peer.head.map_or(0, |head| head.status.applied), std::cmp::Reverse(peer.id)))
            .map(|peer| peer.id)
            .expect("catching up needs a quorum member");
        self.number += 1; // snapshot requests share the candidacy's numbering
        Phase::PullSnapshot {
            source,
            number: self.number,
            asked_ns: 0,
            ready: None,
            reading: false,
            arrived: false,
        }
    }

    fn pull_snapshot<S: StateMachine>(
        &mut self,
        now_ns: u64,
        local: &mut Local<S>,
        peers: &mut Peers,
        port: &mut Tracked<'_>,
    ) -> Outcome {
        let Phase::PullSnapshot { source, number, asked_ns, ready, reading, arrived } = self.phase.clone()
        else {
            unreachable!()
        };
        if !peers.get(source).is_some_and(|peer| peer.member) {
            self.phase = self.snapshot_phase(peers);
            return Outcome::Working;
        }
        let Some([index, len, digest]) = ready else {
            if asked_ns == 0 || now_ns.saturating_sub(asked_ns) >= local.config.permission_retry_ns {
                if asked_ns != 0
                    && now_ns.saturating_sub(self.pull_started_ns) >= 4 * local.config.permission_retry_ns
                {
                    // It does not answer (stopped?): stop counting on it.
                    peers.get_mut(source).expect("checked").drop_out();
                    return Outcome::Working;
                }
                if asked_ns == 0 {
                    self.pull_started_ns = now_ns;
                }
                let request = Record::new(RecordKind::SnapshotRequest, &[u64::from(local.me.get()), number]);
                send(local, peers, port, source, InboxLine::SnapshotRequest, &request, number);
                self.phase =
                    Phase::PullSnapshot { source, number, asked_ns: now_ns.max(1), ready, reading, arrived };
            }
            if let Some(record) =
                local.log.inbox(source.get(), InboxLine::SnapshotReady, RecordKind::SnapshotReady)
            {
                let [from, answered, index, len, digest, ok] = record.fields;
                if from == u64::from(source.get()) && answered == number {
                    if ok != 1 {
                        // It granted someone else since: it is no longer this candidacy's.
                        peers.get_mut(source).expect("checked").drop_out();
                        return Outcome::Working;
                    }
                    let ready = Some([index, len, digest]);
                    self.phase = Phase::PullSnapshot {
                        source,
                        number,
                        asked_ns,
                        ready,
                        reading: false,
                        arrived: false,
                    };
                }
            }
            return Outcome::Working;
        };
        if !reading {
            let peer = peers.get_mut(source).expect("checked");
            let snapshot = Place::log(local.log.layout().snapshot_offset());
            let wr_id = Op::new(OpKind::SnapshotRead, source, term_sequence(self.term, index)).wr_id();
            if port.read(source, wr_id, snapshot, len as usize, snapshot).is_err() {
                peer.broken[Channel::Control.index()] = true;
                peer.drop_out();
                return Outcome::Working;
            }
            self.phase =
                Phase::PullSnapshot { source, number, asked_ns, ready, reading: true, arrived: false };
            return Outcome::Working;
        }
        if !arrived {
            return Outcome::Working;
        }
        match local.log.load_snapshot(index, len, digest) {
            Some(bytes) if local.restore(index, &bytes) => {
                local.stats.snapshots_pulled += 1;
                self.phase = self.catch_up_or_recover(local, peers);
            }
            // Torn or refused: ask again.
            _ => {
                self.number += 1;
                let number = self.number;
                self.phase = Phase::PullSnapshot {
                    source,
                    number,
                    asked_ns: 0,
                    ready: None,
                    reading: false,
                    arrived: false,
                };
            }
        }
        Outcome::Working
    }

    fn recover_slots<S: StateMachine>(
        &mut self,
        local: &mut Local<S>,
        peers: &mut Peers,
        port: &mut Tracked<'_>,
    ) -> Outcome {
        let Phase::Slots { next, count } = self.phase.clone() else { unreachable!() };
        let layout = *local.log.layout();
        if next >= self.commit + layout.capacity {
            return Outcome::Lead { next_index: next };
        }
        if count == 0 {
            // Up to the first slot past the quorum's logs, which ends recovery; a run of
            // one slot at a time beyond, should some member hold more after all.
            let end = (self.present + 1).min(self.commit + layout.capacity);
            let count = run_length(next, end, layout.capacity, layout.read_chunk);
            for peer in peers.iter_mut().filter(|peer| peer.member) {
                post_slot_read(self.term, peer, next, count, local, port);
            }
            self.phase = Phase::Slots { next, count };
            return Outcome::Working;
        }
        if peers.iter().any(|peer| peer.member && !peer.slots_read) {
            return Outcome::Working;
        }
        let proposal = self.proposal.expect("chosen before recovery");
        let mut mine = Vec::new();
        let mut image = vec![0u8; layout.slot_bytes];
        for at in 0..count {
            let index = next + at as u64;
            // Its own entry, then each member's: the highest proposal wins.
            let mut best: Option<(u64, Vec<u8>)> = None;
            if let SlotRead::Entry(header) = local.log.read_slot(index, &mut mine) {
                best = Some((header.proposal, mine[..header.total_len()].to_vec()));
            }
            for peer in peers.iter().filter(|peer| peer.member) {
                local.log.read_control(
                    layout.scratch_slots_offset(peer.id.get()) + at * layout.slot_bytes,
                    &mut image,
                );
                if let Some(header) = verify_entry(&image).filter(|header| header.index == index) {
                    if best.as_ref().is_none_or(|(seen, _)| header.proposal > *seen) {
                        best = Some((header.proposal, image[..header.total_len()].to_vec()));
                    }
                }
            }
            let Some((chosen_proposal, chosen)) = best else { return Outcome::Lead { next_index: index } };
            local.note(|| format!("adopts {index} (proposal {chosen_proposal})"));
            let header = verify_entry(&chosen).expect("verified above");
            let adopted = EntryHeader { proposal, commit: self.commit, ..header };
            local.log.write_entry(&adopted, entry_payload(&chosen, &header), &mut mine);
            local.stats.adopted += 1;
        }
        for peer in peers.iter_mut() {
            peer.slots_read = false;
        }
        self.phase = Phase::Slots { next: next + count as u64, count: 0 };
        Outcome::Working
    }

    /// A completion of one of the candidacy's reads or writes.
    pub(crate) fn on_success(&mut self, op: Op, peers: &mut Peers) {
        let Some(peer) = peers.get_mut(op.peer) else { return };
        match op.kind {
            // Only the read in flight counts: an earlier one's bytes may still be landing.
            OpKind::SlotRead if peer.slots_reading && op.sequence == peer.slots_tag => {
                peer.slots_reading = false;
                match &mut self.phase {
                    Phase::CatchSelf { source, arrived, .. } if *source == op.peer => *arrived = true,
                    Phase::Slots { .. } => peer.slots_read = true,
                    _ => {}
                }
            }
            OpKind::SnapshotRead => {
                if let Phase::PullSnapshot {
                    source, arrived, reading: true, ready: Some([index, ..]), ..
                } = &mut self.phase
                {
                    if *source == op.peer && op.sequence == term_sequence(self.term, *index) {
                        *arrived = true;
                    }
                }
            }
            _ => {}
        }
    }
}

/// Sends permission request `number` to every peer that did not grant and was not asked
/// under it yet, once nothing of this replica's to that peer's log is in flight and its
/// QP to that log works. A grant is worth nothing while that QP is down (the promise
/// could not be written: the member would drop out and the candidacy start over, again
/// and again until the repair), and it would make the peer revoke its current writer for
/// nothing; the peer is asked once the repair is done.
pub(crate) fn ask_permission<S>(number: u64, local: &Local<S>, peers: &mut Peers, port: &mut Tracked<'_>) {
    let request = Record::new(RecordKind::PermissionRequest, &[u64::from(local.me.get()), number]);
    let missing: Vec<NodeId> = peers
        .iter()
        .filter(|peer| !peer.granted && peer.asked < number && peer.usable(Channel::Log))
        .filter(|peer| port.log_drained(peer.id))
        .map(|peer| peer.id)
        .collect();
    for peer in missing {
        peers.get_mut(peer).expect("listed").asked = number;
        send(local, peers, port, peer, InboxLine::PermissionRequest, &request, number);
    }
}

/// Takes acknowledgements of permission requests numbered `first_number` or later.
pub(crate) fn collect_grants<S>(local: &Local<S>, peers: &mut Peers, first_number: u64) {
    for peer in peers.iter_mut().filter(|peer| !peer.granted) {
        let Some(ack) = local.log.inbox(peer.id.get(), InboxLine::PermissionAck, RecordKind::PermissionAck)
        else {
            continue;
        };
        let [from, number, eligible, ..] = ack.fields;
        if from == u64::from(peer.id.get()) && number >= first_number && number > peer.ack_seen {
            peer.ack_seen = number;
            peer.granted = true;
            peer.eligible = eligible == 1;
        }
    }
}

/// READs the head of every granted peer whose head is unknown.
pub(crate) fn read_heads<S>(
    now_ns: u64,
    term: u64,
    local: &Local<S>,
    peers: &mut Peers,
    port: &mut Tracked<'_>,
) {
    for peer in peers.iter_mut().filter(|peer| peer.granted && peer.head.is_none()) {
        post_head_read(now_ns, term, peer, local, port);
    }
}

/// READs `peer`'s log head into its scratch, unless one is in flight.
pub(crate) fn post_head_read<S>(
    now_ns: u64,
    term: u64,
    peer: &mut crate::cft::peers::Peer,
    local: &Local<S>,
    port: &mut Tracked<'_>,
) {
    if peer.head_reading || !peer.usable(Channel::Control) {
        return;
    }
    peer.head_read_ns = now_ns;
    peer.head_reads += 1;
    let tag = term_sequence(term, peer.head_reads);
    let into = Place::control(local.log.layout().scratch_head_offset(peer.id.get()));
    let wr_id = Op::new(OpKind::HeadRead, peer.id, tag).wr_id();
    match port.read(peer.id, wr_id, Place::log(0), HEAD_READ_BYTES, into) {
        Ok(()) => {
            peer.head_reading = true;
            peer.head_tag = tag;
        }
        Err(_) => {
            peer.broken[Channel::Control.index()] = true;
            peer.drop_out();
        }
    }
}

/// WRITEs the promise into `peer`'s log: the barrier before any entry.
pub(crate) fn post_promise(
    peer: &mut crate::cft::peers::Peer,
    promise: &[u8],
    proposal: u64,
    term: u64,
    port: &mut Tracked<'_>,
) {
    if !peer.usable(Channel::Log) {
        peer.drop_out();
        return;
    }
    let wr_id = Op::new(OpKind::Promise, peer.id, term_sequence(term, proposal)).wr_id();
    match port.write(peer.id, wr_id, Source::Bytes(promise), Place::log(PROMISE_OFFSET)) {
        Ok(()) => peer.barrier = Barrier::Posted,
        Err(_) => {
            peer.broken[Channel::Log.index()] = true;
            peer.drop_out();
        }
    }
}

/// READs `count` slots of `peer` from entry `first` into its scratch.
fn post_slot_read<S>(
    term: u64,
    peer: &mut crate::cft::peers::Peer,
    first: u64,
    count: usize,
    local: &Local<S>,
    port: &mut Tracked<'_>,
) -> bool {
    let layout = local.log.layout();
    let from = Place::log(layout.entry_offset(first));
    let into = Place::control(layout.scratch_slots_offset(peer.id.get()));
    let tag = term_sequence(term, first);
    let wr_id = Op::new(OpKind::SlotRead, peer.id, tag).wr_id();
    match port.read(peer.id, wr_id, from, count * layout.slot_bytes, into) {
        Ok(()) => {
            peer.slots_reading = true;
            peer.slots_tag = tag;
            peer.slots_read = false;
            true
        }
        Err(_) => {
            peer.broken[Channel::Control.index()] = true;
            peer.drop_out();
            false
        }
    }
}

/// How many slots from entry `next` one READ takes: up to `chunk`, not past `end`, and
/// not across the end of the ring (a READ is one contiguous range).
fn run_length(next: u64, end: u64, capacity: u64, chunk: usize) -> usize {
    let to_ring_end = capacity - next % capacity;
    (chunk as u64).min(end.saturating_sub(next)).min(to_ring_end).max(1) as usize
}

/// A sequence number tagged with the term, so completions of an earlier leadership can
/// never be taken for this one's (the promise barrier already orders them; this is a
/// second line): 4 bits of term above 40 bits of value, the 44 bits a `WrId` carries.
pub(crate) fn term_sequence(term: u64, value: u64) -> u64 {
    ((term & TERM_TAG) << 40) | (value & ((1 << 40) - 1))
}

/// The bits of the term a sequence carries.
pub(crate) const TERM_TAG: u64 = 0xf;

/// Splits [`term_sequence`].
pub(crate) fn split_term_sequence(sequence: u64) -> (u64, u64) {
    (sequence >> 40, sequence & ((1 << 40) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_rise_and_stay_unique() {
        assert_eq!(next_proposal(0, 0, 3), 3);
        assert_eq!(next_proposal(0, 2, 3), 5);
        assert_eq!(next_proposal(5, 1, 3), 7);
        for promised in 0..50 {
            for rank in 0..3 {
                let proposal = next_proposal(promised, rank, 3);
                assert!(proposal > promised && proposal % 3 == rank);
            }
        }
    }

    #[test]
    fn runs_stop_at_the_ring_end() {
        assert_eq!(run_length(6, 100, 8, 4), 2);
        assert_eq!(run_length(8, 100, 8, 4), 4);
        assert_eq!(run_length(8, 9, 8, 4), 1);
    }
}
