//! Calibrated monotonic clocks, RDMA heartbeats, failure detectors and microsecond leases
//! without synchronised clocks.
//!
//! - [`clock`]: where `now` comes from — the TSC where it is stable, else the OS
//!   monotonic clock ([`clock::CalibratedClock`], with a report of the choice), virtual
//!   time with drift for simulations ([`clock::SimClock`]).
//! - [`detector`]: heartbeat counters and failure detectors (Mu's score, uKharon's
//!   timeout, the provider's peer-death signal, and any combination).
//! - [`heartbeat`]: reading peers' counters with RDMA READ on a schedule, and the verbs
//!   glue.
//! - [`lease`]: exclusive leases of microseconds with only a bound ρ on clock drift, and
//!   uKharon's Active(view) leases on the same rule; the rules and their proofs are in the
//!   module's documentation.
//!
//! Every role is a sans-IO object: it reads no clock and makes no system call; the caller
//! passes `now` in and carries out what the role returns. The same code therefore runs in
//! a busy-polling thread on a real fabric and, deterministically, under the sim provider.
//!
//! # A tour
//!
//! Three nodes on a simulated fabric read each other's heartbeats; one crashes and the
//! others suspect it. Then a lease changes hands without the two holders ever believing
//! at once, and a member's view stays active, is inherited, and gives way.
//!
//! ```
//! use usec_lease_clock::clock::{Clock, SimClock};
//! use usec_lease_clock::detector::{HeartbeatCounter, ScoreConfig, ScoreDetector, Verdict};
//! use usec_lease_clock::heartbeat::{HeartbeatMonitor, HeartbeatReader, ReaderConfig, VerbsHeartbeats};
//! use usec_qp_pool::NodeId;
//! use usec_verbs::sim::{self, SimFabric};
//! use usec_verbs::{ConnectOptions, Context};
//!
//! /// One node: its clock, its own counter, the verbs glue, a score detector per peer.
//! struct Node {
//!     sim_node: sim::NodeId,
//!     clock: SimClock,
//!     counter: HeartbeatCounter,
//!     monitor: HeartbeatMonitor<ScoreDetector>,
//!     glue: VerbsHeartbeats,
//!     _context: Context,
//! }
//!
//! impl Node {
//!     /// What the node's driver thread does in each turn of its loop.
//!     fn tick(&mut self) {
//!         let now = self.clock.now_ns();
//!         if let Some(value) = self.counter.tick(now) {
//!             self.glue.publish(value);
//!         }
//!         // Completions of other roles on the reads' CQ would come back here; the glue's
//!         // CQ is its own.
//!         self.monitor.tick(now, &mut self.glue, &mut |other| panic!("not ours: {other:?}"));
//!     }
//! }
//!
//! let fabric = SimFabric::create("lease-clock-tour", 42)?;
//! fabric.set_auto_advance(false); // the loop below moves virtual time itself
//! let ids = [NodeId::new(0)?, NodeId::new(1)?, NodeId::new(2)?];
//! let mut nodes = Vec::new();
//! for (me, drift_ppm) in ids.into_iter().zip([100, -100, 0]) {
//!     let (sim_node, context) = fabric.open_node()?;
//!     let clock = SimClock::with_drift(&fabric, drift_ppm, 0); // 100 ppm fast, slow, exact
//!     let peers: Vec<NodeId> = ids.into_iter().filter(|&id| id != me).collect(); // not itself
//!     let glue = VerbsHeartbeats::new(&context.alloc_pd()?, &peers)?;
//!     let reader = HeartbeatReader::new(ReaderConfig::default(), peers.iter().copied(), clock.now_ns());
//!     let detectors = peers.iter().map(|_| ScoreDetector::new(ScoreConfig::default())).collect();
//!     let monitor = HeartbeatMonitor::new(reader, detectors);
//!     let counter = HeartbeatCounter::new(5_000);
//!     nodes.push(Node { sim_node, clock, counter, monitor, glue, _context: context });
//! }
//! for a in 0..3 {
//!     for b in a + 1..3 {
//!         let (to_a, to_b) = (nodes[a].glue.local(ids[b])?, nodes[b].glue.local(ids[a])?);
//!         nodes[a].glue.connect(ids[b], &to_b, &ConnectOptions::default())?;
//!         nodes[b].glue.connect(ids[a], &to_a, &ConnectOptions::default())?;
//!     }
//! }
//!
//! // Advance virtual time a microsecond at a time and tick every live node.
//! let run = |nodes: &mut [Node], until_ns: u64, crashed: Option<usize>| {
//!     while fabric.now_ns() < until_ns {
//!         fabric.advance_by(1_000);
//!         for (index, node) in nodes.iter_mut().enumerate() {
//!             if Some(index) != crashed {
//!                 node.tick();
//!             }
//!         }
//!     }
//! };
//! run(&mut nodes, 500_000, None);
//! assert_eq!(nodes[0].monitor.verdict(ids[2]), Verdict::Trusted);
//!
//! fabric.crash(nodes[2].sim_node);
//! run(&mut nodes, 700_000, Some(2)); // four missed reads 30 µs apart, and then some
//! assert!(nodes[0].monitor.verdict(ids[2]).is_suspected() && nodes[1].monitor.verdict(ids[2]).is_suspected());
//! assert_eq!(nodes[0].monitor.verdict(ids[1]), Verdict::Trusted);
//!
//! // Leases: the holder counts Δ from when it asked; the grantor keeps others waiting
//! // for Δ stretched by the drift bound (plus slack) after its last grant.
//! use usec_lease_clock::lease::*;
//! let config = GrantorConfig { lease_ns: 20_000, drift: DriftBound::from_ppm(1_000)?, slack_ns: 500 };
//! let mut grantor = LeaseGrantor::new(config, GrantorStart::Fresh, 0)?;
//! let mut alice = LeaseHolder::new(ids[1], HolderConfig::default()); // holders are nodes
//! let mut bob = LeaseHolder::new(ids[2], HolderConfig::default());
//!
//! let ask = alice.poll_request(1_000).expect("Alice wants the lease"); // her clock
//! let reply = grantor.on_request(5_000, &ask); // the grantor's clock
//! alice.on_reply(3_000, &reply);
//! assert!(alice.is_valid(20_999) && !alice.is_valid(21_000)); // 1 000 + Δ
//!
//! let ask = bob.poll_request(50).expect("Bob wants it too");
//! let reply = grantor.on_request(24_000, &ask);
//! assert!(matches!(reply, LeaseReply::Denied { .. })); // until 5 000 + 20 542
//! let ask = bob.request(60);
//! assert!(matches!(grantor.on_request(25_542, &ask), LeaseReply::Granted { .. }));
//!
//! // Active(view) leases: a member's view stays active for Δ after each renewal a majority
//! // of acceptors confirmed; a new view waits until every lease on the old one is over.
//! let voters = |nodes: &[u16]| -> VoterSet {
//!     nodes.iter().map(|&node| Voter { node: NodeId::new(node).unwrap(), incarnation: 0 }).collect()
//! };
//! let mut member = ActiveLease::new(ActiveConfig::default())?; // Δ = 20 µs, ρ = 1 000 ppm
//! member.on_view_learned(0, &ViewSummary { view_id: 1, voters: voters(&[0, 1, 2]) });
//! assert_eq!(member.active_from_ns(), Some(20_042)); // S = ⌈Δ(1 + ρ)/(1 − ρ)⌉ + 1
//! let renewal = member.poll_renewal(10_042).expect("due 10 µs before the start");
//! member.on_confirmed(12_000, renewal); // the majority read came back: until 10 042 + Δ
//! assert!(!member.is_active(1, 20_041) && member.is_active(1, 20_042) && !member.is_active(1, 30_042));
//! // Only non-voting members changed: the next view inherits the lease, no wait.
//! member.on_view_learned(21_000, &ViewSummary { view_id: 2, voters: voters(&[2, 1, 0]) });
//! assert!(member.is_active(2, 21_000));
//! // A voter replaced: the old view is over here at once, the new one waits S.
//! member.on_view_learned(22_000, &ViewSummary { view_id: 3, voters: voters(&[0, 1, 3]) });
//! assert!(!member.is_active(2, 22_000) && member.active_from_ns() == Some(42_042));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod clock;
pub mod detector;
mod error;
pub mod heartbeat;
pub mod lease;

pub use error::{Error, Result};
