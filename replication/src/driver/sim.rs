//! [`SimGroup`]: a Mu group on the simulator — every node in this thread, bootstrapped
//! over the in-memory network, turned in virtual time with per-node clock drift, with
//! crashes, pauses, partitions, and crashed nodes restarted as fresh processes that rejoin
//! the running group. The same seed replays the same run.

use std::net::SocketAddr;
use std::time::Duration;

use usec_lease_clock::clock::{Clock, SimClock};
use usec_qp_pool::{Bootstrap, ClusterSpec, MemoryHub, NodeConfig, NodeId, Progress};

use crate::cft::Start;
use usec_verbs::sim::{self, LatencyModel, SimFabric};

use crate::cft::MuConfig;
use crate::driver::node::{DetectorConfig, MuDriver};
use crate::driver::views::ViewsConfig;
use crate::error::{Error, Result};
use crate::state_machine::StateMachine;

/// A member of a simulated group.
#[derive(Debug)]
pub struct SimMember<S> {
    /// Its driver; `None` once crashed.
    pub driver: Option<MuDriver<S>>,
    /// Its node on the fabric.
    pub sim_node: sim::NodeId,
    /// Its clock.
    pub clock: SimClock,
    /// Whether it is paused (its thread stopped, as by SIGSTOP).
    pub paused: bool,
    /// It does not turn before this virtual time: descheduled, its core taken by another
    /// process — not stopped, so its process probes alive ([`SimGroup::deschedule`]).
    pub descheduled_until_ns: u64,
    /// A restarted process bootstrapping into the running group, with the state machine
    /// it will start with.
    booting: Option<(Bootstrap, S)>,
    /// Which process of the node this is: 1 for the first, one more for each restart.
    incarnation: u64,
}

/// A Mu group on a sim fabric.
#[derive(Debug)]
pub struct SimGroup<S> {
    /// The fabric.
    pub fabric: SimFabric,
    /// The members, by node id.
    pub members: Vec<SimMember<S>>,
    /// Virtual nanoseconds between two turns of each node.
    pub quantum_ns: u64,
    hub: MemoryHub,
    spec: ClusterSpec,
    config: MuConfig,
    detectors: DetectorConfig,
    /// The membership every node runs, when leadership follows views.
    views: Option<ViewsConfig>,
}

fn addr(id: u16) -> SocketAddr {
    SocketAddr::from(([10, 9, (id >> 8) as u8, id as u8], 7000))
}

impl<S: StateMachine> SimGroup<S> {
    /// `n` nodes on a new fabric `name` seeded with `seed`, each clock drifting by the
    /// matching entry of `drift_ppm` (0 if missing).
    pub fn new(
        name: &str,
        seed: u64,
        n: u16,
        config: &MuConfig,
        detectors: DetectorConfig,
        drift_ppm: &[i32],
        machine: impl FnMut() -> S,
    ) -> Result<SimGroup<S>> {
        SimGroup::build(name, seed, n, config, detectors, drift_ppm, None, machine)
    }

    /// As [`SimGroup::new`], every node also running the membership service `views`
    /// ([`MuDriver::attach_views`]): leadership follows views, leaders read locally.
    #[allow(clippy::too_many_arguments)] // new's, and the membership's
    pub fn with_views(
        name: &str,
        seed: u64,
        n: u16,
        config: &MuConfig,
        detectors: DetectorConfig,
        drift_ppm: &[i32],
        views: ViewsConfig,
        machine: impl FnMut() -> S,
    ) -> Result<SimGroup<S>> {
        SimGroup::build(name, seed, n, config, detectors, drift_ppm, Some(views), machine)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        name: &str,
        seed: u64,
        n: u16,
        config: &MuConfig,
        detectors: DetectorConfig,
        drift_ppm: &[i32],
        views: Option<ViewsConfig>,
        mut machine: impl FnMut() -> S,
    ) -> Result<SimGroup<S>> {
        let fabric = SimFabric::create(name, seed).map_err(|error| Error::Config(error.to_string()))?;
        fabric.set_auto_advance(false);
        fabric.set_latency(LatencyModel::uniform(600, 1_400));
        let hub = MemoryHub::new();
        let nodes = (0..n).map(|id| (NodeId::new(id).expect("small ids"), addr(id)));
        let spec = ClusterSpec::new("mu-sim", &format!("seed-{seed}"), nodes)
            .map_err(Error::pool("the description"))?;
        let mut boots = Vec::new();
        let mut members = Vec::new();
        for id in 0..n {
            let (sim_node, context) = fabric.open_node().map_err(|error| Error::Config(error.to_string()))?;
            let network = hub.listen(addr(id)).map_err(|error| Error::Config(error.to_string()))?;
            let node = node_config::<S>(&spec, id, 1, config, views.as_ref())?;
            boots
                .push(Bootstrap::start(&context, node, Box::new(network)).map_err(Error::pool("bootstrap"))?);
            let drift = drift_ppm.get(usize::from(id)).copied().unwrap_or(0);
            let clock = SimClock::with_drift(&fabric, drift, 1_000_000 * u64::from(id));
            members.push(SimMember {
                driver: None,
                sim_node,
                clock,
                paused: false,
                descheduled_until_ns: 0,
                booting: None,
                incarnation: 1,
            });
        }
        let clusters = bootstrap_all(boots)?;
        for (member, cluster) in members.iter_mut().zip(clusters) {
            let now = member.clock.now_ns();
            let mut driver = MuDriver::new(cluster, config.clone(), detectors, machine(), now)?;
            if let Some(views) = &views {
                driver.attach_views(views, now)?;
            }
            member.driver = Some(driver);
        }
        let config = config.clone();
        Ok(SimGroup { fabric, members, quantum_ns: 250, hub, spec, config, detectors, views })
    }

    /// Starts a fresh process for crashed member `index` — a new node on the fabric, its
    /// state machine `machine`, the next incarnation, [`Start::Rejoin`], a clock reading 0
    /// from now ([`SimClock::restarted`]) — which rejoins the
    /// running group as [`SimGroup::step`] goes on (qp-pool's rejoin bootstrap).
    pub fn restart(&mut self, index: usize, machine: S) -> Result<()> {
        let id = index as u16;
        let member = &mut self.members[index];
        assert!(member.driver.is_none() && member.booting.is_none(), "member {index} is not crashed");
        let (sim_node, context) =
            self.fabric.open_node().map_err(|error| Error::Config(error.to_string()))?;
        let network = self.hub.listen(addr(id)).map_err(|error| Error::Config(error.to_string()))?;
        member.incarnation += 1;
        let config = MuConfig { start: Start::Rejoin, ..self.config.clone() };
        let node =
            node_config::<S>(&self.spec, id, member.incarnation, &config, self.views.as_ref())?.rejoin(true);
        let boot = Bootstrap::start(&context, node, Box::new(network)).map_err(Error::pool("bootstrap"))?;
        member.sim_node = sim_node;
        member.paused = false;
        // A new process's clock counts from its own start, as a real one's does.
        member.clock = member.clock.restarted();
        member.descheduled_until_ns = 0;
        member.booting = Some((boot, machine));
        Ok(())
    }

    /// Whether member `index` is a restarted process still bootstrapping.
    pub fn is_booting(&self, index: usize) -> bool {
        self.members[index].booting.is_some()
    }

    /// Turns every live, running node once, then moves virtual time on by a quantum
    /// (running the fabric's events on the way).
    pub fn step(&mut self) {
        let now_ns = self.fabric.now_ns();
        for member in &mut self.members {
            if member.paused || now_ns < member.descheduled_until_ns {
                continue;
            }
            if let Some(driver) = member.driver.as_mut() {
                driver.turn(member.clock.now_ns());
            }
            if member.booting.is_some() {
                member.boot(
                    &MuConfig { start: Start::Rejoin, ..self.config.clone() },
                    self.detectors,
                    self.views.as_ref(),
                );
            }
        }
        self.fabric.advance_by(self.quantum_ns);
    }

    /// Steps for `ns` of virtual time.
    pub fn run_for(&mut self, ns: u64) {
        let until = self.fabric.now_ns() + ns;
        while self.fabric.now_ns() < until {
            self.step();
        }
    }

    /// Steps until `done` holds or `ns` of virtual time passed; whether it held.
    pub fn run_until(&mut self, ns: u64, mut done: impl FnMut(&SimGroup<S>) -> bool) -> bool {
        let until = self.fabric.now_ns() + ns;
        while self.fabric.now_ns() < until {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// Crashes member `index` for good.
    pub fn crash(&mut self, index: usize) {
        self.fabric.crash(self.members[index].sim_node);
        let member = &mut self.members[index];
        member.driver = None;
        member.booting = None;
        member.paused = false;
        member.descheduled_until_ns = 0;
    }

    /// Stops member `index`'s thread (its NIC goes on serving one-sided operations).
    pub fn pause(&mut self, index: usize) {
        self.fabric.pause(self.members[index].sim_node);
        self.members[index].paused = true;
    }

    /// Takes member `index`'s core away for `ns` of virtual time: it does not turn, but it
    /// is not stopped either — the provider probes its process alive, as the soft provider
    /// would a process waiting for a CPU — and its NIC serves one-sided operations.
    pub fn deschedule(&mut self, index: usize, ns: u64) {
        self.members[index].descheduled_until_ns = self.fabric.now_ns() + ns;
    }

    /// Lets member `index` run again.
    pub fn resume(&mut self, index: usize) {
        self.fabric.resume(self.members[index].sim_node);
        self.members[index].paused = false;
    }

    /// Cuts the link between two members.
    pub fn partition(&mut self, a: usize, b: usize) {
        self.fabric.partition(self.members[a].sim_node, self.members[b].sim_node);
    }

    /// Restores the link between two members.
    pub fn heal(&mut self, a: usize, b: usize) {
        self.fabric.heal(self.members[a].sim_node, self.members[b].sim_node);
    }

    /// Member `index`'s driver, if alive.
    pub fn driver(&self, index: usize) -> Option<&MuDriver<S>> {
        self.members[index].driver.as_ref()
    }

    /// Member `index`'s driver, if alive.
    pub fn driver_mut(&mut self, index: usize) -> Option<&mut MuDriver<S>> {
        self.members[index].driver.as_mut()
    }

    /// The members that believe they lead.
    pub fn leaders(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&index| {
                self.driver(index)
                    .is_some_and(|driver| driver.replica().role() == crate::cft::RoleKind::Leader)
            })
            .collect()
    }
}

impl<S: StateMachine> SimMember<S> {
    /// Polls its bootstrap; once done, the node runs.
    fn boot(&mut self, config: &MuConfig, detectors: DetectorConfig, views: Option<&ViewsConfig>) {
        let now = self.clock.now_ns();
        let (boot, _) = self.booting.as_mut().expect("booting");
        // A simulated bootstrap that fails is the test's failure: say why.
        if boot.poll(now).expect("a restarted node rejoins") != Progress::Done {
            return;
        }
        let (boot, machine) = self.booting.take().expect("booting");
        let cluster = boot.finish().expect("a restarted node rejoins");
        let mut driver = MuDriver::new(cluster, config.clone(), detectors, machine, now)
            .expect("the same configuration as its first process");
        if let Some(views) = views {
            driver.attach_views(views, now).expect("the same membership as its first process");
        }
        self.driver = Some(driver);
    }
}

/// Node `id`'s configuration: its incarnation, Mu's roles and regions.
fn node_config<S: StateMachine>(
    spec: &ClusterSpec,
    id: u16,
    incarnation: u64,
    config: &MuConfig,
    views: Option<&ViewsConfig>,
) -> Result<NodeConfig> {
    let mut node = NodeConfig::new(spec.clone(), NodeId::new(id).expect("small ids"))
        .deadline(Duration::from_secs(60))
        .incarnation(incarnation);
    // An ACK timeout of about 1 ms: traffic stuck in a partition resumes soon after it
    // heals (the default, 67 ms, is a real NIC's).
    node.connect.rts.timeout = 8;
    match views {
        Some(views) => MuDriver::<S>::configure_with_views(node, config, views),
        None => MuDriver::<S>::configure(node, config),
    }
}

/// Polls every bootstrap with fake time (1 ms a round) until all are done.
fn bootstrap_all(mut boots: Vec<Bootstrap>) -> Result<Vec<usec_qp_pool::Cluster>> {
    let mut now_ns = 0;
    let mut done = vec![false; boots.len()];
    while done.iter().any(|done| !done) {
        for (boot, done) in boots.iter_mut().zip(&mut done) {
            if !*done {
                *done = boot.poll(now_ns).map_err(Error::pool("bootstrap"))? == Progress::Done;
            }
        }
        now_ns += 1_000_000;
    }
    boots.into_iter().map(|boot| boot.finish().map_err(Error::pool("bootstrap"))).collect()
}
