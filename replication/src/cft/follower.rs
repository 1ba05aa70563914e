//! `Follower`: what every replica does for the others, whatever its role — serve
//! permission requests (the single-writer switch) and snapshot requests from its inbox —
//! and, while it follows, learn the commit index and snapshots its leader writes into its
//! log region.
//!
//! The permission switch, as Mu does it but waiting for no one: a candidate writes a
//! request into this replica's inbox (the control region, which every peer may always
//! write); this replica, if it agrees (see [`Election::may_grant`]), revokes the write
//! right of whoever held it — after which no WRITE of the old holder can land — grants
//! the candidate, publishes an exact status, and acknowledges into the candidate's inbox.
//! The candidate needs acknowledgements from a majority, never from all.

use usec_qp_pool::NodeId;

use crate::cft::election::Election;
use crate::cft::local::Local;
use crate::cft::op::{Op, OpKind};
use crate::cft::peers::Peers;
use crate::cft::port::{Channel, Place, Port, Source};
use crate::cft::tracked::Tracked;
use crate::log::layout::InboxLine;
use crate::log::record::{Record, RecordKind};
use crate::state_machine::StateMachine;

/// The serving side of a replica.
#[derive(Debug)]
pub(crate) struct Follower {
    /// Per sender (by node id): the last permission request number seen.
    permission_seen: Vec<u64>,
    /// Per sender: the last snapshot request number seen.
    snapshot_seen: Vec<u64>,
    /// Who may write this replica's log (`None`: nobody, or this replica itself).
    pub(crate) holder: Option<NodeId>,
    /// Per sender: its latest permission request, refused, and when it came. Granted as
    /// soon as the election agrees, while the request is younger than the candidate's
    /// `permission_retry_ns` (by then it asked again, or gave up).
    refused: Vec<Option<(Request, u64)>>,
}

/// A permission request found in the inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) from: NodeId,
    pub(crate) number: u64,
}

impl Follower {
    pub(crate) fn new(nodes: usize) -> Follower {
        Follower {
            permission_seen: vec![0; nodes],
            snapshot_seen: vec![0; nodes],
            holder: None,
            refused: vec![None; nodes],
        }
    }

    /// Keeps `request`, refused at `now_ns`, to grant it if the election comes to agree
    /// (the sender's next request replaces it).
    pub(crate) fn refuse(&mut self, request: Request, now_ns: u64) {
        self.refused[usize::from(request.from.get())] = Some((request, now_ns));
    }

    /// The refused requests still young at `now_ns`, oldest sender id first; older ones
    /// are dropped.
    pub(crate) fn refused(&mut self, now_ns: u64, life_ns: u64) -> Vec<Request> {
        let mut young = Vec::new();
        for kept in &mut self.refused {
            match *kept {
                Some((request, at_ns)) if now_ns.saturating_sub(at_ns) < life_ns => young.push(request),
                _ => *kept = None,
            }
        }
        young
    }

    /// Forgets `peer`'s requests: a new process of it took the old one's place. It numbers
    /// its requests from its own clock, which starts with it, so they may well be below the
    /// old process's last — a follower that went on comparing them with those would ignore
    /// it until its clock caught up. Whatever the old process left in the inbox (requests,
    /// and answers to this replica's) is erased, not to be taken for the new one's. That
    /// may erase something the new process just wrote: it is asked for, or asks, again
    /// under a higher number after `permission_retry_ns`.
    pub(crate) fn forget<S>(&mut self, peer: NodeId, local: &Local<S>) {
        let index = usize::from(peer.get());
        self.permission_seen[index] = 0;
        self.snapshot_seen[index] = 0;
        local.log.clear_inbox(peer.get());
    }

    /// The next permission request not seen before, from any peer.
    pub(crate) fn next_permission_request<S>(&mut self, local: &Local<S>, peers: &Peers) -> Option<Request> {
        Self::next_request(
            &mut self.permission_seen,
            local,
            peers,
            InboxLine::PermissionRequest,
            RecordKind::PermissionRequest,
        )
    }

    /// The next snapshot request not seen before, from any peer.
    pub(crate) fn next_snapshot_request<S>(&mut self, local: &Local<S>, peers: &Peers) -> Option<Request> {
        Self::next_request(
            &mut self.snapshot_seen,
            local,
            peers,
            InboxLine::SnapshotRequest,
            RecordKind::SnapshotRequest,
        )
    }

    fn next_request<S>(
        seen: &mut [u64],
        local: &Local<S>,
        peers: &Peers,
        line: InboxLine,
        kind: RecordKind,
    ) -> Option<Request> {
        for from in peers.ids() {
            let Some(record) = local.log.inbox(from.get(), line, kind) else { continue };
            let [sender, number, ..] = record.fields;
            let slot = &mut seen[usize::from(from.get())];
            if sender == u64::from(from.get()) && number > *slot {
                *slot = number;
                return Some(Request { from, number });
            }
        }
        None
    }

    /// Grants `request`: revokes the current holder, lets the candidate write, publishes
    /// an exact status and acknowledges. The caller has stepped down from any role of its
    /// own first.
    pub(crate) fn grant<S: StateMachine>(
        &mut self,
        request: Request,
        local: &mut Local<S>,
        peers: &mut Peers,
        port: &mut Tracked<'_>,
    ) {
        let old = self.holder;
        self.refused[usize::from(request.from.get())] = None;
        if let Some(old) = self.holder.filter(|&old| old != request.from) {
            // A failure here leaves the old holder's QP broken, which serves nothing.
            let _ = port.allow_log_writer(old, false);
        }
        self.holder = Some(request.from);
        let _ = port.allow_log_writer(request.from, true);
        local.stats.grants += 1;
        // No old writer can land any more: the status is exact now, and stays so until the
        // candidate writes.
        let present = local.present();
        local.publish(Some(present));
        let from = request.from.get();
        let status = local.status(present);
        local.note(|| format!("grants {from} (revoked {old:?}), status {status:?}"));
        let ack = Record::new(
            RecordKind::PermissionAck,
            &[u64::from(local.me.get()), request.number, u64::from(local.eligible)],
        );
        send(local, peers, port, request.from, InboxLine::PermissionAck, &ack, request.number);
    }

    /// Takes back every peer's write right on this replica's log (it becomes a candidate).
    pub(crate) fn revoke_all(&mut self, peers: &Peers, port: &mut Tracked<'_>) {
        for peer in peers.ids() {
            let _ = port.allow_log_writer(peer, false);
        }
        self.holder = None;
    }

    /// Serves a snapshot request: from the candidate it granted, stores a snapshot of the
    /// applied state in this replica's snapshot area and says where; from anyone else (a
    /// candidate whose grant it since gave away), refuses, so the candidate stops counting
    /// on it.
    pub(crate) fn serve_snapshot<S: StateMachine>(
        &mut self,
        request: Request,
        local: &mut Local<S>,
        peers: &mut Peers,
        port: &mut Tracked<'_>,
    ) {
        let me = u64::from(local.me.get());
        let refuse = Record::new(RecordKind::SnapshotReady, &[me, request.number, 0, 0, 0, 0]);
        // Only the holder may read the area: nobody else writes it then.
        let bytes = (self.holder == Some(request.from)).then(|| local.applier.snapshot());
        let Some(bytes) = bytes.filter(|bytes| bytes.len() <= local.config.snapshot_bytes) else {
            send(local, peers, port, request.from, InboxLine::SnapshotReady, &refuse, request.number);
            return;
        };
        let record = local.log.store_snapshot(local.applied, &bytes);
        let [index, len, digest, ..] = record.fields;
        let ready = Record::new(RecordKind::SnapshotReady, &[me, request.number, index, len, digest, 1]);
        send(local, peers, port, request.from, InboxLine::SnapshotReady, &ready, request.number);
    }

    /// While following: takes the commit index and any snapshot the leader wrote here,
    /// then applies what is decided.
    pub(crate) fn follow<S: StateMachine>(&mut self, local: &mut Local<S>) {
        if let Some((commit, _proposal)) = local.log.commit_record() {
            local.learn_commit(commit);
        }
        local.apply_decided();
        if local.applied < local.commit {
            self.restore_pushed_snapshot(local);
        }
        // Learn the commit indices entries carry, past what is applied: each entry once
        // (what it says stays true if a later leader rewrites it; the next entry or the
        // commit record says more).
        let mut index = local.applied.max(local.scanned);
        while index < local.applied + local.config.pipeline {
            match local.log.read_slot(index, &mut local.slot) {
                crate::log::local::SlotRead::Entry(header) => {
                    local.learn_commit(header.commit);
                    index += 1;
                }
                _ => break,
            }
        }
        local.scanned = index;
        local.apply_decided();
    }

    fn restore_pushed_snapshot<S: StateMachine>(&mut self, local: &mut Local<S>) {
        let Some((index, len, digest)) = local.log.snapshot_record() else { return };
        if index <= local.applied {
            return;
        }
        if let Some(bytes) = local.log.load_snapshot(index, len, digest) {
            local.restore(index, &bytes);
        }
    }
}

/// Writes `record` into `to`'s inbox line for messages from this replica.
pub(crate) fn send<S>(
    local: &Local<S>,
    peers: &mut Peers,
    port: &mut Tracked<'_>,
    to: NodeId,
    line: InboxLine,
    record: &Record,
    number: u64,
) {
    let Some(peer) = peers.get_mut(to) else { return };
    if !peer.usable(Channel::Control) {
        return;
    }
    let target = Place::control(local.log.layout().inbox_offset(local.me.get(), line));
    let wr_id = Op::new(OpKind::Message, to, number).wr_id();
    if port.write(to, wr_id, Source::Bytes(&record.encode()), target).is_err() {
        peer.broken[Channel::Control.index()] = true;
    }
}

/// Whether the election lets this replica grant `request`.
pub(crate) fn agrees(election: &Election, request: Request, eligible: bool) -> bool {
    election.may_grant(request.from, eligible)
}
