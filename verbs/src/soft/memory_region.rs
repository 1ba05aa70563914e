//! Memory registration on a soft node: publishing an MR slot that peers check and map.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use usec_regions::Region;

use crate::access::AccessFlags;
use crate::error::{Error, Result};
use crate::provider::MrOps;
use crate::qp::QpState;
use crate::soft::layout::{key_of, SlotWord, MAX_MR};
use crate::soft::node::Node;
use crate::soft::relocation;

/// A registration: an MR slot of the node's control block, published while it lives.
#[derive(Debug)]
pub(crate) struct SoftMr {
    node: Arc<Node>,
    slot: usize,
    generation: u32,
    key: u32,
    // Keeps the memory (and its memfd descriptor number, which peers open) alive.
    _region: Arc<Region>,
}

impl SoftMr {
    pub(crate) fn register(
        node: &Arc<Node>,
        pd: u32,
        region: &Arc<Region>,
        offset: usize,
        len: usize,
        access: AccessFlags,
    ) -> Result<SoftMr> {
        let (slot, generation) = node
            .tables
            .lock()
            .expect("node tables")
            .mrs
            .allocate()
            .ok_or(Error::ResourceExhausted { what: "memory registrations", limit: MAX_MR as u64 })?;
        relocation::register(region, node, slot, pd, || {
            let mr = &node.block().mrs[slot];
            mr.pd.store(pd, Ordering::Relaxed);
            mr.fd.store(region.fd().as_raw_fd() as u32, Ordering::Relaxed);
            mr.addr.store(region.addr() + offset as u64, Ordering::Relaxed);
            mr.len.store(len as u64, Ordering::Relaxed);
            mr.file_offset.store(offset as u64, Ordering::Relaxed);
            mr.file_len.store(region.len() as u64, Ordering::Relaxed);
            let word = SlotWord { generation, state: QpState::Reset, access, valid: true };
            // Release: a peer that sees the slot valid sees the fields above.
            mr.word.store(word.pack(), Ordering::Release);
        });
        Ok(SoftMr {
            node: Arc::clone(node),
            slot,
            generation,
            key: key_of(slot, generation),
            _region: Arc::clone(region),
        })
    }

    fn publish(&self, access: AccessFlags, valid: bool) {
        let word = SlotWord { generation: self.generation, state: QpState::Reset, access, valid };
        // SeqCst, then fence every peer: one side of the handshake with the requester's
        // in-flight marker (see fence.rs), so nothing checked against the old word lands
        // after we return.
        self.node.block().mrs[self.slot].word.store(word.pack(), Ordering::SeqCst);
        self.node.fence_memory(self.slot);
    }
}

impl MrOps for SoftMr {
    fn lkey(&self) -> u32 {
        self.key
    }

    fn rkey(&self) -> u32 {
        self.key
    }

    fn rereg_access(&mut self, access: AccessFlags) -> Result<()> {
        self.publish(access, true);
        Ok(())
    }
}

impl Drop for SoftMr {
    fn drop(&mut self) {
        self.publish(AccessFlags::empty(), false);
        relocation::unregister(&self.node, self.slot);
        self.node.tables.lock().expect("node tables").mrs.release(self.slot);
    }
}
