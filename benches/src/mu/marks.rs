//! [`Mark`]s: what a replica process notes about itself after its turns — suspicions,
//! role changes, the stages of a takeover, its first commit — each with the instant on the
//! [`SharedClock`](crate::mu::clock::SharedClock), so that a benchmark can line them up
//! with a kill sent from another process.

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MarkKind {
    /// Its failure detector began to suspect `peer`.
    Suspected {
        /// The peer's node id.
        peer: u16,
    },
    /// Its failure detector trusts `peer` again.
    Trusted {
        /// The peer's node id.
        peer: u16,
    },
    /// It started a candidacy.
    Candidate,
    /// A majority granted its candidacy their logs (its proposal is chosen): recovery
    /// starts.
    Granted,
    /// It leads.
    Leader,
    /// It follows (stepped down, or granted another candidate).
    Follower {
        /// The leader it follows, if known.
        leader: Option<u16>,
    },
    /// The first command it proposed since its last candidacy was committed.
    FirstCommit,
    /// It granted its log to a candidate.
    GaveGrant,
    /// It learned view `view` (leadership on views): decided by the membership's Paxos.
    ViewLearned {
        /// The view's id.
        view: u64,
    },
    /// Its Active(view) lease on view `view` holds for the first time: every lease on the
    /// views before it has provably run out (leadership on views).
    ViewActive {
        /// The view's id.
        view: u64,
    },
}

/// One noted instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// `CLOCK_MONOTONIC` nanoseconds: the time of the turn in which it happened.
    pub at_ns: u64,
    /// What happened.
    pub kind: MarkKind,
}

/// The marks of one process, bounded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    /// In the order noted.
    pub marks: Vec<Mark>,
    /// Noted after the bound was reached, and dropped.
    pub dropped: u64,
}

/// The most marks a process keeps (a flapping detector would fill memory otherwise).
const MARKS_MAX: usize = 100_000;

impl Marks {
    /// Notes `kind` at `at_ns`.
    pub fn note(&mut self, at_ns: u64, kind: MarkKind) {
        if self.marks.len() < MARKS_MAX {
            self.marks.push(Mark { at_ns, kind });
        } else {
            self.dropped += 1;
        }
    }

    /// The first mark at or after `from_ns` that `matches`.
    pub fn first_after(&self, from_ns: u64, matches: impl Fn(&MarkKind) -> bool) -> Option<&Mark> {
        self.marks.iter().find(|mark| mark.at_ns >= from_ns && matches(&mark.kind))
    }

    /// The marks, one per line, in microseconds relative to `origin_ns` (for failure
    /// reports).
    pub fn describe(&self, origin_ns: u64) -> String {
        let lines: Vec<String> = self
            .marks
            .iter()
            .map(|mark| format!("{:+.1} us {:?}", (mark.at_ns as f64 - origin_ns as f64) / 1e3, mark.kind))
            .collect();
        lines.join("\n")
    }

    /// How many marks at or after `from_ns` match.
    pub fn count_after(&self, from_ns: u64, matches: impl Fn(&MarkKind) -> bool) -> usize {
        self.marks.iter().filter(|mark| mark.at_ns >= from_ns && matches(&mark.kind)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_found_from_an_instant_on() {
        let mut marks = Marks::default();
        marks.note(10, MarkKind::Candidate);
        marks.note(20, MarkKind::Suspected { peer: 0 });
        marks.note(30, MarkKind::Candidate);
        assert_eq!(marks.first_after(11, |kind| *kind == MarkKind::Candidate).unwrap().at_ns, 30);
        assert_eq!(marks.count_after(0, |kind| *kind == MarkKind::Candidate), 2);
        assert!(marks.first_after(31, |_| true).is_none());
        let json = serde_json::to_string(&marks).unwrap();
        assert!(json.contains(r#"{"kind":"suspected","peer":0}"#), "{json}");
        assert_eq!(serde_json::from_str::<Marks>(&json).unwrap(), marks);
    }
}
