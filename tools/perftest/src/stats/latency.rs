//! The latency table's figures, computed as perftest's `print_report_lat`
//! (`src/perftest_parameters.c`, perftest 4.5-0.17 / "6.06", lines 3678-3790) computes them,
//! from nanosecond timestamps instead of CPU cycles.
//!
//! perftest takes a timestamp just before each post; a sample is the time between two
//! consecutive posts, so `n` iterations give `n - 1` samples, each one full round trip. It
//! sorts them and drops the two largest (`LAT_MEASURE_TAIL`); with `m` samples left:
//!
//! - `t_min` is the smallest sample, `t_max` the first dropped one (`delta[m]`: the second
//!   largest of all);
//! - `t_typical` is the median of the `m`: the middle one, or for even `m` the mean of the
//!   two middle ones in whole cycles (here whole nanoseconds);
//! - `t_avg` is the mean of the `m`;
//! - `t_stdev` is `sqrt(sum(d_i^2) / m)` where `d_i` is the deviation from the mean
//!   truncated to an integer number of microseconds, because perftest keeps it in an `int`
//!   (so deviations under 1 µs count as 0); [`LatencyStats::stdev_exact_us`] is the
//!   untruncated one;
//! - the 99% and 99.9% percentiles are the samples at 0-based ranks `ceil(m * 0.99)` and
//!   `ceil(m * 0.999)` of the sorted samples (which may land on a dropped one).
//!
//! Every figure is divided by the round trip factor (2 for WRITE and SEND ping-pongs, whose
//! round trip holds two one-way trips; 1 for READ and atomics) and printed in µs. The
//! percentiles are read from an `hdrhistogram` of all samples at those ranks (4
//! significant digits, reported as the middle of the sample's bucket: exact below
//! 32.768 µs of round trip, within 0.005% above).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// perftest's `LAT_MEASURE_TAIL`: the largest samples left out of the statistics.
const MEASURE_TAIL: usize = 2;
/// Significant digits of the histogram.
const SIGNIFICANT_DIGITS: u8 = 4;

/// The figures of one row of the latency table, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Smallest sample.
    pub min_us: f64,
    /// perftest's `t_max`: the second largest sample.
    pub max_us: f64,
    /// Median of the kept samples.
    pub typical_us: f64,
    /// Mean of the kept samples.
    pub avg_us: f64,
    /// perftest's standard deviation (deviations truncated to whole µs).
    pub stdev_us: f64,
    /// The standard deviation without perftest's truncation.
    pub stdev_exact_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p99_9_us: f64,
}

impl LatencyStats {
    /// The statistics of the round trips between consecutive `post_times_ns`, each
    /// divided by `rtt_factor`. `None` with fewer than four timestamps (perftest's minimum
    /// of five iterations always gives enough).
    pub fn from_post_times(post_times_ns: &[u64], rtt_factor: u32) -> Option<LatencyStats> {
        let samples: Vec<u64> =
            post_times_ns.windows(2).map(|pair| pair[1].saturating_sub(pair[0])).collect();
        LatencyStats::from_round_trips(&samples, rtt_factor)
    }

    /// The statistics of round-trip samples in nanoseconds, in any order.
    pub fn from_round_trips(samples_ns: &[u64], rtt_factor: u32) -> Option<LatencyStats> {
        if samples_ns.len() <= MEASURE_TAIL {
            return None;
        }
        let mut histogram =
            Histogram::<u64>::new(SIGNIFICANT_DIGITS).expect("4 significant digits are valid");
        for &sample in samples_ns {
            histogram.record(sample).expect("an auto-resizing histogram takes any u64");
        }
        let mut sorted = samples_ns.to_vec();
        sorted.sort_unstable();
        let kept = sorted.len() - MEASURE_TAIL;
        let quotient = 1000.0 * f64::from(rtt_factor);
        let to_us = |ns: u64| ns as f64 / quotient;

        let median_ns =
            if kept % 2 == 0 { (sorted[kept / 2] + sorted[kept / 2 - 1]) / 2 } else { sorted[kept / 2] };
        let avg_us = sorted[..kept].iter().map(|&ns| to_us(ns)).sum::<f64>() / kept as f64;
        let truncated_square_sum: f64 = sorted[..kept]
            .iter()
            .map(|&ns| {
                // perftest: `int temp_var = average - x; int pow_var = pow(temp_var, 2);`
                let deviation = (avg_us - to_us(ns)).trunc();
                deviation * deviation
            })
            .sum();
        let exact_square_sum: f64 = sorted[..kept].iter().map(|&ns| (avg_us - to_us(ns)).powi(2)).sum();
        let rank_99 = (kept as f64 * 0.99).ceil() as usize;
        let rank_99_9 = (kept as f64 * 0.999).ceil() as usize;
        Some(LatencyStats {
            min_us: to_us(sorted[0]),
            max_us: to_us(sorted[kept]),
            typical_us: to_us(median_ns),
            avg_us,
            stdev_us: (truncated_square_sum / kept as f64).sqrt(),
            stdev_exact_us: (exact_square_sum / kept as f64).sqrt(),
            p99_us: to_us(value_at_rank(&histogram, rank_99)),
            p99_9_us: to_us(value_at_rank(&histogram, rank_99_9)),
        })
    }
}

/// The value of the sample at 0-based `rank` of the sorted samples, as the middle of its
/// bucket in the histogram's resolution.
pub fn value_at_rank(histogram: &Histogram<u64>, rank: usize) -> u64 {
    let wanted = rank as u64 + 1;
    let mut seen = 0;
    for bucket in histogram.iter_recorded() {
        seen += bucket.count_at_value();
        if seen >= wanted {
            return histogram.median_equivalent(bucket.value_iterated_to());
        }
    }
    histogram.median_equivalent(histogram.max())
}

/// A duration-mode latency row (perftest's `print_report_lat_duration`): the mean one-way
/// (or full, for READ and atomics) latency over the sampled window, and transactions per
/// second.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DurationLatency {
    /// Iterations completed in the window.
    pub iterations: u64,
    /// `window / rtt_factor / iterations`, in µs.
    pub avg_us: f64,
    /// Iterations per second.
    pub tps: f64,
    /// `--cpu_util`: the CPU's user share of the window, in percent.
    pub cpu_util: Option<f64>,
}

impl DurationLatency {
    /// The row for `iterations` completed in `window_ns`.
    pub fn new(iterations: u64, window_ns: u64, rtt_factor: u32) -> DurationLatency {
        let window_us = window_ns as f64 / 1000.0;
        let iterations_f = iterations.max(1) as f64;
        DurationLatency {
            iterations,
            avg_us: window_us / f64::from(rtt_factor) / iterations_f,
            tps: iterations as f64 / (window_us / 1_000_000.0).max(f64::MIN_POSITIVE),
            cpu_util: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// Within the histogram's resolution.
    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 5e-5
    }

    #[test]
    fn hand_computed_odd_count() {
        // 10 timestamps -> 9 round trips; the two largest (90 and 50 µs) are dropped.
        let times: Vec<u64> =
            [0, 10, 22, 32, 44, 54, 104, 114, 204, 215].iter().map(|us| us * 1000).collect();
        // samples: 10 12 10 12 10 50 10 90 11 -> sorted 10 10 10 10 11 12 12 | 50 90
        let stats = LatencyStats::from_post_times(&times, 1).unwrap();
        assert!(close(stats.min_us, 10.0));
        assert!(close(stats.max_us, 50.0), "t_max is the first dropped sample");
        assert!(close(stats.typical_us, 10.0), "median of 7 is the 4th");
        let mean = (10.0 * 4.0 + 11.0 + 12.0 * 2.0) / 7.0; // 10.714...
        assert!(close(stats.avg_us, mean));
        // Truncated deviations: 0 0 0 0 0 -1 -1 -> sqrt(2/7).
        assert!(close(stats.stdev_us, (2.0f64 / 7.0).sqrt()));
        let exact =
            [10.0, 10.0, 10.0, 10.0, 11.0, 12.0, 12.0].iter().map(|x: &f64| (x - mean).powi(2)).sum::<f64>();
        assert!(close(stats.stdev_exact_us, (exact / 7.0).sqrt()));
        // ceil(7 * 0.99) = 7 and ceil(7 * 0.999) = 7: both land on the first dropped sample.
        assert!(near(stats.p99_us, 50.0), "{}", stats.p99_us);
        assert!(near(stats.p99_9_us, 50.0));
    }

    #[test]
    fn hand_computed_even_count_and_round_trip_factor() {
        // 6 round trips of 1000..=6000 ns (given out of order); 4 kept: 1000 2000 3000 4000.
        let samples = [6000, 1000, 5000, 2000, 4000, 3000];
        let stats = LatencyStats::from_round_trips(&samples, 2).unwrap();
        // Halved: kept 0.5 1 1.5 2; median (2000 + 3000) / 2 ns = 2500 ns -> 1.25 µs.
        assert!(close(stats.min_us, 0.5));
        assert!(close(stats.typical_us, 1.25));
        assert!(close(stats.avg_us, 1.25));
        assert!(close(stats.max_us, 2.5));
        // Deviations 0.75 0.25 -0.25 -0.75 all truncate to 0.
        assert!(close(stats.stdev_us, 0.0));
        assert!(close(stats.stdev_exact_us, (0.3125f64).sqrt()));
        // ceil(4 * 0.99) = 4: the first dropped sample (5000 ns -> 2.5 µs).
        assert!(near(stats.p99_us, 2.5), "{}", stats.p99_us);
    }

    #[test]
    fn even_medians_round_down_to_whole_nanoseconds() {
        let samples = [1001, 1002, 1004, 1007, 9999, 9999];
        let stats = LatencyStats::from_round_trips(&samples, 1).unwrap();
        // Kept 1001 1002 1004 1007: (1002 + 1004) / 2 = 1003 ns.
        assert!(close(stats.typical_us, 1.003));
        // An odd sum halves downwards: (1001 + 1002) / 2 = 1001 ns.
        let halved = LatencyStats::from_round_trips(&[1000, 1001, 1002, 1003, 9999, 9999], 1).unwrap();
        assert!(close(halved.typical_us, 1.001));
        let odd = LatencyStats::from_round_trips(&[1001, 1002, 1003, 1004, 1005, 9999, 9999], 1).unwrap();
        assert!(close(odd.typical_us, 1.003));
    }

    #[test]
    fn percentiles_land_on_perftests_ranks() {
        // 1002 samples: 1..=1000 µs plus two huge ones; m = 1000 kept.
        let mut samples: Vec<u64> = (1..=1000).map(|us| us * 1000).collect();
        samples.extend([5_000_000, 6_000_000]);
        let stats = LatencyStats::from_round_trips(&samples, 1).unwrap();
        // rank ceil(990) = 990 -> the 991st smallest = 991 µs; rank 999 -> 1000 µs.
        assert!(near(stats.p99_us, 991.0), "{}", stats.p99_us);
        assert!(near(stats.p99_9_us, 1000.0), "{}", stats.p99_9_us);
        assert!(close(stats.typical_us, 500.5));
        assert!(close(stats.max_us, 5000.0));
    }

    #[test]
    fn ranks_are_exact_in_the_histograms_unit_range() {
        let mut histogram = Histogram::<u64>::new(SIGNIFICANT_DIGITS).unwrap();
        for value in [5, 3, 3, 9, 1] {
            histogram.record(value).unwrap();
        }
        let ranked: Vec<u64> = (0..5).map(|rank| value_at_rank(&histogram, rank)).collect();
        assert_eq!(ranked, vec![1, 3, 3, 5, 9]);
        assert_eq!(value_at_rank(&histogram, 99), 9);
    }

    #[test]
    fn too_few_samples_give_nothing() {
        assert!(LatencyStats::from_round_trips(&[1, 2], 1).is_none());
        assert!(LatencyStats::from_post_times(&[0, 1, 2], 1).is_none());
        assert!(LatencyStats::from_post_times(&[0, 1, 2, 3], 1).is_some());
    }

    #[test]
    fn duration_rows() {
        // 1000 ping-pongs in 10 ms: 10 µs round trips, 5 µs one way, 100k per second.
        let row = DurationLatency::new(1000, 10_000_000, 2);
        assert!(close(row.avg_us, 5.0));
        assert!(close(row.tps, 100_000.0));
    }
}
