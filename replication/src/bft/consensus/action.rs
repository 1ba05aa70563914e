//! What a replica asks its driver to do, and what it tells its consumer.

use usec_qp_pool::NodeId;

use super::request::ClientId;
use super::wire::Batch;
use crate::bft::ctbcast;
use crate::bft::ctbcast::Hash;

/// Work for the driver, tagged with where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A CTBcast action of `stream` (the broadcaster's id: ours for our broadcaster,
    /// another replica's for our receiver of its stream). `Send` is a ring WRITE,
    /// `RegisterWrite`/`RegisterRead` go to that stream's SWMR registers; completions come
    /// back through [`super::Replica::handle_register_written`] and
    /// [`super::Replica::handle_register_read`] with the same `stream`.
    Ctbcast {
        /// Whose stream.
        stream: NodeId,
        /// What to do.
        action: ctbcast::Action,
    },
    /// A point-to-point message to another replica (a signature share).
    ToReplica {
        /// The replica.
        to: NodeId,
        /// An encoded [`super::DirectMessage`].
        bytes: Vec<u8>,
    },
    /// A point-to-point message to a client (a signed reply).
    ToClient {
        /// The client.
        client: ClientId,
        /// An encoded [`super::DirectMessage`].
        bytes: Vec<u8>,
    },
}

/// How a slot was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecisionPath {
    /// Every replica promised the batch.
    Fast,
    /// f + 1 replicas committed it with prepare certificates.
    Slow,
}

/// What happened, for the consumer (and the simulation's checker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `slot` holds `batch` for good.
    Decided {
        /// The slot.
        slot: u64,
        /// Its batch.
        batch: Batch,
        /// How.
        path: DecisionPath,
    },
    /// A second, different batch met the decision rule for a decided slot: only possible
    /// with more than f Byzantine replicas. The first decision stands.
    ConflictingDecision {
        /// The slot.
        slot: u64,
        /// The batch that met the rule second.
        batch: Batch,
    },
    /// A request was applied to the state machine.
    Executed {
        /// Its slot.
        slot: u64,
        /// Its client.
        client: ClientId,
        /// Its number.
        number: u64,
        /// Its operation.
        operation: Vec<u8>,
        /// Its result.
        result: Vec<u8>,
    },
    /// A checkpoint became stable: f + 1 replicas reported this digest for this slot.
    CheckpointStable {
        /// The slot.
        slot: u64,
        /// The history digest.
        digest: Hash,
    },
    /// This replica was too far behind for the decided batches and installed another
    /// replica's certified state at checkpoint `slot` instead: no `Executed` event comes
    /// for the slots up to it.
    StateInstalled {
        /// The checkpoint's slot, now the last executed one.
        slot: u64,
        /// The history digest after it.
        history: Hash,
    },
    /// This replica sealed its view and moves to `view`.
    ViewChangeStarted {
        /// The view it moves to.
        view: u64,
    },
    /// This replica entered `view` (its new view checked).
    ViewEntered {
        /// The view.
        view: u64,
    },
}
