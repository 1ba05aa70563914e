//! One failover trial: a fresh group of three replica processes on a fresh fabric, replica
//! 0 leading under a light load (one command of its own in flight at a time), then a
//! signal to replica 0 and the new leader's marks read back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::Signal;
use serde::Serialize;
use usec_benches::mu::clock::SharedClock;
use usec_benches::mu::launch::{Group, GroupPlan, ProcessPlan};
use usec_benches::mu::marks::{MarkKind, Marks};
use usec_benches::mu::replica::{Pacing, ReplicaReport};
use usec_benches::mu::settings::GroupSettings;
use usec_lease_clock::clock::Clock;

/// The replica that is signalled.
pub const OLD_LEADER: u16 = 0;

/// What a trial needs.
#[derive(Clone, Debug)]
pub struct TrialSetup {
    /// Each trial's fabric is `soft:<prefix>-<number>`.
    pub fabric_prefix: String,
    pub settings: GroupSettings,
    /// Core of replica 0, then the core replicas 1 and 2 share.
    pub cores: Option<(usize, usize)>,
    pub follower_spins: u32,
    /// Replica 0 leads this long under load before the signal.
    pub warmup: Duration,
}

impl TrialSetup {
    /// The group of a trial: replica 0 busy-polls its core, the others share theirs; all
    /// keep a command in flight whenever they lead (the client whose first commit under
    /// the new leader ends the failover), unless `quiet`.
    pub fn plan(&self, number: u64, quiet: bool) -> GroupPlan {
        let (leader_core, follower_core) = self.cores.unzip();
        let follower = |me| ProcessPlan {
            me,
            core: follower_core,
            pacing: Pacing::Cooperative { spins: self.follower_spins },
            load: !quiet,
        };
        GroupPlan {
            device: format!("soft:{}-{number}", self.fabric_prefix),
            settings: self.settings,
            command_bytes: 64,
            processes: vec![
                ProcessPlan { me: OLD_LEADER, core: leader_core, pacing: Pacing::BusyPoll, load: !quiet },
                follower(1),
                follower(2),
            ],
            local: None,
        }
    }
}

/// The instants of one failover, in nanoseconds after the signal.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Failover {
    /// The replica that took over.
    pub new_leader: u16,
    /// Its failure detector suspected replica 0.
    pub suspected_ns: u64,
    /// It started the candidacy that succeeded (the last one before the grant).
    pub candidate_ns: u64,
    /// A majority granted it their logs.
    pub granted_ns: u64,
    /// Recovery done: it leads.
    pub leader_ns: u64,
    /// Its first command committed.
    pub committed_ns: u64,
    /// The other follower suspected replica 0, if it did.
    pub other_suspected_ns: Option<u64>,
    /// The other follower granted the new leader its log.
    pub other_granted_ns: Option<u64>,
    /// Commands replica 0 committed before the signal.
    pub commits_before: u64,
    /// On views: the new leader learned the view without replica 0 (decided by Paxos).
    pub view_decided_ns: Option<u64>,
    /// On views: that view's lease held on the new leader — every lease on the old view
    /// had provably run out.
    pub view_active_ns: Option<u64>,
}

/// How long a stopped leader is left stopped before the watchdog kills it.
const STALL_LIMIT: Duration = Duration::from_secs(2);

/// Disputed leaderships waited out in one group before its trial is given up.
const DISPUTES_PER_GROUP: usize = 5;

/// How long a trial may take from the signal to the new leader's first commit.
const FAILOVER_LIMIT: Duration = Duration::from_secs(5);

/// What a trial came to.
#[derive(Debug)]
pub enum Outcome {
    /// The failover, timed.
    Failover(Failover),
    /// Replica 0 was not the undisputed leader when the signal was due (a spurious leader
    /// change: on a busy machine a replica's core is taken away for longer than the
    /// detectors' patience); the trial was not run: why.
    Disturbed(String),
    /// After a SIGSTOP, the survivors could not take over while the leader stayed
    /// stopped: why.
    Stalled(String),
}

/// Runs one trial: `signal` to replica 0 while it leads.
pub fn run(setup: &TrialSetup, number: u64, signal: Signal) -> Result<Outcome> {
    let mut group = Group::launch(&setup.plan(number, false))?;
    // A leadership disputed at the signal is waited out a few times before the group is
    // given up (starting one has its own churn: the replicas start turning at different
    // instants).
    let mut disputes = 0;
    let commits_before = loop {
        let commits = await_leading(&mut group, setup.warmup)?;
        match disputed(&mut group)? {
            None => break commits,
            Some(why) if disputes == DISPUTES_PER_GROUP => return Ok(Outcome::Disturbed(why)),
            Some(_) => disputes += 1,
        }
    };
    let clock = SharedClock;
    let old_leader = group.process_mut(OLD_LEADER).expect("launched").pid()?;
    let signalled_ns = clock.now_ns();
    nix::sys::signal::kill(old_leader, signal).context("signalling replica 0")?;
    // A survivor whose permission change waits for a WRITE of the stopped leader's to
    // finish (a known limit of the soft provider, see the README) answers nobody until
    // that leader dies: a watchdog kills it after a while, and the trial says so.
    let (done, fired) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let watchdog = (signal == Signal::SIGSTOP).then(|| {
        let (done, fired) = (done.clone(), fired.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            while !done.load(Ordering::Acquire) {
                if started.elapsed() > STALL_LIMIT {
                    fired.store(true, Ordering::Release);
                    let _ = nix::sys::signal::kill(old_leader, Signal::SIGKILL);
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    });
    let views = setup.settings.views_lease_ns.is_some();
    let outcome = watch(&mut group, signal, signalled_ns, commits_before, views);
    done.store(true, Ordering::Release);
    if let Some(watchdog) = watchdog {
        watchdog.join().expect("the watchdog does not panic");
    }
    let outcome = outcome?;
    if fired.load(Ordering::Acquire) {
        let Outcome::Failover(failover) = outcome else { return Ok(outcome) };
        return Ok(Outcome::Stalled(format!(
            "the survivors answered only once the stopped leader was killed, {STALL_LIMIT:?} after the SIGSTOP; \
             first commit {} ns after the SIGSTOP",
            failover.committed_ns
        )));
    }
    Ok(outcome)
}

/// Polls the survivors until one of them took over and committed.
fn watch(
    group: &mut Group,
    signal: Signal,
    signalled_ns: u64,
    commits_before: u64,
    views: bool,
) -> Result<Outcome> {
    // Leave the survivors alone while they take over: a report request costs them a turn.
    std::thread::sleep(Duration::from_millis(20));
    let started = Instant::now();
    loop {
        let mut reports = Vec::new();
        for me in [1, 2] {
            reports.push(group.process_mut(me).expect("launched").report()?);
        }
        if let Some(failover) = failover_of(&reports, signalled_ns, commits_before, views) {
            if tracing() {
                let from = signalled_ns.saturating_sub(TRACE_BEFORE_NS);
                eprintln!("---- trial: {failover:?}; from the signal:");
                eprint!("{}", timeline(&reports, from..=signalled_ns + failover.committed_ns, signalled_ns));
            }
            if signal == Signal::SIGSTOP {
                // Not left stopped: dropping the group kills it (SIGKILL works on a stopped
                // process), and nothing it holds is waited for.
                group.process_mut(OLD_LEADER).expect("launched").signal(Signal::SIGKILL)?;
            }
            return Ok(Outcome::Failover(failover));
        }
        // A survivor that already suspected replica 0 or campaigned when the signal went
        // out (its core was taken between the check and the signal) times nothing.
        if let Some(why) = disputed_at(&reports, signalled_ns) {
            return Ok(Outcome::Disturbed(why));
        }
        if started.elapsed() > FAILOVER_LIMIT {
            if tracing() {
                let from = signalled_ns.saturating_sub(TRACE_BEFORE_NS);
                eprintln!("---- trial with no new leader; from the signal:");
                eprint!("{}", timeline(&reports, from..=u64::MAX, signalled_ns));
            }
            let marks: Vec<String> = reports
                .iter()
                .map(|report| format!("replica {}:\n{}", report.me, report.marks.describe(signalled_ns)))
                .collect();
            bail!(
                "no new leader committed within {FAILOVER_LIMIT:?} of {signal}; marks (from the signal):\n{}",
                marks.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Why replica 0 is not the undisputed leader right now, if it is not: its last role
/// mark must be a leadership, and each follower must trust it and follow it.
fn disputed(group: &mut Group) -> Result<Option<String>> {
    let is_role =
        |kind: &MarkKind| matches!(kind, MarkKind::Candidate | MarkKind::Leader | MarkKind::Follower { .. });
    for me in [OLD_LEADER, 1, 2] {
        let report = group.process_mut(me).expect("launched").report()?;
        let marks = &report.marks.marks;
        let role = marks.iter().rev().map(|mark| mark.kind).find(is_role);
        let about_leader = marks.iter().rev().map(|mark| mark.kind).find(|kind| {
            matches!(kind, MarkKind::Suspected { peer: OLD_LEADER } | MarkKind::Trusted { peer: OLD_LEADER })
        });
        let undisputed = match me {
            OLD_LEADER => role == Some(MarkKind::Leader),
            _ => {
                matches!(role, None | Some(MarkKind::Follower { leader: Some(OLD_LEADER) }))
                    && about_leader != Some(MarkKind::Suspected { peer: OLD_LEADER })
            }
        };
        if !undisputed {
            let last_ns = marks.last().map_or(0, |mark| mark.at_ns);
            return Ok(Some(format!(
                "replica {me}: last role mark {role:?}, last verdict on replica 0 {about_leader:?}; its marks \
                 (before the last):\n{}",
                report.marks.describe(last_ns)
            )));
        }
    }
    Ok(None)
}

/// Why a survivor was not following replica 0 at `signalled_ns`, if one was not: its last
/// verdict on replica 0 before then was a suspicion, or its last role mark a candidacy or
/// a leadership.
fn disputed_at(reports: &[ReplicaReport], signalled_ns: u64) -> Option<String> {
    reports.iter().find_map(|report| {
        let before = report.marks.marks.iter().rev().filter(|mark| mark.at_ns <= signalled_ns);
        let last = before.map(|mark| mark.kind).find(|kind| {
            matches!(
                kind,
                MarkKind::Suspected { peer: OLD_LEADER }
                    | MarkKind::Trusted { peer: OLD_LEADER }
                    | MarkKind::Candidate
                    | MarkKind::Leader
                    | MarkKind::Follower { .. }
            )
        })?;
        let disputed = matches!(last, MarkKind::Suspected { .. } | MarkKind::Candidate | MarkKind::Leader);
        disputed.then(|| format!("replica {} at the signal: {last:?}", report.me))
    })
}

/// Polls replica 0 until it has led for 100 of its commands without a change of role, lets
/// it run `warmup` longer, and returns how many of its commands were committed by then.
pub fn await_leading(group: &mut Group, warmup: Duration) -> Result<u64> {
    let started = Instant::now();
    let mut leading_since: Option<(u64, u64)> = None; // (the Leader mark's instant, commits then)
    loop {
        let report = group.process_mut(OLD_LEADER).expect("launched").report()?;
        let last_role = report.marks.marks.iter().rev().find(|mark| {
            matches!(mark.kind, MarkKind::Candidate | MarkKind::Leader | MarkKind::Follower { .. })
        });
        match last_role {
            Some(mark) if mark.kind == MarkKind::Leader => match leading_since {
                Some((since, commits)) if since == mark.at_ns => {
                    if report.commits >= commits + 100 {
                        break;
                    }
                }
                _ => leading_since = Some((mark.at_ns, report.commits)),
            },
            _ => leading_since = None,
        }
        if started.elapsed() > Duration::from_secs(20) {
            let last_ns = report.marks.marks.last().map_or(0, |mark| mark.at_ns);
            bail!(
                "replica 0 did not lead steadily within 20 s; its marks and notes (before the last):\n{}",
                timeline(std::slice::from_ref(&report), 0..=last_ns, last_ns)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(warmup);
    let report =
        group.process_mut(OLD_LEADER).expect("launched").report().context("replica 0 before the signal")?;
    Ok(report.commits)
}

/// The failover the survivors' marks show after `signalled_ns`, once complete.
fn failover_of(
    reports: &[ReplicaReport],
    signalled_ns: u64,
    commits_before: u64,
    views: bool,
) -> Option<Failover> {
    let after = |marks: &Marks, from: u64, kind: MarkKind| {
        marks.first_after(from, |seen| *seen == kind).map(|mark| mark.at_ns)
    };
    for (index, report) in reports.iter().enumerate() {
        let marks = &report.marks;
        // Detection: this replica's suspicion of the old leader — or, on views, the other
        // survivor's if earlier: a view without the old leader, proposed by either, makes
        // this one the designated leader before its own detector may have spoken (then it
        // leads without a suspicion of its own before; such trials were counted as stalls).
        let own = after(marks, signalled_ns, MarkKind::Suspected { peer: OLD_LEADER });
        let other = after(&reports[1 - index].marks, signalled_ns, MarkKind::Suspected { peer: OLD_LEADER });
        let suspected = if views { own.into_iter().chain(other).min() } else { own };
        let Some(suspected_ns) = suspected else {
            continue;
        };
        let Some(leader_ns) = after(marks, suspected_ns, MarkKind::Leader) else { continue };
        let Some(committed_ns) = after(marks, leader_ns, MarkKind::FirstCommit) else { continue };
        let granted_ns = marks
            .marks
            .iter()
            .filter(|mark| mark.kind == MarkKind::Granted && (suspected_ns..=leader_ns).contains(&mark.at_ns))
            .map(|mark| mark.at_ns)
            .next_back()?;
        let candidate_ns = marks
            .marks
            .iter()
            .filter(|mark| {
                mark.kind == MarkKind::Candidate && (suspected_ns..=granted_ns).contains(&mark.at_ns)
            })
            .map(|mark| mark.at_ns)
            .next_back()?;
        let other = &reports[1 - index].marks;
        let since = |at: u64| at.saturating_sub(signalled_ns);
        // The last view learned before the candidacy that succeeded, and when its lease
        // first held (views only).
        let view = marks
            .marks
            .iter()
            .filter(|mark| (signalled_ns..=candidate_ns).contains(&mark.at_ns))
            .filter_map(|mark| match mark.kind {
                MarkKind::ViewLearned { view } => Some((view, mark.at_ns)),
                _ => None,
            })
            .next_back();
        let view_active_ns = view.and_then(|(view, _)| {
            marks
                .first_after(signalled_ns, |kind| *kind == MarkKind::ViewActive { view })
                .map(|mark| mark.at_ns)
        });
        return Some(Failover {
            new_leader: report.me,
            suspected_ns: since(suspected_ns),
            candidate_ns: since(candidate_ns),
            granted_ns: since(granted_ns),
            leader_ns: since(leader_ns),
            committed_ns: since(committed_ns),
            other_suspected_ns: after(other, signalled_ns, MarkKind::Suspected { peer: OLD_LEADER })
                .map(since),
            other_granted_ns: after(other, signalled_ns, MarkKind::GaveGrant).map(since),
            commits_before,
            view_decided_ns: view.map(|(_, at)| since(at)),
            view_active_ns: view_active_ns.map(since),
        });
    }
    None
}

/// Leader changes in a group left alone.
#[derive(Clone, Debug, Serialize)]
pub struct Quiet {
    /// How long the group was watched.
    pub watched_ns: u64,
    /// Candidacies started in that time, by any replica.
    pub candidacies: usize,
    /// Leaderships taken in that time.
    pub leaderships: usize,
    /// Suspicions of a live replica in that time.
    pub suspicions: usize,
    /// Per replica: (candidacies, leaderships, suspicions).
    pub per_replica: Vec<(u16, usize, usize, usize)>,
}

/// Starts a group without load, waits until replica 0 leads, then watches it for `watch`.
pub fn quiet(setup: &TrialSetup, watch: Duration) -> Result<Quiet> {
    let mut group = Group::launch(&setup.plan(u64::MAX, true))?;
    let started = Instant::now();
    loop {
        let report = group.process_mut(OLD_LEADER).expect("launched").report()?;
        if report.marks.marks.iter().any(|mark| mark.kind == MarkKind::Leader) {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            bail!("replica 0 did not lead within 20 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Followers admitted, the first commit records written.
    std::thread::sleep(Duration::from_millis(50));
    let clock = SharedClock;
    let from_ns = clock.now_ns();
    std::thread::sleep(watch);
    let until_ns = clock.now_ns();
    let mut per_replica = Vec::new();
    let mut reports = Vec::new();
    for process in group.processes.drain(..) {
        reports.push(process.stop()?);
    }
    if tracing() {
        eprintln!("---- the quiet group, from the start of the watch:");
        eprint!("{}", timeline(&reports, from_ns..=until_ns, from_ns));
    }
    for report in reports {
        let within = |kind: fn(&MarkKind) -> bool| {
            report
                .marks
                .marks
                .iter()
                .filter(|mark| (from_ns..until_ns).contains(&mark.at_ns) && kind(&mark.kind))
                .count()
        };
        per_replica.push((
            report.me,
            within(|kind| *kind == MarkKind::Candidate),
            within(|kind| *kind == MarkKind::Leader),
            within(|kind| matches!(kind, MarkKind::Suspected { .. })),
        ));
    }
    Ok(Quiet {
        watched_ns: until_ns - from_ns,
        candidacies: per_replica.iter().map(|entry| entry.1).sum(),
        leaderships: per_replica.iter().map(|entry| entry.2).sum(),
        suspicions: per_replica.iter().map(|entry| entry.3).sum(),
        per_replica,
    })
}

/// With `USEC_MU_TRACE` set (inherited by the replica processes), each replica records its
/// decisions, its turns longer than 10 µs and its gaps of more than 20 µs between turns
/// (see `usec_benches::mu::replica`), and this process prints them as timelines: around
/// each failover, for the quiet group, and when replica 0 does not settle.
pub fn tracing() -> bool {
    std::env::var_os(usec_benches::mu::replica::TRACE_VARIABLE).is_some()
}

/// A failover's timeline starts this long before the signal.
const TRACE_BEFORE_NS: u64 = 300_000;

/// The marks and notes of `reports` within `range`, merged in time order, one per line, in
/// microseconds from `origin_ns`.
fn timeline(reports: &[ReplicaReport], range: std::ops::RangeInclusive<u64>, origin_ns: u64) -> String {
    let mut lines: Vec<(u64, u16, String)> = Vec::new();
    for report in reports {
        let notes = report.notes.iter().map(|(at, note)| (*at, note.clone()));
        let marks = report.marks.marks.iter().map(|mark| (mark.at_ns, format!("MARK {:?}", mark.kind)));
        lines.extend(
            notes.chain(marks).filter(|(at, _)| range.contains(at)).map(|(at, what)| (at, report.me, what)),
        );
    }
    lines.sort_by_key(|line| line.0);
    lines
        .iter()
        .map(|(at, me, what)| format!("{:+12.1} us  r{me}  {what}\n", (*at as f64 - origin_ns as f64) / 1e3))
        .collect()
}
