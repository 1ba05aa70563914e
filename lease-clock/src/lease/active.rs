//! [`ActiveLease`]: one member's Active(view) lease — whether its view is still active,
//! answered from a cache that confirmations extend, renewed before it runs out, and a new
//! view started only once every lease on an older, incompatible view has provably expired.
//! The rule and its proof are in the [module documentation](crate::lease).

use crate::error::{Error, Result};
use crate::lease::drift::DriftBound;
use crate::lease::view::{LeaseView, VoterSet};

/// How long confirmations last and when a member renews.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveConfig {
    /// Δ: a confirmation keeps the view active for this long on the member's clock,
    /// counted from when the renewal was issued.
    pub lease_ns: u64,
    /// The bound ρ on every member's clock rate.
    pub drift: DriftBound,
    /// Issue a renewal once less than this is left; below Δ, so that a renewal issued
    /// while a new view waits to start covers its start.
    pub renew_before_ns: u64,
    /// Issue another renewal if the last one has not been confirmed for this long (reads
    /// that were lost, or that found the view moved on).
    pub retry_after_ns: u64,
}

impl Default for ActiveConfig {
    /// Δ = 20 µs (uKharon uses 23–24 µs), ρ = 1 000 ppm, renew with 10 µs left, retry
    /// after 5 µs: a renewal is a majority of one-sided reads, a few microseconds.
    fn default() -> ActiveConfig {
        ActiveConfig {
            lease_ns: 20_000,
            drift: DriftBound::default(),
            renew_before_ns: 10_000,
            retry_after_ns: 5_000,
        }
    }
}

impl ActiveConfig {
    /// `S`: how long after learning a view that is not compatible with the one before it
    /// the member waits before the view may be active ([`DriftBound::view_start_wait_ns`]).
    pub fn start_wait_ns(&self) -> u64 {
        self.drift.view_start_wait_ns(self.lease_ns)
    }

    fn validate(&self) -> Result<()> {
        if self.lease_ns == 0 {
            return Err(Error::config("an active lease of 0 ns"));
        }
        if self.renew_before_ns >= self.lease_ns {
            return Err(Error::config(format!(
                "renewing {} ns before the end of a {} ns lease: a renewal issued that early would \
                 not cover a waiting view's start",
                self.renew_before_ns, self.lease_ns
            )));
        }
        if self.retry_after_ns == 0 {
            return Err(Error::config("retrying renewals after 0 ns"));
        }
        Ok(())
    }
}

/// A renewal to carry out: read a majority of the acceptors and, if none of them has
/// accepted anything for instance `view_id + 1`, hand it back to
/// [`ActiveLease::on_confirmed`]. The membership service may also build one for reads of
/// its own, as long as `issued_at_ns` is this member's clock read before any of the reads
/// was posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Renewal {
    /// The view to confirm.
    pub view_id: u64,
    /// The member's clock when the renewal was issued, read before its reads were posted.
    pub issued_at_ns: u64,
}

/// How a view that was learned starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewStart {
    /// Compatible with the view it follows: it takes that view's start and the lease the
    /// member holds on it, with no wait.
    Inherited {
        /// When it may be active, on the member's clock (possibly already past).
        active_from_ns: u64,
    },
    /// Not compatible with the view it follows, or that view is not known here: it may be
    /// active only once every lease on older views has expired.
    Waiting {
        /// Learned at plus `S`, on the member's clock.
        active_from_ns: u64,
    },
    /// Not newer than the view already known: ignored.
    Stale,
}

/// The member's side of the Active(view) lease rule (see [`crate::lease`]).
///
/// Driving it, in a member's loop:
/// - when the membership service learns a view, read the clock (after the view is known
///   to be decided) and call [`Self::on_view_learned`];
/// - read the clock and call [`Self::poll_renewal`]; carry out what it returns (its time
///   was read before the reads are posted) and hand each confirmed renewal to
///   [`Self::on_confirmed`]; [`Self::next_renewal_at_ns`] says when to poll next;
/// - before every action taken under the view (a read served locally), read the clock
///   again and check [`Self::is_active`]: two compares and an equality, no allocation, no
///   lock.
#[derive(Clone, Debug)]
pub struct ActiveLease {
    // The hot path reads these three words only.
    view_id: u64,
    /// `u64::MAX` while no view is known, so that nothing is active.
    active_from_ns: u64,
    /// The end of the latest confirmation of a view of the current epoch; 0 if none.
    active_until_ns: u64,
    /// The first view of the run of compatible views the current one belongs to: a
    /// confirmation of any view from there to the current one counts.
    epoch_first_view: u64,
    voters: VoterSet,
    known: bool,
    config: ActiveConfig,
    /// When the renewal that has not been confirmed yet was issued, if there is one.
    pending_since_ns: Option<u64>,
    latest_now_ns: u64,
}

impl ActiveLease {
    /// A member that knows no view yet. Fails on Δ = 0, on renewing Δ or more before the
    /// end, or on retrying after 0 ns.
    pub fn new(config: ActiveConfig) -> Result<ActiveLease> {
        config.validate()?;
        Ok(ActiveLease {
            view_id: 0,
            active_from_ns: u64::MAX,
            active_until_ns: 0,
            epoch_first_view: 0,
            voters: VoterSet::default(),
            known: false,
            config,
            pending_since_ns: None,
            latest_now_ns: 0,
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &ActiveConfig {
        &self.config
    }

    /// Whether view `view_id` is active at `now_ns`: it is the latest view this member
    /// learned, it has started, and a confirmation still covers `now_ns`. Read `now_ns`
    /// right before the action it permits.
    #[inline]
    pub fn is_active(&self, view_id: u64, now_ns: u64) -> bool {
        (view_id == self.view_id) & (now_ns >= self.active_from_ns) & (now_ns < self.active_until_ns)
    }

    /// The view active at `now_ns`, if any.
    #[inline]
    pub fn active_view(&self, now_ns: u64) -> Option<u64> {
        self.is_active(self.view_id, now_ns).then_some(self.view_id)
    }

    /// The latest view learned, if any.
    pub fn view_id(&self) -> Option<u64> {
        self.known.then_some(self.view_id)
    }

    /// The first view of the run of compatible views the current view belongs to.
    pub fn epoch_first_view(&self) -> Option<u64> {
        self.known.then_some(self.epoch_first_view)
    }

    /// When the current view may be active, on this member's clock.
    pub fn active_from_ns(&self) -> Option<u64> {
        self.known.then_some(self.active_from_ns)
    }

    /// Until when the latest confirmation covers the current view, if there was one.
    pub fn active_until_ns(&self) -> Option<u64> {
        (self.active_until_ns > 0).then_some(self.active_until_ns)
    }

    /// What is left of the current view's activity at `now_ns` (0 when it is not active).
    pub fn remaining_ns(&self, now_ns: u64) -> u64 {
        if self.is_active(self.view_id, now_ns) {
            self.active_until_ns - now_ns
        } else {
            0
        }
    }

    /// Takes in view `view` of the membership, learned at `now_ns` (read after the member
    /// knew the view was decided). A view compatible with the current one — its successor,
    /// with the same voters — inherits the current start and lease; any other newer view
    /// replaces the current one at once and starts `S` later; older views are ignored.
    pub fn on_view_learned(&mut self, now_ns: u64, view: &impl LeaseView) -> ViewStart {
        self.see(now_ns);
        let view_id = view.view_id();
        if self.known && view_id <= self.view_id {
            return ViewStart::Stale;
        }
        let voters = VoterSet::new(view.voters());
        let successor = self.known && self.view_id.checked_add(1) == Some(view_id);
        let compatible = successor && voters == self.voters;
        self.view_id = view_id;
        self.voters = voters;
        if compatible {
            return ViewStart::Inherited { active_from_ns: self.active_from_ns };
        }
        self.known = true;
        self.epoch_first_view = view_id;
        self.active_from_ns = now_ns.saturating_add(self.config.start_wait_ns());
        // Confirmations of older views say nothing about this one.
        self.active_until_ns = 0;
        self.pending_since_ns = None;
        ViewStart::Waiting { active_from_ns: self.active_from_ns }
    }

    /// The renewal to carry out now, if one is due ([`Self::next_renewal_at_ns`]).
    /// `now_ns` must be read before any of its reads is posted.
    pub fn poll_renewal(&mut self, now_ns: u64) -> Option<Renewal> {
        self.see(now_ns);
        let due_at_ns = self.next_renewal_at_ns()?;
        if now_ns < due_at_ns {
            return None;
        }
        self.pending_since_ns = Some(now_ns);
        Some(Renewal { view_id: self.view_id, issued_at_ns: now_ns })
    }

    /// When [`Self::poll_renewal`] issues the next renewal, on this member's clock: once
    /// less than `renew_before_ns` is left of the lease (or of the wait before the view
    /// starts), and `retry_after_ns` after an unconfirmed one. `None` while no view is
    /// known.
    pub fn next_renewal_at_ns(&self) -> Option<u64> {
        if !self.known {
            return None;
        }
        let ends_ns = self.active_until_ns.max(self.active_from_ns);
        let due_ns = ends_ns.saturating_sub(self.config.renew_before_ns);
        let retry_ns =
            self.pending_since_ns.map_or(0, |issued| issued.saturating_add(self.config.retry_after_ns));
        Some(due_ns.max(retry_ns))
    }

    /// Takes in a renewal confirmed at `now_ns`: a majority of acceptors, each read after
    /// `renewal.issued_at_ns`, had accepted nothing for instance `renewal.view_id + 1`.
    /// If the view confirmed belongs to the current run of compatible views, the lease is
    /// extended to `issued_at_ns + Δ` (never shortened) and that end is returned; any other
    /// confirmation is ignored.
    pub fn on_confirmed(&mut self, now_ns: u64, renewal: Renewal) -> Option<u64> {
        self.see(now_ns);
        assert!(
            renewal.issued_at_ns <= now_ns,
            "a renewal issued at {} was confirmed at {now_ns}, before it",
            renewal.issued_at_ns
        );
        let in_epoch = self.known && (self.epoch_first_view..=self.view_id).contains(&renewal.view_id);
        if !in_epoch {
            return None;
        }
        if self.pending_since_ns.is_some_and(|issued| issued <= renewal.issued_at_ns) {
            self.pending_since_ns = None;
        }
        let until_ns = renewal.issued_at_ns.saturating_add(self.config.lease_ns);
        self.active_until_ns = self.active_until_ns.max(until_ns);
        Some(self.active_until_ns)
    }

    fn see(&mut self, now_ns: u64) {
        assert!(
            now_ns >= self.latest_now_ns,
            "the member's clock went backwards from {} to {now_ns}",
            self.latest_now_ns
        );
        self.latest_now_ns = now_ns;
    }
}

#[cfg(test)]
mod tests {
    use usec_qp_pool::NodeId;

    use super::*;
    use crate::lease::view::{ViewSummary, Voter};

    const LEASE_NS: u64 = 20_000;

    fn config() -> ActiveConfig {
        ActiveConfig {
            lease_ns: LEASE_NS,
            drift: DriftBound::from_ppm(1_000).unwrap(),
            renew_before_ns: 8_000,
            retry_after_ns: 3_000,
        }
    }

    /// View `view_id` whose voters are nodes `voters`, each in incarnation 0.
    fn view(view_id: u64, voters: &[u16]) -> ViewSummary {
        let voters = voters.iter().map(|&node| Voter { node: NodeId::new(node).unwrap(), incarnation: 0 });
        ViewSummary { view_id, voters: VoterSet::new(voters) }
    }

    /// A member in view 1 since local time 0, confirmed from `issued`.
    fn member_confirmed_at(issued: u64) -> ActiveLease {
        let mut lease = ActiveLease::new(config()).unwrap();
        lease.on_view_learned(0, &view(1, &[1, 2, 3]));
        let renewal = lease.poll_renewal(issued).expect("due");
        lease.on_confirmed(issued + 2_000, renewal);
        lease
    }

    #[test]
    fn a_new_view_waits_out_the_stretched_lease_and_needs_a_confirmation() {
        let mut lease = ActiveLease::new(config()).unwrap();
        // 20 µs × 1.001 / 0.999 = 20 040.04… → 20 041, + 1.
        assert_eq!(config().start_wait_ns(), 20_042);
        assert_eq!(
            lease.on_view_learned(1_000, &view(1, &[1, 2, 3])),
            ViewStart::Waiting { active_from_ns: 21_042 }
        );
        assert!(!lease.is_active(1, 21_042), "started, but never confirmed");
        // The first renewal is due with renew_before left of the wait: it then covers the start.
        assert_eq!(lease.next_renewal_at_ns(), Some(13_042));
        assert_eq!(lease.poll_renewal(13_041), None);
        let renewal = lease.poll_renewal(13_042).expect("due");
        assert_eq!(renewal, Renewal { view_id: 1, issued_at_ns: 13_042 });
        assert_eq!(lease.on_confirmed(15_000, renewal), Some(33_042));
        assert!(!lease.is_active(1, 21_041), "confirmed, but not started");
        assert!(lease.is_active(1, 21_042) && lease.is_active(1, 33_041));
        assert!(!lease.is_active(1, 33_042), "Δ after the renewal was issued");
        assert!(!lease.is_active(2, 25_000), "another view");
        assert_eq!(lease.active_view(25_000), Some(1));
        assert_eq!(lease.remaining_ns(33_000), 42);
    }

    #[test]
    fn nothing_is_active_before_a_view_is_learned() {
        let mut lease = ActiveLease::new(config()).unwrap();
        assert!(!lease.is_active(0, 0) && !lease.is_active(0, u64::MAX - 1));
        assert_eq!((lease.view_id(), lease.next_renewal_at_ns()), (None, None));
        assert_eq!(lease.poll_renewal(1_000_000), None);
        assert_eq!(lease.on_confirmed(1_000_000, Renewal { view_id: 0, issued_at_ns: 0 }), None);
        assert!(!lease.is_active(0, 10_000));
    }

    #[test]
    fn renewals_extend_from_their_issue_and_unconfirmed_ones_are_retried() {
        let mut lease = member_confirmed_at(20_100);
        assert_eq!(lease.active_until_ns(), Some(40_100));
        assert_eq!(lease.next_renewal_at_ns(), Some(32_100));
        let lost = lease.poll_renewal(32_100).expect("8 µs left");
        assert_eq!(lease.poll_renewal(35_099), None, "waits retry_after for the first");
        let retry = lease.poll_renewal(35_100).expect("re-issued after 3 µs");
        // The late confirmation of the first still counts, and never shortens.
        assert_eq!(lease.on_confirmed(36_000, retry), Some(55_100));
        assert_eq!(lease.on_confirmed(36_500, lost), Some(55_100));
        assert_eq!(lease.next_renewal_at_ns(), Some(47_100));
    }

    #[test]
    fn an_incompatible_view_drops_the_old_lease_at_once() {
        let mut lease = member_confirmed_at(20_100);
        assert!(lease.is_active(1, 30_000));
        let start = lease.on_view_learned(30_000, &view(2, &[1, 2, 4]));
        assert_eq!(start, ViewStart::Waiting { active_from_ns: 50_042 });
        assert!(!lease.is_active(1, 30_000) && !lease.is_active(2, 30_000));
        // A confirmation of view 1 issued earlier says nothing about view 2.
        assert_eq!(lease.on_confirmed(31_000, Renewal { view_id: 1, issued_at_ns: 29_000 }), None);
        let renewal = lease.poll_renewal(42_042).expect("due 8 µs before the start");
        lease.on_confirmed(43_000, renewal);
        assert!(!lease.is_active(2, 50_041) && lease.is_active(2, 50_042));
    }

    #[test]
    fn a_compatible_view_inherits_the_lease_without_waiting() {
        let mut lease = member_confirmed_at(20_100);
        // Same voters; only non-voting members (not part of the summary) changed.
        let start = lease.on_view_learned(30_000, &view(2, &[3, 2, 1]));
        assert_eq!(start, ViewStart::Inherited { active_from_ns: 20_042 });
        assert!(lease.is_active(2, 30_000) && !lease.is_active(1, 30_000));
        assert_eq!(lease.active_until_ns(), Some(40_100));
        // A confirmation of view 1, the same run of compatible views, still extends it.
        assert_eq!(lease.on_confirmed(31_000, Renewal { view_id: 1, issued_at_ns: 30_500 }), Some(50_500));
        assert_eq!(lease.epoch_first_view(), Some(1));
        // And a view 3 with other voters starts a new run.
        lease.on_view_learned(32_000, &view(3, &[1, 2]));
        assert_eq!(lease.epoch_first_view(), Some(3));
        assert_eq!(lease.on_confirmed(33_000, Renewal { view_id: 2, issued_at_ns: 32_500 }), None);
    }

    #[test]
    fn a_compatible_view_learned_during_the_wait_keeps_waiting() {
        let mut lease = ActiveLease::new(config()).unwrap();
        lease.on_view_learned(0, &view(1, &[1, 2, 3]));
        assert_eq!(
            lease.on_view_learned(5_000, &view(2, &[1, 2, 3])),
            ViewStart::Inherited { active_from_ns: 20_042 }
        );
        let renewal = lease.poll_renewal(12_042).unwrap();
        lease.on_confirmed(13_000, renewal);
        assert!(!lease.is_active(2, 20_041) && lease.is_active(2, 20_042));
    }

    #[test]
    fn a_skipped_view_means_waiting_even_with_the_same_voters() {
        let mut lease = member_confirmed_at(20_100);
        // View 2 was never seen here: whether it kept the voters is unknown.
        let start = lease.on_view_learned(30_000, &view(3, &[1, 2, 3]));
        assert_eq!(start, ViewStart::Waiting { active_from_ns: 50_042 });
        assert!(!lease.is_active(3, 30_000));
    }

    #[test]
    fn a_new_incarnation_of_a_voter_is_incompatible() {
        let mut lease = member_confirmed_at(20_100);
        let mut replaced = view(2, &[1, 2]);
        replaced.voters =
            replaced.voters.iter().chain([Voter { node: NodeId::new(3).unwrap(), incarnation: 1 }]).collect();
        assert!(matches!(lease.on_view_learned(30_000, &replaced), ViewStart::Waiting { .. }));
    }

    #[test]
    fn old_views_learned_late_are_ignored() {
        let mut lease = member_confirmed_at(20_100);
        lease.on_view_learned(30_000, &view(3, &[1, 2, 3]));
        assert_eq!(lease.on_view_learned(30_500, &view(2, &[1, 2, 3])), ViewStart::Stale);
        assert_eq!(lease.on_view_learned(30_500, &view(3, &[9])), ViewStart::Stale);
        assert_eq!(lease.view_id(), Some(3));
    }

    #[test]
    fn a_paused_member_finds_its_view_inactive_on_waking() {
        let lease = member_confirmed_at(20_100);
        assert!(lease.is_active(1, 40_099));
        // Asleep from 25 µs to 90 µs on its own clock: the first look after finds nothing.
        assert!(!lease.is_active(1, 90_000));
    }

    #[test]
    fn nonsense_configurations_are_refused() {
        let refused = |change: fn(&mut ActiveConfig)| {
            let mut config = config();
            change(&mut config);
            ActiveLease::new(config).is_err()
        };
        assert!(refused(|config| config.lease_ns = 0));
        assert!(refused(|config| config.renew_before_ns = LEASE_NS));
        assert!(refused(|config| config.retry_after_ns = 0));
        assert!(ActiveLease::new(ActiveConfig::default()).is_ok());
    }

    #[test]
    #[should_panic(expected = "before it")]
    fn a_confirmation_from_the_future_is_a_bug() {
        let mut lease = member_confirmed_at(20_100);
        lease.on_confirmed(25_000, Renewal { view_id: 1, issued_at_ns: 25_001 });
    }

    #[test]
    #[should_panic(expected = "went backwards")]
    fn a_clock_that_goes_back_is_a_bug() {
        let mut lease = member_confirmed_at(20_100);
        lease.poll_renewal(21_000);
    }
}
