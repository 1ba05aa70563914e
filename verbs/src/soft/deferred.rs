//! Work requests that could not run at post time: a SEND that met no posted RECV (retried
//! after the responder's RNR timer), or a responder QP that does not serve us yet (retried
//! until the transport timeout). Later requests of the same QP queue behind them, keeping
//! RC order.
//!
//! Like other userspace transports, the soft provider makes progress on these when the QP
//! is posted to and when its send CQ is polled.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::completion::Status;
use crate::qp::{ack_timeout_ns, rnr_retries_forever, rnr_timer_ns, RtsAttributes};
use crate::soft::execute::{MapCache, Outcome};
use crate::work_request::{Payload, SendOp, SendWr, Sge};

/// How often a request whose responder is not ready is retried.
const NOT_READY_RETRY: Duration = Duration::from_micros(20);

/// A send work request copied out of the caller's borrows.
#[derive(Debug)]
pub(crate) struct OwnedWr {
    pub wr_id: u64,
    pub op: SendOp,
    sges: Vec<Sge>,
    inline: Option<Vec<u8>>,
    pub signaled: bool,
    pub sequence: u64,
    rnr_attempts: u32,
    not_ready_since: Option<Instant>,
    not_before: Option<Instant>,
}

impl OwnedWr {
    pub(crate) fn new(wr: &SendWr<'_>, sequence: u64) -> OwnedWr {
        let (sges, inline) = match wr.payload {
            Payload::Sges(sges) => (sges.to_vec(), None),
            Payload::Inline(bytes) => (Vec::new(), Some(bytes.to_vec())),
        };
        OwnedWr {
            wr_id: wr.wr_id,
            op: wr.op,
            sges,
            inline,
            signaled: wr.signaled,
            sequence,
            rnr_attempts: 0,
            not_ready_since: None,
            not_before: None,
        }
    }

    /// The request as the executor takes it.
    pub(crate) fn as_wr(&self) -> SendWr<'_> {
        let payload = match &self.inline {
            Some(bytes) => Payload::Inline(bytes),
            None => Payload::Sges(&self.sges),
        };
        SendWr { wr_id: self.wr_id, op: self.op, payload, signaled: self.signaled, fence: false }
    }

    fn due(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|at| now >= at)
    }
}

/// What to do with the head request after an attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It finished (or failed) with this status and completion length.
    Finished(Status, u32),
    /// Try again later.
    Wait,
}

/// The deferred requests of one QP.
#[derive(Debug, Default)]
pub(crate) struct DeferredQueue {
    pub wrs: VecDeque<OwnedWr>,
    /// Mappings used when the poller, not the QP's owner, executes requests.
    pub cache: MapCache,
    /// The transport timers in force (set at RTS).
    pub rts: RtsAttributes,
    /// The responder's RNR timer (its min_rnr_timer, set at its RTR).
    pub responder_rnr_timer: u8,
}

impl DeferredQueue {
    /// Whether the head request may be attempted now.
    pub(crate) fn head_due(&self, now: Instant) -> bool {
        self.wrs.front().is_some_and(|wr| wr.due(now))
    }

    /// Applies the outcome of an attempt of the head request.
    pub(crate) fn judge(&mut self, outcome: Outcome, now: Instant) -> Verdict {
        let rts = self.rts;
        let rnr_timer = rnr_timer_ns(self.responder_rnr_timer);
        let head = self.wrs.front_mut().expect("judging the head of an empty queue");
        match outcome {
            Outcome::Complete { status, byte_len } => Verdict::Finished(status, byte_len),
            Outcome::ReceiverNotReady => {
                head.rnr_attempts += 1;
                if !rnr_retries_forever(rts.rnr_retry) && head.rnr_attempts > u32::from(rts.rnr_retry) {
                    return Verdict::Finished(Status::RnrRetryExceeded, 0);
                }
                head.not_before = Some(now + Duration::from_nanos(rnr_timer));
                Verdict::Wait
            }
            Outcome::Moving => {
                // A live responder moves a region in about the time of a copy; a dead one
                // is seen through its liveness and fails the request.
                head.not_before = Some(now + NOT_READY_RETRY);
                Verdict::Wait
            }
            Outcome::TargetNotReady => {
                let since = *head.not_ready_since.get_or_insert(now);
                let limit = ack_timeout_ns(rts.timeout).map(|timeout| {
                    Duration::from_nanos(timeout.saturating_mul(u64::from(rts.retry_count) + 1))
                });
                if limit.is_some_and(|limit| now.duration_since(since) >= limit) {
                    return Verdict::Finished(Status::RetryExceeded, 0);
                }
                head.not_before = Some(now + NOT_READY_RETRY);
                Verdict::Wait
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work_request::RemoteAddr;

    fn queue_with_send(rts: RtsAttributes) -> DeferredQueue {
        let wr = SendWr::send(1, Payload::Inline(b"x"));
        let mut queue = DeferredQueue { rts, responder_rnr_timer: 1, ..Default::default() };
        queue.wrs.push_back(OwnedWr::new(&wr, 1));
        queue
    }

    #[test]
    fn rnr_retries_then_fails() {
        let mut queue = queue_with_send(RtsAttributes { rnr_retry: 2, ..Default::default() });
        let now = Instant::now();
        assert_eq!(queue.judge(Outcome::ReceiverNotReady, now), Verdict::Wait);
        assert!(!queue.head_due(now), "waits out the RNR timer");
        assert!(queue.head_due(now + Duration::from_micros(10)));
        assert_eq!(queue.judge(Outcome::ReceiverNotReady, now), Verdict::Wait);
        assert_eq!(
            queue.judge(Outcome::ReceiverNotReady, now),
            Verdict::Finished(Status::RnrRetryExceeded, 0)
        );
    }

    #[test]
    fn infinite_rnr_never_fails() {
        let mut queue = queue_with_send(RtsAttributes { rnr_retry: 7, ..Default::default() });
        for _ in 0..1000 {
            assert_eq!(queue.judge(Outcome::ReceiverNotReady, Instant::now()), Verdict::Wait);
        }
    }

    #[test]
    fn not_ready_times_out() {
        let mut queue = queue_with_send(RtsAttributes { timeout: 1, retry_count: 1, ..Default::default() });
        let start = Instant::now();
        assert_eq!(queue.judge(Outcome::TargetNotReady, start), Verdict::Wait);
        let later = start + Duration::from_nanos(2 * 8192 + 1);
        assert_eq!(queue.judge(Outcome::TargetNotReady, later), Verdict::Finished(Status::RetryExceeded, 0));
        let wr = SendWr::write(3, RemoteAddr::default(), Payload::Inline(b"abc"));
        let owned = OwnedWr::new(&wr, 9);
        assert_eq!(owned.as_wr().payload, Payload::Inline(b"abc"));
    }

    #[test]
    fn moving_memory_is_waited_for_without_a_timeout() {
        let mut queue = queue_with_send(RtsAttributes { timeout: 1, retry_count: 1, ..Default::default() });
        let start = Instant::now();
        for step in 0..1000u64 {
            let now = start + Duration::from_micros(step * 100);
            assert_eq!(queue.judge(Outcome::Moving, now), Verdict::Wait, "a live responder's move");
            assert!(!queue.head_due(now), "retried after a pause");
        }
    }
}
