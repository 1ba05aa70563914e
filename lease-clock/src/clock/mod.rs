//! Clocks: where the `now_ns` that every role of this crate is driven with comes from.
//!
//! Protocol cores never read a clock; drivers do, through [`Clock`], and pass the value in.
//! Every clock here is monotonic and counts nanoseconds from an arbitrary origin of its
//! own, so two clocks (two processes, two nodes) are never compared with each other, only
//! intervals measured on one of them. The leases of this crate rely on nothing more than a
//! bound on how fast such intervals may drift from real time (see [`crate::lease`]).
//!
//! - [`MonotonicClock`]: the OS monotonic clock (`CLOCK_MONOTONIC` through
//!   `std::time::Instant`).
//! - [`TscClock`]: the CPU's time-stamp counter, where it is invariant (or the kernel's own
//!   clocksource, as in VMs that hide the invariant bit), calibrated against the OS clock; a read costs a handful of nanoseconds and no system call.
//! - [`CalibratedClock`]: the TSC where it can be trusted, the OS clock otherwise, with a
//!   [`ClockReport`] that says which, why, and how well it was calibrated.
//! - [`SimClock`]: the virtual time of a [`usec_verbs::sim::SimFabric`], optionally running
//!   fast or slow by a fixed rate, to put drift into simulations.
//! - [`ManualClock`]: set by hand, for tests.
//!
//! [`Clock`], [`MonotonicClock`] and [`ManualClock`] are `usec_qp_pool::clock`'s, so a
//! clock of this crate drives qp-pool's loops ([`usec_qp_pool::BusyPoll`]) as it is.

mod calibrate;
mod sim;
mod source;
mod tsc;

pub use calibrate::{CalibratedClock, CalibrationOptions, ClockKind, ClockPreference, ClockReport, TscClock};
pub use sim::SimClock;
// The trait and the plain clocks live in `usec-qp-pool`, whose completion loop reads them
// too (this crate depends on it, not the other way round); they are the same items.
pub use usec_qp_pool::clock::{Clock, ManualClock, MonotonicClock};
