//! Reliable-connected queue pairs: creation options, the state machine, endpoints, and
//! posting.

mod attributes;
mod endpoint;
mod state;

use std::fmt;

pub use attributes::{
    ack_timeout_ns, rnr_retries_forever, rnr_timer_ns, ConnectOptions, InitAttributes, Mtu, QpCaps,
    QpOptions, RtrAttributes, RtsAttributes,
};
pub use endpoint::{Address, Endpoint, Gid};
pub use state::QpState;

use crate::access::AccessFlags;
use crate::error::{Error, Result};
use crate::probe::PeerProbe;
use crate::protection_domain::ProtectionDomain;
use crate::provider::{QpOps, Transition};
use crate::work_request::{RecvWr, SendWr};

/// A reliable-connected queue pair (`ibv_qp` of type RC).
///
/// Methods that post or change state take `&mut self`: one owner drives a QP, so no lock
/// sits on the post path. Dropping it destroys the QP; outstanding requests are flushed
/// and the peer sees it as gone: once the drop returns, nothing of the peer's lands
/// through it.
pub struct QueuePair {
    pub(crate) inner: Box<dyn QpOps>,
    pub(crate) pd: ProtectionDomain,
}

impl fmt::Debug for QueuePair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuePair").field("qp_num", &self.qp_num()).field("state", &self.state()).finish()
    }
}

impl QueuePair {
    /// The QP number.
    pub fn qp_num(&self) -> u32 {
        self.inner.qp_num()
    }

    /// The current state (a QP can move to ERROR by itself after a failed request).
    pub fn state(&self) -> QpState {
        self.inner.state()
    }

    /// The queue sizes it actually got.
    pub fn caps(&self) -> QpCaps {
        self.inner.caps()
    }

    /// What the peer needs to connect to this QP.
    pub fn endpoint(&self) -> Endpoint {
        self.inner.endpoint()
    }

    /// The protection domain it belongs to.
    pub fn pd(&self) -> &ProtectionDomain {
        &self.pd
    }

    /// RESET → INIT (or INIT → INIT to change attributes).
    pub fn modify_to_init(&mut self, attributes: &InitAttributes) -> Result<()> {
        self.transition(Transition::Init(attributes))
    }

    /// INIT → RTR, connecting to `remote`.
    pub fn modify_to_rtr(&mut self, remote: &Endpoint, attributes: &RtrAttributes) -> Result<()> {
        self.transition(Transition::Rtr(remote, attributes))
    }

    /// RTR → RTS. In RTS these attributes are fixed: the IB specification's RTS → RTS
    /// modify does not take them (devices refuse it), so asking again is an
    /// [`Error::InvalidArgument`]; the access flags do change in RTS, by
    /// [`QueuePair::set_access`].
    pub fn modify_to_rts(&mut self, attributes: &RtsAttributes) -> Result<()> {
        if self.state() == QpState::Rts {
            return Err(Error::invalid(
                "in RTS the timers, retry counts, send PSN and READ depth are fixed (IB RTS -> RTS \
                 takes none of them); change access flags with set_access",
            ));
        }
        self.transition(Transition::Rts(attributes))
    }

    /// RESET → INIT → RTR → RTS against `remote` in one call.
    pub fn connect(&mut self, remote: &Endpoint, options: &ConnectOptions) -> Result<()> {
        self.modify_to_init(&options.init)?;
        self.modify_to_rtr(remote, &options.rtr)?;
        self.modify_to_rts(&options.rts)
    }

    /// Changes what the peer may do through this QP, while connected (INIT or RTS). When
    /// this returns, no operation with the old rights can still land: revoking remote
    /// write is a fence against a writer, even a stopped one (the soft provider waits for
    /// it a bounded time, then revokes its operation, which fails).
    pub fn set_access(&mut self, access: AccessFlags) -> Result<()> {
        let state = self.state();
        if !matches!(state, QpState::Init | QpState::Rts) {
            return Err(Error::InvalidTransition { from: state, to: state });
        }
        self.inner.modify(Transition::Access(access))
    }

    /// Any state but RESET → ERROR: outstanding and later requests flush. As a responder
    /// the QP serves its peer no more: once this returns, nothing of the peer's lands
    /// through it.
    pub fn modify_to_error(&mut self) -> Result<()> {
        self.transition(Transition::Error)
    }

    /// Any state → RESET: queues emptied (without completions), ready to connect anew.
    /// Once this returns, nothing of the old peer's lands through it.
    pub fn reset(&mut self) -> Result<()> {
        self.transition(Transition::Reset)
    }

    /// Posts send-queue work requests, in order. On a refusal the requests before the
    /// refused one are posted and the rest are not ([`Error::PostRejected`] says which).
    /// Requests posted while the QP is in ERROR complete as flushed.
    pub fn post_send(&mut self, wrs: &[SendWr<'_>]) -> Result<()> {
        self.inner.post_send(wrs)
    }

    /// What the provider can tell now of the process at the other end ([`PeerProbe`]):
    /// the soft provider reads the peer's `/proc/<pid>/stat` (about a microsecond), the sim
    /// provider knows whether the peer node crashed or is paused, a NIC cannot tell
    /// (`Unknown`).
    pub fn probe_peer(&self) -> PeerProbe {
        self.inner.probe_peer()
    }

    /// Posts receive-queue work requests, in order, with the same partial-post rule.
    pub fn post_recv(&mut self, wrs: &[RecvWr<'_>]) -> Result<()> {
        self.inner.post_recv(wrs)
    }

    fn transition(&mut self, transition: Transition<'_>) -> Result<()> {
        let from = self.state();
        let to = transition.target(from);
        if !from.can_move_to(to) {
            return Err(Error::InvalidTransition { from, to });
        }
        self.inner.modify(transition)
    }
}
