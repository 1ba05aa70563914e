//! The book as bytes, and back.
//!
//! Version 1, little-endian; a name is one length byte and its bytes:
//!
//! ```text
//! u8 version, u64 next order, u64 next trade, u64 next priority, u32 feed limit
//! u32 accounts; each: name, u64 missed, u32 fills; each fill:
//!     u64 trade, u32 symbol, u64 price, u64 quantity, u8 taker side, u64 taker order,
//!     u32 taker, u64 maker order, u32 maker, u64 maker open
//! u32 symbols; each: name, then bids and asks; each side: u32 levels; each level:
//!     u64 price, u32 orders; each order (in priority order):
//!     u64 priority, u64 id, u32 account, u64 open, u64 filled, u64 cancelled
//! ```
//!
//! Everything is written in a fixed order (accounts and symbols by number, levels by
//! price, queues by priority), so equal books give equal bytes — replicas compare
//! snapshots to check they agree. Restoring checks every invariant the engine relies on
//! and refuses bytes that break one.

use std::collections::{HashMap, VecDeque};

use crate::codec::Reader;
use crate::state_machine::RestoreError;

use super::book::{Resting, SymbolBook};
use super::command::{Side, ACCOUNT_BYTES_MAX, PRICE_MAX, QUANTITY_MAX, SYMBOL_BYTES_MAX};
use super::engine::{Account, Engine, FillRecord, Location};

const SNAPSHOT_VERSION: u8 = 1;

fn put_name(out: &mut Vec<u8>, name: &[u8]) {
    out.push(u8::try_from(name.len()).expect("names are short"));
    out.extend_from_slice(name);
}

fn put_fill(out: &mut Vec<u8>, fill: &FillRecord) {
    out.extend_from_slice(&fill.trade.to_le_bytes());
    out.extend_from_slice(&fill.symbol.to_le_bytes());
    out.extend_from_slice(&fill.price.to_le_bytes());
    out.extend_from_slice(&fill.quantity.to_le_bytes());
    out.push(fill.taker_side.to_byte());
    out.extend_from_slice(&fill.taker_order.to_le_bytes());
    out.extend_from_slice(&fill.taker.to_le_bytes());
    out.extend_from_slice(&fill.maker_order.to_le_bytes());
    out.extend_from_slice(&fill.maker.to_le_bytes());
    out.extend_from_slice(&fill.maker_open.to_le_bytes());
}

pub(crate) fn encode(engine: &Engine) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(SNAPSHOT_VERSION);
    for counter in [engine.next_order, engine.next_trade, engine.next_priority] {
        out.extend_from_slice(&counter.to_le_bytes());
    }
    out.extend_from_slice(&engine.feed_limit.to_le_bytes());
    out.extend_from_slice(&(engine.accounts.len() as u32).to_le_bytes());
    for account in &engine.accounts {
        put_name(&mut out, &account.name);
        out.extend_from_slice(&account.missed.to_le_bytes());
        out.extend_from_slice(&(account.feed.len() as u32).to_le_bytes());
        for fill in &account.feed {
            put_fill(&mut out, fill);
        }
    }
    out.extend_from_slice(&(engine.symbols.len() as u32).to_le_bytes());
    for book in &engine.symbols {
        put_name(&mut out, &book.name);
        for levels in [&book.bids, &book.asks] {
            out.extend_from_slice(&(levels.len() as u32).to_le_bytes());
            for (price, level) in levels {
                out.extend_from_slice(&price.to_le_bytes());
                out.extend_from_slice(&(level.queue.len() as u32).to_le_bytes());
                for (priority, order) in &level.queue {
                    for value in [*priority, order.id] {
                        out.extend_from_slice(&value.to_le_bytes());
                    }
                    out.extend_from_slice(&order.account.to_le_bytes());
                    for value in [order.open, order.filled, order.cancelled] {
                        out.extend_from_slice(&value.to_le_bytes());
                    }
                }
            }
        }
    }
    out
}

type Result<T> = std::result::Result<T, RestoreError>;

fn refuse<T>(why: impl Into<String>) -> Result<T> {
    Err(RestoreError(format!("order book snapshot: {}", why.into())))
}

/// Reads fields, refusing a snapshot cut short.
struct Fields<'a>(Reader<'a>);

impl Fields<'_> {
    fn u8(&mut self) -> Result<u8> {
        self.0.u8().map_or_else(|| refuse("cut short"), Ok)
    }

    fn u32(&mut self) -> Result<u32> {
        self.0.u32().map_or_else(|| refuse("cut short"), Ok)
    }

    fn u64(&mut self) -> Result<u64> {
        self.0.u64().map_or_else(|| refuse("cut short"), Ok)
    }

    fn name(&mut self, max: usize) -> Result<Box<[u8]>> {
        let len = usize::from(self.u8()?);
        let name = self.0.bytes(len).map_or_else(|| refuse("cut short"), Ok)?;
        if name.is_empty() || name.len() > max || name.iter().any(u8::is_ascii_whitespace) {
            return refuse("a name that is not valid");
        }
        Ok(name.into())
    }
}

fn fill(fields: &mut Fields<'_>, engine: &Engine) -> Result<FillRecord> {
    let (trade, symbol, price, quantity) = (fields.u64()?, fields.u32()?, fields.u64()?, fields.u64()?);
    let taker_side = Side::from_byte(fields.u8()?).map_or_else(|| refuse("a side that is not one"), Ok)?;
    let (taker_order, taker, maker_order, maker) =
        (fields.u64()?, fields.u32()?, fields.u64()?, fields.u32()?);
    let maker_open = fields.u64()?;
    if trade == 0 || trade >= engine.next_trade {
        return refuse(format!("fill {trade} was never made"));
    }
    if taker_order >= engine.next_order || maker_order >= engine.next_order || quantity == 0 || price == 0 {
        return refuse(format!("fill {trade} is not a trade"));
    }
    Ok(FillRecord {
        trade,
        symbol,
        price,
        quantity,
        taker_side,
        taker_order,
        taker,
        maker_order,
        maker,
        maker_open,
    })
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Engine> {
    let mut fields = Fields(Reader::new(bytes));
    let version = fields.u8()?;
    if version != SNAPSHOT_VERSION {
        return refuse(format!("version {version}, this replica knows {SNAPSHOT_VERSION}"));
    }
    let mut engine = Engine::new(0);
    engine.next_order = fields.u64()?;
    engine.next_trade = fields.u64()?;
    engine.next_priority = fields.u64()?;
    engine.feed_limit = fields.u32()?;
    if engine.next_order == 0 || engine.next_trade == 0 || engine.next_priority == 0 {
        return refuse("counters start at 1");
    }
    // Fills name accounts and symbols that are read after them: those numbers are
    // checked at the end.
    let account_count = fields.u32()?;
    let mut records = Vec::new();
    for id in 0..account_count {
        let name = fields.name(ACCOUNT_BYTES_MAX)?;
        if engine.account_ids.insert(name.clone(), id).is_some() {
            return refuse("an account twice");
        }
        let missed = fields.u64()?;
        let count = fields.u32()?;
        if count > engine.feed_limit {
            return refuse("a feed longer than its limit");
        }
        engine.accounts.push(Account { name, feed: VecDeque::new(), missed });
        for _ in 0..count {
            records.push((id as usize, fill(&mut fields, &engine)?));
        }
    }
    let symbol_count = fields.u32()?;
    for id in 0..symbol_count {
        let name = fields.name(SYMBOL_BYTES_MAX)?;
        if engine.symbol_ids.insert(name.clone(), id).is_some() {
            return refuse("a symbol twice");
        }
        let mut book = SymbolBook::new(&name);
        for side in [Side::Buy, Side::Sell] {
            let counters = (engine.next_order, engine.next_priority);
            read_side(&mut fields, &mut engine.orders, &mut book, side, id, account_count, counters)?;
        }
        if let (Some(bid), Some(ask)) = (book.best(Side::Buy), book.best(Side::Sell)) {
            if bid >= ask {
                return refuse(format!("a crossed book: bid {bid} at or above ask {ask}"));
            }
        }
        engine.symbols.push(book);
    }
    for (id, record) in records {
        if record.symbol >= symbol_count || record.taker >= account_count || record.maker >= account_count {
            return refuse(format!("fill {} names a symbol or an account that does not exist", record.trade));
        }
        engine.accounts[id].feed.push_back(record);
    }
    if !fields.0.is_empty() {
        return refuse("bytes after the book");
    }
    Ok(engine)
}

fn read_side(
    fields: &mut Fields<'_>,
    orders: &mut HashMap<u64, Location>,
    book: &mut SymbolBook,
    side: Side,
    symbol: u32,
    accounts: u32,
    (next_order, next_priority): (u64, u64),
) -> Result<()> {
    let levels = fields.u32()?;
    for _ in 0..levels {
        let price = fields.u64()?;
        let count = fields.u32()?;
        if price == 0 || price > PRICE_MAX || count == 0 || book.side(side).contains_key(&price) {
            return refuse(format!("a {} level at {price} that cannot be", side.name()));
        }
        for _ in 0..count {
            let (priority, id, account) = (fields.u64()?, fields.u64()?, fields.u32()?);
            let (open, filled, cancelled) = (fields.u64()?, fields.u64()?, fields.u64()?);
            let fresh = book.side(side).get(&price).is_none_or(|level| !level.queue.contains_key(&priority));
            if id == 0 || id >= next_order || priority == 0 || priority >= next_priority || !fresh {
                return refuse(format!("order {id} has an id or a priority not given yet"));
            }
            if account >= accounts || open == 0 || open > QUANTITY_MAX {
                return refuse(format!("order {id} is not an open order of an account"));
            }
            let location = Location { symbol, side, price, priority, account };
            if orders.insert(id, location).is_some() {
                return refuse(format!("order {id} rests twice"));
            }
            book.insert(side, price, priority, Resting { id, account, open, filled, cancelled });
        }
    }
    Ok(())
}
