//! Timing round trips and summarising them from an `hdrhistogram`.

use std::fmt;
use std::time::Instant;

use anyhow::{Context as _, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Significant decimal digits the histograms keep (0.1 % resolution).
const SIGNIFICANT_DIGITS: u8 = 3;

/// Percentiles of a latency distribution, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p99_9_ns: u64,
    /// Smallest sample.
    pub min_ns: u64,
    /// Largest sample.
    pub max_ns: u64,
    /// Mean.
    pub mean_ns: f64,
}

impl LatencySummary {
    /// Summarises `histogram` (values in nanoseconds).
    pub fn of(histogram: &Histogram<u64>) -> LatencySummary {
        LatencySummary {
            count: histogram.len(),
            p50_ns: histogram.value_at_quantile(0.5),
            p99_ns: histogram.value_at_quantile(0.99),
            p99_9_ns: histogram.value_at_quantile(0.999),
            min_ns: histogram.min(),
            max_ns: histogram.max(),
            mean_ns: histogram.mean(),
        }
    }
}

impl fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {} ns  p99 {} ns  p99.9 {} ns  min {} ns  max {} ns",
            self.p50_ns, self.p99_ns, self.p99_9_ns, self.min_ns, self.max_ns
        )
    }
}

/// A histogram of nanosecond latencies.
#[derive(Debug)]
pub struct Recorder {
    histogram: Histogram<u64>,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recorder that grows to any value.
    pub fn new() -> Recorder {
        Recorder { histogram: Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits is valid") }
    }

    /// Records one latency.
    pub fn record_ns(&mut self, latency_ns: u64) {
        self.histogram.record(latency_ns).expect("an auto-resizing histogram takes any u64");
    }

    /// The histogram itself.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    /// Its percentiles.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary::of(&self.histogram)
    }

    /// Adds what `other` recorded (another thread's share of a run).
    pub fn merge(&mut self, other: &Recorder) {
        self.histogram.add(&other.histogram).expect("auto-resizing histograms take any values");
    }
}

/// Numbers round trips from 1 across any number of blocks and times them.
#[derive(Debug)]
pub struct RoundTrips {
    next_iteration: u64,
    recorder: Recorder,
}

impl Default for RoundTrips {
    fn default() -> RoundTrips {
        RoundTrips::new()
    }
}

impl RoundTrips {
    /// No round trips yet; the first will be number 1.
    pub fn new() -> RoundTrips {
        RoundTrips { next_iteration: 1, recorder: Recorder::new() }
    }

    /// The number of the last round trip run (0 before any).
    pub fn last_iteration(&self) -> u64 {
        self.next_iteration - 1
    }

    /// What has been recorded.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Runs `warmup` then `iterations` round trips, numbered on from the last one, and
    /// records half of each measured one (RTT/2) in nanoseconds. `round_trip(n)` performs
    /// round trip number `n`.
    ///
    /// Each round trip is timed on its own with [`Instant`] (two clock reads, whose cost is
    /// part of every sample; see [`crate::run_info::timer_overhead_ns`]). Warm-up round
    /// trips are run the same way and not recorded.
    pub fn run(
        &mut self,
        warmup: u64,
        iterations: u64,
        mut round_trip: impl FnMut(u64) -> Result<()>,
    ) -> Result<()> {
        for _ in 0..warmup {
            let iteration = self.next_iteration;
            round_trip(iteration).with_context(|| format!("warm-up round trip {iteration}"))?;
            self.next_iteration += 1;
        }
        for _ in 0..iterations {
            let iteration = self.next_iteration;
            let start = Instant::now();
            round_trip(iteration).with_context(|| format!("round trip {iteration}"))?;
            let round_trip_ns = start.elapsed().as_nanos();
            self.recorder.record_ns(u64::try_from(round_trip_ns / 2).unwrap_or(u64::MAX));
            self.next_iteration += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_the_percentiles() {
        let mut recorder = Recorder::new();
        for value in 1..=1000 {
            recorder.record_ns(value);
        }
        let summary = recorder.summary();
        assert_eq!(summary.count, 1000);
        assert_eq!((summary.min_ns, summary.max_ns), (1, 1000));
        assert_eq!(summary.p50_ns, 500);
        assert_eq!(summary.p99_ns, 990);
        assert_eq!(summary.p99_9_ns, 999);
    }

    #[test]
    fn round_trips_are_numbered_across_blocks_and_warm_up_is_not_recorded() {
        let mut seen = Vec::new();
        let mut round_trips = RoundTrips::new();
        round_trips
            .run(3, 5, |n| {
                seen.push(n);
                Ok(())
            })
            .unwrap();
        round_trips
            .run(1, 2, |n| {
                seen.push(n);
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, (1..=11).collect::<Vec<u64>>());
        assert_eq!(round_trips.last_iteration(), 11);
        assert_eq!(round_trips.recorder().summary().count, 7);
        let failing = RoundTrips::new().run(0, 5, |n| if n == 2 { anyhow::bail!("boom") } else { Ok(()) });
        assert!(format!("{:#}", failing.unwrap_err()).contains("round trip 2"));
    }
}
