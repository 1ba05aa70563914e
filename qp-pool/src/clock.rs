//! Where the `now_ns` of a loop comes from.
//!
//! Protocol cores never read a clock; drivers do, through [`Clock`], and pass the value in.
//! Every clock here is monotonic and counts nanoseconds from an arbitrary origin of its
//! own, so two clocks (two processes, two nodes) are never compared with each other, only
//! intervals measured on one of them.
//!
//! - [`MonotonicClock`]: the OS monotonic clock (`CLOCK_MONOTONIC` through
//!   `std::time::Instant`).
//! - [`ManualClock`]: set by hand, for tests.
//!
//! The trait lives here, below `usec-lease-clock` (which depends on this crate), so that
//! the completion loop's [`BusyPoll`](crate::BusyPoll) and lease-clock's calibrated TSC
//! clock and simulated clocks with drift are one kind of thing; lease-clock re-exports
//! these.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A monotonic nanosecond clock: successive reads never decrease.
pub trait Clock {
    /// Nanoseconds since this clock's own origin.
    fn now_ns(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
}

/// The OS monotonic clock, counted from the moment the value was made.
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> MonotonicClock {
        MonotonicClock { origin: Instant::now() }
    }

    /// A clock whose origin is `origin`.
    pub fn since(origin: Instant) -> MonotonicClock {
        MonotonicClock { origin }
    }

    /// The instant its readings count from.
    pub fn origin(&self) -> Instant {
        self.origin
    }
}

impl Default for MonotonicClock {
    fn default() -> MonotonicClock {
        MonotonicClock::new()
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now_ns: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `now_ns`.
    pub fn starting_at(now_ns: u64) -> ManualClock {
        ManualClock { now_ns: Arc::new(AtomicU64::new(now_ns)) }
    }

    /// Moves the clock to `now_ns`; moving it backwards is a bug in the test.
    pub fn set(&self, now_ns: u64) {
        let before = self.now_ns.swap(now_ns, Ordering::Relaxed);
        assert!(now_ns >= before, "a ManualClock went backwards from {before} to {now_ns}");
    }

    /// Moves the clock forward by `ns`.
    pub fn advance(&self, ns: u64) {
        self.now_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_counts_at_least_the_time_slept() {
        let clock = MonotonicClock::new();
        let first = clock.now_ns();
        std::thread::sleep(std::time::Duration::from_millis(1));
        assert!(clock.now_ns() >= first + 1_000_000);
    }

    #[test]
    fn manual_clock_is_shared_by_clones() {
        let clock = ManualClock::starting_at(5);
        let other = clock.clone();
        clock.advance(10);
        assert_eq!(other.now_ns(), 15);
        other.set(20);
        assert_eq!(clock.now_ns(), 20);
    }

    #[test]
    #[should_panic(expected = "went backwards")]
    fn manual_clock_refuses_to_go_back() {
        ManualClock::starting_at(5).set(4);
    }
}
