//! [`Response`]: what the book answers, and its binary encoding (the bytes a replica
//! hands back for a command; [`Response::decode`] reads them, [`super::reply`] turns
//! them into RESP).

use crate::codec::Reader;

use super::command::Side;

/// Why a command was refused. The book is left as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Zero, or more than [`super::QUANTITY_MAX`].
    #[error("quantity must be a positive integer of at most 10^12, not {0}")]
    BadQuantity(u64),
    /// Zero, or more than [`super::PRICE_MAX`].
    #[error("price must be a positive integer number of ticks of at most 10^12, not {0}")]
    BadPrice(u64),
    /// A `BOOK` depth of zero or over [`super::DEPTH_MAX`].
    #[error("depth must be between 1 and 1000, not {0}")]
    BadDepth(u32),
    /// An empty or too long name, or one with spaces.
    #[error("{what} must be 1 to {max} bytes without spaces")]
    BadName {
        /// `account` or `symbol`.
        what: &'static str,
        /// The longest allowed.
        max: usize,
    },
    /// No order was ever given that id.
    #[error("no order {0}")]
    NoSuchOrder(u64),
    /// The order is filled or cancelled.
    #[error("order {0} is no longer open (filled or cancelled)")]
    Closed(u64),
    /// The order is someone else's.
    #[error("order {0} belongs to another account")]
    NotOwner(u64),
    /// The command bytes do not decode.
    #[error("malformed command: {0}")]
    Malformed(String),
}

impl Refusal {
    /// The word a RESP error starts with, as Redis's `WRONGTYPE` or `NOSCRIPT`.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BadQuantity(_) => "BADQTY",
            Refusal::BadPrice(_) => "BADPRICE",
            Refusal::BadDepth(_) | Refusal::Malformed(_) => "ERR",
            Refusal::BadName { .. } => "BADNAME",
            Refusal::NoSuchOrder(_) => "NOORDER",
            Refusal::Closed(_) => "CLOSED",
            Refusal::NotOwner(_) => "NOTOWNER",
        }
    }
}

/// A trade between a resting order (the maker) and an incoming one (the taker), at the
/// maker's price.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fill {
    /// The trade's number, from 1, in the order trades happened.
    pub trade: u64,
    /// The symbol.
    pub symbol: Vec<u8>,
    /// The price, in ticks.
    pub price: u64,
    /// The quantity.
    pub quantity: u64,
    /// The side of the incoming order.
    pub taker_side: Side,
    /// The incoming order.
    pub taker_order: u64,
    /// Its account.
    pub taker: Vec<u8>,
    /// The resting order.
    pub maker_order: u64,
    /// Its account.
    pub maker: Vec<u8>,
    /// What is left open of the resting order after this trade.
    pub maker_open: u64,
}

/// Where an order stands after a submit or a replace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Execution {
    /// Its id.
    pub order: u64,
    /// Filled so far, in all.
    pub filled: u64,
    /// Resting in the book now.
    pub open: u64,
    /// Cancelled so far, in all (a market order's unfilled part, reductions by replace).
    pub cancelled: u64,
    /// The trades this command made, in order.
    pub fills: Vec<Fill>,
}

/// One price level of a `BOOK` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    /// Its price.
    pub price: u64,
    /// Open quantity at that price.
    pub quantity: u64,
    /// Orders at that price.
    pub orders: u64,
}

/// The book's answer to a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// To a submit or a replace.
    Order(Execution),
    /// To a cancel: the quantity cancelled.
    Cancelled {
        /// The order.
        order: u64,
        /// What was open and is now cancelled.
        quantity: u64,
    },
    /// To `BOOK`: best prices first.
    Book {
        /// Bids, highest first.
        bids: Vec<Level>,
        /// Asks, lowest first.
        asks: Vec<Level>,
    },
    /// To `FILLS`: the account's fills, oldest first.
    Fills {
        /// The fills taken.
        fills: Vec<Fill>,
        /// Fills dropped unread since the last `FILLS`, because the account's feed was full.
        missed: u64,
        /// Fills still waiting (when more than asked for were there).
        remaining: u64,
    },
    /// To `DIGEST`.
    Digest(Digest),
    /// The command was refused.
    Refused(Refusal),
}

/// A digest of the whole state, for replicas to compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    /// XXH3-128 of the state's snapshot, whose bytes are canonical (equal states, equal
    /// bytes).
    pub digest: u128,
    /// Orders open now.
    pub open_orders: u64,
    /// Orders entered so far (the last id given).
    pub orders: u64,
    /// Trades so far.
    pub trades: u64,
}

/// The encoding version of responses.
const RESPONSE_VERSION: u8 = 1;

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).expect("short").to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_fills(out: &mut Vec<u8>, fills: &[Fill]) {
    put_u64(out, fills.len() as u64);
    for fill in fills {
        for value in
            [fill.trade, fill.price, fill.quantity, fill.taker_order, fill.maker_order, fill.maker_open]
        {
            put_u64(out, value);
        }
        out.push(fill.taker_side.to_byte());
        put_bytes(out, &fill.symbol);
        put_bytes(out, &fill.taker);
        put_bytes(out, &fill.maker);
    }
}

fn put_levels(out: &mut Vec<u8>, levels: &[Level]) {
    put_u64(out, levels.len() as u64);
    for level in levels {
        for value in [level.price, level.quantity, level.orders] {
            put_u64(out, value);
        }
    }
}

fn get_bytes(reader: &mut Reader<'_>) -> Option<Vec<u8>> {
    let len = reader.u32()?;
    Some(reader.bytes(usize::try_from(len).ok()?)?.to_vec())
}

fn get_fills(reader: &mut Reader<'_>) -> Option<Vec<Fill>> {
    let count = reader.u64()?;
    let mut fills = Vec::new();
    for _ in 0..count {
        let (trade, price, quantity) = (reader.u64()?, reader.u64()?, reader.u64()?);
        let (taker_order, maker_order, maker_open) = (reader.u64()?, reader.u64()?, reader.u64()?);
        let taker_side = Side::from_byte(reader.u8()?)?;
        let (symbol, taker, maker) = (get_bytes(reader)?, get_bytes(reader)?, get_bytes(reader)?);
        fills.push(Fill {
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
        });
    }
    Some(fills)
}

fn get_levels(reader: &mut Reader<'_>) -> Option<Vec<Level>> {
    let count = reader.u64()?;
    let mut levels = Vec::new();
    for _ in 0..count {
        levels.push(Level { price: reader.u64()?, quantity: reader.u64()?, orders: reader.u64()? });
    }
    Some(levels)
}

impl Response {
    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(RESPONSE_VERSION);
        match self {
            Response::Order(execution) => {
                out.push(1);
                for value in [execution.order, execution.filled, execution.open, execution.cancelled] {
                    put_u64(out, value);
                }
                put_fills(out, &execution.fills);
            }
            Response::Cancelled { order, quantity } => {
                out.push(2);
                put_u64(out, *order);
                put_u64(out, *quantity);
            }
            Response::Book { bids, asks } => {
                out.push(3);
                put_levels(out, bids);
                put_levels(out, asks);
            }
            Response::Fills { fills, missed, remaining } => {
                out.push(4);
                put_u64(out, *missed);
                put_u64(out, *remaining);
                put_fills(out, fills);
            }
            Response::Refused(refusal) => {
                out.push(5);
                encode_refusal(refusal, out);
            }
            Response::Digest(digest) => {
                out.push(6);
                out.extend_from_slice(&digest.digest.to_le_bytes());
                for value in [digest.open_orders, digest.orders, digest.trades] {
                    put_u64(out, value);
                }
            }
        }
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes a response.
    pub fn decode(bytes: &[u8]) -> Option<Response> {
        let mut reader = Reader::new(bytes);
        if reader.u8()? != RESPONSE_VERSION {
            return None;
        }
        let response = match reader.u8()? {
            1 => {
                let [order, filled, open, cancelled] =
                    [reader.u64()?, reader.u64()?, reader.u64()?, reader.u64()?];
                Response::Order(Execution { order, filled, open, cancelled, fills: get_fills(&mut reader)? })
            }
            2 => Response::Cancelled { order: reader.u64()?, quantity: reader.u64()? },
            3 => Response::Book { bids: get_levels(&mut reader)?, asks: get_levels(&mut reader)? },
            4 => {
                let (missed, remaining) = (reader.u64()?, reader.u64()?);
                Response::Fills { fills: get_fills(&mut reader)?, missed, remaining }
            }
            5 => Response::Refused(decode_refusal(&mut reader)?),
            6 => {
                let (low, high) = (reader.u64()?, reader.u64()?);
                Response::Digest(Digest {
                    digest: u128::from(low) | (u128::from(high) << 64),
                    open_orders: reader.u64()?,
                    orders: reader.u64()?,
                    trades: reader.u64()?,
                })
            }
            _ => return None,
        };
        reader.is_empty().then_some(response)
    }
}

fn encode_refusal(refusal: &Refusal, out: &mut Vec<u8>) {
    let (tag, value) = match *refusal {
        Refusal::BadQuantity(quantity) => (1, quantity),
        Refusal::BadPrice(price) => (2, price),
        Refusal::BadDepth(depth) => (3, u64::from(depth)),
        Refusal::BadName { what, max } => {
            out.extend_from_slice(&[4, u8::from(what == "symbol")]);
            return put_u64(out, max as u64);
        }
        Refusal::NoSuchOrder(order) => (5, order),
        Refusal::Closed(order) => (6, order),
        Refusal::NotOwner(order) => (7, order),
        Refusal::Malformed(ref why) => {
            out.push(8);
            return put_bytes(out, why.as_bytes());
        }
    };
    out.push(tag);
    put_u64(out, value);
}

fn decode_refusal(reader: &mut Reader<'_>) -> Option<Refusal> {
    Some(match reader.u8()? {
        1 => Refusal::BadQuantity(reader.u64()?),
        2 => Refusal::BadPrice(reader.u64()?),
        3 => Refusal::BadDepth(u32::try_from(reader.u64()?).ok()?),
        4 => {
            let what = if reader.u8()? == 1 { "symbol" } else { "account" };
            Refusal::BadName { what, max: usize::try_from(reader.u64()?).ok()? }
        }
        5 => Refusal::NoSuchOrder(reader.u64()?),
        6 => Refusal::Closed(reader.u64()?),
        7 => Refusal::NotOwner(reader.u64()?),
        8 => Refusal::Malformed(String::from_utf8(get_bytes(reader)?).ok()?),
        _ => return None,
    })
}
