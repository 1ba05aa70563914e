//! A QP's receive queue in shared memory: a ring of RECV entries that the owner posts, the
//! connected peer takes and completes in place, and the owner's CQ poller consumes.
//!
//! Receive completions are written into the entry itself rather than into a ring shared by
//! many producers, so a peer killed in the middle of a SEND can never wedge anybody else's
//! completions: the worst it leaves is one entry marked taken, which the poller reports as
//! flushed once the QP is in error.
//!
//! Each entry's state word is tagged with the entry's absolute position, which only grows
//! (across resets too), so a late compare-and-swap by a peer working from stale positions
//! can never succeed on a reused entry.

use std::sync::Arc;

use usec_regions::{HugePages, Region, RegionOptions};

use crate::completion::{CompletionOpcode, Status};
use crate::error::Result;
use crate::primitive::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::work_request::Sge;

/// Under loom, entries' atomics are loom's tracked objects, which mapped bytes never were:
/// a loom build runs its models on modelled rings only.
#[inline(always)]
fn refuse_under_loom() {
    #[cfg(all(loom, test))]
    panic!("a loom build reaches only modelled rings");
}

/// Bytes before the first entry.
pub(crate) const RING_HEADER_BYTES: usize = 64;
const ENTRY_HEAD_BYTES: usize = 48;
const SGE_CELL_BYTES: usize = 16;

const POSTED: u64 = 1;
const TAKEN: u64 = 2;
const DONE: u64 = 3;

fn tag(position: u64, code: u64) -> u64 {
    (position << 3) | code
}

#[derive(Debug)]
#[repr(C)]
struct EntryHead {
    state: AtomicU64,
    wr_id: AtomicU64,
    sge_count: AtomicU32,
    status: AtomicU32,
    opcode: AtomicU32,
    byte_len: AtomicU32,
    imm: AtomicU32,
    has_imm: AtomicU32,
}

#[derive(Debug)]
#[repr(C)]
struct SgeCell {
    addr: AtomicU64,
    len: AtomicU32,
    lkey: AtomicU32,
}

/// Why a peer's description of its receive queue ring was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadRing {
    /// Positions are masked into the ring, so its entry count must be a power of two.
    #[error("receive queue capacity {capacity} is not a power of two")]
    Capacity {
        /// The entry count the owner's control block gave.
        capacity: u64,
    },
    /// Entries are whole cache lines holding at least an entry head.
    #[error(
        "receive queue entry stride {stride} is not a multiple of 64 bytes of at least {ENTRY_HEAD_BYTES}"
    )]
    Stride {
        /// The entry size the owner's control block gave.
        stride: usize,
    },
    /// The mapping is smaller than the entries the header claims.
    #[error("receive queue ring of {len} bytes cannot hold {capacity} entries of {stride} bytes")]
    TooShort {
        /// Bytes mapped.
        len: usize,
        /// Entries claimed.
        capacity: u64,
        /// Bytes per entry claimed.
        stride: usize,
    },
}

/// What the poller finds at a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryState {
    /// Posted, waiting for a message.
    Posted,
    /// A peer is filling it.
    Taken,
    /// Completed with these fields.
    Done { wr_id: u64, status: Status, opcode: CompletionOpcode, byte_len: u32, imm: Option<u32> },
    /// Not (or no longer) this position's entry.
    Empty,
}

/// One ring: the owner's memfd, or a peer's mapping of it.
#[derive(Debug, Clone)]
pub(crate) struct ReceiveQueue {
    ring: Ring,
    capacity: u64,
    stride: usize,
    max_sge: usize,
}

/// Where a ring's entries live.
#[derive(Debug, Clone)]
enum Ring {
    /// The owner's memfd, or a peer's mapping of it.
    Mapped(Arc<Region>),
    /// Entries built on the heap from loom's atomics, for the model tests (loom's atomics
    /// are tracked objects, not bytes that a mapping could hold).
    #[cfg(all(loom, test))]
    Modelled(Arc<ModelledEntries>),
}

/// The entries of a modelled ring: heads by slot, SGE cells by slot and index.
#[cfg(all(loom, test))]
#[derive(Debug)]
struct ModelledEntries {
    heads: Vec<EntryHead>,
    cells: Vec<SgeCell>,
}

impl ReceiveQueue {
    /// Entry size for `max_sge` SGEs, a whole number of cache lines.
    pub(crate) fn stride_for(max_sge: u32) -> usize {
        (ENTRY_HEAD_BYTES + SGE_CELL_BYTES * max_sge as usize).next_multiple_of(64)
    }

    /// A new ring with room for `max_wr` entries of `max_sge` SGEs.
    pub(crate) fn create(max_wr: u32, max_sge: u32) -> Result<ReceiveQueue> {
        let capacity = u64::from(max_wr.max(1)).next_power_of_two();
        let stride = ReceiveQueue::stride_for(max_sge);
        let mut options = RegionOptions::new(RING_HEADER_BYTES + capacity as usize * stride);
        options.huge_pages = HugePages::Never;
        options.name = "usec-soft-rq".into();
        let ring = Ring::Mapped(Arc::new(Region::with_options(&options)?));
        Ok(ReceiveQueue { ring, capacity, stride, max_sge: max_sge as usize })
    }

    /// A ring of `capacity` entries of `max_sge` SGEs on the heap, for loom's models.
    #[cfg(all(loom, test))]
    pub(crate) fn modelled(capacity: u64, max_sge: usize) -> ReceiveQueue {
        assert!(capacity.is_power_of_two());
        let head = || EntryHead {
            state: AtomicU64::new(0),
            wr_id: AtomicU64::new(0),
            sge_count: AtomicU32::new(0),
            status: AtomicU32::new(0),
            opcode: AtomicU32::new(0),
            byte_len: AtomicU32::new(0),
            imm: AtomicU32::new(0),
            has_imm: AtomicU32::new(0),
        };
        let cell = || SgeCell { addr: AtomicU64::new(0), len: AtomicU32::new(0), lkey: AtomicU32::new(0) };
        let entries = ModelledEntries {
            heads: (0..capacity).map(|_| head()).collect(),
            cells: (0..capacity as usize * max_sge).map(|_| cell()).collect(),
        };
        let stride = ReceiveQueue::stride_for(max_sge as u32);
        ReceiveQueue { ring: Ring::Modelled(Arc::new(entries)), capacity, stride, max_sge }
    }

    /// A peer's view of a ring, mapped from the owner's memfd. `capacity` and `stride` come
    /// from the owner's control block, which a faulty or hostile owner may have scribbled
    /// on: they are checked before any arithmetic, and a ring they do not fit is refused.
    pub(crate) fn mapped(ring: Arc<Region>, capacity: u64, stride: usize) -> Result<ReceiveQueue, BadRing> {
        if !capacity.is_power_of_two() {
            return Err(BadRing::Capacity { capacity });
        }
        if stride < ENTRY_HEAD_BYTES || stride % 64 != 0 {
            return Err(BadRing::Stride { stride });
        }
        let needed = usize::try_from(capacity)
            .ok()
            .and_then(|capacity| capacity.checked_mul(stride))
            .and_then(|entries| entries.checked_add(RING_HEADER_BYTES));
        if needed.is_none_or(|needed| needed > ring.len()) {
            return Err(BadRing::TooShort { len: ring.len(), capacity, stride });
        }
        let max_sge = (stride - ENTRY_HEAD_BYTES) / SGE_CELL_BYTES;
        Ok(ReceiveQueue { ring: Ring::Mapped(ring), capacity, stride, max_sge })
    }

    /// The ring's memory, which the owner shares with its peer.
    pub(crate) fn region(&self) -> &Arc<Region> {
        match &self.ring {
            Ring::Mapped(region) => region,
            #[cfg(all(loom, test))]
            Ring::Modelled(_) => panic!("a modelled ring has no memory to share"),
        }
    }

    /// Entries the ring holds (a power of two).
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    fn entry_offset(&self, position: u64) -> usize {
        RING_HEADER_BYTES + (position & (self.capacity - 1)) as usize * self.stride
    }

    fn head(&self, position: u64) -> &EntryHead {
        match &self.ring {
            Ring::Mapped(region) => {
                refuse_under_loom();
                let offset = self.entry_offset(position);
                // EntryHead is all atomics; the borrow lives no longer than `self`, which keeps the mapping.
                // SAFETY: the offset lies inside the ring (checked at creation or mapping), 64-byte aligned.
                unsafe { &*(region.as_ptr().add(offset) as *const EntryHead) }
            }
            #[cfg(all(loom, test))]
            Ring::Modelled(entries) => &entries.heads[(position & (self.capacity - 1)) as usize],
        }
    }

    fn sge_cell(&self, position: u64, index: usize) -> &SgeCell {
        assert!(index < self.max_sge, "SGE index {index} beyond the ring's {}", self.max_sge);
        match &self.ring {
            Ring::Mapped(region) => {
                refuse_under_loom();
                let offset = self.entry_offset(position) + ENTRY_HEAD_BYTES + index * SGE_CELL_BYTES;
                // Cells are 16-byte aligned and all atomics.
                // SAFETY: `index < max_sge` keeps the cell inside this entry's stride.
                unsafe { &*(region.as_ptr().add(offset) as *const SgeCell) }
            }
            #[cfg(all(loom, test))]
            Ring::Modelled(entries) => {
                &entries.cells[(position & (self.capacity - 1)) as usize * self.max_sge + index]
            }
        }
    }

    /// Owner: writes a RECV at `position` (which the owner knows to be free).
    pub(crate) fn post(&self, position: u64, wr_id: u64, sges: &[Sge]) {
        let head = self.head(position);
        head.wr_id.store(wr_id, Ordering::Relaxed);
        head.sge_count.store(sges.len() as u32, Ordering::Relaxed);
        for (index, sge) in sges.iter().enumerate() {
            let cell = self.sge_cell(position, index);
            cell.addr.store(sge.addr, Ordering::Relaxed);
            cell.len.store(sge.len, Ordering::Relaxed);
            cell.lkey.store(sge.lkey, Ordering::Relaxed);
        }
        head.state.store(tag(position, POSTED), Ordering::Release);
    }

    /// Peer: claims the next posted entry, the one the owner's `recv_taken` word points at,
    /// and moves `recv_taken` past it.
    pub(crate) fn take_next(&self, recv_taken: &AtomicU64) -> Option<u64> {
        let position = recv_taken.load(Ordering::Acquire);
        if !self.take(position) {
            return None;
        }
        // A CAS, not a store: if the owner reset the queue meanwhile, our stale position
        // must not overwrite its fresh one.
        let _ = recv_taken.compare_exchange(position, position + 1, Ordering::AcqRel, Ordering::Acquire);
        Some(position)
    }

    /// Peer (or owner, to flush): claims the posted entry at `position`.
    pub(crate) fn take(&self, position: u64) -> bool {
        self.head(position)
            .state
            .compare_exchange(
                tag(position, POSTED),
                tag(position, TAKEN),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// After a successful [`ReceiveQueue::take`]: the entry's SGEs, into `out`; returns how
    /// many (bounded by `out.len()` and the ring's SGE room, so a corrupt count is harmless).
    pub(crate) fn read_sges(&self, position: u64, out: &mut [Sge]) -> usize {
        let count =
            (self.head(position).sge_count.load(Ordering::Relaxed) as usize).min(out.len()).min(self.max_sge);
        for (index, slot) in out.iter_mut().enumerate().take(count) {
            let cell = self.sge_cell(position, index);
            *slot = Sge {
                addr: cell.addr.load(Ordering::Relaxed),
                len: cell.len.load(Ordering::Relaxed),
                lkey: cell.lkey.load(Ordering::Relaxed),
            };
        }
        count
    }

    /// The `wr_id` of the entry at `position` (meaningful once taken).
    pub(crate) fn wr_id(&self, position: u64) -> u64 {
        self.head(position).wr_id.load(Ordering::Relaxed)
    }

    /// After a successful take: publishes the completion. Returns false if the entry was
    /// reclaimed meanwhile (a reset), in which case nothing is reported.
    pub(crate) fn complete(
        &self,
        position: u64,
        status: Status,
        opcode: CompletionOpcode,
        byte_len: u32,
        imm: Option<u32>,
    ) -> bool {
        let head = self.head(position);
        head.status.store(status.code(), Ordering::Relaxed);
        head.opcode.store(opcode.code(), Ordering::Relaxed);
        head.byte_len.store(byte_len, Ordering::Relaxed);
        head.imm.store(imm.unwrap_or(0), Ordering::Relaxed);
        head.has_imm.store(u32::from(imm.is_some()), Ordering::Relaxed);
        head.state
            .compare_exchange(tag(position, TAKEN), tag(position, DONE), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Poller: what is at `position`.
    pub(crate) fn state(&self, position: u64) -> EntryState {
        let head = self.head(position);
        let state = head.state.load(Ordering::Acquire);
        if state == tag(position, POSTED) {
            EntryState::Posted
        } else if state == tag(position, TAKEN) {
            EntryState::Taken
        } else if state == tag(position, DONE) {
            EntryState::Done {
                wr_id: head.wr_id.load(Ordering::Relaxed),
                status: Status::from_code(head.status.load(Ordering::Relaxed)),
                opcode: CompletionOpcode::from_code(head.opcode.load(Ordering::Relaxed)),
                byte_len: head.byte_len.load(Ordering::Relaxed),
                imm: (head.has_imm.load(Ordering::Relaxed) != 0).then(|| head.imm.load(Ordering::Relaxed)),
            }
        } else {
            EntryState::Empty
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;

    use super::*;

    #[test]
    fn entry_life_cycle() {
        let queue = ReceiveQueue::create(3, 2).unwrap();
        assert_eq!(queue.capacity(), 4);
        let sges = [Sge { addr: 1, len: 2, lkey: 3 }, Sge { addr: 4, len: 5, lkey: 6 }];
        queue.post(5, 99, &sges);
        assert_eq!(queue.state(5), EntryState::Posted);
        assert_eq!(queue.state(1), EntryState::Empty, "same slot, other position");
        assert!(!queue.take(1));
        assert!(queue.take(5));
        assert!(!queue.take(5));
        let mut out = [Sge::default(); 4];
        assert_eq!(queue.read_sges(5, &mut out), 2);
        assert_eq!(&out[..2], &sges);
        assert!(queue.complete(5, Status::Success, CompletionOpcode::Recv, 7, Some(9)));
        assert_eq!(
            queue.state(5),
            EntryState::Done {
                wr_id: 99,
                status: Status::Success,
                opcode: CompletionOpcode::Recv,
                byte_len: 7,
                imm: Some(9)
            }
        );
        queue.post(9, 1, &sges[..1]);
        assert!(
            !queue.complete(5, Status::Success, CompletionOpcode::Recv, 0, None),
            "stale completion refused"
        );
        assert_eq!(queue.state(9), EntryState::Posted);
    }

    #[test]
    fn a_corrupt_stride_from_the_peer_is_refused() {
        let owner = ReceiveQueue::create(4, 1).unwrap();
        let ring = Arc::clone(owner.region());
        let mapped = |capacity, stride| ReceiveQueue::mapped(Arc::clone(&ring), capacity, stride).map(|_| ());
        // Below the entry head: computing the SGE room used to underflow before the check.
        assert_eq!(mapped(4, 16), Err(BadRing::Stride { stride: 16 }));
        assert_eq!(mapped(4, 0), Err(BadRing::Stride { stride: 0 }));
        assert_eq!(mapped(4, 100), Err(BadRing::Stride { stride: 100 }));
        assert_eq!(mapped(3, 64), Err(BadRing::Capacity { capacity: 3 }));
        assert_eq!(mapped(0, 64), Err(BadRing::Capacity { capacity: 0 }));
        let huge = usize::MAX - 63;
        assert_eq!(
            mapped(1 << 31, huge),
            Err(BadRing::TooShort { len: ring.len(), capacity: 1 << 31, stride: huge })
        );
        assert_eq!(mapped(4, owner.stride()), Ok(()));
    }

    /// u32s that favour the edges of the geometry checks.
    fn edgy_u32() -> impl Strategy<Value = u32> {
        prop_oneof![0u32..=256, (0u32..=64).prop_map(|below| u32::MAX - below), any::<u32>()]
    }

    fn seeded(cases: u32) -> ProptestConfig {
        let mut config = ProptestConfig::with_cases(cases);
        if config.rng_seed == RngSeed::Random {
            config.rng_seed = RngSeed::Fixed(0x5EED_0000_0004);
        }
        if cfg!(miri) {
            // Miri interprets every access, and its isolation refuses the file system that
            // failure persistence reads.
            config.cases = config.cases.min(8);
            config.failure_persistence = None;
        }
        eprintln!("proptest seed {} (set PROPTEST_RNG_SEED to change it)", config.rng_seed);
        config
    }

    proptest! {
        #![proptest_config(seeded(256))]

        /// Whatever a peer wrote into its ring header and its entries, a requester that maps
        /// the ring never panics, and every access it makes stays inside the mapping.
        #[test]
        fn corrupt_headers_and_entries_never_panic(
            capacity in prop_oneof![3 => (0u32..=6).prop_map(|shift| 1 << shift), 1 => edgy_u32()],
            stride in prop_oneof![
                3 => (0u32..=8).prop_map(|lines| lines * 64),
                1 => (0u32..=80).prop_map(|cells| cells * 16),
                1 => edgy_u32(),
            ],
            garbage in proptest::collection::vec(any::<u8>(), 0..512),
            positions in proptest::collection::vec(any::<u64>(), 1..8),
        ) {
            let owner = ReceiveQueue::create(8, 2).unwrap();
            let ring = Arc::clone(owner.region());
            // Corrupt entry heads: the first bytes of the ring, repeated over every entry.
            if !garbage.is_empty() {
                for offset in (0..ring.len()).step_by(garbage.len()) {
                    let room = garbage.len().min(ring.len() - offset);
                    ring.write(offset, &garbage[..room]).unwrap();
                }
            }
            let Ok(queue) = ReceiveQueue::mapped(Arc::clone(&ring), u64::from(capacity), stride as usize) else {
                return Ok(());
            };
            prop_assert!(RING_HEADER_BYTES + queue.capacity() as usize * queue.stride() <= ring.len());
            for &position in &positions {
                prop_assert!(queue.entry_offset(position) + queue.stride() <= ring.len());
                let _ = queue.state(position);
                let _ = queue.wr_id(position);
                let mut sges = [Sge::default(); 4];
                let count = queue.read_sges(position, &mut sges);
                prop_assert!(count <= sges.len());
                if queue.take(position) {
                    prop_assert!(queue.complete(position, Status::Success, CompletionOpcode::Recv, 1, None));
                }
            }
        }
    }
}
