//! State transfer: a replica too far behind for a catch-up (the decided batches it misses
//! are no longer kept anywhere) takes a correct replica's whole state at a stable
//! checkpoint instead.
//!
//! # What a checkpoint commits to
//!
//! At every checkpoint slot a replica encodes its replicated state — the reply table
//! (per client, the last number executed and its result: it deduplicates requests, so it
//! is state as much as the application's) followed by the application's
//! [`snapshot`](crate::state_machine::StateMachine::snapshot) — and signs
//! `digest = blake3("ubftckst" ‖ history ‖ blake3(state bytes))`. f + 1 equal signed
//! digests make the checkpoint stable, exactly as before; the digest now pins the state
//! bytes as well as the history chain. A [`Catchup`](DirectMessage::Catchup) carries the
//! helper's state digest so that the asker can still check the history it re-hashes over
//! the batches against the certified digest.
//!
//! # The transfer
//!
//! Asked by a [`Fetch`](DirectMessage::Fetch) it cannot answer with batches, a helper
//! sends its newest certified checkpoint's state above the asker, in chunks of at most
//! [`STATE_CHUNK_BYTES`] ([`DirectMessage::State`]), each carrying the slot, the digest,
//! the history and the certificate. The asker:
//!
//! - starts a transfer on a chunk at offset 0 from the replica its latest fetch went to,
//!   whose certificate verifies (f + 1 distinct replicas' signatures over
//!   `(slot, digest)`) and whose total is within [`Limits::state_bytes`](super::Limits);
//!   it replaces a partial transfer of a lower slot, or of the same slot begun before our
//!   latest fetch (a helper that stopped: the fetch timer asks the replicas ahead in
//!   turn, and asks no one while a transfer moves);
//! - appends only chunks of that transfer, from that helper, at exactly the next offset;
//! - once complete, checks that the bytes hash, with the history, to the certified
//!   digest, decodes them, restores the application and the reply table, and jumps to the
//!   checkpoint: executed slot, history, stable checkpoint, slot state at or below dropped.
//!
//! Anything else is a counted [`Reject`] that changes nothing (but that a refused
//! completed transfer is dropped). So a Byzantine helper can waste a transfer, never
//! plant a state: the certificate includes a correct replica, which signed only the
//! digest of the state it had.
//!
//! Only the newest checkpoint states a replica could be asked for keep their bytes (see
//! [`Replica::prune_taken`]); older checkpoints keep their two digests, which a catch-up
//! needs.

use std::collections::BTreeMap;

use usec_qp_pool::NodeId;

use super::certificate::verify_checkpoint_certificate;
use super::reject::Reject;
use super::replica::Replica;
use super::request::ClientId;
use super::wire::{DirectMessage, Limits, Reader, Share, Writer, STATE_CHUNK_BYTES};
use crate::bft::ctbcast::Hash;
use crate::state_machine::StateMachine;

/// Checkpoints whose digests a replica remembers (as many as a stream's checkpoint facts).
const TAKEN_KEPT: usize = 8;

/// Checkpoint states whose bytes a replica keeps at most: the one at or below its stable
/// checkpoint, and those it executed above it (execution runs at most a window, two
/// checkpoints, past the stable one).
const BYTES_KEPT: usize = 3;

/// The reply table: per client, its last executed number and result.
pub(super) type Replies = BTreeMap<ClientId, (u64, Vec<u8>)>;

/// A checkpoint this replica took (or was given).
pub(super) struct Taken {
    /// The history digest after the checkpoint's slot.
    pub(super) history: Hash,
    /// The digest of the state bytes.
    pub(super) state: Hash,
    /// The state bytes, while another replica could be sent them.
    pub(super) bytes: Option<Vec<u8>>,
}

/// A state transfer under way at the asker.
pub(super) struct Transfer {
    from: NodeId,
    slot: u64,
    digest: Hash,
    history: Hash,
    total: u64,
    bytes: Vec<u8>,
    /// The fetch round it began in (see `Replica::fetch_round`).
    round: u64,
    /// Whether a chunk came since the fetch timer last looked.
    moved: bool,
}

// Lengths, not megabytes of state, in a replica's debug output.
impl std::fmt::Debug for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.bytes.as_ref().map(Vec::len);
        f.debug_struct("Taken").field("state", &self.state).field("bytes", &bytes).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfer")
            .field("from", &self.from)
            .field("slot", &self.slot)
            .field("received", &self.bytes.len())
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

/// The digest a checkpoint signature covers: the history chain and the state.
pub fn checkpoint_digest_over(history: &Hash, state: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"ubftckst");
    hasher.update(history);
    hasher.update(state);
    hasher.finalize().into()
}

/// The state bytes: the reply table (a `u64` count, then per client its id, last number
/// and result), then the application's snapshot to the end.
pub(super) fn encode_state(replies: &Replies, app: &[u8]) -> Vec<u8> {
    let mut out = Writer::default();
    out.u64(replies.len() as u64);
    for (client, (number, result)) in replies {
        out.u32(client.0);
        out.u64(*number);
        out.bytes(result);
    }
    out.raw(app);
    out.0
}

/// Reads [`encode_state`]'s bytes back: the reply table and the application's snapshot.
/// Every entry takes at least 16 bytes of the input, so nothing allocates past it.
pub(super) fn decode_state<'a>(bytes: &'a [u8], limits: &Limits) -> Result<(Replies, &'a [u8]), Reject> {
    let mut input = Reader::new(bytes);
    let count = input.u64("reply table")?;
    let mut replies = Replies::new();
    for _ in 0..count {
        let client = ClientId(input.u32("client")?);
        let number = input.u64("number")?;
        let result = input.bytes("result", limits.state_bytes)?.to_vec();
        if replies.insert(client, (number, result)).is_some() {
            return Err(Reject::Invalid { what: "state with a client twice" });
        }
    }
    Ok((replies, input.rest()))
}

impl<S: StateMachine> Replica<S> {
    /// At a checkpoint slot just executed: encodes the state, remembers it, and returns
    /// the digest to sign.
    pub(super) fn take_checkpoint(&mut self, slot: u64) -> Hash {
        let bytes = encode_state(&self.replies, &self.app.snapshot());
        let state: Hash = blake3::hash(&bytes).into();
        self.taken.insert(slot, Taken { history: self.history, state, bytes: Some(bytes) });
        self.prune_taken();
        checkpoint_digest_over(&self.history, &state)
    }

    /// Keeps the digests of the last [`TAKEN_KEPT`] checkpoints, and the bytes of the
    /// newest one at or below the stable checkpoint and of those above it (at most
    /// [`BYTES_KEPT`]).
    pub(super) fn prune_taken(&mut self) {
        while self.taken.len() > TAKEN_KEPT {
            self.taken.pop_first();
        }
        let floor = self.taken.range(..=self.stable).next_back().map_or(0, |(&slot, _)| slot);
        let mut kept = 0;
        for (&slot, taken) in self.taken.iter_mut().rev() {
            if slot < floor || kept == BYTES_KEPT {
                taken.bytes = None;
            } else if taken.bytes.is_some() {
                kept += 1;
            }
        }
    }

    /// f + 1 checkpoint signatures over `(slot, digest)` from the streams.
    pub(super) fn checkpoint_certificate(&self, slot: u64, digest: Hash) -> Vec<Share> {
        self.streams
            .iter()
            .filter_map(|(&r, s)| {
                s.facts.checkpoints.get(&slot).filter(|(d, _)| *d == digest).map(|&(_, sig)| (r, sig))
            })
            .take(self.config.f() + 1)
            .collect()
    }

    /// Sends `to` (which executed up to `executed`) our newest certified checkpoint state
    /// above it, in chunks. Refused if we have none, or sent `to` that state less than
    /// half a view-change timeout ago (an asker fetches again no sooner, unless its
    /// transfer stalled): one small fetch must not buy a Byzantine asker a whole state's
    /// sending every time.
    pub(super) fn send_state(&mut self, to: NodeId, executed: u64) -> Result<(), Reject> {
        let found = self
            .taken
            .iter()
            .rev()
            .filter(|(&slot, taken)| slot > executed && taken.bytes.is_some())
            .find_map(|(&slot, taken)| {
                let digest = self.checkpoint_digest(slot)?;
                (digest == checkpoint_digest_over(&taken.history, &taken.state)).then_some((slot, digest))
            });
        let Some((slot, digest)) = found else {
            return Err(Reject::Stale { what: "fetch we cannot answer" });
        };
        let again_after = self.config.view_change_timeout_ns / 2;
        if let Some(&(sent, at)) = self.states_sent_to.get(&to) {
            if sent == slot && self.now_ns < at.saturating_add(again_after) {
                return Err(Reject::Duplicate { what: "state fetch" });
            }
        }
        self.states_sent_to.insert(to, (slot, self.now_ns));
        let certificate = self.checkpoint_certificate(slot, digest);
        let taken = &self.taken[&slot];
        let bytes = taken.bytes.as_deref().expect("filtered on bytes");
        let (history, total) = (taken.history, bytes.len() as u64);
        let mut messages = Vec::new();
        for (at, chunk) in bytes.chunks(STATE_CHUNK_BYTES).enumerate() {
            let offset = (at * STATE_CHUNK_BYTES) as u64;
            let certificate = certificate.clone();
            let chunk = chunk.to_vec();
            let message = DirectMessage::State { slot, digest, history, certificate, total, offset, chunk };
            messages.push(message.encode());
        }
        for bytes in messages {
            self.actions.push_back(super::Action::ToReplica { to, bytes });
        }
        self.stats.states_sent += 1;
        Ok(())
    }

    /// One chunk of a state transfer from `from`.
    #[allow(clippy::too_many_arguments)] // the fields of one message
    pub(super) fn on_state(
        &mut self,
        from: NodeId,
        slot: u64,
        digest: Hash,
        history: Hash,
        certificate: &[Share],
        total: u64,
        offset: u64,
        chunk: &[u8],
    ) -> Result<(), Reject> {
        if self.transfer.as_ref().is_some_and(|t| t.slot <= self.executed) {
            self.transfer = None; // overtaken by execution
        }
        if slot <= self.executed {
            return Err(Reject::Stale { what: "state transfer" });
        }
        // Checked before anything else, so a refused chunk never starts (or replaces) a
        // transfer.
        if chunk.is_empty() || offset.checked_add(chunk.len() as u64).is_none_or(|end| end > total) {
            return Err(Reject::Invalid { what: "state chunk past its total" });
        }
        if offset == 0 {
            if total > self.limits.state_bytes as u64 {
                let (len, max) = (usize::try_from(total).unwrap_or(usize::MAX), self.limits.state_bytes);
                return Err(Reject::TooLarge { what: "state", len, max });
            }
            if self.fetch_helper != Some(from) {
                return Err(Reject::UnexpectedSender {
                    from: from.to_string(),
                    kind: "state we did not ask for",
                });
            }
            if let Some(partial) = &self.transfer {
                let same_round = partial.round == self.fetch_round;
                if slot < partial.slot || (slot == partial.slot && same_round) {
                    return Err(Reject::Duplicate { what: "state transfer" });
                }
            }
            let needed = self.config.f() + 1;
            verify_checkpoint_certificate(
                &self.keys,
                &self.config.replicas,
                needed,
                slot,
                &digest,
                certificate,
            )?;
            let (bytes, round, moved) = (Vec::new(), self.fetch_round, true);
            self.transfer = Some(Transfer { from, slot, digest, history, total, bytes, round, moved });
        }
        let Some(transfer) = self.transfer.as_mut() else {
            return Err(Reject::Invalid { what: "state chunk of no transfer under way" });
        };
        if (transfer.from, transfer.slot, transfer.digest, transfer.history, transfer.total)
            != (from, slot, digest, history, total)
        {
            return Err(Reject::Invalid { what: "state chunk of another transfer" });
        }
        if offset != transfer.bytes.len() as u64 {
            return Err(Reject::Invalid { what: "state chunk out of order" });
        }
        transfer.bytes.extend_from_slice(chunk);
        transfer.moved = true;
        if transfer.bytes.len() as u64 == total {
            let transfer = self.transfer.take().expect("under way");
            self.install_state(transfer)?;
        }
        Ok(())
    }

    /// Whether a state transfer took a chunk since the last look (and looks again).
    pub(super) fn transfer_moved(&mut self) -> bool {
        self.transfer.as_mut().is_some_and(|transfer| std::mem::take(&mut transfer.moved))
    }

    /// A complete transfer: checked against its certified digest, then our state.
    fn install_state(&mut self, transfer: Transfer) -> Result<(), Reject> {
        let Transfer { slot, digest, history, bytes, .. } = transfer;
        let state: Hash = blake3::hash(&bytes).into();
        if checkpoint_digest_over(&history, &state) != digest {
            return Err(Reject::Invalid { what: "state that does not hash to its checkpoint" });
        }
        let (replies, app) = decode_state(&bytes, &self.limits)?;
        // Certified by a correct replica, so only a different application could refuse it.
        self.app.restore(app).map_err(|_| Reject::Invalid { what: "state the application refuses" })?;
        // What the state executed is no longer waiting here.
        let done =
            |client: &ClientId, number: u64| replies.get(client).is_some_and(|&(last, _)| last >= number);
        self.pending.retain(|client, (request, _)| !done(client, request.number));
        self.proposed.retain(|(client, number)| !done(client, *number));
        self.replies = replies;
        self.executed = slot;
        self.history = history;
        self.next_slot = self.next_slot.max(slot + 1);
        self.slots.retain(|&s, _| s > slot);
        self.transfer = None;
        self.taken.insert(slot, Taken { history, state, bytes: Some(bytes) });
        self.stats.state_transfers += 1;
        self.events.push_back(super::Event::StateInstalled { slot, history });
        if slot > self.stable {
            self.make_stable(slot, digest);
        }
        self.prune_taken();
        // Slots above the checkpoint decided meanwhile run now.
        self.execute();
        Ok(())
    }
}
