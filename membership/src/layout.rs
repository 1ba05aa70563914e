//! Where things sit in an acceptor's region: the ring of slots, then every proposer's
//! value buffers.
//!
//! ```text
//! [ slot 0 | slot 1 | … | slot R-1 ]            R words, padded to 64 bytes
//! [ proposer 0: position 0: bank 0 | bank 1 ]   each bank `bank_bytes()` long
//! [ proposer 0: position 1: bank 0 | bank 1 ]
//! …
//! [ proposer n-1: position R-1: bank 0 | bank 1 ]
//! ```
//!
//! Instance `i` uses ring position `i % R`, for its slot and for its buffers: a ring of
//! instances reused as views succeed each other, so a learner a few instances behind
//! still finds what it missed. Each proposer writes only its own buffers, in two banks
//! that it alternates (see [`crate::buffer`]); a bank is whole 64-byte lines.

use crate::buffer::{HEADER_BYTES, LINE_BYTES, LINE_PAYLOAD_BYTES};
use crate::error::{Error, Result};

/// The most proposers a layout may have room for (the 12 bits of a qp-pool node id).
pub const MAX_PROPOSERS: u16 = 4096;

/// The shape of every acceptor's region; all nodes of a group use the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Positions of the ring of slots (instances in flight or recent).
    pub ring: u32,
    /// Room for this many proposers, indexed 0..proposers; also the ballot stride.
    pub proposers: u16,
    /// The largest value, in bytes.
    pub value_bytes_max: usize,
}

impl Default for Layout {
    /// 16 positions, 16 proposers, 256-byte values (a view of 16 members takes 185).
    fn default() -> Layout {
        Layout { ring: 16, proposers: 16, value_bytes_max: 256 }
    }
}

impl Layout {
    /// Checks that the numbers make a layout.
    pub fn check(&self) -> Result<()> {
        if self.ring == 0 || self.ring > 1 << 20 {
            return Err(Error::Config(format!("a ring of {} positions (1 to 2^20)", self.ring)));
        }
        if self.proposers == 0 || self.proposers > MAX_PROPOSERS {
            return Err(Error::Config(format!(
                "room for {} proposers (1 to {MAX_PROPOSERS})",
                self.proposers
            )));
        }
        if self.value_bytes_max == 0 || self.value_bytes_max > usize::from(u16::MAX) {
            return Err(Error::Config(format!("values of {} bytes (1 to 65535)", self.value_bytes_max)));
        }
        Ok(())
    }

    /// The ring position of `instance`.
    pub fn position(&self, instance: u64) -> usize {
        (instance % u64::from(self.ring)) as usize
    }

    /// Offset of the slot at `position`.
    pub fn slot_offset(&self, position: usize) -> usize {
        assert!(position < self.ring as usize, "position {position} outside a ring of {}", self.ring);
        position * 8
    }

    /// Bytes of the ring of slots (one READ fetches all of it).
    pub fn ring_bytes(&self) -> usize {
        self.ring as usize * 8
    }

    /// Lines of one bank.
    pub fn bank_lines(&self) -> usize {
        (HEADER_BYTES + self.value_bytes_max).div_ceil(LINE_PAYLOAD_BYTES)
    }

    /// Bytes of one bank.
    pub fn bank_bytes(&self) -> usize {
        self.bank_lines() * LINE_BYTES
    }

    /// Offset of `owner`'s two banks at `position` (one READ fetches both).
    pub fn banks_offset(&self, owner: u16, position: usize) -> usize {
        assert!(owner < self.proposers, "proposer {owner} outside room for {}", self.proposers);
        assert!(position < self.ring as usize, "position {position} outside a ring of {}", self.ring);
        let first = self.ring_bytes().next_multiple_of(LINE_BYTES);
        first + (usize::from(owner) * self.ring as usize + position) * 2 * self.bank_bytes()
    }

    /// Offset of one bank (0 or 1).
    pub fn bank_offset(&self, owner: u16, position: usize, bank: u8) -> usize {
        assert!(bank < 2, "two banks");
        self.banks_offset(owner, position) + usize::from(bank) * self.bank_bytes()
    }

    /// Bytes of an acceptor's region.
    pub fn acceptor_bytes(&self) -> usize {
        self.banks_offset(self.proposers - 1, self.ring as usize - 1) + 2 * self.bank_bytes()
    }

    /// A majority of `acceptors`: `n/2 + 1` (right for even `n` too, unlike `(n+1)/2`).
    pub fn majority(acceptors: usize) -> usize {
        acceptors / 2 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_do_not_overlap_and_fill_the_region() {
        let layout = Layout { ring: 5, proposers: 3, value_bytes_max: 100 };
        layout.check().expect("a layout");
        assert_eq!(layout.bank_lines(), 2, "10 + 100 bytes in 56-byte payloads");
        let mut areas = vec![(0, layout.ring_bytes())];
        for owner in 0..3 {
            for position in 0..5 {
                for bank in 0..2 {
                    let offset = layout.bank_offset(owner, position, bank);
                    assert_eq!(offset % LINE_BYTES, 0, "banks are line aligned");
                    areas.push((offset, layout.bank_bytes()));
                }
            }
        }
        areas.sort();
        for pair in areas.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "{pair:?} overlap");
        }
        let (last, len) = areas.last().copied().expect("areas");
        assert_eq!(last + len, layout.acceptor_bytes());
    }

    #[test]
    fn majority_is_half_plus_one() {
        assert_eq!([1, 2, 3, 4, 5, 6].map(Layout::majority), [1, 2, 2, 3, 3, 4]);
    }

    #[test]
    fn bad_layouts_are_refused() {
        for layout in [
            Layout { ring: 0, ..Layout::default() },
            Layout { proposers: 0, ..Layout::default() },
            Layout { proposers: MAX_PROPOSERS + 1, ..Layout::default() },
            Layout { value_bytes_max: 0, ..Layout::default() },
        ] {
            assert!(layout.check().is_err(), "{layout:?}");
        }
    }
}
