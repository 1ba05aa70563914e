//! A CTBcast stream's parameters, shared by its broadcaster and its receivers.

use usec_qp_pool::NodeId;

use crate::error::{Error, Result};

/// Indices at or above this are refused, so `index + tail` and incarnation arithmetic
/// never overflow (at a billion messages a second this lasts 146 years).
pub const INDEX_LIMIT: u64 = 1 << 62;

/// Most messages a stream keeps (the tail); registers and rings are sized by it.
pub const TAIL_MAX: u64 = 1 << 16;

/// One stream: who broadcasts, who receives, and how much of it is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtbConfig {
    /// The only process whose messages this stream carries.
    pub broadcaster: NodeId,
    /// Who receives them (not the broadcaster: it knows its own messages). Every one of
    /// them must echo, or hold a register, for a receiver to deliver.
    pub receivers: Vec<NodeId>,
    /// How many of the latest messages are kept, and guaranteed to be delivered by every
    /// correct receiver when the broadcaster is correct. Older ones may be skipped.
    pub tail: u64,
    /// The longest message.
    pub max_message_bytes: usize,
    /// Messages shorter than this are echoed as a copy (comparing bytes is cheaper than
    /// hashing them); longer ones as their BLAKE3 hash (uBFT: 8 KiB).
    pub echo_copy_below_bytes: usize,
    /// How long a receiver waits for matching echoes before it takes the slow path; also
    /// how often it asks again for a signature that does not come.
    pub fast_path_timeout_ns: u64,
    /// Whether the broadcaster signs every message ahead of need, in `tick` after the
    /// message is out, and sends the signature along: a slow path then starts with the
    /// signature in hand instead of asking for it (a round trip and a signing time saved,
    /// for one signature per message of CPU).
    pub sign_ahead: bool,
    /// Whether a receiver verifies the broadcaster's signature ahead of need, in `tick`
    /// once message and signature are both in: a slow path then starts verified, and its
    /// latency is the register write and reads alone. Costs one verify (~35 µs) of CPU per
    /// message even when the fast path delivers, so it suits receivers with idle cycles.
    pub verify_ahead: bool,
}

impl Default for CtbConfig {
    /// Three processes, node 0 broadcasting to 1 and 2; uBFT's tail of 128.
    fn default() -> CtbConfig {
        CtbConfig {
            broadcaster: NodeId::default(),
            receivers: [1, 2].map(|id| NodeId::new(id).expect("small id")).to_vec(),
            tail: 128,
            max_message_bytes: 64 << 10,
            echo_copy_below_bytes: 8 << 10,
            fast_path_timeout_ns: 100_000,
            sign_ahead: true,
            verify_ahead: false,
        }
    }
}

impl CtbConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<()> {
        let fail = |why: String| Err(Error::Config(format!("ctbcast: {why}")));
        if self.tail == 0 || self.tail > TAIL_MAX {
            return fail(format!("tail {} must be 1 to {TAIL_MAX}", self.tail));
        }
        if self.receivers.is_empty() {
            return fail("no receivers".into());
        }
        if self.receivers.contains(&self.broadcaster) {
            return fail(format!("broadcaster {} is among the receivers", self.broadcaster));
        }
        let mut sorted = self.receivers.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.receivers.len() {
            return fail("a receiver is listed twice".into());
        }
        if self.max_message_bytes == 0 || u32::try_from(self.max_message_bytes).is_err() {
            return fail(format!("max_message_bytes {} must be 1 to u32::MAX", self.max_message_bytes));
        }
        if self.fast_path_timeout_ns == 0 {
            return fail("fast_path_timeout_ns must be positive".into());
        }
        Ok(())
    }

    /// `receiver`'s position in [`CtbConfig::receivers`].
    pub fn receiver_position(&self, receiver: NodeId) -> Option<usize> {
        self.receivers.iter().position(|&r| r == receiver)
    }

    /// The register slot an index's `{hash, signature}` goes to.
    pub fn register_slot(&self, index: u64) -> u64 {
        index % self.tail
    }

    /// The incarnation an index's register write carries: one more per lap of the slots,
    /// starting at 1 so an empty register (incarnation 0) reads as older than any index.
    pub fn register_incarnation(&self, index: u64) -> u64 {
        index / self.tail + 1
    }

    /// The index a register value of `incarnation` in `slot` is about, if it is one.
    pub fn register_index(&self, slot: u64, incarnation: u64) -> Option<u64> {
        let laps = incarnation.checked_sub(1)?;
        laps.checked_mul(self.tail)?
            .checked_add(slot)
            .filter(|&index| slot < self.tail && index < INDEX_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_slots_and_incarnations_invert() {
        let config = CtbConfig { tail: 4, ..CtbConfig::default() };
        for index in 0..40 {
            let (slot, incarnation) = (config.register_slot(index), config.register_incarnation(index));
            assert_eq!(config.register_index(slot, incarnation), Some(index));
        }
        assert_eq!(config.register_index(1, 0), None, "incarnation 0 is the empty register");
        assert_eq!(config.register_index(1, u64::MAX), None);
        assert_eq!(config.register_index(4, 1), None, "no slot 4 with a tail of 4");
    }

    #[test]
    fn bad_configurations_are_refused() {
        let good = CtbConfig::default();
        assert!(good.validate().is_ok());
        assert!(CtbConfig { tail: 0, ..good.clone() }.validate().is_err());
        assert!(CtbConfig { receivers: vec![], ..good.clone() }.validate().is_err());
        assert!(CtbConfig { receivers: vec![good.broadcaster], ..good.clone() }.validate().is_err());
        let twice = vec![good.receivers[0], good.receivers[0]];
        assert!(CtbConfig { receivers: twice, ..good.clone() }.validate().is_err());
        assert!(CtbConfig { fast_path_timeout_ns: 0, ..good }.validate().is_err());
    }
}
