//! A soft node: one opened `soft:<fabric>` device in this process, its published control
//! block, and the slot tables behind its MRs, QPs and CQs.

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use usec_regions::Region;

use crate::access::AccessFlags;
use crate::device::{DeviceAttributes, LinkLayer, PortAttributes};
use crate::error::{Error, Result};
use crate::event::{AsyncEvent, AsyncEventKind};
use crate::provider::{CqOps, DeviceOps, MrOps, PdOps, ProviderKind, QpOps};
use crate::qp::QpOptions;
use crate::soft::completion_queue::{CqShared, SoftCq};
use crate::soft::death_word::DeathWord;
use crate::soft::fabric::{self, fabric_hash, NewNodeFile};
use crate::soft::fence::{self, Change};
use crate::soft::layout::{
    AsyncFlag, ControlBlock, CONTROL_BLOCK_BYTES, LAYOUT_VERSION, MAGIC, MAX_CQ, MAX_MR, MAX_QP,
};
use crate::soft::liveness::EventSink;
use crate::soft::memory_region::SoftMr;
use crate::soft::peer::{NodeIdentity, Peer};
use crate::soft::process::own_start_time;
use crate::soft::queue_pair::{QpShared, SoftQp};

/// Limits of the soft provider.
pub(crate) const MAX_QP_WR: u32 = 16 * 1024;
pub(crate) const MAX_SGE: u32 = 16;
pub(crate) const MAX_CQE: u32 = 1 << 20;
pub(crate) const MAX_INLINE: u32 = 1024;
pub(crate) const MAX_MR_BYTES: u64 = 1 << 40;

/// Slot allocation: first-in first-out, so a freed slot (and its keys) is reused as late
/// as possible; each reuse bumps the slot's generation.
#[derive(Debug)]
pub(crate) struct SlotTable {
    free: VecDeque<usize>,
    generations: Vec<u32>,
}

impl SlotTable {
    fn new(slots: usize) -> SlotTable {
        SlotTable { free: (0..slots).collect(), generations: vec![0; slots] }
    }

    /// A free slot and its new generation (never 0, so a zeroed slot matches no key).
    pub(crate) fn allocate(&mut self) -> Option<(usize, u32)> {
        let slot = self.free.pop_front()?;
        let generation = &mut self.generations[slot];
        *generation = generation.wrapping_add(1).max(1);
        Some((slot, *generation))
    }

    pub(crate) fn release(&mut self, slot: usize) {
        debug_assert!(!self.free.contains(&slot), "slot {slot} released twice");
        self.free.push_back(slot);
    }
}

/// The mutable bookkeeping of a node.
#[derive(Debug)]
pub(crate) struct Tables {
    pub mrs: SlotTable,
    pub qps: SlotTable,
    pub cqs: SlotTable,
    /// Live QPs by slot, so MR changes can fence every peer. A map, not a table of every
    /// slot: `poll_event` walks it on every call.
    pub live_qps: BTreeMap<usize, Weak<QpShared>>,
}

/// One opened soft device.
#[derive(Debug)]
pub(crate) struct Node {
    name: String,
    pub fabric: String,
    pub identity: NodeIdentity,
    path: PathBuf,
    control: Region,
    pub tables: Mutex<Tables>,
    pub events: Arc<EventSink>,
    next_pd: AtomicU32,
    /// Marked by the kernel when this process dies (see `death_word.rs`).
    death_word: Mutex<DeathWord>,
    /// The peers our QPs connected to, whose death words `poll_event` looks at (a dead one
    /// is dropped from the list once reported).
    watched: Mutex<Vec<Weak<Peer>>>,
}

static NEXT_NODE: AtomicU32 = AtomicU32::new(0);

impl Node {
    pub(crate) fn open(fabric: &str) -> Result<Arc<Node>> {
        let dir = fabric::prepare(fabric)?;
        let pid = std::process::id();
        let node = NEXT_NODE.fetch_add(1, Ordering::Relaxed);
        let file = NewNodeFile::create(&dir, pid, node)?;
        let control = Region::from_file(
            file.file.try_clone().map_err(|e| Error::os("dup", e))?,
            CONTROL_BLOCK_BYTES,
            false,
        )?;
        let identity =
            NodeIdentity { fabric: fabric_hash(fabric), pid, node, nonce: rand::random::<u64>() | 1 };
        // SAFETY: as in `Node::block`.
        let block = unsafe { &*(control.as_ptr() as *const ControlBlock) };
        let header = &block.header;
        header.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        header.pid.store(pid, Ordering::Relaxed);
        header.node.store(node, Ordering::Relaxed);
        header.nonce.store(identity.nonce, Ordering::Relaxed);
        header.start_time.store(own_start_time(), Ordering::Relaxed);
        header.fabric.store(identity.fabric, Ordering::Relaxed);
        header.magic.store(MAGIC, Ordering::Release);
        // Armed before anyone can find the node, so every peer that maps it can see it die.
        let death_word = DeathWord::arm(&header.death)?;
        let path = file.publish()?;
        Ok(Arc::new(Node {
            name: format!("soft:{fabric}"),
            fabric: fabric.to_string(),
            identity,
            path,
            control,
            tables: Mutex::new(Tables {
                mrs: SlotTable::new(MAX_MR),
                qps: SlotTable::new(MAX_QP),
                cqs: SlotTable::new(MAX_CQ),
                live_qps: BTreeMap::new(),
            }),
            events: Arc::new(Mutex::new(VecDeque::new())),
            next_pd: AtomicU32::new(1),
            death_word: Mutex::new(death_word),
            watched: Mutex::new(Vec::new()),
        }))
    }

    /// This node's control block.
    #[inline]
    pub(crate) fn block(&self) -> &ControlBlock {
        // ControlBlock is all atomics, valid for any bit pattern and concurrent access; the reference
        // lives no longer than `self`.
        // SAFETY: `control` maps CONTROL_BLOCK_BYTES of our control block file, page aligned.
        unsafe { &*(self.control.as_ptr() as *const ControlBlock) }
    }

    fn live_qps(&self) -> Vec<Arc<QpShared>> {
        let tables = self.tables.lock().expect("node tables");
        tables.live_qps.values().filter_map(Weak::upgrade).collect()
    }

    /// The peers of our connected QPs: (peer, peer QP slot, our QP's PD), the markers a
    /// responder fence watches.
    pub(crate) fn links(&self) -> Vec<(Arc<Peer>, usize, u32)> {
        self.live_qps()
            .into_iter()
            .filter_map(|qp| {
                let link = qp.link.lock().expect("link lock").clone()?;
                Some((link.peer, link.target_slot, qp.pd))
            })
            .collect()
    }

    /// After the word of MR `slot` changed: no operation checked against its old word can
    /// still touch its memory, neither a peer's (through any of our QPs; fenced, or revoked
    /// if it cannot be waited for) nor one of our own QPs' (which may be reading or writing
    /// the memory locally, and always finishes).
    pub(crate) fn fence_memory(&self, slot: usize) {
        fence::fence(self, Change::Mr { slot }, self.links());
        for qp in self.live_qps() {
            qp.fence_local();
        }
    }

    /// Watches `peer`'s death word from now on (a QP of ours connected to it).
    pub(crate) fn watch_peer(&self, peer: &Arc<Peer>) {
        let mut watched = self.watched.lock().expect("watched peers");
        watched.retain(|known| known.strong_count() > 0);
        if !watched.iter().any(|known| std::ptr::eq(known.as_ptr(), Arc::as_ptr(peer))) {
            watched.push(Arc::downgrade(peer));
        }
    }

    /// Reports the peers whose death word the kernel marked: their process is dying —
    /// every QP connected to it, of every node of ours, gets its `PeerLost` now rather than
    /// when the pidfd turns readable (hundreds of microseconds later, once the process's
    /// memory is torn down). One load per watched peer.
    fn collect_peer_deaths(&self) {
        let mut watched = self.watched.lock().expect("watched peers");
        watched.retain(|peer| {
            let Some(peer) = peer.upgrade() else { return false };
            if !peer.died() {
                return true;
            }
            peer.liveness.report_dying();
            false
        });
    }

    /// Async events raised by peers on our QPs (see `AsyncFlag`), moved to the queue.
    fn collect_peer_events(&self) {
        // Nearly always none: a look at each live QP's flags first, which allocates and
        // writes nothing, so that polling for events (a driver looks for `PeerLost` every
        // few microseconds) stays cheap.
        if !self.any_peer_event() {
            return;
        }
        for qp in self.live_qps() {
            let flags = self.block().qps[qp.slot].owner.async_flags.swap(0, Ordering::AcqRel);
            let mut events = self.events.lock().expect("event lock");
            for (flag, kind) in [
                (AsyncFlag::AccessError, AsyncEventKind::QpAccessError),
                (AsyncFlag::RequestError, AsyncEventKind::QpRequestError),
            ] {
                if flags & flag as u32 != 0 {
                    events.push_back(AsyncEvent { kind, qp_num: Some(qp.qp_num) });
                }
            }
        }
    }

    /// Whether a peer raised an async flag on any live QP of ours.
    fn any_peer_event(&self) -> bool {
        let tables = self.tables.lock().expect("node tables");
        let flags = |slot: usize| self.block().qps[slot].owner.async_flags.load(Ordering::Acquire);
        tables.live_qps.keys().any(|&slot| flags(slot) != 0)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A clean close is no death: the word is taken off the keeper's list first.
        self.death_word.lock().expect("death word").disarm();
        // Peers treat a closed node as gone at once; then the file disappears.
        self.block().header.closed.store(1, Ordering::Release);
        let _ = fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            fabric::remove_if_empty(dir);
        }
    }
}

/// The device handle: an `Arc<Node>` implementing the provider traits.
#[derive(Debug)]
pub(crate) struct SoftDevice {
    pub node: Arc<Node>,
}

impl DeviceOps for SoftDevice {
    fn name(&self) -> &str {
        &self.node.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Soft
    }

    fn attributes(&self) -> DeviceAttributes {
        soft_attributes()
    }

    fn alloc_pd(&self) -> Result<Arc<dyn PdOps>> {
        let id = self.node.next_pd.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(SoftPd { node: Arc::clone(&self.node), id }))
    }

    fn create_cq(&self, depth: u32) -> Result<Box<dyn CqOps>> {
        Ok(Box::new(SoftCq::new(&self.node, depth)?))
    }

    fn poll_event(&self) -> Option<AsyncEvent> {
        self.node.collect_peer_deaths();
        if let Some(event) = self.node.events.lock().expect("event lock").pop_front() {
            return Some(event);
        }
        self.node.collect_peer_events();
        self.node.events.lock().expect("event lock").pop_front()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub(crate) fn soft_attributes() -> DeviceAttributes {
    DeviceAttributes {
        max_qp: MAX_QP as u32,
        max_qp_wr: MAX_QP_WR,
        max_sge: MAX_SGE,
        max_cq: MAX_CQ as u32,
        max_cqe: MAX_CQE,
        max_mr: MAX_MR as u32,
        max_mr_size: MAX_MR_BYTES,
        max_inline_data: MAX_INLINE,
        max_qp_rd_atom: 16,
        atomics_global: true,
        ports: vec![PortAttributes::emulated(LinkLayer::SharedMemory)],
    }
}

/// A protection domain of a soft node.
#[derive(Debug)]
pub(crate) struct SoftPd {
    node: Arc<Node>,
    id: u32,
}

impl PdOps for SoftPd {
    fn register(
        &self,
        region: &Arc<Region>,
        offset: usize,
        len: usize,
        access: AccessFlags,
    ) -> Result<Box<dyn MrOps>> {
        Ok(Box::new(SoftMr::register(&self.node, self.id, region, offset, len, access)?))
    }

    fn create_qp(
        &self,
        send_cq: &dyn CqOps,
        recv_cq: &dyn CqOps,
        options: &QpOptions,
    ) -> Result<Box<dyn QpOps>> {
        let send_cq = own_cq(send_cq, &self.node)?;
        let recv_cq = own_cq(recv_cq, &self.node)?;
        Ok(Box::new(SoftQp::create(&self.node, self.id, send_cq, recv_cq, options)?))
    }
}

fn own_cq(cq: &dyn CqOps, node: &Arc<Node>) -> Result<Arc<CqShared>> {
    let cq = cq.as_any().downcast_ref::<SoftCq>().ok_or(Error::ForeignObject("the completion queue"))?;
    if !Arc::ptr_eq(cq.node(), node) {
        return Err(Error::ForeignObject("the completion queue"));
    }
    Ok(Arc::clone(cq.shared()))
}
