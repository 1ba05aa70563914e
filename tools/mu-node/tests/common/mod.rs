//! What the process tests share: a node process ([`node`]), a group of them ([`group`]),
//! and the crash scenario they all run ([`crash_scenario`]).
#![allow(dead_code)]

pub mod group;
pub mod node;

use std::time::Instant;

use group::{Group, Launcher};

/// Commands a leader must get acknowledged to count as making progress.
const PROGRESS: usize = 50;

/// Three replicas, every one with a client proposing unique commands:
///
/// 1. node 0 (the lowest id) leads, and commands are acknowledged;
/// 2. SIGSTOP node 0: node 1 takes over and commands are acknowledged again;
/// 3. SIGCONT node 0: its leadership ends (its late WRITEs are refused by the followers,
///    which revoked its right), and it takes over again as the lowest live id;
/// 4. SIGKILL the follower node 2: nodes 0 and 1 go on; a fresh process of node 2
///    rejoins, is caught up by the leader and counts in quorums;
/// 5. SIGKILL node 0: node 1 takes over, with the new node 2 as the only other replica of
///    its majority;
/// 6. the clients stop; every running replica's history is checked: one sequence, no
///    command twice, every acknowledged command in it (the dead processes' too).
///
/// Failover times are printed for the record.
pub fn crash_scenario(launcher: Launcher) {
    let mut group = Group::start(launcher, 3);
    let took = group.wait_leader(0);
    group.note(&format!("node 0 leads ({took:?} after ready)"));
    let since = group.node(0).ack_count();
    let took = group.wait_progress(0, since, PROGRESS);
    group.note(&format!("{PROGRESS} commands acknowledged through node 0 in {took:?}"));

    // 2. A paused leader: the next lowest id takes over.
    let before = group.node(0).status();
    assert!(before.leads(), "node 0 leads before it is stopped: {before:?}");
    let stopped_at = Instant::now();
    group.node(0).stop();
    let takeover = group.wait_leader(1);
    let first = group.wait_ack_after(1, stopped_at);
    group.note(&format!(
        "SIGSTOP node 0: node 1 leads after {takeover:?} (seen by polling), first command acknowledged after {first:?}"
    ));
    let since = group.node(1).ack_count();
    group.wait_progress(1, since, PROGRESS);

    // 3. The paused leader resumes: its WRITEs are refused, it steps down, and (lowest
    //    id) takes over again.
    let resumed_at = Instant::now();
    group.node(0).resume();
    let limit = group.launcher.limits.step_down;
    let (after, took) = group.wait_for(limit, "node 0 to step down, its late WRITEs refused", |group| {
        let now = group.node(0).status();
        let ended = now.candidacies > before.candidacies || !now.leads();
        (ended && now.refused > before.refused).then_some(now)
    });
    group.note(&format!(
        "SIGCONT node 0: its leadership ended within {took:?}, {} late WRITEs refused; now {} (candidacies {} -> {})",
        after.refused - before.refused,
        after.role,
        before.candidacies,
        after.candidacies
    ));
    group.wait_leader(0);
    let first = group.wait_ack_after(0, resumed_at);
    group.note(&format!(
        "node 0 leads again; first command acknowledged through it {first:?} after it resumed"
    ));
    let since = group.node(0).ack_count();
    group.wait_progress(0, since, PROGRESS);

    // 4. A crashed follower, and a fresh process in its place.
    group.node(2).kill();
    let since = group.node(0).ack_count();
    let took = group.wait_progress(0, since, PROGRESS);
    group.note(&format!(
        "SIGKILL node 2 (a follower): {PROGRESS} commands acknowledged in {took:?} without it"
    ));
    rejoin(&mut group, 2);
    let since = group.node(0).ack_count();
    group.wait_progress(0, since, PROGRESS);

    // 5. A crashed leader.
    let killed_at = Instant::now();
    group.node(0).kill();
    let takeover = group.wait_leader(1);
    let first = group.wait_ack_after(1, killed_at);
    group.note(&format!(
        "SIGKILL node 0: node 1 leads after {takeover:?} (seen by polling), first command acknowledged after {first:?}"
    ));
    let since = group.node(1).ack_count();
    group.wait_progress(1, since, PROGRESS);

    // 6. Quiesce and check.
    group.quiesce_and_check();
}

/// Three replicas on membership views (`--views`), every one with a client:
///
/// 1. node 0 (the lowest id of the first view) leads, and commands are acknowledged;
/// 2. SIGKILL the follower node 2: a view change removes it, and commands are acknowledged
///    without it;
/// 3. a fresh process of node 2 (a new incarnation) joins, is caught up, and is a voter
///    again: a consensus member of the latest view, which every running node knows with
///    three voters;
/// 4. SIGKILL node 0 (another replica, the leader): node 1 takes over, with the new node 2
///    as the only other member of its majority — in the views' Paxos as in Mu — and
///    commands are acknowledged again;
/// 5. the clients stop; the histories are checked as in [`crash_scenario`].
pub fn views_replacement_scenario(launcher: Launcher) {
    let mut group = Group::start(launcher, 3);
    let took = group.wait_leader(0);
    group.note(&format!("node 0 leads ({took:?} after ready)"));
    let first_view = group.node(0).status();
    assert!(first_view.view.is_some() && first_view.voting, "node 0 runs on views: {first_view:?}");
    let since = group.node(0).ack_count();
    group.wait_progress(0, since, PROGRESS);

    // 2. A crashed follower: a view without it.
    group.node(2).kill();
    let limit = group.launcher.limits.leader;
    let (view, took) = group.wait_for(limit, "a view without node 2", |group| {
        let status = group.node(0).status();
        (status.voters == 2 && status.view > first_view.view).then_some(status.view)
    });
    group.note(&format!("SIGKILL node 2: view {view:?} without it after {took:?}"));
    let since = group.node(0).ack_count();
    let took = group.wait_progress(0, since, PROGRESS);
    group.note(&format!("{PROGRESS} commands acknowledged without node 2 in {took:?}"));

    // 3. Its replacement regains its vote.
    let started = Instant::now();
    group.restart(2);
    let ready = started.elapsed();
    let target = group.statuses().values().map(|status| status.commands).max().unwrap_or(0);
    let limit = group.launcher.limits.catch_up;
    let what = format!("node 2 (restarted) to apply {target} commands and vote in a view of 3 voters");
    let (status, took) = group.wait_for(limit, &what, |group| {
        let statuses = group.statuses();
        let fresh = &statuses[&2];
        let caught_up = fresh.commands >= target && fresh.eligible && fresh.voting;
        let agreed = statuses.values().all(|status| status.voters == 3 && status.view == fresh.view);
        (caught_up && agreed).then_some(fresh.clone())
    });
    group.note(&format!(
        "node 2 restarted: ready after {ready:?}, a voter in view {:?} ({} snapshots restored) {took:?} later",
        status.view, status.restored
    ));
    let since = group.node(0).ack_count();
    group.wait_progress(0, since, PROGRESS);

    // 4. Another replica crashes: the leader. Node 1's majority needs node 2.
    let killed_at = Instant::now();
    group.node(0).kill();
    let takeover = group.wait_leader(1);
    let first = group.wait_ack_after(1, killed_at);
    group.note(&format!(
        "SIGKILL node 0: node 1 leads after {takeover:?} (seen by polling), first command acknowledged after {first:?}"
    ));
    let since = group.node(1).ack_count();
    group.wait_progress(1, since, PROGRESS);
    let last = group.node(2).status();
    assert!(last.voting, "node 2 still votes: {last:?}");

    // 5. Quiesce and check.
    group.quiesce_and_check();
}

/// Restarts dead node `id` in rejoin mode and waits until it applied as many commands as
/// the leader had when it came back, and counts in quorums again.
fn rejoin(group: &mut Group, id: u16) {
    let started = Instant::now();
    group.restart(id);
    let ready = started.elapsed();
    let target = group.statuses().values().map(|status| status.commands).max().unwrap_or(0);
    let limit = group.launcher.limits.catch_up;
    let what = format!("node {id} (restarted) to apply {target} commands and count in quorums");
    let (restored, took) = group.wait_for(limit, &what, |group| {
        let status = group.node(id).status();
        (status.commands >= target && status.eligible).then_some(status.restored)
    });
    group.note(&format!(
        "node {id} restarted: ready after {ready:?}, caught up ({target} commands, {restored} snapshots restored) {took:?} later"
    ));
}
