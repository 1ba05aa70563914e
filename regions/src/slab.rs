//! [`Slab`]: fixed-size slots carved out of a slice of a region, allocated and freed one
//! at a time in O(1).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::align::{check_alignment, padding_to_align};
use crate::error::{Error, Result};
use crate::slice::Slice;

/// Gives every slab its own id, so a slot handed to the wrong slab is caught.
static NEXT_SLAB_ID: AtomicU64 = AtomicU64::new(1);

/// A handle to one allocated slot of a [`Slab`]: plain data, cheap to copy and to keep in
/// a table keyed by work request id.
///
/// Copies make a double free possible, so the slab checks every handle: a slot carries its
/// slab's id and the generation of its allocation, and [`Slab::free`] and [`Slab::slice`]
/// refuse handles of another slab, of a freed slot, or of an earlier allocation of a slot
/// since reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    slab_id: u64,
    index: usize,
    generation: u32,
}

impl Slot {
    /// Position of the slot in its slab: slot `i` starts `i` strides after the first.
    pub fn index(&self) -> usize {
        self.index
    }
}

/// Equal-size, equally aligned slots over one area, e.g. send buffers or receive buffers of
/// a queue pair.
///
/// `alloc` and `free` are O(1): free slots are a stack of indices (the most recently freed
/// slot is reused first, while it is still in cache). A slot's bytes are reached through
/// [`Slab::slice`], whose result borrows the slab, so no slice can outlive a `free`:
///
/// ```compile_fail
/// # use usec_regions::{Region, Slab};
/// let region = Region::new(4096)?;
/// let mut slab = Slab::new(region.whole(), 64, 64)?;
/// let slot = slab.alloc().expect("a fresh slab has room");
/// let buffer = slab.slice(slot)?;
/// slab.free(slot)?;
/// buffer.write(0, b"freed")?; // error: `slab` is borrowed by `buffer`
/// # Ok::<(), usec_regions::Error>(())
/// ```
pub struct Slab<'r> {
    area: Slice<'r>,
    id: u64,
    first_slot_offset: usize,
    slot_len: usize,
    slot_stride: usize,
    /// Per slot: odd while allocated, even while free; bumped by every alloc and free, so
    /// a handle's generation matches only while its own allocation lasts (until the
    /// counter wraps, after 2^31 reuses of one slot).
    generations: Vec<u32>,
    free_indices: Vec<usize>,
}

impl fmt::Debug for Slab<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slab")
            .field("id", &self.id)
            .field("area", &self.area)
            .field("slot_len", &self.slot_len)
            .field("slot_stride", &self.slot_stride)
            .field("capacity", &self.capacity())
            .field("used", &self.used())
            .finish()
    }
}

impl<'r> Slab<'r> {
    /// As many slots of `slot_len` bytes, each starting at an address that is a multiple of
    /// `slot_align` (a power of two), as fit in `area`. An area too small for one slot
    /// gives a slab of capacity 0.
    pub fn new(area: Slice<'r>, slot_len: usize, slot_align: usize) -> Result<Slab<'r>> {
        check_alignment(slot_align)?;
        if slot_len == 0 {
            return Err(Error::EmptySlot);
        }
        let slot_stride = slot_len.checked_next_multiple_of(slot_align).ok_or(Error::OutOfBounds {
            offset: 0,
            len: slot_len as u64,
            region_len: area.len() as u64,
        })?;
        let first_slot_offset = padding_to_align(area.addr(), slot_align);
        let capacity = area.len().saturating_sub(first_slot_offset) / slot_stride;
        Ok(Slab {
            area,
            id: NEXT_SLAB_ID.fetch_add(1, Ordering::Relaxed),
            first_slot_offset,
            slot_len,
            slot_stride,
            generations: vec![0; capacity],
            // Reversed, so that the stack pops slot 0 first and a fresh slab fills in
            // address order.
            free_indices: (0..capacity).rev().collect(),
        })
    }

    /// A free slot, or `None` when all are in use.
    pub fn alloc(&mut self) -> Option<Slot> {
        let index = self.free_indices.pop()?;
        let generation = &mut self.generations[index];
        assert!(*generation % 2 == 0, "slot {index} on the free stack is allocated");
        *generation = generation.wrapping_add(1);
        Some(Slot { slab_id: self.id, index, generation: *generation })
    }

    /// Returns `slot` to the slab. Fails, changing nothing, for a slot of another slab
    /// ([`Error::ForeignSlot`]) or one that is not allocated under this handle (a double
    /// free or a stale handle: [`Error::SlotNotAllocated`]).
    pub fn free(&mut self, slot: Slot) -> Result<()> {
        self.check_live(slot)?;
        let generation = &mut self.generations[slot.index];
        *generation = generation.wrapping_add(1);
        self.free_indices.push(slot.index);
        assert!(self.free_indices.len() <= self.capacity(), "more slots free than exist");
        Ok(())
    }

    /// The bytes of an allocated slot.
    pub fn slice(&self, slot: Slot) -> Result<Slice<'_>> {
        self.check_live(slot)?;
        let offset = self.first_slot_offset + slot.index * self.slot_stride;
        Ok(self.area.sub(offset, self.slot_len).expect("every slot lies inside the area"))
    }

    fn check_live(&self, slot: Slot) -> Result<()> {
        if slot.slab_id != self.id {
            return Err(Error::ForeignSlot { slot_slab_id: slot.slab_id, slab_id: self.id });
        }
        // Only this slab makes handles with its id, and only for its own indices.
        assert!(slot.index < self.capacity(), "slot {} of a slab of {}", slot.index, self.capacity());
        if self.generations[slot.index] != slot.generation {
            return Err(Error::SlotNotAllocated { index: slot.index });
        }
        Ok(())
    }

    /// This slab's id (as named in [`Error::ForeignSlot`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The area the slots are carved from.
    pub fn area(&self) -> Slice<'r> {
        self.area
    }

    /// Bytes per slot, as asked for.
    pub fn slot_len(&self) -> usize {
        self.slot_len
    }

    /// Bytes from one slot's start to the next's: the slot length rounded up to the
    /// alignment.
    pub fn slot_stride(&self) -> usize {
        self.slot_stride
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.generations.len()
    }

    /// Slots allocated now.
    pub fn used(&self) -> usize {
        self.capacity() - self.free_indices.len()
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.free_indices.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::small_region;

    #[test]
    fn fills_in_address_order_then_runs_out() {
        let region = small_region(4096);
        let mut slab = Slab::new(region.slice(0, 1000).unwrap(), 100, 64).unwrap();
        assert_eq!((slab.slot_stride(), slab.capacity()), (128, 7));
        let slots: Vec<Slot> = std::iter::from_fn(|| slab.alloc()).collect();
        assert_eq!(slots.len(), 7);
        for (i, slot) in slots.iter().enumerate() {
            assert_eq!(slot.index(), i);
            let slice = slab.slice(*slot).unwrap();
            assert_eq!((slice.offset(), slice.len()), (i * 128, 100));
        }
        assert_eq!((slab.used(), slab.available()), (7, 0));
        slab.free(slots[3]).unwrap();
        assert_eq!(slab.alloc().map(|slot| slot.index()), Some(3));
    }

    #[test]
    fn double_free_and_stale_handles_are_refused() {
        let region = small_region(4096);
        let mut slab = Slab::new(region.whole(), 64, 8).unwrap();
        let slot = slab.alloc().unwrap();
        slab.free(slot).unwrap();
        let err = slab.free(slot).unwrap_err();
        assert!(matches!(err, Error::SlotNotAllocated { index: 0 }), "{err}");
        assert!(slab.slice(slot).is_err());
        let reused = slab.alloc().unwrap();
        assert_eq!(reused.index(), slot.index());
        assert!(slab.free(slot).is_err(), "an old handle must not free the new allocation");
        assert_eq!(slab.used(), 1);
        slab.free(reused).unwrap();
    }

    #[test]
    fn foreign_slots_are_refused() {
        let region = small_region(4096);
        let mut first = Slab::new(region.slice(0, 2048).unwrap(), 64, 8).unwrap();
        let mut second = Slab::new(region.slice(2048, 2048).unwrap(), 64, 8).unwrap();
        let slot = first.alloc().unwrap();
        let err = second.free(slot).unwrap_err();
        assert!(matches!(err, Error::ForeignSlot { .. }), "{err}");
        assert!(second.slice(slot).is_err());
        assert_eq!(second.used(), 0);
        first.free(slot).unwrap();
    }

    #[test]
    fn layout_is_checked() {
        let region = small_region(4096);
        assert!(matches!(Slab::new(region.whole(), 0, 8), Err(Error::EmptySlot)));
        assert!(matches!(Slab::new(region.whole(), 8, 3), Err(Error::InvalidAlignment { align: 3 })));
        assert!(Slab::new(region.whole(), usize::MAX, 8).is_err());
        let mut empty = Slab::new(region.slice(1, 100).unwrap(), 64, 64).unwrap();
        assert_eq!(empty.capacity(), 0, "aligning to 64 leaves 37 bytes");
        assert_eq!(empty.alloc(), None);
        let offset = Slab::new(region.slice(1, 4000).unwrap(), 8, 16).unwrap();
        assert_eq!(offset.capacity(), (4000 - 15) / 16);
    }

    #[test]
    fn slot_bytes_are_bounded_by_the_slot() {
        let region = small_region(4096);
        let mut slab = Slab::new(region.whole(), 24, 8).unwrap();
        let slot = slab.alloc().unwrap();
        let slice = slab.slice(slot).unwrap();
        slice.write(0, &[9; 24]).unwrap();
        assert!(slice.write(1, &[9; 24]).is_err());
        assert_eq!(slice.atomic_u64(16).unwrap().load(Ordering::Relaxed), u64::from_ne_bytes([9; 8]));
    }
}
