//! `usec-cluster node`: the local replica of a group described by a config file (one
//! process per host, on real devices), with the group's status line every second, until
//! Ctrl-C.
//!
//! On the soft provider (every node on one host, as the tests run it) the fabric's
//! directory is shared by the nodes, so no node removes it: the next process to open the
//! fabric sweeps what dead ones left, and the directory itself is the user's to remove.

use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use crate::config;
use crate::events::{self, Event};
use crate::monitor::Monitor;
use crate::process::{describe, ReplicaProcess};
use crate::status::{self, Process, Rates};

/// What `node` needs.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The config file.
    pub config: PathBuf,
    /// This host's node id.
    pub node: usize,
    /// The run (overrides the file's).
    pub run: Option<String>,
    /// Start as a replacement of a replica that lost its state.
    pub rejoin: bool,
    /// The usec-kv executable.
    pub kv_bin: PathBuf,
    /// More usec-kv arguments.
    pub extra: Vec<String>,
}

/// Runs node `options.node` until a stopping signal, or until it exits.
pub fn run(options: &NodeOptions, status_period: Duration) -> Result<()> {
    let text = std::fs::read_to_string(&options.config)
        .with_context(|| format!("reading {}", options.config.display()))?;
    let plan = config::parse(&text, options.run.as_deref())
        .with_context(|| format!("in {}", options.config.display()))?;
    let Some(me) = plan.nodes.get(options.node) else {
        bail!(
            "no node {} in {}: it has 0 to {}",
            options.node,
            options.config.display(),
            plan.nodes.len() - 1
        );
    };
    let events = events::listen(false);
    let dir = std::env::temp_dir().join(format!(
        "usec-cluster-{}-node-{}-{}",
        plan.run,
        options.node,
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let spec_path = dir.join("cluster");
    std::fs::write(&spec_path, plan.spec_text())
        .with_context(|| format!("writing {}", spec_path.display()))?;
    let result = serve(options, &plan, &spec_path, &events, status_period);
    let _ = std::fs::remove_dir_all(&dir);
    println!("usec-cluster: node {} ({} on {}) stopped", options.node, plan.app.name(), me.device);
    result
}

fn serve(
    options: &NodeOptions,
    plan: &crate::plan::GroupPlan,
    spec_path: &Path,
    events: &std::sync::mpsc::Receiver<Event>,
    status_period: Duration,
) -> Result<()> {
    let node = options.node;
    let args = plan.replica_args(node, spec_path, options.rejoin, &options.extra);
    let mut replica = ReplicaProcess::spawn(&options.kv_bin, &args, &[], &format!("[{node}]"))?;
    let me = &plan.nodes[node];
    println!(
        "usec-cluster: node {node} of {} ({} replicas of {}, run {}): device {}, control {}, pid {}",
        plan.cluster,
        plan.nodes.len(),
        plan.app.name(),
        plan.run,
        me.device,
        me.control,
        replica.pid()
    );
    for (id, other) in plan.nodes.iter().enumerate() {
        println!("usec-cluster: replica {id} serves RESP on {}", other.resp);
    }
    let resp: Vec<_> = plan.nodes.iter().map(|node| node.resp).collect();
    let monitor = Monitor::spawn(&resp, Duration::from_millis(200));
    // Other hosts' processes are theirs: their answers say how they are.
    let mut processes = vec![Process::Running; plan.nodes.len()];
    processes[node] = Process::Starting;
    let (started, mut rates) = (Instant::now(), Rates::default());
    let mut next_status = started + status_period;
    loop {
        match events.recv_timeout(next_status.saturating_duration_since(Instant::now())) {
            Ok(Event::Signal(signal)) => {
                println!("usec-cluster: {signal}: stopping");
                let status = replica.kill_and_reap()?;
                println!("usec-cluster: replica {node} (pid {}) killed: {}", replica.pid(), describe(status));
                return Ok(());
            }
            Ok(_) | Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        if let Some(status) = replica.try_exit()? {
            bail!("replica {node} (pid {}) exited: {}", replica.pid(), describe(status));
        }
        if replica.is_ready() {
            processes[node] = Process::Running;
        }
        let now = Instant::now();
        if now >= next_status {
            println!("{}", status::line(now - started, &monitor.table(), &processes, now, &mut rates));
            next_status = (next_status + status_period).max(now);
        }
    }
}
