//! `usec-bft-memory`: one uBFT memory node as a process.
//!
//! It registers the registers of the writers it is told of, bootstraps into the cluster
//! (QPs to every peer, each writer's in a protection domain of its own with its grants),
//! prints `ready registered=<bytes> allocated=<bytes>` on stdout, and from then on only
//! serves qp-pool's control plane, every millisecond: replicas read and write its memory
//! with one-sided RDMA, its CPU uninvolved. It runs until it is killed or its stdin closes
//! (until killed with `--ignore-stdin`).
//! A fatal error is one line on stderr, `usec-bft-memory: error: ...`, and a nonzero exit.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use clap::Parser;
use usec_qp_pool::{node_process, Cluster, NodeConfig, NodeId, TcpNetwork};
use usec_replication::bft::memory_node::{self, MemoryNode};
use usec_replication::bft::register::RegisterLayout;
use usec_replication::bft::transport::port::role_spec as ring_role;
use usec_verbs::{AccessFlags, Context};

/// One uBFT memory node as a process.
#[derive(Debug, Parser)]
#[command(name = "usec-bft-memory", version)]
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
    /// The writers (replicas' node ids), comma-separated, in writer order.
    #[arg(long, value_delimiter = ',', required = true)]
    writers: Vec<u16>,
    /// Messages CTBcast keeps: each writer owns `(writers - 1) * tail` registers.
    #[arg(long, default_value_t = 128)]
    tail: usize,
    /// Registers per writer, instead of what `--tail` gives.
    #[arg(long)]
    registers_per_writer: Option<usize>,
    /// Bytes of a register's value (CTBcast: a 32-byte hash and a 64-byte signature).
    #[arg(long, default_value_t = 96)]
    value_bytes: usize,
    /// Run until killed, whatever stdin does (a launcher that gives it no stdin).
    #[arg(long)]
    ignore_stdin: bool,
    /// The replicas run CTBcast over rings (`usec-bft-node`): add their ring role, with no
    /// rights here (every node lists the same roles).
    #[arg(long)]
    rings: bool,
}

impl Args {
    fn layout(&self) -> RegisterLayout {
        let mut layout = RegisterLayout::for_ctbcast(self.writers.len(), self.tail);
        layout.value_bytes = self.value_bytes;
        if let Some(registers) = self.registers_per_writer {
            layout.registers_per_writer = registers;
        }
        layout
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("usec-bft-memory: error: node {}: {error:#}", args.id);
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let me = NodeId::new(args.id).map_err(|error| anyhow!("--id: {error}"))?;
    let listener = node_process::listen_early(args.listen)?;
    if let Some(listener) = &listener {
        println!("addr {}", listener.local_addr()?);
    }
    // Buffered once for the description and the watch on stdin after it.
    let mut stdin = std::io::BufReader::new(std::io::stdin()).lines();
    let spec = node_process::read_description(&args.spec, &mut stdin)?;
    let listener = node_process::own_listener(&spec, me, listener)?;
    let writers = args.writers.iter().map(|&id| NodeId::new(id)).collect::<Result<Vec<_>, _>>()?;
    let layout = args.layout();
    let context = Context::open(&args.device).with_context(|| format!("opening {}", args.device))?;
    let (mut node, memory) = memory_node::configure(NodeConfig::new(spec, me), &layout, &writers)?;
    if args.rings {
        node = node.role(ring_role(AccessFlags::empty()));
    }
    let network = TcpNetwork::from_listener(listener)?;
    let cluster = Cluster::bootstrap_with(&context, node, Box::new(network)).context("bootstrap")?;
    let mut memory_node = MemoryNode::new(cluster, memory, layout);
    println!(
        "ready registered={} allocated={}",
        memory_node.registered_bytes(),
        memory_node.allocated_bytes()
    );

    // Stdin closing (the launcher gone) ends the process.
    let open = Arc::new(AtomicBool::new(true));
    let watch = Arc::clone(&open);
    std::thread::spawn(move || {
        for line in stdin {
            if line.is_err() {
                break;
            }
        }
        watch.store(false, Ordering::Release);
    });
    let start = Instant::now();
    while args.ignore_stdin || open.load(Ordering::Acquire) {
        for event in memory_node.serve(start.elapsed().as_nanos() as u64) {
            println!("event {event:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
