//! Membership for microsecond services, after uKharon: one-sided Paxos over RDMA
//! compare-and-swap, and membership views decided one per Paxos instance.
//!
//! - **Acceptors are memory.** Each acceptor offers a region: a ring of 64-bit
//!   [slots](slot) `{instance, min_proposal, accepted}` and every proposer's value
//!   [buffers](buffer) (see the [layout]). No acceptor CPU is involved in deciding.
//! - **[`Proposer`]**: prepare and accept are single CASes against the word it predicts
//!   there; a failed CAS returns the real word, the next prediction. Values (a view) are
//!   WRITTEN into its own buffer first, in 64-byte lines tagged with the instance and
//!   ballot and checksummed, which readers validate. Ballots are `me + 1 + k·n`
//!   ([`Ballot`]); contention is met with jittered back-off from a seeded RNG.
//! - **[`Learner`]**: reads the rings until a majority (`n/2 + 1`) shows one ballot
//!   accepted, then the value from the ballot owner's buffer.
//! - **Views** ([`View`]: `{id, members (node, incarnation, kind)}`) are decided one per
//!   instance by [`ViewChange`], which turns failure verdicts and operator calls into the
//!   next view, picks up views decided by others, and reports each view learned with the
//!   local time it was learned at ([`ViewEvent::Learned`]) — what leases on views start
//!   from.
//!
//! Every role is sans IO: it returns the CASes, WRITEs and READs to carry out
//! ([`Action`]) and takes their outcomes ([`Outcome`]) and the time; it reads no clock and
//! draws no global randomness. The [`driver`]s carry the actions out on a qp-pool cluster
//! ([`PaxosPort`]), on any provider: the simulator for deterministic tests
//! ([`driver::sim`]), the soft provider across threads or processes, a NIC.
//!
//! # A tour
//!
//! Three simulated nodes, each an acceptor; node 0 proposes a view for instance 1, node 2
//! learns it without proposing anything.
//!
//! ```
//! use rand::SeedableRng;
//! use usec_membership::driver::sim::SimCluster;
//! use usec_membership::{
//!     Layout, Learner, LearnerConfig, Member, MemberKind, PaxosDriver, PaxosPort, Proposer, ProposerConfig,
//!     ProposerEvent, View,
//! };
//! use usec_qp_pool::NodeId;
//!
//! let layout = Layout::default();
//! let acceptors: Vec<NodeId> = (0..3).map(NodeId::new).collect::<Result<_, _>>()?;
//! let configure = |node| PaxosPort::configure(node, &layout, 3, true);
//! let (sim, clusters) = SimCluster::bootstrap("membership-tour", 7, 3, &[], configure)?;
//! let mut drivers = clusters
//!     .into_iter()
//!     .map(|cluster| PaxosDriver::new(cluster, layout, &acceptors))
//!     .collect::<Result<Vec<_>, _>>()?;
//!
//! let rng = rand::rngs::StdRng::seed_from_u64(7); // back-offs: seeded, never the clock
//! let mut proposer = Proposer::new(layout, ProposerConfig::new(0, 3), rng)?;
//! let mut learner = Learner::new(layout, LearnerConfig { acceptors: 3, scan_period_ns: 5_000 }, 0, 0);
//!
//! let view = View::new(1, acceptors.iter().map(|&node| Member::new(node, 1, MemberKind::Consensus)).collect())?;
//! proposer.propose(sim.now_ns(0), 1, &view.encode())?;
//! let (mut decided, mut learned) = (None, None);
//! while decided.is_none() || learned.is_none() {
//!     drivers[0].turn(sim.now_ns(0), &mut proposer);
//!     drivers[2].turn(sim.now_ns(2), &mut learner);
//!     if let Some(ProposerEvent::Decided { instance, value, own, .. }) = proposer.poll_event() {
//!         assert!(own); // uncontended: its own value
//!         decided = Some((instance, value));
//!     }
//!     learned = learned.or(learner.poll_event());
//!     sim.fabric.advance_by(500); // virtual time moves only when told to
//! }
//! let learned = learned.expect("learned");
//! assert_eq!(decided, Some((learned.instance, learned.value.clone())));
//! assert_eq!(View::decode(&learned.value)?, view);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Where to look
//!
//! - the protocol and why it is safe: [`proposer`], [`buffer`], [`slot`], [`learner`];
//! - views and their changes: [`view`], [`view_change`];
//! - the seam to the cluster: [`op`] (actions and outcomes), [`port`];
//! - drivers, the simulator harness, a consensus member wired with its detectors:
//!   [`driver`].
//!
//! # Limits
//!
//! - The acceptors are fixed by configuration; views change who is a member, not who
//!   holds the slots. A restarted acceptor (its memory gone) is used again once a view
//!   names its new process, for the instances above that view only
//!   ([`port`](port#a-restarted-acceptor) says why that is safe): a node learns of it from
//!   views, so a majority of acceptors that never restarted, or were admitted since, must
//!   decide the view that names the new process.
//! - A proposer index (a consensus member's node id) must not be shared by two processes
//!   at once: a restarted node proposes only once a view has it as a member again (the
//!   view change's rule), by which time its old process is out.
//! - Slot tags are the low 32 bits of instances: an acceptor left behind by 2^31
//!   instances would be misread (six hours of back-to-back view changes at 10 µs).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod backoff;
pub mod ballot;
pub mod buffer;
pub mod driver;
mod error;
pub mod layout;
pub mod learner;
mod loopback;
pub mod op;
pub mod port;
pub mod proposer;
pub mod slot;
pub mod view;
pub mod view_change;

pub use backoff::BackoffConfig;
pub use ballot::Ballot;
pub use driver::{Detectors, MembershipNode, PaxosDriver};
pub use error::{Error, Result};
pub use layout::Layout;
pub use learner::{Learned, Learner, LearnerConfig};
pub use op::{Action, OpClass, Outcome, Role, Token};
pub use port::PaxosPort;
pub use proposer::{Proposer, ProposerConfig, ProposerEvent, ProposerStats};
pub use slot::Slot;
pub use view::{Member, MemberKind, View};
pub use view_change::{ViewChange, ViewChangeConfig, ViewEvent};
