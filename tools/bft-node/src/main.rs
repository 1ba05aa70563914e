//! `usec-bft-node`: one CTBcast participant as a process.
//!
//! It bootstraps into a cluster of participants and memory nodes (`usec-bft-memory
//! --rings`), prints `ready rings=<bytes>`, and then turns its [`CtbNode`] in a loop that
//! spins while there is work and yields the core when idle. Commands on stdin, one a line:
//!
//! - `broadcast <text>` → `broadcast <index>`;
//! - `stats` → `stats delivered_fast=… delivered_slow=… rejected=… equivocations=…
//!   abandoned=… unavailable=…` (all receivers together);
//! - `quit` (or stdin closing) ends the process.
//!
//! What its receivers conclude comes as lines: `deliver <broadcaster> <index> <fast|slow>
//! <message as hex>`, `equivocation <broadcaster> <index> valid=<bool>`, `abandon
//! <broadcaster> <index> <reason>`. A fatal error is one line on stderr,
//! `usec-bft-node: error: ...`, and a nonzero exit.
//!
//! Keys are derived from node ids (`--key-seed` mixes in a secret): a test fixture, not a
//! key store.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::mpsc::{self, TryRecvError};
use std::time::Instant;

use anyhow::{anyhow, Context as _, Result};
use clap::{Parser, ValueEnum};
use ed25519_dalek::SigningKey;
use usec_qp_pool::{node_process, Cluster, NodeConfig, NodeId, TcpNetwork};
use usec_replication::bft::ctbcast::{CtbConfig, Event, Keyring};
use usec_replication::bft::node::{Behaviour, CtbNode, CtbNodeConfig};
use usec_verbs::Context;

/// A Byzantine behaviour to simulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Byzantine {
    /// A different message, signed, for each half of the receivers.
    Equivocate,
    /// Garbage in the message rings before every message.
    Garbage,
}

/// One CTBcast participant as a process.
#[derive(Debug, Parser)]
#[command(name = "usec-bft-node", version)]
struct Args {
    /// The RDMA device: `soft:<fabric>`, or an ibverbs device (`rxe0`, `mlx5_0`).
    #[arg(long)]
    device: String,
    /// This node's id in the description.
    #[arg(long)]
    id: u16,
    /// The cluster description (qp-pool's text form), or `-` to read it from stdin up to
    /// a line `end`.
    #[arg(long)]
    spec: String,
    /// Listen here (port 0: any free port) and print `addr <ip:port>` before reading the
    /// description, which must then give this node that address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The participants' node ids, comma-separated, in id order.
    #[arg(long, value_delimiter = ',', required = true)]
    participants: Vec<u16>,
    /// The memory nodes' ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    memory_nodes: Vec<u16>,
    /// Messages each stream keeps.
    #[arg(long, default_value_t = 128)]
    tail: u64,
    /// The longest message.
    #[arg(long, default_value_t = 1024)]
    max_message_bytes: usize,
    /// How long a receiver waits for every echo before it takes the slow path.
    #[arg(long, default_value_t = 1000)]
    fast_path_timeout_us: u64,
    /// Mixed into the keys derived from node ids.
    #[arg(long, default_value = "usec-bft-node")]
    key_seed: String,
    /// Simulate a Byzantine broadcaster.
    #[arg(long, value_enum)]
    byzantine: Option<Byzantine>,
    /// Idle turns before yielding the core.
    #[arg(long, default_value_t = 64)]
    spins: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("usec-bft-node: error: node {}: {error:#}", args.id);
            ExitCode::FAILURE
        }
    }
}

fn key(seed: &str, id: u16) -> SigningKey {
    let mut material = seed.as_bytes().to_vec();
    material.extend_from_slice(&id.to_le_bytes());
    SigningKey::from_bytes(&blake3::derive_key("usec-bft-node key v1", &material))
}

fn node_ids(ids: &[u16]) -> Result<Vec<NodeId>> {
    ids.iter().map(|&id| NodeId::new(id).map_err(|error| anyhow!("node id {id}: {error}"))).collect()
}

fn run(args: &Args) -> Result<()> {
    let me = NodeId::new(args.id).map_err(|error| anyhow!("--id: {error}"))?;
    let listener = node_process::listen_early(args.listen)?;
    if let Some(listener) = &listener {
        println!("addr {}", listener.local_addr()?);
    }
    let mut stdin = std::io::BufReader::new(std::io::stdin()).lines();
    let spec = node_process::read_description(&args.spec, &mut stdin)?;
    let listener = node_process::own_listener(&spec, me, listener)?;
    let participants = node_ids(&args.participants)?;
    let ctb = CtbConfig {
        tail: args.tail,
        max_message_bytes: args.max_message_bytes,
        fast_path_timeout_ns: args.fast_path_timeout_us * 1_000,
        ..CtbConfig::default()
    };
    let config = CtbNodeConfig::new(participants.clone(), node_ids(&args.memory_nodes)?, ctb);
    let keys = Keyring::new(participants.iter().map(|&p| (p, key(&args.key_seed, p.get()).verifying_key())));
    let behaviour = match args.byzantine {
        None => Behaviour::Correct,
        Some(Byzantine::Equivocate) => Behaviour::Equivocate,
        Some(Byzantine::Garbage) => Behaviour::Garbage,
    };
    let context = Context::open(&args.device).with_context(|| format!("opening {}", args.device))?;
    let (node, memory) = CtbNode::configure(NodeConfig::new(spec, me), &config)?;
    let network = TcpNetwork::from_listener(listener)?;
    let cluster = Cluster::bootstrap_with(&context, node, Box::new(network)).context("bootstrap")?;
    let mut node =
        CtbNode::new(cluster, &config, key(&args.key_seed, me.get()), keys.clone(), memory, behaviour)?;
    println!("ready rings={}", node.ring_memory_bytes());

    let (commands, inbox) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdin {
            let Ok(line) = line else { break };
            if commands.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut idle = 0u32;
    loop {
        let mut busy = node.turn(start.elapsed().as_nanos() as u64);
        while let Some((broadcaster, event)) = node.poll_event() {
            busy = true;
            report(broadcaster, &event, &keys);
        }
        match inbox.try_recv() {
            Ok(line) => {
                busy = true;
                if !command(&mut node, &line)? {
                    return Ok(());
                }
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => return Ok(()),
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
}

/// Runs one console command; false to quit.
fn command(node: &mut CtbNode, line: &str) -> Result<bool> {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    match verb.trim() {
        "broadcast" => match node.broadcast(rest.as_bytes()) {
            Ok(index) => println!("broadcast {index}"),
            Err(reject) => println!("refused {reject}"),
        },
        "stats" => {
            let others: Vec<NodeId> = node.cluster().peers().collect();
            let (mut fast, mut slow, mut rejected, mut equivocations, mut abandoned, mut unavailable) =
                (0, 0, 0, 0, 0, 0);
            for stats in others.iter().filter_map(|&peer| node.receiver_stats(peer)) {
                fast += stats.delivered_fast;
                slow += stats.delivered_slow;
                rejected += stats.rejected_total();
                equivocations += stats.equivocations;
                abandoned += stats.abandoned;
                unavailable += stats.registers_unavailable;
            }
            let rings = node.ring_stats();
            println!(
                "stats delivered_fast={fast} delivered_slow={slow} rejected={rejected} equivocations={equivocations} abandoned={abandoned} unavailable={unavailable} frames={} torn={} garbage_sent={}",
                rings.inbound.frames,
                rings.inbound.torn,
                node.stats().garbage_sent
            );
        }
        "quit" => return Ok(false),
        "" => {}
        other => println!("unknown command {other:?}"),
    }
    Ok(true)
}

fn report(broadcaster: NodeId, event: &Event, keys: &Keyring) {
    match event {
        Event::Delivered { index, message, path } => {
            let path = match path {
                usec_replication::bft::ctbcast::DeliveryPath::Fast => "fast",
                usec_replication::bft::ctbcast::DeliveryPath::Slow => "slow",
            };
            let hex: String = message.iter().map(|byte| format!("{byte:02x}")).collect();
            println!("deliver {} {index} {path} {hex}", broadcaster.get());
        }
        Event::Equivocation(proof) => {
            println!("equivocation {} {} valid={}", broadcaster.get(), proof.index, proof.verify(keys));
        }
        Event::Abandoned { index, reason } => println!("abandon {} {index} {reason:?}", broadcaster.get()),
    }
}
