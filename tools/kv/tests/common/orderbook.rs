//! The order book on usec-kv: its options, and what the front end answers to a request,
//! computed in the test process — the reference replies are compared with.

use usec_replication::apps::orderbook::OrderBookApp;
use usec_replication::apps::orderbook::RespOrderBook;
use usec_replication::apps::resp::Args;
use usec_replication::apps::server::{App, Prepared, Served};
use usec_replication::StateMachine;

use super::Client;

/// usec-kv's options to serve the order book.
pub const ORDERBOOK: &[&str] = &["--app", "orderbook"];

/// What a front end serving `book` answers to `args` (the command name first), applying
/// it to `book` as a replica would.
pub fn answer(book: &mut RespOrderBook, args: &[&[u8]]) -> Vec<u8> {
    let (mut bytes, mut ranges) = (Vec::new(), Vec::new());
    for arg in args {
        ranges.push(bytes.len()..bytes.len() + arg.len());
        bytes.extend_from_slice(arg);
    }
    let (mut command, mut reply) = (Vec::new(), Vec::new());
    match OrderBookApp.prepare(Args::new(&bytes, &ranges), 0, &mut command, &mut reply) {
        Prepared::Replied => {}
        Prepared::Read | Prepared::Write => book.apply(&command, &mut reply),
        Prepared::Local => book.read(&command, &mut reply),
        Prepared::Unknown => panic!("{:?} is not an order-book command", String::from_utf8_lossy(args[0])),
    }
    reply
}

/// The digest the replica (or server) on `port` reports for its own state: its reply to
/// `BOOK.DIGEST`, a local read.
pub fn digest(port: u16) -> Vec<u8> {
    Client::connect(port).request(&["BOOK.DIGEST"])
}
