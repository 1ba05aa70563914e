//! [`Command`]: what clients ask of the book, its checks, and its binary encoding.
//!
//! # Encoding, version 1
//!
//! Little-endian; a name is one length byte then its bytes.
//!
//! ```text
//! byte 0      version (1)
//! byte 1      operation: 1 submit, 2 cancel, 3 replace, 4 book, 5 fills, 6 digest
//! submit      side (0 buy, 1 sell), has price (0/1), account, symbol, quantity u64, [price u64]
//! cancel      account, order u64
//! replace     has price (0/1), account, order u64, quantity u64, [price u64]
//! book        symbol, depth u32
//! fills       account, most u32
//! digest      (nothing)
//! ```
//!
//! A command is 2 to 110 bytes: well within one log slot. A later version adds a new
//! version byte; a replica refuses versions it does not know with a response that says
//! so, rather than guessing.

use crate::codec::Reader;

use super::response::Refusal;

/// The encoding version this code writes.
pub const VERSION: u8 = 1;
/// Longest account name, in bytes.
pub const ACCOUNT_BYTES_MAX: usize = 64;
/// Longest symbol, in bytes.
pub const SYMBOL_BYTES_MAX: usize = 16;
/// Largest quantity of one order (sums of many stay far from overflowing a u64).
pub const QUANTITY_MAX: u64 = 1_000_000_000_000;
/// Largest price, in ticks.
pub const PRICE_MAX: u64 = 1_000_000_000_000;
/// Most price levels a `BOOK` answer lists per side.
pub const DEPTH_MAX: u32 = 1_000;

/// Which side of the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Bids: buying.
    Buy,
    /// Asks: selling.
    Sell,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// Whether an order on this side at `limit` may trade at `price`.
    pub fn accepts(self, limit: u64, price: u64) -> bool {
        match self {
            Side::Buy => price <= limit,
            Side::Sell => price >= limit,
        }
    }

    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Side::Buy => 0,
            Side::Sell => 1,
        }
    }

    pub(crate) fn from_byte(byte: u8) -> Option<Side> {
        match byte {
            0 => Some(Side::Buy),
            1 => Some(Side::Sell),
            _ => None,
        }
    }

    /// `"buy"` or `"sell"`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

/// A new order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    /// Whose.
    pub account: Vec<u8>,
    /// What.
    pub symbol: Vec<u8>,
    /// Buy or sell.
    pub side: Side,
    /// How much.
    pub quantity: u64,
    /// The worst price it may trade at, in ticks; `None`: a market order, which trades
    /// what it can at once and cancels the rest.
    pub price: Option<u64>,
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Enter an order.
    Submit(NewOrder),
    /// Cancel what is left of an open order.
    Cancel {
        /// Whose (must own the order).
        account: Vec<u8>,
        /// Which.
        order: u64,
    },
    /// Change an open order's open quantity and, optionally, its price. Reducing the
    /// quantity at the same price keeps the order's place in its queue; a new price or
    /// more quantity sends it to the back (and a new price may make it trade at once).
    Replace {
        /// Whose (must own the order).
        account: Vec<u8>,
        /// Which.
        order: u64,
        /// The open quantity it should have.
        quantity: u64,
        /// Its new price; `None` keeps the price.
        price: Option<u64>,
    },
    /// The depth of a symbol's book: price levels with their total open quantity.
    Book {
        /// Which symbol.
        symbol: Vec<u8>,
        /// Levels per side at most.
        depth: u32,
    },
    /// Takes (and forgets) the fills an account took part in, oldest first.
    Fills {
        /// Whose.
        account: Vec<u8>,
        /// How many at most.
        most: u32,
    },
    /// A digest of the whole state (books, feeds, counters): equal on every replica that
    /// applied the same commands.
    Digest,
}

fn check_name(name: &[u8], max: usize, what: &'static str) -> Result<(), Refusal> {
    if name.is_empty() || name.len() > max || name.iter().any(|byte| byte.is_ascii_whitespace()) {
        return Err(Refusal::BadName { what, max });
    }
    Ok(())
}

fn check_quantity(quantity: u64) -> Result<(), Refusal> {
    if quantity == 0 || quantity > QUANTITY_MAX {
        return Err(Refusal::BadQuantity(quantity));
    }
    Ok(())
}

fn check_price(price: Option<u64>) -> Result<(), Refusal> {
    match price {
        Some(price) if price == 0 || price > PRICE_MAX => Err(Refusal::BadPrice(price)),
        _ => Ok(()),
    }
}

impl Command {
    /// Whether it leaves the book as it was (it can be answered without the log by a
    /// replica that may answer reads).
    pub fn is_read_only(&self) -> bool {
        matches!(self, Command::Book { .. } | Command::Digest)
    }

    /// Checks what can be checked without the book: names, quantities, prices.
    pub fn validate(&self) -> Result<(), Refusal> {
        match self {
            Command::Submit(order) => {
                check_name(&order.account, ACCOUNT_BYTES_MAX, "account")?;
                check_name(&order.symbol, SYMBOL_BYTES_MAX, "symbol")?;
                check_quantity(order.quantity)?;
                check_price(order.price)
            }
            Command::Cancel { account, .. } => check_name(account, ACCOUNT_BYTES_MAX, "account"),
            Command::Replace { account, quantity, price, .. } => {
                check_name(account, ACCOUNT_BYTES_MAX, "account")?;
                check_quantity(*quantity)?;
                check_price(*price)
            }
            Command::Book { symbol, depth } => {
                check_name(symbol, SYMBOL_BYTES_MAX, "symbol")?;
                if *depth == 0 || *depth > DEPTH_MAX {
                    return Err(Refusal::BadDepth(*depth));
                }
                Ok(())
            }
            Command::Fills { account, .. } => check_name(account, ACCOUNT_BYTES_MAX, "account"),
            Command::Digest => Ok(()),
        }
    }

    /// Appends the encoding to `out`.
    ///
    /// # Panics
    ///
    /// If a name is longer than 255 bytes: such a command cannot be encoded
    /// ([`Command::validate`] refuses it first; [`super::parse`] validates).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let name = |out: &mut Vec<u8>, name: &[u8]| {
            out.push(u8::try_from(name.len()).expect("names are validated before encoding"));
            out.extend_from_slice(name);
        };
        out.push(VERSION);
        match self {
            Command::Submit(order) => {
                out.extend_from_slice(&[1, order.side.to_byte(), u8::from(order.price.is_some())]);
                name(out, &order.account);
                name(out, &order.symbol);
                out.extend_from_slice(&order.quantity.to_le_bytes());
                if let Some(price) = order.price {
                    out.extend_from_slice(&price.to_le_bytes());
                }
            }
            Command::Cancel { account, order } => {
                out.push(2);
                name(out, account);
                out.extend_from_slice(&order.to_le_bytes());
            }
            Command::Replace { account, order, quantity, price } => {
                out.extend_from_slice(&[3, u8::from(price.is_some())]);
                name(out, account);
                out.extend_from_slice(&order.to_le_bytes());
                out.extend_from_slice(&quantity.to_le_bytes());
                if let Some(price) = price {
                    out.extend_from_slice(&price.to_le_bytes());
                }
            }
            Command::Book { symbol, depth } => {
                out.push(4);
                name(out, symbol);
                out.extend_from_slice(&depth.to_le_bytes());
            }
            Command::Fills { account, most } => {
                out.push(5);
                name(out, account);
                out.extend_from_slice(&most.to_le_bytes());
            }
            Command::Digest => out.push(6),
        }
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        self.encode(&mut out);
        out
    }

    /// Decodes a command (its structure only: [`Command::validate`] checks the values).
    pub fn decode(bytes: &[u8]) -> Result<Command, Refusal> {
        let malformed = |why: &str| Refusal::Malformed(why.to_string());
        let mut reader = Reader::new(bytes);
        let version = reader.u8().ok_or_else(|| malformed("empty command"))?;
        if version != VERSION {
            return Err(Refusal::Malformed(format!(
                "command encoding version {version}, this replica knows {VERSION}"
            )));
        }
        let cut = || malformed("the command is cut short");
        let name = |reader: &mut Reader<'_>| -> Result<Vec<u8>, Refusal> {
            let len = reader.u8().ok_or_else(cut)?;
            Ok(reader.bytes(usize::from(len)).ok_or_else(cut)?.to_vec())
        };
        let flag = |reader: &mut Reader<'_>| match reader.u8() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(_) => Err(malformed("a flag is neither 0 nor 1")),
            None => Err(cut()),
        };
        let command = match reader.u8().ok_or_else(cut)? {
            1 => {
                let side =
                    Side::from_byte(reader.u8().ok_or_else(cut)?).ok_or_else(|| malformed("unknown side"))?;
                let priced = flag(&mut reader)?;
                let account = name(&mut reader)?;
                let symbol = name(&mut reader)?;
                let quantity = reader.u64().ok_or_else(cut)?;
                let price = if priced { Some(reader.u64().ok_or_else(cut)?) } else { None };
                Command::Submit(NewOrder { account, symbol, side, quantity, price })
            }
            2 => {
                let account = name(&mut reader)?;
                Command::Cancel { account, order: reader.u64().ok_or_else(cut)? }
            }
            3 => {
                let priced = flag(&mut reader)?;
                let account = name(&mut reader)?;
                let order = reader.u64().ok_or_else(cut)?;
                let quantity = reader.u64().ok_or_else(cut)?;
                let price = if priced { Some(reader.u64().ok_or_else(cut)?) } else { None };
                Command::Replace { account, order, quantity, price }
            }
            4 => {
                let symbol = name(&mut reader)?;
                Command::Book { symbol, depth: reader.u32().ok_or_else(cut)? }
            }
            5 => {
                let account = name(&mut reader)?;
                Command::Fills { account, most: reader.u32().ok_or_else(cut)? }
            }
            6 => Command::Digest,
            other => return Err(Refusal::Malformed(format!("unknown operation {other}"))),
        };
        if !reader.is_empty() {
            return Err(malformed("bytes after the command"));
        }
        Ok(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Command> {
        let order = |side, price| {
            Command::Submit(NewOrder {
                account: b"alice".to_vec(),
                symbol: b"ACME".to_vec(),
                side,
                quantity: 100,
                price,
            })
        };
        vec![
            order(Side::Buy, Some(101)),
            order(Side::Sell, None),
            Command::Cancel { account: b"bob".to_vec(), order: 7 },
            Command::Replace { account: b"bob".to_vec(), order: 7, quantity: 5, price: None },
            Command::Replace { account: b"bob".to_vec(), order: 7, quantity: 5, price: Some(99) },
            Command::Book { symbol: b"ACME".to_vec(), depth: 10 },
            Command::Fills { account: b"carol".to_vec(), most: 3 },
            Command::Digest,
        ]
    }

    #[test]
    fn commands_round_trip_and_every_cut_is_refused() {
        for command in samples() {
            let bytes = command.to_bytes();
            assert_eq!(Command::decode(&bytes), Ok(command.clone()));
            for cut in 0..bytes.len() {
                assert!(Command::decode(&bytes[..cut]).is_err(), "{command:?} cut at {cut} decoded");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Command::decode(&longer).is_err());
        }
    }

    #[test]
    fn another_version_is_refused_by_name() {
        let mut bytes = samples()[0].to_bytes();
        bytes[0] = 2;
        assert_eq!(
            Command::decode(&bytes),
            Err(Refusal::Malformed("command encoding version 2, this replica knows 1".into()))
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let order = |quantity, price| {
            Command::Submit(NewOrder {
                account: b"a".to_vec(),
                symbol: b"S".to_vec(),
                side: Side::Buy,
                quantity,
                price,
            })
        };
        assert_eq!(order(0, Some(1)).validate(), Err(Refusal::BadQuantity(0)));
        assert_eq!(order(QUANTITY_MAX + 1, Some(1)).validate(), Err(Refusal::BadQuantity(QUANTITY_MAX + 1)));
        assert_eq!(order(1, Some(0)).validate(), Err(Refusal::BadPrice(0)));
        assert_eq!(order(1, None).validate(), Ok(()));
        let long = Command::Fills { account: vec![b'x'; ACCOUNT_BYTES_MAX + 1], most: 1 };
        assert_eq!(long.validate(), Err(Refusal::BadName { what: "account", max: ACCOUNT_BYTES_MAX }));
    }
}
