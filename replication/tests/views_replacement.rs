//! A replaced replica gets its vote back, on the simulator: the claim of uKharon over Mu
//! that a failed replica's replacement — a fresh process, nothing but started — catches
//! up, becomes an acceptor and a consensus member again, and brings the group back to
//! full strength.
//!
//! For each seed, a group of three on membership views, clients writing throughout:
//! replica A crashes (the leader, for some seeds) and a new process of it starts; it must
//! become a consensus member of a view every replica learns — which takes its acceptor
//! back, its catching up in Mu and a promotion by the leader, with no operator call; then
//! replica B, another, crashes, and commands must still commit and a leader still answer
//! reads locally. Before replacements got their vote back, the second crash left one voter
//! and one usable acceptor: no view could change and the group stalled.
//!
//! Every bound is virtual time. The seed is printed; `USEC_SEED=S` runs that one alone.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use usec_lease_clock::clock::Clock;
use usec_membership::MemberKind;
use usec_qp_pool::NodeId;
use usec_replication::cft::MuConfig;
use usec_replication::driver::sim::SimGroup;
use usec_replication::driver::{ClientError, DetectorConfig, Ticket, ViewsConfig};
use usec_replication::log::CommandId;
use usec_replication::History;

/// Virtual time any one phase may take.
const PHASE_BOUND_NS: u64 = 60_000_000;

struct Run {
    group: SimGroup<History>,
    rng: ChaCha8Rng,
    sequence: u64,
    acknowledged: Vec<Vec<u8>>,
}

impl Run {
    fn start(seed: u64) -> Run {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let nodes: Vec<NodeId> = (0..3).map(|id| NodeId::new(id).expect("small")).collect();
        let mut views = ViewsConfig::for_group(&nodes).expect("a group");
        views.seed = seed;
        views.lease.lease_ns = rng.gen_range(20_000..=200_000);
        views.lease.renew_before_ns = views.lease.lease_ns / 2;
        views.lease.retry_after_ns = views.lease.lease_ns / 4;
        // A small log: the replacement is caught up from a snapshot as well as the tail.
        let config = MuConfig { capacity: 8, pipeline: 2, batch_commands: 4, ..MuConfig::default() };
        let drift: Vec<i32> = (0..3).map(|_| rng.gen_range(-800..=800)).collect();
        let name = format!("replacement-{seed}-{}", std::process::id());
        let group = SimGroup::with_views(
            &name,
            seed,
            3,
            &config,
            DetectorConfig::default(),
            &drift,
            views,
            History::default,
        )
        .expect("a group");
        Run { group, rng, sequence: 0, acknowledged: Vec::new() }
    }

    fn leader(&self) -> Option<usize> {
        self.group.leaders().first().copied()
    }

    /// Commits one new command through whoever leads, retrying, within the bound.
    fn commit_one(&mut self, what: &str) -> Result<(), String> {
        self.sequence += 1;
        let id = CommandId { client: 7, sequence: self.sequence };
        let payload = format!("command {}", self.sequence).into_bytes();
        let deadline = self.group.fabric.now_ns() + PHASE_BOUND_NS;
        let mut ticket: Option<Ticket> = None;
        while self.group.fabric.now_ns() < deadline {
            match ticket.as_ref().and_then(Ticket::try_take) {
                Some(Ok(_)) => {
                    self.acknowledged.push(payload);
                    return Ok(());
                }
                Some(Err(
                    ClientError::NotCommitted { .. } | ClientError::Superseded | ClientError::Refused(_),
                )) => ticket = None,
                Some(Err(error)) => return Err(format!("{what}: {error}")),
                None => {}
            }
            if ticket.is_none() {
                if let Some(driver) = self.leader().and_then(|leader| self.group.driver(leader)) {
                    ticket = driver.client(7).submit_as(id, &payload).ok();
                }
            }
            // A ticket at a replica that crashed or stepped down is retried elsewhere.
            if ticket.is_some() && self.leader().is_none() {
                ticket = None;
            }
            self.group.run_for(5_000);
        }
        Err(format!("{what}: no command committed within {} ms of virtual time", PHASE_BOUND_NS / 1_000_000))
    }

    /// Steps until `done`, within the bound, committing a command now and then (clients
    /// keep writing throughout).
    fn until(&mut self, what: &str, done: impl Fn(&SimGroup<History>) -> bool) -> Result<(), String> {
        let deadline = self.group.fabric.now_ns() + PHASE_BOUND_NS;
        while !done(&self.group) {
            if self.group.fabric.now_ns() >= deadline {
                return Err(format!("{what}: not within {} ms of virtual time", PHASE_BOUND_NS / 1_000_000));
            }
            self.commit_one(what)?;
        }
        Ok(())
    }

    /// Whether every live replica knows one view in which every live replica is a
    /// consensus member — their current processes.
    fn all_vote(group: &SimGroup<History>, live: &[usize]) -> bool {
        let views: Vec<_> =
            live.iter().filter_map(|&index| Some(group.driver(index)?.views()?.view().clone())).collect();
        views.len() == live.len()
            && views.windows(2).all(|pair| pair[0] == pair[1])
            && live.iter().all(|&index| {
                let driver = group.driver(index).expect("live");
                let me = NodeId::new(index as u16).expect("small");
                views[0].is_consensus(me, driver.cluster().incarnation())
            })
    }

    /// Whether a replica answers a read locally now.
    fn reads_locally(&self) -> bool {
        (0..3).any(|index| {
            let Some(driver) = self.group.driver(index) else { return false };
            let now = self.group.members[index].clock.now_ns();
            driver.read_locally(now, b"", &mut Vec::new())
        })
    }
}

fn replacement(seed: u64) -> Result<(), String> {
    let mut run = Run::start(seed);
    run.commit_one("a first command")?;
    let first = match run.leader() {
        Some(leader) if run.rng.gen_bool(0.5) => leader,
        _ => run.rng.gen_range(0..3),
    };
    println!("seed {seed}: crashing replica {first}, then restarting it");
    run.group.crash(first);
    run.commit_one("a command without the crashed replica")?;
    run.group.restart(first, History::default()).expect("a restart");
    run.until("the replacement a consensus member everywhere", |group| Run::all_vote(group, &[0, 1, 2]))?;
    let promoted = run.group.driver(first).expect("live").views().expect("attached");
    assert!(promoted.stats().acceptors_admitted >= 1, "its own acceptor admitted again");
    assert!(
        promoted.view().members().iter().all(|member| member.kind == MemberKind::Consensus),
        "every member votes"
    );
    let second = (first + 1 + run.rng.gen_range(0..2)) % 3;
    let stats = run.group.driver(first).expect("live").replica().stats();
    println!(
        "seed {seed}: replica {first} votes again at {} us (snapshots restored {}); crashing replica {second}",
        run.group.fabric.now_ns() / 1_000,
        stats.snapshots_restored
    );
    run.group.crash(second);
    let live: Vec<usize> = (0..3).filter(|&index| index != second).collect();
    run.until("a view without the second crashed replica", |group| Run::all_vote(group, &live))?;
    for round in 0..5 {
        run.commit_one(&format!("command {round} after the second crash"))?;
    }
    let deadline = run.group.fabric.now_ns() + PHASE_BOUND_NS;
    while !run.reads_locally() {
        if run.group.fabric.now_ns() >= deadline {
            return Err("no read answered locally after the second crash".into());
        }
        run.group.run_for(1_000);
    }
    // Every command acknowledged reaches the replacement's state, which it rebuilt from a
    // snapshot and the log tail.
    let acknowledged = run.acknowledged.clone();
    let holds_all = |group: &SimGroup<History>| {
        let applied = &group.driver(first).expect("live").replica().state_machine().applied;
        acknowledged.iter().all(|command| applied.contains(command))
    };
    if !run.group.run_until(PHASE_BOUND_NS, holds_all) {
        return Err("the replacement lacks acknowledged commands".into());
    }
    Ok(())
}

#[test]
fn a_replacement_votes_again_and_the_group_survives_a_second_crash() {
    let seeds: Vec<u64> = match std::env::var("USEC_SEED") {
        Ok(seed) => vec![seed.parse().expect("USEC_SEED is a u64")],
        Err(_) => (1..=12).collect(),
    };
    for seed in seeds {
        if let Err(failure) = replacement(seed) {
            panic!(
                "seed {seed}: {failure}\nreplay: USEC_SEED={seed} cargo test -p usec-replication --test views_replacement"
            );
        }
    }
}
