//! The crate's error type: one enum, each variant saying which peer, role, line or frame
//! field it is about.

use std::net::SocketAddr;
use std::time::Duration;

use crate::spec::NodeId;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cluster description is malformed (`line` is 1-based, 0 when not tied to a line).
    #[error("cluster description, line {line}: {reason}")]
    Spec {
        /// The offending line, or 0.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration this crate cannot work with (roles, regions, names, limits).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A value does not fit its field (work-request sequences, node ids, quorum sizes).
    #[error("{what} = {value} is out of range (at most {max})")]
    OutOfRange {
        /// The field.
        what: &'static str,
        /// The value given.
        value: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// A frame that is not one of ours or is damaged; `field` names the part that is wrong.
    #[error("malformed frame ({field}): {reason}")]
    MalformedFrame {
        /// The frame field at fault: magic, version, kind, length, checksum, body.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A frame that ends before its declared length.
    #[error("truncated frame: {have} of {need} bytes")]
    TruncatedFrame {
        /// Bytes present.
        have: usize,
        /// Bytes the header announces (or the header itself needs).
        need: usize,
    },
    /// The peer speaks another version of the handshake protocol.
    #[error("protocol version mismatch: the peer speaks version {theirs}, this build speaks version {ours}")]
    VersionMismatch {
        /// The version in the peer's frame.
        theirs: u8,
        /// Ours.
        ours: u8,
    },
    /// The peer belongs to another cluster.
    #[error("peer {peer} belongs to cluster {theirs:?}, we are in cluster {ours:?}")]
    WrongCluster {
        /// The node id it claims.
        peer: NodeId,
        /// Its cluster.
        theirs: String,
        /// Ours.
        ours: String,
    },
    /// The peer belongs to another run of the cluster (a stale process, or a launcher
    /// mix-up): never picked up.
    #[error("peer {peer} belongs to run {theirs:?}, we are in run {ours:?}")]
    WrongRun {
        /// The node id it claims.
        peer: NodeId,
        /// Its run.
        theirs: String,
        /// Ours.
        ours: String,
    },
    /// The peer's description of the cluster (node ids and addresses) differs from ours.
    #[error("peer {peer} has another description of the cluster (digest {theirs:#010x}, ours {ours:#010x})")]
    SpecMismatch {
        /// The node id it claims.
        peer: NodeId,
        /// Its digest.
        theirs: u32,
        /// Ours.
        ours: u32,
    },
    /// A peer claims a node id that is ours or already connected.
    #[error("duplicate node id {node}: {reason}")]
    DuplicateNode {
        /// The id claimed.
        node: NodeId,
        /// Why it is a duplicate.
        reason: String,
    },
    /// A connection speaks for an older process of a node than one already admitted: a
    /// stale process (stopped, then resumed) after its node was restarted.
    #[error("node {node}'s incarnation {theirs} is stale: incarnation {current} has joined since")]
    StaleIncarnation {
        /// The node.
        node: NodeId,
        /// The incarnation the connection claims.
        theirs: u64,
        /// The incarnation admitted.
        current: u64,
    },
    /// A peer claims a node id the cluster description does not have.
    #[error("unknown node id {node}: the cluster has nodes {members}")]
    UnknownNode {
        /// The id claimed (raw, it may not even fit a node id).
        node: u16,
        /// The ids the description lists.
        members: String,
    },
    /// The peer did something the handshake or control protocol does not allow.
    #[error("protocol violation by {peer}: {reason}")]
    Protocol {
        /// The peer ("node 2", or the address of a connection not yet identified).
        peer: String,
        /// What it did.
        reason: String,
    },
    /// The peer did not prove that it holds the cluster key: an impostor, a node with
    /// another key or none, or a frame forged, replayed or reordered on the way.
    #[error("{peer} failed the cluster key check: {reason}")]
    Unauthenticated {
        /// The peer ("node 2", or the address of a connection not yet identified and the
        /// id it claims).
        peer: String,
        /// What failed.
        reason: String,
    },
    /// The peer refused us and said why.
    #[error("{peer} refused the connection: {reason}")]
    RejectedByPeer {
        /// The peer ("node 2" or an address).
        peer: String,
        /// Its reason.
        reason: String,
    },
    /// Bootstrap did not reach every peer before its deadline.
    #[error(
        "node {me}: bootstrap gave up after {waited:?}; missing {}{}{}",
        describe_missing(missing),
        describe_refused(refused),
        describe_impostors(impostors)
    )]
    Deadline {
        /// Our id.
        me: NodeId,
        /// How long it waited.
        waited: Duration,
        /// Each missing peer with the last thing that went wrong with it.
        missing: Vec<(NodeId, String)>,
        /// Connections refused before they said who they were, or for what they claimed.
        refused: Vec<String>,
        /// Connections refused for failing the cluster key check, whatever id they
        /// claimed: kept apart so that no missing node is blamed for them.
        impostors: Vec<String>,
    },
    /// A node that joins the cluster (a new node, or a newer process of a removed one) was
    /// refused: the reason says why (its incarnation was removed, no QPs are left for it,
    /// this node is still starting…).
    #[error("node {node} may not join: {reason}")]
    JoinRefused {
        /// The node that tried to join.
        node: NodeId,
        /// Why it may not.
        reason: String,
    },
    /// A node that joins a running cluster reached no member before its deadline.
    #[error(
        "node {me} could not join: no member was reached within {waited:?}; contacts: {}{}{}",
        describe_contacts(contacts),
        describe_refused(refused),
        describe_impostors(impostors)
    )]
    JoinFailed {
        /// Our id.
        me: NodeId,
        /// How long it tried.
        waited: Duration,
        /// Each member address it was given, with the last thing that went wrong there.
        contacts: Vec<(SocketAddr, String)>,
        /// Connections refused, as for [`Error::Deadline`].
        refused: Vec<String>,
        /// Connections refused for failing the cluster key check.
        impostors: Vec<String>,
    },
    /// The peer was removed from the cluster ([`Cluster::remove_peer`](crate::Cluster::remove_peer)):
    /// its QPs are torn down and its regions forgotten.
    #[error("node {node} was removed from the cluster{}", describe_incarnation(*incarnation))]
    PeerRemoved {
        /// The node.
        node: NodeId,
        /// The incarnation of its process that was removed, if one had been admitted.
        incarnation: Option<u64>,
    },
    /// This process was fenced out of the cluster (a newer process of its node took its
    /// place, or its node was removed): it takes no one in any more.
    #[error(
        "this process of node {node} (incarnation {incarnation}) was fenced out of the cluster by {reason}"
    )]
    Fenced {
        /// Its node.
        node: NodeId,
        /// Its incarnation.
        incarnation: u64,
        /// Who fenced it, and why.
        reason: String,
    },
    /// No such peer in the cluster.
    #[error("node {0} is not a peer of this node")]
    UnknownPeer(NodeId),
    /// No role by that name (or index).
    #[error("no role {0:?}")]
    UnknownRole(String),
    /// No region by that name (locally, or offered by that peer).
    #[error("no region {name:?} {owner}")]
    UnknownRegion {
        /// The region's name.
        name: String,
        /// "registered here" or "offered by node N".
        owner: String,
    },
    /// The QP of a role to a peer is in ERROR (a refused or failed request moved it there):
    /// it needs [`Cluster::reconnect`](crate::Cluster::reconnect) before it carries traffic
    /// or rights again.
    #[error("the {role:?} QP to node {peer} is in state {state:?}; reconnect it (the rights asked for apply when it reconnects)")]
    QpNeedsReconnect {
        /// The peer.
        peer: NodeId,
        /// The role's name.
        role: String,
        /// The QP's state.
        state: usec_verbs::QpState,
    },
    /// The control connection to a peer is gone (the peer exited, crashed or closed it,
    /// or broke the protocol).
    #[error("node {peer} is gone: {reason}")]
    PeerGone {
        /// The peer.
        peer: NodeId,
        /// What was seen.
        reason: crate::PeerLoss,
    },
    /// A reconnect is already under way with that peer.
    #[error("a reconnect with node {0} is already under way")]
    ReconnectInProgress(NodeId),
    /// The peer did not answer a reconnect in time (it may not be polling its control
    /// connections).
    #[error(
        "node {peer} did not answer the reconnect within {waited:?} (is its loop calling poll_control?)"
    )]
    ReconnectTimedOut {
        /// The peer.
        peer: NodeId,
        /// How long we waited.
        waited: Duration,
    },
    /// A quorum can no longer be reached: too many of its peers failed.
    #[error(
        "quorum {kind}/{sequence} impossible: {acked} acknowledged, failed peers {failed:?}, {need} needed"
    )]
    QuorumImpossible {
        /// The kind of the operations.
        kind: crate::WrKind,
        /// Their sequence number.
        sequence: u64,
        /// Successful completions.
        acked: usize,
        /// The peers whose operations failed.
        failed: Vec<NodeId>,
        /// How many successes were needed.
        need: usize,
    },
    /// A quorum was not reached before the deadline.
    #[error("quorum {kind}/{sequence} not reached in time: {acked} of {need} acknowledged, still waiting on {pending:?}")]
    QuorumTimedOut {
        /// The kind of the operations.
        kind: crate::WrKind,
        /// Their sequence number.
        sequence: u64,
        /// Successful completions.
        acked: usize,
        /// How many successes were needed.
        need: usize,
        /// The peers not heard from.
        pending: Vec<NodeId>,
    },
    /// No quorum round with that kind and sequence is in flight.
    #[error("no quorum {kind}/{sequence} in flight")]
    UnknownQuorum {
        /// The kind.
        kind: crate::WrKind,
        /// The sequence number.
        sequence: u64,
    },
    /// A verbs call failed.
    #[error("{context}: {source}")]
    Verbs {
        /// What was being done.
        context: String,
        /// The verbs error.
        #[source]
        source: usec_verbs::Error,
    },
    /// A region descriptor could not be decoded or used.
    #[error("{context}: {source}")]
    Region {
        /// What was being done.
        context: String,
        /// The regions error.
        #[source]
        source: usec_regions::Error,
    },
    /// A system call (sockets) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn describe_missing(missing: &[(NodeId, String)]) -> String {
    missing.iter().map(|(node, last)| format!("node {node} ({last})")).collect::<Vec<_>>().join(", ")
}

fn describe_contacts(contacts: &[(SocketAddr, String)]) -> String {
    contacts.iter().map(|(addr, last)| format!("{addr} ({last})")).collect::<Vec<_>>().join(", ")
}

fn describe_incarnation(incarnation: Option<u64>) -> String {
    incarnation.map(|incarnation| format!(" (incarnation {incarnation})")).unwrap_or_default()
}

fn describe_refused(refused: &[String]) -> String {
    if refused.is_empty() {
        return String::new();
    }
    format!("; refused connections: {}", refused.join("; "))
}

fn describe_impostors(impostors: &[String]) -> String {
    if impostors.is_empty() {
        return String::new();
    }
    format!("; refused for failing the cluster key check: {}", impostors.join("; "))
}

impl Error {
    pub(crate) fn verbs(context: impl Into<String>) -> impl FnOnce(usec_verbs::Error) -> Error {
        let context = context.into();
        move |source| Error::Verbs { context, source }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub(crate) fn malformed(field: &'static str, reason: impl Into<String>) -> Error {
        Error::MalformedFrame { field, reason: reason.into() }
    }

    pub(crate) fn config(reason: impl Into<String>) -> Error {
        Error::Config(reason.into())
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
