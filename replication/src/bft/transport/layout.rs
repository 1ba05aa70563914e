//! Which rings exist between which processes, and where each sits in memory.
//!
//! A [`RingPlan`] lists, for every ordered pair (sender, receiver), the rings the sender
//! writes into the receiver's memory; every process builds the same plan from the same
//! inputs, so both ends of a ring agree on its place without exchanging anything but the
//! regions' descriptors at bootstrap.
//!
//! In a receiver's memory the rings of one sender form one contiguous slice (what that
//! sender alone is granted to write), senders in id order; a separate slice per sender
//! holds the receiver's consumption counters of credit rings (granted to that sender
//! read-only). A sender keeps, per receiver, a mirror of the rings it writes there: frames
//! are built in the mirror slot and WRITEn from it, so the bytes stay put until the WRITE
//! completes; after the mirror come 8 bytes per ring for reading credit back.

use std::collections::BTreeMap;

use usec_qp_pool::NodeId;

use crate::error::{Error, Result};

use super::frame::frame_bytes;

/// Names a ring between one sender and one receiver (unique per pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u16);

/// What happens when a sender is a whole ring ahead of its reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingMode {
    /// The sender overwrites: the reader keeps only the last `slots` frames and skips what
    /// was overwritten (CTBcast's tail semantics: never blocks the sender).
    Tail,
    /// The sender may not overwrite what its reader has not consumed: it READs the
    /// reader's consumption counter when it runs out of room, and a send beyond it is
    /// refused ([`super::SendError::Full`]) until the reader catches up. For
    /// point-to-point streams that must not lose a message.
    Credit,
}

/// One ring: its name, geometry and mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSpec {
    /// Its name on its (sender, receiver) pair.
    pub stream: StreamId,
    /// How many frames it holds.
    pub slots: u32,
    /// The largest payload a frame carries.
    pub max_payload_bytes: u32,
    /// Overwrite or wait.
    pub mode: RingMode,
}

/// Slots are cache-line aligned so that two slots never share a line.
const SLOT_ALIGN: usize = 64;

impl RingSpec {
    /// Bytes of one slot.
    pub fn slot_bytes(&self) -> usize {
        frame_bytes(self.max_payload_bytes as usize).div_ceil(SLOT_ALIGN) * SLOT_ALIGN
    }

    /// Bytes of the whole ring.
    pub fn ring_bytes(&self) -> usize {
        self.slots as usize * self.slot_bytes()
    }
}

/// Every ring of a group of processes; see the [module documentation](self).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RingPlan {
    links: BTreeMap<(NodeId, NodeId), Vec<RingSpec>>,
}

/// Where one ring sits, seen from one end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The ring.
    pub spec: RingSpec,
    /// Its offset inside the receiver's slice for this sender (what the sender's WRITEs
    /// aim at, within its grant).
    pub in_slice: usize,
    /// Its consumption counter's offset inside the receiver's counter slice for this
    /// sender.
    pub counter_in_slice: usize,
}

impl RingPlan {
    /// An empty plan.
    pub fn new() -> RingPlan {
        RingPlan::default()
    }

    /// Adds a ring from `sender` to `receiver`.
    pub fn add(&mut self, sender: NodeId, receiver: NodeId, spec: RingSpec) -> Result<()> {
        if sender == receiver {
            return Err(Error::Config(format!("a ring from node {sender} to itself")));
        }
        if spec.slots == 0 || spec.max_payload_bytes == 0 {
            return Err(Error::Config(format!("ring {spec:?}: slots and payload must be positive")));
        }
        let rings = self.links.entry((sender, receiver)).or_default();
        if rings.iter().any(|ring| ring.stream == spec.stream) {
            return Err(Error::Config(format!(
                "stream {} from node {sender} to node {receiver} twice",
                spec.stream.0
            )));
        }
        rings.push(spec);
        Ok(())
    }

    /// The rings `sender` writes into `receiver`, placed.
    pub fn rings(&self, sender: NodeId, receiver: NodeId) -> Vec<Placed> {
        let mut in_slice = 0;
        let mut placed = Vec::new();
        for (position, &spec) in self.links.get(&(sender, receiver)).into_iter().flatten().enumerate() {
            placed.push(Placed { spec, in_slice, counter_in_slice: 8 * position });
            in_slice += spec.ring_bytes();
        }
        placed
    }

    /// Bytes of the rings `sender` writes into `receiver`.
    pub fn slice_bytes(&self, sender: NodeId, receiver: NodeId) -> usize {
        self.links.get(&(sender, receiver)).into_iter().flatten().map(RingSpec::ring_bytes).sum()
    }

    /// Bytes of `receiver`'s consumption counters for `sender`'s rings.
    pub fn counter_bytes(&self, sender: NodeId, receiver: NodeId) -> usize {
        8 * self.links.get(&(sender, receiver)).map_or(0, Vec::len)
    }

    /// Who writes rings into `receiver`, in id order.
    pub fn senders_to(&self, receiver: NodeId) -> Vec<NodeId> {
        self.links.keys().filter(|(_, to)| *to == receiver).map(|(from, _)| *from).collect()
    }

    /// Whom `sender` writes rings into, in id order.
    pub fn receivers_of(&self, sender: NodeId) -> Vec<NodeId> {
        self.links.keys().filter(|(from, _)| *from == sender).map(|(_, to)| *to).collect()
    }

    /// Bytes `node` registers: its inbound rings and counters, its outbound mirrors and
    /// credit words.
    pub fn memory_bytes(&self, node: NodeId) -> usize {
        let inbound: usize = self
            .senders_to(node)
            .into_iter()
            .map(|sender| self.slice_bytes(sender, node) + self.counter_bytes(sender, node))
            .sum();
        let outbound: usize = self
            .receivers_of(node)
            .into_iter()
            .map(|receiver| self.slice_bytes(node, receiver) + self.counter_bytes(node, receiver))
            .sum();
        inbound + outbound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> NodeId {
        NodeId::new(n).unwrap()
    }

    fn spec(stream: u16, slots: u32, payload: u32) -> RingSpec {
        RingSpec { stream: StreamId(stream), slots, max_payload_bytes: payload, mode: RingMode::Tail }
    }

    #[test]
    fn rings_of_a_pair_are_contiguous_and_slots_whole_cache_lines() {
        let mut plan = RingPlan::new();
        plan.add(id(0), id(1), spec(1, 4, 40)).unwrap(); // 24 + 40 = 64: one line
        plan.add(id(0), id(1), spec(2, 2, 41)).unwrap(); // 65: two lines
        plan.add(id(2), id(1), spec(1, 1, 1)).unwrap();
        let placed = plan.rings(id(0), id(1));
        assert_eq!(placed[0].spec.slot_bytes(), 64);
        assert_eq!(placed[1].spec.slot_bytes(), 128);
        assert_eq!((placed[0].in_slice, placed[1].in_slice), (0, 256));
        assert_eq!((placed[0].counter_in_slice, placed[1].counter_in_slice), (0, 8));
        assert_eq!(plan.slice_bytes(id(0), id(1)), 256 + 256);
        assert_eq!(plan.senders_to(id(1)), [id(0), id(2)]);
        assert_eq!(plan.receivers_of(id(0)), [id(1)]);
        assert!(plan.rings(id(1), id(0)).is_empty());
        assert_eq!(plan.memory_bytes(id(1)), 512 + 16 + 64 + 8);
    }

    #[test]
    fn a_ring_to_oneself_or_twice_or_empty_is_refused() {
        let mut plan = RingPlan::new();
        assert!(plan.add(id(0), id(0), spec(1, 4, 4)).is_err());
        plan.add(id(0), id(1), spec(1, 4, 4)).unwrap();
        assert!(plan.add(id(0), id(1), spec(1, 8, 8)).is_err());
        assert!(plan.add(id(0), id(1), spec(2, 0, 8)).is_err());
    }
}
