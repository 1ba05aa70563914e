//! Peers: another node's control block mapped here, and the memfds behind its MRs and
//! receive queues mapped on first use.
//!
//! A peer's memfd is opened through `/proc/<pid>/fd/<fd>` (allowed for processes of the
//! same user). Slot generations guard against descriptor reuse: a mapping is trusted only
//! if the slot was valid with the same generation both before and after the open, since an
//! owner invalidates a slot before it closes the descriptor.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use usec_regions::Region;

use crate::error::{Error, Incompatibility, PeerLoss, Result};
use crate::soft::fabric::{fabric_dir, node_file_name};
use crate::soft::layout::{
    ControlBlock, SlotWord, CONTROL_BLOCK_BYTES, LAYOUT_VERSION, MAGIC, MAX_MR, MAX_QP,
};
use crate::soft::liveness::{watch, Liveness};

/// Identity of a node: what an endpoint carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct NodeIdentity {
    pub fabric: u64,
    pub pid: u32,
    pub node: u32,
    pub nonce: u64,
}

/// What a mapping is of: an MR slot, or the receive queue of a QP slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum MappedObject {
    Mr(usize),
    ReceiveQueue(usize),
}

/// A mapping of a peer's object: the slot generation and epoch it was made for, and it.
type Mapping = (u32, u64, Arc<Region>);

/// Another node, as seen from this process.
#[derive(Debug)]
pub(crate) struct Peer {
    pub identity: NodeIdentity,
    control: Region,
    pub liveness: Arc<Liveness>,
    mappings: Mutex<HashMap<MappedObject, Mapping>>,
}

impl Peer {
    /// The peer's control block.
    #[inline]
    pub(crate) fn block(&self) -> &ControlBlock {
        // ControlBlock is all atomics, valid for any bit pattern and concurrent access; the reference
        // lives no longer than `self`.
        // SAFETY: `control` maps CONTROL_BLOCK_BYTES of a control block file (checked at open).
        unsafe { &*(self.control.as_ptr() as *const ControlBlock) }
    }

    /// Whether the peer is gone: its process exited or it closed the node.
    #[inline]
    pub(crate) fn is_gone(&self) -> bool {
        self.liveness.is_dead() || self.is_closed()
    }

    /// Whether the kernel marked the peer's death word: its process started dying (see
    /// `death_word.rs`). One load of a line the peer never writes while it lives.
    ///
    /// Dying is not gone: the word is marked when the first of the process's threads
    /// starts exiting, while another may still be finishing an operation into our memory
    /// (it stops at its next return to the kernel). So it makes the peer lost to failure
    /// detection (`PeerLost`, a probe saying `Exiting`) and refused as a new connection,
    /// but fences still wait for the pidfd ([`Peer::is_gone`]) before they count the
    /// peer's operations as ended.
    #[inline]
    pub(crate) fn died(&self) -> bool {
        crate::soft::death_word::owner_died(&self.block().header.death)
    }

    fn is_closed(&self) -> bool {
        self.block().header.closed.load(Ordering::Acquire) != 0
    }

    /// Why the peer is gone, if it is.
    fn loss(&self) -> Option<PeerLoss> {
        if self.liveness.is_dead() || self.died() {
            Some(PeerLoss::DeathReported { pid: self.identity.pid })
        } else if self.is_closed() {
            Some(PeerLoss::Closed)
        } else {
            None
        }
    }

    /// The mapping of an object of the peer, if its slot is valid with `generation` and
    /// (an MR) its memory is in the file of `epoch`.
    pub(crate) fn map(&self, object: MappedObject, generation: u32, epoch: u64) -> Option<Arc<Region>> {
        let mut mappings = self.mappings.lock().expect("mapping lock");
        if let Some((cached_generation, cached_epoch, region)) = mappings.get(&object) {
            if *cached_generation == generation && *cached_epoch == epoch {
                return Some(Arc::clone(region));
            }
        }
        let region = Arc::new(self.open_object(object, generation, epoch)?);
        mappings.insert(object, (generation, epoch, Arc::clone(&region)));
        Some(region)
    }

    fn open_object(&self, object: MappedObject, generation: u32, epoch: u64) -> Option<Region> {
        let block = self.block();
        // Whether the object is still the one of `generation` (and `epoch`): checked
        // before and after the open, because an owner invalidates a slot (or starts a new
        // epoch) before its descriptor may name another file.
        let current = || match object {
            MappedObject::Mr(slot) => {
                let word = SlotWord::load(&block.mrs[slot].word, Ordering::Acquire);
                word.valid
                    && word.generation == generation
                    && block.mrs[slot].epoch.load(Ordering::Acquire) == epoch
            }
            MappedObject::ReceiveQueue(slot) => {
                let owner = &block.qps[slot].owner;
                SlotWord::load(&owner.word, Ordering::Acquire).valid
                    && owner.rq_generation.load(Ordering::Acquire) == generation
            }
        };
        let (fd, len) = match object {
            MappedObject::Mr(slot) if slot < MAX_MR => {
                let mr = &block.mrs[slot];
                (mr.fd.load(Ordering::Acquire), mr.file_len.load(Ordering::Acquire) as usize)
            }
            MappedObject::ReceiveQueue(slot) if slot < MAX_QP => {
                let owner = &block.qps[slot].owner;
                let len = owner.rq_capacity.load(Ordering::Acquire) as usize
                    * owner.rq_stride.load(Ordering::Acquire) as usize
                    + crate::soft::receive_queue::RING_HEADER_BYTES;
                (owner.rq_fd.load(Ordering::Acquire), len)
            }
            _ => return None,
        };
        if !current() || len == 0 {
            return None;
        }
        let path = format!("/proc/{}/fd/{fd}", self.identity.pid);
        let file = OpenOptions::new().read(true).write(true).open(path).ok()?;
        if !current() {
            return None;
        }
        Region::from_file(file, len, false).ok()
    }
}

/// Peers by identity, shared by every node of this process.
fn registry() -> &'static Mutex<HashMap<NodeIdentity, Weak<Peer>>> {
    static PEERS: OnceLock<Mutex<HashMap<NodeIdentity, Weak<Peer>>>> = OnceLock::new();
    PEERS.get_or_init(Default::default)
}

/// The peer named by `identity` on fabric `fabric_name`, mapped and watched.
pub(crate) fn connect(fabric_name: &str, identity: NodeIdentity) -> Result<Arc<Peer>> {
    let mut peers = registry().lock().expect("peer registry lock");
    peers.retain(|_, peer| peer.strong_count() > 0);
    if let Some(peer) = peers.get(&identity).and_then(Weak::upgrade) {
        if let Some(reason) = peer.loss() {
            return Err(Error::unreachable(describe(&identity), reason));
        }
        return Ok(peer);
    }
    let peer = Arc::new(open_peer(fabric_name, identity)?);
    peers.insert(identity, Arc::downgrade(&peer));
    Ok(peer)
}

/// How errors name a peer node.
pub(crate) fn describe(identity: &NodeIdentity) -> String {
    format!("soft node {}/{}", identity.pid, identity.node)
}

fn open_peer(fabric_name: &str, identity: NodeIdentity) -> Result<Peer> {
    let path = fabric_dir(fabric_name).join(node_file_name(identity.pid, identity.node));
    let unreachable = |reason| Error::unreachable(describe(&identity), reason);
    let file: File = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(file) => file,
        // A node's file goes when it closes, or when a later node sweeps a dead process's.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(unreachable(PeerLoss::NoSuchNode))
        }
        Err(err) => return Err(Error::os(format!("opening the control block {}", path.display()), err)),
    };
    let control = Region::from_file(file, CONTROL_BLOCK_BYTES, false)?;
    // SAFETY: as in `Peer::block`: CONTROL_BLOCK_BYTES mapped, page aligned, all atomics.
    let block = unsafe { &*(control.as_ptr() as *const ControlBlock) };
    let header = &block.header;
    if header.magic.load(Ordering::Acquire) != MAGIC {
        return Err(Error::Incompatible { path, reason: Incompatibility::NotAControlBlock });
    }
    let version = header.version.load(Ordering::Acquire);
    if version != LAYOUT_VERSION {
        let reason = Incompatibility::LayoutVersion { found: version, expected: LAYOUT_VERSION };
        return Err(Error::Incompatible { path, reason });
    }
    let nonce = header.nonce.load(Ordering::Acquire);
    if nonce != identity.nonce || header.fabric.load(Ordering::Acquire) != identity.fabric {
        return Err(unreachable(PeerLoss::Replaced));
    }
    if header.closed.load(Ordering::Acquire) != 0 {
        return Err(unreachable(PeerLoss::Closed));
    }
    let liveness =
        watch(identity.pid, header.start_time.load(Ordering::Acquire)).map_err(|error| match error {
            Error::PeerUnreachable { reason, .. } => unreachable(reason),
            other => other,
        })?;
    Ok(Peer { identity, control, liveness, mappings: Mutex::new(HashMap::new()) })
}
