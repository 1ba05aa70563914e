//! `usec-mu-node`: one Mu replica as a process — what the multi-process crash tests start,
//! SIGKILL, SIGSTOP and restart (tools/mu-node/README.md).
//!
//! It prints, on stdout, one line per event: `addr <ip:port>` (with `--listen`), `ready`
//! once the cluster is up and the replica runs, `ack <hex>` for each command its client
//! got acknowledged, and the console's answers ([`console`]). A fatal error is one line on
//! stderr, `usec-mu-node: error: ...`, and a nonzero exit.

mod client;
mod console;
mod options;

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Parser;
use usec_lease_clock::clock::{CalibratedClock, Clock};
use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId, TcpNetwork};
use usec_replication::driver::views::ViewsConfig;
use usec_replication::driver::{MuDriver, NodeThread};
use usec_replication::History;
use usec_verbs::Context;

use crate::client::{Client, ClientPacing};
use crate::console::Console;
use crate::options::{Args, StartKind};

fn main() -> ExitCode {
    // A panic anywhere (the replica's thread included) ends the process: a replica that
    // stopped turning must not look alive to its peers.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("usec-mu-node: error: {info}");
        std::process::exit(101);
    }));
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("usec-mu-node: error: node {}: {error:#}", args.id);
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let me = NodeId::new(args.id).map_err(|error| anyhow!("--id: {error}"))?;
    let lines = stdin_lines();
    let listener = match args.listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr).with_context(|| format!("listening at {addr}"))?;
            println!("addr {}", listener.local_addr()?);
            Some(listener)
        }
        None => None,
    };
    let spec = read_spec(&args.spec, &lines)?;
    let mine = *spec.nodes.get(&me).ok_or_else(|| anyhow!("node {me} is not in the description"))?;
    let listener = match listener {
        Some(listener) if listener.local_addr()? == mine => listener,
        Some(listener) => {
            bail!("the description gives node {me} {mine}, but it listens at {}", listener.local_addr()?)
        }
        None => TcpListener::bind(mine).with_context(|| format!("listening at {mine}"))?,
    };

    let config = args.mu_config();
    config.check()?;
    let context = Context::open(&args.device).with_context(|| format!("opening {}", args.device))?;
    // A restarted node joins the cluster that runs already, as a newer incarnation (by
    // default the realtime clock: later than the process it replaces).
    let nodes: Vec<NodeId> = spec.nodes.keys().copied().collect();
    let views = args.views(&nodes)?;
    let node = args.connection(NodeConfig::new(spec, me)).rejoin(args.start == StartKind::Rejoin);
    // On views, the first view names every node's first process by the incarnation they
    // all know in advance; a replacement keeps the default (later) one.
    let node = match (&views, args.start) {
        (Some(views), StartKind::Initial) => MuDriver::<History>::configure_with_views(
            node.incarnation(ViewsConfig::FIRST_INCARNATION),
            &config,
            views,
        )?,
        (Some(views), StartKind::Rejoin) => MuDriver::<History>::configure_with_views(node, &config, views)?,
        (None, _) => MuDriver::<History>::configure(node, &config)?,
    };
    let network = TcpNetwork::from_listener(listener)?;
    let cluster = Cluster::bootstrap_with(&context, node, Box::new(network)).context("bootstrap")?;
    let clock = CalibratedClock::calibrate(&args.clock())?;
    let mut driver = MuDriver::new(cluster, config, args.detectors(), History::default(), clock.now_ns())?;
    if let Some(views) = &views {
        driver.attach_views(views, clock.now_ns())?;
    }

    let client = args.client.then(|| {
        // Unique across the group's life: a restarted node is a new client.
        let nonce = rand::random::<u64>();
        let pacing = ClientPacing {
            pause: Duration::from_micros(args.client_pause_us),
            retry: Duration::from_micros(args.client_retry_us),
        };
        (driver.client(nonce), nonce, pacing)
    });
    let node = NodeThread::spawn(driver, clock, args.pacing());
    println!("ready");
    let client = client.map(|(handle, nonce, pacing)| Client::spawn(handle, me, nonce, pacing));
    Console { node, client }.serve(&lines)
}

/// Stdin's lines, read by a thread of their own (the description first, then the
/// console's commands), so that the node runs between them.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// The description from a file, or from stdin (`-`) up to a line `end`.
fn read_spec(source: &str, lines: &mpsc::Receiver<String>) -> Result<ClusterSpec> {
    let text = if source == "-" {
        let mut text = String::new();
        loop {
            let line = lines.recv().map_err(|_| anyhow!("stdin ended before the description's `end`"))?;
            if line.trim() == "end" {
                break text;
            }
            text.push_str(&line);
            text.push('\n');
        }
    } else {
        std::fs::read_to_string(source).with_context(|| format!("reading {source}"))?
    };
    ClusterSpec::parse(&text).with_context(|| format!("the description ({source})"))
}
