//! The QP state machine against the IB specification's state diagram.
//!
//! The table is written from the specification (InfiniBand Architecture, vol. 1, 10.3.1,
//! "QP state diagram"; the kernel's `qp_state_table` in `drivers/infiniband/core/verbs.c`
//! encodes the same), for the states this API has: any state may go to RESET, and any
//! state but RESET to ERROR; RESET goes to INIT; INIT to INIT (a modify of attributes) and
//! to RTR; RTR to RTS; RTS to RTS (a modify). Nothing else: no skipping ahead (RESET →
//! RTR, INIT → RTS), no going back except through RESET, no way out of ERROR but RESET, no
//! RESET → ERROR (rxe refuses it with EINVAL), and RTR → RTR is not an attribute modify.
//! Every cell is tried through the public API on a fresh QP.

use usec_verbs::{AccessFlags, Error, Payload, QpState, QueuePair, SendWr, Status};

use crate::ensure;
use crate::ensure_eq;
use crate::setup::{wait, Outcome, Provider, Side, SideOptions, DEFAULT_WAIT};

const STATES: [QpState; 5] = [QpState::Reset, QpState::Init, QpState::Rtr, QpState::Rts, QpState::Error];

/// `ALLOWED[from][to]`, states in the order of [`STATES`].
#[rustfmt::skip]
const ALLOWED: [[bool; 5]; 5] = [
    //         to: RESET  INIT   RTR    RTS    ERROR
    /* RESET */  [ true,  true,  false, false, false],
    /* INIT  */  [ true,  true,  true,  false, true ],
    /* RTR   */  [ true,  false, false, true,  true ],
    /* RTS   */  [ true,  false, false, true,  true ],
    /* ERROR */  [ true,  false, false, false, true ],
];

fn index(state: QpState) -> usize {
    STATES.iter().position(|known| *known == state).expect("one of the five states")
}

/// Asks `qp` to move to `to` by the public call for it; `peer` is the QP to connect to.
/// RTS → RTS is a modify of what the specification lets change in RTS, of which this
/// API has the access flags.
fn request(qp: &mut QueuePair, to: QpState, peer: &QueuePair) -> usec_verbs::Result<()> {
    match to {
        QpState::Reset => qp.reset(),
        QpState::Init => qp.modify_to_init(&Default::default()),
        QpState::Rtr => qp.modify_to_rtr(&peer.endpoint(), &Default::default()),
        QpState::Rts if qp.state() == QpState::Rts => qp.set_access(AccessFlags::all_remote()),
        QpState::Rts => qp.modify_to_rts(&Default::default()),
        QpState::Error => qp.modify_to_error(),
    }
}

/// Takes a fresh QP to `state` along the diagram's own path (ERROR by way of RTS).
fn reach(qp: &mut QueuePair, state: QpState, peer: &QueuePair) -> usec_verbs::Result<()> {
    let path: &[QpState] = match state {
        QpState::Reset => &[],
        QpState::Init => &[QpState::Init],
        QpState::Rtr => &[QpState::Init, QpState::Rtr],
        QpState::Rts => &[QpState::Init, QpState::Rtr, QpState::Rts],
        QpState::Error => &[QpState::Init, QpState::Rtr, QpState::Rts, QpState::Error],
    };
    path.iter().try_for_each(|&step| request(qp, step, peer))
}

/// Every (from, to) pair: an allowed move succeeds and lands in `to`; a refused one is
/// `InvalidTransition { from, to }` and leaves the QP in `from`. A connected QP that was
/// refused a move still works.
pub fn transitions_follow_the_ib_state_diagram(provider: &Provider) -> Outcome {
    let device = provider.fresh_device();
    let mut side = Side::new(&device, &SideOptions::default())?;
    let mut peer = Side::new(&device, &SideOptions::default())?;
    for from in STATES {
        for to in STATES {
            let allowed = ALLOWED[index(from)][index(to)];
            ensure_eq!(from.can_move_to(to), allowed, "QpState::can_move_to({from:?}, {to:?})");
            let mut qp = side.pd.create_qp(&side.cq, &side.cq, &Default::default())?;
            let mut remote = peer.pd.create_qp(&peer.cq, &peer.cq, &Default::default())?;
            reach(&mut qp, from, &remote).map_err(|err| format!("reaching {from:?}: {err}"))?;
            ensure_eq!(qp.state(), from, "reached");
            let result = request(&mut qp, to, &remote);
            if allowed {
                ensure!(result.is_ok(), "{from:?} -> {to:?} is in the diagram but was refused: {result:?}");
                ensure_eq!(qp.state(), to, "after {from:?} -> {to:?}");
                continue;
            }
            ensure!(
                matches!(result, Err(Error::InvalidTransition { from: f, to: t }) if (f, t) == (from, to)),
                "{from:?} -> {to:?} is not in the diagram; got {result:?}"
            );
            ensure_eq!(qp.state(), from, "a refused {from:?} -> {to:?} moved the QP");
            if from == QpState::Rts {
                // Refused, and still connected: a WRITE through it lands.
                remote.connect(&qp.endpoint(), &Default::default())?;
                let bytes = [index(to) as u8 + 1; 8];
                qp.post_send(&[SendWr::write(7, peer.remote(0), Payload::Inline(&bytes))])?;
                let done = wait(&mut side, 1, Some(&mut peer), DEFAULT_WAIT)?;
                ensure_eq!(done[0].status, Status::Success, "a WRITE after a refused RTS -> {to:?}");
                ensure_eq!(peer.read_bytes(0, 8), bytes.to_vec(), "the WRITE after RTS -> {to:?}");
            }
        }
    }
    Ok(())
}

/// Changing access flags is an attribute modify that keeps the state: the diagram has
/// one only in INIT and RTS. Anywhere else it is refused and the state stays.
pub fn access_changes_only_where_the_state_may_be_modified(provider: &Provider) -> Outcome {
    let device = provider.fresh_device();
    let side = Side::new(&device, &SideOptions::default())?;
    let peer = Side::new(&device, &SideOptions::default())?;
    for state in STATES {
        let mut qp = side.pd.create_qp(&side.cq, &side.cq, &Default::default())?;
        let remote = peer.pd.create_qp(&peer.cq, &peer.cq, &Default::default())?;
        reach(&mut qp, state, &remote).map_err(|err| format!("reaching {state:?}: {err}"))?;
        let result = qp.set_access(AccessFlags::REMOTE_READ);
        if matches!(state, QpState::Init | QpState::Rts) {
            ensure!(result.is_ok(), "access change in {state:?} refused: {result:?}");
        } else {
            ensure!(
                matches!(result, Err(Error::InvalidTransition { from, to }) if from == state && to == state),
                "access change in {state:?}: {result:?}"
            );
        }
        ensure_eq!(qp.state(), state, "an access change moved the QP");
    }
    Ok(())
}

/// The RTR → RTS attributes (timers, retry counts, the send PSN, the READ depth) are fixed
/// once the QP is in RTS: the specification's RTS → RTS modify does not take them. Asking
/// again is refused up front, on every provider alike, and the QP stays in RTS and works.
pub fn rts_attributes_are_fixed_once_in_rts(provider: &Provider) -> Outcome {
    let mut pair = crate::setup::Pair::new(provider)?;
    let result = pair.a.qp.modify_to_rts(&Default::default());
    ensure!(matches!(result, Err(Error::InvalidArgument(_))), "RTS -> RTS with RTS attributes: {result:?}");
    ensure_eq!(pair.a.qp.state(), QpState::Rts, "after the refusal");
    pair.a.qp.post_send(&[SendWr::write(1, pair.b.remote(0), Payload::Inline(b"still"))])?;
    ensure_eq!(pair.wait_a(1)?[0].status, Status::Success, "a WRITE after the refusal");
    ensure_eq!(pair.b.read_bytes(0, 5), b"still".to_vec(), "the WRITE after the refusal");
    Ok(())
}
