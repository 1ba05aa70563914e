//! The replica process: the benchmark binary run again as one Mu replica of the group
//! (see [`crate::peer`]). It binds its control address, is told the group, bootstraps,
//! then turns its [`MuDriver`] until told to stop — busy-polling on its core, or yielding
//! the core when idle so that two replicas can share one — noting [`Mark`]s and answering
//! requests for a [`ReplicaReport`] between turns.
//!
//! [`Mark`]: crate::mu::marks::Mark

use std::net::{SocketAddr, TcpListener};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use usec_lease_clock::clock::Clock;
use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId, TcpNetwork};
use usec_replication::driver::MuDriver;
use usec_verbs::{AccessFlags, Context, Region};

use crate::mu::clock::SharedClock;
use crate::mu::machine::Machine;
use crate::mu::marks::Marks;
use crate::mu::observer::Observer;
use crate::mu::settings::{GroupSettings, BARE_RING_REGION};
use crate::peer::Channel;
use crate::pinning::{pin_current_thread, Pinning};

/// The peer role name of a replica process.
pub const PEER_ROLE: &str = "mu-replica";

/// How long a group takes to bootstrap at most.
pub const BOOTSTRAP_DEADLINE: Duration = Duration::from_secs(30);

/// How a replica's loop spends idle turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pacing {
    /// Turns again at once, always (it owns its core).
    BusyPoll,
    /// Yields the core after this many idle turns in a row (it shares its core).
    Cooperative {
        /// Idle turns before each yield.
        spins: u32,
    },
}

impl std::fmt::Display for Pacing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pacing::BusyPoll => write!(f, "busy-poll"),
            Pacing::Cooperative { spins } => write!(f, "cooperative (yields after {spins} idle turns)"),
        }
    }
}

/// What a replica process is to be.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplicaSetup {
    /// The soft device, `soft:<fabric>`.
    pub device: String,
    /// Its node id.
    pub me: u16,
    /// The group's description, as text.
    pub spec: String,
    /// The group's settings.
    pub settings: GroupSettings,
    /// The core to pin to, if any.
    pub core: Option<usize>,
    /// How to spend idle turns.
    pub pacing: Pacing,
    /// Keep a command of its own in flight whenever it leads or takes over.
    pub load: bool,
    /// Bytes of each of its commands.
    pub command_bytes: usize,
}

/// What a replica process is told.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ToReplica {
    /// Who it is (the answer to [`FromReplica::Listening`]).
    Setup(Box<ReplicaSetup>),
    /// Send a report and go on.
    Report,
    /// Send a report and exit.
    Stop,
}

/// What a replica process says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum FromReplica {
    /// Its control address is bound.
    Listening {
        /// The address.
        addr: SocketAddr,
    },
    /// Bootstrapped: it turns its replica from now on.
    Ready {
        /// Where it runs.
        pinning: Pinning,
    },
    /// What it noted and counted so far.
    Report(Box<ReplicaReport>),
}

/// What a replica process noted and counted.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReplicaReport {
    /// Its node id.
    pub me: u16,
    /// Marks, in order.
    pub marks: Marks,
    /// Commands of its own committed.
    pub commits: u64,
    /// Turns of its driver.
    pub turns: u64,
    /// Candidacies it started.
    pub candidacies: u64,
    /// Leaderships it took.
    pub leaderships: u64,
    /// Entries it created as leader.
    pub entries: u64,
    /// Permissions it granted.
    pub grants: u64,
}

/// Turns between two looks at the parent's requests.
const LOOK_EVERY: u64 = 64;

/// Serves the replica role until the parent says stop or goes away.
pub fn serve() -> Result<()> {
    let mut channel = Channel::new(std::io::empty(), std::io::stdout());
    let (sender, requests) = mpsc::channel();
    // Stdin is read by one thread for the process's whole life, so nothing it buffered
    // is lost between the set-up and the requests.
    let mut reader = Channel::new(std::io::stdin(), std::io::sink());
    std::thread::spawn(move || {
        while let Ok(Some(request)) = reader.receive::<ToReplica>() {
            if sender.send(request).is_err() {
                break;
            }
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the control address")?;
    channel.send(&FromReplica::Listening { addr: listener.local_addr()? })?;
    let Ok(ToReplica::Setup(setup)) = requests.recv() else { bail!("expected the set-up first") };
    let pinning = pin_current_thread(setup.core);
    let clock = SharedClock;
    let mut driver = bootstrap(&setup, listener, clock)?;
    driver.keep_events(true);
    let mut observer = Observer::new(&driver, setup.load, setup.command_bytes);
    channel.send(&FromReplica::Ready { pinning })?;
    let (mut turns, mut idle) = (0u64, 0u32);
    loop {
        let now_ns = clock.now_ns();
        let busy = driver.turn(now_ns);
        observer.after_turn(&mut driver, now_ns);
        turns += 1;
        if turns % LOOK_EVERY == 0 {
            match requests.try_recv() {
                Ok(ToReplica::Report) => channel.send(&report(&driver, &observer, turns))?,
                Ok(ToReplica::Stop) => return channel.send(&report(&driver, &observer, turns)),
                Ok(ToReplica::Setup(_)) => bail!("a second set-up"),
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
            }
        }
        if busy {
            idle = 0;
            continue;
        }
        idle = idle.saturating_add(1);
        match setup.pacing {
            Pacing::Cooperative { spins } if idle > spins => std::thread::yield_now(),
            _ => std::hint::spin_loop(),
        }
    }
}

/// Bootstraps node `setup.me` of the group over `listener` and builds its driver.
pub fn bootstrap(
    setup: &ReplicaSetup,
    listener: TcpListener,
    clock: SharedClock,
) -> Result<MuDriver<Machine>> {
    let me = NodeId::new(setup.me)?;
    let spec = ClusterSpec::parse(&setup.spec).context("the group's description")?;
    let context = Context::open(&setup.device).with_context(|| format!("opening {}", setup.device))?;
    let mu = setup.settings.mu();
    let mut node =
        MuDriver::<Machine>::configure(NodeConfig::new(spec, me).deadline(BOOTSTRAP_DEADLINE), &mu)?;
    if setup.settings.bare_ring {
        let ring = Arc::new(Region::new(setup.settings.bare_ring_bytes()).context("the bare WRITEs' ring")?);
        node = node.region(BARE_RING_REGION, &ring, AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_WRITE);
    }
    let network = TcpNetwork::from_listener(listener)?;
    let cluster = Cluster::bootstrap_with(&context, node, Box::new(network))
        .with_context(|| format!("node {me} bootstrapping"))?;
    let driver = MuDriver::new(
        cluster,
        mu,
        setup.settings.detectors(),
        Machine::new(setup.settings.machine),
        clock.now_ns(),
    )?;
    Ok(driver)
}

fn report(driver: &MuDriver<Machine>, observer: &Observer, turns: u64) -> FromReplica {
    let stats = driver.replica().stats();
    FromReplica::Report(Box::new(ReplicaReport {
        me: driver.replica().id().get(),
        marks: observer.marks.clone(),
        commits: observer.commits,
        turns,
        candidacies: stats.candidacies,
        leaderships: stats.leaderships,
        entries: stats.entries,
        grants: stats.grants,
    }))
}
