//! [`SharedClock`]: the clock every process of a Mu group reads, so that instants taken in
//! different processes can be compared (the kill in one, the takeover in another).

use nix::time::{clock_gettime, ClockId};
use usec_lease_clock::clock::Clock;

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process of the machine (a vDSO
/// read, some 20 ns, no system call). Unlike the calibrated TSC clock, whose origin and
/// rate are each process's own, two processes' readings of it share an origin.
#[derive(Clone, Copy, Debug, Default)]
pub struct SharedClock;

impl Clock for SharedClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always readable");
        now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
    }
}
