//! [`LocalGroup`]: N replicas as processes on this host, on a soft fabric of their own —
//! started, watched, signalled, restarted, and taken down with everything they left.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::Signal;
use usec_replication::apps::kv::KvApp;
use usec_replication::apps::orderbook::OrderBookApp;
use usec_replication::apps::server::{App as ServedApp, Prepared};

use crate::console::Target;
use crate::front_door::relay::ReadOnly;
use crate::front_door::{FrontDoor, ReadOnlyFactory};
use crate::monitor::Monitor;
use crate::plan::{App, GroupPlan, LocalPorts};
use crate::process::{describe, ReplicaProcess};
use crate::status::{self, Process, Rates};

/// How to start a local group.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// How many replicas.
    pub replicas: usize,
    /// What they serve.
    pub app: App,
    /// Ports from here (see [`LocalPorts::from_base`]); 0: free ports.
    pub port_base: u16,
    /// Whether to open the front door.
    pub front_door: bool,
    /// The usec-kv executable.
    pub kv_bin: PathBuf,
    /// More usec-kv arguments, for every replica.
    pub extra: Vec<String>,
}

/// A running local group.
#[derive(Debug)]
pub struct LocalGroup {
    plan: GroupPlan,
    kv_bin: PathBuf,
    extra: Vec<String>,
    /// Holds qp-pool's description of the group.
    dir: PathBuf,
    spec_path: PathBuf,
    /// `USEC_SOFT_DIR` of the replicas, and their fabric's directory in it.
    soft_base: PathBuf,
    fabric_dir: PathBuf,
    replicas: Vec<Option<ReplicaProcess>>,
    processes: Vec<Process>,
    front_door: Option<FrontDoor>,
    monitor: Monitor,
    started: Instant,
    rates: Rates,
    stopped: bool,
}

/// How often the monitor asks each replica: often enough that the front door finds a new
/// leader soon after a failover.
const MONITOR_PERIOD: Duration = Duration::from_millis(50);

/// Where soft fabrics live for a process with this environment (as the soft provider
/// finds it: `verbs/src/soft/fabric.rs`).
fn soft_base() -> PathBuf {
    std::env::var_os("USEC_SOFT_DIR").map_or_else(|| PathBuf::from("/dev/shm/usec-soft"), PathBuf::from)
}

impl LocalGroup {
    /// Starts the replicas (they are ready once [`LocalGroup::all_ready`]).
    pub fn start(options: &GroupOptions) -> Result<LocalGroup> {
        if options.replicas == 0 {
            bail!("a group needs at least one replica");
        }
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH)?;
        let run = format!("usec-cluster-{}-{}", std::process::id(), since_epoch.as_millis());
        let ports = LocalPorts::from_base(options.port_base, options.replicas)?;
        let plan = GroupPlan::local(options.app, &run, &ports);
        let dir = std::env::temp_dir().join(&run);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let spec_path = dir.join("cluster");
        std::fs::write(&spec_path, plan.spec_text())
            .with_context(|| format!("writing {}", spec_path.display()))?;
        let soft_base = soft_base();
        let resp: Vec<SocketAddr> = plan.nodes.iter().map(|node| node.resp).collect();
        let monitor = Monitor::spawn(&resp, MONITOR_PERIOD);
        let mut group = LocalGroup {
            fabric_dir: soft_base.join(&run),
            soft_base,
            plan,
            kv_bin: options.kv_bin.clone(),
            extra: options.extra.clone(),
            dir,
            spec_path,
            replicas: (0..options.replicas).map(|_| None).collect(),
            processes: vec![Process::Starting; options.replicas],
            front_door: None,
            monitor,
            started: Instant::now(),
            rates: Rates::default(),
            stopped: false,
        };
        for node in 0..options.replicas {
            group.spawn(node, false)?;
        }
        if options.front_door {
            let view = group.monitor.view();
            let leader = Box::new(move |after| view.leader(status::FRESH, after).map(|index| resp[index]));
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, ports.front_door));
            let door = FrontDoor::spawn(address, leader, read_only_requests(options.app))
                .with_context(|| format!("opening the front door on {address}"))?;
            group.front_door = Some(door);
        }
        Ok(group)
    }

    fn spawn(&mut self, node: usize, rejoin: bool) -> Result<()> {
        let args = self.plan.replica_args(node, &self.spec_path, rejoin, &self.extra);
        let environment = [("USEC_SOFT_DIR".to_string(), OsString::from(&self.soft_base))];
        let label = format!("[{node}]");
        self.replicas[node] = Some(ReplicaProcess::spawn(&self.kv_bin, &args, &environment, &label)?);
        self.processes[node] = Process::Starting;
        Ok(())
    }

    /// The group's plan.
    pub fn plan(&self) -> &GroupPlan {
        &self.plan
    }

    /// Each replica's RESP address, by node id.
    pub fn resp_addresses(&self) -> Vec<SocketAddr> {
        self.plan.nodes.iter().map(|node| node.resp).collect()
    }

    /// The front door's address, if open.
    pub fn front_door(&self) -> Option<&FrontDoor> {
        self.front_door.as_ref()
    }

    /// The soft fabric's directory (removed when the group stops).
    pub fn fabric_dir(&self) -> &Path {
        &self.fabric_dir
    }

    /// The process id of replica `node`, while it has one.
    pub fn pid(&self, node: usize) -> Option<u32> {
        self.replicas[node].as_ref().map(ReplicaProcess::pid)
    }

    /// What the launcher knows of each replica's process.
    pub fn processes(&self) -> &[Process] {
        &self.processes
    }

    /// Whether every replica serves clients.
    pub fn all_ready(&self) -> bool {
        self.processes.iter().all(|process| *process == Process::Running)
    }

    /// Notices replicas that became ready or ended on their own; says what changed.
    pub fn refresh(&mut self) -> Result<Vec<String>> {
        let mut news = Vec::new();
        for node in 0..self.replicas.len() {
            let Some(replica) = self.replicas[node].as_mut() else { continue };
            if matches!(self.processes[node], Process::Killed | Process::Exited(_)) {
                continue;
            }
            if let Some(status) = replica.try_exit()? {
                let how = describe(status);
                news.push(format!("replica {node} (pid {}) exited: {how}", replica.pid()));
                self.processes[node] = Process::Exited(how);
            } else if self.processes[node] == Process::Starting && replica.is_ready() {
                self.processes[node] = Process::Running;
            }
        }
        Ok(news)
    }

    /// Who leads, by fresh answers of running replicas.
    pub fn leader(&self) -> Option<usize> {
        status::leader(&self.monitor.table(), &self.processes, Instant::now())
    }

    /// The latest answers of the replicas.
    pub fn table(&self) -> crate::monitor::Table {
        self.monitor.table()
    }

    /// The status line now.
    pub fn status_line(&mut self) -> String {
        let now = Instant::now();
        status::line(now - self.started, &self.monitor.table(), &self.processes, now, &mut self.rates)
    }

    /// The node `target` names.
    pub fn resolve(&self, target: Target) -> Result<usize> {
        match target {
            Target::Leader => self.leader().context("no replica leads now"),
            Target::Replica(node) if node < self.replicas.len() => Ok(node),
            Target::Replica(node) => bail!("no replica {node}: they are 0 to {}", self.replicas.len() - 1),
        }
    }

    fn live(&self, node: usize) -> Result<&ReplicaProcess> {
        match (&self.processes[node], &self.replicas[node]) {
            (Process::Starting | Process::Running | Process::Paused, Some(replica)) => Ok(replica),
            (process, _) => bail!("replica {node} is not running ({process:?}): restart it"),
        }
    }

    /// SIGKILLs replica `node` and reaps it.
    pub fn kill(&mut self, node: usize) -> Result<String> {
        self.live(node)?;
        let replica = self.replicas[node].as_mut().expect("live");
        let status = replica.kill_and_reap()?;
        self.processes[node] = Process::Killed;
        Ok(format!("replica {node} (pid {}) killed: {}", replica.pid(), describe(status)))
    }

    /// SIGSTOPs replica `node`.
    pub fn pause(&mut self, node: usize) -> Result<String> {
        let replica = self.live(node)?;
        if self.processes[node] == Process::Paused {
            bail!("replica {node} is paused already");
        }
        replica.signal(Signal::SIGSTOP)?;
        let pid = replica.pid();
        self.processes[node] = Process::Paused;
        Ok(format!("replica {node} (pid {pid}) paused"))
    }

    /// SIGCONTs replica `node`.
    pub fn resume(&mut self, node: usize) -> Result<String> {
        let replica = self.live(node)?;
        if self.processes[node] != Process::Paused {
            bail!("replica {node} is not paused");
        }
        replica.signal(Signal::SIGCONT)?;
        let pid = replica.pid();
        // Ready again only once the monitor hears from it; it was serving when stopped.
        self.processes[node] = Process::Running;
        Ok(format!("replica {node} (pid {pid}) resumed"))
    }

    /// Starts replica `node` again as a replacement that lost its state (killing it
    /// first if it runs).
    pub fn restart(&mut self, node: usize) -> Result<String> {
        if let Some(replica) = self.replicas[node].as_mut() {
            replica.kill_and_reap()?;
        }
        self.spawn(node, true)?;
        let pid = self.pid(node).expect("spawned");
        Ok(format!("replica {node} restarted (pid {pid}, --rejoin)"))
    }

    /// Kills and reaps every replica, closes the front door, removes the fabric and the
    /// description: says what it did.
    pub fn stop(&mut self) -> Result<String> {
        if self.stopped {
            return Ok("stopped already".into());
        }
        self.stopped = true;
        self.front_door = None;
        let mut reaped = 0;
        for replica in self.replicas.iter_mut().flatten() {
            replica.kill_and_reap()?;
            reaped += 1;
        }
        for node in 0..self.processes.len() {
            if !matches!(self.processes[node], Process::Killed | Process::Exited(_)) {
                self.processes[node] = Process::Killed;
            }
        }
        remove_dir(&self.fabric_dir)?;
        remove_dir(&self.dir)?;
        Ok(format!(
            "{reaped} replica processes killed and reaped; removed {} and {}",
            self.fabric_dir.display(),
            self.dir.display()
        ))
    }
}

/// What tells the front door which of `app`'s requests only read: the app's own
/// classification, as its front end makes it (a read through the log, or one the replica
/// answers from its own state).
fn read_only_requests(app: App) -> ReadOnlyFactory {
    fn reads_of(app: impl ServedApp + Send + 'static) -> ReadOnly {
        let (mut command, mut reply) = (Vec::new(), Vec::new());
        Box::new(move |args| {
            command.clear();
            reply.clear();
            matches!(app.prepare(args, 0, &mut command, &mut reply), Prepared::Read | Prepared::Local)
        })
    }
    Box::new(move || match app {
        App::Kv => reads_of(KvApp),
        App::Orderbook => reads_of(OrderBookApp),
    })
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

impl Drop for LocalGroup {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("usec-cluster: stopping the group: {error:#}");
        }
    }
}

/// Waits up to `timeout` for `done`, checking the group as it goes: fails if a replica
/// exits meanwhile.
pub fn wait_for(
    group: &mut LocalGroup,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&LocalGroup) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        for news in group.refresh()? {
            if news.contains("exited") {
                bail!("{news} while waiting for {what}");
            }
        }
        if done(group) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no {what} within {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use usec_replication::apps::resp::{Parsed, RequestParser};

    /// Whether `app`'s front door may send `line` again.
    fn may_send_again(app: App, line: &str) -> bool {
        let mut read_only = read_only_requests(app)();
        let request = format!("{line}\r\n");
        let mut parser = RequestParser::new(Default::default());
        assert!(matches!(parser.parse(request.as_bytes()), Ok(Parsed::Request { .. })));
        read_only(parser.args(request.as_bytes()))
    }

    #[test]
    fn reads_are_told_by_each_apps_own_front_end() {
        assert!(may_send_again(App::Kv, "GET k"));
        assert!(may_send_again(App::Kv, "MGET a b"));
        assert!(!may_send_again(App::Kv, "SET k v"));
        assert!(!may_send_again(App::Kv, "INCR k"));
        assert!(may_send_again(App::Orderbook, "BOOK ACME"));
        // It takes the fills it returns from the book: a write.
        assert!(!may_send_again(App::Orderbook, "FILLS bob"));
        // Answered by the replica from its own state: nothing changes.
        assert!(may_send_again(App::Orderbook, "BOOK.DIGEST"));
        assert!(!may_send_again(App::Orderbook, "SELL bob ACME 100 10150"));
        assert!(!may_send_again(App::Orderbook, "CANCEL bob 1"));
    }
}
