//! `usec-bft-gateway`: Redis clients' way into an application on uBFT — the key-value
//! store (`--app kv`, the default) or the order book (`--app orderbook`).
//!
//! It speaks RESP on `--port` (redis-cli, redis-benchmark, any RESP2 library) with the
//! application's own front end (the KV's commands, or BUY, SELL, CANCEL, REPLACE, BOOK,
//! FILLS), turns each command into a signed uBFT request, and answers once
//! f + 1 replicas returned the same result ([`BftBackend`]). It reaches the replicas
//! (`usec-bft-kv --app` the same) at `--replica-addrs` over TCP. It prints `ready <ip:port>` and serves
//! until killed.
//!
//! It is a client of the group, not trusted by it: a Byzantine gateway can only send its
//! own signed requests.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use usec_bft_kv::{client_key, AppKind, GroupArgs, Timeouts};
use usec_replication::apps::kv::KvApp;
use usec_replication::apps::orderbook::OrderBookApp;
use usec_replication::apps::resp::Limits as RespLimits;
use usec_replication::apps::server::{App, BftBackend, Server, ServerConfig};
use usec_replication::bft::consensus::{Client, ClientId, Limits};
use usec_replication::bft::driver::client_link::MAX_FRAME_BYTES;
use usec_replication::bft::driver::ClientLink;

/// The RESP gateway to an application on uBFT.
#[derive(Debug, Parser)]
#[command(name = "usec-bft-gateway", version)]
struct Args {
    /// The application the replicas run (their `--app`).
    #[arg(long, value_enum, default_value = "kv")]
    app: AppKind,
    /// Address to listen on for Redis clients.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Port for Redis clients (0: any free port).
    #[arg(long, default_value_t = 6390)]
    port: u16,
    /// Every replica's client address, comma-separated, in replica id order.
    #[arg(long, value_delimiter = ',', required = true)]
    replica_addrs: Vec<SocketAddr>,
    /// BFT clients this gateway runs (requests in flight at once).
    #[arg(long, default_value_t = 8)]
    lanes: u32,
    /// The first client id of this gateway's lanes (gateways of one group take disjoint
    /// ranges below `--clients`).
    #[arg(long, default_value_t = 0)]
    first_client: u32,
    /// How long a lane waits for f + 1 replies before sending the request again, in ms.
    #[arg(long, default_value_t = 100)]
    retransmit_ms: u64,
    #[command(flatten)]
    group: GroupArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("usec-bft-gateway: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let replicas = args.group.replica_ids()?;
    if replicas.len() != args.replica_addrs.len() {
        bail!("{} replicas but {} addresses", replicas.len(), args.replica_addrs.len());
    }
    if args.lanes == 0 || args.first_client + args.lanes > args.group.clients {
        bail!(
            "lanes {}..{} are not all below --clients {}",
            args.first_client,
            args.first_client + args.lanes,
            args.group.clients
        );
    }
    let config = args.group.consensus(&Timeouts { fast_path_us: 1, slow_path_us: 1, view_change_us: 1 })?;
    let addrs: Vec<_> = replicas.iter().copied().zip(args.replica_addrs.iter().copied()).collect();
    // `--max-operation-bytes` bounds what a client sends, not what the state machine
    // answers: an MGET, a FILLS or an order that trades with many others answers more. A
    // reply is taken up to the client transport's frame limit; a lane that refused a
    // correct replica's reply would wait for it forever.
    let limits = Limits { operation_bytes: MAX_FRAME_BYTES, ..config.limits() };
    let lanes = (args.first_client..args.first_client + args.lanes)
        .map(|id| {
            let id = ClientId(id);
            let client = Client::new(
                id,
                client_key(&args.group.key_seed, id),
                replicas.clone(),
                args.group.replica_keys()?,
                limits,
                args.retransmit_ms * 1_000_000,
            );
            Ok(ClientLink::new(id, client, &addrs))
        })
        .collect::<Result<Vec<_>>>()?;
    let backend = BftBackend::new(lanes, config.max_operation_bytes);
    let server_config = ServerConfig {
        limits: RespLimits { max_request_bytes: config.max_operation_bytes + 4096, ..RespLimits::default() },
        ..ServerConfig::default()
    };
    let address = SocketAddr::new(args.bind, args.port);
    match args.app {
        AppKind::Kv => serve(address, KvApp, backend, server_config),
        AppKind::Orderbook => serve(address, OrderBookApp, backend, server_config),
    }
}

fn serve(address: SocketAddr, app: impl App, backend: BftBackend, config: ServerConfig) -> Result<()> {
    let mut server =
        Server::bind(address, app, backend, config).with_context(|| format!("listening on {address}"))?;
    println!("ready {}", server.local_addr());
    server.run().context("serving")
}
