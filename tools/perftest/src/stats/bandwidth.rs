//! The bandwidth table's figures, computed as perftest's `print_report_bw`
//! (`src/perftest_parameters.c`, perftest 4.5-0.17, lines 3316-3420) computes them, from
//! nanosecond timestamps instead of CPU cycles.
//!
//! perftest records `tposted[k]` just before posting message `k` (counted over all QPs)
//! and, at each completion, `tcompleted[c - 1]` where `c` is the running count of
//! completed messages (each completion accounts for `cq_mod` messages, capped at the
//! total). Then:
//!
//! - **BW peak** is the size divided by the best per-message time of any run of
//!   consecutive messages that starts at a post and ends at a recorded completion:
//!   `min over i, j of (tcompleted[j] - tposted[i]) / (j - i + 1)`, where `j` goes over the
//!   completion indices at or after `i` (`ROUND_UP(i + 1, cq_mod) - 1`, then every
//!   `cq_mod`, plus the last message when the total is not a multiple of `cq_mod`). perftest
//!   divides whole cycles; this divides nanoseconds in floating point. Without a peak
//!   (`-N`, a duration, more than 20000 iterations, the send_bw server) it is 0.
//! - **BW average** is `size * messages / (tcompleted[last] - tposted[0])`.
//! - **MsgRate** is `messages / (tcompleted[last] - tposted[0])` in millions per second.
//!
//! Bandwidth is in MiB/sec (2^20 bytes, which perftest labels `MB/sec`) or, with
//! `--report_gbits`, in 10^9 bits per second.

use serde::{Deserialize, Serialize};

use crate::settings::BandwidthUnits;

/// One row of the bandwidth table.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BandwidthStats {
    /// Message size in bytes.
    pub size: u64,
    /// Messages counted.
    pub iterations: u64,
    /// Peak bandwidth (0 when not computed).
    pub peak: f64,
    /// Average bandwidth.
    pub average: f64,
    /// Millions of messages per second.
    pub msg_rate_mpps: f64,
    /// The units of `peak` and `average`.
    pub units: BandwidthUnits,
    /// `--cpu_util`: the CPU's user share of a timed run's window, in percent.
    pub cpu_util: Option<f64>,
}

impl BandwidthStats {
    /// The row for `messages` of `size` bytes moved in `window_ns`, whose best
    /// per-message time was `best_message_ns` (`None`: no peak).
    pub fn new(
        size: u64,
        messages: u64,
        window_ns: u64,
        best_message_ns: Option<f64>,
        units: BandwidthUnits,
    ) -> BandwidthStats {
        let window_s = (window_ns as f64 / 1e9).max(f64::MIN_POSITIVE);
        let per_unit = units.bytes_per_unit();
        let peak = match best_message_ns {
            Some(best) if best > 0.0 => size as f64 / (best / 1e9) / per_unit,
            _ => 0.0,
        };
        BandwidthStats {
            size,
            iterations: messages,
            peak,
            average: size as f64 * messages as f64 / window_s / per_unit,
            msg_rate_mpps: messages as f64 / window_s / 1e6,
            units,
            cpu_util: None,
        }
    }
}

/// What a bandwidth sender records: a post time per message and a completion time at
/// each index a completion accounts for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BandwidthTimes {
    posted_ns: Vec<u64>,
    completed_ns: Vec<Option<u64>>,
    cq_mod: u64,
}

impl BandwidthTimes {
    /// Room for `messages` messages completed in groups of `cq_mod`.
    pub fn new(messages: usize, cq_mod: u32) -> BandwidthTimes {
        assert!(cq_mod >= 1, "CQ moderation is at least 1");
        BandwidthTimes {
            posted_ns: vec![0; messages],
            completed_ns: vec![None; messages],
            cq_mod: u64::from(cq_mod),
        }
    }

    /// Message `index` (over all QPs) was posted at `now_ns`.
    #[inline]
    pub fn posted(&mut self, index: u64, now_ns: u64) {
        self.posted_ns[index as usize] = now_ns;
    }

    /// A completion brought the count of completed messages to `completed` at `now_ns`.
    #[inline]
    pub fn completed(&mut self, completed: u64, now_ns: u64) {
        let index = completed.min(self.posted_ns.len() as u64).saturating_sub(1);
        self.completed_ns[index as usize] = Some(now_ns);
    }

    /// From the first post to the last completion.
    pub fn window_ns(&self) -> u64 {
        let last = self.completed_ns.last().copied().flatten().unwrap_or(0);
        last.saturating_sub(self.posted_ns.first().copied().unwrap_or(0))
    }

    /// The best per-message time (perftest's `opt_delta`), if any run could be timed.
    pub fn best_message_ns(&self) -> Option<f64> {
        let total = self.posted_ns.len() as u64;
        let cq_mod = self.cq_mod;
        let mut best: Option<f64> = self.span(0, 0);
        let mut consider = |candidate: Option<f64>| {
            if let Some(value) = candidate {
                best = Some(best.map_or(value, |current| current.min(value)));
            }
        };
        for first in 0..total {
            let mut last = round_up(first + 1, cq_mod) - 1;
            while last < total {
                consider(self.span(first, last));
                last += cq_mod;
            }
            if total % cq_mod != 0 {
                consider(self.span(first, total - 1));
            }
        }
        best
    }

    fn span(&self, first: u64, last: u64) -> Option<f64> {
        let completed = self.completed_ns.get(last as usize).copied().flatten()?;
        let posted = self.posted_ns[first as usize];
        Some(completed.saturating_sub(posted) as f64 / (last - first + 1) as f64)
    }
}

fn round_up(value: u64, alignment: u64) -> u64 {
    value.div_ceil(alignment) * alignment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn averages_and_rates_by_hand() {
        // 1000 messages of 1 MiB in one second: 1000 MiB/s, 0.001 Mpps, 8.388608 Gb/s.
        let mib = BandwidthStats::new(1 << 20, 1000, 1_000_000_000, None, BandwidthUnits::Mebibytes);
        assert!(close(mib.average, 1000.0));
        assert!(close(mib.msg_rate_mpps, 0.001));
        assert_eq!(mib.peak, 0.0);
        let gbits = BandwidthStats::new(1 << 20, 1000, 1_000_000_000, None, BandwidthUnits::Gigabits);
        assert!(close(gbits.average, 8.388608));
        // A best message time of 500 µs for 1 MiB: 2000 MiB/s peak.
        let peak =
            BandwidthStats::new(1 << 20, 1000, 1_000_000_000, Some(500_000.0), BandwidthUnits::Mebibytes);
        assert!(close(peak.peak, 2000.0));
    }

    #[test]
    fn peak_with_a_completion_per_message() {
        // Posts at 0,10,20,30; completions at 100,110,120,130: a steady 10 ns per message
        // after a 100 ns pipeline. Best: all four, (130 - 0) / 4 = 32.5 ns.
        let mut times = BandwidthTimes::new(4, 1);
        for (index, (posted, completed)) in
            [(0, 100), (10, 110), (20, 120), (30, 130)].into_iter().enumerate()
        {
            times.posted(index as u64, posted);
            times.completed(index as u64 + 1, completed);
        }
        assert!(close(times.best_message_ns().unwrap(), 32.5));
        assert_eq!(times.window_ns(), 130);
    }

    #[test]
    fn peak_with_moderation_and_a_ragged_end() {
        // 5 messages, a completion per 2: completions account for 2, 4 and (capped) 5.
        let mut times = BandwidthTimes::new(5, 2);
        for (index, posted) in [0, 1, 2, 3, 4].into_iter().enumerate() {
            times.posted(index as u64, posted);
        }
        times.completed(2, 40); // index 1
        times.completed(4, 44); // index 3
        times.completed(6, 60); // capped: index 4
                                // Candidates (first, last): (0,1)=20 (0,3)=11 (0,4)=12 (1,1)=39 (1,3)=14.33
                                // (1,4)=14.75 (2,3)=21 (2,4)=19.33 (3,3)=41 (3,4)=28.5 (4,4)=56; best 11.
        assert!(close(times.best_message_ns().unwrap(), 11.0));
        assert_eq!(times.window_ns(), 60);
    }

    #[test]
    fn nothing_completed_means_no_peak() {
        let times = BandwidthTimes::new(3, 1);
        assert_eq!(times.best_message_ns(), None);
        assert_eq!(times.window_ns(), 0);
    }
}
