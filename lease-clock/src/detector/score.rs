//! [`ScoreDetector`]: Mu's heartbeat score.

use crate::detector::counter::{CounterChange, CounterTracker};
use crate::detector::{probe_rules_out, set_verdict, FailureDetector, Observation, ReadOutcome, Verdict};
use crate::error::{Error, Result};

/// The score's arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScoreConfig {
    /// Added when the counter changed.
    pub score_up: u32,
    /// Taken away when it did not, or the read failed or timed out.
    pub score_down: u32,
    /// The score's ceiling (and its starting value).
    pub score_max: u32,
    /// Suspect when the score falls below this.
    pub suspect_below: u32,
    /// Trust again when the score climbs to this (at least `suspect_below`: the gap is
    /// hysteresis against flapping).
    pub trust_at: u32,
}

impl Default for ScoreConfig {
    /// Mu's +3 / −1, capped at 6; suspect below 3 (four misses in a row from full
    /// score), trust again at 5 (two changes in a row from the bottom).
    fn default() -> ScoreConfig {
        ScoreConfig { score_up: 3, score_down: 1, score_max: 6, suspect_below: 3, trust_at: 5 }
    }
}

impl ScoreConfig {
    /// Checks that the score can both fall below the threshold and climb back.
    pub fn validate(&self) -> Result<()> {
        if self.score_up == 0 || self.score_down == 0 {
            return Err(Error::config("score_up and score_down must be positive"));
        }
        if self.suspect_below == 0 || self.suspect_below > self.trust_at || self.trust_at > self.score_max {
            return Err(Error::config(format!(
                "need 0 < suspect_below ({}) <= trust_at ({}) <= score_max ({})",
                self.suspect_below, self.trust_at, self.score_max
            )));
        }
        Ok(())
    }

    /// Consecutive misses (unchanged reads, errors, timeouts) that take a full score to
    /// suspicion: the detection bound is this many reads.
    pub fn misses_to_suspect(&self) -> u32 {
        (self.score_max - self.suspect_below) / self.score_down + 1
    }
}

/// Mu's failure detector: a score that heartbeats raise and silence lowers.
#[derive(Clone, Debug)]
pub struct ScoreDetector {
    config: ScoreConfig,
    score: u32,
    counter: CounterTracker,
    verdict: Verdict,
}

impl ScoreDetector {
    /// A detector at full score, trusting. Panics on a config that fails
    /// [`ScoreConfig::validate`].
    pub fn new(config: ScoreConfig) -> ScoreDetector {
        if let Err(error) = config.validate() {
            panic!("{error}");
        }
        ScoreDetector {
            config,
            score: config.score_max,
            counter: CounterTracker::default(),
            verdict: Verdict::Trusted,
        }
    }

    /// The current score.
    pub fn score(&self) -> u32 {
        self.score
    }

    /// What it knows of the peer's counter.
    pub fn counter(&self) -> &CounterTracker {
        &self.counter
    }
}

impl FailureDetector for ScoreDetector {
    fn observe(&mut self, now_ns: u64, observation: Observation) -> Option<Verdict> {
        let (outcome, watched) = match observation {
            Observation::Read(outcome) => (outcome, true),
            Observation::Inconclusive(outcome) => (outcome, false),
            Observation::Probe(probe) if probe_rules_out(probe) => {
                self.score = 0;
                return set_verdict(&mut self.verdict, true, now_ns);
            }
            Observation::Probe(_) | Observation::ObserverStalled { .. } | Observation::PeerLost => {
                return None
            }
        };
        let changed = match outcome {
            ReadOutcome::Value(value) => match self.counter.update(value) {
                CounterChange::First => return None,
                CounterChange::Changed => true,
                CounterChange::Unchanged => false,
            },
            ReadOutcome::Error(_) | ReadOutcome::Timeout => false,
        };
        if !changed && !watched {
            return None;
        }
        let config = &self.config;
        self.score = if changed {
            (self.score + config.score_up).min(config.score_max)
        } else {
            self.score.saturating_sub(config.score_down)
        };
        let suspected = match self.verdict {
            Verdict::Trusted => self.score < config.suspect_below,
            Verdict::Suspected { .. } => self.score < config.trust_at,
        };
        set_verdict(&mut self.verdict, suspected, now_ns)
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
    use usec_verbs::{PeerProbe, Status};

    fn read(detector: &mut ScoreDetector, at: u64, value: u64) -> Option<Verdict> {
        detector.observe(at, ReadOutcome::Value(value).into())
    }

    #[test]
    fn four_misses_suspect_and_two_beats_restore() {
        let mut detector = ScoreDetector::new(ScoreConfig::default());
        assert_eq!(ScoreConfig::default().misses_to_suspect(), 4);
        assert_eq!(read(&mut detector, 0, 10), None, "a baseline");
        assert_eq!(read(&mut detector, 1, 10), None);
        assert_eq!(detector.observe(2, ReadOutcome::Timeout.into()), None);
        assert_eq!(detector.observe(3, ReadOutcome::Error(Status::RetryExceeded).into()), None);
        assert_eq!(detector.score(), 3);
        assert_eq!(read(&mut detector, 4, 10), Some(Verdict::Suspected { since_ns: 4 }));
        assert_eq!(read(&mut detector, 5, 10), None);
        assert_eq!(detector.score(), 1);
        assert_eq!(read(&mut detector, 6, 11), None, "4 is below trust_at");
        assert_eq!(read(&mut detector, 7, 12), Some(Verdict::Trusted));
        assert_eq!(detector.score(), 6);
    }

    #[test]
    fn unwatched_reads_count_only_when_they_show_a_change() {
        let mut detector = ScoreDetector::new(ScoreConfig::default());
        read(&mut detector, 0, 10);
        let unwatched = |detector: &mut ScoreDetector, at, outcome| {
            detector.observe(at, Observation::Inconclusive(outcome))
        };
        for at in 1..=10 {
            assert_eq!(unwatched(&mut detector, at, ReadOutcome::Value(10)), None);
            assert_eq!(unwatched(&mut detector, at, ReadOutcome::Timeout), None);
        }
        assert_eq!(detector.score(), 6, "no evidence of silence");
        for at in 11..=14 {
            read(&mut detector, at, 10);
        }
        assert!(detector.verdict().is_suspected(), "four watched misses");
        assert_eq!(detector.score(), 2);
        let changed = unwatched(&mut detector, 15, ReadOutcome::Value(11));
        assert_eq!(changed, Some(Verdict::Trusted), "a change is evidence of life, watched or not");
    }

    #[test]
    fn a_probe_that_rules_the_peer_out_suspects_at_once() {
        let mut detector = ScoreDetector::new(ScoreConfig::default());
        read(&mut detector, 0, 10);
        assert_eq!(detector.observe(1, Observation::Probe(PeerProbe::Alive)), None);
        assert_eq!(detector.observe(2, Observation::Probe(PeerProbe::Unknown)), None);
        let stopped = detector.observe(3, Observation::Probe(PeerProbe::Stopped));
        assert_eq!(stopped, Some(Verdict::Suspected { since_ns: 3 }));
        read(&mut detector, 4, 11);
        assert_eq!(read(&mut detector, 5, 12), Some(Verdict::Trusted), "resumed: two changes");
        let exiting = detector.observe(6, Observation::Probe(PeerProbe::Exiting));
        assert_eq!(exiting, Some(Verdict::Suspected { since_ns: 6 }));
    }

    #[test]
    fn occasional_misses_do_not_flap() {
        let mut detector = ScoreDetector::new(ScoreConfig::default());
        let mut value = 0;
        for at in 0..1_000 {
            // One read in three sees no change: a peer bumping barely faster than it is read.
            if at % 3 != 0 {
                value += 1;
            }
            assert_eq!(read(&mut detector, at, value), None, "flapped at {at}");
        }
    }

    #[test]
    fn a_restart_is_a_change_and_is_counted() {
        let mut detector = ScoreDetector::new(ScoreConfig::default());
        read(&mut detector, 0, 1_000);
        for at in 1..=4 {
            read(&mut detector, at, 1_000);
        }
        assert!(detector.verdict().is_suspected());
        read(&mut detector, 5, 1);
        read(&mut detector, 6, 2);
        assert_eq!(detector.verdict(), Verdict::Trusted);
        assert_eq!(detector.counter().restarts(), 1);
    }

    #[test]
    fn peer_lost_is_not_its_business_and_bad_configs_are_refused() {
        let mut detector = ScoreDetector::new(ScoreConfig::default());
        assert_eq!(detector.observe(0, Observation::PeerLost), None);
        assert_eq!(detector.tick(1 << 40), None);
        let bad = ScoreConfig { trust_at: 2, ..ScoreConfig::default() };
        assert!(bad.validate().is_err());
        assert!(ScoreConfig { score_down: 0, ..ScoreConfig::default() }.validate().is_err());
    }
}
