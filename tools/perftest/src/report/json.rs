//! `--out_json`: the info block and every row of the table, as JSON.
//!
//! perftest's `--out_json` writes `key: value,` lines that are not JSON (unquoted keys,
//! trailing commas) and keeps only the last size. This file is real JSON with perftest's
//! key names in each row (`MsgSize`, `t_typical`, `BW_average`, ...), rounded as perftest
//! prints them, one row per size, plus the run's facts.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use crate::report::info::TestInfo;
use crate::stats::{BandwidthStats, DurationLatency, LatencyStats};

/// One row of a result table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Row {
    /// A latency row.
    Latency {
        /// Message size.
        size: u64,
        /// Iterations run.
        iterations: u64,
        /// Its figures.
        stats: LatencyStats,
    },
    /// A latency row of a run for a duration.
    LatencyDuration {
        /// Message size.
        size: u64,
        /// Its figures.
        row: DurationLatency,
    },
    /// A bandwidth row.
    Bandwidth(BandwidthStats),
}

impl Row {
    /// The row as perftest's JSON keys name its fields.
    pub fn to_json(self) -> Value {
        match self {
            Row::Latency { size, iterations, stats } => json!({
                "MsgSize": size,
                "n_iterations": iterations,
                "t_min": round(stats.min_us, 2),
                "t_max": round(stats.max_us, 2),
                "t_typical": round(stats.typical_us, 2),
                "t_avg": round(stats.avg_us, 2),
                "t_stdev": round(stats.stdev_us, 2),
                "t_stdev_exact": round(stats.stdev_exact_us, 2),
                "percentile_99": round(stats.p99_us, 2),
                "percentile_99.9": round(stats.p99_9_us, 2),
                "units": "usec",
            }),
            Row::LatencyDuration { size, row } => with_cpu_util(
                json!({
                    "MsgSize": size,
                    "n_iterations": row.iterations,
                    "t_avg": round(row.avg_us, 2),
                    "tps_average": round(row.tps, 2),
                    "units": "usec",
                }),
                row.cpu_util,
            ),
            Row::Bandwidth(stats) => with_cpu_util(
                json!({
                    "MsgSize": stats.size,
                    "n_iterations": stats.iterations,
                    "BW_peak": round(stats.peak, 2),
                    "BW_average": round(stats.average, 2),
                    "MsgRate": round(stats.msg_rate_mpps, 6),
                    "units": stats.units.label(),
                }),
                stats.cpu_util,
            ),
        }
    }
}

/// `row` with perftest's `CPU_util` key when the share was measured.
fn with_cpu_util(mut row: Value, cpu_util: Option<f64>) -> Value {
    if let Some(share) = cpu_util {
        row["CPU_util"] = json!(round(share, 2));
    }
    row
}

/// The whole report.
pub fn document(test: &str, role: &str, info: &TestInfo, rows: &[Row]) -> Value {
    json!({
        "test": test,
        "role": role,
        "test_info": info,
        "results": rows.iter().map(|row| row.to_json()).collect::<Vec<_>>(),
    })
}

/// Writes the report to `path`.
pub fn write(path: &Path, document: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(document).expect("a JSON value always serialises");
    std::fs::write(path, text + "\n")
        .with_context(|| format!("writing the JSON report to {}", path.display()))
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::BandwidthUnits;

    #[test]
    fn rows_use_perftests_keys_and_rounding() {
        let stats = LatencyStats {
            min_us: 1.004,
            max_us: 9.0,
            typical_us: 1.2345,
            avg_us: 1.5,
            stdev_us: 0.0,
            stdev_exact_us: 0.333,
            p99_us: 3.0,
            p99_9_us: 8.0,
        };
        let row = Row::Latency { size: 2, iterations: 1000, stats }.to_json();
        assert_eq!(row["MsgSize"], 2);
        assert_eq!(row["n_iterations"], 1000);
        assert_eq!(row["t_min"], 1.0);
        assert_eq!(row["t_typical"], 1.23);
        assert_eq!(row["percentile_99.9"], 8.0);
        assert_eq!(row["t_stdev_exact"], 0.33);
        let bandwidth = Row::Bandwidth(BandwidthStats {
            size: 65536,
            iterations: 5000,
            peak: 1234.567,
            average: 1000.004,
            msg_rate_mpps: 0.0160001234,
            units: BandwidthUnits::Gigabits,
            cpu_util: Some(12.345),
        })
        .to_json();
        assert_eq!(bandwidth["BW_peak"], 1234.57);
        assert_eq!(bandwidth["BW_average"], 1000.0);
        assert_eq!(bandwidth["MsgRate"], 0.016);
        assert_eq!(bandwidth["units"], "Gb/sec");
        assert_eq!(bandwidth["CPU_util"], 12.35);
    }
}
