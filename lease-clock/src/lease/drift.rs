//! [`DriftBound`]: the bound ρ on clock rates, and the grantor's wait it implies.

use crate::error::{Error, Result};

/// Parts per million in one.
const MILLION: u128 = 1_000_000;

/// Every clock involved runs at a rate within `[1 − ρ, 1 + ρ]` of real time; ρ is given in
/// parts per million.
///
/// Quartz oscillators stay within ±100 ppm over temperature and age; the TSC of one machine
/// is steadier still, but a VM's clock can be disciplined by its host in jumps of rate, so
/// the default is a generous 1 000 ppm (0.1 %), which costs 0.2 % of Δ at handover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DriftBound {
    rho_ppm: u32,
}

impl Default for DriftBound {
    /// ρ = 1 000 ppm.
    fn default() -> DriftBound {
        DriftBound { rho_ppm: 1_000 }
    }
}

impl DriftBound {
    /// ρ = `rho_ppm` parts per million; it must be below 10^6 (a clock that may stop
    /// bounds nothing).
    pub fn from_ppm(rho_ppm: u32) -> Result<DriftBound> {
        if u128::from(rho_ppm) >= MILLION {
            return Err(Error::config(format!("a drift bound of {rho_ppm} ppm allows clocks to stop")));
        }
        Ok(DriftBound { rho_ppm })
    }

    /// No drift at all: only for demonstrating what goes wrong without the factor.
    pub fn zero() -> DriftBound {
        DriftBound { rho_ppm: 0 }
    }

    /// ρ in parts per million.
    pub fn ppm(&self) -> u32 {
        self.rho_ppm
    }

    /// `⌈Δ·(1 + ρ)/(1 − ρ)⌉`: how long, on the fastest allowed clock, the grantor must wait
    /// to be sure that a holder on the slowest allowed clock has stopped believing in a
    /// lease of `lease_ns` (see the [module documentation](crate::lease)).
    pub fn stretched_ns(&self, lease_ns: u64) -> u64 {
        let rho = u128::from(self.rho_ppm);
        let numerator = u128::from(lease_ns) * (MILLION + rho);
        let denominator = MILLION - rho;
        u64::try_from(numerator.div_ceil(denominator)).unwrap_or(u64::MAX)
    }

    /// `W = ⌈Δ·(1 + ρ)/(1 − ρ)⌉ + 1 + slack`: the grantor's wait, on its own clock, after
    /// granting `lease_ns` before it may grant to another holder. The `+ 1` covers the
    /// nanosecond by which an integer clock reading trails the continuous clock.
    pub fn grantor_wait_ns(&self, lease_ns: u64, slack_ns: u64) -> u64 {
        self.stretched_ns(lease_ns).saturating_add(1).saturating_add(slack_ns)
    }

    /// `S = ⌈Δ·(1 + ρ)/(1 − ρ)⌉ + 1`: how long a member that learned a view waits, on its own
    /// clock, before the view may be active, so that every Active(view) lease of `lease_ns`
    /// on an older, incompatible view has expired (see the
    /// [module documentation](crate::lease#activeview-leases)). It is the grantor's wait
    /// without slack: the learner stands where the grantor stood.
    pub fn view_start_wait_ns(&self, lease_ns: u64) -> u64 {
        self.grantor_wait_ns(lease_ns, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_stretches_by_the_drift_factor() {
        let rho = DriftBound::from_ppm(1_000).unwrap();
        // 20 µs × 1.001 / 0.999 = 20 040.04… → 20 041, + 1, + slack.
        assert_eq!(rho.stretched_ns(20_000), 20_041);
        assert_eq!(rho.grantor_wait_ns(20_000, 500), 20_542);
        assert_eq!(DriftBound::zero().grantor_wait_ns(20_000, 0), 20_001);
        assert_eq!(DriftBound::from_ppm(500_000).unwrap().stretched_ns(10), 30);
    }

    #[test]
    fn a_view_waits_the_stretched_lease_and_a_nanosecond() {
        // 20 µs at 1 000 ppm: 40 ns for drift and 1 for the integer clocks, where uKharon
        // adds a flat microsecond on each side and bounds no drift.
        assert_eq!(DriftBound::from_ppm(1_000).unwrap().view_start_wait_ns(20_000), 20_042);
        assert_eq!(DriftBound::zero().view_start_wait_ns(20_000), 20_001);
        assert_eq!(DriftBound::from_ppm(100_000).unwrap().view_start_wait_ns(9_000), 11_001);
    }

    #[test]
    fn stopped_clocks_are_refused() {
        assert!(DriftBound::from_ppm(1_000_000).is_err());
        assert!(DriftBound::from_ppm(999_999).is_ok());
        assert_eq!(DriftBound::from_ppm(999_999).unwrap().stretched_ns(u64::MAX), u64::MAX);
    }
}
