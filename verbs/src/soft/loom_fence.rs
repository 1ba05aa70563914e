//! Loom models of the fence between a requester's operation and its responder's changes
//! (`fence.rs`): the in-flight marker, the responder QP's state word, and the MR's epoch
//! with the two files a move leaves behind.
//!
//! The models run the real marker code ([`Marker`], [`observe`], [`revoke`]) and
//! mirror, step by step and with the same orderings, what `execute.rs` (R1–R6) and
//! `fence.rs`/`relocation.rs` (N1–N4) do around it; the memory of the region is one word
//! per file, and which file the region maps is one more word. A responder that finds an
//! operation in flight revokes it at once, which is what it does when its bound expires,
//! and the hardest case for the protocol: loom then explores every interleaving of the
//! requester's steps with the responder's.

use std::sync::Arc;

use loom::thread;

use crate::primitive::sync::atomic::{AtomicU64, Ordering};
use crate::soft::fence::{observe, revoke, Intent, Marker};

/// The QP word: the requester may write, or no more.
const GRANTED: u64 = 1;
const REVOKED: u64 = 2;
/// What the requester writes, and what the region holds before.
const WRITTEN: u64 = 7;
const BEFORE: u64 = 1;
const INTENT: Intent = Intent::Write(Some(0));

fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(body);
}

/// One responder QP, one MR on one region, and one requester's marker.
struct Rig {
    /// The requester's in-flight marker (in its own control block).
    marker: AtomicU64,
    /// The responder QP's state word.
    word: AtomicU64,
    /// The MR's epoch: even, the region is in file `epoch / 2`; odd, it is moving.
    epoch: AtomicU64,
    /// One word of the region in each file: the original, and the one a move makes.
    files: [AtomicU64; 2],
    /// Which file the responder's region maps.
    mapped: AtomicU64,
}

/// How one attempt of the requester's WRITE ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    /// Lowered unrevoked: reported as a success.
    Success,
    /// Revoked while it ran: its bytes count for nothing; a WRITE starts over.
    Revoked,
    /// Refused, or the QP changed under it: nothing written.
    Refused,
    /// The memory is moving: it tries again later.
    Moving,
}

impl Rig {
    fn new() -> Arc<Rig> {
        Arc::new(Rig {
            marker: AtomicU64::new(0),
            word: AtomicU64::new(GRANTED),
            epoch: AtomicU64::new(0),
            files: [AtomicU64::new(BEFORE), AtomicU64::new(0)],
            mapped: AtomicU64::new(0),
        })
    }

    /// The requester's WRITE, steps R1 to R6 as `Requester::execute` and `one_sided` take
    /// them.
    fn write_once(&self) -> Attempt {
        let marker = Marker::new(&self.marker);
        let raised = marker.raise(INTENT);
        let attempt = self.write_marked();
        match (attempt, marker.lower(raised)) {
            (Attempt::Success, false) => Attempt::Revoked,
            (attempt, _) => attempt,
        }
    }

    fn write_marked(&self) -> Attempt {
        // R2: the responder QP serves us with write rights.
        let checked = self.word.load(Ordering::SeqCst);
        if checked != GRANTED {
            return Attempt::Refused;
        }
        // R3: the epoch first (then the MR word, unchanged here), then the file of that
        // epoch.
        let epoch = self.epoch.load(Ordering::SeqCst);
        if epoch % 2 == 1 {
            return Attempt::Moving;
        }
        let file = &self.files[(epoch / 2) as usize];
        // R4: the QP is still as checked.
        if self.word.load(Ordering::SeqCst) != checked {
            return Attempt::Refused;
        }
        // R5: the copy (copies into shared memory are relaxed atomic stores).
        file.store(WRITTEN, Ordering::Relaxed);
        Attempt::Success
    }

    /// N2 to N4 with an operation in flight it does not wait for: revoke it and move the
    /// region, as `relocation::revoke` does.
    fn revoke_and_move(&self) {
        let Some(raised) = observe(&self.marker) else { return };
        self.move_region(Some(raised));
    }

    /// A move, as `relocation::revoke` runs it: odd epoch, revoke the stuck operation and
    /// every operation in flight on the MR, copy, map the fresh file, even epoch.
    fn move_region(&self, stuck: Option<u64>) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Some(raised) = stuck {
            revoke(&self.marker, raised);
        }
        if let Some(raised) = observe(&self.marker) {
            revoke(&self.marker, raised);
        }
        let copied = self.files[0].load(Ordering::Relaxed);
        self.files[1].store(copied, Ordering::Relaxed);
        self.mapped.store(1, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// What the responder's region shows.
    fn visible(&self) -> u64 {
        self.files[self.mapped.load(Ordering::SeqCst) as usize].load(Ordering::Relaxed)
    }
}

/// The responder takes the write right away while the requester WRITEs. Once the change
/// returns, what the region shows never changes again (no late byte), and a WRITE the
/// requester saw succeed is what it shows (no acknowledged byte lost).
#[test]
fn loom_a_revocation_leaves_no_late_byte_and_loses_no_acknowledged_one() {
    model(|| {
        let rig = Rig::new();
        let requester = {
            let rig = Arc::clone(&rig);
            thread::spawn(move || rig.write_once())
        };
        // N1, then the fence.
        rig.word.store(REVOKED, Ordering::SeqCst);
        rig.revoke_and_move();
        let at_return = rig.visible();
        let attempt = requester.join().unwrap();
        assert_eq!(rig.visible(), at_return, "a byte landed after the revocation returned ({attempt:?})");
        if attempt == Attempt::Success {
            assert_eq!(at_return, WRITTEN, "an acknowledged WRITE is lost");
        }
    });
}

/// A requester whose rights no change touches WRITEs while the region moves under it (the
/// move another requester's revocation caused). It redoes what was revoked and waits out
/// the move; once it succeeds, the region shows its WRITE.
#[test]
fn loom_a_writer_with_rights_loses_nothing_to_a_move() {
    model(|| {
        let rig = Rig::new();
        let requester = {
            let rig = Arc::clone(&rig);
            thread::spawn(move || loop {
                match rig.write_once() {
                    Attempt::Success => return,
                    Attempt::Refused => panic!("nothing took the right away"),
                    Attempt::Revoked | Attempt::Moving => thread::yield_now(),
                }
            })
        };
        rig.move_region(None);
        requester.join().unwrap();
        assert_eq!(rig.visible(), WRITTEN, "an acknowledged WRITE is lost to the move");
    });
}
