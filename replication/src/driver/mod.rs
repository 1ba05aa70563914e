//! Drivers: the threads and loops that turn the sans-IO roles. No protocol logic here.
//!
//! - [`node`]: one node's plumbing, [`MuDriver::turn`];
//! - [`client`]: handles for application threads;
//! - [`status`]: what a replica's thread publishes for other threads (role, leader, indexes);
//! - [`threads`]: a pinned busy-poll thread, or a cooperative loop for small machines;
//! - [`views`]: the membership service in a node, which Mu's leadership then follows;
//! - [`sim`]: a group of nodes on the simulator, under virtual time.

pub mod client;
pub mod node;
pub mod sim;
pub mod status;
pub mod threads;
pub mod views;

pub use client::{ClientError, ClientHandle, Ticket};
pub use node::{DetectorConfig, DriverCounts, MuDriver, PROVIDER_EVENTS_PERIOD_NS};
pub use status::{ReplicaStatus, ViewStatus};
pub use threads::{NodeThread, Pacing};
pub use views::{Views, ViewsConfig, ViewsStats};
