//! Changing the responder rights of a connected QP.
//!
//! The direct way is `ibv_modify_qp(IBV_QP_ACCESS_FLAGS)` in INIT or RTS, which the IB
//! specification lists as an optional attribute of INIT → INIT and RTS → RTS; mlx5 and rxe
//! do it. Once it returns, the device checks incoming requests against the new rights.
//!
//! A device that refuses (EINVAL, EOPNOTSUPP or ENOSYS) gets a reconnect of this side
//! only, done so that the peer keeps working without being told:
//!
//! 1. **To ERROR.** From here nothing lands through this QP; its outstanding send and
//!    receive work requests complete as [`Flushed`](crate::Status::Flushed), so the caller
//!    sees exactly which ones did not happen (a plain reset would drop them silently). The
//!    peer's packets are dropped, and its requester will retransmit them.
//! 2. **Read both PSNs** with `ibv_query_qp(IBV_QP_SQ_PSN | IBV_QP_RQ_PSN)`: the next PSN
//!    this QP would send and the next one it expects. The QP is in ERROR, so they no
//!    longer move.
//! 3. **RESET → INIT (new rights) → RTR → RTS** towards the same remote endpoint with the
//!    same attributes, but with `rq_psn` and `sq_psn` from step 2, not the endpoints'
//!    initial PSNs. The peer never reset, so its expected and next PSNs carried on from
//!    the initial ones; restarting from those would make our responder treat the peer's
//!    new requests as duplicates (acknowledged, not executed: silent loss) and the peer's
//!    responder treat ours likewise. Continuing from where the QP stood, the peer's
//!    retransmission of anything dropped in step 1 arrives at the PSN we expect and is
//!    executed once, under the new rights; a retransmitted request we had already
//!    executed is a duplicate and is only acknowledged again, as RC requires.
//!
//! What this does not preserve, by nature of a reset (and why the direct way is always
//! tried first):
//! - Posted RECVs are flushed: repost them (until then the peer's SENDs get RNR NAKs and
//!   are retried).
//! - A READ or atomic of the peer that we executed but whose response was lost cannot be
//!   replayed (the responder's resources went with the reset): the peer's retries fail
//!   with [`RetryExceeded`](crate::Status::RetryExceeded) rather than anything silent.
//! - A request we sent that the peer never received leaves a PSN gap: the peer NAKs our
//!   next request and the QP fails with an error completion, again loudly.
//!
//! If reading the PSNs or any step of the reconnect fails, the QP is left in ERROR and the
//! error says so: the caller then resets and reconnects both sides with fresh endpoints.

use std::io;

use rdma_sys::ibv_qp_attr_mask as Mask;

use crate::access::AccessFlags;
use crate::error::{Error, Result};
use crate::ibverbs::queue_pair::{Connection, IbvQp};
use crate::ibverbs::transitions;
use crate::qp::{InitAttributes, QpState};

/// Whether `ibv_modify_qp` failed because the device does not change access flags in
/// this state, rather than for another reason.
fn refused(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS))
}

impl IbvQp {
    /// `Transition::Access`: the public layer has checked that the QP is in INIT or RTS.
    pub(super) fn change_access(&mut self, access: AccessFlags) -> Result<()> {
        let state = self.current_state();
        if !self.force_access_fallback {
            let mut modify = transitions::access(state, access);
            match self.handle.modify(&mut modify) {
                Ok(()) => {
                    self.init.access = access;
                    return Ok(());
                }
                Err(error) if refused(&error) => {}
                Err(error) => return Err(self.modify_error(modify.what, error)),
            }
        }
        self.reconnect_with_access(state, access)
    }

    /// The reconnect described in the module documentation.
    fn reconnect_with_access(&mut self, state: QpState, access: AccessFlags) -> Result<()> {
        let connection = match state {
            QpState::Rts => Some(self.connection.expect("an RTS QP went through our RTR")),
            _ => None,
        };
        self.enter_state(QpState::Error)?;
        let psns = match connection {
            Some(_) => {
                let attr = self.handle.query(Mask::IBV_QP_SQ_PSN | Mask::IBV_QP_RQ_PSN).map_err(|error| {
                    Error::os(
                        format!(
                            "ibv_query_qp(PSNs) of QP {:#x} on {} while changing its access flags; the QP \
                             is left in ERROR: reset and reconnect both sides",
                            self.handle.qp_num(),
                            self.device.name
                        ),
                        error,
                    )
                })?;
                Some((attr.sq_psn, attr.rq_psn))
            }
            None => None,
        };
        let init = InitAttributes { access, ..self.init };
        self.reconnect_steps(&init, connection.zip(psns)).inspect_err(|_| {
            // Never leave the QP half-connected under rights nobody asked for.
            let _ = self.enter_state(QpState::Error);
        })
    }

    fn reconnect_steps(
        &mut self,
        init: &InitAttributes,
        path: Option<(Connection, (u32, u32))>,
    ) -> Result<()> {
        self.enter_state(QpState::Reset)?;
        self.enter_init(init)?;
        if let Some((connection, (sq_psn, rq_psn))) = path {
            self.enter_rtr(&connection.remote, &connection.rtr, rq_psn)?;
            self.enter_rts(&connection.rts.unwrap_or_default(), sq_psn)?;
        }
        Ok(())
    }
}
