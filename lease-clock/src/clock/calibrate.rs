//! [`TscClock`] and [`CalibratedClock`]: the TSC measured against the OS clock, and the
//! choice between the two.
//!
//! Calibration pairs TSC readings with OS-clock readings at both ends of a short window
//! (each pair is the tightest of several tries: an OS read, the TSC, an OS read), and
//! divides. The uncertainty of the resulting frequency is the width of those brackets over
//! the window. A second, independent window then measures how far the calibrated TSC clock
//! drifts from the OS clock; the TSC is chosen only if that drift stays within
//! [`CalibrationOptions::max_drift_ppm`] (plus the measurement's own uncertainty).
//!
//! The decision reads only a [`TimeSource`], so its tests run on synthetic clocks with a
//! known frequency, drift and jumps, in no time.

use std::fmt;
use std::time::{Duration, Instant};

use crate::clock::source::{Machine, TimeSource};
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
        TscClock::starting_at(frequency_hz, tsc::read()).map_err(|reason| Error::TscUnusable { reason })
    }

    /// A clock on a TSC ticking at `frequency_hz` that reads 0 when the TSC reads
    /// `tsc_origin`.
    fn starting_at(frequency_hz: f64, tsc_origin: u64) -> std::result::Result<TscClock, String> {
        if !(1e6..=1e11).contains(&frequency_hz) {
            return Err(format!("implausible frequency {frequency_hz} Hz"));
        }
        let ns_per_tick_fixed = (1e9 / frequency_hz * f64::from(1u32 << 16) * f64::from(1u32 << 16)) as u64;
        Ok(TscClock { tsc_origin, ns_per_tick_fixed, frequency_hz })
    }

    /// Measures the TSC's frequency against the OS clock over `window` and returns the
    /// clock with the measurement's relative uncertainty (in ppm).
    pub fn calibrate(window: Duration) -> Result<(TscClock, f64)> {
        let mut machine = Machine::since(Instant::now());
        machine.tsc_vouched().map_err(|reason| Error::TscUnusable { reason })?;
        measure(&mut machine, window).map_err(|reason| Error::TscUnusable { reason })
    }

    /// The frequency it was built with.
    pub fn frequency_hz(&self) -> f64 {
        self.frequency_hz
    }

    /// What the clock reads when the TSC reads `tsc`. Saturating: a core whose TSC lags
    /// the calibrating core's by a few ticks reads the origin instead of wrapping around to
    /// the far future.
    fn ns_at(&self, tsc: u64) -> u64 {
        let ticks = tsc.saturating_sub(self.tsc_origin);
        ((u128::from(ticks) * u128::from(self.ns_per_tick_fixed)) >> SHIFT) as u64
    }
}

impl Clock for TscClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.ns_at(tsc::read())
    }
}

/// Measures the TSC of `source` against its OS clock over `window`: the clock, and the
/// relative uncertainty of its frequency in ppm.
fn measure(source: &mut impl TimeSource, window: Duration) -> std::result::Result<(TscClock, f64), String> {
    let start = paired_reading(source, |tsc| tsc);
    source.wait(window);
    let end = paired_reading(source, |tsc| tsc);
    let elapsed_ns = end.os_ns.saturating_sub(start.os_ns);
    if elapsed_ns == 0 || end.tsc <= start.tsc {
        return Err("the TSC did not advance during calibration".into());
    }
    let frequency_hz = (end.tsc - start.tsc) as f64 / elapsed_ns as f64 * 1e9;
    let uncertainty_ppm = (start.bracket_ns + end.bracket_ns) as f64 / 2.0 / elapsed_ns as f64 * 1e6;
    Ok((TscClock::starting_at(frequency_hz, end.tsc)?, uncertainty_ppm))
}

/// One reading of the TSC (or of a clock on it) placed between two OS-clock readings.
#[derive(Clone, Copy, Debug)]
struct PairedReading {
    /// The TSC, or the clock read.
    tsc: u64,
    /// Midpoint of the two OS readings.
    os_ns: u64,
    /// Distance between the two OS readings.
    bracket_ns: u64,
}

/// The tightest of [`PAIR_TRIES`] brackets: an OS read, the TSC (through `convert`), an OS
/// read.
fn paired_reading(source: &mut impl TimeSource, convert: impl Fn(u64) -> u64) -> PairedReading {
    let mut best: Option<PairedReading> = None;
    for _ in 0..PAIR_TRIES {
        let before = source.os_ns();
        let tsc = convert(source.tsc());
        let after = source.os_ns();
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
        let (tsc, mut report) = choose(options, &mut Machine::since(os.origin()))?;
        report.os_read_cost_ns = read_cost_ns(&os);
        report.read_cost_ns = match &tsc {
            Some(tsc) => read_cost_ns(tsc),
            None => report.os_read_cost_ns,
        };
        report.kernel_clocksource =
            std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
                .ok()
                .map(|source| source.trim().to_string());
        let inner = match tsc {
            Some(tsc) => Inner::Tsc(tsc),
            None => Inner::Os(os),
        };
        Ok(CalibratedClock { inner, report })
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

/// The decision, on `source`'s readings: the TSC clock if it is chosen (`None`: the OS
/// clock), and the report without the read costs and the kernel's clocksource, which the
/// caller measures on the clocks themselves.
fn choose(
    options: &CalibrationOptions,
    source: &mut impl TimeSource,
) -> Result<(Option<TscClock>, ClockReport)> {
    let mut report = ClockReport {
        kind: ClockKind::Os,
        reason: String::new(),
        tsc_frequency_hz: None,
        window: options.window,
        calibration_uncertainty_ppm: None,
        drift_vs_os_ppm: None,
        read_cost_ns: 0.0,
        os_read_cost_ns: 0.0,
        kernel_clocksource: None,
    };
    if options.preference == ClockPreference::Os {
        report.reason = "the OS clock was asked for".into();
        return Ok((None, report));
    }
    match try_tsc(options, source, &mut report) {
        Ok(tsc) => {
            report.kind = ClockKind::Tsc;
            Ok((Some(tsc), report))
        }
        Err(reason) if options.preference == ClockPreference::Auto => {
            report.reason = format!("TSC rejected: {reason}");
            Ok((None, report))
        }
        Err(reason) => Err(Error::TscUnusable { reason }),
    }
}

/// Calibrates the TSC and checks it against the OS clock; fills the report's TSC fields.
fn try_tsc(
    options: &CalibrationOptions,
    source: &mut impl TimeSource,
    report: &mut ClockReport,
) -> std::result::Result<TscClock, String> {
    let vouched_by = source.tsc_vouched()?;
    let (clock, uncertainty_ppm) = measure(source, options.window)?;
    report.tsc_frequency_hz = Some(clock.frequency_hz());
    report.calibration_uncertainty_ppm = Some(uncertainty_ppm);
    let start = paired_reading(source, |tsc| clock.ns_at(tsc));
    source.wait(options.verify_window);
    let end = paired_reading(source, |tsc| clock.ns_at(tsc));
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
    //! The decision on synthetic readings: a TSC of known frequency, drift, jumps and read
    //! costs, on a time line that only moves when something is read or waited for. No
    //! test here reads a real clock or sleeps.

    use super::*;

    const GHZ_2_4: f64 = 2.4e9;

    /// What happens to the TSC during one wait: its rate against the true one, and ticks
    /// added (or taken) at its end.
    #[derive(Clone, Copy, Debug)]
    struct Wait {
        rate: f64,
        jump_ticks: f64,
    }

    const STEADY: Wait = Wait { rate: 1.0, jump_ticks: 0.0 };

    /// The cost of one read in nanoseconds, by the read's number and the waits done.
    type Cost = Box<dyn Fn(u32, usize) -> u64>;

    /// A machine in a test. The OS clock reads true time exactly; the TSC counts `hz`
    /// ticks per true second, or as `waits` say during each wait. A read returns the value
    /// at its start and takes its cost.
    struct Synthetic {
        now_ns: u64,
        ticks: f64,
        hz: f64,
        waits: Vec<Wait>,
        waits_done: usize,
        os_read_ns: Cost,
        tsc_read_ns: Cost,
        os_reads: u32,
        tsc_reads: u32,
        vouched: std::result::Result<&'static str, String>,
    }

    impl Synthetic {
        /// A steady TSC at `hz`; OS reads take 30 ns and TSC reads 10 ns.
        fn new(hz: f64) -> Synthetic {
            Synthetic {
                now_ns: 1_000_000_000,
                ticks: 1e12,
                hz,
                waits: Vec::new(),
                waits_done: 0,
                os_read_ns: Box::new(|_, _| 30),
                tsc_read_ns: Box::new(|_, _| 10),
                os_reads: 0,
                tsc_reads: 0,
                vouched: Ok("a synthetic TSC"),
            }
        }

        fn pass(&mut self, ns: u64, rate: f64) {
            self.now_ns += ns;
            self.ticks += ns as f64 * self.hz / 1e9 * rate;
        }
    }

    impl TimeSource for Synthetic {
        fn tsc_vouched(&self) -> std::result::Result<&'static str, String> {
            self.vouched.clone()
        }

        fn os_ns(&mut self) -> u64 {
            let value = self.now_ns;
            let cost = (self.os_read_ns)(self.os_reads, self.waits_done);
            self.os_reads += 1;
            self.pass(cost, 1.0);
            value
        }

        fn tsc(&mut self) -> u64 {
            assert!(self.vouched.is_ok(), "the TSC was read though nothing vouched for it");
            let value = self.ticks as u64;
            let cost = (self.tsc_read_ns)(self.tsc_reads, self.waits_done);
            self.tsc_reads += 1;
            self.pass(cost, 1.0);
            value
        }

        fn wait(&mut self, duration: Duration) {
            let wait = self.waits.get(self.waits_done).copied().unwrap_or(STEADY);
            self.pass(u64::try_from(duration.as_nanos()).unwrap(), wait.rate);
            self.ticks = (self.ticks + wait.jump_ticks).max(0.0);
            self.waits_done += 1;
        }
    }

    fn options(preference: ClockPreference) -> CalibrationOptions {
        CalibrationOptions { preference, ..CalibrationOptions::default() }
    }

    fn relative_error_ppm(measured: f64, truth: f64) -> f64 {
        (measured / truth - 1.0) * 1e6
    }

    /// The uncertainty is the bracket width over the window: between `bracket / (window +
    /// slack)` and `bracket / window`, where the paired readings took up to `slack_ns`.
    fn assert_uncertainty(report: &ClockReport, bracket_ns: f64, slack_ns: f64) {
        let window_ns = report.window.as_nanos() as f64;
        let uncertainty = report.calibration_uncertainty_ppm.unwrap();
        let (low, high) = (bracket_ns / (window_ns + slack_ns) * 1e6, bracket_ns / window_ns * 1e6);
        assert!((low..=high).contains(&uncertainty), "{uncertainty} ppm, expected {low}..={high}");
    }

    #[test]
    fn a_steady_tsc_is_chosen_at_its_frequency() {
        let mut source = Synthetic::new(GHZ_2_4);
        let (tsc, report) = choose(&options(ClockPreference::Auto), &mut source).unwrap();
        eprintln!("{report}");
        assert_eq!(report.kind, ClockKind::Tsc);
        assert!(report.reason.starts_with("a synthetic TSC"), "{}", report.reason);
        let measured = report.tsc_frequency_hz.unwrap();
        // The TSC sits at the same place in every bracket, so the brackets cancel: left is
        // one tick of rounding over the window's 48 million.
        assert!(relative_error_ppm(measured, GHZ_2_4).abs() < 0.05, "{measured} Hz");
        assert_eq!(tsc.unwrap().frequency_hz(), measured);
        assert_uncertainty(&report, 40.0, 1_000.0);
        assert!(report.drift_vs_os_ppm.unwrap().abs() < 0.05, "{report}");
    }

    #[test]
    fn the_worst_placed_readings_stay_within_the_stated_uncertainty() {
        // At the calibration's start the TSC is read at the end of a 1 µs bracket (a slow
        // OS read before it), at its end at the start (a slow TSC read): the measured
        // interval is a full bracket longer than the TSC's. The verification's reads are
        // instant, so its own uncertainty is zero.
        let mut source = Synthetic::new(GHZ_2_4);
        source.os_read_ns = Box::new(|read, _| if read < 18 { 1_000 } else { 0 });
        source.tsc_read_ns = Box::new(|read, _| if (9..18).contains(&read) { 1_000 } else { 0 });
        let options = CalibrationOptions { max_drift_ppm: 10.0, ..options(ClockPreference::Auto) };
        let (_, report) = choose(&options, &mut source).unwrap();
        eprintln!("{report}");
        let error = relative_error_ppm(report.tsc_frequency_hz.unwrap(), GHZ_2_4).abs();
        let uncertainty = report.calibration_uncertainty_ppm.unwrap();
        assert_uncertainty(&report, 1_000.0, 20_000.0);
        // The bound holds, and is tight: this is the worst case it allows.
        assert!(error <= uncertainty * (1.0 + 1e-6), "error {error} ppm beyond ±{uncertainty} ppm");
        assert!(error >= uncertainty * 0.99, "error {error} ppm, far inside ±{uncertainty} ppm");
        // The error shows as drift, beyond the 10 ppm allowed for drift itself but within
        // the allowance for the calibration's own uncertainty: the TSC is kept.
        let drift = report.drift_vs_os_ppm.unwrap();
        assert!((drift - uncertainty).abs() < 0.1, "drift {drift} ppm");
        assert_eq!(report.kind, ClockKind::Tsc);
    }

    #[test]
    fn the_tightest_bracket_of_each_reading_is_used() {
        // Of the nine tries of every paired reading (two OS reads each), only the third is
        // quick: 60 ns against 5 µs.
        let mut source = Synthetic::new(GHZ_2_4);
        source.os_read_ns = Box::new(|read, _| if matches!(read % 18, 4 | 5) { 50 } else { 5_000 });
        let (_, report) = choose(&options(ClockPreference::Auto), &mut source).unwrap();
        assert_uncertainty(&report, 60.0, 100_000.0);
        assert!(relative_error_ppm(report.tsc_frequency_hz.unwrap(), GHZ_2_4).abs() < 0.05);
    }

    #[test]
    fn drift_within_the_bound_keeps_the_tsc() {
        let mut source = Synthetic::new(GHZ_2_4);
        source.waits = vec![STEADY, Wait { rate: 1.0 + 30e-6, jump_ticks: 0.0 }];
        let (tsc, report) = choose(&options(ClockPreference::Auto), &mut source).unwrap();
        let drift = report.drift_vs_os_ppm.unwrap();
        assert!((drift - 30.0).abs() < 0.1, "drift {drift} ppm");
        assert!(tsc.is_some() && report.kind == ClockKind::Tsc, "{report}");
    }

    #[test]
    fn drift_beyond_the_bound_falls_back_to_the_os_clock() {
        let drifting = || {
            let mut source = Synthetic::new(GHZ_2_4);
            source.waits = vec![STEADY, Wait { rate: 1.0 - 200e-6, jump_ticks: 0.0 }];
            source
        };
        let (tsc, report) = choose(&options(ClockPreference::Auto), &mut drifting()).unwrap();
        eprintln!("{report}");
        assert!(tsc.is_none() && report.kind == ClockKind::Os);
        let drift = report.drift_vs_os_ppm.unwrap();
        assert!((drift + 200.0).abs() < 0.1, "drift {drift} ppm");
        assert!(report.reason.starts_with("TSC rejected: drifted -200.0 ppm"), "{}", report.reason);
        assert!(report.tsc_frequency_hz.is_some(), "what was measured is still reported");
        match choose(&options(ClockPreference::Tsc), &mut drifting()) {
            Err(Error::TscUnusable { reason }) => assert!(reason.starts_with("drifted"), "{reason}"),
            other => panic!("the TSC was required: {other:?}"),
        }
    }

    #[test]
    fn a_tsc_jump_during_verification_is_caught() {
        let mut source = Synthetic::new(GHZ_2_4);
        // 1 ms of ticks at once, in a 10 ms verification window.
        source.waits = vec![STEADY, Wait { rate: 1.0, jump_ticks: GHZ_2_4 / 1e3 }];
        let (tsc, report) = choose(&options(ClockPreference::Auto), &mut source).unwrap();
        assert!(tsc.is_none(), "{report}");
        // 1 ms over the window and its readings' microsecond.
        let drift = report.drift_vs_os_ppm.unwrap();
        assert!((drift - 100_000.0).abs() < 100.0, "drift {drift} ppm");
        assert!(report.reason.starts_with("TSC rejected: drifted +99"), "{}", report.reason);
    }

    #[test]
    fn a_tsc_that_goes_backwards_or_stands_still_is_refused() {
        let mut backwards = Synthetic::new(GHZ_2_4);
        backwards.waits = vec![Wait { rate: 1.0, jump_ticks: -1e9 }];
        let mut stopped = Synthetic::new(0.0);
        for mut source in [backwards, stopped] {
            let (tsc, report) = choose(&options(ClockPreference::Auto), &mut source).unwrap();
            assert!(tsc.is_none());
            assert_eq!(report.reason, "TSC rejected: the TSC did not advance during calibration");
            assert_eq!(report.tsc_frequency_hz, None);
        }
        stopped = Synthetic::new(0.0);
        assert!(matches!(
            choose(&options(ClockPreference::Tsc), &mut stopped),
            Err(Error::TscUnusable { reason }) if reason.contains("did not advance")
        ));
    }

    #[test]
    fn an_implausible_frequency_is_refused() {
        let (tsc, report) = choose(&options(ClockPreference::Auto), &mut Synthetic::new(1e5)).unwrap();
        assert!(tsc.is_none());
        assert!(report.reason.starts_with("TSC rejected: implausible frequency"), "{}", report.reason);
    }

    #[test]
    fn a_tsc_nothing_vouches_for_is_never_read() {
        let unvouched = || {
            let mut source = Synthetic::new(GHZ_2_4);
            source.vouched = Err("CPUID says the TSC is not invariant".into());
            source
        };
        let mut source = unvouched();
        let (tsc, report) = choose(&options(ClockPreference::Auto), &mut source).unwrap();
        assert!(tsc.is_none());
        assert_eq!(report.reason, "TSC rejected: CPUID says the TSC is not invariant");
        assert_eq!((source.tsc_reads, source.waits_done), (0, 0));
        assert!(matches!(
            choose(&options(ClockPreference::Tsc), &mut unvouched()),
            Err(Error::TscUnusable { reason }) if reason.contains("not invariant")
        ));
    }

    #[test]
    fn the_os_clock_is_chosen_when_asked_for_without_looking_at_the_tsc() {
        let mut source = Synthetic::new(GHZ_2_4);
        let (tsc, report) = choose(&options(ClockPreference::Os), &mut source).unwrap();
        assert!(tsc.is_none() && report.kind == ClockKind::Os);
        assert_eq!(report.reason, "the OS clock was asked for");
        assert_eq!(report.tsc_frequency_hz, None);
        assert_eq!((source.os_reads, source.tsc_reads, source.waits_done), (0, 0, 0));
    }

    #[test]
    fn tsc_clock_converts_ticks_at_its_frequency() {
        let origin = 5_000_000;
        let two_ghz = TscClock::starting_at(2e9, origin).unwrap();
        assert_eq!(two_ghz.ns_at(origin), 0);
        assert_eq!(two_ghz.ns_at(origin + 2_000_000_000), 1_000_000_000);
        assert_eq!(two_ghz.ns_at(origin - 7), 0, "a lagging TSC reads the origin");
        // 1/3 ns per tick is not exact in fixed point: under 1 ns off per second, for an hour.
        let three_ghz = TscClock::starting_at(3e9, origin).unwrap();
        let hour_ns = 3_600_000_000_000u64;
        assert!(three_ghz.ns_at(origin + 3 * hour_ns).abs_diff(hour_ns) <= 3_600);
        assert!(TscClock::starting_at(1e5, 0).is_err() && TscClock::starting_at(2e11, 0).is_err());
    }
}
