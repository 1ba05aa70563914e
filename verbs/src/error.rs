//! The crate's error type, and the typed reasons inside it that callers branch on: why a
//! peer cannot be reached ([`PeerLoss`]), why an endpoint does not fit ([`BadEndpoint`]),
//! why shared device state cannot be used ([`Incompatibility`]).

use std::path::PathBuf;

use crate::device::LinkLayer;
use crate::provider::ProviderKind;
use crate::qp::{Address, QpState};

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
    BadEndpoint(BadEndpoint),
    /// The peer an endpoint names does not exist (any more).
    #[error("peer {peer} unreachable: {reason}")]
    PeerUnreachable {
        /// Who the peer is, in the provider's words (`soft node 4242/0`, `sim node3`).
        peer: String,
        /// Why it cannot be reached.
        reason: PeerLoss,
    },
    /// Shared state of a device that is corrupt or of another version.
    #[error("{}: corrupt or incompatible device state: {reason}", path.display())]
    Incompatible {
        /// The file that holds it.
        path: PathBuf,
        /// What is wrong with it.
        reason: Incompatibility,
    },
    /// An access that does not fit the remote region it was to be derived from
    /// ([`RemoteAddr::within`](crate::RemoteAddr::within)).
    #[error(
        "{len} bytes at offset {offset} do not fit the remote region of {} bytes at {:#x} (rkey {:#x})",
        region.len(),
        region.addr(),
        region.rkey()
    )]
    OutsideRegion {
        /// The region.
        region: usec_regions::RemoteRegion,
        /// The offset asked for.
        offset: u64,
        /// The length asked for.
        len: u64,
    },
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

/// Why a peer cannot be reached. Every reason is final for the endpoint that met it: a
/// peer that comes back does so as a new node, with new endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerLoss {
    /// The peer's process had exited when we looked for it.
    #[error("its process {pid} has exited")]
    Exited {
        /// The process id the endpoint named.
        pid: u32,
    },
    /// The peer's process has exited, and its pid now names another process.
    #[error("its process {pid} has exited (its pid now names another process)")]
    PidReused {
        /// The process id the endpoint named.
        pid: u32,
    },
    /// The peer's process died while we watched it: its pidfd reported the exit, or the
    /// kernel marked its node's death word as the process began to exit (or replaced its
    /// image).
    #[error("its process {pid} died (its pidfd or its node's death word reported it)")]
    DeathReported {
        /// The process id.
        pid: u32,
    },
    /// A simulated node crashed.
    #[error("the node crashed")]
    Crashed,
    /// The node closed its device.
    #[error("the node was closed")]
    Closed,
    /// The endpoint is stale: the node it named was replaced by another.
    #[error("the endpoint is stale: that node was replaced by another")]
    Replaced,
    /// No such node exists on the fabric (never did, or it closed and is gone).
    #[error("no such node on the fabric (has it exited?)")]
    NoSuchNode,
    /// The node exists but has no QP of that number (destroyed, or never made).
    #[error("it has no QP {qp_num:#x}")]
    NoSuchQp {
        /// The QP number the endpoint named.
        qp_num: u32,
    },
}

impl PeerLoss {
    /// Whether the peer's process (or simulated node) is dead, as opposed to a node or
    /// QP that is gone from a process that may still run.
    pub fn process_died(&self) -> bool {
        matches!(
            self,
            PeerLoss::Exited { .. }
                | PeerLoss::PidReused { .. }
                | PeerLoss::DeathReported { .. }
                | PeerLoss::Crashed
        )
    }
}

/// Why an endpoint was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadEndpoint {
    /// Its wire or text form cannot be decoded.
    #[error("cannot decode it: {0}")]
    Malformed(String),
    /// It is another provider's address: a QP of `provider` cannot reach it.
    #[error("a {provider} QP cannot connect to {address:?}")]
    OtherProvider {
        /// The provider of the QP that was to connect.
        provider: ProviderKind,
        /// The address the endpoint carries.
        address: Address,
    },
    /// It names a QP on another fabric of the same provider.
    #[error("the endpoint belongs to another fabric than {ours}")]
    OtherFabric {
        /// This QP's fabric.
        ours: String,
    },
    /// Its kind of address does not suit the local port's link layer (an InfiniBand LID
    /// on a RoCE port, or a RoCE GID on an InfiniBand port).
    #[error("{}", wrong_link_layer(address, *port, *link_layer))]
    WrongLinkLayer {
        /// The local port.
        port: u8,
        /// The local port's link layer.
        link_layer: LinkLayer,
        /// The address the endpoint carries.
        address: Address,
    },
    /// An InfiniBand endpoint with LID 0 and no GID to route by.
    #[error(
        "the endpoint's LID is 0 (is a subnet manager running?); select GID indexes on both sides to route \
         globally"
    )]
    ZeroLid,
}

fn wrong_link_layer(address: &Address, port: u8, link_layer: LinkLayer) -> String {
    let (what, port_is) = match (address, link_layer) {
        (Address::Infiniband { .. }, _) => ("an InfiniBand (LID)", "Ethernet (RoCE)"),
        (Address::Roce { .. }, _) => ("a RoCE (GID)", "InfiniBand"),
        (_, LinkLayer::Infiniband) => ("another kind of", "InfiniBand"),
        (_, _) => ("another kind of", "Ethernet (RoCE)"),
    };
    format!("the endpoint is {what} address, but port {port} is {port_is}")
}

/// Why shared device state cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Incompatibility {
    /// The file is not what it should be (wrong magic).
    #[error("not a usec soft control block")]
    NotAControlBlock,
    /// Another build's layout.
    #[error("layout version {found}; this build speaks {expected}")]
    LayoutVersion {
        /// The version found.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
}

impl Error {
    pub(crate) fn os(op: impl Into<String>, source: std::io::Error) -> Error {
        Error::Os { op: op.into(), source }
    }

    pub(crate) fn invalid(what: impl Into<String>) -> Error {
        Error::InvalidArgument(what.into())
    }

    pub(crate) fn malformed_endpoint(why: impl Into<String>) -> Error {
        Error::BadEndpoint(BadEndpoint::Malformed(why.into()))
    }

    pub(crate) fn unreachable(peer: impl Into<String>, reason: PeerLoss) -> Error {
        Error::PeerUnreachable { peer: peer.into(), reason }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
