//! The crate's error type.

use usec_qp_pool::NodeId;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration replication cannot work with.
    #[error("invalid replication configuration: {0}")]
    Config(String),
    /// The cluster under the replicas refused something.
    #[error("{context}: {source}")]
    Pool {
        /// What was being done.
        context: String,
        /// The cluster's error.
        #[source]
        source: Box<usec_qp_pool::Error>,
    },
    /// The heartbeat machinery refused something.
    #[error("{context}: {source}")]
    Heartbeat {
        /// What was being done.
        context: String,
        /// Its error.
        #[source]
        source: Box<usec_lease_clock::Error>,
    },
    /// Registered memory could not be allocated.
    #[error("{context}: {source}")]
    Region {
        /// What was being done.
        context: String,
        /// The regions crate's error.
        #[source]
        source: usec_regions::Error,
    },
    /// An operation did not finish by its deadline.
    #[error("{0} still under way at the deadline")]
    TimedOut(String),
    /// The replica thread is gone.
    #[error("the replica of node {0} stopped")]
    Stopped(NodeId),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn pool(context: impl Into<String>) -> impl FnOnce(usec_qp_pool::Error) -> Error {
        let context = context.into();
        move |source| Error::Pool { context, source: Box::new(source) }
    }

    pub(crate) fn region(context: impl Into<String>) -> impl FnOnce(usec_regions::Error) -> Error {
        let context = context.into();
        move |source| Error::Region { context, source }
    }

    pub(crate) fn heartbeat(context: impl Into<String>) -> impl FnOnce(usec_lease_clock::Error) -> Error {
        let context = context.into();
        move |source| Error::Heartbeat { context, source: Box::new(source) }
    }
}
