//! View changes on the simulator, end to end through the real drivers: heartbeat and
//! peer-death detectors feed the view change, which decides views on one-sided Paxos.
//!
//! Nodes 0, 1, 2 are consensus members and the acceptors, node 3 an application member,
//! node 4 a process not in the first view. For each seed: node 2 crashes and the others
//! decide a view without it; an operator on node 0 adds node 4 as a consensus member
//! (not an acceptor), which learns the view
//! that let it in without proposing anything; node 1 is paused (SIGSTOP) until the others
//! remove it, and once resumed learns that it is out and proposes nothing more. Every view
//! id learned anywhere is the same view everywhere, learned in order.
//!
//! A node that suspects both other consensus members removes only one: a view keeps a
//! majority of consensus members, or its last one failing would wedge the membership.
//!
//! And a replaced acceptor: node 2 crashes and a new process of it starts, its acceptor
//! memory blank; an operator makes it a consensus member again; then node 1 crashes, and
//! the view without node 1 must still be decided — on acceptors 0 and 2, the new process's
//! memory used for the instances above the view that named it.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use usec_membership::driver::sim::SimCluster;
use usec_membership::{Layout, Member, MemberKind, MembershipNode, View, ViewChangeConfig, ViewEvent};
use usec_qp_pool::{NodeId, Progress};

fn node(id: u16) -> NodeId {
    NodeId::new(id).expect("small")
}

#[allow(non_snake_case)]
fn ACCEPTORS() -> [NodeId; 3] {
    [node(0), node(1), node(2)]
}

/// Nodes 0, 1, 2 consensus members (and the acceptors), node 3 an application's.
fn first_view() -> View {
    let mut first: Vec<Member> =
        ACCEPTORS().iter().map(|&id| Member::new(id, 1, MemberKind::Consensus)).collect();
    first.push(Member::new(node(3), 1, MemberKind::App));
    View::new(0, first).expect("a view")
}

struct Run {
    sim: SimCluster,
    members: Vec<Option<MembershipNode<ChaCha8Rng>>>,
    learned: Vec<Vec<(View, u64, bool)>>,
}

impl Run {
    fn start(tag: &str, seed: u64) -> Run {
        let (acceptors, layout) = (ACCEPTORS(), Layout::default());
        let drift = [120, -80, 0, 40, -150];
        // One fabric per test: the tests run at once in one process.
        let name = format!("views-sim-{tag}-{seed}-{}", std::process::id());
        let configure = |config| MembershipNode::<ChaCha8Rng>::configure(config, &layout, &acceptors);
        let (sim, clusters) = SimCluster::bootstrap(&name, seed, 5, &drift, configure).expect("a cluster");
        let first = first_view();
        let members = clusters
            .into_iter()
            .enumerate()
            .map(|(index, cluster)| {
                let me = node(index as u16);
                let config = ViewChangeConfig::new(me, 1, layout, acceptors.len());
                let rng = ChaCha8Rng::seed_from_u64(seed * 16 + index as u64);
                let now = sim.now_ns(index);
                let detectors = Default::default();
                Some(
                    MembershipNode::new(cluster, config, &acceptors, first.clone(), detectors, rng, now)
                        .expect("a member"),
                )
            })
            .collect();
        Run { sim, members, learned: vec![Vec::new(); 5] }
    }

    fn step(&mut self) {
        for index in 0..self.members.len() {
            if !self.sim.runs(index) {
                continue;
            }
            let Some(member) = self.members[index].as_mut() else { continue };
            let now = self.sim.now_ns(index);
            member.turn(now);
            while let Some(ViewEvent::Learned { view, at_ns, proposed_here }) = member.poll_event() {
                self.learned[index].push((view, at_ns, proposed_here));
            }
        }
        self.sim.fabric.advance_by(500);
    }

    /// Steps for `ns` of virtual time.
    fn run_for(&mut self, ns: u64) {
        let until = self.sim.fabric.now_ns() + ns;
        while self.sim.fabric.now_ns() < until {
            self.step();
        }
    }

    /// Steps until `done` holds, for at most `ns` of virtual time.
    fn run_until(&mut self, ns: u64, what: &str, done: impl Fn(&Run) -> bool) {
        let until = self.sim.fabric.now_ns() + ns;
        while !done(self) {
            assert!(self.sim.fabric.now_ns() < until, "{what}: not within {} µs", ns / 1_000);
            self.step();
        }
    }

    fn view(&self, index: usize) -> &View {
        self.members[index].as_ref().expect("alive").view()
    }

    /// Restarts crashed node `index` as process `incarnation`, stepping the others while it
    /// bootstraps.
    fn restart(&mut self, index: usize, incarnation: u64, seed: u64) {
        let (acceptors, layout) = (ACCEPTORS(), Layout::default());
        let configure = |config| MembershipNode::<ChaCha8Rng>::configure(config, &layout, &acceptors);
        let mut boot = self.sim.restart(index, incarnation, configure).expect("a restart");
        let until = self.sim.fabric.now_ns() + 2_000_000;
        while boot.poll(self.sim.now_ns(index)).expect("the new process rejoins") != Progress::Done {
            assert!(self.sim.fabric.now_ns() < until, "node {index} rejoins within 2 ms");
            self.step();
        }
        let cluster = boot.finish().expect("rejoined");
        let me = node(index as u16);
        let config = ViewChangeConfig::new(me, incarnation, layout, acceptors.len());
        let rng = ChaCha8Rng::seed_from_u64(seed * 16 + index as u64 + 8);
        let now = self.sim.now_ns(index);
        let member =
            MembershipNode::new(cluster, config, &acceptors, first_view(), Default::default(), rng, now)
                .expect("a member")
                .restarted();
        self.members[index] = Some(member);
    }

    /// Every view id learned anywhere is one view, and each node learned in order.
    fn check_one_view_per_id(&self) -> usize {
        let mut by_id: BTreeMap<u64, View> = BTreeMap::new();
        for (index, views) in self.learned.iter().enumerate() {
            assert!(views.windows(2).all(|pair| pair[0].0.id() < pair[1].0.id()), "node {index}: ids grow");
            for (view, _, _) in views {
                assert_eq!(
                    by_id.entry(view.id()).or_insert_with(|| view.clone()),
                    view,
                    "view {}",
                    view.id()
                );
            }
        }
        by_id.len()
    }
}

/// A node that suspects every other consensus member (it is cut off, or they lost their
/// cores) must not remove them all: a view left with one consensus member wedges the
/// membership for good once that member fails, since only consensus members propose.
#[test]
fn a_proposer_keeps_a_majority_of_consensus_members() {
    for seed in 0..4 {
        let mut run = Run::start("floor", seed);
        run.run_for(500_000);
        run.sim.pause(1);
        run.sim.pause(2);
        run.run_until(2_000_000, "a view without one of them", |run| run.view(0).id() > 0);
        run.run_for(2_000_000);
        let consensus =
            run.view(0).members().iter().filter(|member| member.kind == MemberKind::Consensus).count();
        println!("seed {seed}: node 0's view {} with nodes 1 and 2 stopped", run.view(0));
        assert!(consensus >= 2, "seed {seed}: {} leaves {consensus} consensus member", run.view(0));
    }
}

#[test]
fn a_replaced_acceptor_made_a_voter_again_lets_the_group_survive_another_crash() {
    for seed in 0..4 {
        println!("seed {seed}");
        let mut run = Run::start("replaced", seed);
        run.run_for(500_000);
        run.sim.crash(2);
        run.members[2] = None;
        run.run_until(2_000_000, "node 2 removed", |run| {
            [0, 1, 3, 4].iter().all(|&index| run.view(index).member(node(2)).is_none())
        });
        run.restart(2, 2, seed);
        // What Mu's leader does once the replacement counts in its write quorum.
        let now = run.sim.now_ns(0);
        run.members[0].as_mut().expect("alive").add(now, Member::new(node(2), 2, MemberKind::Consensus));
        run.run_until(2_000_000, "node 2's new process a consensus member everywhere", |run| {
            (0..5).all(|index| run.view(index).is_consensus(node(2), 2))
        });
        let promoted_in = run.view(0).id();
        run.sim.crash(1);
        run.members[1] = None;
        let crashed_at = run.sim.fabric.now_ns();
        // Acceptors 0 and 2 — the replaced one — are the majority left.
        run.run_until(2_000_000, "node 1 removed by acceptors 0 and 2", |run| {
            [0, 2, 3, 4].iter().all(|&index| run.view(index).member(node(1)).is_none())
        });
        println!(
            "  node 2 voted again in view {promoted_in}; node 1 out everywhere {} µs after its crash",
            (run.sim.fabric.now_ns() - crashed_at) / 1_000
        );
        for index in [2, 3, 4] {
            assert_eq!(run.view(index), run.view(0), "node {index} ends with the same view");
        }
        println!("  {} views decided", run.check_one_view_per_id());
    }
}

#[test]
fn failures_remove_members_operators_add_them_and_everyone_learns_the_same_views() {
    for seed in 0..4 {
        println!("seed {seed}");
        let mut run = Run::start("changes", seed);
        run.run_for(500_000);

        run.sim.crash(2);
        run.members[2] = None;
        let crashed_at = run.sim.fabric.now_ns();
        run.run_until(2_000_000, "node 2 removed", |run| {
            [0, 1, 3, 4].iter().all(|&index| run.view(index).member(node(2)).is_none())
        });
        println!(
            "  node 2 out everywhere {} µs after its crash",
            (run.sim.fabric.now_ns() - crashed_at) / 1_000
        );

        let now = run.sim.now_ns(0);
        // A consensus member (not an acceptor): with node 2 gone, the view keeps two when
        // node 1 is removed next — a view changes only down to a majority of consensus
        // members.
        run.members[0].as_mut().expect("alive").add(now, Member::new(node(4), 1, MemberKind::Consensus));
        run.run_until(2_000_000, "node 4 added", |run| {
            [0, 1, 3, 4].iter().all(|&index| run.view(index).contains(node(4), 1))
        });
        let joined = run.learned[4].last().expect("node 4 learned its view");
        assert!(!joined.2, "node 4 proposes nothing: it learned the view by reading");

        run.sim.pause(1);
        run.run_until(2_000_000, "node 1 removed", |run| run.view(0).member(node(1)).is_none());
        run.sim.resume(1);
        run.run_until(2_000_000, "node 1 learns it is out", |run| run.view(1).member(node(1)).is_none());
        let final_id = run.view(0).id();
        run.run_for(1_000_000);
        assert_eq!(run.view(1).id(), final_id, "node 1, out, proposes nothing");
        for index in [0, 1, 3, 4] {
            assert_eq!(run.view(index), run.view(0), "node {index} ends with the same view");
        }

        let mut by_id: BTreeMap<u64, View> = BTreeMap::new();
        for (index, views) in run.learned.iter().enumerate() {
            assert!(views.windows(2).all(|pair| pair[0].0.id() < pair[1].0.id()), "node {index}: ids grow");
            assert!(views.windows(2).all(|pair| pair[0].1 <= pair[1].1), "node {index}: times grow");
            for (view, _, _) in views {
                assert_eq!(
                    by_id.entry(view.id()).or_insert_with(|| view.clone()),
                    view,
                    "view {}",
                    view.id()
                );
            }
        }
        println!("  {} views decided", by_id.len());
    }
}
