//! [`AnyOf`]: several detectors judging one peer together.

use crate::detector::{set_verdict, FailureDetector, Observation, Verdict};

/// Suspects the peer while any of its detectors does (since the earliest of them), and
/// trusts it when none does. Every observation goes to every detector.
///
/// ```
/// use usec_lease_clock::detector::{AnyOf, FailureDetector, Observation, PeerLossDetector, ScoreDetector, Verdict};
///
/// let mut detector = AnyOf::new(vec![
///     Box::new(ScoreDetector::new(Default::default())),
///     Box::new(PeerLossDetector::new()),
/// ]);
/// assert_eq!(detector.observe(10, Observation::PeerLost), Some(Verdict::Suspected { since_ns: 10 }));
/// ```
pub struct AnyOf {
    detectors: Vec<Box<dyn FailureDetector + Send>>,
    verdict: Verdict,
}

impl std::fmt::Debug for AnyOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdicts: Vec<Verdict> = self.detectors.iter().map(|detector| detector.verdict()).collect();
        f.debug_struct("AnyOf").field("verdict", &self.verdict).field("detectors", &verdicts).finish()
    }
}

impl AnyOf {
    /// Combines `detectors` (which should all start trusting).
    pub fn new(detectors: Vec<Box<dyn FailureDetector + Send>>) -> AnyOf {
        let mut any_of = AnyOf { detectors, verdict: Verdict::Trusted };
        any_of.verdict = any_of.combined().unwrap_or(Verdict::Trusted);
        any_of
    }

    /// The verdicts of the parts, in the order given.
    pub fn verdicts(&self) -> impl Iterator<Item = Verdict> + '_ {
        self.detectors.iter().map(|detector| detector.verdict())
    }

    /// The earliest suspicion among the parts, if any suspects.
    fn combined(&self) -> Option<Verdict> {
        self.verdicts()
            .filter_map(|verdict| match verdict {
                Verdict::Suspected { since_ns } => Some(since_ns),
                Verdict::Trusted => None,
            })
            .min()
            .map(|since_ns| Verdict::Suspected { since_ns })
    }

    fn update(&mut self, now_ns: u64) -> Option<Verdict> {
        let suspected = self.combined();
        let since_ns = match suspected {
            Some(Verdict::Suspected { since_ns }) => since_ns,
            _ => now_ns,
        };
        set_verdict(&mut self.verdict, suspected.is_some(), since_ns)
    }
}

impl FailureDetector for AnyOf {
    fn observe(&mut self, now_ns: u64, observation: Observation) -> Option<Verdict> {
        for detector in &mut self.detectors {
            detector.observe(now_ns, observation);
        }
        self.update(now_ns)
    }

    fn tick(&mut self, now_ns: u64) -> Option<Verdict> {
        for detector in &mut self.detectors {
            detector.tick(now_ns);
        }
        self.update(now_ns)
    }

    fn verdict(&self) -> Verdict {
        self.verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{ReadOutcome, TimeoutConfig, TimeoutDetector};

    #[test]
    fn suspects_while_any_part_does() {
        let timeout = TimeoutDetector::new(TimeoutConfig { silence_ns: 100, failed_reads: 0 }, 0);
        let mut detector =
            AnyOf::new(vec![Box::new(timeout), Box::new(crate::detector::PeerLossDetector::new())]);
        detector.observe(1, ReadOutcome::Value(1).into());
        assert_eq!(detector.tick(100), Some(Verdict::Suspected { since_ns: 100 }));
        assert_eq!(detector.observe(120, ReadOutcome::Value(2).into()), Some(Verdict::Trusted));
        assert_eq!(detector.observe(130, Observation::PeerLost), Some(Verdict::Suspected { since_ns: 130 }));
        assert_eq!(detector.observe(140, ReadOutcome::Value(3).into()), None, "the loss is for good");
        assert_eq!(detector.verdicts().filter(Verdict::is_suspected).count(), 1);
    }
}
