//! `usec-cluster`: the replicas of a replicated application (`usec-kv`) as processes, from
//! one command.
//!
//! ## On one host (soft provider)
//!
//! ```text
//! usec-cluster start --replicas 3 --app kv          # Ctrl-C stops it
//! ```
//!
//! starts three `usec-kv` replicas of one Mu group on a soft fabric of their own, prints
//! where clients connect — each replica's RESP address (followers answer writes with
//! `-MOVED` to the leader, which `redis-cli -c` follows) and the front door, one address
//! that relays every client to whichever replica leads and keeps the client's connection
//! across failovers ([`front_door`]) — and who leads, then a status line every second
//! ([`status`]: leader, each replica's role and commit and applied index, ops/s). Typed
//! on its standard input: `kill N`, `pause N`, `resume N`, `restart N` (SIGKILL, SIGSTOP,
//! SIGCONT, start again with `--rejoin` as a replacement that lost its state; `N` a node
//! id or `leader`), `status`, `quit`. Ctrl-C, SIGTERM or `quit` kill and reap every
//! replica and remove the fabric's files. Ports: the front door on `--port` (7000), replica
//! `i`'s RESP on `--port + 1 + i` and its control (qp-pool's bootstrap) on
//! `--port + 101 + i`; `--port 0` takes free ones. Arguments after `--` go to every
//! `usec-kv` (`-- --heartbeat-us 100000`). `--app orderbook` is passed on to `usec-kv`, and
//! so is `--views` (every mode takes it): membership views name the leader, which answers
//! reads from its own state while its Active(view) lease holds.
//!
//! `usec-cluster start --engine bft` runs the app on uBFT instead (`--app kv`, the
//! default, or `--app orderbook`): three `usec-bft-kv` replicas (hosting either app),
//! three `usec-bft-memory` memory nodes and a `usec-bft-gateway` on `--port` for Redis
//! clients ([`bft`]); the binaries are looked for next to this one (or next to
//! `--kv-bin`).
//!
//! ## On real devices (one process per host)
//!
//! A config file names each node's host, device and ports ([`config`] has the format);
//! the same file is on every host. On each host, start that host's node:
//!
//! ```text
//! usec-cluster node --config kv.conf --node 0 --run 2025-06-01-a     # on 192.168.1.10
//! usec-cluster node --config kv.conf --node 1 --run 2025-06-01-a     # on 192.168.1.11
//! usec-cluster node --config kv.conf --node 2 --run 2025-06-01-a     # on 192.168.1.12
//! ```
//!
//! by hand in a terminal on each, or from one machine over ssh (`-tt` gives each node a
//! terminal, so when its ssh ends — Ctrl-C here, through the trap, or a dropped
//! connection — the node gets SIGHUP and stops its replica):
//!
//! ```text
//! run=$(date +%Y%m%dT%H%M%S)
//! trap 'kill $(jobs -p) 2>/dev/null' INT TERM EXIT
//! for i in 0 1 2; do
//!   host=$(awk -v i=$i '$1 == "node" && $2 == i { for (f = 3; f <= NF; f++) if (sub("^host=", "", $f)) print $f }' kv.conf)
//!   ssh -tt "$host" usec-cluster node --config kv.conf --node $i --run $run > node-$i.log 2>&1 &
//! done
//! wait
//! ```
//!
//! Every node of one launch must be given the same run (qp-pool's namespace for the
//! launch); a relaunch takes a new one, and a node restarted into a running group takes
//! the group's run and `--rejoin`. Each `node` prints the group's status line every second
//! and stops its replica on Ctrl-C; there is no console and no front door in this mode.
//!
//! ## The demo
//!
//! `usec-cluster demo` ([`demo`]) is what `tools/demo` runs: three replicas,
//! redis-benchmark through the front door, the leader SIGKILLed mid-run, and the
//! figures.
//!
//! `usec-kv` is looked for next to this executable (the same target directory), or
//! given with `--kv-bin`.

#![forbid(unsafe_code)]

mod bft;
mod client;
mod config;
mod console;
mod demo;
mod events;
mod front_door;
mod group;
mod info;
mod monitor;
mod node;
mod plan;
mod probe;
mod process;
mod signals;
mod start;
mod status;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

use crate::plan::App;

/// Which replication protocol a local group runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Engine {
    /// Mu: `usec-kv` replicas.
    Mu,
    /// uBFT: `usec-bft-kv` replicas, `usec-bft-memory` nodes, `usec-bft-gateway`.
    Bft,
}

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "usec-cluster",
    about = "Replicas of a replicated application as processes, from one command"
)]
struct Options {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Starts a group on this host, on the soft provider, until Ctrl-C.
    Start {
        /// How many replicas.
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        /// What they serve.
        #[arg(long, value_enum, default_value = "kv")]
        app: App,
        /// Which replication: Mu (crash faults), or uBFT (Byzantine faults: three
        /// replicas of the app, three memory nodes and a RESP gateway; see the `bft`
        /// module).
        #[arg(long, value_enum, default_value = "mu")]
        engine: Engine,
        /// The front door's port; replica i's RESP port is this + 1 + i, its control port
        /// this + 101 + i. 0: free ports.
        #[arg(long, default_value_t = 7000)]
        port: u16,
        /// Do not open the front door.
        #[arg(long)]
        no_front_door: bool,
        /// Run the replicas on membership views (usec-kv's `--views`): uKharon's
        /// membership names the leader, which answers reads locally under its
        /// Active(view) lease.
        #[arg(long)]
        views: bool,
        /// The usec-kv executable (default: next to this one).
        #[arg(long)]
        kv_bin: Option<PathBuf>,
        /// More usec-kv arguments, for every replica.
        #[arg(last = true)]
        kv_args: Vec<String>,
    },
    /// Starts this host's node of a group described by a config file, until Ctrl-C.
    Node {
        /// The config file (the same on every host).
        #[arg(long)]
        config: PathBuf,
        /// This host's node id.
        #[arg(long)]
        node: usize,
        /// The run: the same on every node of one launch (overrides the file's).
        #[arg(long)]
        run: Option<String>,
        /// Start as a replacement of a replica that lost its state, into a running group.
        #[arg(long)]
        rejoin: bool,
        /// Run the replicas on membership views (usec-kv's `--views`): uKharon's
        /// membership names the leader, which answers reads locally under its
        /// Active(view) lease.
        #[arg(long)]
        views: bool,
        /// The usec-kv executable (default: next to this one).
        #[arg(long)]
        kv_bin: Option<PathBuf>,
        /// More usec-kv arguments.
        #[arg(last = true)]
        kv_args: Vec<String>,
    },
    /// Three KV replicas, redis-benchmark, the leader killed mid-run, and the figures.
    Demo {
        /// redis-benchmark's clients.
        #[arg(long, default_value_t = 50)]
        clients: u32,
        /// redis-benchmark's pipeline depth.
        #[arg(long, default_value_t = 16)]
        pipeline: u32,
        /// Requests of each test of the run without a fault.
        #[arg(long, default_value_t = 100_000)]
        requests: u64,
        /// Seconds the run with the fault should last, judged from the first run's rate
        /// (it may run faster: a busy machine's rates vary).
        #[arg(long, default_value_t = 20)]
        fault_run_s: u64,
        /// Seconds into that run when the leader is killed.
        #[arg(long, default_value_t = 3.0)]
        kill_after_s: f64,
        /// Run the replicas on membership views (usec-kv's `--views`): uKharon's
        /// membership names the leader, which answers reads locally under its
        /// Active(view) lease.
        #[arg(long)]
        views: bool,
        /// The usec-kv executable (default: next to this one).
        #[arg(long)]
        kv_bin: Option<PathBuf>,
        /// More usec-kv arguments.
        #[arg(last = true)]
        kv_args: Vec<String>,
    },
    /// Runs PROGRAM with ARGS in this process, with no signal blocked and to be SIGKILLed
    /// when the launcher goes (how the launcher starts replicas).
    #[command(hide = true)]
    ExecUnblocked {
        /// The launcher's process id.
        #[arg(long)]
        parent: u32,
        /// The program.
        program: PathBuf,
        /// Its arguments.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
}

/// The usec-kv to start: `given`, or the one next to this executable.
fn kv_bin(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(given) = given {
        return Ok(given);
    }
    let me = std::env::current_exe().context("finding this executable")?;
    let next_to_me = me.with_file_name("usec-kv");
    anyhow::ensure!(
        next_to_me.is_file(),
        "no usec-kv next to {}: build it (cargo build --release -p usec-kv) or pass --kv-bin",
        me.display()
    );
    Ok(next_to_me)
}

/// usec-kv's arguments, `--views` first if asked for.
fn with_views(views: bool, kv_args: Vec<String>) -> Vec<String> {
    let mut args: Vec<String> = views.then(|| "--views".to_string()).into_iter().collect();
    args.extend(kv_args);
    args
}

fn main() -> Result<()> {
    // Before any thread exists, so that every thread inherits the mask.
    signals::block()?;
    let status_period = Duration::from_secs(1);
    match Options::parse().command {
        Commands::Start {
            engine: Engine::Bft, replicas, app, port, views, kv_bin: given, kv_args, ..
        } => {
            anyhow::ensure!(replicas == 3 && !views, "--engine bft runs 3 replicas, without --views");
            let bin_dir = match given {
                Some(path) => path.parent().map(PathBuf::from).context("--kv-bin has no directory")?,
                None => std::env::current_exe().context("finding this executable")?.with_file_name(""),
            };
            bft::run(&bft::BftOptions { app, port_base: port, bin_dir, extra: kv_args }, status_period)
        }
        Commands::Start {
            engine: Engine::Mu,
            replicas,
            app,
            port,
            no_front_door,
            views,
            kv_bin: given,
            kv_args,
        } => {
            let options = group::GroupOptions {
                replicas,
                app,
                port_base: port,
                front_door: !no_front_door,
                kv_bin: kv_bin(given)?,
                extra: with_views(views, kv_args),
            };
            start::run(&options, status_period)
        }
        Commands::Node { config, node, run, rejoin, views, kv_bin: given, kv_args } => {
            let extra = with_views(views, kv_args);
            let options = node::NodeOptions { config, node, run, rejoin, kv_bin: kv_bin(given)?, extra };
            node::run(&options, status_period)
        }
        Commands::Demo {
            clients,
            pipeline,
            requests,
            fault_run_s,
            kill_after_s,
            views,
            kv_bin: given,
            kv_args,
        } => {
            anyhow::ensure!(
                kill_after_s > 0.0 && kill_after_s < fault_run_s as f64,
                "--kill-after-s must fall inside the run"
            );
            let options = demo::DemoOptions {
                kv_bin: kv_bin(given)?,
                clients,
                pipeline,
                requests,
                fault_run: Duration::from_secs(fault_run_s),
                kill_after: Duration::from_secs_f64(kill_after_s),
                extra: with_views(views, kv_args),
            };
            demo::run(&options)
        }
        Commands::ExecUnblocked { parent, program, args } => {
            match process::exec_replica(parent, &program, &args)? {}
        }
    }
}
