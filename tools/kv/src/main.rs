//! `usec-kv`: a key-value store that Redis clients drive (`redis-cli`, `redis-benchmark`,
//! any Redis library speaking RESP2) — or, with `--app orderbook`, the order-matching
//! engine on the same front end (`BUY`, `SELL`, `CANCEL`, `REPLACE`, `BOOK`, `FILLS`,
//! `BOOK.DIGEST`; see `usec_replication::apps::orderbook::served`).
//!
//! ```text
//! usec-kv --port 6380                                   # unreplicated
//! usec-kv --port 6380 --app orderbook                   # the order book, unreplicated
//! usec-kv --port 7000 --cluster kv.cluster --node 0 \
//!         --device soft:kv --resp 127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002
//! ```
//!
//! In the second form it is one replica of a Mu group: `--cluster` is qp-pool's cluster
//! description (each node's control address; see `usec_qp_pool::spec`), `--device` the
//! RDMA device (`soft:<fabric>` on one host, `mlx5_0` or `rxe0` across hosts), `--resp`
//! every node's RESP address by node id (where clients of a follower are redirected with
//! `-MOVED 0 host:port`). Each replica starts its RESP listener once the group has
//! bootstrapped, and prints `ready <address>` on standard output.
//!
//! With `--views` (on every replica) the group runs uKharon's membership inside Mu: views
//! decided by one-sided Paxos name the leader (the lowest-id consensus member), and the
//! leader answers reads from its own state while its Active(view) lease holds (`--lease-us`),
//! through the log otherwise. INFO's `local_reads` and `log_reads` count which way they went.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use usec_lease_clock::clock::{Clock, MonotonicClock};
use usec_lease_clock::heartbeat::ReaderConfig;
use usec_lease_clock::lease::ActiveConfig;
use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId};
use usec_replication::apps::kv::{KvApp, KvMachine};
use usec_replication::apps::orderbook::{OrderBook, OrderBookApp, RespOrderBook};
use usec_replication::apps::resp::Limits;
use usec_replication::apps::server::{App, MuBackend, Served, Server, ServerConfig, Shared, Unreplicated};
use usec_replication::cft::{MuConfig, Start};
use usec_replication::driver::threads::{NodeThread, Pacing};
use usec_replication::driver::views::ViewsConfig;
use usec_replication::driver::{DetectorConfig, MuDriver};
use usec_verbs::Context;

/// Which application to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum AppKind {
    /// The key-value store (Redis's string commands).
    Kv,
    /// The order-matching engine.
    Orderbook,
}

/// Command-line options.
#[derive(Debug, Parser)]
#[command(name = "usec-kv", about = "A key-value store for Redis clients, unreplicated or on Mu")]
struct Options {
    /// The application to serve; every replica of a group must serve the same.
    #[arg(long, value_enum, default_value_t = AppKind::Kv)]
    app: AppKind,
    /// Address to listen on for Redis clients.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Port for Redis clients (0: any free port).
    #[arg(long, default_value_t = 6380)]
    port: u16,
    /// The cluster description (replica mode).
    #[arg(long, requires_all = ["node", "device", "resp"])]
    cluster: Option<PathBuf>,
    /// This replica's node id.
    #[arg(long)]
    node: Option<u16>,
    /// The RDMA device: `soft:<fabric>`, or a libibverbs device name.
    #[arg(long)]
    device: Option<String>,
    /// Every node's RESP address, by node id, comma-separated.
    #[arg(long, value_delimiter = ',')]
    resp: Vec<SocketAddr>,
    /// Start as a replacement of a replica that lost its state (rejoin, not counting in
    /// quorums until brought up to date).
    #[arg(long)]
    rejoin: bool,
    /// Log slots.
    #[arg(long, default_value_t = 1024)]
    log_slots: u64,
    /// Bytes per log slot, in KiB: a command (key, value and a few bytes) must fit one.
    #[arg(long, default_value_t = 16)]
    slot_kib: usize,
    /// Largest snapshot of the whole store, in MiB.
    #[arg(long, default_value_t = 64)]
    snapshot_mib: usize,
    /// How often a replica reads each peer's heartbeat, in microseconds; a peer is
    /// suspected after four reads in a row see no progress. Mu's own figure is 30 µs, for
    /// replicas on dedicated cores; the default tolerates replicas sharing a few cores with
    /// other processes (a descheduled leader is not taken for a dead one). A replica whose
    /// process exits is detected at once either way.
    #[arg(long, default_value_t = 10_000)]
    heartbeat_us: u64,
    /// Membership views (uKharon) decide who leads: the lowest-id consensus member of an
    /// active view, whose Active(view) lease also lets it answer reads (GET, MGET, EXISTS, …)
    /// from its own state without the log; when the lease has run out they go through the
    /// log. Every replica of a group must say the same.
    #[arg(long)]
    views: bool,
    /// The Active(view) lease Δ, in microseconds (with --views): a deposed leader may
    /// answer reads for this long (ρ-adjusted) after its last confirmation, and a new view
    /// waits as long before it starts.
    #[arg(long, default_value_t = 20)]
    lease_us: u64,
    /// Seconds to wait for the other replicas at start.
    #[arg(long, default_value_t = 60)]
    bootstrap_timeout: u64,
}

fn main() -> Result<()> {
    let options = Options::parse();
    let address = SocketAddr::new(options.bind, options.port);
    match (options.app, &options.cluster) {
        (AppKind::Kv, None) => unreplicated(address, KvApp, KvMachine::new()),
        (AppKind::Kv, Some(path)) => replica(&options, path, address, KvApp, KvMachine::new()),
        (AppKind::Orderbook, None) => {
            unreplicated(address, OrderBookApp, RespOrderBook::new(OrderBook::new()))
        }
        (AppKind::Orderbook, Some(path)) => {
            replica(&options, path, address, OrderBookApp, RespOrderBook::new(OrderBook::new()))
        }
    }
}

fn unreplicated<A: App, S: Served>(address: SocketAddr, app: A, machine: S) -> Result<()> {
    let config = ServerConfig::default();
    let mut server = Server::bind(address, app, Unreplicated::new(machine), config)
        .with_context(|| format!("listening on {address}"))?;
    println!("ready {}", server.local_addr());
    server.run().context("serving")
}

fn replica<A: App, S: Served + Send + 'static>(
    options: &Options,
    path: &PathBuf,
    address: SocketAddr,
    app: A,
    machine: S,
) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let spec = ClusterSpec::parse(&text).with_context(|| format!("parsing {}", path.display()))?;
    let me = NodeId::new(options.node.expect("clap requires it"))?;
    if !spec.nodes.contains_key(&me) {
        bail!("node {me} is not in {}", path.display());
    }
    let slot_bytes = options.slot_kib * 1024 + 256;
    let config = MuConfig {
        capacity: options.log_slots,
        slot_bytes,
        snapshot_bytes: options.snapshot_mib << 20,
        start: if options.rejoin { Start::Rejoin } else { Start::Initial },
        ..MuConfig::default()
    };
    config.check()?;
    let mut addresses = Vec::new();
    for id in spec.nodes.keys() {
        let index = usize::from(id.get());
        let resp = *options.resp.get(index).with_context(|| format!("no RESP address for node {id}"))?;
        addresses.resize(addresses.len().max(index + 1), None);
        addresses[index] = Some(resp);
    }
    let spec_nodes: Vec<NodeId> = spec.nodes.keys().copied().collect();
    let device = options.device.as_deref().expect("clap requires it");
    let context = Context::open(device).with_context(|| format!("opening {device}"))?;
    // A replacement joins a group that runs already: it dials every peer, lower ids too.
    let node = NodeConfig::new(spec, me)
        .deadline(Duration::from_secs(options.bootstrap_timeout))
        .rejoin(options.rejoin);
    let views = options.views.then(|| views_config(&spec_nodes, options.lease_us)).transpose()?;
    // The first view names every node's first process by the incarnation they all know
    // in advance; a replacement keeps the default (the realtime clock), a higher one.
    let node = match views.is_some() && !options.rejoin {
        true => node.incarnation(ViewsConfig::FIRST_INCARNATION),
        false => node,
    };
    let node = match &views {
        Some(views) => MuDriver::<Shared<S>>::configure_with_views(node, &config, views)?,
        None => MuDriver::<Shared<S>>::configure(node, &config)?,
    };
    let cluster = Cluster::bootstrap(&context, node).context("bootstrapping the group")?;
    let clock = MonotonicClock::new();
    let machine = Shared::new(machine);
    let period_ns = options.heartbeat_us * 1_000;
    let detectors = DetectorConfig {
        reader: ReaderConfig { period_ns, timeout_ns: period_ns },
        ..DetectorConfig::default()
    };
    let mut driver = MuDriver::new(cluster, config.clone(), detectors, machine.clone(), clock.now_ns())?;
    if let Some(views) = &views {
        driver.attach_views(views, clock.now_ns())?;
    }
    // A client id unique in the group's life: the node, and when this process started.
    let started_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let client = driver.client((u64::from(me.get()) << 48) | (started_ms & ((1 << 48) - 1)));
    let status = driver.status();
    let _replica = NodeThread::spawn(driver, clock, Pacing::Cooperative { spins: 200 });
    let mut backend = MuBackend::new(client, status, machine, addresses, config.max_command_bytes());
    if views.is_some() {
        // The replica's thread turns with a copy of this clock: the same origin.
        backend = backend.with_local_reads(clock);
    }
    let server_config = ServerConfig {
        // Below the replica's intake queue, so it never refuses a command for room.
        max_in_flight: config.queue_limit / 2,
        // A request that cannot fit an entry is skipped as it arrives, not buffered.
        limits: Limits { max_request_bytes: config.max_command_bytes() + 4096, ..Limits::default() },
        ..ServerConfig::default()
    };
    let mut server = Server::bind(address, app, backend, server_config)
        .with_context(|| format!("listening on {address}"))?;
    println!("ready {}", server.local_addr());
    server.run().context("serving")
}

/// The membership of a group of `nodes`, every one an acceptor and a consensus member,
/// with a lease of `lease_us`: renewed with half of it left, retried after a quarter.
fn views_config(nodes: &[NodeId], lease_us: u64) -> Result<ViewsConfig> {
    if lease_us == 0 {
        bail!("--lease-us must be positive");
    }
    let mut views = ViewsConfig::for_group(nodes)?;
    let lease_ns = lease_us * 1_000;
    views.lease = ActiveConfig {
        lease_ns,
        renew_before_ns: lease_ns / 2,
        retry_after_ns: lease_ns / 4,
        ..ActiveConfig::default()
    };
    Ok(views)
}
