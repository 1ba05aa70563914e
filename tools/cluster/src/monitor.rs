//! Watching the replicas from outside: a thread per replica asks `INFO replication` over
//! RESP every period and keeps the latest answer, so the status line and the front door
//! know who leads without talking to the replicas themselves. A replica that does not
//! answer within the timeout (stopped, or gone) leaves an error in its place.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::{Reply, RespClient};
use crate::info::{self, ReplicaInfo, Role};

/// The latest answer from one replica.
#[derive(Clone, Debug)]
pub struct Observation {
    /// When it came (or the question failed).
    pub at: Instant,
    /// What it said, or why there is no answer.
    pub info: Result<ReplicaInfo, String>,
}

/// The replicas' latest answers, by node id.
pub type Table = Vec<Option<Observation>>;

/// The watching threads.
#[derive(Debug)]
pub struct Monitor {
    table: Arc<Mutex<Table>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Waits for a replica's answer this long: longer than any turn of a loaded replica's
/// front end, shorter than a status period.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(300);

impl Monitor {
    /// Asks each of `addresses` every `period`.
    pub fn spawn(addresses: &[SocketAddr], period: Duration) -> Monitor {
        let table = Arc::new(Mutex::new(vec![None; addresses.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = addresses
            .iter()
            .enumerate()
            .map(|(index, &address)| {
                let (table, stop) = (table.clone(), stop.clone());
                std::thread::Builder::new()
                    .name(format!("monitor-{index}"))
                    .spawn(move || watch(address, period, index, &table, &stop))
                    .expect("spawning a monitor thread")
            })
            .collect();
        Monitor { table, stop, threads }
    }

    /// The latest answers.
    pub fn table(&self) -> Table {
        self.view().table()
    }

    /// A handle on the answers for another thread.
    pub fn view(&self) -> View {
        View { table: self.table.clone() }
    }
}

/// The monitor's answers, read from any thread.
#[derive(Clone, Debug)]
pub struct View {
    table: Arc<Mutex<Table>>,
}

impl View {
    /// The latest answers.
    pub fn table(&self) -> Table {
        self.table.lock().expect("monitor threads do not panic").clone()
    }

    /// The replica leading by answers no older than `fresh` (and given after `after`).
    pub fn leader(&self, fresh: Duration, after: Option<Instant>) -> Option<usize> {
        leader(&self.table(), Instant::now(), fresh, after)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Who leads by `table` at `now`: among fresh answers saying `leader` (given after
/// `after`, if set), the one furthest ahead — a deposed leader that was stopped may still
/// say it leads for a moment after it resumes, while the real one has moved on — and on
/// a tie the lowest id.
pub fn leader(table: &Table, now: Instant, fresh: Duration, after: Option<Instant>) -> Option<usize> {
    table
        .iter()
        .enumerate()
        .filter_map(|(index, observation)| {
            let observation = observation.as_ref()?;
            let info = observation.info.as_ref().ok()?;
            let fresh = now.saturating_duration_since(observation.at) <= fresh;
            let late_enough = after.is_none_or(|after| observation.at > after);
            (info.role == Role::Leader && fresh && late_enough).then_some((index, info.commit_index))
        })
        .max_by_key(|&(index, commit)| (commit, std::cmp::Reverse(index)))
        .map(|(index, _)| index)
}

fn watch(address: SocketAddr, period: Duration, index: usize, table: &Mutex<Table>, stop: &AtomicBool) {
    let mut client: Option<RespClient> = None;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let info = ask(address, &mut client);
        if info.is_err() {
            client = None;
        }
        table.lock().expect("monitor threads do not panic")[index] =
            Some(Observation { at: Instant::now(), info });
        let next = started + period;
        while !stop.load(Ordering::Relaxed) && Instant::now() < next {
            std::thread::sleep(next.saturating_duration_since(Instant::now()).min(Duration::from_millis(20)));
        }
    }
}

fn ask(address: SocketAddr, client: &mut Option<RespClient>) -> Result<ReplicaInfo, String> {
    if client.is_none() {
        *client = Some(
            RespClient::connect(address, ANSWER_TIMEOUT).map_err(|error| format!("connecting: {error}"))?,
        );
    }
    let client = client.as_mut().expect("connected above");
    match client.request(&[b"INFO", b"replication"]).map_err(|error| error.to_string())? {
        Reply::Bulk(Some(text)) => {
            info::parse(&String::from_utf8_lossy(&text)).map_err(|error| error.to_string())
        }
        other => Err(format!("INFO answered {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(role: Role, commit_index: u64, at: Instant) -> Option<Observation> {
        let info = ReplicaInfo {
            role,
            node: 0,
            leader: None,
            leader_address: None,
            commit_index,
            applied_index: commit_index,
            applied_commands: None,
        };
        Some(Observation { at, info: Ok(info) })
    }

    #[test]
    fn the_leader_is_fresh_and_furthest_ahead() {
        let start = Instant::now();
        let now = start + Duration::from_secs(10);
        let fresh = Duration::from_secs(1);
        let stale = now - Duration::from_secs(2);
        // A stale answer does not count.
        let table = vec![said(Role::Leader, 9, stale), said(Role::Follower, 5, now), None];
        assert_eq!(leader(&table, now, fresh, None), None);
        // A resumed old leader behind the new one loses.
        let table =
            vec![said(Role::Leader, 9, now), said(Role::Follower, 12, now), said(Role::Leader, 12, now)];
        assert_eq!(leader(&table, now, fresh, None), Some(2));
        // Ties go to the lowest id.
        let table = vec![None, said(Role::Leader, 3, now), said(Role::Leader, 3, now)];
        assert_eq!(leader(&table, now, fresh, None), Some(1));
        // An error is no answer.
        let table = vec![Some(Observation { at: now, info: Err("timed out".into()) })];
        assert_eq!(leader(&table, now, fresh, None), None);
    }

    #[test]
    fn only_answers_after_a_moment_count_when_asked() {
        let start = Instant::now();
        let before = start + Duration::from_millis(100);
        let failed = start + Duration::from_millis(200);
        let after = start + Duration::from_millis(300);
        let table = vec![said(Role::Leader, 9, before), said(Role::Leader, 4, after)];
        assert_eq!(leader(&table, after, Duration::from_secs(1), None), Some(0));
        assert_eq!(leader(&table, after, Duration::from_secs(1), Some(failed)), Some(1));
    }
}
