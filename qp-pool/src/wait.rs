//! The small driver of the completion loop: poll, hand completions to the quorum waiter
//! or their owners, and between empty polls either spin or, after a while, yield the core
//! so that several loops can share two.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::poller::{CompletionSink, Poller};
use crate::quorum::{QuorumKey, QuorumOutcome, QuorumStatus, QuorumWaiter};

/// What a loop does when a poll finds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollMode {
    /// Poll again at once: lowest latency, one core per loop.
    Spin,
    /// Poll again at once `spins` times, then yield the core after each empty poll until
    /// something arrives: a little latency for sharing cores between loops.
    SpinThenYield {
        /// Empty polls before yielding.
        spins: u32,
    },
}

/// Counts empty polls and applies a [`PollMode`].
#[derive(Clone, Debug)]
pub struct Idle {
    mode: PollMode,
    empty_polls: u32,
}

impl Idle {
    /// Nothing counted yet.
    pub fn new(mode: PollMode) -> Idle {
        Idle { mode, empty_polls: 0 }
    }

    /// A poll found something.
    pub fn busy(&mut self) {
        self.empty_polls = 0;
    }

    /// A poll found nothing: spins, or yields the core once past the spin budget.
    pub fn idle(&mut self) {
        self.empty_polls = self.empty_polls.saturating_add(1);
        match self.mode {
            PollMode::Spin => std::hint::spin_loop(),
            PollMode::SpinThenYield { spins } if self.empty_polls <= spins => std::hint::spin_loop(),
            PollMode::SpinThenYield { .. } => std::thread::yield_now(),
        }
    }
}

/// Polls until round `key` of `waiter` is met, fails, or `deadline` passes. Completions of
/// the waiter's kinds go to it; the others go to `others`. The round stays in flight
/// either way; [`QuorumWaiter::finish`] ends it.
///
/// Returns the outcome when met; [`Error::QuorumImpossible`] as soon as too many peers
/// failed; [`Error::QuorumTimedOut`] at the deadline.
pub fn wait_for(
    poller: &mut Poller,
    waiter: &mut QuorumWaiter,
    key: QuorumKey,
    mode: PollMode,
    deadline: Instant,
    others: &mut dyn CompletionSink,
) -> Result<QuorumOutcome> {
    let mut idle = Idle::new(mode);
    let mut polls: u32 = 0;
    loop {
        match waiter.status(key)? {
            QuorumStatus::Met => return waiter.outcome(key),
            QuorumStatus::Impossible => {
                let outcome = waiter.outcome(key)?;
                return Err(Error::QuorumImpossible {
                    kind: key.kind,
                    sequence: key.sequence,
                    acked: outcome.acked.len(),
                    failed: outcome.failed,
                    need: outcome.need,
                });
            }
            QuorumStatus::Pending { .. } => {}
        }
        let batch = poller.poll();
        if batch.is_empty() {
            idle.idle();
        } else {
            idle.busy();
        }
        for polled in batch {
            if !waiter.observe(polled.wr_id, polled.completion.status) {
                others.deliver(&polled);
            }
        }
        // The clock is read every 64 polls: cheap enough, fine-grained enough.
        polls = polls.wrapping_add(1);
        if polls % 64 == 0 && Instant::now() >= deadline {
            let outcome = waiter.outcome(key)?;
            if outcome.is_met() {
                return Ok(outcome);
            }
            return Err(Error::QuorumTimedOut {
                kind: key.kind,
                sequence: key.sequence,
                acked: outcome.acked.len(),
                need: outcome.need,
                pending: outcome.pending,
            });
        }
    }
}
