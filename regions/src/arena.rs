//! [`Arena`]: a bump allocator carving aligned slices of any size out of a slice of a
//! region, all released together by [`Arena::reset`].

use std::cell::Cell;
use std::fmt;

use crate::align::{check_alignment, padding_to_align};
use crate::error::{Error, Result};
use crate::slice::Slice;

/// Carves variable-size, aligned [`Slice`]s out of one area, front to back.
///
/// Allocation is a bounds check and an addition. Nothing is freed one by one: the area is
/// set up once (queues, buffers, counters of a connection) and [`Arena::reset`] hands all
/// of it back at once. Slices borrow the arena and `reset` takes it mutably, so the compiler
/// rejects any slice that would outlive a reset:
///
/// ```compile_fail
/// # use usec_regions::{Arena, Region};
/// let region = Region::new(4096)?;
/// let mut arena = Arena::new(region.whole());
/// let buffer = arena.alloc(64, 8)?;
/// arena.reset();
/// buffer.write(0, b"stale")?; // error: `arena` is borrowed by `buffer`
/// # Ok::<(), usec_regions::Error>(())
/// ```
///
/// The bump offset is a `Cell`, so an arena serves one thread (it is `Send`, not `Sync`);
/// the slices it hands out may go to any thread.
pub struct Arena<'r> {
    area: Slice<'r>,
    next_offset: Cell<usize>,
}

impl fmt::Debug for Arena<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena").field("area", &self.area).field("used", &self.used()).finish()
    }
}

impl<'r> Arena<'r> {
    /// An empty arena over `area` (e.g. [`Region::whole`](crate::Region::whole)).
    pub fn new(area: Slice<'r>) -> Arena<'r> {
        Arena { area, next_offset: Cell::new(0) }
    }

    /// `len` bytes whose address is a multiple of `align` (a power of two). Fails with
    /// [`Error::ArenaExhausted`] when they do not fit in what is left, and then allocates
    /// nothing. `len == 0` gives an empty slice at an aligned address.
    pub fn alloc(&self, len: usize, align: usize) -> Result<Slice<'_>> {
        check_alignment(align)?;
        let next_offset = self.next_offset.get();
        let remaining = self.area.len() - next_offset;
        let padding = padding_to_align(self.area.addr() + next_offset as u64, align);
        let fits = padding.checked_add(len).is_some_and(|needed| needed <= remaining);
        if !fits {
            return Err(Error::ArenaExhausted { requested: len, align, remaining });
        }
        let start = next_offset + padding;
        self.next_offset.set(start + len);
        Ok(self.area.sub(start, len).expect("checked against the remaining bytes"))
    }

    /// Releases every slice at once. Taking `&mut self` proves none is still borrowed.
    /// The bytes keep their contents; whoever allocates them next overwrites them.
    pub fn reset(&mut self) {
        self.next_offset.set(0);
    }

    /// The area the arena carves.
    pub fn area(&self) -> Slice<'r> {
        self.area
    }

    /// Bytes of the area, allocated or not.
    pub fn capacity(&self) -> usize {
        self.area.len()
    }

    /// Bytes handed out so far, alignment padding included.
    pub fn used(&self) -> usize {
        self.next_offset.get()
    }

    /// Bytes not handed out yet (an aligned allocation may get fewer).
    pub fn remaining(&self) -> usize {
        self.area.len() - self.next_offset.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::small_region;

    #[test]
    fn allocations_are_aligned_and_disjoint() {
        let region = small_region(4096);
        let arena = Arena::new(region.whole());
        let a = arena.alloc(3, 1).unwrap();
        let b = arena.alloc(16, 64).unwrap();
        let c = arena.alloc(0, 8).unwrap();
        assert_eq!((a.offset(), a.len()), (0, 3));
        assert_eq!((b.offset(), b.len()), (64, 16));
        assert_eq!(b.addr() % 64, 0);
        assert_eq!(c.offset(), 80);
        assert_eq!(arena.used(), 80);
        assert_eq!(arena.remaining(), 4096 - 80);
        b.write(0, &[1; 16]).unwrap();
        assert!(b.write(1, &[1; 16]).is_err());
    }

    #[test]
    fn exhaustion_reports_what_was_asked_and_what_is_left() {
        let region = small_region(4096);
        let arena = Arena::new(region.slice(0, 100).unwrap());
        arena.alloc(90, 1).unwrap();
        let err = arena.alloc(8, 8).unwrap_err();
        assert!(
            matches!(err, Error::ArenaExhausted { requested: 8, align: 8, remaining: 10 }),
            "padding to 96 leaves 4 bytes: {err}"
        );
        assert_eq!(arena.used(), 90, "a failed allocation takes nothing");
        arena.alloc(10, 1).unwrap();
        assert!(arena.alloc(usize::MAX, 1).is_err());
        arena.alloc(0, 1).unwrap();
    }

    #[test]
    fn alignment_must_be_a_power_of_two() {
        let region = small_region(4096);
        let arena = Arena::new(region.whole());
        assert!(matches!(arena.alloc(1, 0), Err(Error::InvalidAlignment { align: 0 })));
        assert!(matches!(arena.alloc(1, 24), Err(Error::InvalidAlignment { align: 24 })));
    }

    #[test]
    fn alignment_is_of_the_address_in_an_offset_area() {
        let region = small_region(8192);
        let arena = Arena::new(region.slice(5, 8000).unwrap());
        let slice = arena.alloc(8, 4096).unwrap();
        assert_eq!(slice.addr() % 4096, 0);
        assert_eq!(slice.offset(), 4096);
    }

    #[test]
    fn reset_starts_over() {
        let region = small_region(4096);
        let mut arena = Arena::new(region.whole());
        let first = arena.alloc(100, 1).unwrap().offset();
        arena.alloc(1000, 1).unwrap();
        arena.reset();
        assert_eq!(arena.used(), 0);
        assert_eq!(arena.alloc(100, 1).unwrap().offset(), first);
        assert_eq!(arena.capacity(), 4096);
        assert_eq!(arena.area().len(), 4096);
    }
}
