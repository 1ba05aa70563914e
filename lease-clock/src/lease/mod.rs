//! Microsecond leases without synchronised clocks.
//!
//! A [`LeaseGrantor`] hands an exclusive lease of `Δ` nanoseconds to one [`LeaseHolder`]
//! at a time; a holder that believes it holds the lease may act on it (serve a read
//! locally, as uKharon's `Active(M)` check does) without asking anyone. Clocks are not
//! synchronised; each node only knows that its own clock's rate stays within
//! `[1 − ρ, 1 + ρ]` of real time ([`DriftBound`]).
//!
//! An [`ActiveLease`] applies the same rule to a member's view of a membership service,
//! without a grantor: whether the view is still active is cached for `Δ`, and a new view
//! starts only once every lease on an older one has run out
//! ([below](#activeview-leases)).
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
//!
//! # Active(view) leases
//!
//! uKharon's members check, before each action that needs the current membership (a leader
//! serving a read locally), that their view is still *active*. An [`ActiveLease`] answers
//! from a cached deadline, so [`ActiveLease::is_active`] is a comparison, and renews that
//! deadline in the background. There is no grantor: the consensus acceptors that decide
//! views vouch for the current one simply by not having moved on, and a member that learns
//! a new view waits for every lease on the old one to run out.
//!
//! Views are decided one per consensus instance, in order, and numbered by it. View `w` is
//! *compatible* with view `w − 1` when both have the same voting members
//! ([`LeaseView::voters`]: uKharon's `Consensus` members; `Cache` and `App` members may
//! differ). An *epoch* is a run of views each compatible with the one before; its first
//! view `x` is not compatible with `x − 1`. Views of one epoch share their lease; the
//! promise is about views of different epochs:
//!
//! > If member A finds view `v` active at real time `t` and member B finds view `w` active
//! > at real time `t′`, and `v < w` belong to different epochs, then `t < t′`.
//!
//! ## The rule
//!
//! - **Renewal** ([`ActiveLease::poll_renewal`], [`ActiveLease::on_confirmed`]): the member
//!   reads its clock (`a`), then reads the slot of instance `z + 1` at a majority of the
//!   acceptors, each read posted after that; if none of them has accepted anything for an
//!   instance `≥ z + 1` there, view `z` is *confirmed from `a`* and counts until the
//!   member's clock reads `a + Δ`. uKharon's renewal, with `t_issue` read before the reads
//!   are posted; a confirmation of any view of the current epoch counts.
//! - **Start** ([`ActiveLease::on_view_learned`]): a member that learns view `y`, reading
//!   its clock `ℓ` after it knew `y` was decided, lets `y` start at `ℓ + S`, with
//!   `S = ⌈Δ·(1 + ρ)/(1 − ρ)⌉ + 1` ([`DriftBound::view_start_wait_ns`]) — unless `y` is
//!   compatible with `y − 1` and `y − 1` is the view the member held: then `y` inherits
//!   `y − 1`'s start and confirmations, with no wait. Any other newer view replaces the
//!   current one at once, confirmations and all.
//! - **Active**: view `y` is active at local time `now` when `y` is the latest view the
//!   member learned, `now ≥` its start, and `now < a + Δ` for a confirmation from `a` of a
//!   view of `y`'s epoch no later than `y`.
//!
//! What the membership protocol must keep:
//!
//! - **(M1)** an instance is decided only once a majority of the acceptors accepted a value
//!   in it, and an acceptor's slot never goes back to an older instance (a ring of slots is
//!   reused for later instances only);
//! - **(M2)** views are decided in order: instance `i + 1` is proposed only once instance
//!   `i` is decided (the proposer builds view `i + 1` from a view `i` it learned).
//!
//! ## Why it is safe
//!
//! Clocks as in the lease proof above: `(1 − ρ)·d ≤ F(t + d) − F(t) ≤ (1 + ρ)·d` for the
//! continuous clock `F`, read as `C = ⌊F⌋`.
//!
//! 1. A's belief in `v` rests on a confirmation of some view `z ≤ v` of `v`'s epoch, from
//!    `a = C_A(t_a)`. `C_A(t) < a + Δ` gives `F_A(t) − F_A(t_a) < Δ`, so
//!    `t < t_a + Δ/(1 − ρ)`.
//! 2. Let `x` be the first view of `w`'s epoch; `z ≤ v < x ≤ w`. B's start for `w` was set
//!    when B learned some view `y`, at real time `t_y` with `ℓ = C_B(t_y)`, and B then
//!    inherited along `y, y + 1, …, w`, each compatible with the one before. So `y ≥ x`:
//!    were `y < x`, the incompatible step from `x − 1` to `x` would be one of them.
//! 3. The majority A's renewal read and the majority that accepted instance `z + 1` share
//!    an acceptor `q` (M1). When A's read reached `q`, after `t_a`, `q`'s slot held nothing
//!    for `z + 1`; so `q` accepted in instance `z + 1` after `t_a`, and instance `z + 1`
//!    was decided after `t_a`. By (M2) instance `y ≥ z + 1` was decided no earlier, and B
//!    learned `y` no earlier than that: `t_y > t_a`.
//! 4. B finds `w` active only once `C_B(t′) ≥ ℓ + S`, so
//!    `F_B(t′) − F_B(t_y) > S − 1 ≥ Δ·(1 + ρ)/(1 − ρ)` (the `− 1`: `ℓ` trails `F_B(t_y)` by
//!    less than a nanosecond), hence `(1 + ρ)(t′ − t_y) > Δ·(1 + ρ)/(1 − ρ)` and
//!    `t′ > t_y + Δ/(1 − ρ) > t_a + Δ/(1 − ρ) > t`. ∎
//!
//! The learner stands where the grantor stood in the lease proof: its clock is read after
//! something that happened after the holder's ask (here, after an acceptor the renewal
//! read moved on), and it pays the whole drift factor. The failover cost of the lease is
//! therefore `S ≈ Δ + 2ρΔ`: 20 042 ns for Δ = 20 µs at ρ = 1 000 ppm. uKharon waits
//! `Δ + 1 µs` and ends a confirmation at `t_issue + Δ − 1 µs`, with no drift bound: that
//! is safe only while `ρ < 1 µs / Δ` or so (5 % at Δ = 20 µs), an assumption it does not
//! state.
//!
//! What drivers must keep, as for the lease:
//!
//! - a renewal's `issued_at_ns` is read before any of its reads is posted;
//! - the `now` given to [`ActiveLease::on_view_learned`] is read after the member knew the
//!   view was decided (reading it later only makes the member more careful);
//! - [`ActiveLease::is_active`] is checked with a fresh reading right before each action
//!   taken under the view; a member that was paused learns on its next check that its view
//!   is no longer active.
//!
//! A member that learns a view whose predecessor it never saw waits `S` even if the two
//! have the same voters: it cannot tell. The simulation in `tests/sim_active_lease/` runs
//! members with drifting [`SimClock`](crate::clock::SimClock)s, acceptors whose slots are a
//! reused ring, views that change (compatible or not), lost and delayed reads and paused
//! members, and checks the promise above at every instant at which an answer can change;
//! it also catches the rule without the drift factor.

mod active;
mod channel;
mod drift;
mod grantor;
mod holder;
mod message;
mod view;

pub use active::{ActiveConfig, ActiveLease, Renewal, ViewStart};
pub use channel::LeaseChannel;
pub use drift::DriftBound;
pub use grantor::{GrantorConfig, GrantorStart, LeaseGrantor};
pub use holder::{HolderConfig, LeaseHolder, ReplyEffect};
pub use message::{LeaseMessage, LeaseReply, LeaseRequest};
pub use view::{LeaseView, ViewSummary, Voter, VoterSet};
