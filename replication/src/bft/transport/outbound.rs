//! Writing one ring in a peer's memory: sequence numbers, the mirror slot a frame is
//! built in, and credit.
//!
//! A frame is built in our mirror of the ring (slot `sequence % slots`) and WRITEn from
//! there into the same slot of the peer's ring. The mirror slot is reused a lap later,
//! so a frame may only be built once the WRITE of the frame a lap before has completed
//! (on the soft provider a WRITE completes as it is posted; a NIC takes microseconds).
//!
//! Credit rings also keep the reader's consumption counter as last read: sequence `s` may
//! be written only if `s < consumed + slots`. When that runs out the port READs the
//! counter again (one READ at a time per ring).

use std::collections::VecDeque;

use super::layout::{Placed, RingMode};

/// One ring we write.
#[derive(Debug)]
pub(super) struct OutboundRing {
    pub placed: Placed,
    /// Where our mirror of the ring starts in our outbound slice for this peer.
    pub mirror_in_slice: usize,
    /// Where the 8 bytes a credit READ lands in sit in that slice.
    pub credit_in_slice: usize,
    pub next_sequence: u64,
    /// Sequences WRITEn and not completed yet, oldest first.
    pub in_flight: VecDeque<u64>,
    /// The reader's consumption counter as last read (credit rings).
    pub consumed: u64,
    pub credit_read_in_flight: bool,
}

/// Why a frame cannot be written now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Blocked {
    /// The mirror slot still carries a WRITE of the previous lap.
    MirrorBusy,
    /// A credit ring's reader has not consumed enough.
    NoCredit,
}

impl OutboundRing {
    pub fn new(placed: Placed, mirror_in_slice: usize, credit_in_slice: usize) -> OutboundRing {
        OutboundRing {
            placed,
            mirror_in_slice,
            credit_in_slice,
            next_sequence: 0,
            in_flight: VecDeque::new(),
            consumed: 0,
            credit_read_in_flight: false,
        }
    }

    /// Whether the next frame may be written now.
    pub fn check(&self) -> Result<(), Blocked> {
        let slots = u64::from(self.placed.spec.slots);
        if self.placed.spec.mode == RingMode::Credit && self.next_sequence >= self.consumed + slots {
            return Err(Blocked::NoCredit);
        }
        if self.in_flight.front().is_some_and(|&oldest| oldest + slots <= self.next_sequence) {
            return Err(Blocked::MirrorBusy);
        }
        Ok(())
    }

    /// The next frame's sequence and where its mirror slot starts in our slice; counts it
    /// as in flight.
    pub fn take(&mut self) -> (u64, usize) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.in_flight.push_back(sequence);
        let slot = (sequence % u64::from(self.placed.spec.slots)) as usize;
        (sequence, self.mirror_in_slice + slot * self.placed.spec.slot_bytes())
    }

    /// Where the peer's slot for `sequence` starts in its slice for us.
    pub fn remote_slot(&self, sequence: u64) -> usize {
        let slot = (sequence % u64::from(self.placed.spec.slots)) as usize;
        self.placed.in_slice + slot * self.placed.spec.slot_bytes()
    }

    /// The WRITE of `sequence` completed (completions come in posting order per QP).
    pub fn completed(&mut self, sequence: u64) {
        if self.in_flight.front() == Some(&sequence) {
            self.in_flight.pop_front();
        } else if let Some(position) = self.in_flight.iter().position(|&s| s == sequence) {
            self.in_flight.remove(position);
        }
    }

    /// The reader's counter came back as `consumed` (never believed to go backwards, nor
    /// beyond what we wrote: a Byzantine reader only starves itself).
    pub fn credit(&mut self, consumed: u64) {
        self.credit_read_in_flight = false;
        self.consumed = self.consumed.max(consumed.min(self.next_sequence));
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::{RingSpec, StreamId};
    use super::*;

    fn ring(mode: RingMode) -> OutboundRing {
        let spec = RingSpec { stream: StreamId(1), slots: 2, max_payload_bytes: 40, mode };
        OutboundRing::new(Placed { spec, in_slice: 0, counter_in_slice: 0 }, 0, 128)
    }

    #[test]
    fn a_credit_ring_stops_a_ring_ahead_of_its_reader_and_goes_on_with_credit() {
        let mut ring = ring(RingMode::Credit);
        for _ in 0..2 {
            assert_eq!(ring.check(), Ok(()));
            let (sequence, _) = ring.take();
            ring.completed(sequence);
        }
        assert_eq!(ring.check(), Err(Blocked::NoCredit));
        ring.credit(99); // a lying reader is believed no further than what was written
        assert_eq!(ring.consumed, 2);
        assert_eq!(ring.check(), Ok(()));
        ring.credit(0);
        assert_eq!(ring.consumed, 2, "credit never goes back");
    }

    #[test]
    fn a_tail_ring_overwrites_but_never_a_mirror_slot_in_flight() {
        let mut ring = ring(RingMode::Tail);
        let (first, at) = ring.take();
        let (_, _) = ring.take();
        assert_eq!(ring.check(), Err(Blocked::MirrorBusy));
        ring.completed(first);
        assert_eq!(ring.check(), Ok(()));
        let (third, again) = ring.take();
        assert_eq!((third, again), (2, at), "a lap later, the same slot");
        assert_eq!(ring.remote_slot(3), 64);
    }
}
