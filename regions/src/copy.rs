//! Copies into and out of memory that other agents (a NIC, another process) may touch at
//! the same moment.
//!
//! Registered memory is shared memory: a remote WRITE can land in it while this process
//! reads it. Rust references to such bytes would promise the compiler that they do not
//! change, and a plain or volatile access that races with another agent's write is
//! undefined behaviour in Rust's memory model. So this crate never hands out references to
//! the bytes on its safe paths, and every byte here moves by an atomic load or store.
//!
//! # What a racing agent may observe
//!
//! - **Granularity.** Each 8-byte-aligned word that a copy's range covers whole moves by
//!   one 8-byte atomic access; the bytes of a word it covers in part, at either end of the
//!   range, move one byte at a time. So a reader that loads the same aligned words sees
//!   each of them all old or all new, never torn. When the two ranges are misaligned
//!   relative to each other, only one side can be on the word grid: the destination of
//!   [`ordered_copy`] (the side whose order it promises), the source of [`shared_read`]
//!   (the shared side); the other side's bytes move one at a time.
//! - **Order.** [`ordered_copy`] and [`shared_fill`] store with release ordering, in
//!   increasing address order. A reader that sees one of the stored values with an acquire
//!   load (or a relaxed load followed by an acquire fence) also sees every byte the copy
//!   stored at lower addresses: every state of the destination a careful reader can observe
//!   is a prefix of the copy. In particular the last 8-byte word (the last bytes, for a copy
//!   shorter than a word) lands last, which is what RDMA protocols that poll a trailing
//!   canary rely on, and what the soft provider's WRITE promises. The promise holds in
//!   Rust's memory model, hence on every CPU, not only on x86-64's total store order.
//! - **Reads.** [`shared_read`] loads with acquire ordering in increasing address order: a
//!   value it sees that another thread stored with release ordering makes that thread's
//!   earlier writes visible once it returns. A copy racing with it may be seen in part
//!   (new words at low addresses, old above); a canary reader loads the last word first,
//!   then the rest.
//! - **Limits.** Rust defines racing atomic accesses only when they have the same size and
//!   address (racing accesses of different sizes are undefined unless all are reads), so
//!   threads of one process that race on these bytes keep to the same grid: whole aligned
//!   words, as the soft provider's WRITE and its canary readers do. Other processes and a
//!   NIC are outside Rust's model; to them these are the CPU's 8-byte and 1-byte moves.
//! - **Cost.** On x86-64 release stores and acquire loads are plain moves, so a copy costs
//!   what a volatile one did; weakly ordered CPUs (Arm) pay an `stlr`/`ldar` per access.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const WORD: usize = 8;

/// Copies `len` bytes from shared memory at `src` to shared memory at `dst` so that they
/// land in increasing address order, the final 8-byte word (or the final bytes, for copies
/// shorter than a word) last: every store has release ordering (see the
/// [module documentation](self)). The source is read with relaxed atomic loads, because
/// another agent may be writing it too.
///
/// # Safety
/// Both ranges must be valid for reads and writes of `len` bytes (the source too: an
/// atomic access needs memory that may be written, so a source that is the bytes of a
/// `&[u8]` goes through [`ordered_write`] instead), and they must not overlap. Other
/// agents may read or write either range concurrently: every access is atomic, so the
/// result is then a mix of their bytes and ours, at the granularity the module
/// documentation gives.
pub unsafe fn ordered_copy(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: forwarded contract: both ranges are valid for `len` bytes.
    unsafe { Copy::ORDERED.run(&Raw(dst), &Raw(src.cast_mut()), len) };
}

/// Copies `src`, private bytes that nobody writes while they are borrowed, to shared
/// memory at `dst`, in the order and with the stores of [`ordered_copy`].
///
/// # Safety
/// `dst` must be valid for writes of `src.len()` bytes and must not overlap `src`. Other
/// agents may access the destination concurrently, as for [`ordered_copy`].
pub unsafe fn ordered_write(dst: *mut u8, src: &[u8]) {
    // SAFETY: the caller vouches for `dst`; `src` is a live slice of that length.
    unsafe { Copy::ORDERED.run(&Raw(dst), &Private(src.as_ptr()), src.len()) };
}

/// Reads `len` bytes from shared memory at `src` into `dst` in increasing address order,
/// every load with acquire ordering.
///
/// # Safety
/// As for [`ordered_copy`].
pub unsafe fn shared_read(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: forwarded contract.
    unsafe { Copy::SHARED_READ.run(&Raw(dst), &Raw(src.cast_mut()), len) };
}

/// Sets `len` bytes at `dst` to `byte`, in increasing address order, every store with
/// release ordering.
///
/// # Safety
/// `dst` must be valid for writes of `len` bytes.
pub unsafe fn shared_fill(dst: *mut u8, byte: u8, len: usize) {
    // SAFETY: the caller vouches for `dst`; `Repeat` reads no memory.
    unsafe { Copy::ORDERED.run(&Raw(dst), &Repeat(byte), len) };
}

/// Which side's addresses decide the aligned words.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grid {
    Destination,
    Source,
}

/// How a copy moves its bytes: the orderings of its loads and stores, and its word grid.
#[derive(Clone, Copy)]
struct Copy {
    load: Ordering,
    store: Ordering,
    grid: Grid,
}

/// One end of a copy. Production copies run over raw memory ([`Raw`]); loom's model tests
/// run the same [`Copy::run`] over cells that loom tracks.
trait Side {
    /// The address of byte `at`: which bytes form aligned words. `None` for a side that
    /// has no memory ([`Repeat`]), which fits any grid.
    fn address(&self, at: usize) -> Option<usize>;

    /// # Safety
    /// `at` lies inside the range the copy's caller vouched for.
    unsafe fn load_byte(&self, at: usize, order: Ordering) -> u8;

    /// # Safety
    /// As for [`Side::load_byte`].
    unsafe fn store_byte(&self, at: usize, byte: u8, order: Ordering);

    /// # Safety
    /// `at..at + 8` lies inside the range the copy's caller vouched for, and
    /// `address(at)`, if any, is 8-byte aligned.
    unsafe fn load_word(&self, at: usize, order: Ordering) -> u64;

    /// # Safety
    /// As for [`Side::load_word`].
    unsafe fn store_word(&self, at: usize, word: u64, order: Ordering);
}

impl Copy {
    /// How [`ordered_copy`], [`ordered_write`] and [`shared_fill`] move bytes.
    const ORDERED: Copy = Copy { load: Ordering::Relaxed, store: Ordering::Release, grid: Grid::Destination };
    /// How [`shared_read`] moves bytes.
    const SHARED_READ: Copy = Copy { load: Ordering::Acquire, store: Ordering::Relaxed, grid: Grid::Source };

    /// Moves `len` bytes forward: single bytes up to the first aligned word of the grid,
    /// whole words, then the bytes left.
    ///
    /// # Safety
    /// `dst` and `src` are valid for `len` bytes from their start.
    #[inline(always)]
    unsafe fn run(self, dst: &impl Side, src: &impl Side, len: usize) {
        let (grid, other) = match self.grid {
            Grid::Destination => (dst.address(0), src.address(0)),
            Grid::Source => (src.address(0), dst.address(0)),
        };
        let head = grid.or(other).map_or(0, |address| address.wrapping_neg() % WORD).min(len);
        // Words aligned on both sides move as one load and one store; otherwise the side
        // off the grid moves the word's bytes one at a time.
        let both = match (grid, other) {
            (Some(grid), Some(other)) => (grid ^ other) % WORD == 0,
            _ => true,
        };
        let whole = Whole {
            source: both || self.grid == Grid::Source,
            destination: both || self.grid == Grid::Destination,
        };
        let mut at = 0;
        while at < head {
            // SAFETY: `at < head <= len`.
            unsafe { self.move_byte(dst, src, at) };
            at += 1;
        }
        while len - at >= WORD {
            // `at` is `head` plus whole words: the word is aligned on the grid side (on both when `both`).
            // SAFETY: `at + 8 <= len`, and the word is aligned as said above.
            unsafe { self.move_word(dst, src, at, whole) };
            at += WORD;
        }
        while at < len {
            // SAFETY: `at < len`.
            unsafe { self.move_byte(dst, src, at) };
            at += 1;
        }
    }

    /// # Safety
    /// Byte `at` lies inside both ranges.
    #[inline(always)]
    unsafe fn move_byte(self, dst: &impl Side, src: &impl Side, at: usize) {
        // SAFETY: forwarded contract.
        unsafe { dst.store_byte(at, src.load_byte(at, self.load), self.store) };
    }

    /// # Safety
    /// `at..at + 8` lies inside both ranges, aligned on each side that `whole` names.
    #[inline(always)]
    unsafe fn move_word(self, dst: &impl Side, src: &impl Side, at: usize, whole: Whole) {
        let word = if whole.source {
            // SAFETY: forwarded contract: in range and aligned.
            unsafe { src.load_word(at, self.load) }
        } else {
            let mut bytes = [0u8; WORD];
            for (index, byte) in bytes.iter_mut().enumerate() {
                // SAFETY: `index < 8`, inside the word.
                *byte = unsafe { src.load_byte(at + index, self.load) };
            }
            u64::from_ne_bytes(bytes)
        };
        if whole.destination {
            // SAFETY: forwarded contract: in range and aligned.
            unsafe { dst.store_word(at, word, self.store) };
        } else {
            for (index, byte) in word.to_ne_bytes().into_iter().enumerate() {
                // SAFETY: `index < 8`, inside the word.
                unsafe { dst.store_byte(at + index, byte, self.store) };
            }
        }
    }
}

/// Which sides of a word move it as one 8-byte access (the others byte by byte).
#[derive(Clone, Copy)]
struct Whole {
    source: bool,
    destination: bool,
}

/// Memory reached through a raw pointer: shared mappings, or a caller's private buffer.
struct Raw(*mut u8);

impl Side for Raw {
    #[inline(always)]
    fn address(&self, at: usize) -> Option<usize> {
        Some((self.0 as usize).wrapping_add(at))
    }

    #[inline(always)]
    unsafe fn load_byte(&self, at: usize, order: Ordering) -> u8 {
        // Any address is aligned for a byte, and an `AtomicU8` has the layout of a `u8`.
        // SAFETY: the caller keeps `at` inside memory valid for reads.
        unsafe { AtomicU8::from_ptr(self.0.add(at)) }.load(order)
    }

    #[inline(always)]
    unsafe fn store_byte(&self, at: usize, byte: u8, order: Ordering) {
        // SAFETY: as in `load_byte`, for memory valid for writes.
        unsafe { AtomicU8::from_ptr(self.0.add(at)) }.store(byte, order);
    }

    #[inline(always)]
    unsafe fn load_word(&self, at: usize, order: Ordering) -> u64 {
        // SAFETY: the caller keeps `at..at + 8` inside the range and 8-byte aligned.
        unsafe { AtomicU64::from_ptr(self.0.add(at).cast()) }.load(order)
    }

    #[inline(always)]
    unsafe fn store_word(&self, at: usize, word: u64, order: Ordering) {
        // SAFETY: as in `load_word`.
        unsafe { AtomicU64::from_ptr(self.0.add(at).cast()) }.store(word, order);
    }
}

/// Bytes that no other agent writes while the copy reads them (a borrowed `&[u8]`): plain
/// loads, as the slice's shared borrow allows.
struct Private(*const u8);

impl Side for Private {
    #[inline(always)]
    fn address(&self, at: usize) -> Option<usize> {
        Some((self.0 as usize).wrapping_add(at))
    }

    #[inline(always)]
    unsafe fn load_byte(&self, at: usize, _order: Ordering) -> u8 {
        // SAFETY: the caller keeps `at` inside the borrowed slice.
        unsafe { self.0.add(at).read() }
    }

    unsafe fn store_byte(&self, _at: usize, _byte: u8, _order: Ordering) {
        unreachable!("borrowed bytes are only ever a source")
    }

    #[inline(always)]
    unsafe fn load_word(&self, at: usize, _order: Ordering) -> u64 {
        // SAFETY: the caller keeps `at..at + 8` inside the borrowed slice.
        unsafe { self.0.add(at).cast::<u64>().read_unaligned() }
    }

    unsafe fn store_word(&self, _at: usize, _word: u64, _order: Ordering) {
        unreachable!("borrowed bytes are only ever a source")
    }
}

/// A source that is one byte, repeated: what [`shared_fill`] copies.
struct Repeat(u8);

impl Side for Repeat {
    fn address(&self, _at: usize) -> Option<usize> {
        None
    }

    unsafe fn load_byte(&self, _at: usize, _order: Ordering) -> u8 {
        self.0
    }

    unsafe fn store_byte(&self, _at: usize, _byte: u8, _order: Ordering) {
        unreachable!("a repeated byte is only ever a source")
    }

    unsafe fn load_word(&self, _at: usize, _order: Ordering) -> u64 {
        u64::from_ne_bytes([self.0; WORD])
    }

    unsafe fn store_word(&self, _at: usize, _word: u64, _order: Ordering) {
        unreachable!("a repeated byte is only ever a source")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::thread;

    use super::*;

    /// A raw pointer that may cross threads, as shared memory's address does.
    #[derive(Clone, Copy)]
    struct Shared(*mut u8);
    // SAFETY: it points into an `Arc` the test keeps alive until both threads are joined.
    unsafe impl Send for Shared {}

    /// A writer and a reader race on one buffer, as a peer's WRITE and a local poll do.
    /// Under Miri this proves every access is atomic (its race detector rejects a plain or
    /// volatile access that races); everywhere it checks what a racing reader may see:
    /// whole aligned words, and once the last word shows a round, every word before it
    /// shows that round or a later one.
    #[test]
    fn a_racing_reader_sees_whole_words_and_the_last_word_last() {
        const WORDS: usize = 4;
        const ROUNDS: u8 = if cfg!(miri) { 3 } else { 200 };
        let buffer: Arc<[AtomicU64]> = (0..WORDS).map(|_| AtomicU64::new(0)).collect();
        let shared = Shared(buffer.as_ptr() as *mut u8);
        let writer = thread::spawn(move || {
            let shared = shared;
            for round in 1..=ROUNDS {
                let src = [round; WORDS * 8];
                // SAFETY: the buffer is WORDS words long and outlives the thread.
                unsafe { ordered_write(shared.0, &src) };
            }
        });
        let mut last_seen = 0;
        while last_seen < ROUNDS {
            let tail = buffer[WORDS - 1].load(Ordering::Acquire).to_ne_bytes()[0];
            let mut seen = [0u8; WORDS * 8];
            // SAFETY: the buffer is WORDS words long and alive; `seen` is private.
            unsafe { shared_read(seen.as_mut_ptr(), shared.0, seen.len()) };
            for word in seen.chunks(8) {
                assert!(word.iter().all(|&byte| byte == word[0]), "torn word {word:?}");
                assert!(word[0] >= tail, "word {word:?} older than the last word's round {tail}");
            }
            last_seen = tail;
            thread::yield_now();
        }
        writer.join().unwrap();
    }

    /// 8-byte aligned buffers, so that shifts 0..8 name every alignment.
    fn aligned(bytes: usize, fill: u8) -> Vec<u64> {
        vec![u64::from_ne_bytes([fill; 8]); bytes.div_ceil(8)]
    }

    fn as_bytes(words: &[u64]) -> &[u8] {
        bytemuck::cast_slice(words)
    }

    #[test]
    fn copies_and_fills_every_length_and_alignment() {
        // Miri interprets every access: there, lengths around word boundaries and shifts
        // that still pair aligned, equally and unequally misaligned ends.
        let (lens, dst_shifts, src_shifts): (Vec<usize>, Vec<usize>, Vec<usize>) = if cfg!(miri) {
            (vec![0, 1, 7, 8, 9, 17], vec![0, 3, 8], vec![0, 1, 3, 8])
        } else {
            ((0..80).collect(), (0..9).collect(), (0..9).collect())
        };
        // The source of `ordered_copy` is shared memory: reached through a pointer that
        // may write. `expected` is a private copy of the same bytes.
        let mut source = aligned(100, 0);
        bytemuck::cast_slice_mut::<u64, u8>(&mut source)
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8 + 1);
        let expected = as_bytes(&source).to_vec();
        let source = source.as_mut_ptr().cast::<u8>();
        let src = &expected[..];
        for &len in &lens {
            for &dst_shift in &dst_shifts {
                let mut filled = aligned(100, 0xAA);
                let base = filled.as_mut_ptr().cast::<u8>();
                // SAFETY: `dst_shift + len <= 88` lies inside the 100-byte buffer.
                unsafe { shared_fill(base.add(dst_shift), 0x55, len) };
                let filled = as_bytes(&filled);
                assert!(filled[dst_shift..dst_shift + len].iter().all(|&b| b == 0x55));
                assert!(filled[..dst_shift].iter().chain(&filled[dst_shift + len..]).all(|&b| b == 0xAA));
                for &src_shift in &src_shifts {
                    for function in 0..3 {
                        let mut dst = aligned(100, 0xAA);
                        let at = dst.as_mut_ptr().cast::<u8>().wrapping_add(dst_shift);
                        let from = source.wrapping_add(src_shift);
                        // SAFETY: both ranges lie inside their buffers, and apart.
                        unsafe {
                            match function {
                                0 => ordered_copy(at, from, len),
                                1 => ordered_write(at, &src[src_shift..src_shift + len]),
                                _ => shared_read(at, from, len),
                            }
                        }
                        let dst = as_bytes(&dst);
                        assert_eq!(&dst[dst_shift..dst_shift + len], &src[src_shift..src_shift + len]);
                        assert!(dst[..dst_shift].iter().all(|&b| b == 0xAA));
                        assert!(dst[dst_shift + len..].iter().all(|&b| b == 0xAA));
                    }
                }
            }
        }
    }
}

/// Loom models of the ordering promise: [`Copy::run`] with the production orderings, over
/// words that loom tracks (its atomics are objects, not bytes a raw pointer could reach,
/// so the models copy whole aligned words: the byte paths are covered by the unit tests
/// and Miri). Run as `tools/test-all` does (see README).
#[cfg(all(test, loom))]
mod loom_tests {
    use loom::sync::atomic::AtomicU64;
    use loom::sync::Arc;
    use loom::thread;

    use super::*;

    const WORDS: usize = 3;
    const NEW: u64 = u64::MAX;

    /// Words at an aligned base address.
    struct Modelled<'a>(&'a [AtomicU64]);

    impl Side for Modelled<'_> {
        fn address(&self, at: usize) -> Option<usize> {
            Some(at)
        }

        unsafe fn load_byte(&self, _at: usize, _order: Ordering) -> u8 {
            unreachable!("the models move whole words")
        }

        unsafe fn store_byte(&self, _at: usize, _byte: u8, _order: Ordering) {
            unreachable!("the models move whole words")
        }

        unsafe fn load_word(&self, at: usize, order: Ordering) -> u64 {
            self.0[at / WORD].load(order)
        }

        unsafe fn store_word(&self, at: usize, word: u64, order: Ordering) {
            self.0[at / WORD].store(word, order);
        }
    }

    fn words(value: u64) -> Vec<AtomicU64> {
        (0..WORDS).map(|_| AtomicU64::new(value)).collect()
    }

    fn model(body: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(body);
    }

    /// Starts `ordered_copy`'s core copying `NEW` words over a zeroed destination.
    fn start_writer() -> (Arc<Vec<AtomicU64>>, thread::JoinHandle<()>) {
        let destination = Arc::new(words(0));
        let writer = {
            let destination = Arc::clone(&destination);
            thread::spawn(move || {
                let source = words(NEW);
                // SAFETY: both sides hold WORDS words.
                unsafe { Copy::ORDERED.run(&Modelled(&destination), &Modelled(&source), WORDS * WORD) };
            })
        };
        (destination, writer)
    }

    /// Every state of the destination a reader can observe is a prefix of the copy: a
    /// reader that acquires the words from the last to the first never sees a new word
    /// above an old one.
    #[test]
    fn loom_a_reader_sees_a_prefix_of_the_copy() {
        model(|| {
            let (destination, writer) = start_writer();
            let seen: Vec<u64> =
                (0..WORDS).rev().map(|word| destination[word].load(Ordering::Acquire)).collect();
            // `seen` runs from the last word down: once a word is new, all below it are.
            let first_new = seen.iter().position(|&word| word == NEW).unwrap_or(WORDS);
            assert!(
                seen[first_new..].iter().all(|&word| word == NEW),
                "not a prefix: {seen:?} (last word first)"
            );
            writer.join().unwrap();
        });
    }

    /// The canary pattern: a reader that sees the last word new, then reads the whole range
    /// with `shared_read`'s core, gets the whole copy.
    #[test]
    fn loom_the_last_word_lands_last() {
        model(|| {
            let (destination, writer) = start_writer();
            if destination[WORDS - 1].load(Ordering::Acquire) == NEW {
                let copy = words(0);
                // SAFETY: both sides hold WORDS words.
                unsafe { Copy::SHARED_READ.run(&Modelled(&copy), &Modelled(&destination), WORDS * WORD) };
                let copy: Vec<u64> = copy.iter().map(|word| word.load(Ordering::Relaxed)).collect();
                assert_eq!(copy, [NEW; WORDS]);
            }
            writer.join().unwrap();
        });
    }
}
