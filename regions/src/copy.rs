//! Copies into and out of memory that other agents (a NIC, another process) may touch at
//! the same moment.
//!
//! Registered memory is shared memory: a remote WRITE can land in it while this process
//! reads it. Rust references to such bytes would promise the compiler that they do not
//! change, so this crate never hands them out on its safe paths; every access is a copy
//! through raw pointers with volatile stores, or an atomic.
//!
//! [`ordered_copy`] also fixes the order in which the destination bytes become visible:
//! increasing addresses, with the last 8-byte word stored last after a release fence. On
//! x86-64 (TSO) that makes every observed state of the destination a prefix of the source,
//! which is what RDMA protocols that poll a trailing canary rely on; on weakly ordered CPUs
//! only the "last word last" half is promised.

use std::sync::atomic::{fence, Ordering};

const WORD: usize = 8;

/// Copies `len` bytes from `src` to `dst` so that they land in increasing address order
/// and the final 8-byte word (or the final bytes, for copies shorter than a word) last.
///
/// # Safety
/// `src` must be valid for reads of `len` bytes and `dst` valid for writes of `len` bytes,
/// and the two ranges must not overlap. Other agents may read or write either range
/// concurrently; the result is then a mix of their bytes and ours, never undefined.
pub unsafe fn ordered_copy(dst: *mut u8, src: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    // The tail is the last word when the copy is at least a word long; shorter copies are
    // all tail and go byte by byte.
    let tail = if len >= WORD { WORD } else { len };
    let body = len - tail;
    // SAFETY: `body <= len`, so both ranges stay inside what the caller vouched for.
    unsafe { forward_copy(dst, src, body) };
    fence(Ordering::Release);
    // SAFETY: `body + tail == len`, inside the caller's ranges.
    unsafe { forward_copy(dst.add(body), src.add(body), tail) };
}

/// Reads `len` bytes from shared memory at `src` into `dst` in increasing address order.
///
/// # Safety
/// As for [`ordered_copy`].
pub unsafe fn shared_read(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: forwarded contract.
    unsafe { forward_copy(dst, src, len) };
    fence(Ordering::Acquire);
}

/// Forward copy with volatile stores: bytes until `dst` is word aligned, then whole words,
/// then the remaining bytes. Volatile keeps the compiler from merging, reordering or
/// eliding the stores; x86-64 keeps them in program order for other cores.
///
/// # Safety
/// As for [`ordered_copy`].
unsafe fn forward_copy(mut dst: *mut u8, mut src: *const u8, mut len: usize) {
    let misalignment = dst.align_offset(WORD).min(len);
    for _ in 0..misalignment {
        // SAFETY: `dst`/`src` stay within the caller's ranges: we advance at most `len`.
        unsafe {
            dst.write_volatile(src.read_volatile());
            dst = dst.add(1);
            src = src.add(1);
        }
    }
    len -= misalignment;
    while len >= WORD {
        // The source may be unaligned, hence `read_unaligned`.
        // The source may be unaligned, hence `read_unaligned`.
        // SAFETY: `dst` is word aligned here and at least a word of both ranges remains.
        unsafe {
            let word = (src as *const u64).read_unaligned();
            (dst as *mut u64).write_volatile(word);
            dst = dst.add(WORD);
            src = src.add(WORD);
        }
        len -= WORD;
    }
    for _ in 0..len {
        // SAFETY: fewer than `WORD` bytes remain in both ranges.
        unsafe {
            dst.write_volatile(src.read_volatile());
            dst = dst.add(1);
            src = src.add(1);
        }
    }
}

/// Sets `len` bytes at `dst` to `byte`, in increasing address order.
///
/// # Safety
/// `dst` must be valid for writes of `len` bytes.
pub unsafe fn shared_fill(dst: *mut u8, byte: u8, len: usize) {
    for i in 0..len {
        // SAFETY: `i < len`, inside the caller's range.
        unsafe { dst.add(i).write_volatile(byte) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_length_and_alignment() {
        let src: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for len in 0..80 {
            for dst_shift in 0..9 {
                for src_shift in 0..9 {
                    let mut dst = vec![0xAAu8; 100];
                    // SAFETY: both ranges are inside their vectors and do not overlap.
                    unsafe {
                        ordered_copy(dst.as_mut_ptr().add(dst_shift), src.as_ptr().add(src_shift), len)
                    };
                    assert_eq!(&dst[dst_shift..dst_shift + len], &src[src_shift..src_shift + len]);
                    assert!(dst[..dst_shift].iter().all(|&b| b == 0xAA));
                    assert!(dst[dst_shift + len..].iter().all(|&b| b == 0xAA));
                }
            }
        }
    }
}
