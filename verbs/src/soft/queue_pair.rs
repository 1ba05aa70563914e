//! RC queue pairs of the soft provider: the state machine, posting, and the fences that
//! make permission changes exact.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::completion::{Completion, Status};
use crate::emulation::checks;
use crate::error::{BadEndpoint, Error, PeerLoss, PostRejection, Result};
use crate::event::{AsyncEvent, AsyncEventKind};
use crate::primitive::sync::atomic::{AtomicBool, Ordering};
use crate::probe::PeerProbe;
use crate::provider::{ProviderKind, QpOps, Transition};
use crate::qp::{
    Address, Endpoint, InitAttributes, Mtu, QpCaps, QpOptions, QpState, RtrAttributes, RtsAttributes,
};
use crate::soft::completion_queue::{CqShared, RecvSource, SendCompletion};
use crate::soft::deferred::{DeferredQueue, OwnedWr, Verdict};
use crate::soft::execute::{Link, MapCache, Outcome, Requester};
use crate::soft::fence::{self, Change};
use crate::soft::layout::{qpn_of, split_key, QpSlot, SlotWord, MAX_QP};
use crate::soft::node::Node;
use crate::soft::peer::{self, NodeIdentity};
use crate::soft::receive_queue::ReceiveQueue;
use crate::work_request::{RecvWr, SendWr};

/// The parts of a QP that its CQs and its node reach too.
#[derive(Debug)]
pub(crate) struct QpShared {
    pub node: Arc<Node>,
    pub slot: usize,
    pub qp_num: u32,
    pub pd: u32,
    pub send_cq: Arc<CqShared>,
    pub recv_cq: Arc<CqShared>,
    pub link: Mutex<Option<Link>>,
    pub deferred: Mutex<DeferredQueue>,
    pub has_deferred: AtomicBool,
}

impl QpShared {
    fn slot(&self) -> &QpSlot {
        &self.node.block().qps[self.slot]
    }

    /// The state word of the QP (a peer may have moved it to ERROR).
    pub(crate) fn word(&self) -> SlotWord {
        SlotWord::load(&self.slot().owner.word, Ordering::Acquire)
    }

    /// Stores a new state word; SeqCst, for the permission handshake.
    fn store_word(&self, change: impl Fn(&mut SlotWord)) {
        let word = &self.slot().owner.word;
        let mut current = word.load(Ordering::Acquire);
        loop {
            let mut next = SlotWord::unpack(current);
            change(&mut next);
            match word.compare_exchange(current, next.pack(), Ordering::SeqCst, Ordering::Acquire) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Steps N2 to N4 of the fence (see fence.rs), after a change of this QP's word: waits
    /// until the connected peer is not in the middle of an operation `change` governs that
    /// it checked before our last SeqCst store, or revokes it if it cannot be waited for.
    pub(crate) fn fence_peer(&self, change: Change) {
        let link = self.link.lock().expect("link lock").clone();
        if let Some(link) = link {
            fence::fence(&self.node, change, [(link.peer, link.target_slot, self.pd)]);
        }
    }

    /// Waits until this QP, as requester, is not in the middle of an operation (used when
    /// local memory is deregistered). Our own operations always finish.
    pub(crate) fn fence_local(&self) {
        let marker = &self.slot().outbound.in_flight;
        // Revoked by its responder, an operation may still be copying into our memory.
        if let Some(raised) = fence::observe(marker) {
            fence::wait_for(marker, raised, || false);
        }
    }

    /// Delivers a send-queue completion; a full CQ fails the QP, as an overrun does.
    fn emit(&self, completion: Completion, sequence: u64) -> bool {
        let entry = SendCompletion { completion, sequence, slot: self.slot };
        if self.send_cq.push(entry) {
            return true;
        }
        self.node
            .events
            .lock()
            .expect("event lock")
            .push_back(AsyncEvent { kind: AsyncEventKind::CqOverrun, qp_num: Some(self.qp_num) });
        false
    }

    /// Turns an outcome into a completion; failures move the QP to ERROR.
    fn finish(
        &self,
        wr: &SendWr<'_>,
        sequence: u64,
        status: Status,
        byte_len: u32,
        deferred: &mut DeferredQueue,
    ) {
        if wr.signaled || status != Status::Success {
            let completion = Completion {
                wr_id: wr.wr_id,
                status,
                opcode: wr.op.completion_opcode(),
                byte_len,
                imm: None,
                qp_num: self.qp_num,
            };
            if !self.emit(completion, sequence) {
                self.enter_error(deferred);
                return;
            }
        }
        if status != Status::Success {
            self.enter_error(deferred);
        }
    }

    /// Moves to ERROR: deferred requests flush in order, posted RECVs flush through the
    /// receive CQ's poller. A QP in ERROR serves its peer no more, so this fences the peer
    /// like an access change: nothing the peer checked against the old state lands after.
    fn enter_error(&self, deferred: &mut DeferredQueue) {
        self.store_word(|word| word.state = QpState::Error);
        self.fence_peer(Change::QpRetired);
        self.has_deferred.store(false, Ordering::Release);
        while let Some(wr) = deferred.wrs.pop_front() {
            let completion = Completion {
                wr_id: wr.wr_id,
                status: Status::Flushed,
                opcode: wr.op.completion_opcode(),
                byte_len: 0,
                imm: None,
                qp_num: self.qp_num,
            };
            self.emit(completion, wr.sequence);
        }
        self.ring_own_doorbell();
    }

    fn ring_own_doorbell(&self) {
        self.node.block().cqs[self.recv_cq.slot()].doorbell.fetch_add(1, Ordering::Release);
    }

    /// Runs due deferred requests (called by posts and by send-CQ polls).
    pub(crate) fn progress(&self) {
        if !self.has_deferred.load(Ordering::Acquire) {
            return;
        }
        let mut guard = self.deferred.lock().expect("deferred lock");
        let deferred = &mut *guard;
        let Some(link) = self.link.lock().expect("link lock").clone() else { return };
        let now = Instant::now();
        while deferred.head_due(now) {
            let outcome = {
                let wr = deferred.wrs.front().expect("due head exists").as_wr();
                let mut requester = Requester {
                    node: &self.node,
                    slot: self.slot,
                    qp_num: self.qp_num,
                    pd: self.pd,
                    link: &link,
                    cache: &mut deferred.cache,
                };
                requester.execute(&wr)
            };
            match deferred.judge(outcome, now) {
                Verdict::Wait => break,
                Verdict::Finished(status, byte_len) => {
                    let owned = deferred.wrs.pop_front().expect("head exists");
                    self.finish(&owned.as_wr(), owned.sequence, status, byte_len, deferred);
                }
            }
        }
        if deferred.wrs.is_empty() {
            self.has_deferred.store(false, Ordering::Release);
        }
    }
}

/// An RC queue pair of the soft provider.
#[derive(Debug)]
pub(crate) struct SoftQp {
    shared: Arc<QpShared>,
    caps: QpCaps,
    psn: u32,
    recv: Arc<RecvSource>,
    recv_posted: u64,
    send_posted: u64,
    /// A copy of the shared link, so posts take no lock.
    link: Option<Link>,
    cache: MapCache,
}

impl SoftQp {
    pub(crate) fn create(
        node: &Arc<Node>,
        pd: u32,
        send_cq: Arc<CqShared>,
        recv_cq: Arc<CqShared>,
        options: &QpOptions,
    ) -> Result<SoftQp> {
        let (slot, generation) = node
            .tables
            .lock()
            .expect("node tables")
            .qps
            .allocate()
            .ok_or(Error::ResourceExhausted { what: "queue pairs", limit: MAX_QP as u64 })?;
        let qp_num = qpn_of(slot, generation);
        let shared = Arc::new(QpShared {
            node: Arc::clone(node),
            slot,
            qp_num,
            pd,
            send_cq,
            recv_cq,
            link: Mutex::new(None),
            deferred: Mutex::new(DeferredQueue::default()),
            has_deferred: AtomicBool::new(false),
        });
        let queue = match ReceiveQueue::create(options.caps.max_recv_wr, options.caps.max_recv_sge) {
            Ok(queue) => queue,
            Err(err) => {
                node.tables.lock().expect("node tables").qps.release(slot);
                return Err(err);
            }
        };
        let owner = &shared.slot().owner;
        owner.pd.store(pd, Ordering::Relaxed);
        owner.peer_qpn.store(0, Ordering::Relaxed);
        owner.peer_nonce.store(0, Ordering::Relaxed);
        owner.recv_cq.store(shared.recv_cq.slot() as u32, Ordering::Relaxed);
        let outbound = &shared.slot().outbound;
        outbound.send_retired.store(0, Ordering::Relaxed);
        let recv = install_queue(&shared, queue, 0);
        let word = SlotWord { generation, state: QpState::Reset, access: Default::default(), valid: true };
        owner.word.store(word.pack(), Ordering::SeqCst);
        node.tables.lock().expect("node tables").live_qps.insert(slot, Arc::downgrade(&shared));
        Ok(SoftQp {
            shared,
            caps: options.caps,
            psn: rand::random::<u32>() & 0xff_ffff,
            recv,
            recv_posted: 0,
            send_posted: 0,
            link: None,
            cache: MapCache::default(),
        })
    }

    fn state_now(&self) -> QpState {
        self.shared.word().state
    }

    fn move_to_init(&mut self, attributes: &InitAttributes) {
        self.shared.store_word(|word| {
            word.state = QpState::Init;
            word.access = attributes.access;
        });
    }

    fn move_to_rtr(&mut self, remote: &Endpoint, attributes: &RtrAttributes) -> Result<()> {
        let Address::Soft { fabric, pid, node, nonce } = remote.address else {
            let provider = ProviderKind::Soft;
            return Err(Error::BadEndpoint(BadEndpoint::OtherProvider { provider, address: remote.address }));
        };
        let own = &self.shared.node;
        if fabric != own.identity.fabric {
            return Err(Error::BadEndpoint(BadEndpoint::OtherFabric {
                ours: format!("soft:{}", own.fabric),
            }));
        }
        let identity = NodeIdentity { fabric, pid, node, nonce };
        let peer = peer::connect(&own.fabric, identity)?;
        let (target_slot, _) = split_key(remote.qp_num);
        let target_word = SlotWord::load(&peer.block().qps[target_slot].owner.word, Ordering::Acquire);
        if target_slot >= MAX_QP
            || !target_word.valid
            || crate::soft::layout::qpn_of(target_slot, target_word.generation) != remote.qp_num
        {
            return Err(Error::unreachable(
                peer::describe(&identity),
                PeerLoss::NoSuchQp { qp_num: remote.qp_num },
            ));
        }
        let owner = &self.shared.slot().owner;
        owner.peer_qpn.store(remote.qp_num, Ordering::Relaxed);
        owner.peer_nonce.store(nonce, Ordering::Relaxed);
        owner.min_rnr_timer.store(u32::from(attributes.min_rnr_timer), Ordering::Relaxed);
        let link = Link { peer: Arc::clone(&peer), target_slot, target_qpn: remote.qp_num };
        peer.liveness.listen(&own.events, self.shared.qp_num);
        own.watch_peer(&peer);
        *self.shared.link.lock().expect("link lock") = Some(link.clone());
        self.link = Some(link);
        self.cache = MapCache::default();
        *self.shared.deferred.lock().expect("deferred lock") = DeferredQueue::default();
        self.shared.store_word(|word| word.state = QpState::Rtr);
        Ok(())
    }

    fn move_to_rts(&mut self, attributes: &RtsAttributes) {
        let responder_rnr_timer = self
            .link
            .as_ref()
            .map_or(0, |link| link.target().owner.min_rnr_timer.load(Ordering::Acquire) as u8);
        {
            let mut deferred = self.shared.deferred.lock().expect("deferred lock");
            deferred.rts = *attributes;
            deferred.responder_rnr_timer = responder_rnr_timer;
        }
        self.shared.store_word(|word| word.state = QpState::Rts);
    }

    fn set_access(&mut self, access: crate::access::AccessFlags) {
        self.shared.store_word(|word| word.access = access);
        self.shared.fence_peer(Change::QpAccess);
    }

    fn reset(&mut self) -> Result<()> {
        self.shared.store_word(|word| {
            word.state = QpState::Reset;
            word.access = Default::default();
        });
        // Before the link goes: the peer may be in the middle of an operation it checked
        // against the old state, and once the link is gone no MR fence would wait for it.
        self.shared.fence_peer(Change::QpRetired);
        self.shared.has_deferred.store(false, Ordering::Release);
        *self.shared.deferred.lock().expect("deferred lock") = DeferredQueue::default();
        if let Some(link) = self.shared.link.lock().expect("link lock").take() {
            link.peer.liveness.unlisten(&self.shared.node.events, self.shared.qp_num);
        }
        self.link = None;
        let owner = &self.shared.slot().owner;
        owner.peer_qpn.store(0, Ordering::Relaxed);
        owner.peer_nonce.store(0, Ordering::Relaxed);
        // A fresh ring: a peer still working from the old one can only touch the old one.
        // Positions keep growing so a stale compare-and-swap on them cannot succeed.
        let queue = ReceiveQueue::create(self.caps.max_recv_wr, self.caps.max_recv_sge)?;
        let start = self.recv_posted + self.recv.queue.capacity();
        self.recv.retired.store(true, Ordering::Release);
        self.recv = install_queue(&self.shared, queue, start);
        self.recv_posted = start;
        self.cache = MapCache::default();
        // Send requests posted before the reset are forgotten, as their queue is.
        self.shared.slot().outbound.send_retired.store(self.send_posted, Ordering::Release);
        Ok(())
    }

    fn post_one_send(&mut self, wr: &SendWr<'_>) -> std::result::Result<(), PostRejection> {
        checks::check_send_post(wr, &self.caps)?;
        let state = self.state_now();
        if !matches!(state, QpState::Rts | QpState::Error) {
            return Err(PostRejection::QpState { state });
        }
        let retired = self.shared.slot().outbound.send_retired.load(Ordering::Acquire);
        if self.send_posted - retired >= u64::from(self.caps.max_send_wr) {
            return Err(PostRejection::QueueFull { depth: self.caps.max_send_wr });
        }
        self.send_posted += 1;
        let sequence = self.send_posted;
        let shared = &self.shared;
        if state == QpState::Error {
            let mut deferred = shared.deferred.lock().expect("deferred lock");
            shared.finish(wr, sequence, Status::Flushed, 0, &mut deferred);
            return Ok(());
        }
        if shared.has_deferred.load(Ordering::Acquire) {
            shared.deferred.lock().expect("deferred lock").wrs.push_back(OwnedWr::new(wr, sequence));
            shared.progress();
            return Ok(());
        }
        let link = self.link.as_ref().expect("an RTS QP has a link");
        let outcome = Requester {
            node: &shared.node,
            slot: shared.slot,
            qp_num: shared.qp_num,
            pd: shared.pd,
            link,
            cache: &mut self.cache,
        }
        .execute(wr);
        match outcome {
            Outcome::Complete { status: Status::Success, byte_len } => {
                if wr.signaled {
                    let completion = Completion {
                        wr_id: wr.wr_id,
                        status: Status::Success,
                        opcode: wr.op.completion_opcode(),
                        byte_len,
                        imm: None,
                        qp_num: shared.qp_num,
                    };
                    if !shared.emit(completion, sequence) {
                        shared.enter_error(&mut shared.deferred.lock().expect("deferred lock"));
                    }
                }
            }
            Outcome::Complete { status, byte_len } => {
                let mut deferred = shared.deferred.lock().expect("deferred lock");
                shared.finish(wr, sequence, status, byte_len, &mut deferred);
            }
            Outcome::ReceiverNotReady | Outcome::TargetNotReady | Outcome::Moving => {
                let mut deferred = shared.deferred.lock().expect("deferred lock");
                deferred.wrs.push_back(OwnedWr::new(wr, sequence));
                let _ = deferred.judge(outcome, Instant::now());
                shared.has_deferred.store(true, Ordering::Release);
                drop(deferred);
                shared.send_cq.watch_deferred(Arc::downgrade(shared));
            }
        }
        Ok(())
    }

    fn post_one_recv(&mut self, wr: &RecvWr<'_>) -> std::result::Result<(), PostRejection> {
        checks::check_recv_post(wr, &self.caps)?;
        let state = self.state_now();
        if state == QpState::Reset {
            return Err(PostRejection::QpState { state });
        }
        let consumed = self.recv.consumed.load(Ordering::Acquire);
        if self.recv_posted - consumed >= u64::from(self.caps.max_recv_wr) {
            return Err(PostRejection::QueueFull { depth: self.caps.max_recv_wr });
        }
        self.recv.queue.post(self.recv_posted, wr.wr_id, wr.sges);
        self.recv_posted += 1;
        if state == QpState::Error {
            self.shared.ring_own_doorbell();
        }
        Ok(())
    }
}

/// Publishes `queue` as the QP's receive queue, starting at position `start`, and hands
/// it to the receive CQ's poller.
fn install_queue(shared: &Arc<QpShared>, queue: ReceiveQueue, start: u64) -> Arc<RecvSource> {
    let owner = &shared.slot().owner;
    owner.rq_fd.store(std::os::fd::AsRawFd::as_raw_fd(&queue.region().fd()) as u32, Ordering::Relaxed);
    owner.rq_capacity.store(queue.capacity() as u32, Ordering::Relaxed);
    owner.rq_stride.store(queue.stride() as u32, Ordering::Relaxed);
    shared.slot().inbound.recv_taken.store(start, Ordering::Release);
    owner.rq_generation.fetch_add(1, Ordering::Release);
    let source = Arc::new(RecvSource::new(Arc::downgrade(shared), shared.slot, shared.qp_num, queue, start));
    shared.recv_cq.attach(Arc::clone(&source));
    source
}

impl QpOps for SoftQp {
    fn qp_num(&self) -> u32 {
        self.shared.qp_num
    }

    fn state(&self) -> QpState {
        self.state_now()
    }

    fn caps(&self) -> QpCaps {
        self.caps
    }

    fn endpoint(&self) -> Endpoint {
        let identity = self.shared.node.identity;
        Endpoint {
            qp_num: self.shared.qp_num,
            psn: self.psn,
            mtu: Mtu::Mtu4096,
            address: Address::Soft {
                fabric: identity.fabric,
                pid: identity.pid,
                node: identity.node,
                nonce: identity.nonce,
            },
        }
    }

    fn modify(&mut self, transition: Transition<'_>) -> Result<()> {
        match transition {
            Transition::Init(attributes) => self.move_to_init(attributes),
            Transition::Rtr(remote, attributes) => self.move_to_rtr(remote, attributes)?,
            Transition::Rts(attributes) => self.move_to_rts(attributes),
            Transition::Access(access) => self.set_access(access),
            Transition::Error => {
                let shared = Arc::clone(&self.shared);
                let mut deferred = shared.deferred.lock().expect("deferred lock");
                shared.enter_error(&mut deferred);
            }
            Transition::Reset => self.reset()?,
        }
        Ok(())
    }

    fn post_send(&mut self, wrs: &[SendWr<'_>]) -> Result<()> {
        for (index, wr) in wrs.iter().enumerate() {
            self.post_one_send(wr).map_err(|reason| Error::PostRejected { index, reason })?;
        }
        Ok(())
    }

    fn post_recv(&mut self, wrs: &[RecvWr<'_>]) -> Result<()> {
        for (index, wr) in wrs.iter().enumerate() {
            self.post_one_recv(wr).map_err(|reason| Error::PostRejected { index, reason })?;
        }
        Ok(())
    }

    fn probe_peer(&self) -> PeerProbe {
        let Some(link) = &self.link else { return PeerProbe::Unknown };
        let peer = &link.peer;
        if peer.is_gone() || peer.died() {
            return PeerProbe::Exiting;
        }
        let start_time = peer.block().header.start_time.load(Ordering::Acquire);
        crate::soft::process::probe(peer.identity.pid, start_time)
    }
}

impl Drop for SoftQp {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.store_word(|word| {
            word.valid = false;
            word.state = QpState::Reset;
        });
        // As in `reset`: after the destruction no operation through this QP may land, and
        // deregistrations later on cannot reach the peer of a QP that no longer exists.
        shared.fence_peer(Change::QpRetired);
        shared.has_deferred.store(false, Ordering::Release);
        shared.deferred.lock().expect("deferred lock").wrs.clear();
        self.recv.retired.store(true, Ordering::Release);
        if let Some(link) = shared.link.lock().expect("link lock").take() {
            link.peer.liveness.unlisten(&shared.node.events, shared.qp_num);
        }
        let mut tables = shared.node.tables.lock().expect("node tables");
        tables.live_qps.remove(&shared.slot);
        tables.qps.release(shared.slot);
    }
}
