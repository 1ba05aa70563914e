//! View change, driven by the replicas' own timeouts.
//!
//! - A replica whose oldest pending request has waited `view_change_timeout_ns` without
//!   executing gives up on its view: it CTBcasts `Seal {view + 1, low}` and stops taking
//!   part in older views. Its state for the new view is whatever its stream said before
//!   the seal — every correct replica derives the same from the same stream
//!   ([`super::stream`]), so a Byzantine replica cannot tell two replicas two stories about
//!   what it promised or committed.
//! - A replica that sees f + 1 streams sealed past its view joins them (one of them is
//!   correct, so the view really is failing).
//! - The new view's leader, with f + 1 seals, CTBcasts `NewView {view, low, sealers}`.
//!   Every replica checks it against its own copy of those streams: the sealers really
//!   sealed this view, `low` is their highest stable checkpoint and is stable, and then it
//!   derives the same re-proposals ([`super::derive`]) and accepts the leader's prepares
//!   for those slots only if they carry exactly those batches (holes: an empty batch).
//!   Lies — a sealer list that did not seal, a low that is not stable, a re-proposal that
//!   is not the derived one, a commit whose certificate does not verify — are refused.
//! - No new view within the deadline: the next view, with the wait doubled.
//! - A replica that lost its leader's stream (it fell a CTBcast tail behind, see
//!   [`super::recap`]) seals its view to be let back in; the others follow such a lone
//!   seal once their view has decided only on the slow path for [`REJOIN_PATIENCE`]
//!   view-change timeouts, so the fast path (which needs every replica) comes back.

use usec_qp_pool::NodeId;

use super::action::Event;
use super::derive::derive;
use super::reject::Reject;
use super::replica::{Flow, Replica, Status};
use super::stream::Snapshot;
use super::wire::{batch_digest, StreamMessage};
use crate::state_machine::StateMachine;

/// How far past our view a timeout may take us to catch up with another replica's seal.
const MAX_VIEW_JUMP: u64 = 1 << 10;

/// Seals a stream keeps (the latest views).
const SEALS_KEPT: usize = 4;

/// View-change timeouts a view runs on the slow path alone before following a replica
/// that sealed past it asking to be let back in.
pub(super) const REJOIN_PATIENCE: u64 = 8;

impl<S: StateMachine> Replica<S> {
    pub(super) fn start_view_change(&mut self, now_ns: u64, view: u64, attempt: u32) {
        let wait = self.config.view_change_timeout_ns.saturating_mul(1 << attempt.min(16));
        self.view = view;
        self.status =
            Status::Changing { since_ns: now_ns, deadline_ns: now_ns.saturating_add(wait), attempt };
        self.plan.clear();
        self.stats.view_changes += 1;
        self.events.push_back(Event::ViewChangeStarted { view });
        let low = self.stable;
        self.broadcast(StreamMessage::Seal { view, low });
    }

    /// View-change deadlines: a request waiting too long, a new view not coming.
    pub(super) fn view_timers(&mut self, now_ns: u64) {
        match self.status {
            Status::Normal => {
                let timeout = self.config.view_change_timeout_ns;
                if self.oldest_pending().is_some_and(|at| at + timeout <= now_ns) {
                    self.start_view_change(now_ns, self.view + 1, 0);
                } else if let Some(view) = self.rejoin_due(now_ns) {
                    self.stats.rejoin_follows += 1;
                    self.start_view_change(now_ns, view, 0);
                }
            }
            Status::Changing { since_ns, deadline_ns, attempt } => {
                // Waited a base timeout already, and another replica sealed further: follow
                // it, so two correct replicas whose timers drifted apart meet instead of
                // chasing each other one view at a time. Bounded, so a Byzantine seal cannot
                // fling us to the end of the view numbers; and only after a base timeout in
                // each view, so Byzantine seals cannot rush us past a leader that works.
                let furthest = self
                    .streams
                    .iter()
                    .filter(|(&r, _)| r != self.me)
                    .map(|(_, s)| s.facts.sealed)
                    .filter(|&v| v <= self.view + MAX_VIEW_JUMP)
                    .max()
                    .unwrap_or(0);
                let waited = now_ns >= since_ns + self.config.view_change_timeout_ns;
                if waited && furthest > self.view {
                    self.start_view_change(now_ns, furthest, attempt);
                } else if deadline_ns <= now_ns {
                    self.start_view_change(now_ns, self.view + 1, attempt + 1);
                }
            }
        }
    }

    /// A replica that lost our leader's stream sealed past our view to be let back in
    /// (see [`super::recap`]); while it is out, every slot needs the slow path. Follow
    /// its seal once our view has run on the slow path alone for [`REJOIN_PATIENCE`]
    /// view-change timeouts: a Byzantine replica that seals ahead on purpose (and
    /// withholds its promises) buys at most one view change per that many timeouts.
    fn rejoin_due(&self, now_ns: u64) -> Option<u64> {
        let patience = self.config.view_change_timeout_ns.saturating_mul(REJOIN_PATIENCE);
        let since = self.view_entered_ns.max(self.last_fast_ns);
        if self.slow_since_fast == 0 || now_ns < since.saturating_add(patience) {
            return None;
        }
        self.streams
            .iter()
            .filter(|(&r, _)| r != self.me)
            .map(|(_, s)| s.facts.sealed)
            .filter(|&v| v > self.view && v <= self.view + MAX_VIEW_JUMP)
            .min()
    }

    pub(super) fn on_seal(&mut self, now_ns: u64, from: NodeId, view: u64, low: u64) -> Result<Flow, Reject> {
        let interval = self.config.checkpoint_interval();
        let facts = &mut self.streams.get_mut(&from).expect("a replica").facts;
        if view <= facts.sealed {
            return Err(Reject::Invalid { what: "seal that does not move to a higher view" });
        }
        if low % interval != 0 {
            return Err(Reject::Invalid { what: "seal with a low off the checkpoint interval" });
        }
        facts.sealed = view;
        let snapshot = Snapshot { low, promises: facts.promises.clone(), commits: facts.commits.clone() };
        facts.seals.insert(view, snapshot);
        while facts.seals.len() > SEALS_KEPT {
            facts.seals.pop_first();
        }
        // f + 1 sealed past our view: at least one correct replica gave up on it; join.
        let mut sealed: Vec<u64> = self.streams.values().map(|s| s.facts.sealed).collect();
        sealed.sort_unstable_by(|a, b| b.cmp(a));
        let joined = sealed[self.config.f()];
        if joined > self.view {
            self.start_view_change(now_ns, joined, 0);
        }
        Ok(Flow::Done)
    }

    pub(super) fn on_new_view(
        &mut self,
        now_ns: u64,
        from: NodeId,
        view: u64,
        low: u64,
        sealers: &[NodeId],
    ) -> Result<Flow, Reject> {
        if view == 0 || from != self.config.leader(view) {
            return Err(Reject::Invalid { what: "new view from a replica that does not lead it" });
        }
        if view < self.view || (view == self.view && self.status == Status::Normal) {
            return Err(Reject::Stale { what: "new view" });
        }
        let mut distinct = sealers.to_vec();
        distinct.sort();
        distinct.dedup();
        let members = distinct.iter().all(|s| self.config.replicas.contains(s));
        if distinct.len() != sealers.len() || sealers.len() != self.config.f() + 1 || !members {
            return Err(Reject::Invalid { what: "new view sealer list" });
        }
        let mut snapshots: Vec<&Snapshot> = Vec::with_capacity(sealers.len());
        for sealer in sealers {
            let facts = &self.streams[sealer].facts;
            match facts.seals.get(&view) {
                Some(snapshot) => snapshots.push(snapshot),
                None if facts.sealed > view && view > self.streams[sealer].seals_unknown_to => {
                    return Err(Reject::Invalid { what: "new view naming a seal its sealer never made" });
                }
                None => return Ok(Flow::Blocked), // its seal has not reached us yet
            }
        }
        if snapshots.iter().map(|s| s.low).max() != Some(low) {
            return Err(Reject::Invalid { what: "new view low that is not its sealers' highest" });
        }
        if low > 0 && self.checkpoint_digest(low).is_none() {
            return Ok(Flow::Blocked); // not stable as far as we know yet
        }
        let plan = derive(view, low, &snapshots);
        self.enter_view(now_ns, view, low, plan);
        Ok(Flow::Done)
    }

    fn enter_view(
        &mut self,
        now_ns: u64,
        view: u64,
        low: u64,
        plan: std::collections::BTreeMap<u64, [u8; 32]>,
    ) {
        self.view = view;
        self.status = Status::Normal;
        self.view_entered_ns = now_ns;
        self.plan_end = plan.last_key_value().map_or(low, |(&slot, _)| slot).max(low);
        self.plan = plan;
        self.proposed.clear();
        self.next_slot = self.plan_end + 1;
        // A fresh view gets a fresh chance to execute what waits.
        for (_, at) in self.pending.values_mut() {
            *at = now_ns;
        }
        self.events.push_back(Event::ViewEntered { view });
        if self.config.leader(view) != self.me {
            return;
        }
        for slot in low + 1..=self.plan_end {
            let batch = match self.plan.get(&slot) {
                Some(digest) => match self.slots.get(&slot).and_then(|s| s.batches.get(digest)) {
                    Some(batch) => {
                        self.stats.reproposals += 1;
                        batch.clone()
                    }
                    // Unknown bytes: nothing we can propose will be accepted; the view
                    // will time out and another leader try.
                    None => continue,
                },
                None => Vec::new(),
            };
            debug_assert!(self.plan.get(&slot).is_none_or(|d| *d == batch_digest(&batch)));
            self.proposed.extend(batch.iter().map(|r| (r.client, r.number)));
            self.broadcast(StreamMessage::Prepare { view, slot, batch });
        }
    }

    /// The new view's leader: with f + 1 seals whose lows we know are stable, start it.
    pub(super) fn try_build_new_view(&mut self, _now_ns: u64) {
        let Status::Changing { .. } = self.status else { return };
        if self.config.leader(self.view) != self.me || self.new_view_sent == Some(self.view) {
            return;
        }
        let view = self.view;
        let mut sealers: Vec<NodeId> = Vec::new();
        let mut low = 0;
        let order =
            std::iter::once(self.me).chain(self.config.replicas.iter().copied().filter(|&r| r != self.me));
        for replica in order {
            let Some(snapshot) = self.streams[&replica].facts.seals.get(&view) else { continue };
            if snapshot.low > 0 && self.checkpoint_digest(snapshot.low).is_none() {
                continue;
            }
            sealers.push(replica);
            low = low.max(snapshot.low);
            if sealers.len() == self.config.f() + 1 {
                self.new_view_sent = Some(view);
                self.stats.new_views_built += 1;
                self.broadcast(StreamMessage::NewView { view, low, sealers });
                return;
            }
        }
    }
}
