//! [`TscClock`] and [`CalibratedClock`]: the TSC measured against the OS clock, and the
//! choice between the two.
//!
//! Calibration pairs TSC readings with OS-clock readings at both ends of a short window
//! (each pair is the tightest of several tries: an OS read, the TSC, an OS read), and
//! divides. The uncertainty of the resulting frequency is the width of those brackets over
//! the window. A second, independent window then measures how far the calibrated TSC clock
//! drifts from the OS clock; the TSC is chosen only if that drift stays within
//! [`CalibrationOptions::max_drift_ppm`] (plus the measurement's own uncertainty).

use std::fmt;
use std::time::{Duration, Instant};

use crate::clock::{tsc, Clock, MonotonicClock};
use crate::error::{Error, Result};

/// Fixed-point shift of the nanoseconds-per-tick multiplier.
const SHIFT: u32 = 32;
/// Tries per paired reading; the tightest bracket wins.
const PAIR_TRIES: usize = 9;
/// Reads timed to estimate the cost of one.
const COST_READS: u32 = 100_000;

/// The invariant TSC scaled to nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct TscClock {
    tsc_origin: u64,
    ns_per_tick_fixed: u64,
    frequency_hz: f64,
}

impl TscClock {
    /// A clock on a TSC ticking at `frequency_hz`, reading 0 now. Fails unless the CPU
    /// reports an invariant TSC.
    pub fn with_frequency(frequency_hz: f64) -> Result<TscClock> {
        tsc::check_stable().map_err(|reason| Error::TscUnusable { reason })?;
        if !(1e6..=1e11).contains(&frequency_hz) {
            return Err(Error::TscUnusable { reason: format!("implausible frequency {frequency_hz} Hz") });
        }
        let ns_per_tick_fixed = (1e9 / frequency_hz * f64::from(1u32 << 16) * f64::from(1u32 << 16)) as u64;
        Ok(TscClock { tsc_origin: tsc::read(), ns_per_tick_fixed, frequency_hz })
    }

    /// Measures the TSC's frequency against the OS clock over `window` and returns the
    /// clock with the measurement's relative uncertainty (in ppm).
    pub fn calibrate(window: Duration) -> Result<(TscClock, f64)> {
        tsc::check_stable().map_err(|reason| Error::TscUnusable { reason })?;
        let origin = Instant::now();
        let start = paired_reading(origin, tsc::read);
        std::thread::sleep(window);
        let end = paired_reading(origin, tsc::read);
        let elapsed_ns = end.os_ns.saturating_sub(start.os_ns);
        let ticks = end.tsc.wrapping_sub(start.tsc);
        if elapsed_ns == 0 || ticks == 0 || end.tsc < start.tsc {
            return Err(Error::TscUnusable { reason: "the TSC did not advance during calibration".into() });
        }
        let frequency_hz = ticks as f64 / elapsed_ns as f64 * 1e9;
        let uncertainty_ppm = (start.bracket_ns + end.bracket_ns) as f64 / 2.0 / elapsed_ns as f64 * 1e6;
        Ok((TscClock::with_frequency(frequency_hz)?, uncertainty_ppm))
    }

    /// The frequency it was built with.
    pub fn frequency_hz(&self) -> f64 {
        self.frequency_hz
    }
}

impl Clock for TscClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        // Saturating: a core whose TSC lags the calibrating core's by a few ticks reads the
        // origin instead of wrapping around to the far future.
        let ticks = tsc::read().saturating_sub(self.tsc_origin);
        ((u128::from(ticks) * u128::from(self.ns_per_tick_fixed)) >> SHIFT) as u64
    }
}

/// One reading of the TSC (or of a clock on it) placed between two OS-clock readings.
#[derive(Clone, Copy, Debug)]
struct PairedReading {
    /// The TSC, or the clock read.
    tsc: u64,
    /// Midpoint of the two OS readings, from the calibration's origin.
    os_ns: u64,
    /// Distance between the two OS readings.
    bracket_ns: u64,
}

/// The tightest of [`PAIR_TRIES`] brackets: an OS read, `read()`, an OS read.
fn paired_reading(origin: Instant, read: impl Fn() -> u64) -> PairedReading {
    let mut best: Option<PairedReading> = None;
    for _ in 0..PAIR_TRIES {
        let before = origin.elapsed().as_nanos() as u64;
        let tsc = read();
        let after = origin.elapsed().as_nanos() as u64;
        let reading = PairedReading { tsc, os_ns: before + (after - before) / 2, bracket_ns: after - before };
        if best.is_none_or(|best| reading.bracket_ns < best.bracket_ns) {
            best = Some(reading);
        }
    }
    best.expect("at least one try")
}

/// Which clock to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClockPreference {
    /// The TSC if it is invariant (or the kernel's own clocksource) and calibrates well, else
    /// the OS clock.
    #[default]
    Auto,
    /// The TSC or an error.
    Tsc,
    /// The OS clock, without looking at the TSC.
    Os,
}

/// How [`CalibratedClock::calibrate`] works.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CalibrationOptions {
    /// Which clock to use.
    pub preference: ClockPreference,
    /// The window the TSC frequency is measured over.
    pub window: Duration,
    /// The window over which the calibrated TSC clock is then checked against the OS clock.
    pub verify_window: Duration,
    /// The largest drift from the OS clock (beyond the measurement's own uncertainty) at
    /// which the TSC is still chosen.
    pub max_drift_ppm: f64,
}

impl Default for CalibrationOptions {
    /// Auto; 20 ms to calibrate, 10 ms to verify, 50 ppm allowed.
    fn default() -> CalibrationOptions {
        CalibrationOptions {
            preference: ClockPreference::Auto,
            window: Duration::from_millis(20),
            verify_window: Duration::from_millis(10),
            max_drift_ppm: 50.0,
        }
    }
}

/// Which clock a [`CalibratedClock`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockKind {
    /// The time-stamp counter.
    Tsc,
    /// The OS monotonic clock.
    Os,
}

/// What [`CalibratedClock::calibrate`] chose and measured.
#[derive(Clone, Debug, PartialEq)]
pub struct ClockReport {
    /// The clock chosen.
    pub kind: ClockKind,
    /// Why.
    pub reason: String,
    /// The TSC frequency measured, if it was calibrated.
    pub tsc_frequency_hz: Option<f64>,
    /// The calibration window.
    pub window: Duration,
    /// Relative uncertainty of the frequency (bracket widths over the window), in ppm.
    pub calibration_uncertainty_ppm: Option<f64>,
    /// Drift of the calibrated TSC clock against the OS clock over the verification window,
    /// in ppm (positive: the TSC clock runs fast).
    pub drift_vs_os_ppm: Option<f64>,
    /// The median cost of one read of the chosen clock.
    pub read_cost_ns: f64,
    /// The cost of one read of the OS clock, for comparison.
    pub os_read_cost_ns: f64,
    /// The kernel's current clocksource (`/sys/devices/system/clocksource/...`), if readable.
    pub kernel_clocksource: Option<String>,
}

impl fmt::Display for ClockReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ClockKind::Tsc => "TSC",
            ClockKind::Os => "OS monotonic clock",
        };
        write!(
            f,
            "{kind} ({}); read {:.1} ns (OS clock {:.1} ns)",
            self.reason, self.read_cost_ns, self.os_read_cost_ns
        )?;
        if let Some(hz) = self.tsc_frequency_hz {
            write!(f, "; TSC {:.6} GHz", hz / 1e9)?;
        }
        if let Some(ppm) = self.calibration_uncertainty_ppm {
            write!(f, " ± {ppm:.2} ppm over {:?}", self.window)?;
        }
        if let Some(ppm) = self.drift_vs_os_ppm {
            write!(f, "; drift vs OS {ppm:+.2} ppm")?;
        }
        if let Some(source) = &self.kernel_clocksource {
            write!(f, "; kernel clocksource {source}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Inner {
    Tsc(TscClock),
    Os(MonotonicClock),
}

/// The TSC where it is invariant and calibrates well, else the OS monotonic clock; the
/// choice and the calibration are in its [`ClockReport`].
///
/// ```
/// use usec_lease_clock::clock::{CalibratedClock, Clock};
///
/// let clock = CalibratedClock::calibrate(&Default::default())?;
/// println!("clock: {}", clock.report());
/// let before = clock.now_ns();
/// assert!(clock.now_ns() >= before);
/// # Ok::<(), usec_lease_clock::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct CalibratedClock {
    inner: Inner,
    report: ClockReport,
}

impl CalibratedClock {
    /// Chooses and calibrates. Blocks for about `window + verify_window` when it looks at
    /// the TSC; fails only when [`ClockPreference::Tsc`] was asked for and the TSC is
    /// unusable.
    pub fn calibrate(options: &CalibrationOptions) -> Result<CalibratedClock> {
        let os = MonotonicClock::new();
        let os_read_cost_ns = read_cost_ns(&os);
        let kernel_clocksource =
            std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
                .ok()
                .map(|source| source.trim().to_string());
        let mut report = ClockReport {
            kind: ClockKind::Os,
            reason: String::new(),
            tsc_frequency_hz: None,
            window: options.window,
            calibration_uncertainty_ppm: None,
            drift_vs_os_ppm: None,
            read_cost_ns: os_read_cost_ns,
            os_read_cost_ns,
            kernel_clocksource,
        };
        if options.preference == ClockPreference::Os {
            report.reason = "the OS clock was asked for".into();
            return Ok(CalibratedClock { inner: Inner::Os(os), report });
        }
        match try_tsc(options, &mut report) {
            Ok(tsc) => {
                report.kind = ClockKind::Tsc;
                report.read_cost_ns = read_cost_ns(&tsc);
                Ok(CalibratedClock { inner: Inner::Tsc(tsc), report })
            }
            Err(reason) if options.preference == ClockPreference::Auto => {
                report.reason = format!("TSC rejected: {reason}");
                Ok(CalibratedClock { inner: Inner::Os(os), report })
            }
            Err(reason) => Err(Error::TscUnusable { reason }),
        }
    }

    /// What was chosen and measured.
    pub fn report(&self) -> &ClockReport {
        &self.report
    }

    /// Which clock it reads.
    pub fn kind(&self) -> ClockKind {
        self.report.kind
    }
}

impl Clock for CalibratedClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        match &self.inner {
            Inner::Tsc(clock) => clock.now_ns(),
            Inner::Os(clock) => clock.now_ns(),
        }
    }
}

/// Calibrates the TSC and checks it against the OS clock; fills the report's TSC fields.
fn try_tsc(options: &CalibrationOptions, report: &mut ClockReport) -> std::result::Result<TscClock, String> {
    let vouched_by = tsc::check_stable()?;
    let (clock, uncertainty_ppm) = TscClock::calibrate(options.window).map_err(|err| err.to_string())?;
    report.tsc_frequency_hz = Some(clock.frequency_hz());
    report.calibration_uncertainty_ppm = Some(uncertainty_ppm);
    let origin = Instant::now();
    let start = paired_reading(origin, || clock.now_ns());
    std::thread::sleep(options.verify_window);
    let end = paired_reading(origin, || clock.now_ns());
    let os_elapsed = end.os_ns.saturating_sub(start.os_ns).max(1) as f64;
    let drift_ppm = (end.tsc.saturating_sub(start.tsc) as f64 - os_elapsed) / os_elapsed * 1e6;
    report.drift_vs_os_ppm = Some(drift_ppm);
    let verify_uncertainty_ppm = (start.bracket_ns + end.bracket_ns) as f64 / 2.0 / os_elapsed * 1e6;
    let allowed = options.max_drift_ppm + uncertainty_ppm + verify_uncertainty_ppm;
    if drift_ppm.abs() > allowed {
        return Err(format!("drifted {drift_ppm:+.1} ppm from the OS clock (allowed ±{allowed:.1})"));
    }
    report.reason = format!("{vouched_by}, calibrated against the OS clock");
    Ok(clock)
}

/// The average cost of one read over a tight loop of reads.
fn read_cost_ns(clock: &impl Clock) -> f64 {
    let start = Instant::now();
    let mut sink = 0u64;
    for _ in 0..COST_READS {
        sink = sink.wrapping_add(std::hint::black_box(clock.now_ns()));
    }
    std::hint::black_box(sink);
    start.elapsed().as_nanos() as f64 / f64::from(COST_READS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_clock_is_chosen_when_asked_for() {
        let options = CalibrationOptions { preference: ClockPreference::Os, ..Default::default() };
        let clock = CalibratedClock::calibrate(&options).unwrap();
        assert_eq!(clock.kind(), ClockKind::Os);
        assert!(clock.report().tsc_frequency_hz.is_none());
    }

    #[test]
    fn auto_calibration_tracks_the_os_clock() {
        let clock = CalibratedClock::calibrate(&CalibrationOptions::default()).unwrap();
        eprintln!("{}", clock.report());
        let os = MonotonicClock::new();
        let (clock_start, os_start) = (clock.now_ns(), os.now_ns());
        std::thread::sleep(Duration::from_millis(20));
        let (clock_elapsed, os_elapsed) = (clock.now_ns() - clock_start, os.now_ns() - os_start);
        // Loose: a loaded 2-core VM may preempt between the two reads of either clock.
        let error = clock_elapsed.abs_diff(os_elapsed);
        assert!(error < 2_000_000, "clock measured {clock_elapsed} ns while the OS measured {os_elapsed} ns");
        if tsc::check_stable().is_ok() {
            assert!(clock.report().tsc_frequency_hz.is_some());
        }
    }

    #[test]
    fn tsc_clock_converts_ticks_at_its_frequency() {
        let Ok(clock) = TscClock::with_frequency(2e9) else { return };
        let first = clock.now_ns();
        let second = clock.now_ns();
        assert!(second >= first);
        assert_eq!(clock.ns_per_tick_fixed, 1 << 31, "0.5 ns per tick at 2 GHz");
    }
}
