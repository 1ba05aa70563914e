//! The crate's errors.

use usec_qp_pool::NodeId;

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A layout, a group or a role configured in a way that cannot work.
    #[error("membership configuration: {0}")]
    Config(String),
    /// A proposer asked to start an instance while one is under way.
    #[error("proposer {proposer} is still on instance {busy_with}, asked to start {asked}")]
    Busy {
        /// The proposer.
        proposer: u16,
        /// The instance it works on.
        busy_with: u64,
        /// The instance asked for.
        asked: u64,
    },
    /// A value larger than the layout's buffers.
    #[error("a value of {len} bytes does not fit buffers of {max}")]
    ValueTooLarge {
        /// Its length.
        len: usize,
        /// The layout's largest value.
        max: usize,
    },
    /// Bytes that do not decode as a view.
    #[error("not a view: {0}")]
    BadView(String),
    /// A view operation that does not fit (too many members, a duplicate node).
    #[error("view {view}: {reason}")]
    View {
        /// The view's id.
        view: u64,
        /// Why.
        reason: String,
    },
    /// Something of qp-pool failed (a role or region missing, a post refused).
    #[error("{context}: {source}")]
    Pool {
        /// What was being done.
        context: String,
        /// The pool's error.
        #[source]
        source: Box<usec_qp_pool::Error>,
    },
    /// Registered memory could not be had.
    #[error("{context}: {source}")]
    Region {
        /// What was being done.
        context: String,
        /// The regions crate's error.
        #[source]
        source: usec_regions::Error,
    },
    /// The device refused something (creating or connecting the loopback QPs).
    #[error("{context}: {source}")]
    Verbs {
        /// What was being done.
        context: String,
        /// The device's error.
        #[source]
        source: usec_verbs::Error,
    },
    /// Heartbeats could not be set up.
    #[error("{context}: {source}")]
    Heartbeat {
        /// What was being done.
        context: String,
        /// lease-clock's error.
        #[source]
        source: Box<usec_lease_clock::Error>,
    },
    /// A node named as an acceptor or proposer is not in the cluster.
    #[error("node {0} is not in the cluster")]
    UnknownNode(NodeId),
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn verbs(context: &str) -> impl FnOnce(usec_verbs::Error) -> Error + '_ {
        move |source| Error::Verbs { context: context.to_string(), source }
    }

    pub(crate) fn pool(context: &str) -> impl FnOnce(usec_qp_pool::Error) -> Error + '_ {
        move |source| Error::Pool { context: context.to_string(), source: Box::new(source) }
    }

    pub(crate) fn region(context: &str) -> impl FnOnce(usec_regions::Error) -> Error + '_ {
        move |source| Error::Region { context: context.to_string(), source }
    }

    pub(crate) fn heartbeat(context: &str) -> impl FnOnce(usec_lease_clock::Error) -> Error + '_ {
        move |source| Error::Heartbeat { context: context.to_string(), source: Box::new(source) }
    }
}
