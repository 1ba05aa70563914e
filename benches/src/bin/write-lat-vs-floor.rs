//! `write-lat-vs-floor`: RDMA WRITE ping-pong latency on the soft provider against the
//! physical floor, a ping-pong through bare shared memory, both between two processes on
//! two cores. Prints both medians and, last, `ratio <write median / floor median>`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;
use serde::Serialize;
use usec_benches::ping_pong::rdma_write::{self, WriteOptions};
use usec_benches::ping_pong::{run_interleaved, shared_memory, BlockPlan, PingPong};
use usec_benches::pinning::{choose_cores, pin_current_thread, usable_cores, CorePair};
use usec_benches::report::Report;
use usec_benches::run_info::RunInfo;

/// Ping-pong latency: soft-provider RDMA WRITE (as ib_write_lat) against bare shared memory.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Round trips measured in each scenario.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: u64,
    /// Round trips run first and discarded.
    #[arg(long, default_value_t = 10_000)]
    warmup: u64,
    /// Blocks each scenario's iterations are split into; the scenarios alternate block by
    /// block, so drifts of the machine weigh on both alike.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    blocks: u64,
    /// Round trips discarded at the start of every block after the first.
    #[arg(long, default_value_t = 1_000)]
    block_warmup: u64,
    /// Message size in bytes (a multiple of 8).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Post WRITEs from registered memory instead of inline.
    #[arg(long)]
    no_inline: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Cores of the measuring process and of its peer.
    #[arg(long, default_value_t = CorePair::default())]
    cores: CorePair,
    /// Device for the WRITE scenario (default: a fresh soft fabric, `soft:usec-benches-<pid>`).
    #[arg(long)]
    device: Option<String>,
}

/// The parameters as the report shows them.
#[derive(Debug, Serialize)]
struct Parameters {
    size: usize,
    plan: BlockPlan,
    write: WriteOptions,
    signaling: &'static str,
}

impl std::fmt::Display for Parameters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plan = &self.plan;
        write!(
            f,
            "{} B messages; {} measured round trips per scenario in {} alternating blocks, after {} \
             warm-up (then {} before each block); device {}; {}",
            self.size,
            plan.iterations,
            plan.blocks().len(),
            plan.warmup,
            plan.block_warmup,
            self.write.device,
            self.signaling
        )
    }
}

fn main() -> Result<()> {
    if let Some(role) = usec_benches::peer::role() {
        return match role.as_str() {
            shared_memory::PEER_ROLE => shared_memory::serve_peer(),
            rdma_write::PEER_ROLE => rdma_write::serve_peer(),
            other => bail!("unknown peer role {other:?}"),
        };
    }
    let options = Options::parse();
    usec_benches::message::check_size(options.size)?;
    let usable = usable_cores();
    let cores = choose_cores(options.cores, &usable)?;
    let run = RunInfo::collect(usable.len());
    let config = PingPong {
        size: options.size,
        initiator: pin_current_thread(cores.map(|pair| pair.initiator)),
        peer_core: cores.map(|pair| pair.peer),
    };
    let plan = BlockPlan {
        warmup: options.warmup,
        block_warmup: options.block_warmup,
        iterations: options.iterations,
        blocks: options.blocks,
    };
    let write = WriteOptions {
        device: usec_benches::default_soft_device(options.device),
        inline: !options.no_inline,
    };
    rdma_write::preflight(&write, config.size)?;
    eprintln!("starting (a) bare shared memory and (b) RDMA WRITE on {} ...", write.device);
    let mut floor = shared_memory::Session::start(&config)?;
    let mut candidate = rdma_write::Session::start(&config, &write)?;
    run_interleaved(&plan, &mut [&mut floor, &mut candidate])?;
    let (floor, candidate) = (floor.finish()?, candidate.finish()?);
    let parameters = Parameters {
        size: config.size,
        plan,
        write,
        signaling: "every WRITE signaled, completion polled before the next post",
    };
    let report = Report::new(
        "write-lat-vs-floor",
        "two processes ping-pong a message; RTT/2 per round trip",
        run,
        parameters,
        floor,
        candidate,
    )?;
    if let Some(path) = &options.json {
        report.write_json(path)?;
    }
    report.print(&mut std::io::stdout().lock())
}
