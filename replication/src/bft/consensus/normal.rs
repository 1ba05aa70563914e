//! The normal case: requests, prepare, promise, the fast and slow paths, execution and
//! checkpoints.
//!
//! - The leader CTBcasts `Prepare {view, slot, batch}`, pipelined up to `window` slots
//!   past the last stable checkpoint.
//! - A replica checks it (the view's leader, a slot in the window, every request signed
//!   by its client, the first prepare of this view for the slot, the new view's
//!   re-proposal if there is one) and CTBcasts `Promise`.
//! - **Fast path**: decided when all n streams carry a promise of the same batch in one
//!   view. No signature is made or checked for it.
//! - **Slow path**: a replica whose promised slot is undecided after
//!   `slow_path_timeout_ns` sends its Ed25519 share to the others; f + 1 matching shares
//!   are a prepare certificate, CTBcast in a `Commit`; decided when f + 1 streams carry a
//!   commit of the same batch in one view.
//! - Decided slots execute in order; each request at most once per client number; the
//!   signed reply goes to the client. Every `window / 2` slots a replica CTBcasts its
//!   signed digest of its history and state ([`super::state_transfer`]); f + 1 equal
//!   ones make the checkpoint stable and slide the window.

use usec_qp_pool::NodeId;

use super::action::{Action, DecisionPath, Event};
use super::certificate::{
    sign_checkpoint, sign_share, verify_certificate, verify_checkpoint_certificate, verify_share,
};
use super::reject::Reject;
use super::replica::{Flow, Replica, Slot, Status};
use super::request::{ClientId, Reply, Request};
use super::stream::{Facts, CHECKPOINTS_KEPT};
use super::wire::{batch_digest, Batch, DirectMessage, StreamMessage};
use crate::bft::ctbcast::{Hash, SignatureBytes};
use crate::state_machine::StateMachine;

type Outcome = Result<Flow, Reject>;

impl<S: StateMachine> Replica<S> {
    fn slots_kept(&self) -> usize {
        4 * self.config.window as usize
    }

    /// Slots this replica keeps state for: above the stable checkpoint, within reach.
    fn slot_in_reach(&self, slot: u64) -> bool {
        slot > self.stable && slot <= self.stable + 4 * self.config.window
    }

    pub(super) fn slot_mut(&mut self, slot: u64) -> &mut Slot {
        self.slots.entry(slot).or_default()
    }

    fn keep_batch(&mut self, slot: u64, digest: Hash, batch: Batch) {
        if self.slot_in_reach(slot) {
            let batches = &mut self.slot_mut(slot).batches;
            if batches.len() < 8 {
                batches.entry(digest).or_insert(batch);
            }
        }
    }

    /// Checks a client's signature on `request`, counting the check.
    fn verify_request(&mut self, request: &Request) -> bool {
        self.stats.requests_verified += 1;
        request.verify(&self.clients)
    }

    pub(super) fn on_request(&mut self, now_ns: u64, request: Request) -> Result<(), Reject> {
        if !self.verify_request(&request) {
            return Err(Reject::ForgedRequest { client: request.client.0, number: request.number });
        }
        let client = request.client;
        if let Some((number, result)) = self.replies.get(&client) {
            if request.number == *number {
                // A retransmission: the reply was lost. Answer again, execute nothing.
                let reply = Reply::signed(&self.key, self.me, client, *number, result.clone());
                let bytes = DirectMessage::Reply(reply).encode();
                self.actions.push_back(Action::ToClient { client, bytes });
                return Ok(());
            }
            if request.number < *number {
                return Err(Reject::Stale { what: "request" });
            }
        }
        match self.pending.get(&client) {
            Some((held, _)) if held.number >= request.number => Err(Reject::Duplicate { what: "request" }),
            _ => {
                self.pending.insert(client, (request, now_ns));
                Ok(())
            }
        }
    }

    pub(super) fn on_prepare(
        &mut self,
        now_ns: u64,
        from: NodeId,
        view: u64,
        slot: u64,
        batch: Batch,
    ) -> Outcome {
        if from != self.config.leader(view) {
            return Err(Reject::Invalid { what: "prepare from a replica that does not lead its view" });
        }
        if view < self.view || slot <= self.stable {
            return Err(Reject::Stale { what: "prepare" });
        }
        if view > self.view || self.status != Status::Normal {
            // Its leader's new view came first in its stream and did not make us enter
            // the view: nothing of this view is for us.
            return Err(Reject::Invalid { what: "prepare of a view not entered" });
        }
        if slot > self.stable + 4 * self.config.window {
            return Err(Reject::Invalid { what: "prepare beyond the window" });
        }
        let in_plan = slot <= self.plan_end;
        if slot > self.stable + self.config.window && !in_plan {
            return Ok(Flow::Blocked); // until a checkpoint slides the window
        }
        if self.slots.get(&slot).and_then(|s| s.promised).is_some_and(|(v, _)| v == view) {
            return Err(Reject::Invalid { what: "second prepare for a slot" });
        }
        let digest = batch_digest(&batch);
        if in_plan {
            let expected = self.plan.get(&slot).copied().unwrap_or_else(|| batch_digest(&[]));
            if digest != expected {
                return Err(Reject::Invalid { what: "prepare that contradicts the new view" });
            }
        }
        for request in &batch {
            // A request this replica took from its client already had its signature
            // checked: the same bytes need no second check (on the critical path of
            // every follower). Anything else in the batch is checked here.
            let taken = self.pending.get(&request.client).is_some_and(|(held, _)| held == request);
            if !taken && !self.verify_request(request) {
                return Err(Reject::ForgedRequest { client: request.client.0, number: request.number });
            }
        }
        let timeout = self.slow_path_timeout();
        let decided = self.slots.get(&slot).is_some_and(|s| s.decided.is_some());
        let state = self.slot_mut(slot);
        state.promised = Some((view, digest));
        state.promised_at_ns = now_ns;
        state.share_sent = false;
        state.share_due_ns = (!decided).then_some(now_ns + timeout);
        self.keep_batch(slot, digest, batch.clone());
        self.broadcast(StreamMessage::Promise { view, slot, batch });
        Ok(Flow::Done)
    }

    pub(super) fn on_promise(&mut self, from: NodeId, view: u64, slot: u64, batch: Batch) -> Outcome {
        let stream = &self.streams[&from].facts;
        if view < stream.sealed {
            return Err(Reject::Stale { what: "promise after its sender's seal" });
        }
        let digest = batch_digest(&batch);
        let kept = self.slots_kept();
        let facts = &mut self.streams.get_mut(&from).expect("a replica").facts;
        if !Facts::record(&mut facts.promises, kept, slot, view, digest) {
            return Err(Reject::Duplicate { what: "promise" });
        }
        self.keep_batch(slot, digest, batch);
        self.check_decided(slot, view, digest);
        Ok(Flow::Done)
    }

    pub(super) fn on_commit(
        &mut self,
        _now_ns: u64,
        from: NodeId,
        view: u64,
        slot: u64,
        batch: Batch,
        certificate: &[(NodeId, SignatureBytes)],
    ) -> Outcome {
        if view < self.streams[&from].facts.sealed {
            return Err(Reject::Stale { what: "commit after its sender's seal" });
        }
        let digest = batch_digest(&batch);
        let needed = self.config.f() + 1;
        verify_certificate(&self.keys, &self.config.replicas, needed, view, slot, &digest, certificate)?;
        let kept = self.slots_kept();
        let facts = &mut self.streams.get_mut(&from).expect("a replica").facts;
        if !Facts::record(&mut facts.commits, kept, slot, view, digest) {
            return Err(Reject::Duplicate { what: "commit" });
        }
        if from == self.me {
            self.own_certificates.insert((slot, view), certificate.to_vec());
            if self.own_certificates.len() > 4 * kept {
                // Only what our facts still hold can be recapped.
                let commits = &self.streams[&self.me].facts.commits;
                self.own_certificates.retain(|&(s, v), _| Facts::lookup(commits, s, v).is_some());
            }
        }
        self.keep_batch(slot, digest, batch.clone());
        // A certificate is as good in our hands: commit too, so f + 1 commits gather.
        let ours = self.slots.get(&slot).is_some_and(|s| s.committed_in == Some(view));
        if from != self.me
            && !ours
            && view == self.view
            && self.status == Status::Normal
            && self.slot_in_reach(slot)
        {
            self.slot_mut(slot).committed_in = Some(view);
            let certificate = certificate.to_vec();
            self.broadcast(StreamMessage::Commit { view, slot, batch, certificate });
        }
        self.check_decided(slot, view, digest);
        Ok(Flow::Done)
    }

    pub(super) fn on_share(
        &mut self,
        _now_ns: u64,
        from: NodeId,
        view: u64,
        slot: u64,
        digest: Hash,
        signature: SignatureBytes,
    ) -> Result<(), Reject> {
        if !self.config.replicas.contains(&from) {
            return Err(Reject::UnexpectedSender { from: from.to_string(), kind: "share" });
        }
        if !self.slot_in_reach(slot) {
            return Err(Reject::Stale { what: "share" });
        }
        if self
            .slots
            .get(&slot)
            .and_then(|s| s.shares.get(&from))
            .is_some_and(|&(v, d, _)| v > view || (v, d) == (view, digest))
        {
            return Err(Reject::Duplicate { what: "share" });
        }
        if !verify_share(&self.keys, from, view, slot, &digest, &signature) {
            return Err(Reject::BadSignature { what: "share" });
        }
        self.slot_mut(slot).shares.insert(from, (view, digest, signature));
        let ours = self.slots.get(&slot).and_then(|s| s.promised);
        if ours == Some((view, digest)) && !self.slots[&slot].share_sent {
            self.send_share(slot); // the asker is on its slow path: help it
        }
        self.try_commit(slot);
        Ok(())
    }

    fn send_share(&mut self, slot: u64) {
        let Some((view, digest)) = self.slots.get(&slot).and_then(|s| s.promised) else { return };
        let signature = sign_share(&self.key, view, slot, &digest);
        self.slot_mut(slot).share_sent = true;
        self.send_replicas(&DirectMessage::Share { view, slot, digest, signature });
    }

    /// With f + 1 shares for what we promised in this view, CTBcast the certificate.
    fn try_commit(&mut self, slot: u64) {
        let Some(state) = self.slots.get(&slot) else { return };
        let Some((view, digest)) = state.promised else { return };
        if view != self.view || self.status != Status::Normal || state.committed_in == Some(view) {
            return;
        }
        let mut certificate: Vec<(NodeId, SignatureBytes)> = state
            .shares
            .iter()
            .filter(|(_, &(v, d, _))| (v, d) == (view, digest))
            .map(|(&signer, &(_, _, signature))| (signer, signature))
            .collect();
        if certificate.len() + 1 < self.config.f() + 1 {
            return;
        }
        certificate.push((self.me, sign_share(&self.key, view, slot, &digest)));
        certificate.truncate(self.config.f() + 1);
        let Some(batch) = state.batches.get(&digest).cloned() else { return };
        self.slot_mut(slot).committed_in = Some(view);
        self.broadcast(StreamMessage::Commit { view, slot, batch, certificate });
    }

    /// How long a promised slot waits before its share goes out: the configured timeout,
    /// or four smoothed promise-to-fast-decision times when the group is slower than
    /// that (a loaded machine), capped at 16 times the configured timeout. Without it, a
    /// loaded group's slots crossed the timeout just before their last promise came and
    /// paid for signatures and shares on top of the load (BFT KV on two cores, 50
    /// clients: 3,197 requests/s with the slow path firing on 1 % of slots, 3,978 with it
    /// never firing). Only fast decisions feed the estimate, so a silent replica (no fast
    /// decision at all) leaves the timeout where it was; a Byzantine one that promises
    /// late on purpose can stretch it at most to the cap.
    pub(super) fn slow_path_timeout(&self) -> u64 {
        let base = self.config.slow_path_timeout_ns;
        base.max(self.fast_decision_ns.saturating_mul(4)).min(base.saturating_mul(16))
    }

    /// One more fast decision took `sample_ns` from our promise: smoothed as TCP smooths
    /// round trips (an eighth of each new sample).
    pub(super) fn learn_fast_decision(&mut self, sample_ns: u64) {
        self.fast_decision_ns = if self.fast_decision_ns == 0 {
            sample_ns
        } else {
            self.fast_decision_ns - self.fast_decision_ns / 8 + sample_ns / 8
        };
    }

    /// Sends shares whose slow-path deadline passed (again, until decided: shares travel
    /// point to point and may be lost).
    pub(super) fn share_timers(&mut self, now_ns: u64) {
        let due: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, s)| s.share_due_ns.is_some_and(|at| at <= now_ns))
            .map(|(&slot, _)| slot)
            .collect();
        for slot in due {
            let (timeout, view) = (self.slow_path_timeout(), self.view);
            let state = self.slot_mut(slot);
            state.share_due_ns = state.decided.is_none().then_some(now_ns + timeout);
            let current = state.promised.is_some_and(|(v, _)| v == view);
            if current && state.decided.is_none() {
                self.send_share(slot);
                self.try_commit(slot);
            }
        }
    }

    /// Whether `(view, digest)` now meets a decision rule for `slot`.
    fn check_decided(&mut self, slot: u64, view: u64, digest: Hash) {
        let promised = self
            .streams
            .values()
            .filter(|s| Facts::lookup(&s.facts.promises, slot, view) == Some(digest))
            .count();
        let committed = self
            .streams
            .values()
            .filter(|s| Facts::lookup(&s.facts.commits, slot, view) == Some(digest))
            .count();
        let path = if promised == self.config.replicas.len() {
            DecisionPath::Fast
        } else if committed > self.config.f() {
            DecisionPath::Slow
        } else {
            return;
        };
        let Some(batch) = self.slots.get(&slot).and_then(|s| s.batches.get(&digest)).cloned() else { return };
        // Checked even for executed slots (while their state is kept): a second batch
        // meeting the rule is what more than f Byzantine replicas can cause.
        match self.slots.get(&slot).and_then(|s| s.decided) {
            Some(decided) if decided == digest => return,
            Some(_) => {
                self.stats.conflicting_decisions += 1;
                self.events.push_back(Event::ConflictingDecision { slot, batch });
                return;
            }
            None if slot <= self.executed => return,
            None => self.slot_mut(slot).decided = Some(digest),
        }
        let now_ns = self.now_ns;
        let state = self.slot_mut(slot);
        state.share_due_ns = None;
        let promised_at_ns = state.promised_at_ns;
        if path == DecisionPath::Fast && promised_at_ns > 0 {
            self.learn_fast_decision(now_ns.saturating_sub(promised_at_ns));
        }
        match path {
            DecisionPath::Fast => {
                self.stats.decided_fast += 1;
                self.last_fast_ns = now_ns;
                self.slow_since_fast = 0;
            }
            DecisionPath::Slow => {
                self.stats.decided_slow += 1;
                self.slow_since_fast += 1;
            }
        }
        self.events.push_back(Event::Decided { slot, batch, path });
        self.execute();
    }

    /// Executes decided slots in order.
    pub(super) fn execute(&mut self) {
        while let Some(digest) = self.slots.get(&(self.executed + 1)).and_then(|s| s.decided) {
            let slot = self.executed + 1;
            let batch = self.slots[&slot].batches[&digest].clone();
            for request in batch {
                self.execute_request(slot, request);
            }
            self.executed = slot;
            let mut chain = blake3::Hasher::new();
            chain.update(&self.history);
            chain.update(&slot.to_le_bytes());
            chain.update(&digest);
            self.history = chain.finalize().into();
            if slot % self.config.checkpoint_interval() == 0 {
                // The signed digest covers the state as well as the history, so that a
                // replica too far behind for the batches can be given the state itself.
                let digest = self.take_checkpoint(slot);
                let signature = sign_checkpoint(&self.key, slot, &digest);
                self.broadcast(StreamMessage::Checkpoint { slot, digest, signature });
            }
        }
    }

    fn execute_request(&mut self, slot: u64, request: Request) {
        let client = request.client;
        let last = self.replies.get(&client).map_or(0, |&(number, _)| number);
        if request.number <= last {
            self.stats.deduplicated += 1;
            return;
        }
        let mut result = Vec::new();
        self.app.apply(&request.operation, &mut result);
        self.stats.executed += 1;
        if self.pending.get(&client).is_some_and(|(held, _)| held.number <= request.number) {
            self.pending.remove(&client);
        }
        // Keeps the leader's record of what it proposed as small as what is pending.
        self.proposed.retain(|&(c, n)| c != client || n > request.number);
        let reply = Reply::signed(&self.key, self.me, client, request.number, result.clone());
        self.actions.push_back(Action::ToClient { client, bytes: DirectMessage::Reply(reply).encode() });
        let (number, operation) = (request.number, request.operation);
        self.events.push_back(Event::Executed { slot, client, number, operation, result: result.clone() });
        self.replies.insert(client, (number, result));
    }

    pub(super) fn on_checkpoint(
        &mut self,
        from: NodeId,
        slot: u64,
        digest: Hash,
        signature: SignatureBytes,
    ) -> Outcome {
        if slot == 0 || slot % self.config.checkpoint_interval() != 0 {
            return Err(Reject::Invalid { what: "checkpoint off the interval" });
        }
        let certificate = [(from, signature)];
        verify_checkpoint_certificate(&self.keys, &self.config.replicas, 1, slot, &digest, &certificate)
            .map_err(|_| Reject::BadSignature { what: "checkpoint" })?;
        let facts = &mut self.streams.get_mut(&from).expect("a replica").facts;
        if facts.checkpoints.last_key_value().is_some_and(|(&last, _)| last >= slot) {
            return Err(Reject::Stale { what: "checkpoint" });
        }
        facts.checkpoints.insert(slot, (digest, signature));
        while facts.checkpoints.len() > CHECKPOINTS_KEPT {
            facts.checkpoints.pop_first();
        }
        if slot > self.stable && self.checkpoint_digest(slot) == Some(digest) {
            self.make_stable(slot, digest);
        }
        if from != self.me && slot > self.executed {
            self.arm_fetch();
        }
        Ok(Flow::Done)
    }

    pub(super) fn make_stable(&mut self, slot: u64, digest: Hash) {
        self.stable = slot;
        self.stats.stable_checkpoints += 1;
        self.events.push_back(Event::CheckpointStable { slot, digest });
        // Everything at or below a stable checkpoint that we executed is settled; the
        // decided batches of the last two windows stay, for replicas catching up.
        let (executed, keep) = (self.executed, 2 * self.config.window);
        self.slots.retain(|&s, _| s + keep > slot || s > executed);
        self.own_certificates.retain(|&(s, _), _| s > slot);
        self.prune_taken();
    }

    /// The digest f + 1 streams agree on for checkpoint `slot`, if any.
    pub(super) fn checkpoint_digest(&self, slot: u64) -> Option<Hash> {
        let digests: Vec<Hash> =
            self.streams.values().filter_map(|s| s.facts.checkpoints.get(&slot).map(|&(d, _)| d)).collect();
        digests.iter().copied().find(|d| digests.iter().filter(|&e| e == d).count() > self.config.f())
    }

    /// Leader: proposes pending requests, a batch per slot, while the window allows.
    pub(super) fn propose(&mut self, _now_ns: u64) -> bool {
        if self.config.leader(self.view) != self.me || self.status != Status::Normal {
            return false;
        }
        let mut moved = false;
        while self.next_slot <= self.stable + self.config.window {
            let batch: Vec<Request> = self
                .pending
                .values()
                .map(|(request, _)| request)
                .filter(|r| !self.proposed.contains(&(r.client, r.number)))
                .take(self.config.batch)
                .cloned()
                .collect();
            if batch.is_empty() {
                break;
            }
            self.proposed.extend(batch.iter().map(|r| (r.client, r.number)));
            let (view, slot) = (self.view, self.next_slot);
            self.next_slot += 1;
            self.broadcast(StreamMessage::Prepare { view, slot, batch });
            moved = true;
        }
        moved
    }

    /// Whether `client`'s request `number` was executed here.
    pub fn executed_request(&self, client: ClientId, number: u64) -> bool {
        self.replies.get(&client).is_some_and(|&(last, _)| last >= number)
    }
}
