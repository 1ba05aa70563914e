//! The status line the launcher prints every second:
//!
//! ```text
//! status t=12.0s leader=1 ops/s=23410 | 0 killed | 1 leader commit=1234 applied=1234 | 2 follower commit=1230 applied=1229
//! ```
//!
//! `leader` is the replica that says it leads (`none` while nobody does); `ops/s` is how
//! many commands the leader applied per second since the last line (reads go through the
//! log too, so both count; `-` when it cannot be told: no leader, or a new process);
//! then each replica by node id: what the launcher did to its process (`starting`,
//! `paused`, `killed`, `exited …`) or, while it runs, its role and its commit and applied
//! index (log entries, each a batch of commands) from `INFO replication`.

use std::time::{Duration, Instant};

use crate::info::ReplicaInfo;
use crate::monitor::{self, Observation, Table};

/// What the launcher knows of a replica's process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Process {
    /// Started; not yet serving clients.
    Starting,
    /// Serving clients.
    Running,
    /// Stopped by `pause` (SIGSTOP).
    Paused,
    /// Killed by `kill` (SIGKILL) and reaped.
    Killed,
    /// Ended on its own: how.
    Exited(String),
}

/// Answers older than this are not believed.
pub const FRESH: Duration = Duration::from_millis(1000);

/// The previous line's command counts, to tell ops/s.
#[derive(Clone, Debug, Default)]
pub struct Rates {
    previous: Option<(Instant, Vec<Option<u64>>)>,
}

/// The replicas' latest answers, keeping only those of running processes.
pub fn running_only(table: &Table, processes: &[Process]) -> Table {
    table
        .iter()
        .zip(processes)
        .map(|(observation, process)| observation.clone().filter(|_| *process == Process::Running))
        .collect()
}

/// Who leads: a running replica that says so in a fresh answer.
pub fn leader(table: &Table, processes: &[Process], now: Instant) -> Option<usize> {
    monitor::leader(&running_only(table, processes), now, FRESH, None)
}

/// The line at `now`, `elapsed` after the launch.
pub fn line(
    elapsed: Duration,
    table: &Table,
    processes: &[Process],
    now: Instant,
    rates: &mut Rates,
) -> String {
    let fresh_info = |index: usize| -> Option<&ReplicaInfo> {
        let observation = table.get(index)?.as_ref()?;
        let fresh = now.saturating_duration_since(observation.at) <= FRESH;
        observation.info.as_ref().ok().filter(|_| fresh)
    };
    let leader = leader(table, processes, now);
    let counts: Vec<Option<u64>> =
        (0..processes.len()).map(|index| fresh_info(index).and_then(|info| info.applied_commands)).collect();
    let ops = match (&rates.previous, leader) {
        (Some((then, before)), Some(leader)) => match (before.get(leader).copied().flatten(), counts[leader])
        {
            (Some(before), Some(count)) if count >= before && now > *then => {
                Some(((count - before) as f64 / now.duration_since(*then).as_secs_f64()).round() as u64)
            }
            _ => None,
        },
        _ => None,
    };
    rates.previous = Some((now, counts));
    let mut text = format!(
        "status t={:.1}s leader={} ops/s={}",
        elapsed.as_secs_f64(),
        leader.map_or("none".to_string(), |leader| leader.to_string()),
        ops.map_or("-".to_string(), |ops| ops.to_string()),
    );
    for (index, process) in processes.iter().enumerate() {
        text.push_str(&format!(" | {index} "));
        match process {
            Process::Running => match (fresh_info(index), table.get(index).and_then(Option::as_ref)) {
                (Some(info), _) => text.push_str(&format!(
                    "{} commit={} applied={}",
                    info.role.word(),
                    info.commit_index,
                    info.applied_index
                )),
                (None, Some(Observation { info: Err(why), .. })) => {
                    text.push_str(&format!("no answer ({why})"))
                }
                (None, _) => text.push_str("no answer"),
            },
            Process::Starting => text.push_str("starting"),
            Process::Paused => text.push_str("paused"),
            Process::Killed => text.push_str("killed"),
            Process::Exited(how) => text.push_str(&format!("exited ({how})")),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::Role;

    fn answer(role: Role, commit: u64, commands: u64, at: Instant) -> Option<Observation> {
        let info = ReplicaInfo {
            role,
            node: 0,
            leader: None,
            leader_address: None,
            commit_index: commit,
            applied_index: commit - 1,
            applied_commands: Some(commands),
        };
        Some(Observation { at, info: Ok(info) })
    }

    #[test]
    fn a_line_per_state_and_ops_from_the_leaders_count() {
        let start = Instant::now();
        let one = start + Duration::from_secs(1);
        let two = start + Duration::from_secs(2);
        let processes = vec![Process::Running, Process::Running, Process::Paused];
        let mut rates = Rates::default();
        let table = vec![answer(Role::Leader, 10, 100, one), answer(Role::Follower, 9, 90, one), None];
        let first = line(Duration::from_secs(1), &table, &processes, one, &mut rates);
        assert_eq!(
            first,
            "status t=1.0s leader=0 ops/s=- | 0 leader commit=10 applied=9 | 1 follower commit=9 applied=8 | 2 paused"
        );
        let table = vec![answer(Role::Leader, 20, 600, two), answer(Role::Follower, 20, 600, two), None];
        let second = line(Duration::from_secs(2), &table, &processes, two, &mut rates);
        assert!(second.starts_with("status t=2.0s leader=0 ops/s=500 |"), "{second}");
    }

    #[test]
    fn a_killed_leaders_last_answer_is_not_believed() {
        let now = Instant::now();
        let processes = vec![Process::Killed, Process::Running, Process::Exited("signal 9".into())];
        let table = vec![
            answer(Role::Leader, 10, 100, now),
            Some(Observation { at: now, info: Err("connecting: refused".into()) }),
            None,
        ];
        let text = line(Duration::ZERO, &table, &processes, now, &mut Rates::default());
        assert_eq!(
            text,
            "status t=0.0s leader=none ops/s=- | 0 killed | 1 no answer (connecting: refused) | 2 exited (signal 9)"
        );
    }

    #[test]
    fn a_restarted_process_counts_from_zero_and_gives_no_rate() {
        let start = Instant::now();
        let (one, two) = (start + Duration::from_secs(1), start + Duration::from_secs(2));
        let processes = vec![Process::Running];
        let mut rates = Rates::default();
        line(Duration::ZERO, &vec![answer(Role::Leader, 10, 1000, one)], &processes, one, &mut rates);
        let text =
            line(Duration::ZERO, &vec![answer(Role::Leader, 12, 20, two)], &processes, two, &mut rates);
        assert!(text.contains("ops/s=-"), "{text}");
    }

    #[test]
    fn stale_answers_show_as_no_answer() {
        let start = Instant::now();
        let late = start + Duration::from_secs(5);
        let table = vec![answer(Role::Leader, 10, 100, start)];
        let text = line(Duration::ZERO, &table, &[Process::Running], late, &mut Rates::default());
        assert!(text.ends_with("leader=none ops/s=- | 0 no answer"), "{text}");
    }
}
