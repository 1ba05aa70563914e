//! Power-of-two alignment arithmetic shared by the arena and the slab.

use crate::error::{Error, Result};

/// Rejects alignments that are zero or not powers of two.
pub(crate) fn check_alignment(align: usize) -> Result<()> {
    if align.is_power_of_two() {
        Ok(())
    } else {
        Err(Error::InvalidAlignment { align })
    }
}

/// Bytes to skip from `addr` to reach the next multiple of `align` (a power of two).
///
/// Alignment is of the address, not of an offset: what a NIC or a CPU atomic needs is the
/// address, and a region's base is only page aligned, so offsets and addresses agree only
/// for alignments up to a page.
pub(crate) fn padding_to_align(addr: u64, align: usize) -> usize {
    debug_assert!(align.is_power_of_two());
    let mask = align as u64 - 1;
    // Two's complement: `-addr mod align`, which cannot overflow where `addr + mask` could.
    (addr.wrapping_neg() & mask) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_powers_of_two_align() {
        for align in [1, 2, 4, 4096, 1 << 40] {
            check_alignment(align).unwrap();
        }
        for align in [0, 3, 12, usize::MAX] {
            assert!(
                matches!(check_alignment(align), Err(Error::InvalidAlignment { align: a }) if a == align)
            );
        }
    }

    #[test]
    fn padding_reaches_the_next_multiple() {
        assert_eq!(padding_to_align(0, 8), 0);
        assert_eq!(padding_to_align(1, 8), 7);
        assert_eq!(padding_to_align(8, 8), 0);
        assert_eq!(padding_to_align(4097, 4096), 4095);
        assert_eq!(padding_to_align(u64::MAX, 2), 1);
        assert_eq!(padding_to_align(123, 1), 0);
    }
}
