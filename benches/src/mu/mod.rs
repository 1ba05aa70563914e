//! Mu groups of real processes on the soft provider, for the `mu-*` benchmarks.
//!
//! A benchmark starts a [`Group`](launch::Group) of three replicas: replica processes
//! (this binary run again; [`replica`]) and, for the benchmarks that measure in the
//! leader's own loop, this process as replica 0. Every process reads one clock
//! ([`clock::SharedClock`]), so an instant noted in one ([`marks`], noted by an
//! [`observer::Observer`] after each turn) lines up with a signal sent from another. The
//! replicated service is a [`machine::Counter`], as cheap as a state machine gets (or the
//! order book, for `orderbook-replicated`); the
//! group's sizes and timings are [`settings::GroupSettings`].

pub mod clock;
pub mod launch;
pub mod machine;
pub mod marks;
pub mod observer;
pub mod replica;
pub mod settings;
