//! Failure detectors: sans-IO judges of one peer each, fed with what was observed of it.
//!
//! Every detector implements [`FailureDetector`]: it takes [`Observation`]s with the time
//! they were made ([`FailureDetector::observe`]), may change its mind as time passes with
//! nothing observed ([`FailureDetector::tick`]), and reports each change of its
//! [`Verdict`]. What they observe:
//!
//! - reads of the peer's heartbeat counter ([`ReadOutcome`]: the value, an error
//!   completion, or no completion in time), which [`crate::heartbeat::HeartbeatReader`]
//!   produces from RDMA READs;
//! - the provider's own word that the peer is gone ([`Observation::PeerLost`]: the soft
//!   provider sees a process exit through a pidfd, the sim provider reports a crash);
//! - what the provider sees of the peer's process when asked after a silent read
//!   ([`Observation::Probe`]: the soft provider reads /proc, where a killed process is
//!   exiting and a stopped one stopped microseconds after the signal, long before the
//!   exit is reported);
//! - the observer's own stalls: a read made after the observer itself was not running for
//!   a while is [`Observation::Inconclusive`] — only a change counts, as evidence of
//!   life — and the stall is [`Observation::ObserverStalled`], time that silence-measuring
//!   detectors leave out. Silence is evidence of failure only if someone was watching;
//!   and, with a patience, only if the peer could have run (see
//!   [`crate::heartbeat::HeartbeatMonitor::with_alive_patience`]).
//!
//! The detectors:
//!
//! - [`ScoreDetector`] (Mu's): +`score_up` when the counter changed, −`score_down` when it
//!   did not or the read failed, clamped to `0..=score_max`; suspect below `suspect_below`,
//!   trust again at `trust_at` or above. Tolerant of a slow read or two.
//! - [`TimeoutDetector`] (uKharon's): suspect when the counter has not changed for
//!   `silence_ns`, or after `failed_reads` consecutive errors or timeouts.
//! - [`PeerLossDetector`]: suspect at once, and for good, on `PeerLost`.
//! - [`AnyOf`]: suspect when any of several detectors does.
//!
//! # Semantics shared by the counter-based detectors
//!
//! - A *change* is any value different from the previous one read. A counter that wraps
//!   (2^64 bumps: never in practice) or goes backwards (the peer restarted and counts
//!   from 0 again: a new incarnation) is a change, i.e. evidence of life. Telling
//!   incarnations apart is the membership layer's business; detectors count restarts
//!   ([`CounterTracker::restarts`]) for it to look at.
//! - The first value read is a baseline, not a change: a detector starts trusting, and a
//!   peer that never beats is suspected like one that stopped.
//! - The peer must bump its counter more often than it is read, or a healthy peer reads as
//!   unchanged now and then (the score detector absorbs the odd miss; the timeout detector
//!   only measures time since the last change).

mod any_of;
mod counter;
mod peer_loss;
mod score;
mod timeout;

pub use any_of::AnyOf;
pub use counter::{CounterChange, CounterTracker, HeartbeatCounter};
pub use peer_loss::PeerLossDetector;
pub use score::{ScoreConfig, ScoreDetector};
pub use timeout::{TimeoutConfig, TimeoutDetector};

use usec_verbs::{PeerProbe, Status};

/// How one read of a peer's heartbeat counter ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadOutcome {
    /// The read completed with this value.
    Value(u64),
    /// The read completed with an error (a dead or unreachable peer: `RetryExceeded`; a
    /// broken connection: `Flushed`; …).
    Error(Status),
    /// The read did not complete within the reader's timeout.
    Timeout,
}

/// What a detector is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Observation {
    /// A heartbeat read ended, and the observer ran throughout the span it covers.
    Read(ReadOutcome),
    /// A heartbeat read ended, but what it found is no evidence of silence: the observer
    /// itself stalled during the span it covers (see [`crate::heartbeat::HeartbeatReader`];
    /// a peer that shares the observer's core was held up as long), or the provider says
    /// the silent peer's process is alive and not stopped — waiting for a CPU, at worst —
    /// and the monitor's patience for that is not spent
    /// ([`crate::heartbeat::HeartbeatMonitor::with_alive_patience`]). A changed value is
    /// evidence of life all the same; nothing else counts.
    Inconclusive(ReadOutcome),
    /// The observer was not running from `since_ns` until now: silence over that time was
    /// not watched. Detectors that measure silence in time leave it out.
    ObserverStalled {
        /// When the stall began (the observer's last call before it).
        since_ns: u64,
    },
    /// The provider reports that the peer is gone.
    PeerLost,
    /// What the provider saw of the peer's process when asked, after a silent read
    /// ([`usec_verbs::PeerProbe`]): `Exiting` or `Stopped` is certain evidence that it
    /// does not run, and every counter-based detector suspects at once; a later change of
    /// the counter (a stopped peer resumed) restores trust as usual.
    Probe(PeerProbe),
}

impl From<ReadOutcome> for Observation {
    fn from(outcome: ReadOutcome) -> Observation {
        Observation::Read(outcome)
    }
}

/// What a detector thinks of its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Alive, as far as it can tell.
    Trusted,
    /// Suspected of having failed since `since_ns` (the observation or tick that decided).
    Suspected {
        /// When the detector started suspecting.
        since_ns: u64,
    },
}

impl Verdict {
    /// Whether this is [`Verdict::Suspected`].
    pub fn is_suspected(&self) -> bool {
        matches!(self, Verdict::Suspected { .. })
    }
}

/// A sans-IO failure detector for one peer. Times are nanoseconds of the caller's clock
/// and never decrease from one call to the next.
pub trait FailureDetector {
    /// Takes in what was observed at `now_ns`; returns the new verdict if it changed.
    fn observe(&mut self, now_ns: u64, observation: Observation) -> Option<Verdict>;

    /// Lets time pass with nothing observed; returns the new verdict if it changed.
    fn tick(&mut self, now_ns: u64) -> Option<Verdict>;

    /// The current verdict.
    fn verdict(&self) -> Verdict;
}

impl<D: FailureDetector + ?Sized> FailureDetector for Box<D> {
    fn observe(&mut self, now_ns: u64, observation: Observation) -> Option<Verdict> {
        (**self).observe(now_ns, observation)
    }

    fn tick(&mut self, now_ns: u64) -> Option<Verdict> {
        (**self).tick(now_ns)
    }

    fn verdict(&self) -> Verdict {
        (**self).verdict()
    }
}

/// Whether a probe shows the peer's process cannot be running: exiting, or stopped.
fn probe_rules_out(probe: PeerProbe) -> bool {
    matches!(probe, PeerProbe::Exiting | PeerProbe::Stopped)
}

/// Moves `verdict` to `suspected` (keeping the first `since_ns`) and says whether it changed.
fn set_verdict(verdict: &mut Verdict, suspected: bool, now_ns: u64) -> Option<Verdict> {
    let next = match (*verdict, suspected) {
        (Verdict::Trusted, true) => Verdict::Suspected { since_ns: now_ns },
        (Verdict::Suspected { .. }, false) => Verdict::Trusted,
        _ => return None,
    };
    *verdict = next;
    Some(next)
}
