//! [`TimeSource`]: what calibration reads, so the choice between the TSC and the OS clock
//! can be made, and tested, on readings that are not this machine's.

use std::time::{Duration, Instant};

use crate::clock::tsc;

/// The OS monotonic clock, the raw TSC, whatever vouches for the TSC, and a way to let time
/// pass: everything [`super::CalibratedClock::calibrate`] looks at. [`Machine`] reads this
/// machine; tests feed readings with a known frequency, drift, jumps and read costs.
pub(crate) trait TimeSource {
    /// What vouches for the TSC as a clock here, or why nothing does.
    fn tsc_vouched(&self) -> Result<&'static str, String>;
    /// The OS monotonic clock, in nanoseconds from an origin of its own.
    fn os_ns(&mut self) -> u64;
    /// The raw TSC; read only after [`TimeSource::tsc_vouched`] said yes.
    fn tsc(&mut self) -> u64;
    /// Lets `duration` (or a little more) pass.
    fn wait(&mut self, duration: Duration);
}

/// This machine: `CLOCK_MONOTONIC` through `Instant`, RDTSC, and sleeping.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Machine {
    origin: Instant,
}

impl Machine {
    /// OS-clock readings count from `origin`.
    pub(crate) fn since(origin: Instant) -> Machine {
        Machine { origin }
    }
}

impl TimeSource for Machine {
    fn tsc_vouched(&self) -> Result<&'static str, String> {
        tsc::check_stable()
    }

    fn os_ns(&mut self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn tsc(&mut self) -> u64 {
        tsc::read()
    }

    fn wait(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}
