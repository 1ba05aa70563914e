//! Mu: crash-tolerant state machine replication in which the leader replicates a command
//! with one RDMA WRITE into each follower's log, and RDMA permissions guarantee a single
//! writer per log.
//!
//! - [`Replica`] — one replica, sans IO; the order in which to call it is in its docs;
//! - its parts: [`follower`] (serving permission and snapshot requests, following),
//!   [`candidate`] (taking over), [`leader`] (the fast path), [`election`] (who should
//!   lead), [`local`] (its own log and state machine), [`peers`] (what it knows of the
//!   others), [`op`] (its work requests);
//! - [`Port`], the narrow seam to the cluster, and [`ClusterPort`], the port on a qp-pool
//!   cluster.

pub mod candidate;
pub mod cluster_port;
pub mod config;
pub mod election;
pub mod event;
pub mod follower;
pub mod leader;
pub mod local;
pub mod op;
pub mod peers;
pub mod port;
pub mod replica;
mod tracked;

pub use config::{MuConfig, Start};
pub use event::{Event, ProposeError, RoleKind};
pub use port::{Area, Channel, Place, Port, PortError, Source};
pub use replica::Replica;
