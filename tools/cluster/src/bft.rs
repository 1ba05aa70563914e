//! `usec-cluster start --engine bft`: an application on uBFT on this host — the
//! key-value store (`--app kv`) or the order book (`--app orderbook`): three `usec-bft-kv`
//! replicas (the replica binary hosts either app), three `usec-bft-memory` memory nodes and
//! a `usec-bft-gateway` (where Redis clients connect), on a soft fabric of their own, until
//! Ctrl-C or `quit`.
//!
//! Ports: the gateway on `--port`, replica `i`'s client port (for gateways) on
//! `--port + 1 + i`, node `n`'s control port on `--port + 101 + n` (replicas are nodes
//! 0–2, memory nodes 3–5); `--port 0` takes free ones. The console takes `kill N`,
//! `pause N`, `resume N` for any node id, `status` and `quit`. The launcher does not follow
//! who leads (the replicas print `view v` as they enter views; view `v`'s leader is replica
//! `v mod 3`), and `restart` is not offered: a paused replica (`pause N`, `resume N`) is
//! taken back (its streams restart from recaps, a checkpoint's state is sent), but a fresh
//! process would start its own CTBcast stream again at index 0, which the others refuse,
//! and would have forgotten what it promised. Arguments after `--` go to every replica.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::Signal;

use crate::console::{self, Command, Target};
use crate::events::{self, Event};
use crate::plan::{App, LocalPorts};
use crate::process::{describe, ReplicaProcess};

/// Replicas (nodes 0–2) and memory nodes (3–5).
const REPLICAS: usize = 3;
const MEMORY_NODES: usize = 3;
/// Messages each CTBcast stream keeps: the same for replicas and memory nodes.
const TAIL: &str = "64";
/// How long the processes may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// What to start.
#[derive(Debug)]
pub struct BftOptions {
    /// What the replicas run and the gateway serves.
    pub app: App,
    /// The gateway's port (0: free ports for everything).
    pub port_base: u16,
    /// Where `usec-bft-kv`, `usec-bft-gateway` and `usec-bft-memory` are.
    pub bin_dir: PathBuf,
    /// More arguments for every replica.
    pub extra: Vec<String>,
}

/// One of the group's processes, by node id (the gateway is the last).
struct Node {
    name: String,
    process: Option<ReplicaProcess>,
    state: &'static str,
}

/// Runs the group until a stopping signal or `quit`.
pub fn run(options: &BftOptions, status_period: Duration) -> Result<()> {
    let events = events::listen(true);
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let run = format!("usec-cluster-bft-{}-{}", std::process::id(), since_epoch.as_millis());
    let ports = LocalPorts::from_base(options.port_base, REPLICAS + MEMORY_NODES)?;
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let spec = dir.join("cluster");
    let mut text = format!("cluster = bft-kv\nrun = {run}\n");
    for (id, port) in ports.control.iter().enumerate() {
        text.push_str(&format!("node {id} 127.0.0.1:{port}\n"));
    }
    std::fs::write(&spec, text).with_context(|| format!("writing {}", spec.display()))?;
    let soft_base =
        std::env::var_os("USEC_SOFT_DIR").map_or_else(|| PathBuf::from("/dev/shm/usec-soft"), PathBuf::from);
    let environment = [("USEC_SOFT_DIR".to_string(), OsString::from(&soft_base))];
    let device = format!("soft:{run}");
    let spec_text = spec.display().to_string();
    let common = ["--device", device.as_str(), "--spec", spec_text.as_str(), "--ignore-stdin"];
    let mut nodes = Vec::new();
    let start = |program: &str, args: Vec<String>, name: String| -> Result<Node> {
        let args: Vec<OsString> =
            common.iter().map(OsString::from).chain(args.into_iter().map(OsString::from)).collect();
        let process =
            ReplicaProcess::spawn(&options.bin_dir.join(program), &args, &environment, &format!("[{name}]"))?;
        Ok(Node { name, process: Some(process), state: "starting" })
    };
    for id in 0..REPLICAS {
        let mut args = vec!["--id".into(), id.to_string(), "--memory-nodes".into(), "3,4,5".into()];
        args.extend(["--tail".into(), TAIL.into(), "--client-listen".into()]);
        args.push(format!("127.0.0.1:{}", ports.resp[id]));
        args.extend(app_args(options.app));
        args.extend(options.extra.iter().cloned());
        nodes.push(start("usec-bft-kv", args, format!("r{id}"))?);
    }
    for id in REPLICAS..REPLICAS + MEMORY_NODES {
        let args = vec![
            "--id".into(),
            id.to_string(),
            "--writers".into(),
            "0,1,2".into(),
            "--tail".into(),
            TAIL.into(),
            "--rings".into(),
        ];
        nodes.push(start("usec-bft-memory", args, format!("m{id}"))?);
    }
    let outcome = serve(options, &ports, &mut nodes, &events, status_period);
    for node in &mut nodes {
        if let Some(mut process) = node.process.take() {
            process.kill_and_reap()?;
        }
    }
    remove_dir(&soft_base.join(&run))?;
    remove_dir(&dir)?;
    println!("usec-cluster: stopped: every process killed and reaped; fabric and description removed");
    outcome
}

fn serve(
    options: &BftOptions,
    ports: &LocalPorts,
    nodes: &mut Vec<Node>,
    events: &std::sync::mpsc::Receiver<Event>,
    status_period: Duration,
) -> Result<()> {
    let started = Instant::now();
    let mut gateway_started = false;
    let mut announced = false;
    let mut next_status = started + status_period;
    loop {
        match events.recv_timeout(Duration::from_millis(50)) {
            Ok(Event::Signal(signal)) => {
                println!("usec-cluster: {signal}: stopping");
                return Ok(());
            }
            Ok(Event::Line(line)) => match console::parse(&line) {
                Ok(Some(Command::Quit)) => {
                    println!("usec-cluster: quit: stopping");
                    return Ok(());
                }
                Ok(Some(command)) => match execute(nodes, command) {
                    Ok(said) => println!("usec-cluster: {said}"),
                    Err(error) => println!("usec-cluster: {error:#}"),
                },
                Ok(None) => {}
                Err(error) => println!("usec-cluster: {error}"),
            },
            Ok(Event::StdinClosed) | Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        for node in nodes.iter_mut() {
            let Some(process) = node.process.as_mut() else { continue };
            if let Some(status) = process.try_exit()? {
                println!("usec-cluster: {} exited ({})", node.name, describe(status));
                node.process = None;
                node.state = "exited";
                if !gateway_started {
                    bail!("{} exited before the group was up", node.name);
                }
            } else if node.state == "starting" && process.is_ready() {
                node.state = "up";
            }
        }
        if !gateway_started && nodes.iter().all(|node| node.state == "up") {
            let addrs: Vec<String> =
                ports.resp[..REPLICAS].iter().map(|port| format!("127.0.0.1:{port}")).collect();
            let args: Vec<OsString> = [
                "--port".to_string(),
                ports.front_door.to_string(),
                "--replica-addrs".into(),
                addrs.join(","),
            ]
            .into_iter()
            .chain(app_args(options.app))
            .map(OsString::from)
            .collect();
            let gateway =
                ReplicaProcess::spawn(&options.bin_dir.join("usec-bft-gateway"), &args, &[], "[gateway]")?;
            nodes.push(Node { name: "gateway".into(), process: Some(gateway), state: "starting" });
            gateway_started = true;
        }
        if !announced && gateway_started && nodes.last().is_some_and(|gateway| gateway.state == "up") {
            announced = true;
            let port = ports.front_door;
            let what = match options.app {
                App::Kv => "KV",
                App::Orderbook => "order book",
            };
            println!(
                "usec-cluster: the BFT {what} is up: Redis clients connect to the gateway, 127.0.0.1:{port}"
            );
            println!("usec-cluster: try `redis-cli -p {port}`");
            println!("usec-cluster: {HELP}");
        }
        if !gateway_started && started.elapsed() > START_TIMEOUT {
            bail!("the group did not start within {} s", START_TIMEOUT.as_secs());
        }
        if Instant::now() >= next_status {
            let states: Vec<String> =
                nodes.iter().map(|node| format!("{}:{}", node.name, node.state)).collect();
            println!("usec-cluster: {} (redis-cli -p {})", states.join(" "), ports.front_door);
            next_status = (next_status + status_period).max(Instant::now());
        }
    }
}

/// The replicas' and the gateway's `--app`: none for the KV, their default (as the Mu
/// launcher does, so that a `--kv-bin` build without `--app` still runs the KV).
fn app_args(app: App) -> Vec<String> {
    match app {
        App::Kv => Vec::new(),
        other => vec!["--app".into(), other.name().into()],
    }
}

/// The console's help with `--engine bft`: no `restart`, no `leader` (see the module docs).
const HELP: &str = "commands: kill N | pause N | resume N (N: a node id, replicas 0-2, memory nodes 3-5), \
status, help, quit";

fn execute(nodes: &mut [Node], command: Command) -> Result<String> {
    let node = |target: Target| -> Result<usize> {
        match target {
            Target::Replica(n) if n < REPLICAS + MEMORY_NODES => Ok(n),
            Target::Replica(n) => bail!("no node {n}: replicas are 0-2, memory nodes 3-5"),
            Target::Leader => {
                bail!("the launcher does not follow the BFT leader: view v's leader is replica v mod 3")
            }
        }
    };
    let (n, signal, state) = match command {
        Command::Kill(target) => (node(target)?, Signal::SIGKILL, "killed"),
        Command::Pause(target) => (node(target)?, Signal::SIGSTOP, "paused"),
        Command::Resume(target) => (node(target)?, Signal::SIGCONT, "up"),
        Command::Restart(_) => {
            bail!(
                "restart is not offered with --engine bft: a fresh BFT replica process is not taken \
                 back (its CTBcast stream would restart at index 0); pause and resume are"
            )
        }
        Command::Status => {
            let states: Vec<String> =
                nodes.iter().map(|node| format!("{}:{}", node.name, node.state)).collect();
            return Ok(states.join(" "));
        }
        Command::Help => return Ok(HELP.to_string()),
        Command::Quit => unreachable!("the loop stops on quit"),
    };
    let node = &mut nodes[n];
    let Some(process) = node.process.as_mut() else { bail!("{} is not running", node.name) };
    if signal == Signal::SIGKILL {
        process.kill_and_reap()?;
        node.process = None;
    } else {
        process.signal(signal)?;
    }
    node.state = state;
    Ok(format!("{} {state}", node.name))
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}
