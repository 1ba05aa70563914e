//! The shared-memory layout of a soft node: the control block every peer maps.
//!
//! A control block is a file in the fabric directory holding the node's header and its
//! MR, QP and CQ tables. Every field is an atomic, so other processes may read and write
//! it at any time without undefined behaviour; a zero-filled file is a valid empty block.
//!
//! Who writes what:
//! - header, MR slots, CQ slots, and the `owner` line of a QP slot: the owning node;
//! - the `outbound` line of a QP slot: the owning node, as initiator (its in-flight marker,
//!   which responders read to fence permission changes, and revoke with a compare-and-swap
//!   when they cannot wait for it);
//! - the `inbound` line of a QP slot: the connected peer (receive-queue progress), and the
//!   owner's CQ poller.
//! - CQ doorbells: peers that complete a RECV.

use crate::access::AccessFlags;
use crate::primitive::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::qp::QpState;

/// "usecSOFT" in ASCII.
pub(crate) const MAGIC: u64 = 0x7573_6563_534f_4654;
/// Bumped on any layout change: nodes of different versions refuse each other.
pub(crate) const LAYOUT_VERSION: u32 = 2;

pub(crate) const MAX_MR: usize = 4096;
pub(crate) const MAX_QP: usize = 4096;
pub(crate) const MAX_CQ: usize = 1024;

/// Slot index bits in keys and QP numbers; the bits above carry a generation.
pub(crate) const SLOT_BITS: u32 = 12;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;
/// QP numbers are 24 bits, as on the wire.
const QPN_BITS: u32 = 24;

/// The node header.
#[repr(C, align(64))]
pub(crate) struct Header {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub pid: AtomicU32,
    pub node: AtomicU32,
    /// The death word (`death_word.rs`): `FUTEX_OWNER_DIED` once the owner's process
    /// started dying, set by the kernel; zero or a thread id until then. It was a reserved
    /// zero word, so the layout version stays: a node that does not arm it is never seen
    /// dying this way (its pidfd still reports its death), and one that ignores it misses
    /// nothing. (A version bump would also make every sweeper of the other version delete
    /// this version's control blocks from any fabric on the machine: see `fabric.rs`.)
    pub death: AtomicU32,
    pub nonce: AtomicU64,
    /// The owner's start time (clock ticks since boot, from /proc): with the pid, it
    /// identifies the owner process even after pid reuse.
    pub start_time: AtomicU64,
    pub fabric: AtomicU64,
    /// Non-zero once the owner closed the node cleanly.
    pub closed: AtomicU64,
}

/// One memory registration.
#[repr(C, align(64))]
pub(crate) struct MrSlot {
    /// [`SlotWord`]: generation, access, valid.
    pub word: AtomicU64,
    pub pd: AtomicU32,
    /// The owner's descriptor of the memfd behind the MR (for /proc/<pid>/fd/<fd>).
    pub fd: AtomicU32,
    /// First registered address, in the owner's address space.
    pub addr: AtomicU64,
    pub len: AtomicU64,
    /// Where the registered range starts within the memfd.
    pub file_offset: AtomicU64,
    /// Length of the memfd (what a peer maps).
    pub file_len: AtomicU64,
    /// Where the memory is: even while `fd` names the file that holds it, odd while the
    /// owner moves it to a fresh file (see `fence.rs`). Bumped by two per move.
    pub epoch: AtomicU64,
}

/// The owner-written half of a QP slot: what a requester checks on every operation.
#[repr(C, align(64))]
pub(crate) struct QpOwnerLine {
    /// [`SlotWord`]: generation, state, access, valid.
    pub word: AtomicU64,
    pub pd: AtomicU32,
    /// The QP number and node nonce of the connected peer QP (valid from RTR on).
    pub peer_qpn: AtomicU32,
    pub peer_nonce: AtomicU64,
    /// Receive queue ring: the owner's memfd, its entry count and entry size.
    pub rq_fd: AtomicU32,
    pub rq_capacity: AtomicU32,
    pub rq_stride: AtomicU32,
    /// Index of the CQ slot whose doorbell a completed RECV rings.
    pub recv_cq: AtomicU32,
    pub min_rnr_timer: AtomicU32,
    /// Bumped each time the owner replaces its receive queue ring (at reset).
    pub rq_generation: AtomicU32,
    /// [`AsyncFlag`]s raised by the peer, reported by the owner's `poll_event`.
    pub async_flags: AtomicU32,
}

/// Written by the owner as requester: its in-flight marker (odd while an operation of this
/// QP is touching the peer's memory; it also says what the operation may touch), which the
/// peer may revoke (see `fence.rs`).
#[repr(C, align(64))]
pub(crate) struct QpOutboundLine {
    pub in_flight: AtomicU64,
    /// Send work requests retired by the owner's CQ poller (for queue-full accounting).
    pub send_retired: AtomicU64,
}

/// Written by the connected peer: how many RECVs it has taken.
#[repr(C, align(64))]
pub(crate) struct QpInboundLine {
    pub recv_taken: AtomicU64,
}

/// Async events a peer raises on a QP it found at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum AsyncFlag {
    /// The peer's request violated this QP's or an MR's rights (IBV_EVENT_QP_ACCESS_ERR).
    AccessError = 1,
    /// The peer's request was invalid for this QP (IBV_EVENT_QP_REQ_ERR).
    RequestError = 2,
}

/// One queue pair.
#[repr(C)]
pub(crate) struct QpSlot {
    pub owner: QpOwnerLine,
    pub outbound: QpOutboundLine,
    pub inbound: QpInboundLine,
}

/// One completion queue: only its doorbell is shared.
#[repr(C, align(64))]
pub(crate) struct CqSlot {
    /// Bumped by peers after they complete a RECV whose QP reports to this CQ, so an
    /// empty poll need not scan every receive queue.
    pub doorbell: AtomicU64,
}

/// The whole control block.
#[repr(C)]
pub(crate) struct ControlBlock {
    pub header: Header,
    pub mrs: [MrSlot; MAX_MR],
    pub qps: [QpSlot; MAX_QP],
    pub cqs: [CqSlot; MAX_CQ],
}

/// Bytes of a control block file.
pub(crate) const CONTROL_BLOCK_BYTES: usize = std::mem::size_of::<ControlBlock>();

/// The packed state word of an MR or QP slot:
/// bits 63..32 generation, 23..16 QP state code, 15..8 access flags, bit 0 valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotWord {
    pub generation: u32,
    pub state: QpState,
    pub access: AccessFlags,
    pub valid: bool,
}

/// The access-flag bits of a packed [`SlotWord`].
pub(crate) const ACCESS_BITS: u64 = 0xff << 8;

impl SlotWord {
    pub(crate) fn pack(self) -> u64 {
        (u64::from(self.generation) << 32)
            | (u64::from(self.state.code()) << 16)
            | (u64::from(self.access.bits() as u8) << 8)
            | u64::from(self.valid)
    }

    pub(crate) fn unpack(word: u64) -> SlotWord {
        SlotWord {
            generation: (word >> 32) as u32,
            state: QpState::from_code((word >> 16) as u8),
            access: AccessFlags::from_bits_truncate(u32::from((word >> 8) as u8)),
            valid: word & 1 == 1,
        }
    }

    pub(crate) fn load(word: &AtomicU64, order: Ordering) -> SlotWord {
        SlotWord::unpack(word.load(order))
    }
}

/// An MR key: slot index in the low bits, generation above.
pub(crate) fn key_of(slot: usize, generation: u32) -> u32 {
    (generation << SLOT_BITS) | slot as u32
}

/// Splits a key into slot index and the generation bits it carries.
pub(crate) fn split_key(key: u32) -> (usize, u32) {
    ((key & SLOT_MASK) as usize, key >> SLOT_BITS)
}

/// Whether a full generation matches the bits a key or QP number carries.
pub(crate) fn generation_matches(full: u32, carried: u32, carried_bits: u32) -> bool {
    let mask = if carried_bits >= 32 { u32::MAX } else { (1 << carried_bits) - 1 };
    full & mask == carried & mask
}

/// Bits of generation a key carries.
pub(crate) const KEY_GENERATION_BITS: u32 = 32 - SLOT_BITS;
/// Bits of generation a QP number carries.
pub(crate) const QPN_GENERATION_BITS: u32 = QPN_BITS - SLOT_BITS;

/// A QP number: slot index in the low bits, generation bits above, 24 bits in all.
pub(crate) fn qpn_of(slot: usize, generation: u32) -> u32 {
    ((generation << SLOT_BITS) | slot as u32) & ((1 << QPN_BITS) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_cache_line_sized() {
        assert_eq!(std::mem::size_of::<MrSlot>(), 64);
        assert_eq!(std::mem::size_of::<QpSlot>(), 192);
        assert_eq!(std::mem::size_of::<CqSlot>(), 64);
        assert_eq!(std::mem::size_of::<Header>(), 64);
        assert_eq!(CONTROL_BLOCK_BYTES, 64 + 64 * MAX_MR + 192 * MAX_QP + 64 * MAX_CQ);
    }

    #[test]
    fn words_and_keys_round_trip() {
        let word = SlotWord {
            generation: 0xdead_beef,
            state: QpState::Rts,
            access: AccessFlags::all(),
            valid: true,
        };
        assert_eq!(SlotWord::unpack(word.pack()), word);
        let zero = SlotWord::unpack(0);
        assert!(!zero.valid);
        assert_eq!(zero.state, QpState::Reset);
        let key = key_of(4095, 77);
        assert_eq!(split_key(key), (4095, 77));
        assert!(generation_matches(77, split_key(key).1, KEY_GENERATION_BITS));
        let qpn = qpn_of(5, 0xfff);
        assert!(qpn < 1 << 24);
        assert_eq!(split_key(qpn).0, 5);
        assert!(generation_matches(0x1fff, split_key(qpn).1, QPN_GENERATION_BITS));
    }
}
