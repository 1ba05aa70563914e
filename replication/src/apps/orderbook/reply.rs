//! [`Reply`]: an answer shaped as RESP (Redis's protocol), so that `redis-cli` is a client
//! of the book once a RESP front end routes its commands here.
//!
//! Records are flat arrays of field names and values, as Redis answers `HGETALL` or
//! `XINFO`:
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
//! ```

use super::response::{Execution, Fill, Level, Response};

/// A RESP2 value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-CODE message`.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nabc`.
    Bulk(Vec<u8>),
    /// `*2\r\n...`.
    Array(Vec<Reply>),
}

impl Reply {
    /// Appends the RESP encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(text) => {
                out.push(b'+');
                out.extend_from_slice(text.as_bytes());
            }
            Reply::Error(text) => {
                out.push(b'-');
                out.extend_from_slice(text.as_bytes());
            }
            Reply::Integer(value) => out.extend_from_slice(format!(":{value}").as_bytes()),
            Reply::Bulk(bytes) => {
                out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
            }
            Reply::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode(out);
                }
                return;
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The RESP encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

fn text(text: &str) -> Reply {
    Reply::Bulk(text.as_bytes().to_vec())
}

fn integer(value: u64) -> Reply {
    Reply::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}

fn record(fields: Vec<(&str, Reply)>) -> Reply {
    Reply::Array(fields.into_iter().flat_map(|(name, value)| [text(name), value]).collect())
}

fn fill(fill: &Fill) -> Reply {
    record(vec![
        ("trade", integer(fill.trade)),
        ("symbol", Reply::Bulk(fill.symbol.clone())),
        ("price", integer(fill.price)),
        ("quantity", integer(fill.quantity)),
        ("taker_side", text(fill.taker_side.name())),
        ("taker_order", integer(fill.taker_order)),
        ("taker", Reply::Bulk(fill.taker.clone())),
        ("maker_order", integer(fill.maker_order)),
        ("maker", Reply::Bulk(fill.maker.clone())),
        ("maker_open", integer(fill.maker_open)),
    ])
}

fn fills(fills: &[Fill]) -> Reply {
    Reply::Array(fills.iter().map(fill).collect())
}

fn execution(execution: &Execution) -> Reply {
    let status = match (execution.open, execution.cancelled) {
        (0, 0) => "filled",
        (0, _) => "cancelled",
        _ => "open",
    };
    record(vec![
        ("order", integer(execution.order)),
        ("status", text(status)),
        ("filled", integer(execution.filled)),
        ("open", integer(execution.open)),
        ("cancelled", integer(execution.cancelled)),
        ("fills", fills(&execution.fills)),
    ])
}

fn levels(levels: &[Level]) -> Reply {
    Reply::Array(
        levels
            .iter()
            .map(|level| {
                Reply::Array(vec![integer(level.price), integer(level.quantity), integer(level.orders)])
            })
            .collect(),
    )
}

impl From<&Response> for Reply {
    fn from(response: &Response) -> Reply {
        match response {
            Response::Order(order) => execution(order),
            Response::Cancelled { order, quantity } => {
                record(vec![("order", integer(*order)), ("cancelled", integer(*quantity))])
            }
            Response::Book { bids, asks } => record(vec![("bids", levels(bids)), ("asks", levels(asks))]),
            Response::Fills { fills: taken, missed, remaining } => record(vec![
                ("fills", fills(taken)),
                ("missed", integer(*missed)),
                ("remaining", integer(*remaining)),
            ]),
            Response::Refused(refusal) => Reply::Error(format!("{} {refusal}", refusal.code())),
        }
    }
}

/// The RESP bytes for the response bytes a replica gave back for an order-book command:
/// what a RESP front end writes to its client.
pub fn resp_reply(response: &[u8]) -> Vec<u8> {
    match Response::decode(response) {
        Some(response) => Reply::from(&response).to_bytes(),
        None => Reply::Error("ERR the order book's response does not decode".into()).to_bytes(),
    }
}
