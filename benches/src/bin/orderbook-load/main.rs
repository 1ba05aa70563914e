//! `orderbook-load`: a load generator for the order book over RESP (`usec-kv --app
//! orderbook`, unreplicated or a replica of a group): N connections, each a thread with its
//! own seeded order stream (`apps::orderbook::LoadGenerator`), pipelined or not; reports
//! commands and new orders per second and latency percentiles (request written → reply
//! read), for every command and for new orders alone.
//!
//! ```text
//! usec-kv --app orderbook --port 6390 &
//! cargo run --release -p usec-benches --bin orderbook-load -- --port 6390 --connections 8 --pipeline 16
//! ```
//!
//! Given any replica of a group, it finds the leader first (a read through the log is
//! redirected there). Replies that are not the book's — a redirection after a change of
//! leader, `TRYAGAIN`, `UNCERTAIN` — are counted as errors and shown, not retried.
#![forbid(unsafe_code)]

mod connection;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use serde::Serialize;
use usec_benches::latency::LatencySummary;
use usec_benches::run_info::RunInfo;
use usec_replication::apps::orderbook::LoadConfig;

use connection::{Schedule, Tally};

/// The order book under load over RESP.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Host of the server (any replica of a group: the leader is found from there).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Its RESP port.
    #[arg(long, default_value_t = 6380)]
    port: u16,
    /// Connections, each driven by a thread of its own.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=4096))]
    connections: u64,
    /// Requests in flight per connection (1: each waits for the previous reply).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pipeline: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds run first and not measured (the book fills up).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seed of the order streams (connection i uses seed + i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Symbols traded.
    #[arg(long, default_value_t = 8)]
    symbols: usize,
    /// Accounts trading (per connection: the streams share the names, so their orders meet).
    #[arg(long, default_value_t = 200)]
    accounts: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    run: RunInfo,
    server: SocketAddr,
    connections: u64,
    pipeline: u64,
    seconds: f64,
    seed: u64,
    /// Counted after the warm-up.
    commands: u64,
    new_orders: u64,
    trades: u64,
    commands_per_second: f64,
    orders_per_second: f64,
    trades_per_second: f64,
    all: LatencySummary,
    orders: LatencySummary,
    errors: u64,
    first_errors: Vec<String>,
}

fn main() -> Result<()> {
    let options = Options::parse();
    if !(options.seconds > 0.0 && options.warmup >= 0.0) {
        bail!("--seconds must be positive and --warmup not negative");
    }
    let mut run = RunInfo::collect(usec_benches::pinning::usable_cores().len());
    run.timer = "std::time::Instant from the write carrying a request to the read carrying its reply".into();
    let given = SocketAddr::new(options.host, options.port);
    let server = connection::find_leader(given)?;
    if server != given {
        eprintln!("{given} redirects to the leader at {server}");
    }
    let config = LoadConfig { symbols: options.symbols, accounts: options.accounts, ..LoadConfig::default() };
    let start = Instant::now();
    let schedule = Schedule {
        measure_from: start + Duration::from_secs_f64(options.warmup),
        stop_at: start + Duration::from_secs_f64(options.warmup + options.seconds),
    };
    let threads: Vec<_> = (0..options.connections)
        .map(|index| {
            let (config, pipeline, seed) = (config.clone(), options.pipeline as usize, options.seed + index);
            std::thread::spawn(move || connection::drive(server, seed, config, pipeline, schedule))
        })
        .collect();
    let mut total = Tally::default();
    for thread in threads {
        let tally = thread.join().expect("connection threads do not panic").context("a connection failed")?;
        total.all.merge(&tally.all);
        total.orders.merge(&tally.orders);
        total.trades += tally.trades;
        total.errors += tally.errors;
        total.first_errors.extend(tally.first_errors);
    }
    let per_second = |count: u64| count as f64 / options.seconds;
    total.first_errors.truncate(5);
    let report = Report {
        benchmark: "orderbook-load",
        run,
        server,
        connections: options.connections,
        pipeline: options.pipeline,
        seconds: options.seconds,
        seed: options.seed,
        commands: total.all.summary().count,
        new_orders: total.orders.summary().count,
        trades: total.trades,
        commands_per_second: per_second(total.all.summary().count),
        orders_per_second: per_second(total.orders.summary().count),
        trades_per_second: per_second(total.trades),
        all: total.all.summary(),
        orders: total.orders.summary(),
        errors: total.errors,
        first_errors: total.first_errors,
    };
    print(&report);
    if let Some(path) = &options.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn print(report: &Report) {
    report.run.warn_if_debug();
    println!(
        "order book over RESP at {}: {} connections, pipeline {}, {} s measured; {}",
        report.server,
        report.connections,
        report.pipeline,
        report.seconds,
        report.run.provenance()
    );
    println!(
        "throughput:  {:.0} commands/s, {:.0} new orders/s, {:.0} trades/s",
        report.commands_per_second, report.orders_per_second, report.trades_per_second
    );
    println!("new order:   {}", report.orders);
    println!("any command: {}", report.all);
    if report.errors > 0 {
        println!("errors:      {} replies not the book's, first: {:?}", report.errors, report.first_errors);
    }
}
