//! A follower's suspicion does not depose the leader, on membership views: a follower
//! stopped long enough to be suspected is removed from the next view and, resumed, added
//! back — two view changes, each changing the voters — while the leader, still the
//! designated leader of every view and still holding a majority, keeps leading: no new
//! candidacy, no step-down, commands committing throughout. (Before, a leadership was
//! tied to its epoch of compatible views, and every such change deposed it: a takeover
//! per suspicion of a live follower.)
//!
//! And a member removed on one member's suspicion alone is added back by the others: the
//! leader alone suspects follower 2 and removes it, then crashes; follower 1, which never
//! suspected 2, must add it back and lead with it — else the view, with 1 as its only
//! live consensus member, could never change again (a view keeps a majority of consensus
//! members), and the group would stall.
//!
//! Every bound is virtual time. The seed is printed; `USEC_SEED=S` runs that one alone.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use usec_lease_clock::clock::Clock;
use usec_qp_pool::NodeId;
use usec_replication::cft::{MuConfig, RoleKind};
use usec_replication::driver::sim::SimGroup;
use usec_replication::driver::{ClientError, DetectorConfig, Ticket, ViewsConfig};
use usec_replication::log::CommandId;
use usec_replication::History;

/// Virtual time any one phase may take.
const PHASE_BOUND_NS: u64 = 40_000_000;

fn group(seed: u64) -> SimGroup<History> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nodes: Vec<NodeId> = (0..3).map(|id| NodeId::new(id).expect("small")).collect();
    let mut views = ViewsConfig::for_group(&nodes).expect("a group");
    views.seed = seed;
    views.lease.lease_ns = rng.gen_range(20_000..=200_000);
    views.lease.renew_before_ns = views.lease.lease_ns / 2;
    views.lease.retry_after_ns = views.lease.lease_ns / 4;
    let drift: Vec<i32> = (0..3).map(|_| rng.gen_range(-800..=800)).collect();
    let name = format!("churn-{seed}-{}", std::process::id());
    SimGroup::with_views(
        &name,
        seed,
        3,
        &MuConfig::default(),
        DetectorConfig::default(),
        &drift,
        views,
        History::default,
    )
    .expect("a group")
}

/// Commits one command through `leader` within the bound.
fn commit(group: &mut SimGroup<History>, leader: usize, sequence: u64) -> Result<(), String> {
    let id = CommandId { client: 3, sequence };
    let payload = format!("command {sequence}").into_bytes();
    let deadline = group.fabric.now_ns() + PHASE_BOUND_NS;
    let mut ticket: Option<Ticket> = None;
    while group.fabric.now_ns() < deadline {
        match ticket.as_ref().and_then(Ticket::try_take) {
            Some(Ok(_)) => return Ok(()),
            Some(Err(
                ClientError::NotCommitted { .. } | ClientError::Superseded | ClientError::Refused(_),
            )) => ticket = None,
            Some(Err(error)) => return Err(format!("command {sequence}: {error}")),
            None => {}
        }
        if ticket.is_none() {
            ticket = group.driver(leader).expect("live").client(3).submit_as(id, &payload).ok();
        }
        group.run_for(2_000);
    }
    Err(format!("command {sequence} not committed within {} ms", PHASE_BOUND_NS / 1_000_000))
}

fn follower_suspected(seed: u64) -> Result<(), String> {
    let mut group = group(seed);
    // Replica 0, the lowest id, is the designated leader of every view that has it.
    if !group.run_until(PHASE_BOUND_NS, |group| group.leaders() == [0]) {
        return Err("replica 0 did not lead".into());
    }
    commit(&mut group, 0, 1)?;
    let before = group.driver(0).expect("live").replica().stats();
    let view_before = group.driver(0).expect("live").views().expect("attached").view().id();
    let follower = 1 + (seed % 2) as usize;
    let follower_id = NodeId::new(follower as u16).expect("small");
    println!("seed {seed}: stopping follower {follower} until the leader's view drops it");
    group.pause(follower);
    let dropped = group.run_until(PHASE_BOUND_NS, |group| {
        group.driver(0).expect("live").views().expect("attached").view().member(follower_id).is_none()
    });
    if !dropped {
        return Err(format!("follower {follower} never removed"));
    }
    commit(&mut group, 0, 2)?;
    group.resume(follower);
    let back = group.run_until(PHASE_BOUND_NS, |group| {
        let view = group.driver(0).expect("live").views().expect("attached").view().clone();
        let incarnation = group.driver(follower).expect("live").cluster().incarnation();
        view.is_consensus(follower_id, incarnation)
    });
    if !back {
        return Err(format!("follower {follower} never added back"));
    }
    for sequence in 3..6 {
        commit(&mut group, 0, sequence)?;
    }
    let leader = group.driver(0).expect("live");
    let after = leader.replica().stats();
    let view_after = leader.views().expect("attached").view().id();
    println!(
        "seed {seed}: views {view_before} -> {view_after}; leader 0's candidacies {} -> {}, leaderships {} -> {}",
        before.candidacies, after.candidacies, before.leaderships, after.leaderships
    );
    if view_after < view_before + 2 {
        return Err("the follower's removal and return were not two view changes".into());
    }
    if after.candidacies != before.candidacies || leader.replica().role() != RoleKind::Leader {
        return Err(format!(
            "the leader was deposed by a follower's suspicion: {} new candidacies",
            after.candidacies - before.candidacies
        ));
    }
    Ok(())
}

#[test]
fn a_suspected_follower_does_not_depose_the_leader() {
    let seeds: Vec<u64> = match std::env::var("USEC_SEED") {
        Ok(seed) => vec![seed.parse().expect("USEC_SEED is a u64")],
        Err(_) => (1..=8).collect(),
    };
    for seed in seeds {
        if let Err(failure) = follower_suspected(seed) {
            panic!("seed {seed}: {failure}\nreplay: USEC_SEED={seed} cargo test -p usec-replication --test views_churn");
        }
    }
}

fn removed_on_the_leaders_word_alone(seed: u64) -> Result<(), String> {
    let mut group = group(seed + 100);
    if !group.run_until(PHASE_BOUND_NS, |group| group.leaders() == [0]) {
        return Err("replica 0 did not lead".into());
    }
    commit(&mut group, 0, 1)?;
    let two = NodeId::new(2).expect("small");
    // Replica 0's detector, and only it, suspects replica 2.
    let now = group.members[0].clock.now_ns();
    group.driver_mut(0).expect("live").views_mut().expect("attached").handle_verdict(now, two, None, true);
    let dropped = group.run_until(PHASE_BOUND_NS, |group| {
        group.driver(1).expect("live").views().expect("attached").view().member(two).is_none()
    });
    if !dropped {
        return Err("replica 2 never removed".into());
    }
    println!("seed {seed}: replica 2 removed on replica 0's word; crashing replica 0");
    group.crash(0);
    let back = group.run_until(PHASE_BOUND_NS, |group| {
        let view = group.driver(1).expect("live").views().expect("attached").view().clone();
        view.member(NodeId::new(0).expect("small")).is_none() && view.is_consensus(two, 1)
    });
    if !back {
        let view = group.driver(1).expect("live").views().expect("attached").view().clone();
        return Err(format!("replica 1 never added replica 2 back nor removed replica 0: {view}"));
    }
    if !group.run_until(PHASE_BOUND_NS, |group| group.leaders() == [1]) {
        return Err("replica 1 did not lead".into());
    }
    commit(&mut group, 1, 2)
}

#[test]
fn a_member_removed_on_one_suspicion_is_added_back_by_the_others() {
    let seeds: Vec<u64> = match std::env::var("USEC_SEED") {
        Ok(seed) => vec![seed.parse().expect("USEC_SEED is a u64")],
        Err(_) => (1..=8).collect(),
    };
    for seed in seeds {
        if let Err(failure) = removed_on_the_leaders_word_alone(seed) {
            panic!("seed {seed}: {failure}\nreplay: USEC_SEED={seed} cargo test -p usec-replication --test views_churn");
        }
    }
}
