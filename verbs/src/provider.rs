//! The seam between the public API and the providers.
//!
//! Each provider implements these traits; the public types in this crate hold trait
//! objects and add what every provider shares (argument checks, the state machine). A
//! call through a trait object costs one indirect call, which is noise next to what a
//! post or a poll does.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use usec_regions::Region;

use crate::access::AccessFlags;
use crate::completion::Completion;
use crate::device::{DeviceAttributes, ProviderKind};
use crate::error::Result;
use crate::event::AsyncEvent;
use crate::qp::{Endpoint, InitAttributes, QpCaps, QpOptions, QpState, RtrAttributes, RtsAttributes};
use crate::work_request::{RecvWr, SendWr};

/// An opened device.
pub(crate) trait DeviceOps: Send + Sync + fmt::Debug {
    fn name(&self) -> &str;
    fn kind(&self) -> ProviderKind;
    fn attributes(&self) -> DeviceAttributes;
    fn alloc_pd(&self) -> Result<Arc<dyn PdOps>>;
    fn create_cq(&self, depth: u32) -> Result<Box<dyn CqOps>>;
    fn poll_event(&self) -> Option<AsyncEvent>;
    fn as_any(&self) -> &dyn Any;
}

/// A protection domain.
pub(crate) trait PdOps: Send + Sync + fmt::Debug {
    /// Registers `len` bytes of `region` from `offset` (already bounds-checked, non-empty,
    /// flags already valid for an MR).
    fn register(
        &self,
        region: &Arc<Region>,
        offset: usize,
        len: usize,
        access: AccessFlags,
    ) -> Result<Box<dyn MrOps>>;

    /// Creates an RC QP. The CQs are this provider's own (checked with `as_any`).
    fn create_qp(
        &self,
        send_cq: &dyn CqOps,
        recv_cq: &dyn CqOps,
        options: &QpOptions,
    ) -> Result<Box<dyn QpOps>>;
}

/// A memory registration; dropping it deregisters.
pub(crate) trait MrOps: Send + Sync + fmt::Debug {
    fn lkey(&self) -> u32;
    fn rkey(&self) -> u32;
    /// Changes the MR's rights. When this returns, no operation with the old rights can
    /// still land.
    fn rereg_access(&mut self, access: AccessFlags) -> Result<()>;
}

/// A completion queue.
pub(crate) trait CqOps: Send + fmt::Debug {
    /// Moves up to `out.len()` completions into `out`; returns how many. Never allocates.
    fn poll(&mut self, out: &mut [Completion]) -> usize;
    fn depth(&self) -> u32;
    fn as_any(&self) -> &dyn Any;
}

/// A state change asked of a QP. The public layer has already checked it against the
/// state machine.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Transition<'a> {
    Init(&'a InitAttributes),
    Rtr(&'a Endpoint, &'a RtrAttributes),
    Rts(&'a RtsAttributes),
    /// Change the responder access flags of a QP in INIT or RTS. When this returns, no
    /// operation with the old rights can still land.
    Access(AccessFlags),
    Error,
    Reset,
}

impl Transition<'_> {
    pub(crate) fn target(&self, current: QpState) -> QpState {
        match self {
            Transition::Init(_) => QpState::Init,
            Transition::Rtr(..) => QpState::Rtr,
            Transition::Rts(_) => QpState::Rts,
            Transition::Access(_) => current,
            Transition::Error => QpState::Error,
            Transition::Reset => QpState::Reset,
        }
    }
}

/// A reliable-connected queue pair.
pub(crate) trait QpOps: Send + fmt::Debug {
    fn qp_num(&self) -> u32;
    fn state(&self) -> QpState;
    fn caps(&self) -> QpCaps;
    fn endpoint(&self) -> Endpoint;
    fn modify(&mut self, transition: Transition<'_>) -> Result<()>;
    fn post_send(&mut self, wrs: &[SendWr<'_>]) -> Result<()>;
    fn post_recv(&mut self, wrs: &[RecvWr<'_>]) -> Result<()>;
}
