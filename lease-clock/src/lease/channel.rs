//! [`LeaseChannel`]: lease messages over one verbs QP, as SENDs into posted RECVs.
//!
//! The glue between the sans-IO holder and grantor and a fabric: it never decides
//! anything, it only moves [`LeaseMessage`]s. Each side of a connection owns one channel
//! (its QP, a CQ of its own, and a small registered region of RECV slots). Its work
//! requests carry `usec-qp-pool` [`WrId`]s of the registry's lease kinds: SENDs
//! [`RegisteredKind::LeaseSend`] numbered in post order, RECVs [`RegisteredKind::LeaseRecv`]
//! numbered by slot, both with the peer's node id.

use std::sync::Arc;

use usec_qp_pool::{NodeId, RegisteredKind, WrId};
use usec_verbs::qp::{InitAttributes, RtrAttributes};
use usec_verbs::{
    AccessFlags, Completion, CompletionOpcode, CompletionQueue, ConnectOptions, Endpoint, MemoryRegion,
    Payload, ProtectionDomain, QpCaps, QpOptions, QueuePair, RecvWr, Region, SendWr,
};

use crate::error::{Error, Result};
use crate::lease::message::LeaseMessage;

/// The RNR timer this side asks senders to wait when it has no RECV posted: 10 µs (code
/// 1), not the default 640 µs. A lease of tens of microseconds cannot wait out the default,
/// and a sender whose SENDs queue up behind one RNR delay then floods the receiver with
/// stale messages all at once.
const MIN_RNR_TIMER: u8 = 1;
const SLOT_BYTES: usize = LeaseMessage::ENCODED_LEN;

/// One end of a lease conversation over a reliable-connected QP.
pub struct LeaseChannel {
    // Declared first: the QP goes before its CQ and memory.
    qp: QueuePair,
    cq: CompletionQueue,
    peer: NodeId,
    mr: MemoryRegion,
    region: Arc<Region>,
    slots: u32,
    /// SENDs posted whose completions have not been polled yet.
    sends_in_flight: u32,
    /// SENDs posted so far (their `wr_id` sequence).
    sends_posted: u64,
    max_sends: u32,
    completions: [Completion; 8],
    /// Completions polled but not yet handed out.
    pending: std::collections::VecDeque<Completion>,
}

impl std::fmt::Debug for LeaseChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseChannel").field("qp", &self.qp).field("slots", &self.slots).finish()
    }
}

impl LeaseChannel {
    /// A channel to node `peer` with `slots` RECVs always posted (at least 1). Connect it
    /// with [`Self::connect`] to the other side's [`Self::endpoint`].
    pub fn new(pd: &ProtectionDomain, peer: NodeId, slots: u32) -> Result<LeaseChannel> {
        let slots = slots.max(1);
        let context = pd.context();
        let cq =
            context.create_cq(2 * slots + 16).map_err(Error::verbs("creating the lease channel's CQ"))?;
        let region = Arc::new(
            Region::new(slots as usize * SLOT_BYTES)
                .map_err(Error::region("allocating the lease RECV slots"))?,
        );
        let mr = pd
            .register(&region, AccessFlags::LOCAL_WRITE)
            .map_err(Error::verbs("registering the RECV slots"))?;
        let caps = QpCaps {
            max_send_wr: slots + 16,
            max_recv_wr: slots,
            max_send_sge: 1,
            max_recv_sge: 1,
            max_inline_data: SLOT_BYTES as u32,
        };
        let qp = pd
            .create_qp(&cq, &cq, &QpOptions { caps, ..QpOptions::default() })
            .map_err(Error::verbs("creating the lease channel's QP"))?;
        let max_sends = qp.caps().max_send_wr;
        Ok(LeaseChannel {
            qp,
            cq,
            peer,
            mr,
            region,
            slots,
            sends_in_flight: 0,
            sends_posted: 0,
            max_sends,
            completions: [Completion::default(); 8],
            pending: Default::default(),
        })
    }

    /// What the other side needs to connect.
    pub fn endpoint(&self) -> Endpoint {
        self.qp.endpoint()
    }

    /// SENDs posted and not completed yet (at most the send queue's depth).
    pub fn sends_in_flight(&self) -> u32 {
        self.sends_in_flight
    }

    /// The node at the other end.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// The QP's number (a `PeerLost` event names it).
    pub fn qp_num(&self) -> u32 {
        self.qp.qp_num()
    }

    /// Connects to `remote`, posting the RECVs before the QP can receive. The RTR's
    /// `min_rnr_timer` is replaced by 10 µs.
    pub fn connect(&mut self, remote: &Endpoint, options: &ConnectOptions) -> Result<()> {
        let init = InitAttributes { access: AccessFlags::empty(), ..options.init };
        self.qp.modify_to_init(&init).map_err(Error::verbs("lease channel to INIT"))?;
        for slot in 0..self.slots {
            self.post_recv(slot)?;
        }
        let rtr = RtrAttributes { min_rnr_timer: MIN_RNR_TIMER, ..options.rtr };
        self.qp.modify_to_rtr(remote, &rtr).map_err(Error::verbs("lease channel to RTR"))?;
        self.qp.modify_to_rts(&options.rts).map_err(Error::verbs("lease channel to RTS"))
    }

    /// Sends `message` (inline, so the bytes may be reused at once). Returns false, and
    /// drops the message as a lossy network would, when the send queue is full: the peer
    /// has not been taking messages in (it is stopped, or starved of CPU). The lease
    /// protocol tolerates lost messages; the holder asks again.
    pub fn send(&mut self, message: &LeaseMessage) -> Result<bool> {
        self.reap()?;
        if self.sends_in_flight >= self.max_sends {
            return Ok(false);
        }
        let bytes = message.encode();
        let wr_id = WrId::wrapping(RegisteredKind::LeaseSend, self.peer, self.sends_posted);
        self.qp
            .post_send(&[SendWr::send(wr_id.to_raw(), Payload::Inline(&bytes))])
            .map_err(Error::verbs("posting a lease message"))?;
        self.sends_posted += 1;
        self.sends_in_flight += 1;
        Ok(true)
    }

    /// Polls completions into the pending queue, counting finished SENDs.
    fn reap(&mut self) -> Result<()> {
        let count = self.cq.poll(&mut self.completions);
        for completion in &self.completions[..count] {
            let kind = WrId::from_raw(completion.wr_id).kind();
            if kind == RegisteredKind::LeaseSend.into() {
                self.sends_in_flight -= 1;
                if !completion.is_success() {
                    return Err(Error::Completion { what: "a lease SEND", status: completion.status });
                }
            } else {
                // The QP and the CQ are the channel's own: nobody else posts on them.
                assert_eq!(
                    kind,
                    RegisteredKind::LeaseRecv.into(),
                    "a completion of {kind} on a lease channel"
                );
                self.pending.push_back(*completion);
            }
        }
        Ok(())
    }

    /// The next message received, if any; reaps send completions on the way and fails on
    /// the first completion that reports an error (the connection is then unusable).
    pub fn poll(&mut self) -> Result<Option<LeaseMessage>> {
        loop {
            if self.pending.is_empty() {
                self.reap()?;
            }
            let Some(completion) = self.pending.pop_front() else { return Ok(None) };
            if !completion.is_success() {
                return Err(Error::Completion { what: "a lease RECV", status: completion.status });
            }
            if completion.opcode != CompletionOpcode::Recv {
                continue;
            }
            let slot =
                u32::try_from(WrId::from_raw(completion.wr_id).sequence()).expect("RECV sequences are slots");
            let mut bytes = [0u8; SLOT_BYTES];
            self.region
                .read(slot as usize * SLOT_BYTES, &mut bytes)
                .map_err(Error::region("reading a lease RECV slot"))?;
            self.post_recv(slot)?;
            return LeaseMessage::decode(&bytes[..completion.byte_len as usize]).map(Some);
        }
    }

    fn post_recv(&mut self, slot: u32) -> Result<()> {
        let sge = self
            .mr
            .sge(slot as usize * SLOT_BYTES, SLOT_BYTES as u32)
            .map_err(Error::verbs("a lease RECV slot"))?;
        let wr_id = WrId::wrapping(RegisteredKind::LeaseRecv, self.peer, u64::from(slot));
        self.qp
            .post_recv(&[RecvWr::new(wr_id.to_raw(), std::slice::from_ref(&sge))])
            .map_err(Error::verbs("posting a lease RECV"))
    }
}
