//! The order book on the RESP front end ([`crate::apps::server`]), so that `redis-cli` is
//! its client, unreplicated or on Mu: [`OrderBookApp`] turns requests into commands,
//! [`RespOrderBook`] is the state machine a replica applies them to, answering in RESP.
//!
//! Routing, by command:
//!
//! | command | path |
//! |---|---|
//! | `BUY`, `SELL`, `CANCEL`, `REPLACE`, `FILLS` | a write, through the log (`FILLS` takes fills out of the feed) |
//! | `BOOK` | a read, through the log (linearizable); after `READONLY`, from this replica's state |
//! | `BOOK.DIGEST` | always from this replica's state as it is, never through the log: a **local read**, so each replica of a group can be asked for its own digest; a replica behind the others gives the digest of an earlier state |
//!
//! Unknown commands get Redis's `-ERR unknown command …`; bad arguments get the text
//! command set's errors ([`super::text`]), worded as Redis words its own.

use std::sync::OnceLock;

use crate::apps::resp::{reply, Args};
use crate::apps::server::commands::{Argument, Spec, Table};
use crate::apps::server::{App, Prepared, Served};
use crate::state_machine::{RestoreError, StateMachine};

use super::command::Command;
use super::response::Response;
use super::text::{parse, COMMANDS};
use super::OrderBook;

const fn argument(name: &'static str, integer: bool, optional: bool) -> Argument {
    Argument { name, integer, optional }
}

const ACCOUNT: Argument = argument("account", false, false);
const ORDER: Argument = argument("order", true, false);
const QUANTITY: Argument = argument("quantity", true, false);
const PRICE: Argument = argument("price", true, true);

/// The commands as COMMAND describes them (redis-cli's hints come from these).
pub const SPECS: [Spec; 7] = [
    Spec {
        name: "buy",
        arity: -4,
        write: true,
        summary: "Enter a buy order: a limit order with a price, a market order without",
        arguments: &[ACCOUNT, argument("symbol", false, false), QUANTITY, PRICE],
    },
    Spec {
        name: "sell",
        arity: -4,
        write: true,
        summary: "Enter a sell order: a limit order with a price, a market order without",
        arguments: &[ACCOUNT, argument("symbol", false, false), QUANTITY, PRICE],
    },
    Spec {
        name: "cancel",
        arity: 3,
        write: true,
        summary: "Cancel what is left of an open order",
        arguments: &[ACCOUNT, ORDER],
    },
    Spec {
        name: "replace",
        arity: -4,
        write: true,
        summary: "Set an open order's open quantity and, optionally, its price",
        arguments: &[ACCOUNT, ORDER, QUANTITY, PRICE],
    },
    Spec {
        name: "book",
        arity: -2,
        write: false,
        summary: "The price levels of a symbol's book, best first",
        arguments: &[argument("symbol", false, false), argument("depth", true, true)],
    },
    Spec {
        name: "fills",
        arity: -2,
        write: true,
        summary: "Take the fills an account took part in, oldest first",
        arguments: &[ACCOUNT, argument("count", true, true)],
    },
    Spec {
        name: "book.digest",
        arity: 1,
        write: false,
        summary: "A digest of this replica's whole state, read locally (not through the log)",
        arguments: &[],
    },
];

/// The order book's requests, for the front end.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrderBookApp;

impl App for OrderBookApp {
    fn prepare(&self, args: Args<'_>, _stamp_ms: i64, command: &mut Vec<u8>, out: &mut Vec<u8>) -> Prepared {
        // Nothing in the book depends on time: the stamp is not needed.
        let name = args.get(0);
        if !COMMANDS.iter().any(|known| known.as_bytes().eq_ignore_ascii_case(name)) {
            return Prepared::Unknown;
        }
        let args: Vec<&[u8]> = args.iter_from(0).collect();
        match parse(&args) {
            Ok(parsed) => {
                parsed.encode(command);
                match parsed {
                    Command::Digest => Prepared::Local,
                    _ if parsed.is_read_only() => Prepared::Read,
                    _ => Prepared::Write,
                }
            }
            Err(error) => {
                reply::error(out, error);
                Prepared::Replied
            }
        }
    }

    fn commands(&self) -> &'static Table {
        static TABLE: OnceLock<Table> = OnceLock::new();
        TABLE.get_or_init(|| Table::new(&[], &SPECS))
    }
}

/// The order book answering in RESP: what a front end serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RespOrderBook {
    book: OrderBook,
}

impl RespOrderBook {
    /// Serves `book`.
    pub fn new(book: OrderBook) -> RespOrderBook {
        RespOrderBook { book }
    }

    /// The book.
    pub fn book(&self) -> &OrderBook {
        &self.book
    }
}

impl StateMachine for RespOrderBook {
    fn apply(&mut self, command: &[u8], response: &mut Vec<u8>) {
        self.book.execute_encoded(command).write_resp(response);
    }

    fn snapshot(&self) -> Vec<u8> {
        self.book.snapshot()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        self.book.restore(snapshot)
    }
}

impl Served for RespOrderBook {
    fn read(&self, command: &[u8], response: &mut Vec<u8>) {
        match Command::decode(command) {
            Ok(command) => match self.book.query(&command) {
                Some(outcome) => outcome.write_resp(response),
                None => reply::error(response, "READONLY You can't write against a read only replica."),
            },
            Err(refusal) => Response::Refused(refusal).write_resp(response),
        }
    }

    fn keyspace(&self, out: &mut String) {
        out.push_str(&format!(
            "book:symbols={},open_orders={}\r\n",
            self.book.symbols().len(),
            self.book.open_orders()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_described() {
        let described: Vec<String> = SPECS.iter().map(|spec| spec.name.to_ascii_uppercase()).collect();
        assert_eq!(described, COMMANDS);
    }
}
