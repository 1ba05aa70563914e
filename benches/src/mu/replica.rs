//! The replica process: the benchmark binary run again as one Mu replica of the group
//! (see [`crate::peer`]). It binds its control address, is told the group, bootstraps,
//! then turns its [`MuDriver`] until told to stop — busy-polling on its core, or yielding
//! the core when idle so that two replicas can share one — noting [`Mark`]s and answering
//! requests for a [`ReplicaReport`] between turns.
//!
//! [`Mark`]: crate::mu::marks::Mark

use std::net::{SocketAddr, TcpListener};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use usec_lease_clock::clock::Clock;
use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId, TcpNetwork};
use usec_replication::driver::views::ViewsConfig;
use usec_replication::driver::MuDriver;
use usec_verbs::{AccessFlags, Context, Region};

use crate::mu::clock::SharedClock;
use crate::mu::machine::Machine;
use crate::mu::marks::Marks;
use crate::mu::observer::Observer;
use crate::mu::settings::{GroupSettings, BARE_RING_REGION};
use crate::peer::Channel;
use crate::pinning::{keep_current_thread_off, pin_current_thread, Pinning};

/// The environment variable that turns on each replica's trace (inherited by the replica
/// processes): its decisions ([`usec_replication::cft::Replica::take_trace`]), its turns
/// longer than 10 µs and its gaps of more than 20 µs between turns, in
/// [`ReplicaReport::notes`].
pub const TRACE_VARIABLE: &str = "USEC_MU_TRACE";

/// With [`TRACE_VARIABLE`] set and membership views on, a note of the membership's state
/// this often.
const VIEWS_NOTE_PERIOD_NS: u64 = 1_000_000;

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
    /// With [`TRACE_VARIABLE`] set: the replica's decisions, its long turns and its gaps
    /// between turns, each with the instant of its turn (the latest 50,000).
    #[serde(default)]
    pub notes: Vec<(u64, String)>,
}

/// Turns between two looks at the parent's requests, and between two updates of the
/// published counters.
const LOOK_EVERY: u64 = 64;

/// The most trace notes a report keeps (the latest).
const NOTES_MAX: usize = 50_000;

/// What the replica's loop publishes for the thread that answers the parent: the report,
/// brought up to date a little at a time (new marks as they are noted, counters every
/// [`LOOK_EVERY`] turns), never waited for. Answering a report in the loop itself meant
/// serializing every mark so far and writing it to a pipe between two turns: a gap in the
/// heartbeat long enough, on replica 0, for its followers to suspect it.
#[derive(Debug, Default)]
struct Published {
    report: ReplicaReport,
}

/// The loop's side of [`Published`]: what it has not handed over yet.
#[derive(Debug, Default)]
struct Publisher {
    marks: usize,
    notes: Vec<(u64, String)>,
}

impl Publisher {
    /// Hands over what is new, unless the reporting thread holds the report just now.
    fn try_publish(
        &mut self,
        shared: &Mutex<Published>,
        driver: &MuDriver<Machine>,
        observer: &Observer,
        turns: u64,
    ) {
        if let Ok(mut published) = shared.try_lock() {
            self.publish(&mut published.report, driver, observer, turns);
        }
    }

    fn publish(
        &mut self,
        report: &mut ReplicaReport,
        driver: &MuDriver<Machine>,
        observer: &Observer,
        turns: u64,
    ) {
        report.marks.marks.extend_from_slice(&observer.marks.marks[self.marks..]);
        report.marks.dropped = observer.marks.dropped;
        self.marks = observer.marks.marks.len();
        report.notes.append(&mut self.notes);
        let excess = report.notes.len().saturating_sub(NOTES_MAX);
        report.notes.drain(..excess);
        let stats = driver.replica().stats();
        report.me = driver.replica().id().get();
        report.commits = observer.commits;
        report.turns = turns;
        report.candidacies = stats.candidacies;
        report.leaderships = stats.leaderships;
        report.entries = stats.entries;
        report.grants = stats.grants;
    }

    fn behind(&self, observer: &Observer) -> bool {
        observer.marks.marks.len() > self.marks || !self.notes.is_empty()
    }
}

/// Serves the replica role until the parent says stop or goes away.
pub fn serve() -> Result<()> {
    let mut channel = Channel::new(std::io::empty(), std::io::stdout());
    let (sender, requests) = mpsc::channel();
    let published = Arc::new(Mutex::new(Published::default()));
    // Stdin is read by one thread for the process's whole life, so nothing it buffered
    // is lost between the set-up and the requests. It answers reports itself, from what
    // the loop published.
    let mut reader = Channel::new(std::io::stdin(), std::io::sink());
    let mut answers = Channel::new(std::io::empty(), std::io::stdout());
    let shared = published.clone();
    std::thread::spawn(move || -> Result<()> {
        while let Ok(Some(request)) = reader.receive::<ToReplica>() {
            if let ToReplica::Setup(setup) = &request {
                // Answering a report takes a while: never on the core a busy-polling loop
                // owns, whose heartbeat would stop meanwhile.
                if let (Pacing::BusyPoll, Some(core)) = (setup.pacing, setup.core) {
                    keep_current_thread_off(core);
                }
            }
            if let ToReplica::Report = request {
                let report = shared.lock().expect("the loop does not panic holding it").report.clone();
                answers.send(&FromReplica::Report(Box::new(report)))?;
            } else if sender.send(request).is_err() {
                break;
            }
        }
        Ok(())
    });
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the control address")?;
    channel.send(&FromReplica::Listening { addr: listener.local_addr()? })?;
    let Ok(ToReplica::Setup(setup)) = requests.recv() else { bail!("expected the set-up first") };
    let pinning = pin_current_thread(setup.core);
    let clock = SharedClock;
    let mut driver = bootstrap(&setup, listener, clock)?;
    driver.keep_events(true);
    let mut observer = Observer::new(&driver, setup.load, setup.command_bytes);
    let mut publisher = Publisher::default();
    publisher.try_publish(&published, &driver, &observer, 0);
    channel.send(&FromReplica::Ready { pinning })?;
    let (mut turns, mut idle) = (0u64, 0u32);
    let trace = std::env::var_os(TRACE_VARIABLE).is_some();
    driver.replica_mut().set_trace(trace);
    if let Some(views) = driver.views_mut() {
        views.set_trace(trace);
    }
    let mut last_end = 0u64;
    // With views, the membership's state every this often (where a stalled view change is).
    let mut next_views_note_ns = 0u64;
    loop {
        let now_ns = clock.now_ns();
        let busy = driver.turn(now_ns);
        observer.after_turn(&mut driver, now_ns);
        if trace {
            let end = clock.now_ns();
            let notes = &mut publisher.notes;
            if last_end != 0 && now_ns - last_end > 20_000 {
                let gap = (now_ns - last_end) as f64 / 1e3;
                notes.push((last_end, format!("gap of {gap:.1} us before the next turn")));
            }
            if end - now_ns > 10_000 {
                notes.push((now_ns, format!("long turn {:.1} us", (end - now_ns) as f64 / 1e3)));
            }
            notes.extend(driver.replica_mut().take_trace().into_iter().map(|note| (now_ns, note)));
            if let Some(views) = driver.views_mut() {
                notes.extend(views.take_trace().into_iter().map(|note| (now_ns, format!("paxos: {note}"))));
                if now_ns >= next_views_note_ns {
                    next_views_note_ns = now_ns + VIEWS_NOTE_PERIOD_NS;
                    notes.push((now_ns, format!("membership: {}", views.describe())));
                }
            }
            last_end = end;
        }
        turns += 1;
        if publisher.behind(&observer) || turns % LOOK_EVERY == 0 {
            publisher.try_publish(&published, &driver, &observer, turns);
        }
        if turns % LOOK_EVERY == 0 {
            match requests.try_recv() {
                Ok(ToReplica::Stop) => {
                    // Everything, waiting for the lock if it must: the loop ends here.
                    let mut published = published.lock().expect("the reporter does not panic holding it");
                    publisher.publish(&mut published.report, &driver, &observer, turns);
                    return channel.send(&FromReplica::Report(Box::new(published.report.clone())));
                }
                Ok(ToReplica::Report) => unreachable!("answered by the reading thread"),
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
    let nodes: Vec<NodeId> = spec.nodes.keys().copied().collect();
    let views = setup.settings.views(&nodes)?;
    let node = NodeConfig::new(spec, me).deadline(BOOTSTRAP_DEADLINE);
    let mut node = match &views {
        // The first view names each node's first process by the incarnation all know.
        Some(views) => MuDriver::<Machine>::configure_with_views(
            node.incarnation(ViewsConfig::FIRST_INCARNATION),
            &mu,
            views,
        )?,
        None => MuDriver::<Machine>::configure(node, &mu)?,
    };
    if setup.settings.bare_ring {
        let ring = Arc::new(Region::new(setup.settings.bare_ring_bytes()).context("the bare WRITEs' ring")?);
        node = node.region(BARE_RING_REGION, &ring, AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_WRITE);
    }
    let network = TcpNetwork::from_listener(listener)?;
    let cluster = Cluster::bootstrap_with(&context, node, Box::new(network))
        .with_context(|| format!("node {me} bootstrapping"))?;
    let mut driver = MuDriver::new(
        cluster,
        mu,
        setup.settings.detectors(),
        Machine::new(setup.settings.machine),
        clock.now_ns(),
    )?;
    if let Some(views) = &views {
        driver.attach_views(views, clock.now_ns())?;
    }
    Ok(driver)
}
