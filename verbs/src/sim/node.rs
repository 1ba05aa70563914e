//! Nodes: one device context each, holding its memory registrations, CQs, QPs and
//! asynchronous events.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::event::AsyncEvent;
use crate::sim::completion_queue::CompletionQueueState;
use crate::sim::memory::MemoryTable;
use crate::sim::queue_pair::QueuePairState;

/// A node of a simulated fabric: what one [`Context`](crate::Context) opened on it
/// drives, as one process with one NIC would.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    /// The node's index in its fabric (0 for the first node opened, and so on).
    pub fn index(self) -> u32 {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node{}", self.0)
    }
}

/// Everything the fabric knows of one node.
#[derive(Debug, Default)]
pub(crate) struct Node {
    pub(crate) crashed: bool,
    pub(crate) paused: bool,
    pub(crate) events: VecDeque<AsyncEvent>,
    pub(crate) next_pd: u32,
    pub(crate) memory: MemoryTable,
    pub(crate) cqs: BTreeMap<u32, CompletionQueueState>,
    pub(crate) next_cq: u32,
    pub(crate) qps: BTreeMap<u32, QueuePairState>,
    /// QP numbers and keys are never reused within a node, so a stale one always misses.
    used_qp_nums: BTreeSet<u32>,
    used_keys: BTreeSet<u32>,
}

impl Node {
    /// A random, never used, 24-bit QP number (0 and 1 are special on InfiniBand).
    pub(crate) fn fresh_qp_num(&mut self, rng: &mut ChaCha8Rng) -> u32 {
        loop {
            let qp_num = rng.gen_range(2..1u32 << 24);
            if self.used_qp_nums.insert(qp_num) {
                return qp_num;
            }
        }
    }

    /// A random, never used, non-zero memory key.
    pub(crate) fn fresh_key(&mut self, rng: &mut ChaCha8Rng) -> u32 {
        loop {
            let key = rng.gen_range(1..=u32::MAX);
            if self.used_keys.insert(key) {
                return key;
            }
        }
    }

    /// The node crashed: its QPs, memory, completions and events are gone. Memory
    /// registrations release their regions here.
    pub(crate) fn vanish(&mut self) {
        self.crashed = true;
        self.paused = false;
        self.events.clear();
        self.memory.clear();
        self.cqs.clear();
        self.qps.clear();
    }
}
