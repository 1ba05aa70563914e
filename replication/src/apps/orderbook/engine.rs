//! [`Engine`]: every symbol's book, the index of open orders, the accounts and their fill
//! feeds; carries out one [`Command`] at a time.
//!
//! Deterministic by construction: ids come from counters, symbols and accounts are
//! numbered in order of first appearance, nothing depends on the iteration order of a
//! hash map, and no clock is read.

use std::collections::{HashMap, VecDeque};

use super::book::{Resting, SymbolBook, Trade};
use super::command::{Command, NewOrder, Side};
use xxhash_rust::xxh3::xxh3_128;

use super::response::{Digest, Execution, Fill, Level, Refusal, Response};
use super::snapshot;

/// Where an open order rests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) symbol: u32,
    pub(crate) side: Side,
    pub(crate) price: u64,
    pub(crate) priority: u64,
    pub(crate) account: u32,
}

/// A fill as a feed keeps it (names by number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FillRecord {
    pub(crate) trade: u64,
    pub(crate) symbol: u32,
    pub(crate) price: u64,
    pub(crate) quantity: u64,
    pub(crate) taker_side: Side,
    pub(crate) taker_order: u64,
    pub(crate) taker: u32,
    pub(crate) maker_order: u64,
    pub(crate) maker: u32,
    pub(crate) maker_open: u64,
}

/// An account: its name and the fills it took part in, not yet taken by `FILLS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Account {
    pub(crate) name: Box<[u8]>,
    pub(crate) feed: VecDeque<FillRecord>,
    /// Fills dropped from a full feed since the last `FILLS`.
    pub(crate) missed: u64,
}

/// The whole book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Engine {
    pub(crate) symbols: Vec<SymbolBook>,
    pub(crate) symbol_ids: HashMap<Box<[u8]>, u32>,
    pub(crate) accounts: Vec<Account>,
    pub(crate) account_ids: HashMap<Box<[u8]>, u32>,
    /// Open orders by id.
    pub(crate) orders: HashMap<u64, Location>,
    /// The id the next order gets (ids start at 1).
    pub(crate) next_order: u64,
    /// The number the next trade gets (from 1).
    pub(crate) next_trade: u64,
    /// The priority the next order to join a queue gets.
    pub(crate) next_priority: u64,
    /// Fills an account's feed keeps at most.
    pub(crate) feed_limit: u32,
}

impl Engine {
    pub(crate) fn new(feed_limit: u32) -> Engine {
        Engine {
            symbols: Vec::new(),
            symbol_ids: HashMap::new(),
            accounts: Vec::new(),
            account_ids: HashMap::new(),
            orders: HashMap::new(),
            next_order: 1,
            next_trade: 1,
            next_priority: 1,
            feed_limit,
        }
    }

    pub(crate) fn execute(&mut self, command: &Command) -> Response {
        if let Some(response) = self.query(command) {
            return response;
        }
        if let Err(refusal) = command.validate() {
            return Response::Refused(refusal);
        }
        let outcome = match command {
            Command::Submit(order) => Ok(self.submit(order)),
            Command::Cancel { account, order } => self.cancel(account, *order),
            Command::Replace { account, order, quantity, price } => {
                self.replace(account, *order, *quantity, *price)
            }
            Command::Fills { account, most } => Ok(self.take_fills(account, *most)),
            Command::Book { .. } | Command::Digest => unreachable!("queries are answered above"),
        };
        outcome.unwrap_or_else(Response::Refused)
    }

    /// Answers a command that changes nothing ([`Command::is_read_only`]) from the book as
    /// it is; `None` for any other.
    pub(crate) fn query(&self, command: &Command) -> Option<Response> {
        if !command.is_read_only() {
            return None;
        }
        if let Err(refusal) = command.validate() {
            return Some(Response::Refused(refusal));
        }
        Some(match command {
            Command::Book { symbol, depth } => self.depth(symbol, *depth),
            Command::Digest => Response::Digest(Digest {
                digest: xxh3_128(&snapshot::encode(self)),
                open_orders: self.orders.len() as u64,
                orders: self.next_order - 1,
                trades: self.next_trade - 1,
            }),
            _ => unreachable!("only queries get here"),
        })
    }

    fn intern(names: &mut HashMap<Box<[u8]>, u32>, count: usize, name: &[u8]) -> (u32, bool) {
        if let Some(&id) = names.get(name) {
            return (id, false);
        }
        let id = u32::try_from(count).expect("fewer than 2^32 names");
        names.insert(name.into(), id);
        (id, true)
    }

    fn account_id(&mut self, name: &[u8]) -> u32 {
        let (id, new) = Self::intern(&mut self.account_ids, self.accounts.len(), name);
        if new {
            self.accounts.push(Account { name: name.into(), feed: VecDeque::new(), missed: 0 });
        }
        id
    }

    fn symbol_id(&mut self, name: &[u8]) -> u32 {
        let (id, new) = Self::intern(&mut self.symbol_ids, self.symbols.len(), name);
        if new {
            self.symbols.push(SymbolBook::new(name));
        }
        id
    }

    fn submit(&mut self, order: &NewOrder) -> Response {
        let account = self.account_id(&order.account);
        let symbol = self.symbol_id(&order.symbol);
        let id = self.next_order;
        self.next_order += 1;
        let (left, fills) = self.match_incoming(symbol, order.side, order.price, order.quantity, id, account);
        let filled = order.quantity - left;
        match order.price {
            Some(price) if left > 0 => {
                self.rest(
                    symbol,
                    order.side,
                    price,
                    Resting { id, account, open: left, filled, cancelled: 0 },
                );
                Response::Order(Execution { order: id, filled, open: left, cancelled: 0, fills })
            }
            // A market order does not rest: what it could not fill now is cancelled.
            _ => Response::Order(Execution { order: id, filled, open: 0, cancelled: left, fills }),
        }
    }

    /// Puts `order` at the back of the queue at `price`.
    fn rest(&mut self, symbol: u32, side: Side, price: u64, order: Resting) {
        let priority = self.next_priority;
        self.next_priority += 1;
        let location = Location { symbol, side, price, priority, account: order.account };
        self.orders.insert(order.id, location);
        self.symbols[symbol as usize].insert(side, price, priority, order);
    }

    /// Matches an incoming order; returns what is left of it and the fills, which are
    /// also put in both accounts' feeds.
    fn match_incoming(
        &mut self,
        symbol: u32,
        side: Side,
        limit: Option<u64>,
        quantity: u64,
        taker_order: u64,
        taker: u32,
    ) -> (u64, Vec<Fill>) {
        let mut trades: Vec<Trade> = Vec::new();
        let left =
            self.symbols[symbol as usize].match_incoming(side, limit, quantity, |trade| trades.push(trade));
        let mut fills = Vec::with_capacity(trades.len());
        for trade in trades {
            if trade.maker_open == 0 {
                self.orders.remove(&trade.maker_order);
            }
            let record = FillRecord {
                trade: self.next_trade,
                symbol,
                price: trade.price,
                quantity: trade.quantity,
                taker_side: side,
                taker_order,
                taker,
                maker_order: trade.maker_order,
                maker: trade.maker,
                maker_open: trade.maker_open,
            };
            self.next_trade += 1;
            self.record_fill(trade.maker, record);
            if taker != trade.maker {
                self.record_fill(taker, record);
            }
            fills.push(self.fill(&record));
        }
        (left, fills)
    }

    fn record_fill(&mut self, account: u32, record: FillRecord) {
        let limit = self.feed_limit as usize;
        let account = &mut self.accounts[account as usize];
        if account.feed.len() >= limit {
            account.missed += 1;
            if limit == 0 {
                return;
            }
            account.feed.pop_front();
        }
        account.feed.push_back(record);
    }

    /// A fill with its names.
    pub(crate) fn fill(&self, record: &FillRecord) -> Fill {
        Fill {
            trade: record.trade,
            symbol: self.symbols[record.symbol as usize].name.to_vec(),
            price: record.price,
            quantity: record.quantity,
            taker_side: record.taker_side,
            taker_order: record.taker_order,
            taker: self.accounts[record.taker as usize].name.to_vec(),
            maker_order: record.maker_order,
            maker: self.accounts[record.maker as usize].name.to_vec(),
            maker_open: record.maker_open,
        }
    }

    /// Where `account`'s open order `order` rests, or why it cannot be touched.
    fn open_order(&self, account: &[u8], order: u64) -> Result<Location, Refusal> {
        if order == 0 || order >= self.next_order {
            return Err(Refusal::NoSuchOrder(order));
        }
        let location = *self.orders.get(&order).ok_or(Refusal::Closed(order))?;
        if *self.accounts[location.account as usize].name != *account {
            return Err(Refusal::NotOwner(order));
        }
        Ok(location)
    }

    fn cancel(&mut self, account: &[u8], order: u64) -> Result<Response, Refusal> {
        let at = self.open_order(account, order)?;
        let resting = self.symbols[at.symbol as usize].remove(at.side, at.price, at.priority);
        self.orders.remove(&order);
        Ok(Response::Cancelled { order, quantity: resting.open })
    }

    /// Cancel/replace. At the same price, a smaller quantity is changed in place and the
    /// order keeps its place in the queue; a new price or a larger quantity takes the
    /// order out and enters it again as if new (same id): it may trade at once, and what
    /// is left joins the back of its level.
    fn replace(
        &mut self,
        account: &[u8],
        order: u64,
        quantity: u64,
        price: Option<u64>,
    ) -> Result<Response, Refusal> {
        let at = self.open_order(account, order)?;
        let price = price.unwrap_or(at.price);
        let book = &mut self.symbols[at.symbol as usize];
        if price == at.price {
            let open = book.side(at.side)[&at.price].queue[&at.priority].open;
            if quantity <= open {
                let resting = book.reduce(at.side, at.price, at.priority, quantity);
                let (filled, cancelled) = (resting.filled, resting.cancelled);
                return Ok(Response::Order(Execution {
                    order,
                    filled,
                    open: quantity,
                    cancelled,
                    fills: Vec::new(),
                }));
            }
        }
        let mut resting = book.remove(at.side, at.price, at.priority);
        self.orders.remove(&order);
        resting.cancelled += resting.open.saturating_sub(quantity);
        let (left, fills) = self.match_incoming(at.symbol, at.side, Some(price), quantity, order, at.account);
        resting.filled += quantity - left;
        resting.open = left;
        let execution =
            Execution { order, filled: resting.filled, open: left, cancelled: resting.cancelled, fills };
        if left > 0 {
            self.rest(at.symbol, at.side, price, resting);
        }
        Ok(Response::Order(execution))
    }

    fn depth(&self, symbol: &[u8], depth: u32) -> Response {
        let Some(&symbol) = self.symbol_ids.get(symbol) else {
            return Response::Book { bids: Vec::new(), asks: Vec::new() };
        };
        let book = &self.symbols[symbol as usize];
        let levels = |side| -> Vec<Level> {
            book.levels(side)
                .take(depth as usize)
                .map(|(price, level)| Level { price, quantity: level.open, orders: level.queue.len() as u64 })
                .collect()
        };
        Response::Book { bids: levels(Side::Buy), asks: levels(Side::Sell) }
    }

    fn take_fills(&mut self, account: &[u8], most: u32) -> Response {
        let Some(&id) = self.account_ids.get(account) else {
            return Response::Fills { fills: Vec::new(), missed: 0, remaining: 0 };
        };
        let account = &mut self.accounts[id as usize];
        let count = account.feed.len().min(most as usize);
        let records: Vec<FillRecord> = account.feed.drain(..count).collect();
        let missed = std::mem::take(&mut account.missed);
        let remaining = account.feed.len() as u64;
        let fills = records.iter().map(|record| self.fill(record)).collect();
        Response::Fills { fills, missed, remaining }
    }
}
