//! The event queue: virtual time, and the seeded RNG every random choice is drawn from.
//!
//! Events run in order of time; events at the same time in an order drawn from the RNG
//! when they were scheduled (then by scheduling order), so a seed picks one interleaving
//! and replays it.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Names a scheduled event, to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EventId(u64);

/// A min-queue of events in virtual time.
#[derive(Debug)]
pub(crate) struct Scheduler<E> {
    now_ns: u64,
    queue: BinaryHeap<Scheduled<E>>,
    /// Events cancelled while queued; skipped (and forgotten) when they reach the top.
    cancelled: BTreeSet<u64>,
    next_seq: u64,
    rng: ChaCha8Rng,
}

#[derive(Debug)]
struct Scheduled<E> {
    at_ns: u64,
    tie: u64,
    seq: u64,
    event: E,
}

impl<E> Scheduled<E> {
    fn key(&self) -> (u64, u64, u64) {
        (self.at_ns, self.tie, self.seq)
    }
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<E> Eq for Scheduled<E> {}

impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Scheduled<E> {
    /// Reversed: `BinaryHeap` is a max-heap and we want the earliest event on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

impl<E> Scheduler<E> {
    pub(crate) fn new(seed: u64) -> Scheduler<E> {
        Scheduler {
            now_ns: 0,
            queue: BinaryHeap::new(),
            cancelled: BTreeSet::new(),
            next_seq: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.now_ns
    }

    pub(crate) fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Queues `event` at `at_ns`, which must not be in the past.
    pub(crate) fn schedule(&mut self, at_ns: u64, event: E) -> EventId {
        assert!(at_ns >= self.now_ns, "event scheduled in the past: {at_ns} < {}", self.now_ns);
        let tie = self.rng.next_u64();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Scheduled { at_ns, tie, seq, event });
        EventId(seq)
    }

    /// Cancels a queued event. The event must still be queued.
    pub(crate) fn cancel(&mut self, id: EventId) {
        assert!(id.0 < self.next_seq, "cancel of an event never scheduled");
        self.cancelled.insert(id.0);
    }

    /// When the next event is due.
    pub(crate) fn next_at_ns(&mut self) -> Option<u64> {
        self.skip_cancelled();
        self.queue.peek().map(|scheduled| scheduled.at_ns)
    }

    /// Takes the next event and moves the clock to its time.
    pub(crate) fn pop(&mut self) -> Option<E> {
        self.skip_cancelled();
        let scheduled = self.queue.pop()?;
        assert!(scheduled.at_ns >= self.now_ns, "time went backwards");
        self.now_ns = scheduled.at_ns;
        Some(scheduled.event)
    }

    /// Moves the clock forward to `at_ns` (never backward, never past a queued event).
    pub(crate) fn advance_clock(&mut self, at_ns: u64) {
        if let Some(next) = self.next_at_ns() {
            assert!(at_ns <= next, "clock moved past a queued event");
        }
        self.now_ns = self.now_ns.max(at_ns);
    }

    fn skip_cancelled(&mut self) {
        while let Some(top) = self.queue.peek() {
            if !self.cancelled.remove(&top.seq) {
                break;
            }
            self.queue.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_in_time_order_and_skips_cancelled_events() {
        let mut scheduler = Scheduler::new(1);
        scheduler.schedule(30, "c");
        let cancelled = scheduler.schedule(10, "x");
        scheduler.schedule(20, "b");
        scheduler.schedule(5, "a");
        scheduler.cancel(cancelled);
        assert_eq!(scheduler.next_at_ns(), Some(5));
        let order: Vec<_> = std::iter::from_fn(|| scheduler.pop()).collect();
        assert_eq!(order, ["a", "b", "c"]);
        assert_eq!(scheduler.now_ns(), 30);
        scheduler.advance_clock(40);
        assert_eq!(scheduler.now_ns(), 40);
        scheduler.advance_clock(35);
        assert_eq!(scheduler.now_ns(), 40, "time never goes backwards");
    }

    #[test]
    fn ties_are_ordered_by_the_seed() {
        let order_for = |seed: u64| {
            let mut scheduler = Scheduler::new(seed);
            for label in 0..8 {
                scheduler.schedule(100, label);
            }
            std::iter::from_fn(|| scheduler.pop()).collect::<Vec<_>>()
        };
        assert_eq!(order_for(3), order_for(3));
        let distinct: BTreeSet<Vec<i32>> = (0..10).map(order_for).collect();
        assert!(distinct.len() > 1, "ten seeds gave one order of ties");
    }
}
