//! `orderbook-latency`: what one order costs the order book's state machine, unreplicated
//! — the time a replica spends applying it (decode, match, encode the response) — and
//! how many commands per second one core matches.
//!
//! A seeded stream from the book's load generator (limit orders around a drifting mid,
//! some crossing, market orders, cancels, replaces, fill drains, depth queries) is made
//! first, against a scratch book, so that making it is not measured. Then:
//!
//! - latency: a fresh book applies the stream, each command timed alone
//!   (`Instant` around `StateMachine::apply`); percentiles for new orders (`BUY`/`SELL`)
//!   and for every command;
//! - throughput: another fresh book applies the same stream in one timed loop.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Parser;
use serde::Serialize;
use usec_benches::latency::{LatencySummary, Recorder};
use usec_benches::order_stream::{self, StreamCommand};
use usec_benches::pinning::{pin_current_thread, Pinning};
use usec_benches::run_info::RunInfo;
use usec_replication::apps::orderbook::OrderBook;
use usec_replication::StateMachine;

/// One order applied unreplicated.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Commands measured.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    commands: u64,
    /// Commands applied first and not measured (the book fills up).
    #[arg(long, default_value_t = 200_000)]
    warmup: u64,
    /// Seed of the order stream.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Symbols traded.
    #[arg(long, default_value_t = 8)]
    symbols: usize,
    /// Accounts trading.
    #[arg(long, default_value_t = 1_000)]
    accounts: usize,
    /// Core to pin to (none: unpinned).
    #[arg(long)]
    core: Option<usize>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    run: RunInfo,
    pinning: Pinning,
    seed: u64,
    commands: u64,
    warmup: u64,
    symbols: usize,
    accounts: usize,
    orders: LatencySummary,
    all: LatencySummary,
    commands_per_second: f64,
    open_orders_at_end: usize,
    trades: u64,
}

fn main() -> Result<()> {
    let options = Options::parse();
    let mut run = RunInfo::collect(usec_benches::pinning::usable_cores().len());
    run.timer = "std::time::Instant around each StateMachine::apply".to_string();
    let pinning = pin_current_thread(options.core);
    eprintln!("making a stream of {} commands ...", options.warmup + options.commands);
    let (stream, trades) = order_stream::make(
        options.seed,
        options.symbols,
        options.accounts,
        options.warmup + options.commands,
    );
    let warmup = options.warmup as usize;

    let (mut orders, mut all) = (Recorder::new(), Recorder::new());
    let mut book = OrderBook::new();
    let mut response = Vec::with_capacity(4096);
    for (index, StreamCommand { is_order, bytes }) in stream.iter().enumerate() {
        response.clear();
        let start = Instant::now();
        book.apply(bytes, &mut response);
        let elapsed = start.elapsed().as_nanos() as u64;
        if index >= warmup {
            all.record_ns(elapsed);
            if *is_order {
                orders.record_ns(elapsed);
            }
        }
    }
    let open_orders_at_end = book.open_orders();

    let mut book = OrderBook::new();
    for command in &stream[..warmup] {
        response.clear();
        book.apply(&command.bytes, &mut response);
    }
    let start = Instant::now();
    for command in &stream[warmup..] {
        response.clear();
        book.apply(&command.bytes, &mut response);
    }
    let commands_per_second = options.commands as f64 / start.elapsed().as_secs_f64();

    let report = Report {
        benchmark: "orderbook-latency",
        run,
        pinning,
        seed: options.seed,
        commands: options.commands,
        warmup: options.warmup,
        symbols: options.symbols,
        accounts: options.accounts,
        orders: orders.summary(),
        all: all.summary(),
        commands_per_second,
        open_orders_at_end,
        trades,
    };
    report.run.warn_if_debug();
    println!("order book, unreplicated, one thread ({}), {}", report.pinning, report.run.provenance());
    println!(
        "{} commands after {} of warm-up; {} symbols, {} accounts; {} trades in the stream, {} orders open at the end",
        report.commands, report.warmup, report.symbols, report.accounts, report.trades, report.open_orders_at_end
    );
    println!("new order (BUY/SELL): {}", report.orders);
    println!("any command:          {}", report.all);
    println!("timer overhead:       ~{} ns per sample", report.run.timer_overhead_ns);
    println!("throughput:           {:.0} commands/s", report.commands_per_second);
    if let Some(path) = &options.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
