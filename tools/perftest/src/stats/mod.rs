//! The figures of perftest's tables, from timestamps: pure functions, tested against
//! hand-computed values.

pub mod bandwidth;
pub mod latency;

pub use bandwidth::{BandwidthStats, BandwidthTimes};
pub use latency::{DurationLatency, LatencyStats};
