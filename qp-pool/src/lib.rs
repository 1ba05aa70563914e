//! A cluster of N nodes connected all-to-all over RDMA: bootstrap, QP roles per peer,
//! permission toggling, reconnect, and the busy-poll completion loop with quorum waiting.
//!
//! A node starts from a plain [`ClusterSpec`] (cluster name, a run name fresh for each
//! launch, each node's control address) and a [`NodeConfig`] (its roles and regions, and
//! which process of the node it is).
//! [`Cluster::bootstrap`] exchanges QP endpoints and region descriptors with every peer
//! over a built-in TCP handshake (versioned, length-prefixed, checksummed frames; see
//! [`wire`]) that refuses malformed frames, other clusters, other runs, and duplicate or
//! unknown node ids, with the reason sent to the refused side. No registry: what a node
//! learns comes from the peers of its own run, so nothing stale from an earlier run is
//! ever picked up. It waits for late peers up to a deadline, then names the missing ones;
//! a flood of connections is shed, not fatal. A description that carries a [`ClusterKey`]
//! authenticates every frame: a peer must prove that it holds the key, on that very
//! connection, before it is offered any endpoint or rkey.
//!
//! After bootstrap the node has one RC QP per [role](RoleSpec) per peer, each role with its
//! rights and its own CQ. [`Cluster::revoke_write`] / [`Cluster::grant_write`] toggle one
//! peer's remote write on a connected QP; [`Cluster::set_region_access`] re-registers a
//! region instead. Rights per peer *and per address range* come from grants
//! ([`NodeConfig::grant`]): a peer with grants gets QPs in a protection domain of its own,
//! where only its grants are registered, so the NIC refuses it everything else. [`Cluster::reconnect`] resets one peer's QPs and re-exchanges endpoints
//! over the control connection kept from bootstrap, leaving the other peers alone.
//!
//! A node that crashed comes back in its run: its new process bootstraps with
//! [`NodeConfig::rejoin`] and a higher [incarnation](NodeConfig::incarnation), dials every
//! peer, and goes through the full handshake again; each peer, which kept listening on its
//! control address, takes it in [`Cluster::poll_control`], supersedes the old process (even
//! one only stopped, which is then fenced out: its control connections refused, our QPs
//! reset under it), connects fresh QPs, learns the new regions and reports
//! [`ControlEvent::Rejoined`]. A stale incarnation is refused for good, and with a cluster
//! key only a holder of the key may claim one.
//!
//! Membership changes while the cluster runs. A new node (an id no description listed, or
//! a newer process of any node) bootstraps with [`NodeConfig::join`] knowing only some
//! members' control addresses: each member it reaches sends it the members it knows,
//! over the same authenticated channel, and it connects to every one of them; each
//! reports [`ControlEvent::Joined`] (QPs for it come from spare sets,
//! [`NodeConfig::spare_peers`]). [`Cluster::remove_peer`], called on each member when a
//! membership view drops a node, tears down its QPs, forgets its regions, and fences its
//! process out: it is told why ([`PeerLoss::Fenced`]), takes no one in any more
//! ([`Cluster::fenced`]), and whatever it sends is refused; a newer process of the same id
//! may join again. A process replaced by a newer one of its node is fenced the same way.
//!
//! The completion loop is a [`Poller`] over the role CQs, typed [`WrId`]s (kind, peer,
//! sequence; the kinds come from one [registry](wr_kind) that every layer of the workspace
//! draws from, so completions of different roles on one CQ are never confused), a sans-IO
//! [`QuorumWaiter`] ("k of these n completed", failed peers remembered), and
//! [`wait_for`], whose deadline is a nanosecond value on the clock of its
//! [`Driver`]: [`BusyPoll`] spins or spins then yields in real time, [`SimDriver`] moves a
//! simulated fabric's virtual time on. Nothing in this crate's loops reads the wall clock
//! by itself, so the same code runs on a real fabric and deterministically in simulation.
//!
//! # A tour
//!
//! Three nodes, each in a thread with its own device on one soft fabric, bootstrapped over
//! loopback TCP; node 0 WRITEs into both followers' logs and waits for a majority.
//!
//! ```
//! use std::net::TcpListener;
//! use std::sync::Arc;
//! use std::time::Duration;
//! use usec_qp_pool::{
//!     majority, wait_for, BusyPoll, Cluster, ClusterSpec, NodeConfig, NodeId, PollMode, QuorumWaiter,
//!     RoleSpec, TcpNetwork, WrId, WrKind,
//! };
//! use usec_verbs::{AccessFlags, Context, Payload, Region, SendWr};
//!
//! type AnyError = Box<dyn std::error::Error + Send + Sync>;
//! // The leader's log writes: a kind of the registry's application range.
//! const LOG_WRITE: WrKind = WrKind::application(0);
//!
//! // What a launcher writes: a fresh run, and each node's control address. Here the OS
//! // picks loopback ports, bound before the description is written.
//! let listeners = (0..3).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<Vec<_>, _>>()?;
//! let mut nodes = Vec::new();
//! for (id, listener) in listeners.iter().enumerate() {
//!     nodes.push((NodeId::new(id as u16)?, listener.local_addr()?));
//! }
//! let spec = ClusterSpec::new("tutorial", &ClusterSpec::fresh_run(), nodes)?;
//! let device = format!("soft:qp-pool-tutorial-{}", std::process::id());
//!
//! // Every node: a "replication" role whose QPs let peers write and read, and a 4 KiB
//! // "log" region offered to all.
//! let start_node = |id: usize, listener: TcpListener| -> Result<Cluster, AnyError> {
//!     let log = Arc::new(Region::new(4096)?);
//!     let config = NodeConfig::new(spec.clone(), NodeId::new(id as u16)?)
//!         .role(RoleSpec::new("replication", AccessFlags::REMOTE_WRITE | AccessFlags::REMOTE_READ))
//!         .region("log", &log, AccessFlags::all_remote())
//!         .deadline(Duration::from_secs(20));
//!     let network = TcpNetwork::from_listener(listener)?;
//!     Ok(Cluster::bootstrap_with(&Context::open(&device)?, config, Box::new(network))?)
//! };
//! let mut clusters = std::thread::scope(|scope| {
//!     let threads: Vec<_> = listeners
//!         .into_iter()
//!         .enumerate()
//!         .map(|(id, listener)| scope.spawn(move || start_node(id, listener)))
//!         .collect();
//!     threads.into_iter().map(|thread| thread.join().expect("no panic")).collect::<Result<Vec<_>, _>>()
//! })?;
//!
//! // Node 0 leads: one WRITE to each follower's log, then a quorum of majority(3) = 2
//! // nodes, itself included, so one follower's acknowledgement is enough.
//! let leader = &mut clusters[0];
//! let replication = leader.role("replication")?;
//! let mut poller = leader.take_poller(&[])?;
//! let mut waiter = QuorumWaiter::new();
//! let followers: Vec<NodeId> = leader.peers().collect();
//! let entry = 1; // the sequence number of this log entry
//! for &follower in &followers {
//!     let target = leader.remote_region(follower, "log")?;
//!     let wr_id = WrId::new(LOG_WRITE, follower, entry)?.to_raw();
//!     let remote = usec_verbs::RemoteAddr::within(&target, 0, 8)?;
//!     leader.post_send(follower, replication, &[SendWr::write(wr_id, remote, Payload::Inline(b"entry #1"))])?;
//! }
//! let key = waiter.begin(LOG_WRITE, entry, &followers, majority(3) - 1)?;
//! let mut driver = BusyPoll::new(PollMode::Spin); // this thread spins on the OS clock
//! let deadline_ns = driver.deadline_in(10_000_000_000);
//! let outcome = wait_for(&mut poller, &mut waiter, key, deadline_ns, &mut driver, &mut |_: &_| {})?;
//! assert!(outcome.is_met() && !outcome.acked.is_empty());
//!
//! // The bytes are in a follower's log, its CPU never involved.
//! let follower_log = clusters[outcome.acked[0].get() as usize].region("log")?.region().clone();
//! let mut landed = [0u8; 8];
//! follower_log.read(0, &mut landed)?;
//! assert_eq!(&landed, b"entry #1");
//! # Ok::<(), AnyError>(())
//! ```
//!
//! # Where to look
//!
//! - the description and its text form: [`spec`]; the cluster key: [`ClusterKey`];
//! - the wire protocol: [`wire`], authentication: [`wire::auth`]; the per-connection
//!   handshake, sans IO: [`handshake`];
//! - byte transports (TCP, and in-memory for simulations): [`transport`];
//! - bootstrap, non-blocking and time-driven: [`Bootstrap`];
//! - a connected node: [`Cluster`] (rights: [`Cluster::grant_write`]; reconnect, control
//!   messages, restarted peers rejoining and new nodes joining: [`Cluster::poll_control`];
//!   removing a peer: [`Cluster::remove_peer`]);
//! - the completion loop: [`Poller`], [`WrId`] and the kinds' registry [`wr_kind`],
//!   [`QuorumWaiter`], [`wait_for`]; who runs
//!   it and on which clock: [`Driver`], [`clock`].
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod bootstrap;
pub mod clock;
mod cluster;
mod cluster_key;
mod config;
mod connections;
mod driver;
mod error;
pub mod handshake;
pub mod node_process;
mod node_set;
mod poller;
mod quorum;
mod role;
pub mod spec;
pub mod transport;
mod wait;
pub mod wire;
mod wr_id;
pub mod wr_kind;

pub use bootstrap::{Bootstrap, Progress};
pub use cluster::{Cluster, ControlEvent, PeerLoss, PoolEvent, ProtocolViolation, ReconnectFailure};
pub use cluster_key::ClusterKey;
pub use config::{GrantSpec, NodeConfig, RegionSpec, DEFAULT_SPARE_PEERS};
pub use driver::{BusyPoll, Driver, PollMode, SimDriver};
pub use error::{Error, Result};
pub use poller::{Batch, CompletionSink, Polled, Poller, BATCH};
pub use quorum::{majority, QuorumKey, QuorumOutcome, QuorumStatus, QuorumWaiter};
pub use role::{RoleId, RoleSpec, MAX_ROLES};
pub use spec::{ClusterSpec, NodeId};
pub use transport::memory::{MemoryHub, MemoryNetwork};
pub use transport::tcp::TcpNetwork;
pub use transport::{Link, Network, Received};
pub use wait::wait_for;
pub use wr_id::WrId;
pub use wr_kind::{RegisteredKind, WrKind};
