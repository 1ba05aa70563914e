//! The bytes of consensus messages: what travels inside CTBcast messages (a replica's
//! stream) and what travels point to point (requests, replies, signature shares).
//!
//! Little-endian fixed-width fields, `u32` length prefixes, a kind byte first. Every
//! length is checked against [`Limits`] before anything is allocated, and decoding
//! refuses trailing bytes, so any input either decodes to exactly one message or is a
//! [`Reject`] — never a panic, never an allocation the configuration did not allow.

use usec_qp_pool::NodeId;

use super::reject::Reject;
use super::request::{ClientId, Reply, Request};
use crate::bft::ctbcast::{Hash, SignatureBytes};

/// A batch of client requests, proposed for one slot.
pub type Batch = Vec<Request>;

/// A replica's signature share in a certificate.
pub type Share = (NodeId, SignatureBytes);

/// How large decoded things may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests in a batch.
    pub batch: usize,
    /// Bytes of one operation or result.
    pub operation_bytes: usize,
    /// Entries in a certificate or a sealer list (the number of replicas).
    pub replicas: usize,
    /// Batches in one catch-up message.
    pub slots: usize,
    /// Bytes of one replica's whole state (a state transfer's total).
    pub state_bytes: usize,
}

/// Bytes of state in one [`DirectMessage::State`] chunk at most: well below the BFT
/// driver's point-to-point frame (about 1 MiB in `tools/bft-kv`), so a chunk and its
/// header always fit one frame.
pub const STATE_CHUNK_BYTES: usize = 256 << 10;

/// What a replica CTBcasts: every correct replica sees the same messages of a stream in
/// the same order, which is what the protocol's safety rests on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamMessage {
    /// The leader of `view` proposes `batch` for `slot`.
    Prepare {
        /// The leader's view.
        view: u64,
        /// The log position.
        slot: u64,
        /// The requests.
        batch: Batch,
    },
    /// The sender accepts the first prepare of `view` for `slot` (a copy of its batch, so
    /// whoever builds a later view has its bytes).
    Promise {
        /// The view.
        view: u64,
        /// The slot.
        slot: u64,
        /// The batch promised.
        batch: Batch,
    },
    /// The sender holds a prepare certificate (f + 1 signature shares) for `batch`.
    Commit {
        /// The view.
        view: u64,
        /// The slot.
        slot: u64,
        /// The batch.
        batch: Batch,
        /// f + 1 shares over `(view, slot, digest)`.
        certificate: Vec<Share>,
    },
    /// The sender's state after executing through `slot` hashes to `digest`.
    Checkpoint {
        /// The last executed slot.
        slot: u64,
        /// Its history digest.
        digest: Hash,
        /// The sender's signature over `(slot, digest)`: f + 1 of them are a stable
        /// checkpoint certificate another replica can be shown.
        signature: SignatureBytes,
    },
    /// The sender leaves every view below `view`; its state at this point of its stream is
    /// what a new view learns from it.
    Seal {
        /// The view it moves to.
        view: u64,
        /// The sender's last stable checkpoint.
        low: u64,
    },
    /// The leader of `view` starts it from the seals of `sealers`.
    NewView {
        /// The view.
        view: u64,
        /// The highest stable checkpoint among the sealers' seals.
        low: u64,
        /// f + 1 distinct replicas whose seals for `view` the new view is built from.
        sealers: Vec<NodeId>,
    },
    /// One part of a recap: what the sender's stream has said so far, for a receiver
    /// that lost part of the stream (see [`super::recap`]). A recap's parts are
    /// consecutive in the stream, the first carrying `first`, the last `last`.
    Recap(RecapPart),
}

/// A part of a recap (see [`super::recap`]); every part repeats `low` and `sealed`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecapPart {
    /// The sender's stable checkpoint: only slots above it are recapped.
    pub low: u64,
    /// The highest view the sender sealed.
    pub sealed: u64,
    /// The recap's first part.
    pub first: bool,
    /// The recap's last part.
    pub last: bool,
    /// Its checkpoints (slot, digest, its signature); in the first part only.
    pub checkpoints: Vec<(u64, Hash, SignatureBytes)>,
    /// Its promises above `low`: (slot, view, digest), in (slot, view) order.
    pub promises: Vec<(u64, u64, Hash)>,
    /// Its commits above `low`, each with its prepare certificate, in (slot, view) order.
    pub commits: Vec<(u64, u64, Hash, Vec<Share>)>,
}

/// What travels point to point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectMessage {
    /// Client to replica.
    Request(Request),
    /// Replica to client.
    Reply(Reply),
    /// Replica to replica: the sender's signature share over `(view, slot, digest)`.
    Share {
        /// The view.
        view: u64,
        /// The slot.
        slot: u64,
        /// The batch digest.
        digest: Hash,
        /// The sender's signature.
        signature: SignatureBytes,
    },
    /// Replica to replica: "I have executed up to `executed`; send me what follows".
    Fetch {
        /// The asker's last executed slot.
        executed: u64,
    },
    /// Replica to replica: the decided batches of slots `first ..= slot`, and the stable
    /// checkpoint certificate of `slot` they must hash up to.
    Catchup {
        /// The checkpoint's slot.
        slot: u64,
        /// Its checkpoint digest (over the history and the state digest).
        digest: Hash,
        /// The digest of the helper's state at `slot`: with the history the asker
        /// re-hashes over `batches`, it must make `digest`.
        state: Hash,
        /// f + 1 checkpoint signatures over `(slot, digest)`.
        certificate: Vec<Share>,
        /// The first slot of `batches`.
        first: u64,
        /// One batch per slot.
        batches: Vec<Batch>,
    },
    /// Replica to replica: "part of your stream is lost to me; CTBcast a recap".
    RecapRequest,
    /// Replica to replica: one chunk of the helper's state at its stable checkpoint `slot`,
    /// for an asker too far behind for a [`DirectMessage::Catchup`] (see
    /// [`super::state_transfer`]).
    State {
        /// The checkpoint's slot.
        slot: u64,
        /// Its checkpoint digest.
        digest: Hash,
        /// The history digest after `slot`.
        history: Hash,
        /// f + 1 checkpoint signatures over `(slot, digest)`.
        certificate: Vec<Share>,
        /// Bytes of the whole state.
        total: u64,
        /// Where `chunk` starts in it.
        offset: u64,
        /// At most [`STATE_CHUNK_BYTES`] of it.
        chunk: Vec<u8>,
    },
}

const PREPARE: u8 = 1;
const PROMISE: u8 = 2;
const COMMIT: u8 = 3;
const CHECKPOINT: u8 = 4;
const SEAL: u8 = 5;
const NEW_VIEW: u8 = 6;
const RECAP: u8 = 7;
const REQUEST: u8 = 16;
const REPLY: u8 = 17;
const SHARE: u8 = 18;
const FETCH: u8 = 19;
const CATCHUP: u8 = 20;
const RECAP_REQUEST: u8 = 21;
const STATE: u8 = 22;

/// The BLAKE3 digest of a batch (of its encoding).
pub fn batch_digest(batch: &[Request]) -> Hash {
    let mut out = Writer::default();
    encode_batch(&mut out, batch);
    blake3::hash(&out.0).into()
}

impl StreamMessage {
    /// Its bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Writer::default();
        match self {
            StreamMessage::Prepare { view, slot, batch } | StreamMessage::Promise { view, slot, batch } => {
                out.u8(if matches!(self, StreamMessage::Prepare { .. }) { PREPARE } else { PROMISE });
                out.u64(*view);
                out.u64(*slot);
                encode_batch(&mut out, batch);
            }
            StreamMessage::Commit { view, slot, batch, certificate } => {
                out.u8(COMMIT);
                out.u64(*view);
                out.u64(*slot);
                encode_batch(&mut out, batch);
                encode_certificate(&mut out, certificate);
            }
            StreamMessage::Checkpoint { slot, digest, signature } => {
                out.u8(CHECKPOINT);
                out.u64(*slot);
                out.raw(digest);
                out.raw(signature);
            }
            StreamMessage::Seal { view, low } => {
                out.u8(SEAL);
                out.u64(*view);
                out.u64(*low);
            }
            StreamMessage::NewView { view, low, sealers } => {
                out.u8(NEW_VIEW);
                out.u64(*view);
                out.u64(*low);
                out.u32(sealers.len() as u32);
                for sealer in sealers {
                    out.u16(sealer.get());
                }
            }
            StreamMessage::Recap(part) => {
                out.u8(RECAP);
                out.u64(part.low);
                out.u64(part.sealed);
                out.u8(u8::from(part.first) | u8::from(part.last) << 1);
                out.u32(part.checkpoints.len() as u32);
                for (slot, digest, signature) in &part.checkpoints {
                    out.u64(*slot);
                    out.raw(digest);
                    out.raw(signature);
                }
                out.u32(part.promises.len() as u32);
                for (slot, view, digest) in &part.promises {
                    out.u64(*slot);
                    out.u64(*view);
                    out.raw(digest);
                }
                out.u32(part.commits.len() as u32);
                for (slot, view, digest, certificate) in &part.commits {
                    out.u64(*slot);
                    out.u64(*view);
                    out.raw(digest);
                    encode_certificate(&mut out, certificate);
                }
            }
        }
        out.0
    }

    /// Reads one message; anything else is a [`Reject`].
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<StreamMessage, Reject> {
        let mut input = Reader::new(bytes);
        let message = match input.u8("kind")? {
            kind @ (PREPARE | PROMISE) => {
                let view = input.u64("view")?;
                let slot = input.u64("slot")?;
                let batch = decode_batch(&mut input, limits)?;
                if kind == PREPARE {
                    StreamMessage::Prepare { view, slot, batch }
                } else {
                    StreamMessage::Promise { view, slot, batch }
                }
            }
            COMMIT => {
                let view = input.u64("view")?;
                let slot = input.u64("slot")?;
                let batch = decode_batch(&mut input, limits)?;
                let certificate = decode_certificate(&mut input, limits)?;
                StreamMessage::Commit { view, slot, batch, certificate }
            }
            CHECKPOINT => StreamMessage::Checkpoint {
                slot: input.u64("slot")?,
                digest: input.array("digest")?,
                signature: input.array("checkpoint signature")?,
            },
            SEAL => StreamMessage::Seal { view: input.u64("view")?, low: input.u64("low")? },
            NEW_VIEW => {
                let view = input.u64("view")?;
                let low = input.u64("low")?;
                let count = input.count("sealers", limits.replicas)?;
                let mut sealers = Vec::with_capacity(count);
                for _ in 0..count {
                    sealers.push(input.node("sealer")?);
                }
                StreamMessage::NewView { view, low, sealers }
            }
            RECAP => StreamMessage::Recap(decode_recap(&mut input, limits)?),
            kind => return Err(Reject::UnknownKind(kind)),
        };
        input.finish()?;
        Ok(message)
    }

    /// A short name, for logs and refusals.
    pub fn kind_name(&self) -> &'static str {
        match self {
            StreamMessage::Prepare { .. } => "prepare",
            StreamMessage::Promise { .. } => "promise",
            StreamMessage::Commit { .. } => "commit",
            StreamMessage::Checkpoint { .. } => "checkpoint",
            StreamMessage::Seal { .. } => "seal",
            StreamMessage::NewView { .. } => "new view",
            StreamMessage::Recap(_) => "recap",
        }
    }
}

impl DirectMessage {
    /// Its bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Writer::default();
        match self {
            DirectMessage::Request(request) => {
                out.u8(REQUEST);
                request.encode(&mut out);
            }
            DirectMessage::Reply(reply) => {
                out.u8(REPLY);
                out.u32(reply.client.0);
                out.u64(reply.number);
                out.u16(reply.replica.get());
                out.bytes(&reply.result);
                out.raw(&reply.signature);
            }
            DirectMessage::Share { view, slot, digest, signature } => {
                out.u8(SHARE);
                out.u64(*view);
                out.u64(*slot);
                out.raw(digest);
                out.raw(signature);
            }
            DirectMessage::Fetch { executed } => {
                out.u8(FETCH);
                out.u64(*executed);
            }
            DirectMessage::Catchup { slot, digest, state, certificate, first, batches } => {
                out.u8(CATCHUP);
                out.u64(*slot);
                out.raw(digest);
                out.raw(state);
                encode_certificate(&mut out, certificate);
                out.u64(*first);
                out.u32(batches.len() as u32);
                for batch in batches {
                    encode_batch(&mut out, batch);
                }
            }
            DirectMessage::RecapRequest => out.u8(RECAP_REQUEST),
            DirectMessage::State { slot, digest, history, certificate, total, offset, chunk } => {
                out.u8(STATE);
                out.u64(*slot);
                out.raw(digest);
                out.raw(history);
                encode_certificate(&mut out, certificate);
                out.u64(*total);
                out.u64(*offset);
                out.bytes(chunk);
            }
        }
        out.0
    }

    /// Reads one message; anything else is a [`Reject`].
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<DirectMessage, Reject> {
        let mut input = Reader::new(bytes);
        let message = match input.u8("kind")? {
            REQUEST => DirectMessage::Request(Request::decode(&mut input, limits.operation_bytes)?),
            REPLY => DirectMessage::Reply(Reply {
                client: ClientId(input.u32("client")?),
                number: input.u64("number")?,
                replica: input.node("replica")?,
                result: input.bytes("result", limits.operation_bytes)?.to_vec(),
                signature: input.array("reply signature")?,
            }),
            SHARE => DirectMessage::Share {
                view: input.u64("view")?,
                slot: input.u64("slot")?,
                digest: input.array("digest")?,
                signature: input.array("share")?,
            },
            FETCH => DirectMessage::Fetch { executed: input.u64("executed")? },
            CATCHUP => {
                let slot = input.u64("slot")?;
                let digest = input.array("digest")?;
                let state = input.array("state digest")?;
                let certificate = decode_certificate(&mut input, limits)?;
                let first = input.u64("first")?;
                let count = input.count("batches", limits.slots)?;
                let mut batches = Vec::with_capacity(count);
                for _ in 0..count {
                    batches.push(decode_batch(&mut input, limits)?);
                }
                DirectMessage::Catchup { slot, digest, state, certificate, first, batches }
            }
            RECAP_REQUEST => DirectMessage::RecapRequest,
            STATE => DirectMessage::State {
                slot: input.u64("slot")?,
                digest: input.array("digest")?,
                history: input.array("history")?,
                certificate: decode_certificate(&mut input, limits)?,
                total: input.u64("state total")?,
                offset: input.u64("state offset")?,
                chunk: input.bytes("state chunk", STATE_CHUNK_BYTES)?.to_vec(),
            },
            kind => return Err(Reject::UnknownKind(kind)),
        };
        input.finish()?;
        Ok(message)
    }
}

/// Entries of one kind in a recap part: every promise or commit a stream's facts can hold
/// (4 windows of slots, 4 views each).
pub(super) fn recap_entries_max(limits: &Limits) -> usize {
    8 * limits.slots
}

fn decode_recap(input: &mut Reader<'_>, limits: &Limits) -> Result<RecapPart, Reject> {
    let low = input.u64("low")?;
    let sealed = input.u64("sealed")?;
    let flags = input.u8("recap flags")?;
    if flags > 3 {
        return Err(Reject::Invalid { what: "recap flags" });
    }
    let count = input.count("recap checkpoints", super::stream::CHECKPOINTS_KEPT)?;
    let mut checkpoints = Vec::with_capacity(count);
    for _ in 0..count {
        checkpoints.push((input.u64("slot")?, input.array("digest")?, input.array("checkpoint signature")?));
    }
    let count = input.count("recap promises", recap_entries_max(limits))?;
    let mut promises = Vec::with_capacity(count);
    for _ in 0..count {
        promises.push((input.u64("slot")?, input.u64("view")?, input.array("digest")?));
    }
    let count = input.count("recap commits", recap_entries_max(limits))?;
    let mut commits = Vec::with_capacity(count);
    for _ in 0..count {
        let (slot, view, digest) = (input.u64("slot")?, input.u64("view")?, input.array("digest")?);
        commits.push((slot, view, digest, decode_certificate(input, limits)?));
    }
    Ok(RecapPart { low, sealed, first: flags & 1 != 0, last: flags & 2 != 0, checkpoints, promises, commits })
}

fn encode_certificate(out: &mut Writer, certificate: &[Share]) {
    out.u32(certificate.len() as u32);
    for (signer, signature) in certificate {
        out.u16(signer.get());
        out.raw(signature);
    }
}

fn decode_certificate(input: &mut Reader<'_>, limits: &Limits) -> Result<Vec<Share>, Reject> {
    let count = input.count("certificate", limits.replicas)?;
    let mut certificate = Vec::with_capacity(count);
    for _ in 0..count {
        certificate.push((input.node("signer")?, input.array::<64>("share")?));
    }
    Ok(certificate)
}

fn encode_batch(out: &mut Writer, batch: &[Request]) {
    out.u32(batch.len() as u32);
    for request in batch {
        request.encode(out);
    }
}

fn decode_batch(input: &mut Reader<'_>, limits: &Limits) -> Result<Batch, Reject> {
    let count = input.count("batch", limits.batch)?;
    let mut batch = Vec::with_capacity(count);
    for _ in 0..count {
        batch.push(Request::decode(input, limits.operation_bytes)?);
    }
    Ok(batch)
}

/// Appends fields.
#[derive(Debug, Default)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, value: u8) {
        self.0.push(value);
    }
    pub(crate) fn u16(&mut self, value: u16) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.u32(bytes.len() as u32);
        self.raw(bytes);
    }
}

/// Takes fields off the front, refusing what is not there.
#[derive(Debug)]
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader(bytes)
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], Reject> {
        if self.0.len() < len {
            return Err(Reject::Truncated { what });
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Reject> {
        Ok(self.take(N, what)?.try_into().expect("took N bytes"))
    }
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, Reject> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, Reject> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, Reject> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn node(&mut self, what: &'static str) -> Result<NodeId, Reject> {
        let id = u16::from_le_bytes(self.array(what)?);
        NodeId::new(id).map_err(|_| Reject::Invalid { what: "node id" })
    }
    /// A `u32` count of items, at most `max`.
    pub(crate) fn count(&mut self, what: &'static str, max: usize) -> Result<usize, Reject> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(Reject::TooLarge { what, len, max });
        }
        Ok(len)
    }
    /// A `u32`-prefixed byte string of at most `max` bytes.
    pub(crate) fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], Reject> {
        let len = self.count(what, max)?;
        self.take(len, what)
    }
    /// Whatever is left.
    pub(crate) fn rest(self) -> &'a [u8] {
        self.0
    }
    pub(crate) fn finish(self) -> Result<(), Reject> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Reject::Trailing(self.0.len()))
        }
    }
}
