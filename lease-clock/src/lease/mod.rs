//! Microsecond leases without synchronised clocks.
//!
//! A [`LeaseGrantor`] hands an exclusive lease of `Δ` nanoseconds to one [`LeaseHolder`]
//! at a time; a holder that believes it holds the lease may act on it (serve a read
//! locally, as uKharon's `Active(M)` check does) without asking anyone. Clocks are not
//! synchronised; each node only knows that its own clock's rate stays within
//! `[1 − ρ, 1 + ρ]` of real time ([`DriftBound`]).
//!
//! # The rule
//!
//! - **Holder**: read the clock *before* sending a request (`a`, the ask time), remember
//!   `a` per request, and on a grant of `Δ` for that request believe the lease until the
//!   own clock reads `a + Δ`: [`LeaseHolder::is_valid`]`(now)` is `now < a + Δ`. Grants
//!   for requests it no longer remembers are ignored.
//! - **Grantor**: read the clock *after* a request arrived (`g`); on granting, refuse every
//!   other holder until its own clock reads `g + W`, with
//!   `W = ⌈Δ·(1 + ρ)/(1 − ρ)⌉ + 1 + slack` ([`DriftBound::grantor_wait_ns`]). A renewal by
//!   the current holder is granted and pushes the end to the later of the two.
//! - **A grantor that (re)starts** without knowing what it granted before, or takes over
//!   from another grantor, waits `W` before its first grant ([`GrantorStart::Recovering`]):
//!   "a new view starts only after Δ plus slack".
//!
//! # Why it is safe
//!
//! Write `t` for real time and `C_h`, `C_g` for the holder's and the grantor's clocks, each
//! with `(1 − ρ)·d ≤ C(t + d) − C(t) ≤ (1 + ρ)·d`. The holder asks at `t_a` (so
//! `C_h(t_a) = a`); the request leaves after that, so the grantor reads `g = C_g(t_g)` at
//! some `t_g ≥ t_a`, however long the messages take.
//!
//! 1. The holder believes at `t` only if `C_h(t) − C_h(t_a) < Δ`, hence
//!    `(1 − ρ)(t − t_a) < Δ`: every instant of belief lies before `t_a + Δ/(1 − ρ)`.
//!    A slow holder clock stretches the lease in real time; that is the worst case.
//! 2. The grantor grants to someone else only at a `t_2` with `C_g(t_2) − C_g(t_g) ≥ W`,
//!    hence `(1 + ρ)(t_2 − t_g) ≥ W − 1` (the `− 1`: integer clocks read up to 1 ns behind
//!    the continuous value). A fast grantor clock shortens its wait in real time; that is
//!    the worst case.
//! 3. With `W − 1 ≥ Δ·(1 + ρ)/(1 − ρ)`, `t_2 ≥ t_g + Δ/(1 − ρ) ≥ t_a + Δ/(1 − ρ)`: the next
//!    holder's grant is sent, let alone received, after the last instant the first holder
//!    can believe. The two beliefs never overlap, whatever the delays (a grant that arrives
//!    late only gives a shorter belief, possibly none), and whatever the clocks' offsets.
//!
//! The whole factor `(1 + ρ)/(1 − ρ)` sits on the grantor: the holder uses the `Δ` it was
//! given, measured from its own ask, so `Δ` is the lease the application sees, and only the
//! handover to another holder pays for drift. `slack` adds margin for what the model leaves
//! out, such as a driver that reads the grantor's clock a little before the request is
//! really in hand (it must not: see below).
//!
//! What drivers must keep, since the proof rests on it:
//!
//! - the holder's `now` for [`LeaseHolder::request`] / [`LeaseHolder::poll_request`] is read
//!   before the request is sent; a later reading would move `t_a` after `t_g`;
//! - the grantor's `now` for [`LeaseGrantor::on_request`] is read after the request was
//!   received (reading it later only makes the grantor more careful);
//! - the holder checks [`LeaseHolder::is_valid`] with a fresh reading right before each
//!   action taken under the lease; a holder that was paused (SIGSTOP, a long preemption)
//!   learns on its next check that the lease is gone.
//!
//! The property tests in `tests/lease_safety/` drive holders and a grantor whose clocks
//! run at adversarial piecewise rates within ρ, with arbitrary message delays, and check
//! that the real-time belief intervals of two holders never overlap; they also check that
//! a grantor that leaves out the drift factor is caught.

mod channel;
mod drift;
mod grantor;
mod holder;
mod message;

pub use channel::LeaseChannel;
pub use drift::DriftBound;
pub use grantor::{GrantorConfig, GrantorStart, LeaseGrantor};
pub use holder::{HolderConfig, LeaseHolder, ReplyEffect};
pub use message::{LeaseMessage, LeaseReply, LeaseRequest};
