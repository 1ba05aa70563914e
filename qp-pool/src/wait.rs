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
        let batch = poller.poll();
        if !batch.is_empty() {
            driver.busy();
            for polled in batch {
                if !waiter.observe(polled.wr_id, polled.completion.status) {
                    others.deliver(&polled);
                }
            }
            continue;
        }
        // The deadline is checked after a poll, never between the driver's idling and the
        // next poll: what arrived meanwhile counts.
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
        driver.idle(deadline_ns);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use usec_verbs::sim::SimFabric;
    use usec_verbs::{AccessFlags, ConnectOptions, Payload, QpOptions, Region, RemoteAddr, SendWr};

    use super::*;
    use crate::driver::SimDriver;
    use crate::role::RoleId;
    use crate::spec::NodeId;
    use crate::wr_id::WrId;
    use crate::wr_kind::WrKind;

    /// On the sim provider a poll of an empty CQ runs the fabric's next event, so one poll
    /// over two CQs can put a completion into the CQ it read first: the batch comes back
    /// empty with the completion waiting. The wait must look again before it lets virtual
    /// time jump to its deadline.
    #[test]
    fn a_completion_that_lands_behind_the_poll_is_seen_at_once() {
        let fabric = SimFabric::create("qp-pool-wait-two-cqs", 3).unwrap();
        let ((_, writer), (_, target)) = (fabric.open_node().unwrap(), fabric.open_node().unwrap());
        let (writer_pd, target_pd) = (writer.alloc_pd().unwrap(), target.alloc_pd().unwrap());
        let (cq, other_cq) = (writer.create_cq(8).unwrap(), writer.create_cq(8).unwrap());
        let target_cq = target.create_cq(8).unwrap();
        let mut qp = writer_pd.create_qp(&cq, &cq, &QpOptions::default()).unwrap();
        let mut peer_qp = target_pd.create_qp(&target_cq, &target_cq, &QpOptions::default()).unwrap();
        let mut options = ConnectOptions::default();
        options.init.access = AccessFlags::REMOTE_WRITE;
        qp.connect(&peer_qp.endpoint(), &options).unwrap();
        peer_qp.connect(&qp.endpoint(), &options).unwrap();
        let memory = Arc::new(Region::new(64).unwrap());
        let mr = target_pd.register(&memory, AccessFlags::all_remote()).unwrap();
        let (kind, peer) = (WrKind::application(0), NodeId::new(1).unwrap());
        let wr_id = WrId::new(kind, peer, 1).unwrap().to_raw();
        let remote = RemoteAddr::within(&mr.remote_region(), 0, 8).unwrap();
        qp.post_send(&[SendWr::write(wr_id, remote, Payload::Inline(b"landed!!"))]).unwrap();
        // The QP's CQ is read first; reading the other one runs the events that complete it.
        let mut poller = Poller::new(vec![(RoleId(0), cq), (RoleId(1), other_cq)]);
        let mut waiter = QuorumWaiter::new();
        let key = waiter.begin(kind, 1, &[peer], 1).unwrap();
        let mut driver = SimDriver::new(&fabric);
        let deadline_ns = driver.deadline_in(3_600_000_000_000);
        let outcome = wait_for(&mut poller, &mut waiter, key, deadline_ns, &mut driver, &mut |_: &_| {});
        assert_eq!(outcome.unwrap().acked, [peer]);
        assert!(fabric.now_ns() < 1_000_000_000, "virtual time did not jump to the deadline");
    }
}
