//! The crate's error type.

use crate::provider::ProviderKind;
use crate::qp::QpState;

/// Why a work request was refused at post time (the `bad_wr` of `ibv_post_send`).
///
/// A refused request and the ones after it in the same list were not posted; the ones
/// before it were.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostRejection {
    /// The queue holds `depth` outstanding requests already.
    #[error("the queue is full ({depth} outstanding work requests)")]
    QueueFull {
        /// The queue's capacity.
        depth: u32,
    },
    /// The QP's state does not accept this queue's requests (RESET or INIT for sends).
    #[error("the QP is in state {state:?}")]
    QpState {
        /// The state the QP was in.
        state: QpState,
    },
    /// More SGEs than the QP was created for.
    #[error("{given} SGEs given, the QP allows {max}")]
    TooManySges {
        /// SGEs in the request.
        given: usize,
        /// The QP's limit.
        max: u32,
    },
    /// An inline payload above the QP's `max_inline_data`.
    #[error("inline payload of {len} bytes exceeds the QP's max_inline_data of {max}")]
    InlineTooLarge {
        /// Payload length.
        len: usize,
        /// The QP's limit.
        max: u32,
    },
    /// The device's driver refused the request for a reason of its own (e.g. rxe refuses
    /// misaligned atomics when they are posted).
    #[error("{call} refused it: {message} (errno {errno})")]
    RefusedByDevice {
        /// The libibverbs call that refused.
        call: &'static str,
        /// The errno it returned.
        errno: i32,
        /// The errno's text.
        message: String,
    },
    /// Inline payload on an operation that writes local memory (READ, atomics).
    #[error("{op} cannot take an inline payload")]
    InlineNotAllowed {
        /// The operation.
        op: &'static str,
    },
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No RDMA device exists on this machine.
    #[error("no RDMA device; use soft:<fabric> (shared memory) or sim:<name> (simulation)")]
    NoDevice,
    /// The device name matched nothing.
    #[error("unknown device {name:?}; known devices: {}", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownDevice {
        /// The name asked for.
        name: String,
        /// Names that exist.
        known: Vec<String>,
    },
    /// A device name's prefix (the part before ':') names no provider.
    #[error(
        "unknown provider prefix {prefix:?} in device name {name:?}; known prefixes: {}, \
         or no prefix for an ibverbs device",
        known.iter().map(|prefix| format!("{prefix}:")).collect::<Vec<_>>().join(", ")
    )]
    UnknownProvider {
        /// The prefix given.
        prefix: String,
        /// The whole device name.
        name: String,
        /// The prefixes that name a provider.
        known: Vec<&'static str>,
    },
    /// The provider a name asks for is not built in, or cannot run here.
    #[error("provider {provider} unavailable: {reason}")]
    ProviderUnavailable {
        /// The provider.
        provider: ProviderKind,
        /// Why.
        reason: String,
    },
    /// An argument outside what the API or the device accepts.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A QP state transition the verbs state machine does not have.
    #[error("invalid QP transition from {from:?} to {to:?}")]
    InvalidTransition {
        /// Current state.
        from: QpState,
        /// Requested state.
        to: QpState,
    },
    /// A work request refused at post time; requests before `index` were posted.
    #[error("work request {index} of the list refused: {reason}")]
    PostRejected {
        /// Position in the list.
        index: usize,
        /// Why.
        reason: PostRejection,
    },
    /// Objects of different devices (or providers) mixed in one call.
    #[error("{0} belongs to another device")]
    ForeignObject(&'static str),
    /// A device resource limit was reached.
    #[error("out of {what} (limit {limit})")]
    ResourceExhausted {
        /// Which resource.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// An endpoint that cannot be decoded or does not fit this device.
    #[error("bad endpoint: {0}")]
    BadEndpoint(String),
    /// The peer an endpoint names does not exist (any more).
    #[error("peer unreachable: {0}")]
    PeerUnreachable(String),
    /// Shared state of a device that is corrupt or of another version.
    #[error("corrupt or incompatible device state: {0}")]
    Incompatible(String),
    /// A memory region problem.
    #[error(transparent)]
    Region(#[from] usec_regions::Error),
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// What was being done.
        op: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn os(op: impl Into<String>, source: std::io::Error) -> Error {
        Error::Os { op: op.into(), source }
    }

    pub(crate) fn invalid(what: impl Into<String>) -> Error {
        Error::InvalidArgument(what.into())
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
