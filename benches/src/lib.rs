//! Latency harnesses for usec: two pinned processes, `hdrhistogram` percentiles, a
//! baseline measured in the same run, and JSON reports.
//!
//! A benchmark binary is short: its `main` first asks [`peer::role`] whether it was
//! started as somebody's peer and, if so, serves that role (each scenario in
//! [`ping_pong`] has a `serve_peer`); otherwise it parses its options, pins itself
//! ([`pinning`]), runs the scenarios — each spawns its own peer process ([`peer::Peer`])
//! — and prints a [`report::Report`] whose last line is the ratio of the candidate's
//! median to the baseline's.
//!
//! The pieces also work alone. Timing round trips and reading percentiles:
//!
//! ```
//! use usec_benches::latency::RoundTrips;
//!
//! let mut round_trips = RoundTrips::new();
//! let mut exchanged = 0;
//! for _block in 0..2 {
//!     // 10 warm-up round trips, then 500 timed ones; numbering goes on across blocks.
//!     round_trips.run(10, 500, |_iteration| {
//!         exchanged += 1; // one round trip would go here
//!         Ok(())
//!     })?;
//! }
//! assert_eq!(exchanged, 1_020); // warm-up included
//! let summary = round_trips.recorder().summary(); // RTT/2 of the 1,000 timed ones
//! assert_eq!(summary.count, 1_000);
//! assert!(summary.min_ns <= summary.p50_ns && summary.p50_ns <= summary.p99_ns);
//! println!("{summary}");
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Figures from debug builds are never to be reported; [`run_info::RunInfo`] records the
//! build, the commit and the machine so that every report says what it was measured on.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod latency;
pub mod message;
pub mod mu;
pub mod order_stream;
pub mod peer;
pub mod ping_pong;
pub mod pinning;
pub mod plot;
pub mod report;
pub mod run_info;
pub mod spin;

/// The device a benchmark uses unless told otherwise: a soft fabric of its own.
pub fn default_soft_device(requested: Option<String>) -> String {
    requested.unwrap_or_else(|| format!("soft:usec-benches-{}", std::process::id()))
}
