//! Responses as RESP (Redis's protocol), so that `redis-cli` is a client of the book on a
//! RESP front end ([`Response::write_resp`]), and read back by RESP clients such as the
//! load generator ([`Response::from_resp`]).
//!
//! Records are flat arrays of field names and values, as Redis answers `HGETALL` or
//! `XINFO`; refusals are errors whose first word is their code:
//!
//! ```text
//! > BUY alice ACME 100 10150
//!  1) "order"      2) (integer) 42
//!  3) "status"     4) "open"
//!  5) "filled"     6) (integer) 30
//!  7) "open"       8) (integer) 70
//!  9) "cancelled" 10) (integer) 0
//! 11) "fills"     12) 1) 1) "trade" 2) (integer) 7 3) "symbol" 4) "ACME" 5) "price" ...
//! > CANCEL alice 9
//! (error) NOORDER no order 9
//! > BOOK.DIGEST
//! 1) "digest" 2) "5f0c…" 3) "open_orders" 4) (integer) 12 5) "orders" 6) (integer) 40 ...
//! ```

use crate::apps::resp::{reply, Value};

use super::command::Side;
use super::response::{Digest, Execution, Fill, Level, Refusal, Response};

/// Field names of the records, in the order they are written.
const EXECUTION: [&str; 6] = ["order", "status", "filled", "open", "cancelled", "fills"];
const CANCELLED: [&str; 2] = ["order", "cancelled"];
const BOOK: [&str; 2] = ["bids", "asks"];
const FILLS: [&str; 3] = ["fills", "missed", "remaining"];
const DIGEST: [&str; 4] = ["digest", "open_orders", "orders", "trades"];
const FILL: [&str; 10] = [
    "trade",
    "symbol",
    "price",
    "quantity",
    "taker_side",
    "taker_order",
    "taker",
    "maker_order",
    "maker",
    "maker_open",
];

/// Quantities, prices and ids are at most 10^12 and counters count commands: all far
/// below `i64::MAX`.
fn integer(out: &mut Vec<u8>, value: u64) {
    reply::integer(out, i64::try_from(value).expect("book values fit an i64"));
}

fn status(execution: &Execution) -> &'static str {
    match (execution.open, execution.cancelled) {
        (0, 0) => "filled",
        (0, _) => "cancelled",
        _ => "open",
    }
}

/// Writes a record: its header, then each value after its name, names from a table.
struct Record<'a> {
    out: &'a mut Vec<u8>,
    names: std::slice::Iter<'static, &'static str>,
}

impl<'a> Record<'a> {
    fn new(out: &'a mut Vec<u8>, names: &'static [&'static str]) -> Record<'a> {
        reply::array(out, names.len() * 2);
        Record { out, names: names.iter() }
    }

    /// The next field's name written; where its value goes.
    fn field(&mut self) -> &mut Vec<u8> {
        let name = self.names.next().expect("as many values as names");
        reply::bulk(self.out, name.as_bytes());
        self.out
    }

    fn integer(&mut self, value: u64) -> &mut Record<'a> {
        integer(self.field(), value);
        self
    }

    fn bulk(&mut self, bytes: &[u8]) -> &mut Record<'a> {
        reply::bulk(self.field(), bytes);
        self
    }
}

fn write_fill(out: &mut Vec<u8>, fill: &Fill) {
    Record::new(out, &FILL)
        .integer(fill.trade)
        .bulk(&fill.symbol)
        .integer(fill.price)
        .integer(fill.quantity)
        .bulk(fill.taker_side.name().as_bytes())
        .integer(fill.taker_order)
        .bulk(&fill.taker)
        .integer(fill.maker_order)
        .bulk(&fill.maker)
        .integer(fill.maker_open);
}

fn write_fills(out: &mut Vec<u8>, fills: &[Fill]) {
    reply::array(out, fills.len());
    for fill in fills {
        write_fill(out, fill);
    }
}

fn write_levels(out: &mut Vec<u8>, levels: &[Level]) {
    reply::array(out, levels.len());
    for level in levels {
        reply::array(out, 3);
        for value in [level.price, level.quantity, level.orders] {
            integer(out, value);
        }
    }
}

impl Response {
    /// Appends the RESP reply to `out`: what a RESP front end writes to its client.
    pub fn write_resp(&self, out: &mut Vec<u8>) {
        match self {
            Response::Order(execution) => {
                let mut record = Record::new(out, &EXECUTION);
                record
                    .integer(execution.order)
                    .bulk(status(execution).as_bytes())
                    .integer(execution.filled)
                    .integer(execution.open)
                    .integer(execution.cancelled);
                write_fills(record.field(), &execution.fills);
            }
            Response::Cancelled { order, quantity } => {
                Record::new(out, &CANCELLED).integer(*order).integer(*quantity);
            }
            Response::Book { bids, asks } => {
                let mut record = Record::new(out, &BOOK);
                write_levels(record.field(), bids);
                write_levels(record.field(), asks);
            }
            Response::Fills { fills, missed, remaining } => {
                let mut record = Record::new(out, &FILLS);
                write_fills(record.field(), fills);
                record.integer(*missed).integer(*remaining);
            }
            Response::Digest(digest) => {
                Record::new(out, &DIGEST)
                    .bulk(format!("{:032x}", digest.digest).as_bytes())
                    .integer(digest.open_orders)
                    .integer(digest.orders)
                    .integer(digest.trades);
            }
            Response::Refused(refusal) => reply::error(out, format!("{} {refusal}", refusal.code())),
        }
    }

    /// The response a RESP reply written by [`Response::write_resp`] stands for; `None`
    /// for any other reply (a redirection, a front end's own error).
    pub fn from_resp(value: &Value) -> Option<Response> {
        if let Value::Error(text) = value {
            return refusal(std::str::from_utf8(text).ok()?).map(Response::Refused);
        }
        let items = value.as_array()?;
        let first = items.first()?.as_bytes()?;
        let second = items.get(2).and_then(Value::as_bytes);
        Some(match (first, second) {
            (b"order", Some(b"status")) => {
                let [order, state, filled, open, cancelled, fills] = fields(items, &EXECUTION)?;
                let execution = Execution {
                    order: uint(order)?,
                    filled: uint(filled)?,
                    open: uint(open)?,
                    cancelled: uint(cancelled)?,
                    fills: read_fills(fills)?,
                };
                (state.as_bytes()? == status(&execution).as_bytes()).then_some(Response::Order(execution))?
            }
            (b"order", _) => {
                let [order, quantity] = fields(items, &CANCELLED)?;
                Response::Cancelled { order: uint(order)?, quantity: uint(quantity)? }
            }
            (b"bids", _) => {
                let [bids, asks] = fields(items, &BOOK)?;
                Response::Book { bids: read_levels(bids)?, asks: read_levels(asks)? }
            }
            (b"fills", _) => {
                let [fills, missed, remaining] = fields(items, &FILLS)?;
                Response::Fills {
                    fills: read_fills(fills)?,
                    missed: uint(missed)?,
                    remaining: uint(remaining)?,
                }
            }
            (b"digest", _) => {
                let [digest, open_orders, orders, trades] = fields(items, &DIGEST)?;
                let hex = std::str::from_utf8(digest.as_bytes()?).ok().filter(|hex| hex.len() == 32)?;
                Response::Digest(Digest {
                    digest: u128::from_str_radix(hex, 16).ok()?,
                    open_orders: uint(open_orders)?,
                    orders: uint(orders)?,
                    trades: uint(trades)?,
                })
            }
            _ => return None,
        })
    }
}

/// The values of a record with exactly the fields `names`, in that order.
fn fields<'a, const N: usize>(items: &'a [Value], names: &[&str; N]) -> Option<[&'a Value; N]> {
    if items.len() != 2 * N {
        return None;
    }
    let mut values = [&items[0]; N];
    for (index, field) in names.iter().enumerate() {
        if items[2 * index].as_bytes()? != field.as_bytes() {
            return None;
        }
        values[index] = &items[2 * index + 1];
    }
    Some(values)
}

fn uint(value: &Value) -> Option<u64> {
    u64::try_from(value.as_integer()?).ok()
}

fn read_fills(value: &Value) -> Option<Vec<Fill>> {
    let read = |fill: &Value| -> Option<Fill> {
        let [trade, symbol, price, quantity, taker_side, taker_order, taker, maker_order, maker, maker_open] =
            fields(fill.as_array()?, &FILL)?;
        Some(Fill {
            trade: uint(trade)?,
            symbol: symbol.as_bytes()?.to_vec(),
            price: uint(price)?,
            quantity: uint(quantity)?,
            taker_side: [Side::Buy, Side::Sell]
                .into_iter()
                .find(|side| Some(side.name().as_bytes()) == taker_side.as_bytes())?,
            taker_order: uint(taker_order)?,
            taker: taker.as_bytes()?.to_vec(),
            maker_order: uint(maker_order)?,
            maker: maker.as_bytes()?.to_vec(),
            maker_open: uint(maker_open)?,
        })
    };
    value.as_array()?.iter().map(read).collect()
}

fn read_levels(value: &Value) -> Option<Vec<Level>> {
    let read = |level: &Value| -> Option<Level> {
        let [price, quantity, orders] = level.as_array()? else { return None };
        Some(Level { price: uint(price)?, quantity: uint(quantity)?, orders: uint(orders)? })
    };
    value.as_array()?.iter().map(read).collect()
}

/// The refusal an error line was written for: the one whose own words, code first, are
/// exactly `text` (a refusal names at most one number, its last).
fn refusal(text: &str) -> Option<Refusal> {
    let (_, message) = text.split_once(' ')?;
    let mut candidates = Vec::new();
    if let Some(why) = message.strip_prefix("malformed command: ") {
        candidates.push(Refusal::Malformed(why.to_string()));
    }
    let last_number = message.rsplit(|c: char| !c.is_ascii_digit()).find(|digits| !digits.is_empty());
    if let Some(number) = last_number.and_then(|digits| digits.parse::<u64>().ok()) {
        candidates.extend([
            Refusal::BadQuantity(number),
            Refusal::BadPrice(number),
            Refusal::NoSuchOrder(number),
            Refusal::Closed(number),
            Refusal::NotOwner(number),
        ]);
        if let Ok(depth) = u32::try_from(number) {
            candidates.push(Refusal::BadDepth(depth));
        }
        if let Ok(max) = usize::try_from(number) {
            candidates.extend(["account", "symbol"].map(|what| Refusal::BadName { what, max }));
        }
    }
    candidates.into_iter().find(|refusal| format!("{} {refusal}", refusal.code()) == text)
}

/// The RESP bytes for the response bytes a replica gave back for an order-book command.
pub fn resp_reply(response: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match Response::decode(response) {
        Some(response) => response.write_resp(&mut out),
        None => reply::error(&mut out, "ERR the order book's response does not decode"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through_resp(response: &Response) -> Option<Response> {
        let mut bytes = Vec::new();
        response.write_resp(&mut bytes);
        let (value, len) = Value::decode(&bytes).unwrap().unwrap();
        assert_eq!(len, bytes.len());
        Response::from_resp(&value)
    }

    #[test]
    fn every_refusal_and_a_digest_read_back() {
        let refusals = [
            Refusal::BadQuantity(0),
            Refusal::BadPrice(1_000_000_000_001),
            Refusal::BadDepth(0),
            Refusal::BadName { what: "account", max: 64 },
            Refusal::BadName { what: "symbol", max: 16 },
            Refusal::NoSuchOrder(9),
            Refusal::Closed(12),
            Refusal::NotOwner(3),
            Refusal::Malformed("unknown operation 9".into()),
        ];
        for refusal in refusals {
            let response = Response::Refused(refusal);
            assert_eq!(through_resp(&response), Some(response));
        }
        let digest =
            Response::Digest(Digest { digest: u128::MAX - 5, open_orders: 3, orders: 10, trades: 4 });
        assert_eq!(through_resp(&digest), Some(digest));
    }

    #[test]
    fn other_replies_are_not_responses() {
        for reply in [
            Value::Error(b"MOVED 0 127.0.0.1:7001".to_vec()),
            Value::Error(b"NOORDER no order x".to_vec()),
            Value::Simple(b"OK".to_vec()),
            Value::Array(vec![Value::Bulk(b"order".to_vec()), Value::Integer(-1)]),
            Value::Array(vec![Value::Bulk(b"bids".to_vec())]),
        ] {
            assert_eq!(Response::from_resp(&reply), None, "{reply:?}");
        }
    }
}
