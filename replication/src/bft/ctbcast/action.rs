//! What the roles ask their driver to do, what they tell it, and what it tells them back
//! about registers.

use usec_qp_pool::NodeId;

use super::proof::EquivocationProof;
use super::signature::REGISTER_VALUE_BYTES;

/// Work for the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Put `bytes` (an encoded [`Entry`](super::entry::Entry)) in front of `to`. On RDMA: WRITE
    /// them into the slot `index % tail` of the ring this sender owns in `to`'s memory.
    Send {
        /// The receiving process.
        to: NodeId,
        /// The entry.
        bytes: Vec<u8>,
    },
    /// Write our own SWMR register `slot` (of this stream) with `value` at `incarnation`;
    /// report completion with `handle_register_written(index)`. The role never has two
    /// writes to one slot in flight, and incarnations per slot only grow.
    RegisterWrite {
        /// The CTBcast index this is for (hand it back, like a work request id).
        index: u64,
        /// The register slot (`index % tail`).
        slot: u64,
        /// `index / tail + 1`.
        incarnation: u64,
        /// `{hash, signature}`.
        value: [u8; REGISTER_VALUE_BYTES],
    },
    /// Read `owner`'s register `slot` (of this stream); report with
    /// `handle_register_read(index, owner, result)`.
    RegisterRead {
        /// The CTBcast index this is for (hand it back).
        index: u64,
        /// Whose register.
        owner: NodeId,
        /// Which slot.
        slot: u64,
    },
}

/// What a register read found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterReadResult<'a> {
    /// The register's latest readable value: `None` if never written, else its incarnation
    /// and value. A register read linearizes: it sees any write that completed before the
    /// read began, and perhaps one in progress.
    Value(Option<(u64, &'a [u8])>),
    /// The register layer convicted the owner (both sub-slots torn again and again, or an
    /// integrity hash that cannot be from a correct writer).
    ByzantineOwner,
    /// No majority of memory nodes answered: nothing is known of the register. The
    /// receiver asks again after [`CtbConfig::fast_path_timeout_ns`](super::CtbConfig) and
    /// does not deliver meanwhile (counted in [`Stats::registers_unavailable`](super::Stats)).
    Unavailable,
}

/// Which way a message was delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryPath {
    /// Every other receiver echoed the same message.
    Fast,
    /// The signature verified and no other receiver's register conflicted.
    Slow,
}

/// Why a receiver gave up an index without delivering it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AbandonReason {
    /// The stream moved on by a whole tail past it (we saw a newer index in its ring slot
    /// or register slot): CTBcast only promises the last `tail` messages.
    OutOfTail,
    /// The broadcaster signed another message for it: see the proof event.
    Equivocation,
}

/// What a receiver tells its consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The message for `index`; every correct receiver that delivers `index` delivers the
    /// same bytes. Indices may be delivered out of order, and skipped (see
    /// [`Event::Abandoned`]).
    Delivered {
        /// Its index.
        index: u64,
        /// Its bytes.
        message: Vec<u8>,
        /// How it was delivered.
        path: DeliveryPath,
    },
    /// The broadcaster equivocated, and here is the proof.
    Equivocation(EquivocationProof),
    /// `index` will never be delivered here.
    Abandoned {
        /// Its index.
        index: u64,
        /// Why.
        reason: AbandonReason,
    },
}
