//! [`TimeoutDetector`]: uKharon's — no change for too long, or too many failed reads.

use crate::detector::counter::{CounterChange, CounterTracker};
use crate::detector::{probe_rules_out, set_verdict, FailureDetector, Observation, ReadOutcome, Verdict};
use crate::error::{Error, Result};

/// When silence means failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutConfig {
    /// Suspect when no change has been seen for this long.
    pub silence_ns: u64,
    /// Suspect after this many consecutive failed reads (errors or timeouts); 0 turns the
    /// rule off.
    pub failed_reads: u32,
}

impl Default for TimeoutConfig {
    /// 100 µs of silence (a little over three uKharon read periods), or 2 failed reads.
    fn default() -> TimeoutConfig {
        TimeoutConfig { silence_ns: 100_000, failed_reads: 2 }
    }
}

impl TimeoutConfig {
    /// Checks that silence can be noticed at all.
    pub fn validate(&self) -> Result<()> {
        if self.silence_ns == 0 {
            return Err(Error::config("silence_ns must be positive"));
        }
        Ok(())
    }
}

/// Suspects a peer whose counter has not changed for `silence_ns`, or whose reads failed
/// `failed_reads` times in a row; trusts it again on the next change.
#[derive(Clone, Debug)]
pub struct TimeoutDetector {
    config: TimeoutConfig,
    last_change_ns: u64,
    failed_in_a_row: u32,
    counter: CounterTracker,
    verdict: Verdict,
}

impl TimeoutDetector {
    /// A trusting detector whose silence starts counting at `now_ns`. Panics on a config
    /// that fails [`TimeoutConfig::validate`].
    pub fn new(config: TimeoutConfig, now_ns: u64) -> TimeoutDetector {
        if let Err(error) = config.validate() {
            panic!("{error}");
        }
        TimeoutDetector {
            config,
            last_change_ns: now_ns,
            failed_in_a_row: 0,
            counter: CounterTracker::default(),
            verdict: Verdict::Trusted,
        }
    }

    /// When the last change was seen (or the detector started).
    pub fn last_change_ns(&self) -> u64 {
        self.last_change_ns
    }

    /// What it knows of the peer's counter.
    pub fn counter(&self) -> &CounterTracker {
        &self.counter
    }

    fn silent_too_long(&self, now_ns: u64) -> bool {
        now_ns.saturating_sub(self.last_change_ns) >= self.config.silence_ns
    }
}

impl FailureDetector for TimeoutDetector {
    fn observe(&mut self, now_ns: u64, observation: Observation) -> Option<Verdict> {
        let (outcome, watched) = match observation {
            Observation::Read(outcome) => (outcome, true),
            Observation::Inconclusive(outcome) => (outcome, false),
            Observation::ObserverStalled { since_ns } => {
                // Silence is counted in watched time: the stall is left out.
                let stalled_ns = now_ns.saturating_sub(since_ns);
                self.last_change_ns = self.last_change_ns.saturating_add(stalled_ns).min(now_ns);
                return self.tick(now_ns);
            }
            Observation::Probe(probe) if probe_rules_out(probe) => {
                return set_verdict(&mut self.verdict, true, now_ns);
            }
            Observation::Probe(_) | Observation::PeerLost => return self.tick(now_ns),
        };
        match outcome {
            ReadOutcome::Value(value) => {
                self.failed_in_a_row = 0;
                if self.counter.update(value) == CounterChange::Changed {
                    self.last_change_ns = now_ns;
                    return set_verdict(&mut self.verdict, false, now_ns);
                }
            }
            ReadOutcome::Error(_) | ReadOutcome::Timeout if !watched => {}
            ReadOutcome::Error(_) | ReadOutcome::Timeout => {
                self.failed_in_a_row = self.failed_in_a_row.saturating_add(1);
                let limit = self.config.failed_reads;
                if limit > 0 && self.failed_in_a_row >= limit {
                    return set_verdict(&mut self.verdict, true, now_ns);
                }
            }
        }
        self.tick(now_ns)
    }

    fn tick(&mut self, now_ns: u64) -> Option<Verdict> {
        if self.silent_too_long(now_ns) {
            set_verdict(&mut self.verdict, true, now_ns)
        } else {
            None
        }
    }

    fn verdict(&self) -> Verdict {
        self.verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use usec_verbs::Status;

    fn value(detector: &mut TimeoutDetector, at: u64, value: u64) -> Option<Verdict> {
        detector.observe(at, ReadOutcome::Value(value).into())
    }

    #[test]
    fn silence_is_measured_from_the_last_change() {
        let config = TimeoutConfig { silence_ns: 100, failed_reads: 0 };
        let mut detector = TimeoutDetector::new(config, 1_000);
        assert_eq!(value(&mut detector, 1_050, 7), None, "a baseline does not reset the silence");
        assert_eq!(detector.tick(1_099), None);
        assert_eq!(detector.tick(1_100), Some(Verdict::Suspected { since_ns: 1_100 }));
        assert_eq!(value(&mut detector, 1_150, 7), None, "unchanged");
        assert_eq!(value(&mut detector, 1_160, 8), Some(Verdict::Trusted));
        assert_eq!(value(&mut detector, 1_259, 8), None);
        assert_eq!(value(&mut detector, 1_260, 8), Some(Verdict::Suspected { since_ns: 1_260 }));
    }

    #[test]
    fn the_observers_stalls_are_left_out_of_the_silence() {
        let config = TimeoutConfig { silence_ns: 100, failed_reads: 2 };
        let mut detector = TimeoutDetector::new(config, 0);
        value(&mut detector, 10, 7);
        // Silent from 0; the observer did not run from 60 to 1,060: 60 ns of watched
        // silence so far.
        assert_eq!(detector.observe(1_060, Observation::ObserverStalled { since_ns: 60 }), None);
        assert_eq!(detector.observe(1_060, Observation::Inconclusive(ReadOutcome::Timeout)), None);
        assert_eq!(detector.observe(1_061, Observation::Inconclusive(ReadOutcome::Value(7))), None);
        assert_eq!(detector.tick(1_099), None);
        assert_eq!(detector.tick(1_100), Some(Verdict::Suspected { since_ns: 1_100 }), "100 ns watched");
        let changed = detector.observe(1_200, Observation::Inconclusive(ReadOutcome::Value(8)));
        assert_eq!(changed, Some(Verdict::Trusted), "a change is evidence of life, watched or not");
    }

    #[test]
    fn consecutive_failures_suspect_and_a_success_resets_them() {
        let config = TimeoutConfig { silence_ns: 1 << 40, failed_reads: 3 };
        let mut detector = TimeoutDetector::new(config, 0);
        value(&mut detector, 1, 1);
        detector.observe(2, ReadOutcome::Timeout.into());
        detector.observe(3, ReadOutcome::Error(Status::Flushed).into());
        assert_eq!(value(&mut detector, 4, 2), None, "resets the run of failures");
        detector.observe(5, ReadOutcome::Timeout.into());
        detector.observe(6, ReadOutcome::Timeout.into());
        let verdict = detector.observe(7, ReadOutcome::Error(Status::RetryExceeded).into());
        assert_eq!(verdict, Some(Verdict::Suspected { since_ns: 7 }));
        assert_eq!(value(&mut detector, 8, 2), None, "no change, no trust");
        assert_eq!(value(&mut detector, 9, 3), Some(Verdict::Trusted));
    }

    #[test]
    fn flapping_follows_the_counter_and_restarts_count_as_life() {
        let config = TimeoutConfig { silence_ns: 10, failed_reads: 1 };
        let mut detector = TimeoutDetector::new(config, 0);
        value(&mut detector, 0, 1_000);
        let mut changes = Vec::new();
        for round in 1..=5u64 {
            let at = round * 100;
            changes.extend(detector.observe(at, ReadOutcome::Timeout.into()));
            changes.extend(value(&mut detector, at + 1, 100 - round));
        }
        let suspicions = changes.iter().filter(|verdict| verdict.is_suspected()).count();
        assert_eq!(
            (suspicions, changes.len()),
            (5, 10),
            "suspected each round, trusted on each new value: {changes:?}"
        );
        assert_eq!(detector.counter().restarts(), 5);
        assert_eq!(detector.last_change_ns(), 501);
    }
}
