//! One seeded run: build the cluster, let proposers contend through faults, check.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use usec_membership::driver::sim::SimCluster;
use usec_membership::{
    Action, BackoffConfig, Layout, Learner, LearnerConfig, Outcome, PaxosDriver, PaxosPort, Proposer,
    ProposerConfig, ProposerEvent, Role, Token,
};
use usec_qp_pool::NodeId;
use usec_verbs::sim::LatencyModel;

/// What one run did.
#[derive(Debug, Default)]
pub struct Summary {
    instances: u64,
    proposers: u64,
    rounds: u64,
    lost_rounds: u64,
    adopted: u64,
    faults: u64,
    virtual_ns: u64,
}

/// Sums of many runs.
#[derive(Debug, Default)]
pub struct Totals {
    runs: u64,
    sum: Summary,
}

impl Totals {
    pub fn add(&mut self, one: &Summary) {
        self.runs += 1;
        let sum = &mut self.sum;
        sum.instances += one.instances;
        sum.proposers += one.proposers;
        sum.rounds += one.rounds;
        sum.lost_rounds += one.lost_rounds;
        sum.adopted += one.adopted;
        sum.faults += one.faults;
        sum.virtual_ns += one.virtual_ns;
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sum = &self.sum;
        write!(
            f,
            "{} instances decided by {} proposers in all, {} rounds ({} lost, {} values adopted), \
             {} faults injected, {:.1} ms of virtual time",
            sum.instances,
            sum.proposers,
            sum.rounds,
            sum.lost_rounds,
            sum.adopted,
            sum.faults,
            sum.virtual_ns as f64 / 1e6
        )
    }
}

/// What a node runs: maybe a proposer, maybe a learner (an acceptor-only node, neither).
struct Participant {
    proposer: Option<Proposer<ChaCha8Rng>>,
    learner: Option<Learner>,
    /// The next instance to propose: the one after the last known decided.
    next: u64,
    /// The highest instance the proposer found decided by others, not learned yet: not
    /// proposed again meanwhile.
    obsolete: u64,
    think_until_ns: u64,
}

impl Role for Participant {
    fn tick(&mut self, now_ns: u64) {
        if let Some(proposer) = self.proposer.as_mut() {
            proposer.tick(now_ns);
        }
        if let Some(learner) = self.learner.as_mut() {
            learner.tick(now_ns);
        }
    }

    fn poll_action(&mut self) -> Option<Action> {
        self.proposer
            .as_mut()
            .and_then(|proposer| proposer.poll_action())
            .or_else(|| self.learner.as_mut().and_then(|learner| learner.poll_action()))
    }

    fn handle_completion(&mut self, now_ns: u64, token: Token, outcome: Outcome<'_>) {
        if token.class.is_proposer() {
            if let Some(proposer) = self.proposer.as_mut() {
                proposer.handle_completion(now_ns, token, outcome);
            }
        } else if let Some(learner) = self.learner.as_mut() {
            learner.handle_completion(now_ns, token, outcome);
        }
    }
}

struct World {
    sim: SimCluster,
    drivers: Vec<Option<PaxosDriver>>,
    roles: Vec<Participant>,
    rng: ChaCha8Rng,
    acceptors: usize,
    layout: Layout,
    /// Nodes with a proposer, and the node that only learns.
    proposer_nodes: Vec<usize>,
    learner_node: usize,
    last: u64,
    decided: BTreeMap<u64, Vec<u8>>,
    proposed: BTreeMap<u64, BTreeSet<Vec<u8>>>,
    partitions: BTreeSet<(usize, usize)>,
    faults: u64,
    quantum_ns: u64,
    scan_period_ns: u64,
    verbose: bool,
    seed: u64,
}

pub fn run(seed: u64, verbose: bool) -> Result<Summary, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let acceptors = if rng.gen_bool(0.3) { 5 } else { 3 };
    let proposers = rng.gen_range(1..=5usize);
    let colocated = rng.gen_bool(0.4);
    let proposer_nodes: Vec<usize> = (0..proposers)
        .map(|k| {
            if colocated && k < acceptors {
                k
            } else {
                acceptors + k - if colocated { acceptors } else { 0 }
            }
        })
        .collect();
    let learner_node = proposer_nodes.iter().copied().max().unwrap_or(0).max(acceptors - 1) + 1;
    let nodes = learner_node + 1;
    let layout = Layout {
        ring: [1, 2, 3, 4, 8, 16][rng.gen_range(0..6)],
        proposers: (proposers + rng.gen_range(0..=2)) as u16,
        value_bytes_max: [8, 60, 200][rng.gen_range(0..3)],
    };
    let first = if rng.gen_bool(0.15) { (1u64 << 32) - rng.gen_range(1..10) } else { 1 };
    let last = first + rng.gen_range(10..40);
    let drift: Vec<i32> = (0..nodes).map(|_| rng.gen_range(-200..=200)).collect();
    let acceptor_ids: Vec<NodeId> = (0..acceptors as u16).map(|id| NodeId::new(id).expect("small")).collect();
    let name = format!("paxos-vopr-{seed}-{}", std::process::id());
    let configure = |node: usec_qp_pool::NodeConfig| {
        let is_acceptor = usize::from(node.me.get()) < acceptors;
        PaxosPort::configure(node, &layout, acceptors, is_acceptor)
    };
    let (sim, clusters) = SimCluster::bootstrap(&name, seed, nodes as u16, &drift, configure)
        .map_err(|error| format!("building the cluster: {error}"))?;
    let (low, high) = (rng.gen_range(200..1_500), rng.gen_range(1_500..4_000));
    let mut latency = LatencyModel::uniform(low, high);
    if rng.gen_bool(0.3) {
        latency = latency.with_spikes(rng.gen_range(20..200), 5_000, 60_000);
    }
    sim.fabric.set_latency(latency);
    let backoff =
        BackoffConfig { base_ns: rng.gen_range(1_000..5_000), max_ns: rng.gen_range(50_000..200_000) };
    let round_timeout_ns = rng.gen_range(50_000..300_000);
    let scan_period_ns = rng.gen_range(5_000..30_000);
    let mut drivers = Vec::new();
    let mut roles = Vec::new();
    for (index, cluster) in clusters.into_iter().enumerate() {
        let now = sim.now_ns(index);
        drivers
            .push(Some(PaxosDriver::new(cluster, layout, &acceptor_ids).map_err(|error| error.to_string())?));
        let proposer = proposer_nodes.iter().position(|&node| node == index).map(|k| {
            let config = ProposerConfig { me: k as u16, acceptors, backoff, round_timeout_ns };
            let mut proposer =
                Proposer::new(layout, config, ChaCha8Rng::seed_from_u64(seed ^ (k as u64) << 32))
                    .expect("a proposer");
            proposer.set_trace(verbose);
            proposer
        });
        let learns = proposer.is_some() || index == learner_node;
        let learner =
            learns.then(|| Learner::new(layout, LearnerConfig { acceptors, scan_period_ns }, first - 1, now));
        roles.push(Participant { proposer, learner, next: first, obsolete: 0, think_until_ns: 0 });
    }
    let quantum_ns = rng.gen_range(200..=1_000);
    if verbose {
        println!(
            "seed {seed}: {acceptors} acceptors, proposers on nodes {proposer_nodes:?}, learner node \
             {learner_node}, {layout:?}, instances {first}..={last}, latency {low}..{high}, quantum \
             {quantum_ns}, {backoff:?}, round timeout {round_timeout_ns}, scan {scan_period_ns}, drift {drift:?}"
        );
    }
    let mut world = World {
        sim,
        drivers,
        roles,
        rng,
        acceptors,
        layout,
        proposer_nodes,
        learner_node,
        last,
        decided: BTreeMap::new(),
        proposed: BTreeMap::new(),
        partitions: BTreeSet::new(),
        faults: 0,
        quantum_ns,
        scan_period_ns,
        verbose,
        seed,
    };
    let trace = verbose && std::env::var("USEC_VOPR_FABRIC_TRACE").is_ok();
    world.sim.fabric.record_trace(trace);
    let result = world.safety_phase().and_then(|()| world.liveness_phase());
    if trace {
        for event in world.sim.fabric.trace() {
            let id = usec_qp_pool::WrId::from_raw(event.wr_id);
            println!(
                "[{:>9} ns] fabric {:?} at {:?} from {:?} qp {} {} seq {} {:?}",
                event.at_ns,
                event.kind,
                event.node,
                event.peer,
                event.qp_num,
                id.kind(),
                id.sequence(),
                event.status
            );
        }
    }
    result?;
    Ok(world.summary())
}

impl World {
    fn log(&self, what: impl FnOnce() -> String) {
        if self.verbose {
            println!("[{:>9} ns] {}", self.sim.fabric.now_ns(), what());
        }
    }

    /// Turns every running node once, takes what its roles report, checks it, and moves
    /// virtual time on by a quantum.
    fn step(&mut self) -> Result<(), String> {
        for index in 0..self.drivers.len() {
            if !self.sim.runs(index) {
                continue;
            }
            let Some(driver) = self.drivers[index].as_mut() else { continue };
            let now = self.sim.now_ns(index);
            driver.turn(now, &mut self.roles[index]);
            self.after_turn(index, now)?;
        }
        self.sim.fabric.advance_by(self.quantum_ns);
        Ok(())
    }

    fn after_turn(&mut self, index: usize, now: u64) -> Result<(), String> {
        let mut outcomes = Vec::new();
        let role = &mut self.roles[index];
        if let Some(proposer) = role.proposer.as_mut() {
            while let Some(event) = proposer.poll_event() {
                outcomes.push(event);
            }
            if self.verbose {
                for line in proposer.take_trace() {
                    println!("[{:>9} ns] node {index}: {line}", self.sim.fabric.now_ns());
                }
            }
        }
        for event in outcomes {
            match event {
                ProposerEvent::Decided { instance, value, .. } => {
                    self.decision(index, instance, value, "decided")?
                }
                ProposerEvent::Obsolete { instance } => {
                    self.log(|| format!("node {index}: instance {instance} obsolete"));
                    self.roles[index].obsolete = self.roles[index].obsolete.max(instance);
                    if let Some(learner) = self.roles[index].learner.as_mut() {
                        learner.wake(now);
                    }
                }
                ProposerEvent::Exhausted { instance } => {
                    return Err(format!("ballots ran out in instance {instance}"))
                }
                // A recovery found the instance open: it started, so its predecessor is
                // decided (with a value nobody can read any more: a ring of one), and this
                // proposer may propose in it.
                ProposerEvent::Unchosen { instance } => {
                    self.log(|| format!("node {index}: {instance} unchosen"));
                    let role = &mut self.roles[index];
                    role.next = role.next.max(instance);
                    if let Some(learner) = role.learner.as_mut() {
                        learner.advance_to(instance - 1);
                    }
                }
            }
        }
        while let Some(learned) = self.roles[index].learner.as_mut().and_then(|learner| learner.poll_event())
        {
            self.decision(index, learned.instance, learned.value, "learned")?;
        }
        self.maybe_propose(index, now);
        Ok(())
    }

    /// `index` found `instance` decided with `value`: it must be the one value, ever.
    fn decision(&mut self, index: usize, instance: u64, value: Vec<u8>, how: &str) -> Result<(), String> {
        self.log(|| format!("node {index} {how} instance {instance}: {:?}", String::from_utf8_lossy(&value)));
        if !self.proposed.get(&instance).is_some_and(|values| values.contains(&value)) {
            return Err(format!("node {index} {how} instance {instance} with a value never proposed for it"));
        }
        let first = self.decided.entry(instance).or_insert_with(|| value.clone());
        if *first != value {
            return Err(format!(
                "instance {instance} decided twice: node {index} {how} {:?}, before that {:?}",
                String::from_utf8_lossy(&value),
                String::from_utf8_lossy(first)
            ));
        }
        let role = &mut self.roles[index];
        role.next = role.next.max(instance + 1);
        if let Some(learner) = role.learner.as_mut() {
            learner.advance_to(instance);
        }
        if let Some(proposer) = role.proposer.as_mut() {
            if proposer.instance().is_some_and(|working| working <= instance) {
                proposer.abandon();
            }
        }
        Ok(())
    }

    fn maybe_propose(&mut self, index: usize, now: u64) {
        let value_max = self.layout.value_bytes_max;
        let role = &mut self.roles[index];
        let Some(proposer) = role.proposer.as_mut() else { return };
        if !proposer.is_idle() {
            return;
        }
        let stuck = role.learner.as_ref().and_then(|learner| learner.stuck(now, 2 * self.scan_period_ns));
        if let Some(instance) = stuck.filter(|&instance| instance >= role.next) {
            proposer.recover(now, instance).expect("idle");
            return;
        }
        let waits = role.next <= role.obsolete || now < role.think_until_ns;
        if role.next > self.last || waits {
            return;
        }
        let think = if self.rng.gen_bool(0.7) { 0 } else { self.rng.gen_range(0..20_000) };
        let instance = role.next;
        // Unique per proposer and instance, of any length the buffers take.
        let mut value = format!("{}:{}", proposer.config().me, instance % 1_000).into_bytes();
        value.truncate(value_max);
        let len = self.rng.gen_range(value.len()..=value_max);
        value.resize(len, b'a' + (index % 26) as u8);
        self.proposed.entry(instance).or_default().insert(value.clone());
        proposer.propose(now, instance, &value).expect("idle, and the value fits");
        role.think_until_ns = now + think;
    }

    fn live_proposer_nodes(&self) -> Vec<usize> {
        self.proposer_nodes.iter().copied().filter(|&node| !self.sim.nodes[node].crashed).collect()
    }

    fn crashed_acceptors(&self) -> usize {
        (0..self.acceptors).filter(|&node| self.sim.nodes[node].crashed).count()
    }

    fn safety_phase(&mut self) -> Result<(), String> {
        let end = self.sim.fabric.now_ns() + self.rng.gen_range(300_000..3_000_000);
        let mut next_fault = self.sim.fabric.now_ns() + self.rng.gen_range(10_000..100_000);
        while self.sim.fabric.now_ns() < end {
            if self.sim.fabric.now_ns() >= next_fault {
                self.inject_fault();
                next_fault = self.sim.fabric.now_ns() + self.rng.gen_range(10_000..150_000);
            }
            self.step()?;
        }
        Ok(())
    }

    fn inject_fault(&mut self) {
        let nodes = self.drivers.len();
        let victim = self.rng.gen_range(0..nodes);
        let roll = self.rng.gen_range(0..100);
        self.faults += 1;
        if self.sim.nodes[victim].crashed {
            return;
        }
        if roll < 15 {
            // A crash: never the learner, never the last proposer, at most a minority of
            // acceptors.
            let proposer = self.proposer_nodes.contains(&victim);
            let acceptor = victim < self.acceptors;
            let proposers_left = self.live_proposer_nodes().len() - usize::from(proposer);
            let acceptors_ok = !acceptor || self.crashed_acceptors() < (self.acceptors - 1) / 2;
            if victim != self.learner_node && proposers_left >= 1 && acceptors_ok {
                self.log(|| format!("crash node {victim}"));
                self.sim.crash(victim);
                self.drivers[victim] = None;
            }
        } else if roll < 45 {
            if !self.sim.nodes[victim].paused {
                self.log(|| format!("pause node {victim}"));
                self.sim.pause(victim);
            }
        } else if roll < 70 {
            if self.sim.nodes[victim].paused {
                self.log(|| format!("resume node {victim}"));
                self.sim.resume(victim);
            }
        } else if roll < 88 {
            let other = self.rng.gen_range(0..nodes);
            if other != victim && self.partitions.insert((victim.min(other), victim.max(other))) {
                self.log(|| format!("partition {victim} {other}"));
                self.sim.partition(victim, other);
            }
        } else {
            let cut: Vec<(usize, usize)> = self.partitions.iter().copied().collect();
            if let Some(&(a, b)) = cut.get(self.rng.gen_range(0..cut.len().max(1))) {
                self.log(|| format!("heal {a} {b}"));
                self.partitions.remove(&(a, b));
                self.sim.heal(a, b);
            }
        }
    }

    fn liveness_phase(&mut self) -> Result<(), String> {
        for (a, b) in std::mem::take(&mut self.partitions) {
            self.sim.heal(a, b);
        }
        for node in 0..self.drivers.len() {
            if self.sim.nodes[node].paused {
                self.sim.resume(node);
            }
        }
        // A learner sees an instance decided once a majority shows it accepted; an instance
        // whose accepting majority lost a member to a crash may never show so again, until
        // a later instance supersedes it (as the view change after a failure does). So the
        // proposers go on for a few instances, decided with every live acceptor reachable.
        self.last += 3;
        self.log(|| format!("liveness phase: all healed and resumed; instances up to {}", self.last));
        let start = self.sim.fabric.now_ns();
        let bound_ns = 100_000_000;
        loop {
            let proposers_done =
                self.live_proposer_nodes().iter().all(|&node| self.roles[node].next > self.last);
            let learner = self.roles[self.learner_node].learner.as_ref().expect("the learner node learns");
            if proposers_done && learner.latest() >= self.last {
                return Ok(());
            }
            if self.sim.fabric.now_ns() - start > bound_ns {
                let next: Vec<(usize, u64)> =
                    self.live_proposer_nodes().iter().map(|&node| (node, self.roles[node].next)).collect();
                return Err(format!(
                    "liveness: {} ms after faults stopped, proposers at {next:?} and the learner at {} \
                     (last instance {}); learner: {}; its port: {}",
                    bound_ns / 1_000_000,
                    learner.latest(),
                    self.last,
                    learner.describe(),
                    self.drivers[self.learner_node].as_ref().expect("never crashed").port().describe()
                ));
            }
            self.step()?;
        }
    }

    fn summary(&self) -> Summary {
        let mut summary = Summary {
            instances: self.decided.len() as u64,
            proposers: self.proposer_nodes.len() as u64,
            faults: self.faults,
            virtual_ns: self.sim.fabric.now_ns(),
            ..Summary::default()
        };
        for role in &self.roles {
            if let Some(stats) = role.proposer.as_ref().map(|proposer| proposer.stats()) {
                summary.rounds += stats.rounds;
                summary.lost_rounds += stats.lost_rounds;
                summary.adopted += stats.adopted;
            }
        }
        let _ = self.seed;
        summary
    }
}
