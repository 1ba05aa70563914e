//! What was refused, kept for diagnosis: bounded, so that a flood of bad connections costs
//! a counter and not memory.

/// Refusals remembered of each kind; later ones are only counted.
const KEPT: usize = 32;

/// One kind of refusal: the first few reasons, and how many more there were.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    reasons: Vec<String>,
    dropped: usize,
}

impl Kept {
    /// Remembers `reason`, or counts it once enough are kept.
    pub(crate) fn push(&mut self, reason: String) {
        if self.reasons.len() < KEPT {
            self.reasons.push(reason);
        } else {
            self.dropped += 1;
        }
    }

    /// The reasons kept.
    pub(crate) fn reasons(&self) -> &[String] {
        &self.reasons
    }

    /// The reasons kept, and a line counting those that were not.
    pub(crate) fn report(&self, what: &str) -> Vec<String> {
        let mut lines = self.reasons.clone();
        if self.dropped > 0 {
            lines.push(format!("{} more {what} not kept", self.dropped));
        }
        lines
    }
}

/// The refusals of one set of connections.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// Connections refused for what they claimed or sent (the reason says which).
    pub(crate) rejected: Kept,
    /// Connections refused for failing the cluster key check, whatever id they claimed:
    /// kept apart, so that no node is blamed for them.
    pub(crate) impostors: Kept,
}
