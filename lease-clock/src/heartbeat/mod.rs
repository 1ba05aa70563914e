//! Heartbeats read with RDMA: who reads whom and when, and the verbs glue.
//!
//! Each node bumps a counter ([`crate::detector::HeartbeatCounter`]) and publishes it in a
//! registered word; every other node READs that word once per period, without involving
//! the owner's CPU, and hands what it finds to a failure detector. A node that is dead,
//! stopped, cut off or wedged stops changing its word, or stops answering.
//!
//! - [`HeartbeatReader`]: the sans-IO schedule — which peer to read now, which read is
//!   overdue — against the tiny [`HeartbeatReads`] interface.
//! - [`HeartbeatMonitor`]: a reader plus one detector per peer. Its `tick` hands back the
//!   completions of other roles that share the reads' CQ, so that their owners get them.
//!
//! Peers are `usec-qp-pool` [`NodeId`](usec_qp_pool::NodeId)s, and reads carry that
//! crate's work-request ids, of the registry's heartbeat kind ([`READ_KIND`]).
//! - [`VerbsHeartbeats`]: [`HeartbeatReads`] over one verbs QP per peer, plus the published
//!   word and the `PeerLost` events of the context; for programs that wire QPs themselves.
//! - [`PoolHeartbeats`]: the same on a `usec-qp-pool` cluster — a `heartbeat` role and
//!   region set up at bootstrap, the role's CQ in its own poller, peers by node id.

mod monitor;
mod pool;
mod reader;
mod verbs;

pub use monitor::{HeartbeatMonitor, PeerChange};
pub use pool::{PoolHeartbeats, PoolReads};
pub use reader::{
    drive, HeartbeatReader, HeartbeatReads, PeerObservation, ReadCompletion, ReadRequest, ReaderConfig,
    READ_KIND,
};
pub use verbs::{HeartbeatEndpoint, VerbsHeartbeats};
