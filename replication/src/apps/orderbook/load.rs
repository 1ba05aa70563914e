//! [`LoadGenerator`]: a seeded stream of orders that looks like a market — limit orders
//! around a drifting mid price (most of them passive, some crossing the spread), market
//! orders, cancels and replaces of orders it knows are open, fill drains and depth
//! queries.
//!
//! It learns which of its orders are open from the responses ([`LoadGenerator::observe`]),
//! which may come any number of commands behind (a pipelining client); without them it
//! still runs, its cancels then aiming at orders that may be gone.

use std::collections::HashMap;

use super::command::{Command, NewOrder, Side};
use super::response::Response;

/// The shape of the stream.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadConfig {
    /// Symbols traded.
    pub symbols: usize,
    /// Accounts trading.
    pub accounts: usize,
    /// Where every mid price starts, in ticks.
    pub mid_price: u64,
    /// Limit prices lie within this many ticks of the mid.
    pub band_ticks: u64,
    /// Quantities are multiples of this.
    pub lot: u64,
    /// Largest quantity, in lots.
    pub lots_max: u64,
    /// Share of commands, in percent: limit orders, market orders, cancels, replaces,
    /// fill drains; depth queries take the rest.
    pub mix_percent: [u32; 5],
    /// Share of limit orders that cross the spread, in percent.
    pub aggressive_percent: u32,
}

impl Default for LoadConfig {
    fn default() -> LoadConfig {
        LoadConfig {
            symbols: 8,
            accounts: 200,
            mid_price: 10_000,
            band_ticks: 20,
            lot: 10,
            lots_max: 20,
            mix_percent: [55, 4, 25, 10, 4],
            aggressive_percent: 15,
        }
    }
}

/// splitmix64: small, fast, and the same everywhere.
#[derive(Clone, Debug)]
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0; the bias is far below anything measured).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn percent(&mut self, percent: u32) -> bool {
        self.below(100) < u64::from(percent)
    }
}

/// An order of the stream, as the generator remembers it.
#[derive(Clone, Copy, Debug)]
struct Known {
    order: u64,
    account: usize,
    symbol: usize,
    buy: bool,
}

/// A seeded order stream.
#[derive(Clone, Debug)]
pub struct LoadGenerator {
    config: LoadConfig,
    random: Random,
    symbols: Vec<Vec<u8>>,
    accounts: Vec<Vec<u8>>,
    /// Each name's index, to know an order again from its command.
    symbol_index: HashMap<Vec<u8>, usize>,
    account_index: HashMap<Vec<u8>, usize>,
    mids: Vec<u64>,
    /// Orders known to be open, and where each sits in that list.
    open: Vec<Known>,
    open_at: HashMap<u64, usize>,
}

impl LoadGenerator {
    /// A stream of `config`'s shape from `seed`.
    pub fn new(seed: u64, config: LoadConfig) -> LoadGenerator {
        assert!(config.symbols > 0 && config.accounts > 0 && config.lots_max > 0 && config.lot > 0);
        assert!(config.mid_price > config.band_ticks + 1, "prices stay positive");
        let symbols: Vec<Vec<u8>> =
            (0..config.symbols).map(|index| format!("SYM{index}").into_bytes()).collect();
        let accounts: Vec<Vec<u8>> =
            (0..config.accounts).map(|index| format!("acct{index}").into_bytes()).collect();
        let index =
            |names: &[Vec<u8>]| names.iter().enumerate().map(|(at, name)| (name.clone(), at)).collect();
        LoadGenerator {
            random: Random(seed),
            symbol_index: index(&symbols),
            account_index: index(&accounts),
            symbols,
            accounts,
            mids: vec![config.mid_price; config.symbols],
            open: Vec::new(),
            open_at: HashMap::new(),
            config,
        }
    }

    /// Orders known to be open.
    pub fn open_orders(&self) -> usize {
        self.open.len()
    }

    /// The next command.
    pub fn next_command(&mut self) -> Command {
        let [limit, market, cancel, replace, fills] = self.config.mix_percent;
        let roll = self.random.below(100) as u32;
        let account = self.random.below(self.config.accounts as u64) as usize;
        if roll < limit + market || (roll < limit + market + cancel + replace && self.open.is_empty()) {
            return self.new_order(account, roll >= limit);
        }
        if roll < limit + market + cancel + replace {
            let known = self.open[self.random.below(self.open.len() as u64) as usize];
            let (order, account) = (known.order, self.accounts[known.account].clone());
            if roll < limit + market + cancel {
                return Command::Cancel { account, order };
            }
            let quantity = self.quantity();
            // Half the replaces keep the price (and the place in the queue, if smaller),
            // half move it.
            let price = match self.random.percent(50) {
                true => None,
                false => Some(self.limit_price(known.buy, known.symbol)),
            };
            return Command::Replace { account, order, quantity, price };
        }
        if roll < limit + market + cancel + replace + fills {
            return Command::Fills { account: self.accounts[account].clone(), most: 64 };
        }
        let symbol = self.random.below(self.config.symbols as u64) as usize;
        Command::Book { symbol: self.symbols[symbol].clone(), depth: 5 }
    }

    fn quantity(&mut self) -> u64 {
        self.config.lot * (1 + self.random.below(self.config.lots_max))
    }

    /// A limit price for a buy (`buy`) or a sell on symbol `symbol`: behind the mid, or
    /// past it when aggressive.
    fn limit_price(&mut self, buy: bool, symbol: usize) -> u64 {
        let mid = self.mids[symbol];
        let offset = 1 + self.random.below(self.config.band_ticks);
        let aggressive = self.random.percent(self.config.aggressive_percent);
        match (buy, aggressive) {
            (true, false) | (false, true) => mid - offset,
            (true, true) | (false, false) => mid + offset,
        }
    }

    fn new_order(&mut self, account: usize, market: bool) -> Command {
        let symbol = self.random.below(self.config.symbols as u64) as usize;
        // The mid drifts a tick now and then.
        if self.random.below(16) == 0 {
            let mid = &mut self.mids[symbol];
            *mid = if self.random.below(2) == 0 { *mid + 1 } else { *mid - 1 };
            *mid = (*mid).clamp(self.config.band_ticks + 2, u64::MAX / 2);
        }
        let buy = self.random.below(2) == 0;
        let price = (!market).then(|| self.limit_price(buy, symbol));
        Command::Submit(NewOrder {
            account: self.accounts[account].clone(),
            symbol: self.symbols[symbol].clone(),
            side: if buy { Side::Buy } else { Side::Sell },
            quantity: self.quantity(),
            price,
        })
    }

    fn forget(&mut self, order: u64) {
        if let Some(position) = self.open_at.remove(&order) {
            self.open.swap_remove(position);
            if let Some(moved) = self.open.get(position) {
                self.open_at.insert(moved.order, position);
            }
        }
    }

    /// Learns from the response to `command` (one [`LoadGenerator::next_command`] gave,
    /// however many commands ago) which orders are open.
    pub fn observe(&mut self, command: &Command, response: &Response) {
        let (Command::Submit(_) | Command::Replace { .. } | Command::Cancel { .. }) = command else { return };
        match response {
            Response::Order(execution) => {
                for fill in &execution.fills {
                    if fill.maker_open == 0 {
                        self.forget(fill.maker_order);
                    }
                }
                let known = self.open_at.contains_key(&execution.order);
                if execution.open == 0 {
                    self.forget(execution.order);
                } else if !known {
                    let Command::Submit(order) = command else { return };
                    let (Some(&account), Some(&symbol)) =
                        (self.account_index.get(&order.account), self.symbol_index.get(&order.symbol))
                    else {
                        return; // not one of this stream's orders
                    };
                    let known =
                        Known { order: execution.order, account, symbol, buy: order.side == Side::Buy };
                    self.open_at.insert(execution.order, self.open.len());
                    self.open.push(known);
                }
            }
            Response::Cancelled { order, .. } => self.forget(*order),
            Response::Refused(_) => {
                if let Command::Cancel { order, .. } | Command::Replace { order, .. } = command {
                    self.forget(*order);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::orderbook::OrderBook;

    /// Runs `count` commands of a stream from `seed` against a book; (kinds seen by name,
    /// refusals, trades).
    fn drive(seed: u64, count: usize) -> (Vec<Command>, usize, usize) {
        let mut load = LoadGenerator::new(seed, LoadConfig::default());
        let mut book = OrderBook::new();
        let (mut commands, mut refused, mut trades) = (Vec::new(), 0, 0);
        for _ in 0..count {
            let command = load.next_command();
            let response = book.execute(&command);
            match &response {
                Response::Refused(_) => refused += 1,
                Response::Order(execution) => trades += execution.fills.len(),
                _ => {}
            }
            load.observe(&command, &response);
            commands.push(command);
        }
        (commands, refused, trades)
    }

    /// Commands generated `depth` ahead of the responses observed, as a pipelining client
    /// does: (refusals by kind).
    fn drive_pipelined(seed: u64, count: usize, depth: usize) -> HashMap<&'static str, usize> {
        let mut load = LoadGenerator::new(seed, LoadConfig::default());
        let mut book = OrderBook::new();
        let mut in_flight = std::collections::VecDeque::new();
        let mut refused = HashMap::new();
        for _ in 0..count {
            while in_flight.len() < depth {
                in_flight.push_back(load.next_command());
            }
            let command = in_flight.pop_front().unwrap();
            let response = book.execute(&command);
            if let Response::Refused(refusal) = &response {
                *refused.entry(refusal.code()).or_default() += 1;
            }
            load.observe(&command, &response);
        }
        refused
    }

    #[test]
    fn pipelined_observations_keep_each_order_with_its_owner() {
        // Orders may close while a cancel aimed at them is in flight (CLOSED), but the
        // generator never takes one account's order for another's.
        let refused = drive_pipelined(3, 20_000, 16);
        assert_eq!(refused.get("NOTOWNER"), None, "{refused:?}");
        assert!(refused.get("CLOSED").is_some_and(|&closed| closed > 0), "{refused:?}");
    }

    #[test]
    fn a_seed_gives_one_stream() {
        assert_eq!(drive(5, 2_000).0, drive(5, 2_000).0);
        assert_ne!(drive(5, 2_000).0, drive(6, 2_000).0);
    }

    #[test]
    fn the_stream_looks_like_a_market() {
        let (commands, refused, trades) = drive(1, 20_000);
        let share = |matches: fn(&Command) -> bool| {
            commands.iter().filter(|command| matches(command)).count() * 100 / commands.len()
        };
        let market = share(|command| matches!(command, Command::Submit(NewOrder { price: None, .. })));
        let cancels = share(|command| matches!(command, Command::Cancel { .. }));
        let replaces = share(|command| matches!(command, Command::Replace { .. }));
        assert!((2..=8).contains(&market), "{market}% market orders");
        assert!((15..=30).contains(&cancels), "{cancels}% cancels");
        assert!((5..=15).contains(&replaces), "{replaces}% replaces");
        // Its cancels and replaces aim at orders it knows are open.
        assert_eq!(refused, 0, "every command is one the book takes");
        assert!(trades > 2_000, "orders meet: {trades} trades");
    }
}
