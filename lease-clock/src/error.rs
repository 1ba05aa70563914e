//! The crate's error type.

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A verbs call of the heartbeat or lease glue failed.
    #[error("{what}: {source}")]
    Verbs {
        /// What the glue was doing.
        what: &'static str,
        /// The verbs error.
        #[source]
        source: usec_verbs::Error,
    },
    /// Registered memory could not be made or accessed.
    #[error("{what}: {source}")]
    Region {
        /// What the glue was doing.
        what: &'static str,
        /// The region error.
        #[source]
        source: usec_regions::Error,
    },
    /// A call to the usec-qp-pool cluster failed.
    #[error("{what}: {source}")]
    Pool {
        /// What the glue was doing.
        what: &'static str,
        /// The cluster's error.
        #[source]
        source: usec_qp_pool::Error,
    },
    /// A work request of the glue completed with an error.
    #[error("{what} completed with status {status}")]
    Completion {
        /// What the request was.
        what: &'static str,
        /// How it ended.
        status: usec_verbs::Status,
    },
    /// The TSC cannot serve as the clock here.
    #[error("the TSC is not usable as a clock: {reason}")]
    TscUnusable {
        /// Why (not x86-64, no invariant TSC, calibration failed).
        reason: String,
    },
    /// A lease message that does not decode.
    #[error("malformed lease message: {reason}")]
    BadMessage {
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration that cannot work (e.g. a drift bound of 100 % or more).
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// What is wrong with it.
        reason: String,
    },
    /// A node that is not one of the glue's peers.
    #[error("node {peer} is not one of the peers")]
    UnknownPeer {
        /// The node given.
        peer: usec_qp_pool::NodeId,
    },
}

impl Error {
    pub(crate) fn verbs(what: &'static str) -> impl FnOnce(usec_verbs::Error) -> Error {
        move |source| Error::Verbs { what, source }
    }

    pub(crate) fn region(what: &'static str) -> impl FnOnce(usec_regions::Error) -> Error {
        move |source| Error::Region { what, source }
    }

    pub(crate) fn pool(what: &'static str) -> impl FnOnce(usec_qp_pool::Error) -> Error {
        move |source| Error::Pool { what, source }
    }

    pub(crate) fn config(reason: impl Into<String>) -> Error {
        Error::InvalidConfig { reason: reason.into() }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
