//! Why a control connection was lost and why a reconnect failed: typed, so that a caller
//! can tell a peer that went away (wait for it to come back, or fail it over) from one that
//! broke the protocol (never trust it again) from a local QP that refused (look at the
//! device), and [`Display`](std::fmt::Display) for the humans reading logs.
//!
//! Sources are shared (`Arc`) so that the events carrying them stay `Clone`.

use std::io;
use std::sync::Arc;

use crate::error::Error;
use crate::role::RoleId;
use crate::wire::FrameKind;

/// Why the control connection to a peer is gone.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerLoss {
    /// The peer closed its end, or the connection was reset: it exited, crashed, or dropped
    /// its cluster. `cut` is the frame it left unfinished, if it closed in the middle of one.
    #[error("it closed its control connection{}", describe_cut(cut.as_deref()))]
    Closed {
        /// The truncated frame ([`Error::TruncatedFrame`]), if any.
        cut: Option<Arc<Error>>,
    },
    /// Reading the connection failed for another reason.
    #[error("reading its control connection: {source}")]
    ReadFailed {
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },
    /// Writing the connection failed for another reason.
    #[error("writing to its control connection: {source}")]
    WriteFailed {
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The peer sent bytes that are not a valid frame (damaged, another protocol version).
    #[error("its control connection carried a bad frame: {source}")]
    BadFrame {
        /// What the decoder found.
        #[source]
        source: Arc<Error>,
    },
    /// The peer sent valid frames that the control protocol does not allow.
    #[error(transparent)]
    Protocol(#[from] ProtocolViolation),
    /// The peer refused us, and said why.
    #[error("it refused us: {reason}")]
    Refused {
        /// Its reason.
        reason: String,
    },
    /// The peer fenced this process out of the cluster: a newer process of our node took
    /// its place, or our node was removed. This process no longer speaks for its node
    /// ([`Cluster::fenced`](crate::Cluster::fenced)).
    #[error("it fenced this process out of the cluster: {reason}")]
    Fenced {
        /// Its reason.
        reason: String,
    },
    /// A newer process of the peer (a restart) connected: the connection to the process it
    /// replaces is closed, whether that one is dead or only stopped.
    #[error("a newer process of it (incarnation {incarnation}) rejoined in its place")]
    Superseded {
        /// The incarnation of the new process.
        incarnation: u64,
    },
    /// The peer was not reached when this node rejoined the cluster (it is down, or was
    /// slow to answer); it may connect later, when it restarts itself.
    #[error("it was not reached when this node rejoined: {reason}")]
    Unreached {
        /// The last thing that went wrong with it.
        reason: String,
    },
}

fn describe_cut(cut: Option<&Error>) -> String {
    cut.map(|error| format!(" in the middle of a frame ({error})")).unwrap_or_default()
}

impl PeerLoss {
    /// Whether the peer just went away (closed or reset its connection), as opposed to
    /// misbehaving or a local failure.
    pub fn is_closed(&self) -> bool {
        matches!(self, PeerLoss::Closed { .. })
    }

    /// Whether a restarted process of the peer took its place.
    pub fn is_superseded(&self) -> bool {
        matches!(self, PeerLoss::Superseded { .. })
    }

    /// Whether the peer fenced this process out (it was replaced or removed).
    pub fn is_fenced(&self) -> bool {
        matches!(self, PeerLoss::Fenced { .. })
    }
}

/// A frame that is valid on the wire but not allowed on a control connection.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A handshake frame (Hello, Offer, Ready) after the handshake.
    #[error("it sent a {0:?} frame after the handshake")]
    UnexpectedFrame(FrameKind),
    /// A reconnect request or reply naming roles this node does not have.
    #[error("it named roles we do not have: {0:?}")]
    UnknownRoles(Vec<String>),
    /// A reconnect reply for other roles than we asked for.
    #[error("it answered for roles {answered:?}, we asked for {asked:?}")]
    WrongRoles {
        /// The roles in its reply.
        answered: Vec<RoleId>,
        /// The roles of our request.
        asked: Vec<RoleId>,
    },
    /// A region update whose descriptors do not decode (or name a region twice).
    #[error("its region update is invalid: {source}")]
    BadRegionUpdate {
        /// Why.
        #[source]
        source: Arc<Error>,
    },
}

/// Why a reconnect with a peer could not be completed. The QPs concerned stay in RESET; a
/// later reconnect can retry.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconnectFailure {
    /// A QP of `role` could not be reset or connected (or the peer's endpoint for it does
    /// not decode): the verbs error says why.
    #[error("the QP of {role} could not be reconnected ({context}): {source}")]
    QpRefused {
        /// The role.
        role: RoleId,
        /// What was being done.
        context: String,
        /// The verbs error.
        #[source]
        source: Arc<usec_verbs::Error>,
    },
    /// Another local step failed.
    #[error(transparent)]
    Local(Arc<Error>),
}

impl ReconnectFailure {
    /// The failure of a step on `role`'s QP.
    pub(crate) fn of_role(role: RoleId, error: Error) -> ReconnectFailure {
        match error {
            Error::Verbs { context, source } => {
                ReconnectFailure::QpRefused { role, context, source: Arc::new(source) }
            }
            other => ReconnectFailure::Local(Arc::new(other)),
        }
    }
}
