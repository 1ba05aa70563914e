//! Asynchronous events: what a device reports outside of any completion.

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AsyncEventKind {
    /// A QP went to the error state by itself (e.g. its peer failed, or a CQ overran).
    QpFatal,
    /// A peer's request violated the rights of this (responder) QP or of an MR; the QP is
    /// in ERROR (`IBV_EVENT_QP_ACCESS_ERR`).
    QpAccessError,
    /// A peer's request was invalid for this (responder) QP, e.g. a SEND larger than the
    /// posted RECV; the QP is in ERROR (`IBV_EVENT_QP_REQ_ERR`).
    QpRequestError,
    /// The process (soft) or node (sim) at the other end of a QP is gone. Reported by the
    /// providers that can see it; the failure-detector layer builds on it.
    PeerLost,
    /// A CQ had no room for a completion.
    CqOverrun,
    /// A port became active.
    PortActive,
    /// A port went down.
    PortError,
    /// The device failed.
    DeviceFatal,
    /// Another event, with the provider's raw code.
    Other(u32),
}

/// One asynchronous event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AsyncEvent {
    /// What happened.
    pub kind: AsyncEventKind,
    /// The local QP concerned, if any.
    pub qp_num: Option<u32>,
}
