//! Revoking operations a fence cannot wait for (step N4 in `fence.rs`): the memory they may
//! write moves to fresh files at the same addresses, so their late bytes land in orphans.
//!
//! A region can be registered several times, on several soft nodes of this process; a move
//! concerns every registration, so they are kept here, process-wide.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use usec_regions::Region;

use crate::soft::fence::{self, Change, Intent, Watched};
use crate::soft::node::Node;

/// One live soft MR.
struct Registration {
    region: Weak<Region>,
    node: Weak<Node>,
    slot: usize,
    pd: u32,
}

static REGISTRATIONS: Mutex<Vec<Registration>> = Mutex::new(Vec::new());
/// One revocation moves memory at a time: an epoch is odd for exactly one move.
static MOVES: Mutex<()> = Mutex::new(());

/// Records a new MR and runs `publish`, which publishes its slot (reading the region's
/// current file), between moves: a move either counts the registration or has finished,
/// and a slot a move still writes to is not reused meanwhile.
pub(crate) fn register(region: &Arc<Region>, node: &Arc<Node>, slot: usize, pd: u32, publish: impl FnOnce()) {
    let _serial = MOVES.lock().expect("moves");
    let mut registrations = REGISTRATIONS.lock().expect("registrations");
    registrations.retain(|known| known.node.strong_count() > 0 && known.region.strong_count() > 0);
    registrations.push(Registration { region: Arc::downgrade(region), node: Arc::downgrade(node), slot, pd });
    drop(registrations);
    publish();
}

/// Forgets an MR (once its slot is invalid and fenced).
pub(crate) fn unregister(node: &Node, slot: usize) {
    let mut registrations = REGISTRATIONS.lock().expect("registrations");
    registrations.retain(|known| !(std::ptr::eq(known.node.as_ptr(), node) && known.slot == slot));
}

/// Regions the stuck operations may write, for `change` at `node`.
fn regions_to_move(node: &Node, change: Change, stuck: &[Watched]) -> Vec<Arc<Region>> {
    let registrations = REGISTRATIONS.lock().expect("registrations");
    let ours = |known: &&Registration| std::ptr::eq(known.node.as_ptr(), node);
    let mut regions: Vec<Arc<Region>> = Vec::new();
    let mut add = |region: Option<Arc<Region>>| {
        if let Some(region) = region {
            if !regions.iter().any(|known| Arc::ptr_eq(known, &region)) {
                regions.push(region);
            }
        }
    };
    for watched in stuck {
        match (watched.intent(), change) {
            (Intent::Read(_), _) | (Intent::Write(None), _) => {}
            (Intent::Write(Some(slot)), _) | (Intent::Send, Change::Mr { slot }) => {
                let known = registrations.iter().filter(ours).find(|known| known.slot == slot);
                add(known.and_then(|known| known.region.upgrade()));
            }
            (Intent::Send, _) => {
                for known in registrations.iter().filter(ours).filter(|known| known.pd == watched.pd) {
                    add(known.region.upgrade());
                }
            }
        }
    }
    regions
}

/// A region on the move and every registration of it.
struct Move {
    region: Arc<Region>,
    registrations: Vec<(Arc<Node>, usize)>,
}

/// Revokes the stuck operations of a fence for `change` at `node`.
pub(crate) fn revoke(node: &Node, change: Change, stuck: &[Watched]) {
    let regions = regions_to_move(node, change, stuck);
    let _serial = MOVES.lock().expect("moves");
    let moves: Vec<Move> = {
        let registrations = REGISTRATIONS.lock().expect("registrations");
        regions
            .into_iter()
            .map(|region| {
                let registrations = registrations
                    .iter()
                    .filter(|known| known.region.as_ptr() == Arc::as_ptr(&region))
                    .filter_map(|known| Some((known.node.upgrade()?, known.slot)))
                    .collect();
                Move { region, registrations }
            })
            .collect()
    };
    // Odd epochs first: from here no new operation derives pointers into these regions.
    for (owner, slot) in moves.iter().flat_map(|moving| &moving.registrations) {
        owner.block().mrs[*slot].epoch.fetch_add(1, Ordering::SeqCst);
    }
    let mut revoked: Vec<(Watched, u64)> = Vec::new();
    for watched in stuck {
        if fence::revoke(watched.marker(), watched.seen) {
            revoked.push((watched.clone(), watched.seen));
        }
    }
    revoke_in_flight(&moves, &mut revoked);
    let mut failed = false;
    for moving in &moves {
        failed |= moving.region.relocate().is_err();
        let fd = moving.region.fd().as_raw_fd() as u32;
        for (owner, slot) in &moving.registrations {
            let mr = &owner.block().mrs[*slot];
            mr.fd.store(fd, Ordering::Relaxed);
            mr.epoch.fetch_add(1, Ordering::SeqCst);
        }
    }
    if failed {
        // The memory could not move: wait for the revoked operations to see that they
        // were, as before bounded revocation existed.
        for (watched, raised) in &revoked {
            fence::wait_for(watched.marker(), *raised, || watched.peer.liveness.is_dead());
        }
    }
}

/// Revokes every operation, of any peer of a node that registers a moving region, that may
/// be touching one of the moving MRs (or, a SEND, any of them).
fn revoke_in_flight(moves: &[Move], revoked: &mut Vec<(Watched, u64)>) {
    let mut owners: Vec<&Arc<Node>> = Vec::new();
    for (owner, _) in moves.iter().flat_map(|moving| &moving.registrations) {
        if !owners.iter().any(|known| Arc::ptr_eq(known, owner)) {
            owners.push(owner);
        }
    }
    for owner in owners {
        let moving_slot = |slot: usize| {
            moves
                .iter()
                .flat_map(|moving| &moving.registrations)
                .any(|(known, known_slot)| Arc::ptr_eq(known, owner) && *known_slot == slot)
        };
        for (peer, peer_slot, pd) in owner.links() {
            let marker = &peer.block().qps[peer_slot].outbound.in_flight;
            let Some(seen) = fence::observe(marker) else { continue };
            let intent = Intent::from_marker(seen);
            let touches = intent == Intent::Send || intent.target().is_some_and(moving_slot);
            if touches && fence::revoke(marker, seen) {
                revoked.push((Watched { peer, peer_slot, pd, seen }, seen));
            }
        }
    }
}
