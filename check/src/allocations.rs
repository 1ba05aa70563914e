//! Counting heap allocations, for tests that promise a hot path allocates nothing.
//!
//! A test binary installs [`CountingAllocator`] as its global allocator and wraps the code
//! under test in [`allocations_in`]: only allocations made by the calling thread while it
//! counts are counted, so the test harness's threads and the setup around the body do not
//! disturb the figure.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: usec_check::allocations::CountingAllocator = usec_check::allocations::CountingAllocator;
//!
//! let (count, sum) = usec_check::allocations::allocations_in(|| (1..10u64).sum::<u64>());
//! assert_eq!(count, 0);
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting a thread's allocations while the thread asks it to
/// ([`allocations_in`]). Without it installed as the global allocator, every count is 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountingAllocator;

fn note_allocation() {
    // `try_with`: allocations during thread teardown, after the locals are gone, are not ours.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees are ours; counting touches only thread-local cells, never the heap.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller keeps `alloc`'s contract (a non-zero-sized layout).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller passes a block of this allocator (hence of `System`) and its layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block of this allocator (hence of `System`) and its layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `body` on this thread and returns how many allocations (and reallocations) it
/// made, with its result. Nested calls count into the innermost.
pub fn allocations_in<T>(body: impl FnOnce() -> T) -> (u64, T) {
    let (saved_counting, saved_count) = (COUNTING.with(Cell::get), ALLOCATIONS.with(Cell::get));
    ALLOCATIONS.with(|count| count.set(0));
    COUNTING.with(|counting| counting.set(true));
    let result = body();
    COUNTING.with(|counting| counting.set(saved_counting));
    let count = ALLOCATIONS.with(|count| count.replace(saved_count));
    (count, result)
}
