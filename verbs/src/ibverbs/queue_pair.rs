//! RC queue pairs: creation with the caps the device actually grants, the state machine
//! through `ibv_modify_qp`, and the endpoint a peer connects to. Posting is in
//! [`post`](super::post), access changes in [`access`](super::access).

use std::cell::Cell;
use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

use rdma_sys::{
    ibv_create_qp, ibv_destroy_qp, ibv_modify_qp, ibv_qp, ibv_qp_attr, ibv_qp_attr_mask, ibv_qp_cap,
    ibv_qp_init_attr, ibv_qp_type, ibv_query_qp,
};

use crate::error::{Error, Result};
use crate::ibverbs::address::{route, LocalPort};
use crate::ibverbs::completion_queue::{CqHandle, IbvCq};
use crate::ibverbs::convert::state_from_ibv;
use crate::ibverbs::device::DeviceShared;
use crate::ibverbs::protection_domain::{IbvPd, PdHandle};
use crate::ibverbs::raw::{last_os_error, returned_error, zeroed};
use crate::ibverbs::transitions::{self, Modify, RtrTarget};
use crate::provider::{QpOps, Transition};
use crate::qp::{Endpoint, InitAttributes, QpCaps, QpOptions, QpState, RtrAttributes, RtsAttributes};
use crate::work_request::{RecvWr, SendWr};

/// An `ibv_qp`, destroyed on drop; holds what it was created from so that goes later.
pub(crate) struct QpHandle {
    raw: NonNull<ibv_qp>,
    _pd: Arc<PdHandle>,
    _send_cq: Arc<CqHandle>,
    _recv_cq: Arc<CqHandle>,
}

// SAFETY: QP verbs are thread-safe in libibverbs; the public QueuePair takes `&mut` to
// post or modify, so one thread drives a QP at a time anyway.
unsafe impl Send for QpHandle {}

impl fmt::Debug for QpHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QpHandle({:p})", self.raw)
    }
}

impl QpHandle {
    /// Creates an RC QP; returns it with the caps the device granted.
    pub(crate) fn create(
        pd: &Arc<PdHandle>,
        send_cq: &Arc<CqHandle>,
        recv_cq: &Arc<CqHandle>,
        caps: &QpCaps,
    ) -> io::Result<(QpHandle, QpCaps)> {
        let mut init: ibv_qp_init_attr = zeroed();
        init.send_cq = send_cq.as_ptr();
        init.recv_cq = recv_cq.as_ptr();
        init.qp_type = ibv_qp_type::IBV_QPT_RC;
        init.sq_sig_all = 0;
        init.cap = ibv_qp_cap {
            max_send_wr: caps.max_send_wr,
            max_recv_wr: caps.max_recv_wr,
            max_send_sge: caps.max_send_sge,
            max_recv_sge: caps.max_recv_sge,
            max_inline_data: caps.max_inline_data,
        };
        // The PD's and CQs' Arcs are stored in the handle, so they outlive the QP; libibverbs updates
        // `init` with the granted caps.
        // SAFETY: the PD and CQs are live and `init` is a valid, fully initialised structure.
        let raw = unsafe { ibv_create_qp(pd.as_ptr(), &mut init) };
        let raw = NonNull::new(raw).ok_or_else(last_os_error)?;
        let granted = QpCaps {
            max_send_wr: init.cap.max_send_wr,
            max_recv_wr: init.cap.max_recv_wr,
            max_send_sge: init.cap.max_send_sge,
            max_recv_sge: init.cap.max_recv_sge,
            max_inline_data: init.cap.max_inline_data,
        };
        let handle = QpHandle {
            raw,
            _pd: Arc::clone(pd),
            _send_cq: Arc::clone(send_cq),
            _recv_cq: Arc::clone(recv_cq),
        };
        Ok((handle, granted))
    }

    pub(crate) fn as_ptr(&self) -> *mut ibv_qp {
        self.raw.as_ptr()
    }

    pub(crate) fn qp_num(&self) -> u32 {
        // SAFETY: a live QP; `qp_num` is set at creation and never changes.
        unsafe { (*self.raw.as_ptr()).qp_num }
    }

    /// `ibv_modify_qp`.
    pub(crate) fn modify(&self, modify: &mut Modify) -> io::Result<()> {
        // SAFETY: a live QP; `attr` is fully initialised and `mask` names the fields set.
        let code = unsafe { ibv_modify_qp(self.raw.as_ptr(), &mut modify.attr, modify.mask.0 as i32) };
        if code != 0 {
            return Err(returned_error(code));
        }
        Ok(())
    }

    /// `ibv_query_qp` of `mask`.
    pub(crate) fn query(&self, mask: ibv_qp_attr_mask) -> io::Result<ibv_qp_attr> {
        let mut attr: ibv_qp_attr = zeroed();
        let mut init: ibv_qp_init_attr = zeroed();
        // SAFETY: a live QP; both out-structures are valid.
        let code = unsafe { ibv_query_qp(self.raw.as_ptr(), &mut attr, mask.0 as i32, &mut init) };
        if code != 0 {
            return Err(returned_error(code));
        }
        Ok(attr)
    }

    /// The state as the device has it now (a QP moves to ERROR by itself on failures).
    pub(crate) fn query_state(&self) -> io::Result<QpState> {
        Ok(state_from_ibv(self.query(ibv_qp_attr_mask::IBV_QP_STATE)?.qp_state))
    }
}

impl Drop for QpHandle {
    fn drop(&mut self) {
        // libibverbs waits here for async events about this QP to be acknowledged, which
        // `event::poll` does before returning each one.
        // SAFETY: created by `ibv_create_qp`, destroyed once, here.
        unsafe { ibv_destroy_qp(self.raw.as_ptr()) };
    }
}

/// What the QP was last connected with, for the reconnect of an access change.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Connection {
    pub remote: Endpoint,
    pub rtr: RtrAttributes,
    pub rts: Option<RtsAttributes>,
}

/// An RC queue pair of an ibverbs device.
#[derive(Debug)]
pub(crate) struct IbvQp {
    pub(super) device: Arc<DeviceShared>,
    pub(super) handle: QpHandle,
    pub(super) caps: QpCaps,
    /// The first PSN this QP sends, carried in its endpoint.
    pub(super) psn: u32,
    pub(super) local: LocalPort,
    /// The state after our last transition, or as last read from the device (which may
    /// have moved the QP to ERROR since).
    pub(super) state: Cell<QpState>,
    /// The INIT attributes in force (their access flags updated by access changes).
    pub(super) init: InitAttributes,
    pub(super) connection: Option<Connection>,
    /// Take the reconnect path of access changes even where the device would modify.
    pub(super) force_access_fallback: bool,
    /// The work request a single-request post fills in and posts (see `post.rs`).
    pub(super) send_template: super::post::SendTemplate,
}

impl IbvQp {
    pub(crate) fn create(pd: &IbvPd, send_cq: &IbvCq, recv_cq: &IbvCq, options: &QpOptions) -> Result<IbvQp> {
        let device = &pd.device;
        let local = LocalPort::resolve(device, options)?;
        let (handle, caps) = create_capped(pd, send_cq, recv_cq, &options.caps)?;
        let force_access_fallback =
            std::env::var_os("USEC_IBVERBS_ACCESS_FALLBACK").is_some_and(|value| value == "always");
        Ok(IbvQp {
            device: Arc::clone(device),
            handle,
            caps,
            psn: rand::random::<u32>() & 0xff_ffff,
            local,
            state: Cell::new(QpState::Reset),
            init: InitAttributes::default(),
            connection: None,
            force_access_fallback,
            send_template: super::post::SendTemplate::new(),
        })
    }

    /// Runs one `ibv_modify_qp`, naming the QP and device in the error.
    pub(super) fn apply(&self, mut modify: Modify) -> Result<()> {
        self.handle.modify(&mut modify).map_err(|error| self.modify_error(modify.what, error))
    }

    pub(super) fn modify_error(&self, what: &str, error: io::Error) -> Error {
        Error::os(
            format!("ibv_modify_qp({what}) of QP {:#x} on {}", self.handle.qp_num(), self.device.name),
            error,
        )
    }

    pub(super) fn enter_init(&mut self, attributes: &InitAttributes) -> Result<()> {
        self.apply(transitions::init(self.local.port, attributes))?;
        self.state.set(QpState::Init);
        self.init = *attributes;
        Ok(())
    }

    pub(super) fn enter_rtr(
        &mut self,
        remote: &Endpoint,
        attributes: &RtrAttributes,
        rq_psn: u32,
    ) -> Result<()> {
        if self.device.iwarp {
            return Err(Error::ProviderUnavailable {
                provider: crate::provider::ProviderKind::Ibverbs,
                reason: format!(
                    "{} is an iWARP device: its RC connections are set up by the RDMA connection manager \
                     (rdma_cm), which usec-verbs does not use; use a RoCE or InfiniBand device (e.g. rxe)",
                    self.device.name
                ),
            });
        }
        let route = route(&self.local, &remote.address)?;
        let local_mtu = self.device.port(self.local.port).map_or(self.local.mtu, |port| port.active_mtu);
        let target = RtrTarget {
            route,
            port: self.local.port,
            dest_qp_num: remote.qp_num,
            rq_psn,
            path_mtu: transitions::path_mtu(attributes.mtu, local_mtu, remote.mtu),
            max_dest_rd_atomic_limit: self.device.attributes.max_qp_rd_atom,
        };
        self.apply(transitions::rtr(&target, attributes)?)?;
        self.state.set(QpState::Rtr);
        self.connection = Some(Connection { remote: *remote, rtr: *attributes, rts: None });
        Ok(())
    }

    pub(super) fn enter_rts(&mut self, attributes: &RtsAttributes, sq_psn: u32) -> Result<()> {
        self.apply(transitions::rts(sq_psn, attributes, self.device.max_qp_init_rd_atom)?)?;
        self.state.set(QpState::Rts);
        if let Some(connection) = &mut self.connection {
            connection.rts = Some(*attributes);
        }
        Ok(())
    }

    pub(super) fn enter_state(&mut self, state: QpState) -> Result<()> {
        self.apply(transitions::to_state(state))?;
        self.state.set(state);
        if state == QpState::Reset {
            self.connection = None;
        }
        Ok(())
    }

    /// The current state: the device's (remembered), else our last transition's.
    pub(super) fn current_state(&self) -> QpState {
        match self.handle.query_state() {
            Ok(state) => {
                self.state.set(state);
                state
            }
            Err(_) => self.state.get(),
        }
    }
}

/// Creates the QP, retrying with smaller inline sizes where the device refuses the one
/// asked for (the limit probed at open holds for one SGE and one request; more of either
/// can shrink it). The granted caps say what was obtained.
fn create_capped(pd: &IbvPd, send_cq: &IbvCq, recv_cq: &IbvCq, caps: &QpCaps) -> Result<(QpHandle, QpCaps)> {
    let mut asked = *caps;
    let first_error = loop {
        match QpHandle::create(&pd.handle, &send_cq.handle, &recv_cq.handle, &asked) {
            Ok(created) => return Ok(created),
            Err(error) if asked.max_inline_data == 0 => break error,
            Err(_) => asked.max_inline_data /= 2,
        }
    };
    // Report the failure for what was asked, not for the last fallback.
    let error =
        QpHandle::create(&pd.handle, &send_cq.handle, &recv_cq.handle, caps).err().unwrap_or(first_error);
    Err(Error::os(format!("ibv_create_qp({}, {caps:?})", pd.device.name), error))
}

impl QpOps for IbvQp {
    fn qp_num(&self) -> u32 {
        self.handle.qp_num()
    }

    fn state(&self) -> QpState {
        self.current_state()
    }

    fn caps(&self) -> QpCaps {
        self.caps
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            qp_num: self.handle.qp_num(),
            psn: self.psn,
            mtu: self.local.mtu,
            address: self.local.address(),
        }
    }

    fn modify(&mut self, transition: Transition<'_>) -> Result<()> {
        match transition {
            Transition::Init(attributes) => self.enter_init(attributes),
            Transition::Rtr(remote, attributes) => self.enter_rtr(remote, attributes, remote.psn),
            Transition::Rts(attributes) => self.enter_rts(attributes, self.psn),
            Transition::Access(access) => self.change_access(access),
            Transition::Error => self.enter_state(QpState::Error),
            Transition::Reset => self.enter_state(QpState::Reset),
        }
    }

    fn post_send(&mut self, wrs: &[SendWr<'_>]) -> Result<()> {
        self.post_send_list(wrs)
    }

    fn post_recv(&mut self, wrs: &[RecvWr<'_>]) -> Result<()> {
        self.post_recv_list(wrs)
    }
}
