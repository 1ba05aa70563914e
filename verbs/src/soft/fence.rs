//! The fence between a requester's operations and its responder's changes of rights: after
//! a change returns, nothing checked against the old rights can land, and a requester that
//! cannot be waited for (stopped, or too slow) is revoked instead of waited for.
//!
//! # The protocol
//!
//! A requester (R) runs operation `o` through its QP `q`, connected to QP `p` of node N:
//! 1. **Raise.** R stores its in-flight marker `m_q := v`, then runs a SeqCst fence `F_R`.
//!    `v` is odd, unique (a sequence number), and names `o`'s [`Intent`]: read, write (with
//!    the target MR slot of its rkey) or send.
//! 2. **Check.** R reads `p`'s state word `w` and receive-queue generation `g`: it must
//!    serve R, else the operation waits (`TargetNotReady`).
//! 3. **Derive.** For each MR it touches, R reads the MR's epoch `e` (odd: moving, wait),
//!    then its word (rights), then takes its mapping of the file of epoch `e`, and
//!    computes its pointers. A SEND first claims the RECV, then derives its buffers.
//! 4. **Validate.** R reads `w` and `g` again: unchanged (a SEND ignores access bits), or
//!    it starts over from 2.
//! 5. **Copy** through the pointers.
//! 6. **Lower.** R compare-and-swaps `m_q` from `v` to `v - 1` (release: its copy happens
//!    before anyone who reads the lowered value acquires it). If that fails, N has
//!    revoked `o` (`m_q == v + 1`): R acknowledges (stores `v - 1`) and does not report
//!    `o`'s bytes as placed: a WRITE or READ starts over from 1 (idempotent), a SEND or
//!    WRITE_WITH_IMM places its data again, still holding its RECV, and an atomic fails
//!    with `RemoteOperationError` (its effect may or may not have been copied). A two-sided
//!    operation completes its RECV only after a successful lower.
//!
//! The responder (N) changes a right (QP access, MR access), retires `p` (destroy, reset,
//! ERROR) or deregisters an MR:
//! 1. It stores the new QP or MR word.
//! 2. After a SeqCst fence `F_N` ([`observe`]), it reads the markers of the peers concerned
//!    (acquire): `p`'s peer for a QP change,
//!    the peers of every live QP for an MR change; it keeps those in flight (`v`), or
//!    revoked by another fence and not yet acknowledged (`v + 1`: still maybe copying), with
//!    an intent the change governs ([`Change`]).
//! 3. It waits up to [`WAIT_BOUND`] for each kept operation to end (its marker neither `v`
//!    nor `v + 1`); a peer that died counts as ended.
//! 4. If they all changed, it returns. Otherwise the operations left (the stuck set `S`)
//!    are revoked (`relocation.rs`): for the regions they may write — the target MR's for a
//!    write, for a SEND every region of the QP's PD (retirement) or the changed MR's —
//!    N bumps the epoch of every MR registered on them to odd, then (after a SeqCst fence,
//!    as in 2) compare-and-swaps every marker in flight whose intent targets one of those
//!    MRs (and every SEND, and every marker in `S`) from `v` to `v + 1`, moves each region to a fresh file at the same address with
//!    its contents copied ([`Region::relocate`](usec_regions::Region::relocate)),
//!    publishes the fresh files and bumps the epochs to even.
//!
//! # Why it holds
//!
//! SeqCst fences lie in one total order `S`; if fence `A` precedes fence `B` there, a load
//! after `B` sees every store made before `A` (or a later one). That is Dekker's handshake
//! between `F_R` and `F_N`.
//! 1. *Without stuck peers, nothing checked against the old rights lands after the change
//!    returns.* Let `o` have read the old word (at R3 for an MR, R4 for `p`). Then `F_R`
//!    precedes `F_N` in `S` (the other way round, R's loads after `F_R` would see N1's
//!    store), so N2 reads `m_q` at `v` or later. At `v`, N waits until R lowers, after R5;
//!    later, R lowered already. Either way `o`'s bytes landed before N returns.
//! 2. *After a revocation returns, no late byte of a revoked operation becomes visible.*
//!    Every pointer of `o` leads into the file of the epoch R read at R3. If R read it
//!    before N's odd bump, that is the old file, which the region no longer maps once
//!    `relocate` returns: a byte stored there after the copy read its place is never
//!    visible; one stored before was stored before N returned. If R read it after the
//!    bump, it read odd (and waits) or an even epoch published after N1 (moves run one at a
//!    time, so any later one follows N1 too); reading it, R acquires N1's store, so R4 (and
//!    R3's MR word) see the new word: `o` is checked against the new rights. That is what
//!    step 4 is for: a stop between R2 and R3 would otherwise let `o` derive fresh pointers
//!    under old rights.
//!    `g` changes at every reset, so a QP reset and reconnected while R was stopped cannot
//!    pass for the same one.
//! 3. *No acknowledged byte is lost.* Say `o` lowered successfully, and a move `M` of a
//!    region `o` wrote ran while `o`'s pointers led into the old file (R3 read the epoch
//!    before `M`'s odd bump). Then `F_R` precedes `M`'s fence, which follows the bump (else
//!    R would have read the bump), so `M` reads `m_q` at `v` or later. At `v`,
//!    `o`'s intent targets a moving MR (every MR on the region moves, and SENDs are always
//!    revoked), so `M` compare-and-swaps `v`; since R's own compare-and-swap from `v`
//!    succeeded, `M`'s failed, having read R's lowered value: R5 happens before `M`'s copy.
//!    Later than `v`, likewise. A revoked `o` reports nothing until it redid its copy and
//!    lowered successfully, under the same argument.
//! 4. *This process's own accesses are never lost*: `relocate` holds them while it moves.
//! 5. *Bounded*: N waits at most [`WAIT_BOUND`], then copies the regions it moves; it never
//!    waits for a stuck peer. (If a move fails — no memory for the fresh file — N falls
//!    back to waiting until the revoked peers acknowledge.)
//! 6. *A revoked operation fails once it resumes* unless the new rights allow it: its lower
//!    fails, and its redo is checked against the new rights.
//!
//! `loom_fence.rs` model-checks 1 to 3 on the real marker code (loom needs the fences: it
//! does not model SeqCst loads and stores beyond acquire and release).

use crate::primitive::sync::atomic::{fence as atomic_fence, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::soft::layout::{split_key, MAX_MR};
use crate::soft::node::Node;
use crate::soft::peer::Peer;
use crate::soft::relocation;
use crate::work_request::SendOp;

/// How long a responder waits for a peer's operation before revoking it: well above a
/// normal operation (a 64 KiB WRITE copies in a few microseconds), well below the failover
/// budgets of the protocols built on it (Mu fails over in well under a millisecond).
pub(crate) const WAIT_BOUND: Duration = Duration::from_micros(200);

/// Marker bits: bit 0 in flight, bit 1 revoked (and not yet acknowledged), bits 2–3 the
/// intent's kind, bits 4–16 its target MR slot plus one (0: none), bits 17 and up a
/// sequence number. Raised `v` (bit 0 set, bit 1 clear); lowered or acknowledged `v - 1`;
/// revoked `v + 1` (bit 0 clear, bit 1 set).
const KIND_SHIFT: u32 = 2;
const TARGET_SHIFT: u32 = 4;
const SEQUENCE_SHIFT: u32 = 17;
const KIND_MASK: u64 = 0b11;
const TARGET_MASK: u64 = (1 << (SEQUENCE_SHIFT - TARGET_SHIFT)) - 1;

/// What an operation may touch of its responder's memory, as its marker announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Intent {
    /// Reads the MR in this slot (READ).
    Read(Option<usize>),
    /// Writes the MR in this slot (WRITE, WRITE_WITH_IMM, atomics).
    Write(Option<usize>),
    /// Writes the buffers of a RECV, which may lie in any MR of the PD (SEND).
    Send,
}

impl Intent {
    pub(crate) fn of(op: &SendOp) -> Intent {
        let target = |rkey: u32| {
            let (slot, _) = split_key(rkey);
            (slot < MAX_MR).then_some(slot)
        };
        match *op {
            SendOp::Read { remote } => Intent::Read(target(remote.rkey)),
            SendOp::Write { remote }
            | SendOp::WriteWithImm { remote, .. }
            | SendOp::CompareSwap { remote, .. }
            | SendOp::FetchAdd { remote, .. } => Intent::Write(target(remote.rkey)),
            SendOp::Send | SendOp::SendWithImm { .. } => Intent::Send,
        }
    }

    fn bits(self) -> u64 {
        let (kind, target) = match self {
            Intent::Read(target) => (0, target),
            Intent::Write(target) => (1, target),
            Intent::Send => (2, None),
        };
        let target = target.map_or(0, |slot| slot as u64 + 1);
        (kind << KIND_SHIFT) | (target << TARGET_SHIFT)
    }

    pub(crate) fn from_marker(marker: u64) -> Intent {
        let target = match (marker >> TARGET_SHIFT) & TARGET_MASK {
            0 => None,
            slot => Some(slot as usize - 1),
        };
        match (marker >> KIND_SHIFT) & KIND_MASK {
            0 => Intent::Read(target),
            1 => Intent::Write(target),
            _ => Intent::Send,
        }
    }

    /// The MR slot it targets, if one.
    pub(crate) fn target(self) -> Option<usize> {
        match self {
            Intent::Read(target) | Intent::Write(target) => target,
            Intent::Send => None,
        }
    }

    /// Whether the responder must fence it for `change`.
    fn fenced_by(self, change: Change) -> bool {
        match change {
            // Access flags govern one-sided operations only.
            Change::QpAccess => self != Intent::Send,
            Change::QpRetired => true,
            // A SEND may be placing into the MR through a RECV.
            Change::Mr { slot } => self.target() == Some(slot) || self == Intent::Send,
        }
    }
}

/// What the responder changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// The access flags of a QP.
    QpAccess,
    /// A QP stopped serving its peer: destroyed, reset, or moved to ERROR.
    QpRetired,
    /// The access of the MR in this slot, or its registration.
    Mr { slot: usize },
}

/// A requester's own in-flight marker.
pub(crate) struct Marker<'a> {
    word: &'a AtomicU64,
}

impl<'a> Marker<'a> {
    pub(crate) fn new(word: &'a AtomicU64) -> Marker<'a> {
        Marker { word }
    }

    /// Step R1: announces an operation with `intent`; returns the raised value.
    #[inline]
    pub(crate) fn raise(&self, intent: Intent) -> u64 {
        // Only this QP's executor raises it; a responder only ever turns an odd value even.
        let sequence = (self.word.load(Ordering::Relaxed) >> SEQUENCE_SHIFT) + 1;
        let raised = (sequence << SEQUENCE_SHIFT) | intent.bits() | 1;
        self.word.store(raised, Ordering::Relaxed);
        // Dekker with the responder's fence in `observe`: either it sees this marker, or
        // every load after this fence sees what it stored before its own.
        atomic_fence(Ordering::SeqCst);
        raised
    }

    /// Step R6: true if the operation ended unrevoked; false if the responder revoked it
    /// (then the revocation is acknowledged).
    #[inline]
    pub(crate) fn lower(&self, raised: u64) -> bool {
        if self.word.compare_exchange(raised, raised - 1, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
            return true;
        }
        debug_assert_eq!(
            self.word.load(Ordering::Relaxed),
            revoked(raised),
            "only a revocation moves a marker"
        );
        self.word.store(acknowledged(raised), Ordering::Release);
        false
    }
}

/// The value a responder leaves in a marker it revokes.
pub(crate) fn revoked(raised: u64) -> u64 {
    raised + 1
}

/// The value a requester stores once it saw its operation revoked: that of a lowered one.
fn acknowledged(raised: u64) -> u64 {
    raised - 1
}

/// The raised value of the operation a marker value says may be touching memory: one in
/// flight, or one revoked that has not yet seen it (it may still be copying).
pub(crate) fn operation_of(value: u64) -> Option<u64> {
    match value & 0b11 {
        0b01 => Some(value),
        0b10 => Some(value - 1),
        _ => None,
    }
}

/// Whether the operation raised as `raised` may still be touching memory, given the
/// marker's current `value`.
fn busy_with(value: u64, raised: u64) -> bool {
    value == raised || value == revoked(raised)
}

/// Steps N2 (after N1's store) and Mb (after the odd epoch): the operation a peer's marker
/// says may be touching memory, read after a SeqCst fence that pairs with the one in
/// [`Marker::raise`] — either the peer's operation is seen here, or it reads whatever the
/// responder stored before this fence.
pub(crate) fn observe(marker: &AtomicU64) -> Option<u64> {
    atomic_fence(Ordering::SeqCst);
    operation_of(marker.load(Ordering::SeqCst))
}

/// Revokes the operation whose marker reads `raised`, unless it ended meanwhile. Returns
/// whether it was revoked.
pub(crate) fn revoke(marker: &AtomicU64, raised: u64) -> bool {
    marker.compare_exchange(raised, revoked(raised), Ordering::SeqCst, Ordering::SeqCst).is_ok()
}

/// A peer QP whose marker a fence watches.
#[derive(Clone, Debug)]
pub(crate) struct Watched {
    pub peer: Arc<Peer>,
    /// The peer QP's slot.
    pub peer_slot: usize,
    /// The PD of our QP it is connected to.
    pub pd: u32,
    /// The raised value of the operation seen in flight.
    pub seen: u64,
}

impl Watched {
    pub(crate) fn marker(&self) -> &AtomicU64 {
        &self.peer.block().qps[self.peer_slot].outbound.in_flight
    }

    pub(crate) fn intent(&self) -> Intent {
        Intent::from_marker(self.seen)
    }
}

/// Steps N2 to N4 (N1, storing the new word with SeqCst, is the caller's): waits for the
/// peers of `links` (peer, peer QP slot, our QP's PD) that may be in the middle of an
/// operation `change` governs, and revokes those it cannot wait for.
pub(crate) fn fence(node: &Node, change: Change, links: impl IntoIterator<Item = (Arc<Peer>, usize, u32)>) {
    let mut watched: Vec<Watched> = links
        .into_iter()
        .filter_map(|(peer, peer_slot, pd)| {
            // A marker another fence of ours revoked counts: that operation may still be
            // copying, and this change may need more memory moved than that fence did.
            let seen = observe(&peer.block().qps[peer_slot].outbound.in_flight)?;
            let watched = Watched { peer, peer_slot, pd, seen };
            watched.intent().fenced_by(change).then_some(watched)
        })
        .collect();
    if watched.is_empty() {
        return;
    }
    wait_bounded(&mut watched);
    if !watched.is_empty() {
        relocation::revoke(node, change, &watched);
    }
}

/// Waits up to [`WAIT_BOUND`] for each watched marker to move on; keeps the ones that did
/// not (of live peers). It spins: a yield on a busy machine can give the core away for
/// milliseconds, far past the bound.
fn wait_bounded(watched: &mut Vec<Watched>) {
    let start = Instant::now();
    loop {
        watched.retain(|peer| {
            busy_with(peer.marker().load(Ordering::SeqCst), peer.seen) && !peer.peer.liveness.is_dead()
        });
        if watched.is_empty() || start.elapsed() >= WAIT_BOUND {
            return;
        }
        std::hint::spin_loop();
    }
}

/// Waits, without bound, until the operation raised as `raised` no longer touches memory
/// (or its peer died): for our own QPs' operations, which are this process's threads and
/// always finish, and as the fallback when a revocation cannot move memory.
pub(crate) fn wait_for(marker: &AtomicU64, raised: u64, gone: impl Fn() -> bool) {
    let start = Instant::now();
    let mut spins = 0u32;
    while busy_with(marker.load(Ordering::SeqCst), raised) && !gone() {
        spins += 1;
        if spins < 256 {
            std::hint::spin_loop();
        } else if start.elapsed() < Duration::from_millis(1) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_round_trip_through_markers() {
        let marker = AtomicU64::new(0);
        let own = Marker::new(&marker);
        for intent in
            [Intent::Read(Some(0)), Intent::Write(Some(MAX_MR - 1)), Intent::Write(None), Intent::Send]
        {
            let raised = own.raise(intent);
            assert_eq!(raised & 1, 1);
            assert_eq!(Intent::from_marker(raised), intent);
            assert!(own.lower(raised));
            assert_eq!(marker.load(Ordering::Relaxed) & 1, 0);
        }
    }

    #[test]
    fn a_revoked_operation_learns_it_when_it_lowers() {
        let marker = AtomicU64::new(0);
        let own = Marker::new(&marker);
        let first = own.raise(Intent::Write(Some(3)));
        assert!(revoke(&marker, first));
        assert!(!revoke(&marker, first), "revoked once");
        assert_eq!(operation_of(marker.load(Ordering::Relaxed)), Some(first), "revoked, maybe still copying");
        assert_eq!(Intent::from_marker(revoked(first)), Intent::Write(Some(3)));
        assert!(!own.lower(first));
        assert_eq!(marker.load(Ordering::Relaxed), acknowledged(first));
        assert_eq!(operation_of(acknowledged(first)), None, "acknowledged: done with the memory");
        let second = own.raise(Intent::Write(Some(3)));
        assert!(second > revoked(first), "raised values only grow");
        assert!(own.lower(second));
        assert!(!revoke(&marker, second), "a finished operation cannot be revoked");
    }

    #[test]
    fn changes_fence_the_intents_they_govern() {
        assert!(Intent::Write(Some(1)).fenced_by(Change::QpAccess));
        assert!(!Intent::Send.fenced_by(Change::QpAccess));
        assert!(Intent::Send.fenced_by(Change::QpRetired));
        assert!(Intent::Read(Some(2)).fenced_by(Change::Mr { slot: 2 }));
        assert!(!Intent::Write(Some(1)).fenced_by(Change::Mr { slot: 2 }));
        assert!(Intent::Send.fenced_by(Change::Mr { slot: 2 }));
    }
}
