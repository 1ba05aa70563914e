//! Drivers of waiting loops: where a loop that waits for completions (or for a peer's
//! answer) gets the time, and what it does with a poll that found nothing.
//!
//! The loops of this crate ([`wait_for`](crate::wait_for),
//! [`Cluster::reconnect`](crate::Cluster::reconnect)) take their deadline as a nanosecond
//! value on their driver's clock and never read a clock or give up the core themselves:
//!
//! - [`BusyPoll`]: a thread of its own, in real time. It spins, or spins then yields the
//!   core ([`PollMode`]) so that several loops can share two cores, and reads its
//!   [`Clock`] (the OS monotonic clock by default; a calibrated TSC clock from
//!   `usec-lease-clock` plugs in as it is).
//! - [`SimDriver`]: a simulation on the sim provider. Time is the fabric's virtual time; an
//!   empty poll runs the fabric's next event, or, when none is due before the deadline,
//!   moves virtual time to the deadline. A timeout therefore fires at its virtual instant
//!   however long the run takes on the wall clock, and a run that waits for something that
//!   never comes ends instead of spinning.

use std::fmt;

use usec_verbs::sim::SimFabric;

use crate::clock::{Clock, MonotonicClock};

/// What a waiting loop needs from whoever runs it.
pub trait Driver {
    /// Now, in nanoseconds on the clock deadlines are given on.
    fn now_ns(&mut self) -> u64;

    /// Whether `deadline_ns` has passed. A driver may read its clock less often than it
    /// is asked (a busy loop asks on every poll), as long as it answers true eventually.
    fn expired(&mut self, deadline_ns: u64) -> bool {
        self.now_ns() >= deadline_ns
    }

    /// A poll found something.
    fn busy(&mut self);

    /// A poll found nothing; the loop gives up at `deadline_ns`.
    fn idle(&mut self, deadline_ns: u64);
}

impl<D: Driver + ?Sized> Driver for &mut D {
    fn now_ns(&mut self) -> u64 {
        (**self).now_ns()
    }

    fn expired(&mut self, deadline_ns: u64) -> bool {
        (**self).expired(deadline_ns)
    }

    fn busy(&mut self) {
        (**self).busy()
    }

    fn idle(&mut self, deadline_ns: u64) {
        (**self).idle(deadline_ns)
    }
}

/// What a [`BusyPoll`] does when a poll finds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollMode {
    /// Poll again at once: lowest latency, one core per loop.
    Spin,
    /// Poll again at once `spins` times, then yield the core after each empty poll until
    /// something arrives: a little latency for sharing cores between loops.
    SpinThenYield {
        /// Empty polls before yielding.
        spins: u32,
    },
}

/// Deadline checks between two clock reads of a [`BusyPoll`]: reading the clock on every
/// poll would cost more than the poll, and 64 polls are still well under a microsecond
/// apart when nothing arrives.
const CHECKS_PER_READ: u32 = 64;

/// The driver of a thread that waits in real time: spins or spins then yields, and reads
/// `C` (by default the OS monotonic clock) every 64 deadline checks.
pub struct BusyPoll<C = MonotonicClock> {
    clock: C,
    mode: PollMode,
    empty_polls: u32,
    checks: u32,
}

impl<C> fmt::Debug for BusyPoll<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusyPoll").field("mode", &self.mode).field("empty_polls", &self.empty_polls).finish()
    }
}

impl BusyPoll {
    /// A driver on the OS monotonic clock, counting from now.
    pub fn new(mode: PollMode) -> BusyPoll {
        BusyPoll::with_clock(MonotonicClock::new(), mode)
    }
}

impl<C: Clock> BusyPoll<C> {
    /// A driver on `clock`.
    pub fn with_clock(clock: C, mode: PollMode) -> BusyPoll<C> {
        BusyPoll { clock, mode, empty_polls: 0, checks: 0 }
    }

    /// Its clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// `timeout_ns` from now: a deadline for the loops it drives.
    pub fn deadline_in(&self, timeout_ns: u64) -> u64 {
        self.clock.now_ns().saturating_add(timeout_ns)
    }
}

impl<C: Clock> Driver for BusyPoll<C> {
    fn now_ns(&mut self) -> u64 {
        self.clock.now_ns()
    }

    fn expired(&mut self, deadline_ns: u64) -> bool {
        self.checks = self.checks.wrapping_add(1);
        self.checks % CHECKS_PER_READ == 0 && self.clock.now_ns() >= deadline_ns
    }

    fn busy(&mut self) {
        self.empty_polls = 0;
    }

    fn idle(&mut self, _deadline_ns: u64) {
        self.empty_polls = self.empty_polls.saturating_add(1);
        match self.mode {
            PollMode::Spin => std::hint::spin_loop(),
            PollMode::SpinThenYield { spins } if self.empty_polls <= spins => std::hint::spin_loop(),
            PollMode::SpinThenYield { .. } => std::thread::yield_now(),
        }
    }
}

/// The driver of a loop in a simulation on the sim provider: virtual time, moved on by
/// the loop itself when it has nothing to do.
///
/// An empty poll runs the fabric's next event if it is due by the deadline. With none due,
/// the first empty poll only takes note, and the next one moves virtual time to the
/// deadline: a sim CQ found empty runs the next event itself, so a poll over several CQs
/// may have put a completion into a CQ it had read already, and the loop must look once
/// more before time jumps. For a timeout to fire at exactly its virtual deadline,
/// turn the fabric's auto-advance off ([`SimFabric::set_auto_advance`]): with it on, a
/// poll that finds its CQ empty runs the next event itself, which may lie past the
/// deadline, and the timeout is then seen at that event's time.
#[derive(Clone, Debug)]
pub struct SimDriver {
    fabric: SimFabric,
    /// An empty poll found nothing due since the last event or busy poll.
    quiet: bool,
}

impl SimDriver {
    /// A driver of `fabric`'s virtual time.
    pub fn new(fabric: &SimFabric) -> SimDriver {
        SimDriver { fabric: fabric.clone(), quiet: false }
    }

    /// The fabric it drives.
    pub fn fabric(&self) -> &SimFabric {
        &self.fabric
    }

    /// `timeout_ns` of virtual time from now.
    pub fn deadline_in(&self, timeout_ns: u64) -> u64 {
        self.fabric.now_ns().saturating_add(timeout_ns)
    }
}

impl Driver for SimDriver {
    fn now_ns(&mut self) -> u64 {
        self.fabric.now_ns()
    }

    fn busy(&mut self) {
        self.quiet = false;
    }

    fn idle(&mut self, deadline_ns: u64) {
        match self.fabric.next_event_ns() {
            Some(at_ns) if at_ns <= deadline_ns => {
                self.quiet = false;
                self.fabric.step();
            }
            _ if !self.quiet => self.quiet = true,
            _ => self.fabric.advance_to(deadline_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn a_busy_poll_sees_its_deadline_within_one_read_interval() {
        let clock = ManualClock::starting_at(0);
        let mut driver = BusyPoll::with_clock(clock.clone(), PollMode::Spin);
        clock.set(1_000);
        let checks = (1..=CHECKS_PER_READ).find(|_| driver.expired(1_000));
        assert_eq!(checks, Some(CHECKS_PER_READ), "the clock is read every {CHECKS_PER_READ} checks");
        assert!((0..10 * CHECKS_PER_READ).all(|_| !driver.expired(1_001)), "before the deadline");
    }

    #[test]
    fn a_sim_driver_runs_events_due_and_then_jumps_to_the_deadline() {
        let fabric = SimFabric::create("qp-pool-sim-driver", 1).unwrap();
        fabric.set_auto_advance(false);
        let mut driver = SimDriver::new(&fabric);
        assert_eq!(fabric.next_event_ns(), None, "an empty fabric");
        let deadline = driver.deadline_in(3_000_000_000_000);
        driver.idle(deadline);
        assert_eq!(driver.now_ns(), 0, "the first empty poll only takes note");
        driver.idle(deadline);
        assert_eq!(driver.now_ns(), deadline, "nothing due: then straight to the deadline");
        assert!(driver.expired(deadline) && !driver.expired(deadline + 1));
    }
}
