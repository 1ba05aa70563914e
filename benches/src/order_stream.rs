//! The order stream the order-book benchmarks replay: made once, ahead of the measurement,
//! by the book's own load generator against a scratch book (limit orders around a drifting
//! mid, some crossing, market orders, cancels, replaces, fill drains, depth queries).

use usec_replication::apps::orderbook::{Command, LoadConfig, LoadGenerator, OrderBook, Response};

/// One command of the stream, encoded as a replica receives it.
#[derive(Clone, Debug)]
pub struct StreamCommand {
    /// Whether it is a new order (`BUY`/`SELL`), the latency the seeds report.
    pub is_order: bool,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// A stream of `count` commands over `symbols` symbols and `accounts` accounts, from
/// `seed`; and the trades it makes.
pub fn make(seed: u64, symbols: usize, accounts: usize, count: u64) -> (Vec<StreamCommand>, u64) {
    let config = LoadConfig { symbols, accounts, ..LoadConfig::default() };
    let mut load = LoadGenerator::new(seed, config);
    let mut scratch = OrderBook::new();
    let mut trades = 0;
    let stream = (0..count)
        .map(|_| {
            let command = load.next_command();
            let response = scratch.execute(&command);
            if let Response::Order(execution) = &response {
                trades += execution.fills.len() as u64;
            }
            load.observe(&command, &response);
            StreamCommand { is_order: matches!(command, Command::Submit(_)), bytes: command.to_bytes() }
        })
        .collect();
    (stream, trades)
}
