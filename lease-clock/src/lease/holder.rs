//! [`LeaseHolder`]: the side that asks for the lease, believes in it, and renews it.

use std::collections::VecDeque;

use usec_qp_pool::NodeId;

use crate::lease::message::{LeaseReply, LeaseRequest};

/// Requests remembered at most; a grant for an older one is ignored (which is safe: a
/// holder may always believe less).
const REMEMBERED_REQUESTS: usize = 16;
/// Each unanswered request doubles the wait before the next, up to 2^6 × `retry_after_ns`.
const MAX_BACKOFF_SHIFT: usize = 6;

/// When a holder asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HolderConfig {
    /// Ask for a renewal once less than this is left of the lease.
    pub renew_before_ns: u64,
    /// Ask again if a request has had no answer for this long; the wait doubles with each
    /// request left unanswered (up to 64 times), so that a stalled grantor is not buried
    /// under requests it will answer too late to matter.
    pub retry_after_ns: u64,
}

impl Default for HolderConfig {
    /// Renew with 10 µs left; re-ask after 5 µs without an answer. Suits Δ ≈ 20 µs on a
    /// fabric with single-digit-microsecond round trips.
    fn default() -> HolderConfig {
        HolderConfig { renew_before_ns: 10_000, retry_after_ns: 5_000 }
    }
}

/// What a reply did to the holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyEffect {
    /// The lease now runs until `valid_until_ns` on the holder's clock (possibly already
    /// past, for a grant that arrived late).
    Granted {
        /// The new end of the lease.
        valid_until_ns: u64,
    },
    /// Denied; the holder will not ask again before `retry_at_ns`.
    Denied {
        /// When the holder asks next.
        retry_at_ns: u64,
    },
    /// A reply to a request the holder no longer remembers, or for another holder.
    Ignored,
}

/// The holder's side of the lease rule (see [`crate::lease`]): it remembers when it asked,
/// and believes a grant of Δ until its own clock reads that ask time plus Δ.
///
/// Driving it: read the clock, call [`Self::poll_request`] and send what it returns; on
/// each reply call [`Self::on_reply`]; before every action taken under the lease, read the
/// clock again and check [`Self::is_valid`].
#[derive(Clone, Debug)]
pub struct LeaseHolder {
    id: NodeId,
    config: HolderConfig,
    wanted: bool,
    valid_until_ns: Option<u64>,
    /// `(request, ask time)` of the requests still awaiting an answer, oldest first.
    outstanding: VecDeque<(u64, u64)>,
    next_request: u64,
    /// Do not ask (again) before this.
    quiet_until_ns: u64,
    latest_now_ns: u64,
}

impl LeaseHolder {
    /// A holder that wants the lease from the start.
    pub fn new(id: NodeId, config: HolderConfig) -> LeaseHolder {
        LeaseHolder {
            id,
            config,
            wanted: true,
            valid_until_ns: None,
            outstanding: VecDeque::new(),
            next_request: 1,
            quiet_until_ns: 0,
            latest_now_ns: 0,
        }
    }

    /// Its identity.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Whether [`Self::poll_request`] asks for (and renews) the lease. A holder that stops
    /// wanting it keeps believing until the lease runs out.
    pub fn set_wanted(&mut self, wanted: bool) {
        self.wanted = wanted;
    }

    /// The request to send now, if the policy says to ask: the lease is wanted, it is
    /// missing or within `renew_before_ns` of its end, and the last request is older than
    /// `retry_after_ns` (or was denied and its retry hint has passed). `now_ns` must be
    /// read before the request is sent.
    pub fn poll_request(&mut self, now_ns: u64) -> Option<LeaseRequest> {
        self.see(now_ns);
        if !self.wanted || now_ns < self.quiet_until_ns {
            return None;
        }
        let renewal_due = self
            .valid_until_ns
            .is_none_or(|until| now_ns.saturating_add(self.config.renew_before_ns) >= until);
        renewal_due.then(|| self.request(now_ns))
    }

    /// A new request regardless of the policy (scripts and tests use it to ask at chosen
    /// times). `now_ns` must be read before the request is sent.
    pub fn request(&mut self, now_ns: u64) -> LeaseRequest {
        self.see(now_ns);
        let request = self.next_request;
        self.next_request += 1;
        if self.outstanding.len() == REMEMBERED_REQUESTS {
            self.outstanding.pop_front();
        }
        let unanswered = self.outstanding.len().min(MAX_BACKOFF_SHIFT);
        self.outstanding.push_back((request, now_ns));
        self.quiet_until_ns = now_ns.saturating_add(self.config.retry_after_ns << unanswered);
        LeaseRequest { holder: self.id, request }
    }

    /// Takes a reply in. A grant extends the lease to the answered request's ask time plus
    /// Δ (never shortens it); requests older than the answered one are forgotten.
    pub fn on_reply(&mut self, now_ns: u64, reply: &LeaseReply) -> ReplyEffect {
        self.see(now_ns);
        if reply.holder() != self.id {
            return ReplyEffect::Ignored;
        }
        match *reply {
            LeaseReply::Granted { request, lease_ns, .. } => {
                let Some(asked_ns) = self.forget_through(request) else { return ReplyEffect::Ignored };
                let until = asked_ns.saturating_add(lease_ns);
                let valid_until_ns = self.valid_until_ns.map_or(until, |current| current.max(until));
                self.valid_until_ns = Some(valid_until_ns);
                if self.outstanding.is_empty() {
                    self.quiet_until_ns = now_ns;
                }
                ReplyEffect::Granted { valid_until_ns }
            }
            LeaseReply::Denied { request, retry_after_ns, .. } => {
                if self.forget_through(request).is_none() {
                    return ReplyEffect::Ignored;
                }
                let retry_at_ns = now_ns.saturating_add(retry_after_ns);
                self.quiet_until_ns = self.quiet_until_ns.max(retry_at_ns);
                ReplyEffect::Denied { retry_at_ns: self.quiet_until_ns }
            }
        }
    }

    /// Whether the lease is held at `now_ns`: `now_ns < ask + Δ` for the best grant so far.
    /// Check it with a fresh clock reading right before acting under the lease.
    pub fn is_valid(&self, now_ns: u64) -> bool {
        self.valid_until_ns.is_some_and(|until| now_ns < until)
    }

    /// The end of the lease on this holder's clock, if it was ever granted.
    pub fn valid_until_ns(&self) -> Option<u64> {
        self.valid_until_ns
    }

    /// What is left of the lease at `now_ns` (0 when it is not held).
    pub fn remaining_ns(&self, now_ns: u64) -> u64 {
        self.valid_until_ns.map_or(0, |until| until.saturating_sub(now_ns))
    }

    /// Removes `request` and every older one; returns `request`'s ask time if it was
    /// still remembered.
    fn forget_through(&mut self, request: u64) -> Option<u64> {
        let position = self.outstanding.iter().position(|&(number, _)| number == request)?;
        let (_, asked_ns) = self.outstanding[position];
        self.outstanding.drain(..=position);
        Some(asked_ns)
    }

    fn see(&mut self, now_ns: u64) {
        assert!(
            now_ns >= self.latest_now_ns,
            "{}: the clock went backwards from {} to {now_ns}",
            self.id,
            self.latest_now_ns
        );
        self.latest_now_ns = now_ns;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE_NS: u64 = 20_000;

    fn holder() -> LeaseHolder {
        LeaseHolder::new(
            NodeId::new(1).unwrap(),
            HolderConfig { renew_before_ns: 8_000, retry_after_ns: 3_000 },
        )
    }

    fn grant(request: &LeaseRequest) -> LeaseReply {
        LeaseReply::Granted { holder: request.holder, request: request.request, lease_ns: LEASE_NS }
    }

    #[test]
    fn validity_counts_from_the_ask_not_from_the_grant() {
        let mut holder = holder();
        let request = holder.poll_request(1_000).expect("asks at once");
        assert_eq!(holder.on_reply(6_000, &grant(&request)), ReplyEffect::Granted { valid_until_ns: 21_000 });
        assert!(holder.is_valid(20_999));
        assert!(!holder.is_valid(21_000));
        assert_eq!(holder.remaining_ns(15_000), 6_000);
    }

    #[test]
    fn renews_inside_the_window_and_retries_when_unanswered() {
        let mut holder = holder();
        let first = holder.poll_request(0).unwrap();
        assert_eq!(holder.poll_request(1_000), None, "waits retry_after before asking again");
        holder.on_reply(1_500, &grant(&first));
        assert_eq!(holder.poll_request(11_999), None, "more than renew_before left");
        let renewal = holder.poll_request(12_000).expect("renews with 8 µs left");
        assert_eq!(holder.poll_request(14_000), None);
        let retry = holder.poll_request(15_000).expect("re-asks after 3 µs without an answer");
        assert_ne!(renewal.request, retry.request);
        // The late answer to the renewal still counts: it is remembered.
        assert_eq!(
            holder.on_reply(16_000, &grant(&renewal)),
            ReplyEffect::Granted { valid_until_ns: 32_000 }
        );
        assert_eq!(holder.on_reply(16_500, &grant(&retry)), ReplyEffect::Granted { valid_until_ns: 35_000 });
    }

    #[test]
    fn late_and_foreign_grants_do_not_extend_belief() {
        let mut holder = holder();
        let old = holder.request(0);
        let new = holder.request(10_000);
        holder.on_reply(11_000, &grant(&new));
        assert_eq!(
            holder.on_reply(12_000, &grant(&old)),
            ReplyEffect::Ignored,
            "older than the answered one"
        );
        let stranger = LeaseReply::Granted {
            holder: NodeId::new(2).unwrap(),
            request: new.request + 1,
            lease_ns: 1 << 40,
        };
        assert_eq!(holder.on_reply(12_000, &stranger), ReplyEffect::Ignored);
        assert_eq!(holder.valid_until_ns(), Some(30_000));
        // A grant that arrives after its lease ran out is taken but believes nothing.
        let late = holder.request(40_000);
        assert_eq!(holder.on_reply(70_000, &grant(&late)), ReplyEffect::Granted { valid_until_ns: 60_000 });
        assert!(!holder.is_valid(70_000));
    }

    #[test]
    fn unanswered_requests_back_off_exponentially_and_a_reply_resets() {
        let mut holder = holder();
        let asks: Vec<u64> = (0..9u64)
            .scan(0, |at, _| {
                while holder.poll_request(*at).is_none() {
                    *at += 1_000;
                }
                Some(*at)
            })
            .collect();
        // 3, 6, 12, 24, 48, 96, 192, 192 µs apart.
        assert_eq!(asks, vec![0, 3_000, 9_000, 21_000, 45_000, 93_000, 189_000, 381_000, 573_000]);
        let last = LeaseRequest { holder: NodeId::new(1).unwrap(), request: 9 };
        holder.on_reply(574_000, &grant(&last));
        holder.set_wanted(true);
        let renewal = holder.request(600_000);
        assert_eq!(holder.poll_request(602_999), None);
        assert!(holder.poll_request(603_000).is_some(), "the reply reset the backoff");
        assert_eq!(renewal.request, 10);
    }

    #[test]
    fn denial_quiets_the_holder_until_the_hint() {
        let mut holder = holder();
        let request = holder.poll_request(0).unwrap();
        let denied = LeaseReply::Denied {
            holder: NodeId::new(1).unwrap(),
            request: request.request,
            retry_after_ns: 9_000,
        };
        assert_eq!(holder.on_reply(1_000, &denied), ReplyEffect::Denied { retry_at_ns: 10_000 });
        assert_eq!(holder.poll_request(9_999), None);
        assert!(holder.poll_request(10_000).is_some());
        assert!(!holder.is_valid(10_000));
    }

    #[test]
    fn only_a_bounded_number_of_requests_is_remembered() {
        let mut holder = holder();
        let first = holder.request(0);
        for at in 1..=REMEMBERED_REQUESTS as u64 {
            holder.request(at);
        }
        assert_eq!(holder.on_reply(100, &grant(&first)), ReplyEffect::Ignored);
    }

    #[test]
    #[should_panic(expected = "went backwards")]
    fn a_clock_that_goes_back_is_a_bug() {
        let mut holder = holder();
        holder.request(10);
        holder.is_valid(0);
        holder.request(9);
    }
}
