//! The receiver's slow path: signature, own register, the others' registers.
//!
//! Entered when the fast path's deadline passes (or an echo disagrees, which makes the
//! fast path impossible). The receiver
//!
//! 1. gets the broadcaster's signature over `(broadcaster, index, blake3(message))` —
//!    already sent along when the broadcaster signs ahead, else asked for — and verifies it;
//! 2. writes `{hash, signature}` into its own SWMR register, slot `index % tail`,
//!    incarnation `index / tail + 1`, and waits for the write to complete;
//! 3. then reads every other receiver's register at that slot and judges each
//!    (below: `Verdict`); it delivers once every one is checked.
//!
//! Why two correct receivers `r`, `s` never slow-deliver different messages for one index:
//! each writes before it reads, and registers are linearizable, so at least one of them
//! reads the other's completed write — a different hash under a valid signature, which it
//! refuses to deliver (and turns into an [`EquivocationProof`]). Against a fast delivery
//! elsewhere there is nothing to do: a fast delivery of `m` means every correct receiver
//! echoed, hence holds, `m`.
//!
//! What a Byzantine receiver can do to our reads is bounded by the signature: any value
//! it writes that does not verify for the index its incarnation names convicts it, and a
//! convicted owner is simply counted as checked — its agreement is not needed.

use usec_qp_pool::NodeId;

use super::action::{AbandonReason, Action, DeliveryPath, Event, RegisterReadResult};
use super::config::CtbConfig;
use super::entry::{Body, Entry, Hash};
use super::instance::Phase;
use super::proof::EquivocationProof;
use super::receiver::Receiver;
use super::reject::Reject;
use super::signature::{Keyring, SignedHash};

/// What one read of another receiver's register says about our index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing there contradicts us: never written, an older incarnation (the owner has
    /// not reached this index; when it does, it will read *our* register), or our own hash.
    Checked,
    /// The owner wrote something no correct receiver writes: counted as checked.
    Byzantine,
    /// The owner holds a different message for our index, signed by the broadcaster.
    Conflict(SignedHash),
    /// The owner is already a lap further, with the broadcaster's signature for that newer
    /// index: the stream left our index behind, so we give it up (tail semantics) rather
    /// than deliver without having seen that owner's value for it.
    MovedOn,
}

/// Judges `owner`'s register slot for `index`, our message hashing to `ours`.
pub(super) fn judge(
    config: &CtbConfig,
    keys: &Keyring,
    index: u64,
    ours: &Hash,
    result: RegisterReadResult<'_>,
) -> Verdict {
    let (incarnation, value) = match result {
        RegisterReadResult::ByzantineOwner => return Verdict::Byzantine,
        RegisterReadResult::Unavailable => unreachable!("handled before judging"),
        RegisterReadResult::Value(None) => return Verdict::Checked,
        RegisterReadResult::Value(Some(found)) => found,
    };
    let expected = config.register_incarnation(index);
    if incarnation < expected {
        return Verdict::Checked;
    }
    let Some(signed) = SignedHash::from_register_value(value) else {
        return Verdict::Byzantine;
    };
    let broadcaster = config.broadcaster;
    if incarnation == expected {
        if signed.hash == *ours {
            return Verdict::Checked;
        }
        if keys.verify(broadcaster, index, &signed.hash, &signed.signature) {
            return Verdict::Conflict(signed);
        }
        return Verdict::Byzantine;
    }
    // A newer lap: only believed with the broadcaster's signature for that lap's index,
    // else any Byzantine receiver could make us give up every index.
    let slot = config.register_slot(index);
    match config.register_index(slot, incarnation) {
        Some(newer) if keys.verify(broadcaster, newer, &signed.hash, &signed.signature) => Verdict::MovedOn,
        _ => Verdict::Byzantine,
    }
}

impl Receiver {
    pub(super) fn enter_slow_path(&mut self, now_ns: u64, index: u64) {
        self.stats.slow_paths += 1;
        let instance = self.window.get_mut(index).expect("a kept index");
        // A forged signature that came ahead is refused (and counted) by use_signature;
        // then we ask for the real one.
        if instance.signature.is_some() && self.use_signature(index).is_ok() {
            return;
        }
        self.request_signature(now_ns, index);
    }

    /// Asks the broadcaster for `index`'s signature, and again after a timeout.
    pub(super) fn request_signature(&mut self, now_ns: u64, index: u64) {
        self.window.get_mut(index).expect("a kept index").phase = Phase::AwaitSignature;
        let me = self.me.get();
        let entry = Entry {
            index,
            broadcaster: self.config.broadcaster.get(),
            sender: me,
            body: Body::SignatureRequest,
        };
        self.actions.push_back(Action::Send { to: self.config.broadcaster, bytes: entry.encode() });
        self.push_deadline(now_ns + self.config.fast_path_timeout_ns, index);
    }

    /// Verifies the signature held for `index` (unless verified ahead) and, if good,
    /// writes the register. A bad one is dropped and refused.
    pub(super) fn use_signature(&mut self, index: u64) -> Result<(), Reject> {
        let broadcaster = self.config.broadcaster;
        let instance = self.window.get_mut(index).expect("a kept index");
        let hash = instance.hash().expect("the slow path has the message");
        let signature = instance.signature.expect("caller checked");
        if !instance.signature_verified {
            self.stats.signatures_checked += 1;
            if !self.keys.verify(broadcaster, index, &hash, &signature) {
                instance.signature = None;
                return Err(self.stats.refuse(Reject::ForgedSignature { index }));
            }
            instance.signature_verified = true;
        }
        self.start_write(index);
        Ok(())
    }

    /// Writes `{hash, signature}`, unless the slot's previous write is still in flight (a
    /// writer never has two writes on one register).
    fn start_write(&mut self, index: u64) {
        let slot = self.config.register_slot(index);
        let instance = self.window.get_mut(index).expect("a kept index");
        if self.register_busy[slot as usize].is_some() {
            instance.phase = Phase::WriteQueued;
            return;
        }
        let signed = SignedHash {
            hash: instance.hash().expect("has the message"),
            signature: instance.signature.expect("verified"),
        };
        instance.phase = Phase::Writing;
        self.register_busy[slot as usize] = Some(index);
        let incarnation = self.config.register_incarnation(index);
        self.actions.push_back(Action::RegisterWrite {
            index,
            slot,
            incarnation,
            value: signed.to_register_value(),
        });
    }

    /// Our register write for `index` completed: read the others'. Completions that match
    /// nothing (an index given up meanwhile) only free the slot.
    pub fn handle_register_written(&mut self, index: u64) {
        let slot = self.config.register_slot(index);
        if self.register_busy[slot as usize] == Some(index) {
            self.register_busy[slot as usize] = None;
        }
        if let Some(instance) = self.window.get_mut(index).filter(|instance| instance.phase == Phase::Writing)
        {
            let mut checked = vec![false; self.config.receivers.len()];
            checked[self.my_position] = true;
            instance.phase = Phase::Reading(checked);
            for &owner in &self.config.receivers {
                if owner != self.me {
                    self.actions.push_back(Action::RegisterRead { index, owner, slot });
                }
            }
            self.deliver_if_checked(index);
        }
        let queued =
            self.window.in_tail_congruent(index).filter(|instance| instance.phase == Phase::WriteQueued);
        if let Some(next) = queued.map(|instance| instance.index) {
            self.start_write(next);
        }
    }

    /// A read of `owner`'s register slot for `index` completed.
    pub fn handle_register_read(&mut self, index: u64, owner: NodeId, result: RegisterReadResult<'_>) {
        let Some(position) = self.config.receiver_position(owner) else { return };
        let Some(instance) = self.window.get_mut(index) else { return };
        let Phase::Reading(checked) = &instance.phase else { return };
        if checked[position] {
            return;
        }
        if result == RegisterReadResult::Unavailable {
            // Not a value, not a verdict: read again later, and deliver nothing meanwhile.
            self.stats.registers_unavailable += 1;
            if !instance.reads_to_retry.contains(&owner) {
                instance.reads_to_retry.push(owner);
            }
            self.push_deadline(self.now_ns + self.config.fast_path_timeout_ns, index);
            return;
        }
        let ours = SignedHash {
            hash: instance.hash().expect("has the message"),
            signature: instance.signature.expect("verified"),
        };
        match judge(&self.config, &self.keys, index, &ours.hash, result) {
            Verdict::Checked => self.mark_checked(index, position),
            Verdict::Byzantine => {
                self.stats.byzantine_registers += 1;
                self.mark_checked(index, position);
            }
            Verdict::Conflict(theirs) => {
                let proof = EquivocationProof {
                    broadcaster: self.config.broadcaster,
                    index,
                    first: ours,
                    second: theirs,
                };
                self.stats.equivocations += 1;
                self.events.push_back(Event::Equivocation(proof));
                self.abandon(index, AbandonReason::Equivocation);
            }
            Verdict::MovedOn => self.abandon(index, AbandonReason::OutOfTail),
        }
    }

    /// Reads again the registers whose reads found no majority.
    pub(super) fn retry_reads(&mut self, index: u64) {
        let slot = self.config.register_slot(index);
        let Some(instance) = self.window.get_mut(index) else { return };
        for owner in std::mem::take(&mut instance.reads_to_retry) {
            self.actions.push_back(Action::RegisterRead { index, owner, slot });
        }
    }

    fn mark_checked(&mut self, index: u64, position: usize) {
        if let Some(Phase::Reading(checked)) = self.window.get_mut(index).map(|instance| &mut instance.phase)
        {
            checked[position] = true;
        }
        self.deliver_if_checked(index);
    }

    fn deliver_if_checked(&mut self, index: u64) {
        let done = matches!(self.window.get(index).map(|instance| &instance.phase),
            Some(Phase::Reading(checked)) if checked.iter().all(|&checked| checked));
        if done {
            self.deliver(index, DeliveryPath::Slow);
        }
    }

    fn abandon(&mut self, index: u64, reason: AbandonReason) {
        self.window.get_mut(index).expect("a kept index").phase = Phase::Abandoned;
        self.stats.abandoned += 1;
        self.events.push_back(Event::Abandoned { index, reason });
    }
}
