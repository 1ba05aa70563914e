//! `usec-bft-kv`: one replica of an application on uBFT, as a process — the key-value
//! store (`--app kv`, the default) or the order-matching engine (`--app orderbook`); the
//! name is the KV's, the binary hosts either.
//!
//! It bootstraps into a cluster of replicas and memory nodes (`usec-bft-memory --rings`
//! with the same `--tail`), runs the application's state machine on a BFT consensus replica
//! ([`ReplicaNode`]) whose CTBcast streams travel over RDMA rings and the memory nodes'
//! registers, and serves BFT clients (a `usec-bft-gateway`) over TCP at `--client-listen`.
//! It prints `addr <ip:port>` (with `--listen`), then `ready client=<ip:port>`, and one
//! line per view it enters (`view <v>`); on a line `stats` on stdin it prints `stats
//! view=… fast=… slow=… executed=… refused=… broken_streams=… stream_gaps=…
//! resynced_streams=… state_transfers=… state=…` (slots decided on each path, the last
//! slot executed, inputs refused, streams given up, gaps found in streams (fell a tail
//! behind), streams restarted from a recap, states installed from another replica (too far
//! behind for a catch-up), and
//! [`state_digest`] of the state machine's snapshot: correct replicas that executed the
//! same slots print the same), then `refusals <kind>=<count> …` and `served n=… p50=…us
//! p90=…us p99=…us` (from a request's arrival here to this replica's reply, since the last
//! `stats`); it runs until killed or its stdin closes (until killed with
//! `--ignore-stdin`). A fatal error is one line on stderr, `usec-bft-kv: error: ...`, and
//! a nonzero exit.
//!
//! `--byzantine` makes it lie in what it CTBcasts (see [`Byzantine`]): the tests' way of
//! running one Byzantine replica among correct ones.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::mpsc::{self, TryRecvError};
use std::time::Instant;

use anyhow::{anyhow, Context as _, Result};
use clap::{Parser, ValueEnum};
use usec_bft_kv::{replica_key, state_digest, AppKind, GroupArgs, Timeouts};
use usec_qp_pool::{node_process, Cluster, NodeConfig, NodeId, TcpNetwork};
use usec_replication::apps::kv::KvMachine;
use usec_replication::apps::orderbook::{OrderBook, RespOrderBook};
use usec_replication::bft::consensus::{ClientId, DecisionPath, Event, StreamMessage, STATE_CHUNK_BYTES};
use usec_replication::bft::driver::{ClientServer, ReplicaNode, ReplicaNodeConfig};
use usec_replication::bft::node::P2pConfig;
use usec_replication::StateMachine;
use usec_verbs::Context;

/// A Byzantine behaviour to simulate (through the consensus core's tamper hook: what the
/// replica CTBcasts is rewritten, what it processes itself is not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Byzantine {
    /// Its promises name an empty batch and its checkpoints a wrong digest: no fast path
    /// for anyone (every slot needs the slow path's certificates), and its checkpoints
    /// never count.
    Lie,
    /// Its prepares (as a leader) drop their requests, and its promises too.
    Drop,
}

/// One replica of an application (the key-value store or the order book) on uBFT.
#[derive(Debug, Parser)]
#[command(name = "usec-bft-kv", version)]
struct Args {
    /// The application this replica runs (every replica and gateway of a group the same).
    #[arg(long, value_enum, default_value = "kv")]
    app: AppKind,
    /// The RDMA device: `soft:<fabric>`, or an ibverbs device (`rxe0`, `mlx5_0`).
    #[arg(long)]
    device: String,
    /// This replica's node id.
    #[arg(long)]
    id: u16,
    /// The cluster description (qp-pool's text form), or `-` to read it from stdin up to
    /// a line `end`.
    #[arg(long)]
    spec: String,
    /// Listen here for the cluster (port 0: any free port) and print `addr <ip:port>`
    /// before reading the description, which must then give this node that address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The memory nodes' ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    memory_nodes: Vec<u16>,
    /// Where BFT clients (gateways) connect.
    #[arg(long, default_value = "127.0.0.1:0")]
    client_listen: SocketAddr,
    #[command(flatten)]
    group: GroupArgs,
    #[command(flatten)]
    timeouts: Timeouts,
    /// Simulate a Byzantine replica.
    #[arg(long, value_enum)]
    byzantine: Option<Byzantine>,
    /// Idle turns before yielding the core. 0 (yield at every idle turn) is right when
    /// the replicas and their clients share few cores: a request needs every replica's
    /// turn in sequence, and spinning only delays the one that has work (on a 2-core
    /// machine, 64 doubled the latency of a SET and halved the throughput).
    #[arg(long, default_value_t = 0)]
    spins: u32,
    /// Run until killed, whatever stdin does (a launcher that gives it no stdin).
    #[arg(long)]
    ignore_stdin: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("usec-bft-kv: error: node {}: {error:#}", args.id);
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    match args.app {
        AppKind::Kv => serve(args, KvMachine::new()),
        AppKind::Orderbook => serve(args, RespOrderBook::new(OrderBook::new())),
    }
}

fn serve<S: StateMachine>(args: &Args, machine: S) -> Result<()> {
    let me = NodeId::new(args.id).map_err(|error| anyhow!("--id: {error}"))?;
    let listener = node_process::listen_early(args.listen)?;
    if let Some(listener) = &listener {
        println!("addr {}", listener.local_addr()?);
    }
    let mut stdin = std::io::BufReader::new(std::io::stdin()).lines();
    let spec = node_process::read_description(&args.spec, &mut stdin)?;
    let listener = node_process::own_listener(&spec, me, listener)?;
    let consensus = args.group.consensus(&args.timeouts)?;
    let memory_nodes = args
        .memory_nodes
        .iter()
        .map(|&id| NodeId::new(id).map_err(|e| anyhow!("memory node {id}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    // A catch-up carries up to two windows of batches, a state transfer's chunk up to
    // STATE_CHUNK_BYTES of state: sized for the larger, with room for their headers.
    let catchup = 2 * consensus.window as usize * (consensus.batch * (consensus.max_operation_bytes + 128));
    let largest = catchup.max(STATE_CHUNK_BYTES);
    let p2p = P2pConfig { slots: 16, max_message_bytes: u32::try_from(largest + 4096)? };
    let config = ReplicaNodeConfig { consensus, memory_nodes, p2p, register_in_flight: 256 };
    let context = Context::open(&args.device).with_context(|| format!("opening {}", args.device))?;
    let (node, memory) = ReplicaNode::<S>::configure(NodeConfig::new(spec, me), &config)?;
    let network = TcpNetwork::from_listener(listener)?;
    let cluster = Cluster::bootstrap_with(&context, node, Box::new(network)).context("bootstrap")?;
    let key = replica_key(&args.group.key_seed, me);
    let (keys, clients) = (args.group.replica_keys()?, args.group.client_keys());
    let mut node = ReplicaNode::new(cluster, &config, key, keys, clients, memory, machine)?;
    match args.byzantine {
        None => {}
        Some(Byzantine::Lie) => node.tamper_broadcasts_for_testing(Box::new(lie), false),
        Some(Byzantine::Drop) => node.tamper_broadcasts_for_testing(Box::new(drop_requests), false),
    }
    let client_listener = TcpListener::bind(args.client_listen)
        .with_context(|| format!("listening at {}", args.client_listen))?;
    let mut server = ClientServer::new(client_listener)?;
    println!("ready client={}", server.local_addr().context("the client address")?);

    // Console lines from stdin; stdin closing (the launcher gone) ends the process.
    let (lines, inbox) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdin {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut idle = 0u32;
    let (mut fast, mut slow) = (0u64, 0u64);
    // When each client's request first came in, and how long replies took since.
    let mut arrived: HashMap<ClientId, u64> = HashMap::new();
    let mut served: Vec<u64> = Vec::new();
    loop {
        let now = start.elapsed().as_nanos() as u64;
        let mut busy = node.turn(now);
        busy |= server.poll(|client, bytes| {
            // Bounded: a client's hello names any id it likes.
            if arrived.len() < 1024 || arrived.contains_key(&client) {
                arrived.entry(client).or_insert(now);
            }
            node.handle_client(now, client, bytes)
        });
        while let Some((client, bytes)) = node.poll_to_client() {
            busy = true;
            if let Some(at) = arrived.remove(&client).filter(|_| served.len() < 1 << 20) {
                served.push(now - at);
            }
            server.send(client, &bytes);
        }
        server.flush();
        while let Some(event) = node.poll_event() {
            match event {
                Event::ViewEntered { view } => println!("view {view}"),
                Event::Decided { path: DecisionPath::Fast, .. } => fast += 1,
                Event::Decided { path: DecisionPath::Slow, .. } => slow += 1,
                _ => {}
            }
        }
        match inbox.try_recv() {
            Ok(line) if line.trim() == "stats" => {
                let (view, _) = node.replica().view();
                let (executed, _) = node.replica().executed();
                let refused = node.replica().stats().rejected_total();
                let stats = node.replica().stats();
                let (broken, gaps, resynced) =
                    (stats.broken_streams, stats.stream_gaps, stats.resynced_streams);
                let transfers = stats.state_transfers;
                // A snapshot of the whole state: a console request, not the hot path.
                let state = state_digest(&node.replica().app().snapshot());
                println!(
                    "stats view={view} fast={fast} slow={slow} executed={executed} refused={refused} \
                     broken_streams={broken} stream_gaps={gaps} resynced_streams={resynced} \
                     state_transfers={transfers} state={state}"
                );
                let kinds: Vec<String> =
                    node.replica().stats().rejected.iter().map(|(kind, n)| format!("{kind}={n}")).collect();
                println!("refusals {}", kinds.join(" "));
                served.sort_unstable();
                let us = |p: usize| served.get(served.len() * p / 100).map_or(0, |ns| ns / 1000);
                println!("served n={} p50={}us p90={}us p99={}us", served.len(), us(50), us(90), us(99));
                served.clear();
            }
            Ok(_) | Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) if !args.ignore_stdin => break,
            Err(TryRecvError::Disconnected) => {}
        }
        if busy {
            idle = 0;
        } else {
            idle = idle.saturating_add(1);
            if idle > args.spins {
                std::thread::yield_now();
            }
        }
    }
    Ok(())
}

fn lie(message: &mut StreamMessage) {
    match message {
        StreamMessage::Promise { batch, .. } => batch.clear(),
        StreamMessage::Checkpoint { digest, .. } => digest[0] ^= 1,
        _ => {}
    }
}

fn drop_requests(message: &mut StreamMessage) {
    if let StreamMessage::Prepare { batch, .. } | StreamMessage::Promise { batch, .. } = message {
        batch.clear();
    }
}
