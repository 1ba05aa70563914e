//! Catching up: a replica that fell behind a stable checkpoint (it missed decisions, say
//! because a Byzantine replica's stream has a gap here) fetches the decided batches from
//! a replica that has them.
//!
//! The answer proves itself: a stable checkpoint certificate (f + 1 replicas' Ed25519
//! signatures over `(slot, history digest)`, one of them correct) and the batches of the
//! slots up to it; the asker re-hashes its own history chain over those batches and takes
//! them only if it lands, with the helper's state digest, exactly on the certified digest
//! (a checkpoint digest covers the history and the state: see [`super::state_transfer`]).
//! So a Byzantine helper can waste a fetch, never plant a batch. Decided batches are kept
//! two windows below the stable checkpoint for this; a replica further behind is sent the
//! helper's state at its stable checkpoint instead ([`super::state_transfer`]).

use usec_qp_pool::NodeId;

use super::certificate::verify_checkpoint_certificate;
use super::reject::Reject;
use super::replica::Replica;
use super::state_transfer::checkpoint_digest_over;
use super::wire::{batch_digest, Batch, DirectMessage, Share};
use crate::bft::ctbcast::Hash;
use crate::state_machine::StateMachine;

impl<S: StateMachine> Replica<S> {
    /// The other replicas that announced a checkpoint above what we executed, furthest
    /// first.
    fn ahead_of_us(&self) -> Vec<NodeId> {
        let mut ahead: Vec<(u64, NodeId)> = self
            .streams
            .iter()
            .filter(|(&r, _)| r != self.me)
            .filter_map(|(&r, s)| s.facts.checkpoints.last_key_value().map(|(&slot, _)| (slot, r)))
            .filter(|&(slot, _)| slot > self.executed)
            .collect();
        ahead.sort_by(|a, b| b.cmp(a));
        ahead.into_iter().map(|(_, r)| r).collect()
    }

    /// Another replica announced a checkpoint above what we executed: make sure a fetch
    /// timer runs (a driver ticks only when `poll_timeout` says so, and a replica with
    /// nothing else due would otherwise never look).
    pub(super) fn arm_fetch(&mut self) {
        if self.fetch_due_ns.is_none() {
            self.fetch_due_ns = Some(self.now_ns + self.config.view_change_timeout_ns / 2);
        }
    }

    /// Behind another replica's checkpoint for half a view-change timeout: ask it. The
    /// furthest first, then the others in turn, so that a Byzantine replica announcing
    /// the furthest checkpoint cannot be the only one ever asked. Not while a state
    /// transfer moves: every fetch may start a whole state's worth of sending.
    pub(super) fn fetch_timer(&mut self, now_ns: u64) {
        let ahead = self.ahead_of_us();
        if ahead.is_empty() {
            self.fetch_due_ns = None;
            return;
        }
        let wait = self.config.view_change_timeout_ns / 2;
        match self.fetch_due_ns {
            None => self.fetch_due_ns = Some(now_ns + wait),
            Some(due) if due <= now_ns => {
                self.fetch_due_ns = Some(now_ns + wait);
                if self.transfer_moved() {
                    return;
                }
                let helper = ahead[(self.fetch_round % ahead.len() as u64) as usize];
                self.fetch_round += 1;
                self.fetch_helper = Some(helper);
                let bytes = DirectMessage::Fetch { executed: self.executed }.encode();
                self.actions.push_back(super::Action::ToReplica { to: helper, bytes });
            }
            Some(_) => {}
        }
    }

    pub(super) fn on_fetch(&mut self, from: NodeId, executed: u64) -> Result<(), Reject> {
        // The highest checkpoint we hold a certificate for and the batches up to.
        let checkpoints: Vec<u64> = self.streams[&self.me].facts.checkpoints.keys().rev().copied().collect();
        for slot in checkpoints {
            if slot <= executed || slot - executed > self.limits.slots as u64 {
                continue;
            }
            let Some(digest) = self.checkpoint_digest(slot) else { continue };
            let Some(state) = self.taken.get(&slot).map(|taken| taken.state) else { continue };
            let certificate = self.checkpoint_certificate(slot, digest);
            let batches: Option<Vec<Batch>> = (executed + 1..=slot)
                .map(|k| {
                    let state = self.slots.get(&k)?;
                    state.batches.get(&state.decided?).cloned()
                })
                .collect();
            let Some(batches) = batches else { continue };
            let first = executed + 1;
            let message = DirectMessage::Catchup { slot, digest, state, certificate, first, batches };
            self.actions.push_back(super::Action::ToReplica { to: from, bytes: message.encode() });
            return Ok(());
        }
        // The batches are gone: our state at a stable checkpoint instead.
        self.send_state(from, executed)
    }

    pub(super) fn on_catchup(
        &mut self,
        slot: u64,
        digest: Hash,
        state: Hash,
        certificate: &[Share],
        first: u64,
        batches: Vec<Batch>,
    ) -> Result<(), Reject> {
        // Numbers from the network: no arithmetic on them that could overflow.
        let last = first.checked_add(batches.len() as u64).and_then(|end| end.checked_sub(1));
        if first != self.executed + 1 || batches.is_empty() || last != Some(slot) {
            return Err(Reject::Stale { what: "catch-up" });
        }
        let needed = self.config.f() + 1;
        verify_checkpoint_certificate(&self.keys, &self.config.replicas, needed, slot, &digest, certificate)?;
        let mut chain = self.history;
        for (k, batch) in (first..).zip(&batches) {
            let mut hasher = blake3::Hasher::new();
            hasher.update(&chain);
            hasher.update(&k.to_le_bytes());
            hasher.update(&batch_digest(batch));
            chain = hasher.finalize().into();
        }
        if checkpoint_digest_over(&chain, &state) != digest {
            return Err(Reject::Invalid { what: "catch-up batches that do not hash to the checkpoint" });
        }
        self.stats.caught_up_slots += batches.len() as u64;
        for (k, batch) in (first..).zip(batches) {
            let batch_hash = batch_digest(&batch);
            let state = self.slot_mut(k);
            state.decided = Some(batch_hash);
            state.share_due_ns = None;
            state.batches.insert(batch_hash, batch);
        }
        self.execute();
        if slot > self.stable {
            self.make_stable(slot, digest);
        }
        Ok(())
    }
}
