//! [`SimClock`]: a node's clock in a simulation, with drift.

use usec_verbs::sim::SimFabric;

use crate::clock::Clock;

/// The virtual time of a sim fabric as one node's clock sees it:
/// `offset_ns + t' + t' × drift_ppm / 10^6` (rounded down) at virtual time `t`, where
/// `t' = t - origin_ns` counts from when the clock started (0 unless
/// [restarted](SimClock::restarted)).
///
/// A node whose clock runs 100 ppm fast gets `drift_ppm = 100`; leases are safe as long as
/// every node's `|drift_ppm|` stays within the bound ρ they are configured with.
#[derive(Clone, Debug)]
pub struct SimClock {
    fabric: SimFabric,
    drift_ppm: i32,
    offset_ns: u64,
    origin_ns: u64,
}

impl SimClock {
    /// The fabric's virtual time, exactly.
    pub fn new(fabric: &SimFabric) -> SimClock {
        SimClock { fabric: fabric.clone(), drift_ppm: 0, offset_ns: 0, origin_ns: 0 }
    }

    /// The fabric's virtual time running `drift_ppm` parts per million fast (or slow, when
    /// negative), from an origin `offset_ns` away. `|drift_ppm|` must be below 10^6.
    pub fn with_drift(fabric: &SimFabric, drift_ppm: i32, offset_ns: u64) -> SimClock {
        assert!(
            drift_ppm.unsigned_abs() < 1_000_000,
            "a clock drifting by {drift_ppm} ppm stops or reverses"
        );
        SimClock { fabric: fabric.clone(), drift_ppm, offset_ns, origin_ns: 0 }
    }

    /// The clock a new process on the same node starts: the same rate, reading 0 now —
    /// as a real process's clocks do (`MonotonicClock` and the TSC clock count from their
    /// process's start), so that nothing in a simulation relies on a restarted process's
    /// readings exceeding its predecessor's.
    pub fn restarted(&self) -> SimClock {
        SimClock { offset_ns: 0, origin_ns: self.fabric.now_ns(), ..self.clone() }
    }

    /// How fast it runs against virtual time, in parts per million.
    pub fn drift_ppm(&self) -> i32 {
        self.drift_ppm
    }

    /// What it reads at virtual time `virtual_ns`.
    pub fn at(&self, virtual_ns: u64) -> u64 {
        let elapsed = virtual_ns.saturating_sub(self.origin_ns);
        let scaled = i128::from(elapsed) * i128::from(1_000_000 + i64::from(self.drift_ppm)) / 1_000_000;
        self.offset_ns.saturating_add(u64::try_from(scaled).expect("the rate is positive"))
    }

    /// The fabric it reads.
    pub fn fabric(&self) -> &SimFabric {
        &self.fabric
    }
}

impl Clock for SimClock {
    fn now_ns(&self) -> u64 {
        self.at(self.fabric.now_ns())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_scales_virtual_time() {
        let fabric = SimFabric::create("lease-clock-sim-clock", 1).unwrap();
        fabric.set_auto_advance(false);
        let exact = SimClock::new(&fabric);
        let fast = SimClock::with_drift(&fabric, 100, 7);
        let slow = SimClock::with_drift(&fabric, -100, 0);
        fabric.advance_to(1_000_000);
        assert_eq!(exact.now_ns(), 1_000_000);
        assert_eq!(fast.now_ns(), 7 + 1_000_100);
        assert_eq!(slow.now_ns(), 999_900);
    }

    #[test]
    fn a_restarted_clock_counts_from_its_start_at_the_same_rate() {
        let fabric = SimFabric::create("lease-clock-sim-clock-restarted", 1).unwrap();
        fabric.set_auto_advance(false);
        let fast = SimClock::with_drift(&fabric, 100, 7);
        fabric.advance_to(1_000_000);
        let fresh = fast.restarted();
        assert_eq!(fresh.now_ns(), 0);
        assert_eq!(fresh.drift_ppm(), 100);
        fabric.advance_to(2_000_000);
        assert_eq!(fresh.now_ns(), 1_000_100);
        assert_eq!(fast.now_ns(), 7 + 2_000_200);
    }
}
