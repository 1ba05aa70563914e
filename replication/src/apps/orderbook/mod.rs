//! An order-matching engine as a [`StateMachine`]: limit and market orders, cancel and
//! replace, price-time priority, partial fills, any number of symbols.
//!
//! # Rules
//!
//! - **Price-time priority.** An incoming order trades with the best-priced resting order
//!   on the other side first (highest bid, lowest ask) and, at one price, with the one
//!   that has waited longest. Trades are at the resting order's price.
//! - **Limit orders** trade what they can at their price or better; the rest rests.
//!   **Market orders** (no price) trade what the book offers now and cancel the rest:
//!   they never rest.
//! - **Cancel** takes what is left of an open order out of the book.
//! - **Replace** sets an open order's open quantity and optionally its price, keeping its
//!   id. As exchanges do: a smaller quantity at the same price keeps the order's place in
//!   the queue; a new price or a larger quantity loses it — the order is taken out and
//!   entered again (it may trade at once), joining the back of its level.
//! - **Fills reach both sides.** The incoming order's response lists its trades, each
//!   naming both orders and accounts. Every fill also goes into the feed of each account
//!   that took part, which `FILLS <account>` drains (a feed keeps the latest
//!   [`FEED_LIMIT_DEFAULT`] fills unless configured otherwise; older ones are dropped and
//!   counted as missed).
//! - **Ids** are given in order from 1 (orders, trades); nothing depends on a clock, so
//!   every replica computes the same book and the same responses.
//! - **Refusals** leave the book untouched and say why: a zero, negative or oversized
//!   quantity, a zero price, an empty or long name, an order that never existed, one
//!   already filled or cancelled, or someone else's.
//! - **Self-trades** are allowed: an account's order may trade with its own resting order.
//!
//! Prices are integers in ticks (e.g. cents) — exact, no floating point.
//!
//! # Clients
//!
//! Binary: [`Command::to_bytes`] is what to propose (versioned, 2 to 110 bytes), and
//! [`Response::decode`] reads the answer. Text, for a RESP front end: [`parse`] turns the
//! arguments of a command (`BUY alice ACME 100 10150`) into a [`Command`],
//! [`Response::write_resp`] writes a response as the RESP reply for the client, and
//! [`Response::from_resp`] reads it back. [`OrderBookApp`] and [`RespOrderBook`] put the
//! book on the RESP front end (`usec-kv --app orderbook`).
//!
//! ```
//! use usec_replication::apps::orderbook::{parse, Response, OrderBook};
//! use usec_replication::StateMachine;
//!
//! let mut book = OrderBook::new();
//! let mut run = |line: &str| {
//!     let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
//!     let mut response = Vec::new();
//!     book.apply(&parse(&args).unwrap().to_bytes(), &mut response);
//!     Response::decode(&response).unwrap()
//! };
//! run("SELL bob ACME 100 10150");
//! let Response::Order(buy) = run("BUY alice ACME 30") else { panic!() };
//! assert_eq!((buy.filled, buy.fills[0].maker.as_slice(), buy.fills[0].price), (30, &b"bob"[..], 10150));
//! let Response::Fills { fills, .. } = run("FILLS bob") else { panic!() };
//! assert_eq!((fills[0].taker.as_slice(), fills[0].maker_open), (&b"alice"[..], 70));
//! ```
//!
//! - [`command`]: commands, their checks and their encoding;
//! - [`text`]: the text command set;
//! - [`response`]: responses and their encoding; [`reply`]: as RESP;
//! - [`served`]: the book on the RESP front end;
//! - `book`: one symbol's levels and the matching; `engine`: the whole book;
//!   `snapshot`: the book as bytes;
//! - [`load`]: a seeded generator of realistic order streams.

pub mod command;
pub mod load;
pub mod reply;
pub mod response;
pub mod served;
pub mod text;

mod book;
mod engine;
mod snapshot;

pub use command::{
    Command, NewOrder, Side, ACCOUNT_BYTES_MAX, DEPTH_MAX, PRICE_MAX, QUANTITY_MAX, SYMBOL_BYTES_MAX,
};
pub use load::{LoadConfig, LoadGenerator};
pub use reply::resp_reply;
pub use response::{Digest, Execution, Fill, Level, Refusal, Response};
pub use served::{OrderBookApp, RespOrderBook};
pub use text::{parse, to_args, COMMANDS};

use crate::state_machine::{RestoreError, StateMachine};
use engine::Engine;

/// Fills an account's feed keeps unless told otherwise.
pub const FEED_LIMIT_DEFAULT: u32 = 1024;

/// An open order, as the book shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenOrder {
    /// Its id.
    pub order: u64,
    /// Whose.
    pub account: Vec<u8>,
    /// What.
    pub symbol: Vec<u8>,
    /// Buy or sell.
    pub side: Side,
    /// Its price.
    pub price: u64,
    /// Open now.
    pub open: u64,
    /// Filled so far.
    pub filled: u64,
    /// Cancelled so far (reductions by replace).
    pub cancelled: u64,
}

/// The order book: every symbol's book and every account's fills.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderBook {
    engine: Engine,
}

impl Default for OrderBook {
    fn default() -> OrderBook {
        OrderBook::new()
    }
}

impl OrderBook {
    /// An empty book whose feeds keep [`FEED_LIMIT_DEFAULT`] fills.
    pub fn new() -> OrderBook {
        OrderBook::with_feed_limit(FEED_LIMIT_DEFAULT)
    }

    /// An empty book whose feeds keep `limit` fills (0: none). Every replica of a group
    /// must use the same (snapshots carry it).
    pub fn with_feed_limit(limit: u32) -> OrderBook {
        OrderBook { engine: Engine::new(limit) }
    }

    /// Carries out `command`.
    pub fn execute(&mut self, command: &Command) -> Response {
        self.engine.execute(command)
    }

    /// Carries out an encoded command ([`Command::to_bytes`]); one that does not decode
    /// is refused.
    pub fn execute_encoded(&mut self, command: &[u8]) -> Response {
        match Command::decode(command) {
            Ok(command) => self.engine.execute(&command),
            Err(refusal) => Response::Refused(refusal),
        }
    }

    /// Answers a command that changes nothing (`BOOK`, `DIGEST`: [`Command::is_read_only`])
    /// from the book as it is, as [`OrderBook::execute`] would; `None` for any other.
    pub fn query(&self, command: &Command) -> Option<Response> {
        self.engine.query(command)
    }

    fn view(&self, symbol: u32, side: Side, price: u64, resting: &book::Resting) -> OpenOrder {
        OpenOrder {
            order: resting.id,
            account: self.engine.accounts[resting.account as usize].name.to_vec(),
            symbol: self.engine.symbols[symbol as usize].name.to_vec(),
            side,
            price,
            open: resting.open,
            filled: resting.filled,
            cancelled: resting.cancelled,
        }
    }

    /// Order `order`, if open.
    pub fn open_order(&self, order: u64) -> Option<OpenOrder> {
        let at = self.engine.orders.get(&order)?;
        let resting = &self.engine.symbols[at.symbol as usize].side(at.side)[&at.price].queue[&at.priority];
        Some(self.view(at.symbol, at.side, at.price, resting))
    }

    /// The open orders on one side of `symbol`'s book, in the order they would trade.
    pub fn resting(&self, symbol: &[u8], side: Side) -> Vec<OpenOrder> {
        let Some(&symbol) = self.engine.symbol_ids.get(symbol) else { return Vec::new() };
        let book = &self.engine.symbols[symbol as usize];
        book.levels(side)
            .flat_map(|(price, level)| level.queue.values().map(move |resting| (price, resting)))
            .map(|(price, resting)| self.view(symbol, side, price, resting))
            .collect()
    }

    /// The best price on one side of `symbol`'s book.
    pub fn best(&self, symbol: &[u8], side: Side) -> Option<u64> {
        let &symbol = self.engine.symbol_ids.get(symbol)?;
        self.engine.symbols[symbol as usize].best(side)
    }

    /// The symbols ever traded, in order of first appearance.
    pub fn symbols(&self) -> Vec<Vec<u8>> {
        self.engine.symbols.iter().map(|book| book.name.to_vec()).collect()
    }

    /// Open orders, over every symbol.
    pub fn open_orders(&self) -> usize {
        self.engine.orders.len()
    }
}

impl StateMachine for OrderBook {
    fn apply(&mut self, command: &[u8], response: &mut Vec<u8>) {
        self.execute_encoded(command).encode(response);
    }

    fn snapshot(&self) -> Vec<u8> {
        snapshot::encode(&self.engine)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        self.engine = snapshot::decode(snapshot)?;
        Ok(())
    }
}
