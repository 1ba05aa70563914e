//! The consensus group's parameters.

use usec_qp_pool::NodeId;

use super::wire::Limits;
use crate::bft::ctbcast::CtbConfig;
use crate::error::{Error, Result};

/// A group of `2f + 1` replicas and how they run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsensusConfig {
    /// Every replica, sorted (the leader of view `v` is `replicas[v % n]`).
    pub replicas: Vec<NodeId>,
    /// Slots that may be in flight past the last stable checkpoint (uBFT: 256). A
    /// checkpoint is taken every `window / 2` slots.
    pub window: u64,
    /// Most requests in one prepare (uBFT: 16).
    pub batch: usize,
    /// Longest operation or result.
    pub max_operation_bytes: usize,
    /// How long a promised slot waits for every replica's promise before the replica
    /// sends its signature share (the slow path); also how often shares are sent again
    /// while the slot is undecided.
    pub slow_path_timeout_ns: u64,
    /// How long a request may wait unexecuted before the replica gives up on the view;
    /// also the first wait for a new view, doubled on every further attempt.
    pub view_change_timeout_ns: u64,
    /// Largest state (the application's snapshot and the reply table) a replica takes in
    /// a state transfer: a bigger one is refused, so a Byzantine helper cannot make it
    /// allocate without bound.
    pub max_state_bytes: usize,
    /// The CTBcast streams' settings (broadcaster and receivers are filled in per stream).
    pub ctbcast: CtbConfig,
}

impl Default for ConsensusConfig {
    /// Replicas 0, 1, 2; uBFT's window 256, batch 16, tail 128; states up to 64 MiB.
    fn default() -> ConsensusConfig {
        ConsensusConfig {
            replicas: (0..3).map(|id| NodeId::new(id).expect("small id")).collect(),
            window: 256,
            batch: 16,
            max_operation_bytes: 4 << 10,
            slow_path_timeout_ns: 200_000,
            view_change_timeout_ns: 2_000_000,
            max_state_bytes: 64 << 20,
            ctbcast: CtbConfig::default(),
        }
    }
}

impl ConsensusConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<()> {
        let fail = |why: String| Err(Error::Config(format!("bft consensus: {why}")));
        let n = self.replicas.len();
        if n < 3 || n % 2 == 0 {
            return fail(format!("{n} replicas: need 2f + 1 with f >= 1"));
        }
        if !self.replicas.windows(2).all(|pair| pair[0] < pair[1]) {
            return fail("replicas must be sorted and distinct".into());
        }
        if self.window < 2 || self.window % 2 != 0 {
            return fail(format!("window {} must be even and at least 2", self.window));
        }
        if self.batch == 0 || self.max_operation_bytes == 0 {
            return fail("batch and max_operation_bytes must be positive".into());
        }
        if self.slow_path_timeout_ns == 0 || self.view_change_timeout_ns == 0 {
            return fail("timeouts must be positive".into());
        }
        // A prepare of a full batch of the longest operations must fit a CTBcast message.
        let request_bytes = 4 + 8 + 4 + self.max_operation_bytes + 64;
        let needed = 1 + 8 + 8 + 4 + self.batch * request_bytes + 4 + n * 66;
        if needed > self.ctbcast.max_message_bytes {
            return fail(format!(
                "a full batch takes {needed} bytes, more than ctbcast's max_message_bytes {}",
                self.ctbcast.max_message_bytes
            ));
        }
        Ok(())
    }

    /// f, the Byzantine replicas tolerated.
    pub fn f(&self) -> usize {
        self.replicas.len() / 2
    }

    /// The leader of `view`.
    pub fn leader(&self, view: u64) -> NodeId {
        self.replicas[(view % self.replicas.len() as u64) as usize]
    }

    /// Slots between checkpoints.
    pub fn checkpoint_interval(&self) -> u64 {
        self.window / 2
    }

    /// The stream `broadcaster` CTBcasts on: every other replica receives it.
    pub fn stream(&self, broadcaster: NodeId) -> CtbConfig {
        CtbConfig {
            broadcaster,
            receivers: self.replicas.iter().copied().filter(|&r| r != broadcaster).collect(),
            ..self.ctbcast.clone()
        }
    }

    /// What decoding allows.
    pub fn limits(&self) -> Limits {
        Limits {
            batch: self.batch,
            operation_bytes: self.max_operation_bytes,
            replicas: self.replicas.len(),
            slots: 2 * self.window as usize,
            state_bytes: self.max_state_bytes,
        }
    }
}
