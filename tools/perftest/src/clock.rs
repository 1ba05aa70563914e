//! Time: nanosecond timestamps, and the phases of a run for a duration (`-D`).
//!
//! perftest reads the CPU's cycle counter and converts with the CPU's nominal frequency
//! (hence its `-F` warnings about frequency scaling). This tool reads usec-lease-clock's
//! calibrated clock: the TSC where the CPU says it is invariant and it calibrates well
//! against CLOCK_MONOTONIC (a read costs a few ns), else CLOCK_MONOTONIC itself through
//! `std::time::Instant` (vDSO, no system call). The info block says which.

use usec_lease_clock::clock::{CalibratedClock, CalibrationOptions, Clock as _};

use crate::settings::DurationPlan;

/// Nanoseconds from an arbitrary origin.
#[derive(Debug)]
pub struct Clock {
    inner: CalibratedClock,
}

impl Clock {
    /// Chooses and calibrates the clock (about 30 ms when the TSC is a candidate).
    pub fn calibrate() -> Clock {
        let inner = CalibratedClock::calibrate(&CalibrationOptions::default())
            .expect("automatic clock choice falls back to the OS clock instead of failing");
        Clock { inner }
    }

    /// Nanoseconds since the clock's origin.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.inner.now_ns()
    }

    /// Which clock, why, and what a read costs.
    pub fn describe(&self) -> String {
        let report = self.inner.report();
        let kind = match report.kind {
            usec_lease_clock::clock::ClockKind::Tsc => "TSC",
            usec_lease_clock::clock::ClockKind::Os => "CLOCK_MONOTONIC",
        };
        format!("{kind}, ns ({:.0} ns a read; {})", report.read_cost_ns, report.reason)
    }
}

/// Where a timed run is (perftest's `START_STATE`, `SAMPLE_STATE`, `STOP_SAMPLE_STATE`,
/// `END_STATE`, which it moves through on `SIGALRM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The first margin: running, not counted.
    Warmup,
    /// Counted.
    Sample,
    /// The last margin: running, not counted.
    Cooldown,
    /// Over.
    End,
}

/// The phases of one timed run, and the sampled window once it has been seen. Pure: the
/// caller passes the time in.
#[derive(Clone, Copy, Debug)]
pub struct DurationRun {
    plan: DurationPlan,
    start_ns: u64,
    sample_start_ns: Option<u64>,
    sample_end_ns: Option<u64>,
}

impl DurationRun {
    /// A run following `plan` that started at `start_ns`.
    pub fn new(plan: DurationPlan, start_ns: u64) -> DurationRun {
        DurationRun { plan, start_ns, sample_start_ns: None, sample_end_ns: None }
    }

    /// The phase at `now_ns`; the first call in the sample phase opens the window and
    /// the first one after it closes the window.
    pub fn phase(&mut self, now_ns: u64) -> Phase {
        let elapsed = now_ns.saturating_sub(self.start_ns);
        let phase = if elapsed < nanos(self.plan.sample_start()) {
            Phase::Warmup
        } else if elapsed < nanos(self.plan.sample_end()) {
            Phase::Sample
        } else if elapsed < nanos(self.plan.end()) {
            Phase::Cooldown
        } else {
            Phase::End
        };
        if phase != Phase::Warmup && self.sample_start_ns.is_none() {
            self.sample_start_ns = Some(now_ns);
        }
        if matches!(phase, Phase::Cooldown | Phase::End) && self.sample_end_ns.is_none() {
            self.sample_end_ns = Some(now_ns);
        }
        phase
    }

    /// The sampled window, from the first time the sample phase was seen to the first
    /// time a later phase was.
    pub fn window_ns(&self) -> u64 {
        match (self.sample_start_ns, self.sample_end_ns) {
            (Some(start), Some(end)) => end.saturating_sub(start),
            _ => 0,
        }
    }
}

fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn phases_follow_the_plan() {
        let mut run = DurationRun::new(DurationPlan { total_s: 8, margin_s: 2 }, 100);
        assert_eq!(run.phase(100), Phase::Warmup);
        assert_eq!(run.phase(100 + 2 * SECOND - 1), Phase::Warmup);
        assert_eq!(run.window_ns(), 0);
        assert_eq!(run.phase(100 + 2 * SECOND + 5), Phase::Sample);
        assert_eq!(run.phase(100 + 5 * SECOND), Phase::Sample);
        assert_eq!(run.phase(100 + 6 * SECOND + 7), Phase::Cooldown);
        assert_eq!(run.window_ns(), 4 * SECOND + 2);
        assert_eq!(run.phase(100 + 8 * SECOND), Phase::End);
        assert_eq!(run.window_ns(), 4 * SECOND + 2, "the window closes once");
    }

    #[test]
    fn a_run_without_margins_samples_from_the_start() {
        let mut run = DurationRun::new(DurationPlan { total_s: 1, margin_s: 0 }, 0);
        assert_eq!(run.phase(0), Phase::Sample);
        assert_eq!(run.phase(SECOND), Phase::End);
        assert_eq!(run.window_ns(), SECOND);
    }

    #[test]
    fn the_clock_moves_forward_and_says_what_it_is() {
        let clock = Clock::calibrate();
        let first = clock.now_ns();
        assert!(clock.now_ns() >= first);
        let described = clock.describe();
        assert!(described.starts_with("TSC") || described.starts_with("CLOCK_MONOTONIC"), "{described}");
    }
}
