//! One seeded run: build a group that follows views, drive clients, local reads and
//! faults, check the invariants.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use usec_lease_clock::clock::Clock;
use usec_qp_pool::NodeId;
use usec_replication::cft::local::Stats;
use usec_replication::cft::MuConfig;
use usec_replication::driver::sim::SimGroup;
use usec_replication::driver::{ClientError, DetectorConfig, Ticket, ViewsConfig};
use usec_replication::log::CommandId;
use usec_replication::History;
use usec_verbs::sim::LatencyModel;

/// What one run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub stats: Stats,
    pub acknowledged: usize,
    pub applied: usize,
    pub faults: usize,
    pub virtual_ns: u64,
    pub local_reads: u64,
    pub views: u64,
    /// Crashes injected.
    pub crashes: usize,
}

/// Sums of many runs.
#[derive(Debug, Default)]
pub struct Totals {
    stats: Stats,
    runs: usize,
    acknowledged: usize,
    applied: usize,
    faults: usize,
    virtual_ns: u64,
    local_reads: u64,
    views: u64,
    crashes: usize,
    /// Runs with a crash after a replacement voted again (two or more crashes).
    crashes_after_replacement: usize,
}

impl Totals {
    pub fn add(&mut self, summary: &Summary) {
        self.runs += 1;
        let (total, one) = (&mut self.stats, &summary.stats);
        total.candidacies += one.candidacies;
        total.leaderships += one.leaderships;
        total.adopted += one.adopted;
        total.snapshots_pushed += one.snapshots_pushed;
        total.snapshots_pulled += one.snapshots_pulled;
        total.snapshots_restored += one.snapshots_restored;
        self.acknowledged += summary.acknowledged;
        self.applied += summary.applied;
        self.faults += summary.faults;
        self.virtual_ns += summary.virtual_ns;
        self.local_reads += summary.local_reads;
        self.views += summary.views;
        self.crashes += summary.crashes;
        self.crashes_after_replacement += usize::from(summary.crashes >= 2);
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} commands acknowledged, {} applied, {} reads answered locally, {} views learned, {} faults injected \
             ({} crashes; {} runs crashed a member after a replacement voted again), {:.1} ms of virtual time; \
             {} candidacies, {} leaderships, {} entries adopted in recovery, {} snapshots pushed, {} pulled, {} restored",
            self.acknowledged,
            self.applied,
            self.local_reads,
            self.views,
            self.faults,
            self.crashes,
            self.crashes_after_replacement,
            self.virtual_ns as f64 / 1e6,
            self.stats.candidacies,
            self.stats.leaderships,
            self.stats.adopted,
            self.stats.snapshots_pushed,
            self.stats.snapshots_pulled,
            self.stats.snapshots_restored,
        )
    }
}

/// A command some client wants decided, and where it stands.
#[derive(Debug)]
struct Pending {
    id: CommandId,
    payload: Vec<u8>,
    ticket: Option<Ticket>,
    /// When to (re)submit, if no ticket is out.
    retry_at_ns: u64,
    target: usize,
}

struct World {
    group: SimGroup<History>,
    rng: ChaCha8Rng,
    n: usize,
    /// Per client: the last sequence number used, and whether a command is out.
    clients: Vec<(u64, bool)>,
    pending: Vec<Pending>,
    acknowledged: BTreeMap<Vec<u8>, CommandId>,
    /// The highest position in the one sequence of any command acknowledged so far: a read
    /// answered now must see a state longer than that.
    acknowledged_through: Option<usize>,
    local_reads: u64,
    /// Members crashed so far (any number: a replacement votes again once promoted, and
    /// a crash comes only when every member votes).
    crashed_ever: usize,
    /// Members crashed and not restarted.
    down: BTreeSet<usize>,
    /// Histories of crashed processes, as of the crash: what they applied stays checked.
    dead: Vec<Vec<Vec<u8>>>,
    partitions: BTreeSet<(usize, usize)>,
    faults: usize,
    next_command: u64,
    /// The largest command an entry carries.
    max_command: usize,
    verbose: bool,
    seed: u64,
}

fn config(rng: &mut ChaCha8Rng) -> MuConfig {
    let capacity = rng.gen_range(6..=24);
    MuConfig {
        capacity,
        slot_bytes: [256, 512, 1024][rng.gen_range(0..3)],
        snapshot_bytes: 1 << 20,
        read_chunk: rng.gen_range(1..=4),
        pipeline: rng.gen_range(1..=(capacity / 2).min(6)),
        batch_commands: rng.gen_range(1..=8),
        queue_limit: 256,
        permission_retry_ns: rng.gen_range(30_000..=200_000),
        status_read_period_ns: rng.gen_range(5_000..=50_000),
        inbox_period_ns: rng.gen_range(1_000..=5_000),
        idle_commit_ns: rng.gen_range(1_000..=5_000),
        ..MuConfig::default()
    }
}

pub fn run(seed: u64, verbose: bool) -> Result<Summary, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = if rng.gen_bool(0.2) { 5 } else { 3 };
    let config = config(&mut rng);
    let drift: Vec<i32> = (0..n).map(|_| rng.gen_range(-200..=200)).collect();
    let name = format!("vopr-{seed}-{}", std::process::id());
    let nodes: Vec<NodeId> = (0..n as u16).map(|id| NodeId::new(id).expect("small")).collect();
    let mut views = ViewsConfig::for_group(&nodes).map_err(|error| format!("views: {error}"))?;
    views.seed = seed;
    views.scan_period_ns = rng.gen_range(5_000..=20_000);
    // Leases from uKharon's 20 µs to far longer than a takeover: a long one leaves a
    // deposed leader reading well into a successor's leadership unless the rule holds.
    views.lease.lease_ns = rng.gen_range(20_000..=300_000);
    views.lease.renew_before_ns = views.lease.lease_ns / 2;
    views.lease.retry_after_ns = views.lease.lease_ns / 4;
    let drift: Vec<i32> = drift.iter().map(|ppm| ppm * 4).collect(); // within ρ = 1 000 ppm
    let mut group = SimGroup::with_views(
        &name,
        seed,
        n as u16,
        &config,
        DetectorConfig::default(),
        &drift,
        views,
        History::default,
    )
    .map_err(|error| format!("building the group: {error}"))?;
    let (low, high) = (rng.gen_range(200..1_500), rng.gen_range(1_500..4_000));
    let mut latency = LatencyModel::uniform(low, high);
    if rng.gen_bool(0.3) {
        latency = latency.with_spikes(rng.gen_range(20..200), 5_000, 60_000);
    }
    group.fabric.set_latency(latency);
    group.quantum_ns = rng.gen_range(200..=1_000);
    if verbose {
        for index in 0..n {
            let driver = group.driver_mut(index).expect("alive");
            driver.keep_events(true);
            driver.replica_mut().set_trace(true);
        }
        println!(
            "seed {seed}: n {n}, {config:?}, drift {drift:?}, latency {low}..{high}, quantum {}",
            group.quantum_ns
        );
    }
    let clients = vec![(0, false); 8];
    let mut world = World {
        group,
        rng,
        n,
        clients,
        pending: Vec::new(),
        acknowledged: BTreeMap::new(),
        acknowledged_through: None,
        local_reads: 0,
        crashed_ever: 0,
        down: BTreeSet::new(),
        dead: Vec::new(),
        partitions: BTreeSet::new(),
        faults: 0,
        next_command: 0,
        max_command: config.max_command_bytes(),
        verbose,
        seed,
    };
    if verbose && std::env::var("USEC_VOPR_FABRIC_TRACE").is_ok() {
        world.group.fabric.record_trace(true);
    }
    let result =
        world.safety_phase().and_then(|()| world.liveness_phase()).and_then(|()| world.final_checks());
    if verbose && std::env::var("USEC_VOPR_FABRIC_TRACE").is_ok() {
        for event in world.group.fabric.trace() {
            let op = usec_replication::cft::op::Op::decode(event.wr_id);
            // Everything with USEC_VOPR_FABRIC_TRACE=all; otherwise what failed or was lost.
            let all = std::env::var("USEC_VOPR_FABRIC_TRACE").is_ok_and(|value| value == "all");
            let notable = event.kind == usec_verbs::sim::TraceKind::ResponseDropped
                || event.kind == usec_verbs::sim::TraceKind::RequestDropped
                || !event.status.is_success();
            if let Some(op) = op.filter(|_| all || notable) {
                println!(
                    "[{:>9} ns] fabric {:?} {:?} from {:?} to {:?} seq {:#x} {:?}",
                    event.at_ns, event.kind, op.kind, event.peer, event.node, op.sequence, event.status
                );
            }
        }
    }
    result
}

impl World {
    /// Steps the group once, printing role changes when verbose.
    fn step(&mut self) {
        self.group.step();
        if self.verbose {
            for index in 0..self.n {
                let trace = self
                    .group
                    .driver_mut(index)
                    .map(|driver| {
                        // A restarted member's new process traces too.
                        driver.keep_events(true);
                        driver.replica_mut().set_trace(true);
                        driver.replica_mut().take_trace()
                    })
                    .unwrap_or_default();
                for line in trace {
                    self.log(|| format!("replica {index}: {line}"));
                }
                let views = self
                    .group
                    .driver_mut(index)
                    .and_then(|driver| driver.views_mut())
                    .map(|views| {
                        views.keep_history(true);
                        views.take_history()
                    })
                    .unwrap_or_default();
                for (view, at) in views {
                    self.log(|| format!("replica {index}: learned {view} at {at} ns"));
                }
                let events =
                    self.group.driver_mut(index).map(|driver| driver.take_events()).unwrap_or_default();
                for event in events {
                    if let usec_replication::cft::Event::RoleChanged { role, leader } = event {
                        self.log(|| format!("replica {index}: {role:?}, leader {leader:?}"));
                    }
                }
            }
        }
    }

    fn now(&self) -> u64 {
        self.group.fabric.now_ns()
    }

    fn live(&self) -> Vec<usize> {
        (0..self.n).filter(|&index| self.group.driver(index).is_some()).collect()
    }

    /// What member `index`'s current process applied (nothing while it is down or booting).
    fn history(&self, index: usize) -> Vec<Vec<u8>> {
        self.group
            .driver(index)
            .map(|driver| driver.replica().state_machine().applied.clone())
            .unwrap_or_default()
    }

    /// Every history to check: the members' current processes, then the dead ones.
    fn histories(&self) -> Vec<Vec<Vec<u8>>> {
        (0..self.n).map(|index| self.history(index)).chain(self.dead.iter().cloned()).collect()
    }

    /// Members that do not count in quorums now: down, booting, or restarted and not yet
    /// brought up to date.
    fn unhealthy(&self) -> usize {
        (0..self.n)
            .filter(|&index| self.group.driver(index).is_none_or(|driver| !driver.replica().is_eligible()))
            .count()
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.verbose {
            println!("[{:>9} ns] {}", self.now(), what());
        }
    }

    fn safety_phase(&mut self) -> Result<(), String> {
        let duration = self.rng.gen_range(2_000_000..=5_000_000);
        let end = self.now() + duration;
        let mut next_fault = self.now() + self.rng.gen_range(100_000..400_000);
        let mut next_command = self.now();
        let mut steps = 0u64;
        while self.now() < end {
            if self.now() >= next_command {
                self.new_command();
                next_command = self.now() + self.rng.gen_range(2_000..30_000);
            }
            if self.now() >= next_fault {
                self.inject_fault();
                next_fault = self.now() + self.rng.gen_range(50_000..500_000);
            }
            self.service_clients();
            self.check_local_reads()?;
            self.step();
            steps += 1;
            if steps % 2_000 == 0 {
                self.check_prefixes()?;
                self.dump();
            }
        }
        self.check_prefixes()
    }

    fn new_command(&mut self) {
        // A client has one command out at a time (the applier's contract).
        let idle: Vec<usize> = (0..self.clients.len()).filter(|&client| !self.clients[client].1).collect();
        let Some(&client) = idle.get(self.rng.gen_range(0..idle.len().max(1))) else { return };
        self.next_command += 1;
        self.clients[client].0 += 1;
        self.clients[client].1 = true;
        let id = CommandId { client: 1_000 + client as u64, sequence: self.clients[client].0 };
        // Unique, and of any size an entry can carry (mostly small).
        let mut payload = format!("s{}-c{}", self.seed, self.next_command).into_bytes();
        if self.rng.gen_bool(0.1) {
            let max = self.max_command;
            let len = self.rng.gen_range(payload.len()..=max);
            payload.resize(len, b'.');
        }
        let target = self.guess_leader().unwrap_or_else(|| self.rng.gen_range(0..self.n));
        self.pending.push(Pending { id, payload, ticket: None, retry_at_ns: 0, target });
        let last = self.pending.len() - 1;
        self.submit(last);
    }

    /// A leader that runs: a client stuck on a paused one (a deposed leader that does not
    /// know it yet) gives up on it and goes elsewhere, so that writes are acknowledged
    /// while the old leader sleeps — what a stale read after it wakes would miss.
    fn guess_leader(&self) -> Option<usize> {
        let leaders = self.group.leaders();
        leaders.iter().copied().find(|&index| !self.group.members[index].paused)
    }

    /// Submits pending command `at` to its target.
    fn submit(&mut self, at: usize) {
        let target = self.pending[at].target;
        let Some(driver) = self.group.driver(target) else {
            self.pending[at].retry_at_ns = self.now() + 20_000;
            return;
        };
        let pending = &mut self.pending[at];
        let mut handle = driver.client(pending.id.client);
        match handle.submit_as(pending.id, &pending.payload) {
            Ok(ticket) => {
                pending.ticket = Some(ticket);
                pending.retry_at_ns = self.group.fabric.now_ns();
            }
            Err(_) => pending.retry_at_ns = self.group.fabric.now_ns() + 20_000,
        }
    }

    fn service_clients(&mut self) {
        let now = self.now();
        let mut index = 0;
        while index < self.pending.len() {
            let outcome = self.pending[index].ticket.as_ref().and_then(Ticket::try_take);
            match outcome {
                Some(Ok(_)) => {
                    let done = self.pending.swap_remove(index);
                    self.clients[(done.id.client - 1_000) as usize].1 = false;
                    self.log(|| {
                        format!("acknowledged {:?} {:?}", done.id, String::from_utf8_lossy(&done.payload))
                    });
                    let position = self.position_of(&done.payload).ok_or_else(|| {
                        format!(
                            "{:?} acknowledged but applied nowhere",
                            String::from_utf8_lossy(&done.payload)
                        )
                    });
                    let position = position.expect("a leader applies a command before acknowledging it");
                    self.acknowledged_through = self.acknowledged_through.max(Some(position));
                    self.acknowledged.insert(done.payload, done.id);
                    continue;
                }
                Some(Err(error)) => {
                    let pending = &mut self.pending[index];
                    pending.ticket = None;
                    pending.retry_at_ns = now + 10_000;
                    pending.target = match error {
                        ClientError::NotCommitted { leader: Some(leader) } => usize::from(leader.get()),
                        ClientError::Refused(usec_replication::cft::ProposeError::NotLeader {
                            leader: Some(leader),
                        }) => usize::from(leader.get()),
                        _ => pending.target,
                    };
                }
                None => {}
            }
            let pending = &self.pending[index];
            let crashed_target = self.group.driver(pending.target).is_none()
                || (self.group.members[pending.target].paused && now >= pending.retry_at_ns + 100_000);
            if (pending.ticket.is_none() && now >= pending.retry_at_ns)
                || (crashed_target && pending.ticket.is_some())
            {
                if crashed_target {
                    self.pending[index].ticket = None;
                }
                if let Some(leader) = self.guess_leader() {
                    self.pending[index].target = leader;
                } else {
                    self.pending[index].target = self.rng.gen_range(0..self.n);
                }
                self.submit(index);
            }
            index += 1;
        }
    }

    fn inject_fault(&mut self) {
        let minority = (self.n - 1) / 2;
        let live = self.live();
        let roll = self.rng.gen_range(0..100);
        self.faults += 1;
        // At most a minority of the members faulty at once (the membership's f, as
        // Mu's): a crash only at full strength, a pause only with room for it.
        let paused = (0..self.n).filter(|&index| self.group.members[index].paused).count();
        let full_strength =
            paused == 0 && self.unhealthy() == 0 && self.partitions.is_empty() && self.view_has_everyone();
        // A crash only once every member votes again — replacements of earlier crashes
        // included — and every member knows it: a group of n then loses one of n voters
        // and acceptors, however many crashed before.
        if roll < 12 && full_strength && self.all_vote() {
            self.crashed_ever += 1;
            // Crash: the leader half of the time.
            let victim = match self.guess_leader() {
                Some(leader) if self.rng.gen_bool(0.5) => leader,
                _ => live[self.rng.gen_range(0..live.len())],
            };
            let history = self.history(victim);
            self.dead.push(history);
            self.down.insert(victim);
            self.log(|| format!("crash {victim}"));
            self.group.crash(victim);
        } else if roll < 20 {
            // Restart a crashed member as a new process without its state.
            let down: Vec<usize> = self.down.iter().copied().collect();
            if let Some(&victim) = down.get(self.rng.gen_range(0..down.len().max(1))) {
                self.restart(victim);
            }
        } else if roll < 45 {
            let victim = match self.guess_leader() {
                Some(leader) if self.rng.gen_bool(0.5) => leader,
                _ => live[self.rng.gen_range(0..live.len())],
            };
            if !self.group.members[victim].paused && paused + self.unhealthy() < minority {
                self.log(|| format!("pause {victim}"));
                self.group.pause(victim);
            }
        } else if roll < 75 {
            let paused: Vec<usize> =
                live.iter().copied().filter(|&index| self.group.members[index].paused).collect();
            if let Some(&victim) = paused.get(self.rng.gen_range(0..paused.len().max(1))) {
                self.log(|| format!("resume {victim}"));
                self.group.resume(victim);
            }
        } else if roll < 88 {
            // One link cut at a time, at full strength: a leader cut off from one follower
            // still runs, and the view that removes one of them moves leadership while the
            // old leader may still be reading — what the lease is for.
            let a = self.rng.gen_range(0..self.n);
            let b = self.rng.gen_range(0..self.n);
            if a != b && full_strength && self.partitions.is_empty() {
                self.partitions.insert((a.min(b), a.max(b)));
                self.log(|| format!("partition {a} {b}"));
                self.group.partition(a, b);
            }
        } else {
            let cut: Vec<_> = self.partitions.iter().copied().collect();
            if let Some(&(a, b)) = cut.get(self.rng.gen_range(0..cut.len().max(1))) {
                self.log(|| format!("heal {a} {b}"));
                self.partitions.remove(&(a, b));
                self.group.heal(a, b);
            }
        }
    }

    fn restart(&mut self, victim: usize) {
        self.log(|| format!("restart {victim}"));
        self.down.remove(&victim);
        self.group.restart(victim, History::default()).expect("a crashed member restarts");
    }

    fn dump(&self) {
        if self.verbose {
            for index in self.live() {
                let driver = self.group.driver(index).expect("live");
                self.log(|| {
                    format!(
                        "  {index}{}: {}",
                        if self.group.members[index].paused { " (paused)" } else { "" },
                        driver.replica().describe()
                    )
                });
            }
        }
    }

    /// Whether the latest view any member knows has every live member in it, those of a
    /// first process as consensus members.
    fn view_has_everyone(&self) -> bool {
        let latest = self
            .live()
            .into_iter()
            .filter_map(|index| self.group.driver(index)?.views().map(|views| views.view().clone()))
            .max_by_key(|view| view.id());
        let Some(view) = latest else { return false };
        self.live().into_iter().all(|index| view.member(NodeId::new(index as u16).expect("small")).is_some())
            && view
                .members()
                .iter()
                .filter(|member| member.kind == usec_membership::MemberKind::Consensus)
                .count()
                > self.n / 2
    }

    /// Whether every member is running and knows one view in which each of them, in its
    /// current process, is a consensus member.
    fn all_vote(&self) -> bool {
        let views: Vec<_> =
            (0..self.n).filter_map(|index| Some(self.group.driver(index)?.views()?.view().clone())).collect();
        views.len() == self.n
            && views.windows(2).all(|pair| pair[0] == pair[1])
            && (0..self.n).all(|index| {
                let incarnation = self.group.driver(index).expect("running").cluster().incarnation();
                views[0].is_consensus(NodeId::new(index as u16).expect("small"), incarnation)
            })
    }

    /// Where `payload` stands in the one sequence every replica applies a prefix of.
    fn position_of(&self, payload: &[u8]) -> Option<usize> {
        let histories = self.histories();
        histories.iter().find_map(|history| history.iter().rposition(|command| command == payload))
    }

    /// Every running member tries to answer a read locally, now: one that does must see
    /// every write acknowledged so far (the harness saw them acknowledged before this
    /// instant), and no two may at once.
    fn check_local_reads(&mut self) -> Result<(), String> {
        let mut readers = Vec::new();
        for index in 0..self.n {
            if self.group.members[index].paused {
                continue;
            }
            let Some(driver) = self.group.driver(index) else { continue };
            let now = self.group.members[index].clock.now_ns();
            let mut response = Vec::new();
            if !driver.read_locally(now, b"", &mut response) {
                continue;
            }
            let length = u64::from_le_bytes(response.try_into().expect("History answers a u64")) as usize;
            if let Some(through) = self.acknowledged_through.filter(|&through| length <= through) {
                self.dump();
                return Err(format!(
                    "stale local read: replica {index} answered with {length} commands applied, but the \
                     command at position {through} was acknowledged before ({})",
                    driver.replica().describe()
                ));
            }
            readers.push(index);
        }
        if readers.len() > 1 {
            self.dump();
            return Err(format!("replicas {readers:?} all answer reads locally at once"));
        }
        self.local_reads += readers.len() as u64;
        Ok(())
    }

    fn check_prefixes(&self) -> Result<(), String> {
        let histories = self.histories();
        let longest = histories.iter().max_by_key(|history| history.len()).expect("members");
        for (index, history) in histories.iter().enumerate() {
            if let Some(at) = history.iter().zip(longest).position(|(a, b)| a != b) {
                return Err(format!(
                    "replica {index} applied {:?} at position {at}, another replica applied {:?} there",
                    String::from_utf8_lossy(&history[at]),
                    String::from_utf8_lossy(&longest[at])
                ));
            }
        }
        Ok(())
    }

    fn liveness_phase(&mut self) -> Result<(), String> {
        for (a, b) in std::mem::take(&mut self.partitions) {
            self.group.heal(a, b);
        }
        for index in self.live() {
            if self.group.members[index].paused {
                self.group.resume(index);
            }
        }
        for victim in std::mem::take(&mut self.down) {
            self.restart(victim);
        }
        self.log(|| "liveness phase: all healed, resumed and restarted".into());
        let start = self.now();
        // Every pending command eventually decided (they are retried), and a fresh one.
        self.new_command();
        let bound_ns = 40_000_000;
        while !self.pending.is_empty() {
            if self.now() - start > bound_ns {
                self.dump();
                let leaders = self.group.leaders();
                return Err(format!(
                    "liveness: {} commands still undecided {} ms after faults stopped (leaders {leaders:?}; {:?})",
                    self.pending.len(),
                    bound_ns / 1_000_000,
                    self.pending.iter().map(|pending| (pending.id, pending.target, pending.ticket.is_some())).collect::<Vec<_>>()
                ));
            }
            self.service_clients();
            self.check_local_reads()?;
            self.step();
        }
        let reads_before = self.local_reads;
        while self.local_reads == reads_before {
            if self.now() - start > 2 * bound_ns {
                self.dump();
                return Err("liveness: no read answered locally after faults stopped".into());
            }
            self.service_clients();
            self.check_local_reads()?;
            self.step();
        }
        let decided = self.now();
        // Then every live replica applies everything.
        loop {
            let lengths: Vec<usize> = (0..self.n).map(|index| self.history(index).len()).collect();
            let longest = lengths.iter().copied().max().unwrap_or(0);
            let settled = (0..self.n).all(|index| !self.group.is_booting(index));
            if settled
                && lengths.iter().all(|&length| length == longest)
                && longest >= self.acknowledged.len()
            {
                break;
            }
            if self.now() - decided > bound_ns {
                self.dump();
                return Err(format!(
                    "liveness: live replicas stuck at applied lengths {lengths:?} (settled: {settled})"
                ));
            }
            for _ in 0..100 {
                self.step();
            }
        }
        self.log(|| format!("liveness reached in {} us", (self.now() - start) / 1_000));
        Ok(())
    }

    fn final_checks(&self) -> Result<Summary, String> {
        self.check_prefixes()?;
        let histories = self.histories();
        for (index, history) in histories.iter().enumerate() {
            let mut seen = HashSet::new();
            for command in history {
                if !seen.insert(command) {
                    return Err(format!(
                        "replica {index} applied {:?} twice",
                        String::from_utf8_lossy(command)
                    ));
                }
            }
        }
        let longest = histories.iter().max_by_key(|history| history.len()).expect("members");
        let applied: HashSet<&Vec<u8>> = longest.iter().collect();
        for (payload, id) in &self.acknowledged {
            if !applied.contains(payload) {
                return Err(format!(
                    "acknowledged command {id:?} {:?} is lost",
                    String::from_utf8_lossy(payload)
                ));
            }
        }
        let mut stats = Stats::default();
        for index in self.live() {
            let one = self.group.driver(index).expect("live").replica().stats();
            stats.candidacies += one.candidacies;
            stats.leaderships += one.leaderships;
            stats.adopted += one.adopted;
            stats.snapshots_pushed += one.snapshots_pushed;
            stats.snapshots_pulled += one.snapshots_pulled;
            stats.snapshots_restored += one.snapshots_restored;
        }
        let views = self
            .live()
            .iter()
            .map(|&index| {
                self.group.driver(index).expect("live").views().expect("attached").stats().views_learned
            })
            .sum();
        Ok(Summary {
            local_reads: self.local_reads,
            views,
            stats,
            acknowledged: self.acknowledged.len(),
            applied: longest.len(),
            faults: self.faults,
            crashes: self.crashed_ever,
            virtual_ns: self.now(),
        })
    }
}
