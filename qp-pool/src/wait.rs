//! The small loop of the completion path: poll, hand completions to the quorum waiter or
//! their owners, and between empty polls let the [`Driver`] spend the time (spin, yield,
//! or move virtual time on).

use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::poller::{CompletionSink, Poller};
use crate::quorum::{QuorumKey, QuorumOutcome, QuorumStatus, QuorumWaiter};

/// Polls until round `key` of `waiter` is met, fails, or `deadline_ns` (on `driver`'s
/// clock) passes. Completions of the waiter's kinds go to it; the others go to `others`.
/// The round stays in flight either way; [`QuorumWaiter::finish`] ends it.
///
/// Returns the outcome when met; [`Error::QuorumImpossible`] as soon as too many peers
/// failed; [`Error::QuorumTimedOut`] at the deadline.
pub fn wait_for(
    poller: &mut Poller,
    waiter: &mut QuorumWaiter,
    key: QuorumKey,
    deadline_ns: u64,
    driver: &mut impl Driver,
    others: &mut dyn CompletionSink,
) -> Result<QuorumOutcome> {
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
        if driver.expired(deadline_ns) {
            let outcome = waiter.outcome(key)?;
            return Err(Error::QuorumTimedOut {
                kind: key.kind,
                sequence: key.sequence,
                acked: outcome.acked.len(),
                need: outcome.need,
                pending: outcome.pending,
            });
        }
        let batch = poller.poll();
        if batch.is_empty() {
            driver.idle(deadline_ns);
        } else {
            driver.busy();
        }
        for polled in batch {
            if !waiter.observe(polled.wr_id, polled.completion.status) {
                others.deliver(&polled);
            }
        }
    }
}
