//! [`LeaseGrantor`]: the side that hands the lease to one holder at a time.

use crate::error::{Error, Result};
use crate::lease::drift::DriftBound;
use usec_qp_pool::NodeId;

use crate::lease::message::{LeaseReply, LeaseRequest};

/// What a grantor grants and how careful it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantorConfig {
    /// Δ, the lease handed out, in nanoseconds of the holder's clock.
    pub lease_ns: u64,
    /// The bound ρ on every clock's rate.
    pub drift: DriftBound,
    /// Extra wait on top of the drift-stretched Δ before another holder is served.
    pub slack_ns: u64,
}

impl Default for GrantorConfig {
    /// Δ = 20 µs (uKharon's), ρ = 1 000 ppm, slack 1 µs.
    fn default() -> GrantorConfig {
        GrantorConfig { lease_ns: 20_000, drift: DriftBound::default(), slack_ns: 1_000 }
    }
}

impl GrantorConfig {
    /// `W`: how long after a grant every other holder is refused.
    pub fn wait_ns(&self) -> u64 {
        self.drift.grantor_wait_ns(self.lease_ns, self.slack_ns)
    }
}

/// How a grantor begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantorStart {
    /// Nobody can hold a lease yet (the very first grantor of a system).
    Fresh,
    /// A lease may be out from before: a restarted grantor, or one taking over from
    /// another. It refuses everyone for `W` first.
    Recovering,
}

/// The grantor's side of the lease rule (see [`crate::lease`]).
///
/// Driving it: for each request received, read the clock (after the request arrived) and
/// call [`Self::on_request`]; send back what it returns.
#[derive(Clone, Debug)]
pub struct LeaseGrantor {
    config: GrantorConfig,
    holder: Option<NodeId>,
    /// Every holder but `holder` is refused before this, on the grantor's clock.
    exclusive_until_ns: u64,
    latest_now_ns: u64,
    grants: u64,
}

impl LeaseGrantor {
    /// A grantor starting at `now_ns`. Fails on Δ = 0.
    pub fn new(config: GrantorConfig, start: GrantorStart, now_ns: u64) -> Result<LeaseGrantor> {
        if config.lease_ns == 0 {
            return Err(Error::config("a lease of 0 ns"));
        }
        let exclusive_until_ns = match start {
            GrantorStart::Fresh => now_ns,
            GrantorStart::Recovering => now_ns.saturating_add(config.wait_ns()),
        };
        Ok(LeaseGrantor { config, holder: None, exclusive_until_ns, latest_now_ns: now_ns, grants: 0 })
    }

    /// Its configuration.
    pub fn config(&self) -> &GrantorConfig {
        &self.config
    }

    /// Answers a request at `now_ns`, read after the request arrived. The current holder
    /// is always granted (a renewal); anyone else only once the exclusivity of the last
    /// grant is over.
    pub fn on_request(&mut self, now_ns: u64, request: &LeaseRequest) -> LeaseReply {
        assert!(
            now_ns >= self.latest_now_ns,
            "the grantor's clock went backwards from {} to {now_ns}",
            self.latest_now_ns
        );
        self.latest_now_ns = now_ns;
        let free = now_ns >= self.exclusive_until_ns;
        if free || self.holder == Some(request.holder) {
            self.holder = Some(request.holder);
            self.exclusive_until_ns =
                self.exclusive_until_ns.max(now_ns.saturating_add(self.config.wait_ns()));
            self.grants += 1;
            LeaseReply::Granted {
                holder: request.holder,
                request: request.request,
                lease_ns: self.config.lease_ns,
            }
        } else {
            LeaseReply::Denied {
                holder: request.holder,
                request: request.request,
                retry_after_ns: self.exclusive_until_ns - now_ns,
            }
        }
    }

    /// The holder the grantor is bound to at `now_ns`, if any.
    pub fn holder(&self, now_ns: u64) -> Option<NodeId> {
        self.holder.filter(|_| now_ns < self.exclusive_until_ns)
    }

    /// When, on the grantor's clock, another holder may be granted.
    pub fn exclusive_until_ns(&self) -> u64 {
        self.exclusive_until_ns
    }

    /// Grants handed out so far.
    pub fn grants(&self) -> u64 {
        self.grants
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(holder: u16, request: u64) -> LeaseRequest {
        LeaseRequest { holder: NodeId::new(holder).unwrap(), request }
    }

    fn config() -> GrantorConfig {
        GrantorConfig { lease_ns: 10_000, drift: DriftBound::from_ppm(100_000).unwrap(), slack_ns: 100 }
    }

    #[test]
    fn another_holder_waits_out_the_stretched_lease() {
        let config = config();
        // 10 µs × 1.1 / 0.9 = 12 222.2… → 12 223, + 1 + 100.
        assert_eq!(config.wait_ns(), 12_324);
        let mut grantor = LeaseGrantor::new(config, GrantorStart::Fresh, 0).unwrap();
        assert!(matches!(
            grantor.on_request(1_000, &request(1, 1)),
            LeaseReply::Granted { lease_ns: 10_000, .. }
        ));
        assert_eq!(
            grantor.on_request(5_000, &request(2, 1)),
            LeaseReply::Denied { holder: NodeId::new(2).unwrap(), request: 1, retry_after_ns: 8_324 }
        );
        assert_eq!(grantor.holder(13_323), Some(NodeId::new(1).unwrap()));
        assert!(matches!(grantor.on_request(13_324, &request(2, 2)), LeaseReply::Granted { .. }));
        assert_eq!(grantor.holder(13_324), Some(NodeId::new(2).unwrap()));
        assert_eq!(grantor.grants(), 2);
    }

    #[test]
    fn renewals_extend_and_never_shorten() {
        let mut grantor = LeaseGrantor::new(config(), GrantorStart::Fresh, 0).unwrap();
        grantor.on_request(0, &request(1, 1));
        grantor.on_request(5_000, &request(1, 2));
        assert_eq!(grantor.exclusive_until_ns(), 17_324);
        assert!(matches!(grantor.on_request(17_000, &request(2, 1)), LeaseReply::Denied { .. }));
    }

    #[test]
    fn a_recovering_grantor_waits_before_its_first_grant() {
        let mut grantor = LeaseGrantor::new(config(), GrantorStart::Recovering, 50).unwrap();
        assert!(matches!(
            grantor.on_request(12_373, &request(1, 1)),
            LeaseReply::Denied { retry_after_ns: 1, .. }
        ));
        assert_eq!(grantor.holder(0), None);
        assert!(matches!(grantor.on_request(12_374, &request(1, 2)), LeaseReply::Granted { .. }));
    }

    #[test]
    fn a_zero_lease_is_refused() {
        let config = GrantorConfig { lease_ns: 0, ..GrantorConfig::default() };
        assert!(LeaseGrantor::new(config, GrantorStart::Fresh, 0).is_err());
    }
}
