//! `revoke-grant`: how long it takes to take one peer's remote write away and give it
//! back, two ways, on a two-node `usec-qp-pool` cluster (this process and a peer process,
//! bootstrapped over loopback TCP):
//!
//! - (a) baseline, QP access flags: `Cluster::revoke_write` + `Cluster::grant_write` on the
//!   connected QP (`QueuePair::set_access` twice; `ibv_modify_qp` on ibverbs);
//! - (b) region re-registration: `Cluster::set_region_access` twice (`MemoryRegion::rereg_access`;
//!   `ibv_rereg_mr`), which hits every peer at once, and on ibverbs may change the rkey,
//!   which is then sent to the peer: part of the cost.
//!
//! The peer holds its connection and serves its control connection (sleeping between
//! polls); it does not write meanwhile. Prints both distributions, both medians, and last
//! `ratio <(b) median / (a) median>`.
#![forbid(unsafe_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use serde::{Deserialize, Serialize};
use usec_benches::latency::{LatencySummary, Recorder};
use usec_benches::peer::{channel_to_initiator, Peer};
use usec_benches::pinning::{choose_cores, pin_current_thread, usable_cores, CorePair, Pinning};
use usec_benches::report::provider_label;
use usec_benches::run_info::RunInfo;
use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId, RoleId, RoleSpec, TcpNetwork};
use usec_regions::Region;
use usec_verbs::{AccessFlags, Context};

const PEER_ROLE: &str = "revoke-grant";
const ROLE: &str = "replication";
const REGION: &str = "log";
const REGION_BYTES: usize = 1 << 20;

/// Revoke + grant of one peer's remote write: QP access flags against MR re-registration.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Revoke + grant pairs measured per scenario.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: u64,
    /// Pairs run first and discarded.
    #[arg(long, default_value_t = 1_000)]
    warmup: u64,
    /// Blocks each scenario is split into; the scenarios alternate block by block.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    blocks: u64,
    /// Device (default: a fresh soft fabric, `soft:usec-benches-<pid>`).
    #[arg(long)]
    device: Option<String>,
    /// Cores of this process and of the peer process.
    #[arg(long, default_value_t = CorePair::default())]
    cores: CorePair,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The peer's first message: where it listens.
#[derive(Debug, Serialize, Deserialize)]
struct PeerAddress {
    addr: SocketAddr,
}

/// What the peer needs to join.
#[derive(Debug, Serialize, Deserialize)]
struct Start {
    spec: String,
    device: String,
    core: Option<usize>,
}

/// One scenario's figures.
#[derive(Debug, Serialize)]
struct Scenario {
    name: &'static str,
    method: &'static str,
    latency: LatencySummary,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    provider: String,
    device: String,
    run: RunInfo,
    initiator: Pinning,
    peer_core: Option<usize>,
    iterations: u64,
    warmup: u64,
    blocks: u64,
    baseline: Scenario,
    candidate: Scenario,
    ratio: f64,
}

fn main() -> Result<()> {
    if let Some(role) = usec_benches::peer::role() {
        return match role.as_str() {
            PEER_ROLE => serve_peer(),
            other => bail!("unknown peer role {other:?}"),
        };
    }
    let options = Options::parse();
    let usable = usable_cores();
    let cores = choose_cores(options.cores, &usable)?;
    let mut run = RunInfo::collect(usable.len());
    run.timer = "std::time::Instant around each revoke + grant pair".to_string();
    let initiator = pin_current_thread(cores.map(|pair| pair.initiator));
    let device = usec_benches::default_soft_device(options.device.clone());
    let context = Context::open(&device).with_context(|| format!("opening {device}"))?;
    if !context.provider().spans_processes() {
        bail!("{device}: the {} lives in one process; this benchmark needs two", context.provider().label());
    }
    eprintln!("starting the peer and bootstrapping a 2-node cluster on {device} ...");
    let mut peer = Peer::spawn(PEER_ROLE)?;
    let (mut cluster, role) = bootstrap(&mut peer, &context, &device, cores.map(|pair| pair.peer))?;
    let other = NodeId::new(1)?;
    let (mut flags, mut rereg) = (Recorder::new(), Recorder::new());
    let per_block = options.iterations.div_ceil(options.blocks);
    let mut left = options.iterations;
    let mut first = true;
    while left > 0 {
        let count = per_block.min(left);
        let warmup = if first { options.warmup } else { 0 };
        measure(&mut flags, warmup, count, || {
            cluster.revoke_write(other, role)?;
            cluster.grant_write(other, role)
        })?;
        measure(&mut rereg, warmup, count, || {
            cluster.set_region_access(REGION, AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_READ)?;
            cluster.set_region_access(REGION, AccessFlags::all_remote()).map(drop)
        })?;
        cluster.poll_control();
        left -= count;
        first = false;
    }
    drop(cluster);
    peer.finish()?;
    let (baseline, candidate) = (flags.summary(), rereg.summary());
    let report = Report {
        benchmark: "revoke-grant",
        provider: provider_label(&context),
        device,
        run,
        initiator,
        peer_core: cores.map(|pair| pair.peer),
        iterations: options.iterations,
        warmup: options.warmup,
        blocks: options.blocks,
        baseline: Scenario {
            name: "QP access flags",
            method: "revoke_write + grant_write on the connected QP (set_access twice)",
            latency: baseline,
        },
        candidate: Scenario {
            name: "region re-registration",
            method: "set_region_access read-only, then all rights (rereg_access twice)",
            latency: candidate,
        },
        ratio: candidate.p50_ns as f64 / baseline.p50_ns.max(1) as f64,
    };
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print(&report);
    Ok(())
}

/// Starts node 0 here and node 1 in the peer; returns the cluster and the role's id.
fn bootstrap(
    peer: &mut Peer,
    context: &Context,
    device: &str,
    peer_core: Option<usize>,
) -> Result<(Cluster, RoleId)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    let PeerAddress { addr } = peer.receive()?;
    let nodes = [(NodeId::new(0)?, listener.local_addr()?), (NodeId::new(1)?, addr)];
    let spec = ClusterSpec::new("revoke-grant", &ClusterSpec::fresh_run(), nodes)?;
    peer.send(&Start { spec: spec.to_string(), device: device.to_string(), core: peer_core })?;
    let cluster = Cluster::bootstrap_with(
        context,
        node_config(spec, 0)?,
        Box::new(TcpNetwork::from_listener(listener)?),
    )?;
    let role = cluster.role(ROLE)?;
    Ok((cluster, role))
}

fn node_config(spec: ClusterSpec, me: u16) -> Result<NodeConfig> {
    let region = Arc::new(Region::new(REGION_BYTES).context("creating the region")?);
    Ok(NodeConfig::new(spec, NodeId::new(me)?)
        .role(RoleSpec::new(ROLE, AccessFlags::REMOTE_WRITE | AccessFlags::REMOTE_READ))
        .region(REGION, &region, AccessFlags::all_remote())
        .deadline(Duration::from_secs(60)))
}

/// Runs `warmup` unrecorded, then `count` timed calls of `revoke_and_grant`.
fn measure(
    recorder: &mut Recorder,
    warmup: u64,
    count: u64,
    mut revoke_and_grant: impl FnMut() -> usec_qp_pool::Result<()>,
) -> Result<()> {
    for _ in 0..warmup {
        revoke_and_grant()?;
    }
    for _ in 0..count {
        let start = Instant::now();
        revoke_and_grant()?;
        recorder.record_ns(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    Ok(())
}

/// The peer: joins as node 1, then serves its control connection until the initiator
/// closes the channel.
fn serve_peer() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    let mut channel = channel_to_initiator();
    channel.send(&PeerAddress { addr: listener.local_addr()? })?;
    let Some(start) = channel.receive::<Start>()? else { return Ok(()) };
    pin_current_thread(start.core);
    let spec = ClusterSpec::parse(&start.spec)?;
    let context = Context::open(&start.device).with_context(|| format!("opening {}", start.device))?;
    let network = TcpNetwork::from_listener(listener)?;
    let mut cluster = Cluster::bootstrap_with(&context, node_config(spec, 1)?, Box::new(network))?;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            // The initiator closes our stdin when it is done.
            let _ = channel.receive::<Start>();
            stop.store(true, Ordering::Release);
        })
    };
    while !stop.load(Ordering::Acquire) {
        while cluster.poll_control().is_some() {}
        std::thread::sleep(Duration::from_millis(1));
    }
    watcher.join().map_err(|_| anyhow::anyhow!("the watcher thread panicked"))?;
    Ok(())
}

fn print(report: &Report) {
    let run = &report.run;
    println!(
        "{}: revoke + grant of one peer's remote write, QP access flags vs region re-registration",
        report.benchmark
    );
    run.warn_if_debug();
    let online = run.cores_online.map_or_else(|| "unknown".to_string(), |cores| cores.to_string());
    println!(
        "provider: {}; build {}, commit {}, cores: {online} online, {} usable; this process {}, peer core {}",
        report.provider,
        run.build,
        run.commit,
        run.cores_usable,
        report.initiator,
        report.peer_core.map_or_else(|| "unpinned".to_string(), |core| core.to_string())
    );
    println!(
        "{} measured pairs per scenario in {} alternating blocks, after {} warm-up; timer {} (~{} ns per read)",
        report.iterations, report.blocks, report.warmup, run.timer, run.timer_overhead_ns
    );
    for (tag, scenario) in [("(a) baseline", &report.baseline), ("(b)", &report.candidate)] {
        println!("{tag} {}: {}", scenario.name, scenario.method);
        println!("    {} pairs, revoke + grant: {}", scenario.latency.count, scenario.latency);
    }
    println!(
        "medians: (a) {} ns, (b) {} ns",
        report.baseline.latency.p50_ns, report.candidate.latency.p50_ns
    );
    println!("ratio {:.2}", report.ratio);
}
