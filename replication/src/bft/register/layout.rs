//! Where registers sit in a memory node's region, and how much memory they take.
//!
//! Every memory node holds the same region: the registers of writer 0, then writer 1's,
//! and so on, each writer's registers in slot order, each register two sub-slots
//! ([`sub_slot`]). Writer `w`'s registers form one contiguous slice, which
//! is what the memory node lets `w` alone write.

use crate::error::{Error, Result};

use super::sub_slot;

/// The geometry of the registers on every memory node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterLayout {
    /// How many writers (replicas) own registers.
    pub writers: usize,
    /// How many registers each writer owns (its slots).
    pub registers_per_writer: usize,
    /// The size of a value; shorter values are padded with zeros.
    pub value_bytes: usize,
}

/// What CTBcast keeps in a register: a BLAKE3 hash (32 B) and an Ed25519 signature (64 B).
pub const CTBCAST_VALUE_BYTES: usize = 96;

impl RegisterLayout {
    /// The registers CTBcast needs among `replicas` replicas keeping the last `tail`
    /// messages: each replica, as a receiver, owns one register per slot for each other
    /// replica's broadcasts (slot `broadcaster_rank * tail + index % tail`, with
    /// `broadcaster_rank` the broadcaster's rank among the others), each holding 96 bytes.
    pub fn for_ctbcast(replicas: usize, tail: usize) -> RegisterLayout {
        RegisterLayout {
            writers: replicas,
            registers_per_writer: replicas.saturating_sub(1) * tail,
            value_bytes: CTBCAST_VALUE_BYTES,
        }
    }

    /// Where a receiver keeps its register for message `index` of the broadcaster of rank
    /// `broadcaster_rank` (its rank among the other replicas) in a layout made by
    /// [`RegisterLayout::for_ctbcast`] with `tail`: the slot `broadcaster_rank * tail +
    /// index % tail` and the incarnation `index / tail + 1` — the same numbers as CTBcast's
    /// own (`CtbConfig::register_slot`, `register_incarnation`), both 64 bits wide, so every
    /// index CTBcast accepts (below 2^62) maps. `None` when the tail is 0 or the rank is out
    /// of range.
    pub fn ctbcast_register(&self, tail: usize, broadcaster_rank: usize, index: u64) -> Option<(usize, u64)> {
        if tail == 0 {
            return None;
        }
        let tail_u64 = tail as u64;
        let slot = broadcaster_rank.checked_mul(tail)?.checked_add((index % tail_u64) as usize)?;
        let incarnation = (index / tail_u64).checked_add(1)?;
        (slot < self.registers_per_writer).then_some((slot, incarnation))
    }

    /// Checks it: at least one writer and register, values of at most 1 MiB, and a region
    /// that fits in memory.
    pub fn check(&self) -> Result<()> {
        if self.writers == 0 || self.registers_per_writer == 0 || self.value_bytes == 0 {
            return Err(Error::Config(format!(
                "register layout {self:?}: every dimension must be at least 1"
            )));
        }
        if self.value_bytes > 1 << 20 {
            return Err(Error::Config(format!(
                "register values of {} bytes: at most 1 MiB",
                self.value_bytes
            )));
        }
        let total = self
            .writers
            .checked_mul(self.registers_per_writer)
            .and_then(|n| n.checked_mul(self.register_bytes()));
        if total.is_none_or(|total| total > 1 << 40) {
            return Err(Error::Config(format!("register layout {self:?}: more than 1 TiB of registers")));
        }
        Ok(())
    }

    /// Bytes of one sub-slot.
    pub fn sub_slot_bytes(&self) -> usize {
        sub_slot::sub_slot_bytes(self.value_bytes)
    }

    /// Bytes of one register (two sub-slots).
    pub fn register_bytes(&self) -> usize {
        sub_slot::register_bytes(self.value_bytes)
    }

    /// Bytes of one writer's registers.
    pub fn writer_bytes(&self) -> usize {
        self.registers_per_writer * self.register_bytes()
    }

    /// Bytes of registers on each memory node: what it registers for the writers.
    pub fn memory_bytes(&self) -> usize {
        self.writers * self.writer_bytes()
    }

    /// Where writer `writer`'s registers start.
    pub fn writer_offset(&self, writer: usize) -> usize {
        assert!(writer < self.writers, "writer {writer} of {}", self.writers);
        writer * self.writer_bytes()
    }

    /// Where register `slot` of `writer` starts.
    pub fn register_offset(&self, writer: usize, slot: usize) -> usize {
        assert!(slot < self.registers_per_writer, "slot {slot} of {}", self.registers_per_writer);
        self.writer_offset(writer) + slot * self.register_bytes()
    }

    /// Where sub-slot `sub` (0 or 1) of register `slot` of `writer` starts.
    pub fn sub_slot_offset(&self, writer: usize, slot: usize, sub: usize) -> usize {
        assert!(sub < 2, "a register has two sub-slots");
        self.register_offset(writer, slot) + sub * self.sub_slot_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_tile_the_region_writer_by_writer() {
        let layout = RegisterLayout { writers: 3, registers_per_writer: 4, value_bytes: 16 };
        layout.check().unwrap();
        assert_eq!(layout.register_bytes(), 64);
        assert_eq!(layout.register_offset(1, 0), layout.writer_offset(1));
        assert_eq!(layout.register_offset(0, 3) + layout.register_bytes(), layout.writer_offset(1));
        assert_eq!(layout.sub_slot_offset(2, 3, 1) + layout.sub_slot_bytes(), layout.memory_bytes());
    }

    #[test]
    fn ctbcast_with_three_replicas_and_a_tail_of_128_fits_well_under_a_mebibyte() {
        let layout = RegisterLayout::for_ctbcast(3, 128);
        assert_eq!(layout.registers_per_writer, 256);
        // 6 broadcaster→receiver arrays × 128 slots × 224 bytes.
        assert_eq!(layout.memory_bytes(), 6 * 128 * 224);
        assert!(layout.memory_bytes() < 1 << 20);
    }

    #[test]
    fn ctbcast_messages_map_to_a_slot_per_broadcaster_and_an_incarnation_per_tail() {
        let layout = RegisterLayout::for_ctbcast(3, 128);
        assert_eq!(layout.ctbcast_register(128, 0, 0), Some((0, 1)));
        assert_eq!(layout.ctbcast_register(128, 0, 127), Some((127, 1)));
        assert_eq!(layout.ctbcast_register(128, 0, 128), Some((0, 2)));
        assert_eq!(layout.ctbcast_register(128, 1, 300), Some((128 + 44, 3)));
        assert_eq!(layout.ctbcast_register(128, 2, 0), None, "two other replicas: ranks 0 and 1");
        // Incarnations are 64 bits: the last index CTBcast accepts still maps.
        let last = crate::bft::ctbcast::INDEX_LIMIT - 1;
        assert_eq!(layout.ctbcast_register(128, 0, last), Some((127, last / 128 + 1)));
        assert_eq!(layout.ctbcast_register(1, 0, u64::MAX), None, "no incarnation past u64");
        assert_eq!(layout.ctbcast_register(0, 0, 5), None, "no slots with a tail of 0");
    }

    #[test]
    fn degenerate_layouts_are_refused() {
        for layout in [
            RegisterLayout { writers: 0, registers_per_writer: 1, value_bytes: 1 },
            RegisterLayout { writers: 1, registers_per_writer: 0, value_bytes: 1 },
            RegisterLayout { writers: 1, registers_per_writer: 1, value_bytes: 0 },
            RegisterLayout { writers: 1, registers_per_writer: 1, value_bytes: (1 << 20) + 1 },
            RegisterLayout { writers: 1 << 20, registers_per_writer: 1 << 20, value_bytes: 1 << 10 },
        ] {
            assert!(layout.check().is_err(), "{layout:?}");
        }
    }
}
