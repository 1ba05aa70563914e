//! Recaps: restarting a stream a receiver lost part of.
//!
//! CTBcast keeps only the last `tail` messages of a stream. A replica that falls further
//! behind (paused by its OS, or cut off for a while) finds a gap in another replica's
//! stream, and consensus processes a stream strictly in order (see [`super::stream`]),
//! so that stream stops for it. Without a way back, one pause would cost the group its
//! fast path (it needs every replica's promise) for good.
//!
//! The way back: the receiver asks the sender ([`DirectMessage::RecapRequest`]); the
//! sender CTBcasts a **recap**, what its stream has said so far that still matters —
//! its highest sealed view, its checkpoints, its promises and its commits (each with its
//! prepare certificate) above its stable checkpoint — in one or more consecutive
//! [`StreamMessage::Recap`] parts. Then:
//!
//! - A receiver that processed the stream in order compares the recap with the facts it
//!   derived from the stream. They are equal for a correct sender (it derives its own
//!   facts the same way); a recap that differs is a lie every correct in-order receiver
//!   sees alike, and the stream is given up for good there.
//! - A receiver waiting after a gap restarts the stream just after the recap, taking the
//!   recap as the stream's facts, once everything in it checks: certificates and
//!   checkpoint signatures verify, entries are in order and above `low`.
//!
//! Why this keeps the view change safe. A new view is derived from its sealers' facts
//! above the new view's `low`, the highest of the sealers' stable checkpoints at their
//! seals ([`super::derive`]). For a correct sender the recap is exactly the facts
//! above its own stable checkpoint, and its later seals carry a `low` at least that
//! high, so a restarted receiver derives what every in-order receiver derives. Commits
//! are taken only with a certificate that verifies, so a Byzantine sender's recap can
//! make a restarted receiver believe no certificate that does not exist; its promises
//! count only where every sealer promised alike, which includes a correct sealer. Seals
//! made before the recap are unknown to the restarted receiver: a new view naming one
//! waits (and times out) rather than being judged.
//!
//! What a restarted receiver must not do: promise in the view it was in when it lost
//! the leader's stream — it may have missed a prepare for a slot, and promising a second
//! one would hand a Byzantine leader two certificates for one slot in one view. So it
//! seals that view at once, asking to be let back in; the others follow such a seal once
//! their own view has run on the slow path for a while (see [`super::view_change`]).

use std::collections::BTreeMap;

use usec_qp_pool::NodeId;

use super::action::Action;
use super::certificate::{verify_certificate, verify_checkpoint_certificate};
use super::reject::Reject;
use super::replica::{Flow, Replica, Status};
use super::stream::{Facts, PerSlot, Resync, CHECKPOINTS_KEPT, VIEWS_KEPT};
use super::wire::{recap_entries_max, DirectMessage, RecapPart, Share, StreamMessage};
use crate::bft::ctbcast::{Hash, SignatureBytes};
use crate::state_machine::StateMachine;

/// Parts one recap may have.
const PARTS_MAX: usize = 64;

/// A whole recap, its parts joined.
#[derive(Debug, Default)]
struct Recap {
    low: u64,
    sealed: u64,
    checkpoints: Vec<(u64, Hash, SignatureBytes)>,
    promises: Vec<(u64, u64, Hash)>,
    commits: Vec<(u64, u64, Hash, Vec<Share>)>,
}

impl Recap {
    fn join(parts: Vec<RecapPart>) -> Recap {
        let mut recap = Recap::default();
        for part in parts {
            recap.low = part.low;
            recap.sealed = part.sealed;
            recap.checkpoints.extend(part.checkpoints);
            recap.promises.extend(part.promises);
            recap.commits.extend(part.commits);
        }
        recap
    }

    /// Whether it says exactly what `facts` say above `low`.
    fn matches(&self, facts: &Facts) -> bool {
        let checkpoints: Vec<(u64, Hash, SignatureBytes)> =
            facts.checkpoints.iter().map(|(&slot, &(digest, signature))| (slot, digest, signature)).collect();
        let commits: Vec<(u64, u64, Hash)> =
            self.commits.iter().map(|&(slot, view, digest, _)| (slot, view, digest)).collect();
        facts.sealed == self.sealed
            && checkpoints == self.checkpoints
            && flatten(&facts.promises, self.low) == self.promises
            && flatten(&facts.commits, self.low) == commits
    }
}

/// A stream's promises or commits above `low`, in (slot, view) order.
fn flatten(map: &PerSlot, low: u64) -> Vec<(u64, u64, Hash)> {
    map.range(low.saturating_add(1)..)
        .flat_map(|(&slot, views)| views.iter().map(move |&(view, digest)| (slot, view, digest)))
        .collect()
}

/// Rebuilds a per-slot map from entries in strictly increasing (slot, view) order, all
/// above `low`, at most [`VIEWS_KEPT`] views a slot.
fn rebuild(entries: impl Iterator<Item = (u64, u64, Hash)>, low: u64) -> Result<PerSlot, Reject> {
    let mut map = PerSlot::new();
    let mut last: Option<(u64, u64)> = None;
    for (slot, view, digest) in entries {
        if slot <= low || last.is_some_and(|previous| previous >= (slot, view)) {
            return Err(Reject::Invalid { what: "recap entries out of order" });
        }
        last = Some((slot, view));
        let views = map.entry(slot).or_default();
        if views.len() == VIEWS_KEPT {
            return Err(Reject::Invalid { what: "recap with too many views of a slot" });
        }
        views.push((view, digest));
    }
    Ok(map)
}

/// The header bytes of an encoded recap part (kind, low, sealed) and its flags, read
/// without decoding the rest: waiting streams look for recaps among many messages.
fn peek_recap(bytes: &[u8]) -> Option<(&[u8], bool, bool)> {
    let kind = StreamMessage::Recap(RecapPart::default()).encode()[0];
    if bytes.len() < 18 || bytes[0] != kind {
        return None;
    }
    Some((&bytes[..17], bytes[17] & 1 != 0, bytes[17] & 2 != 0))
}

impl<S: StateMachine> Replica<S> {
    /// A gap in `from`'s stream: stop processing it and ask its sender for a recap.
    pub(super) fn start_resync(&mut self, now_ns: u64, from: NodeId) {
        let stream = self.streams.get_mut(&from).expect("a replica");
        if stream.broken || stream.resync.is_some() || from == self.me {
            return;
        }
        stream.resync = Some(Resync { asked_ns: now_ns });
        stream.recap.clear();
        self.stats.stream_gaps += 1;
        let bytes = DirectMessage::RecapRequest.encode();
        self.actions.push_back(Action::ToReplica { to: from, bytes });
    }

    /// Asks again, every half view-change timeout, for recaps that have not come (a
    /// request or a recap may be lost, or land in another gap).
    pub(super) fn recap_timers(&mut self, now_ns: u64) {
        let every = self.config.view_change_timeout_ns / 2;
        for (&from, stream) in self.streams.iter_mut() {
            let Some(resync) = &mut stream.resync else { continue };
            if resync.asked_ns.saturating_add(every) <= now_ns {
                resync.asked_ns = now_ns;
                let bytes = DirectMessage::RecapRequest.encode();
                self.actions.push_back(Action::ToReplica { to: from, bytes });
            }
        }
    }

    /// When a waiting stream asks again.
    pub(super) fn recap_timeout(&self) -> Option<u64> {
        let every = self.config.view_change_timeout_ns / 2;
        self.streams.values().filter_map(|s| s.resync.map(|r| r.asked_ns.saturating_add(every))).min()
    }

    /// Another replica lost part of our stream. A recap goes out once our own queue is
    /// processed (so it says what our stream has said), at most every half view-change
    /// timeout: a Byzantine asker cannot make us flood our stream.
    pub(super) fn on_recap_request(&mut self, now_ns: u64) -> Result<(), Reject> {
        let every = self.config.view_change_timeout_ns / 2;
        if self.recap_due || self.recap_sent_ns.is_some_and(|at| now_ns < at.saturating_add(every)) {
            return Err(Reject::Duplicate { what: "recap request" });
        }
        self.recap_due = true;
        Ok(())
    }

    /// CTBcasts our recap, in parts that each fit a CTBcast message. Call with our own
    /// queue empty: our facts are then what our stream has said.
    pub(super) fn send_recap(&mut self, now_ns: u64) {
        self.recap_due = false;
        self.recap_sent_ns = Some(now_ns);
        self.stats.recaps_sent += 1;
        let low = self.stable;
        let facts = &self.streams[&self.me].facts;
        let checkpoints: Vec<(u64, Hash, SignatureBytes)> =
            facts.checkpoints.iter().map(|(&slot, &(digest, signature))| (slot, digest, signature)).collect();
        let promises = flatten(&facts.promises, low);
        let commits: Vec<(u64, u64, Hash, Vec<Share>)> = flatten(&facts.commits, low)
            .into_iter()
            .map(|(slot, view, digest)| {
                let certificate = self.own_certificates.get(&(slot, view)).cloned().unwrap_or_default();
                (slot, view, digest, certificate)
            })
            .collect();
        // Fixed part: kind, low, sealed, flags, three counts; checkpoints 104 bytes each,
        // promises 48, commits 52 and 66 per share.
        let budget = self.config.ctbcast.max_message_bytes - 64;
        let entries_max = recap_entries_max(&self.limits);
        let mut parts =
            vec![RecapPart { low, sealed: facts.sealed, first: true, checkpoints, ..Default::default() }];
        let mut size = 30 + 104 * parts[0].checkpoints.len();
        let fresh = |parts: &mut Vec<RecapPart>, size: &mut usize| {
            parts.push(RecapPart { low, sealed: parts[0].sealed, ..Default::default() });
            *size = 30;
        };
        for promise in promises {
            if size + 48 > budget || parts.last().expect("one").promises.len() == entries_max {
                fresh(&mut parts, &mut size);
            }
            size += 48;
            parts.last_mut().expect("one").promises.push(promise);
        }
        for commit in commits {
            let bytes = 52 + 66 * commit.3.len();
            if size + bytes > budget || parts.last().expect("one").commits.len() == entries_max {
                fresh(&mut parts, &mut size);
            }
            size += bytes;
            parts.last_mut().expect("one").commits.push(commit);
        }
        parts.last_mut().expect("one").last = true;
        for part in parts {
            self.broadcast(StreamMessage::Recap(part));
        }
    }

    /// A recap part at the facts cursor of `from`'s stream, read in order: the parts
    /// gather, and the whole must say what the stream said.
    pub(super) fn on_recap_part(&mut self, from: NodeId, part: RecapPart) -> Result<Flow, Reject> {
        let stream = self.streams.get_mut(&from).expect("a replica");
        if part.first {
            stream.recap.clear();
        } else {
            let follows =
                stream.recap.last().is_some_and(|p| !p.last && (p.low, p.sealed) == (part.low, part.sealed));
            if !follows || !part.checkpoints.is_empty() {
                stream.recap.clear();
                return Err(Reject::Invalid { what: "recap part out of place" });
            }
        }
        if stream.recap.len() == PARTS_MAX {
            stream.recap.clear();
            return Err(Reject::Invalid { what: "recap of too many parts" });
        }
        let last = part.last;
        stream.recap.push(part);
        if !last {
            return Ok(Flow::Done);
        }
        let recap = Recap::join(std::mem::take(&mut stream.recap));
        if recap.matches(&stream.facts) {
            return Ok(Flow::Done);
        }
        // Every correct in-order receiver sees the same lie: all give the stream up.
        stream.broken = true;
        stream.ahead.clear();
        self.stats.broken_streams += 1;
        Err(Reject::Invalid { what: "recap that contradicts its stream" })
    }

    /// A stream waiting after a gap: restarts it after the first whole recap among what
    /// it delivered. True if it moved.
    pub(super) fn try_resync(&mut self, now_ns: u64, from: NodeId) -> bool {
        let stream = &self.streams[&from];
        let mut found: Option<(u64, u64)> = None;
        let mut refused: Vec<u64> = Vec::new();
        'start: for (&start, bytes) in &stream.ahead {
            let Some((header, true, mut last)) = peek_recap(bytes) else { continue };
            let mut end = start;
            while !last {
                match stream.ahead.get(&(end + 1)).and_then(|b| peek_recap(b)) {
                    Some((h, false, l)) if h == header => {
                        end += 1;
                        last = l;
                    }
                    // Not there yet (or never will be): a later recap may do.
                    _ => continue 'start,
                }
            }
            if end - start >= PARTS_MAX as u64 {
                refused.push(start);
                continue;
            }
            found = Some((start, end));
            break;
        }
        let Some((start, end)) = found else {
            let stream = self.streams.get_mut(&from).expect("a replica");
            for start in refused {
                stream.ahead.remove(&start);
            }
            return false;
        };
        let mut parts = Vec::new();
        for index in start..=end {
            match StreamMessage::decode(&self.streams[&from].ahead[&index], &self.limits) {
                Ok(StreamMessage::Recap(part)) => parts.push(part),
                _ => {
                    self.stats.refuse(Reject::Invalid { what: "recap part" });
                    self.streams.get_mut(&from).expect("a replica").ahead.remove(&start);
                    return true;
                }
            }
        }
        match self.adopt_recap(now_ns, from, end, Recap::join(parts)) {
            Ok(()) => true,
            Err(reject) => {
                // Not this one; a later recap may do.
                self.stats.refuse(reject);
                self.streams.get_mut(&from).expect("a replica").ahead.remove(&start);
                true
            }
        }
    }

    /// Takes `recap` (whose last part is at index `end`) as `from`'s facts, once it
    /// checks, and restarts the stream after it.
    fn adopt_recap(&mut self, now_ns: u64, from: NodeId, end: u64, recap: Recap) -> Result<(), Reject> {
        let interval = self.config.checkpoint_interval();
        if recap.low % interval != 0 || recap.checkpoints.len() > CHECKPOINTS_KEPT {
            return Err(Reject::Invalid { what: "recap header" });
        }
        let promises = rebuild(recap.promises.iter().copied(), recap.low)?;
        let commits = rebuild(recap.commits.iter().map(|&(s, v, d, _)| (s, v, d)), recap.low)?;
        let needed = self.config.f() + 1;
        for (slot, view, digest, certificate) in &recap.commits {
            verify_certificate(&self.keys, &self.config.replicas, needed, *view, *slot, digest, certificate)?;
        }
        let mut checkpoints = BTreeMap::new();
        for &(slot, digest, signature) in &recap.checkpoints {
            if slot == 0
                || slot % interval != 0
                || checkpoints.last_key_value().is_some_and(|(&l, _)| l >= slot)
            {
                return Err(Reject::Invalid { what: "recap checkpoints" });
            }
            verify_checkpoint_certificate(
                &self.keys,
                &self.config.replicas,
                1,
                slot,
                &digest,
                &[(from, signature)],
            )
            .map_err(|_| Reject::BadSignature { what: "recap checkpoint" })?;
            checkpoints.insert(slot, (digest, signature));
        }
        let stream = self.streams.get_mut(&from).expect("a replica");
        stream.facts = Facts { sealed: recap.sealed, promises, commits, checkpoints, seals: BTreeMap::new() };
        stream.seals_unknown_to = recap.sealed;
        stream.next = end + 1;
        stream.protocol_next = end + 1;
        stream.blocked_since_ns = None;
        stream.resync = None;
        stream.recap.clear();
        stream.ahead.retain(|&index, _| index > end);
        self.stats.resynced_streams += 1;
        // Checkpoints the recap shows stable.
        let slots: Vec<u64> = self.streams[&from].facts.checkpoints.keys().rev().copied().collect();
        if let Some((slot, digest)) = slots
            .into_iter()
            .filter(|&s| s > self.stable)
            .find_map(|s| self.checkpoint_digest(s).map(|d| (s, d)))
        {
            self.make_stable(slot, digest);
        }
        // We may have missed a prepare of our view: take no further part in it (a sealed
        // view takes no promise), and ask to move on.
        if self.status == Status::Normal && from == self.config.leader(self.view) {
            self.stats.rejoin_seals += 1;
            self.start_view_change(now_ns, self.view + 1, 0);
        }
        Ok(())
    }
}
