//! What the tool prints: perftest's layout, plus the run's facts.

pub mod info;
pub mod json;
pub mod table;

pub use info::{AddressLine, InlineOrReads, TestInfo, WAITING_BANNER};
pub use json::Row;
pub use table::RESULT_LINE;

/// One row as the table prints it.
pub fn render_row(row: &Row) -> String {
    match row {
        Row::Latency { size, iterations, stats } => table::latency_row(*size, *iterations, stats),
        Row::LatencyDuration { size, row } => table::latency_duration_row(*size, row),
        Row::Bandwidth(stats) => table::bandwidth_row(stats),
    }
}
