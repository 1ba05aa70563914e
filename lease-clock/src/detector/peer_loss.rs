//! [`PeerLossDetector`]: the provider says the peer is gone.

use crate::detector::{set_verdict, FailureDetector, Observation, Verdict};

/// Suspects its peer the moment the provider reports it lost
/// ([`usec_verbs::AsyncEventKind::PeerLost`]), and never trusts it again: a lost process
/// does not come back, and a restarted one is a new peer with new connections.
///
/// On the soft provider this is the fastest detector there is: the provider's watcher
/// thread sleeps on the peer's pidfd, which the kernel makes readable as the process
/// exits. It says nothing about a peer that hangs or is paused; combine it with a
/// counter-based detector ([`crate::detector::AnyOf`]).
#[derive(Clone, Copy, Debug)]
pub struct PeerLossDetector {
    verdict: Verdict,
}

impl PeerLossDetector {
    /// A trusting detector.
    pub fn new() -> PeerLossDetector {
        PeerLossDetector { verdict: Verdict::Trusted }
    }
}

impl Default for PeerLossDetector {
    fn default() -> PeerLossDetector {
        PeerLossDetector::new()
    }
}

impl FailureDetector for PeerLossDetector {
    fn observe(&mut self, now_ns: u64, observation: Observation) -> Option<Verdict> {
        match observation {
            Observation::PeerLost => set_verdict(&mut self.verdict, true, now_ns),
            _ => None,
        }
    }

    fn tick(&mut self, _now_ns: u64) -> Option<Verdict> {
        None
    }

    fn verdict(&self) -> Verdict {
        self.verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::ReadOutcome;

    #[test]
    fn suspects_at_once_and_for_good() {
        let mut detector = PeerLossDetector::new();
        assert_eq!(detector.observe(5, ReadOutcome::Timeout.into()), None);
        assert_eq!(detector.observe(7, Observation::PeerLost), Some(Verdict::Suspected { since_ns: 7 }));
        assert_eq!(detector.observe(8, Observation::PeerLost), None);
        assert_eq!(detector.observe(9, ReadOutcome::Value(1).into()), None);
        assert_eq!(detector.observe(10, ReadOutcome::Value(2).into()), None);
        assert_eq!(detector.verdict(), Verdict::Suspected { since_ns: 7 });
    }
}
