//! What a new view must re-propose: derived from f + 1 seals, the same way by the new
//! leader and by every replica that checks its new view.
//!
//! For each slot above the new view's low checkpoint, the candidates are
//!
//! - the highest-view **commit** (a prepare certificate) any sealer had made, and
//! - every view `vp` above it in which **all** sealers had promised one same digest;
//!
//! and the candidate of the highest view wins. Slots with no candidate may get anything.
//!
//! Why a decided slot survives. Decided fast in view `v` means all n replicas' streams
//! carry a promise for `X` in `v` before their seal; so every sealer has promised `X` in
//! `v` — a candidate. Decided slow in `v` means f + 1 streams carry a commit of `X` in `v`
//! before their seal; f + 1 sealers out of 2f + 1 include one of them — a candidate. No
//! candidate of a higher view names anything else: a certificate holds a correct
//! replica's share, an all-sealer promise a correct sealer's promise, and a correct
//! replica in a later view promised only what the derivation (inductively) gave: `X`.
//! Candidates of view `v` itself agree with `X` for the same reason (a correct replica
//! promises only the first prepare of `v` for the slot, which CTBcast makes the same for
//! all). Messages after a stream's seal are not in its snapshot, and a decision counts
//! only what a stream said before sealing (see [`super::stream`]), so the two agree.

use std::collections::BTreeMap;

use super::stream::{Facts, Snapshot};
use crate::bft::ctbcast::Hash;

/// The re-proposals of new view `view`: slot to digest.
pub(super) fn derive(view: u64, low: u64, sealers: &[&Snapshot]) -> BTreeMap<u64, Hash> {
    let mut slots: Vec<u64> = sealers
        .iter()
        .flat_map(|snapshot| snapshot.promises.keys().chain(snapshot.commits.keys()))
        .copied()
        .filter(|&slot| slot > low)
        .collect();
    slots.sort_unstable();
    slots.dedup();
    let mut plan = BTreeMap::new();
    for slot in slots {
        let certified = sealers
            .iter()
            .filter_map(|snapshot| snapshot.commits.get(&slot))
            .flatten()
            .filter(|&&(v, _)| v < view)
            .max_by_key(|&&(v, _)| v)
            .copied();
        let mut best = certified;
        let mut promised_views: Vec<u64> = sealers
            .iter()
            .filter_map(|snapshot| snapshot.promises.get(&slot))
            .flatten()
            .map(|&(v, _)| v)
            .filter(|&v| v < view && certified.is_none_or(|(vc, _)| v > vc))
            .collect();
        promised_views.sort_unstable();
        promised_views.dedup();
        for &vp in promised_views.iter().rev() {
            let first = Facts::lookup(&sealers[0].promises, slot, vp);
            let unanimous = first.is_some()
                && sealers.iter().all(|snapshot| Facts::lookup(&snapshot.promises, slot, vp) == first);
            if unanimous {
                best = Some((vp, first.expect("checked")));
                break;
            }
        }
        if let Some((_, digest)) = best {
            plan.insert(slot, digest);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(promises: &[(u64, u64, u8)], commits: &[(u64, u64, u8)]) -> Snapshot {
        let mut out = Snapshot::default();
        for &(slot, view, digest) in promises {
            Facts::record(&mut out.promises, 100, slot, view, [digest; 32]);
        }
        for &(slot, view, digest) in commits {
            Facts::record(&mut out.commits, 100, slot, view, [digest; 32]);
        }
        out
    }

    #[test]
    fn a_unanimous_promise_is_kept_and_a_lone_one_is_not() {
        // Slot 1: both sealers promised X in view 0 (a possible fast decision): kept.
        // Slot 2: only one promised (nothing was decided): free.
        let a = snapshot(&[(1, 0, 1), (2, 0, 2)], &[]);
        let b = snapshot(&[(1, 0, 1)], &[]);
        let plan = derive(1, 0, &[&a, &b]);
        assert_eq!(plan, BTreeMap::from([(1, [1; 32])]));
    }

    #[test]
    fn a_certificate_beats_older_promises_and_loses_to_a_later_unanimous_view() {
        // A Byzantine sealer's lone promise of view 3 does not beat the certificate of view 2.
        let a = snapshot(&[(5, 3, 9)], &[(5, 2, 7)]);
        let b = snapshot(&[(5, 1, 8)], &[]);
        assert_eq!(derive(4, 0, &[&a, &b])[&5], [7; 32]);
        // Both promised 7 again in view 3: that view wins (and names the same batch).
        let a = snapshot(&[(5, 3, 7)], &[(5, 2, 7)]);
        let b = snapshot(&[(5, 3, 7)], &[]);
        assert_eq!(derive(4, 0, &[&a, &b])[&5], [7; 32]);
    }

    #[test]
    fn slots_at_or_below_the_checkpoint_and_views_at_or_above_the_new_one_are_ignored() {
        let a = snapshot(&[(2, 0, 1), (3, 5, 1)], &[]);
        let plan = derive(5, 2, &[&a, &a.clone()]);
        assert!(plan.is_empty(), "{plan:?}");
    }
}
