//! One replica's CTBcast stream as every other replica sees it: processed strictly in
//! index order, and what it has said so far (`Facts`).
//!
//! CTBcast makes every correct receiver deliver the same message at each index, but in
//! any order and possibly with gaps (an index may be abandoned). Consensus processes a
//! stream in index order only, with no gaps: then every correct replica that has
//! processed a stream up to index `i` has seen exactly the same messages, in the same
//! order, and derives exactly the same facts from them — the first prepare of a view for
//! a slot, the first promise of a replica, what it had said when it sealed a view. That
//! sameness is what lets 2f + 1 replicas and f + 1 quorums be enough (uBFT's argument:
//! CTBcast takes equivocation away from a Byzantine replica).
//!
//! A gap (an index lost to this receiver: it fell more than a CTBcast tail behind, say
//! because it was paused) stops the stream until the sender's next recap
//! ([`super::recap`]) restarts it with the facts every in-order receiver holds; guessing
//! past a gap is never done. A proven equivocation, or a recap that contradicts the
//! stream, stops it for good: giving up is safe (as if the sender had gone silent).

use std::collections::BTreeMap;

use super::wire::RecapPart;
use crate::bft::ctbcast::{Hash, SignatureBytes};

/// Promises or commits of one stream per slot: the first digest per view, latest views
/// last, at most [`VIEWS_KEPT`] views.
pub(super) type PerSlot = BTreeMap<u64, Vec<(u64, Hash)>>;

/// Views of one slot a stream's facts remember.
pub(super) const VIEWS_KEPT: usize = 4;

/// Checkpoints a stream's facts remember (the latest).
pub(super) const CHECKPOINTS_KEPT: usize = 8;

/// What a stream had said when it sealed a view.
#[derive(Clone, Debug, Default)]
pub(super) struct Snapshot {
    /// Its last stable checkpoint then.
    pub(super) low: u64,
    /// Its promises then.
    pub(super) promises: PerSlot,
    /// Its commits (certificate holders) then.
    pub(super) commits: PerSlot,
}

/// What a stream has said, derived the same way by every correct replica.
#[derive(Clone, Debug, Default)]
pub(super) struct Facts {
    /// The highest view it sealed (0: none; views above 0 start with a seal).
    pub(super) sealed: u64,
    pub(super) promises: PerSlot,
    pub(super) commits: PerSlot,
    /// Its latest checkpoints, slot to digest and its signature.
    pub(super) checkpoints: BTreeMap<u64, (Hash, SignatureBytes)>,
    /// Its seals, by view: what it had said then.
    pub(super) seals: BTreeMap<u64, Snapshot>,
}

impl Facts {
    /// Slots remembered per stream: bounded by the stream's own highest slot, so what one
    /// stream says never evicts another's facts, and the rule is the same everywhere.
    pub(super) fn record(map: &mut PerSlot, slots_kept: usize, slot: u64, view: u64, digest: Hash) -> bool {
        let views = map.entry(slot).or_default();
        if views.iter().any(|&(v, _)| v == view) {
            return false;
        }
        views.push((view, digest));
        views.sort_by_key(|&(v, _)| v);
        if views.len() > VIEWS_KEPT {
            views.remove(0);
        }
        while map.len() > slots_kept {
            map.pop_first();
        }
        true
    }

    /// The digest this stream first gave for `(slot, view)` in `map`.
    pub(super) fn lookup(map: &PerSlot, slot: u64, view: u64) -> Option<Hash> {
        map.get(&slot)?.iter().find(|&&(v, _)| v == view).map(|&(_, digest)| digest)
    }
}

/// A stream's in-order processing state at this replica.
///
/// Two cursors walk it, both in index order. The **facts** cursor takes what a stream
/// says about its sender (promises, commits, checkpoints, seals) and never waits. The
/// **protocol** cursor takes what it asks of us (a new view to enter, prepares to
/// promise) and may wait at its head: a new view whose sealers' seals have not reached
/// us, a prepare beyond our window. The facts cursor going on alone keeps a stream
/// waiting on another (say, a new view naming a Byzantine sealer whose stream has a gap
/// here) from hiding its sender's later seals.
#[derive(Debug, Default)]
pub(super) struct Stream {
    /// The next index the facts cursor takes.
    pub(super) next: u64,
    /// The next index the protocol cursor takes (never beyond `next`).
    pub(super) protocol_next: u64,
    /// Since when the protocol cursor's head waits.
    pub(super) blocked_since_ns: Option<u64>,
    /// Delivered and not yet passed by both cursors.
    pub(super) ahead: BTreeMap<u64, Vec<u8>>,
    /// Given up for good (an equivocation, a lying recap): nothing more is processed.
    pub(super) broken: bool,
    /// Lost part of the stream: waiting for a recap; since when, and when we last asked.
    pub(super) resync: Option<Resync>,
    /// The parts of a recap read so far (at the facts cursor, consecutive).
    pub(super) recap: Vec<RecapPart>,
    /// Seals up to this view came before a recap we restarted from: their snapshots are
    /// unknown here (not lies: a new view naming them cannot be checked, so it waits).
    pub(super) seals_unknown_to: u64,
    pub(super) facts: Facts,
}

/// A stream waiting for a recap.
#[derive(Clone, Copy, Debug)]
pub(super) struct Resync {
    /// When we last asked the sender for a recap.
    pub(super) asked_ns: u64,
}

impl Stream {
    /// A delivered message. `limit` bounds what waits ahead of the cursors.
    /// Returns false when the message shows a gap: a stream far ahead of a stuck cursor
    /// (the caller starts a resync).
    pub(super) fn delivered(&mut self, index: u64, message: Vec<u8>, limit: usize) -> bool {
        if index < self.protocol_next || self.broken {
            return true;
        }
        if self.ahead.len() >= limit && !self.ahead.contains_key(&index) {
            if self.resync.is_none() {
                return false;
            }
            // Waiting for a recap: keep the newest, where it will be.
            self.ahead.pop_first();
        }
        self.ahead.insert(index, message);
        true
    }

    /// Whether index `next` can no longer come: below what CTBcast still keeps and not
    /// delivered.
    pub(super) fn has_gap(&self, oldest_kept: u64) -> bool {
        self.resync.is_none()
            && !self.broken
            && self.next < oldest_kept
            && !self.ahead.contains_key(&self.next)
    }

    /// The facts cursor's message, if it is in.
    pub(super) fn facts_head(&self) -> Option<&Vec<u8>> {
        self.ahead.get(&self.next).filter(|_| !self.broken && self.resync.is_none())
    }

    /// The protocol cursor's message, once the facts cursor has passed it.
    pub(super) fn protocol_head(&self) -> Option<&Vec<u8>> {
        self.ahead
            .get(&self.protocol_next)
            .filter(|_| !self.broken && self.resync.is_none() && self.protocol_next < self.next)
    }

    /// The protocol cursor's head was handled.
    pub(super) fn advance_protocol(&mut self) {
        self.ahead.remove(&self.protocol_next);
        self.protocol_next += 1;
        self.blocked_since_ns = None;
    }
}
