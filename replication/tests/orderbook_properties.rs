//! Property tests of the order book, on random command sequences (seeded; the seed is
//! printed and `USEC_SEED` replays one):
//!
//! - the book is never crossed (best bid below best ask) after any command;
//! - every order's quantity is conserved: what was ordered (its first quantity plus every
//!   increase by replace) = filled + open + cancelled, with filled and cancelled counted
//!   from the responses alone, by both sides;
//! - price-time priority: an incoming order's fills consume the other side exactly in the
//!   order it would trade — best price first, earliest first at one price — and never
//!   past the order's limit;
//! - a refused command changes nothing; order ids go 1, 2, 3, …;
//! - snapshot → restore → continue gives the same responses and the same bytes as
//!   continuing;
//! - every response, written as RESP and read back, is itself; `BOOK.DIGEST` changes
//!   exactly when the state (its snapshot) does.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use usec_replication::apps::orderbook::{Command, NewOrder, OrderBook, Response, Side};
use usec_replication::apps::resp::Value;
use usec_replication::StateMachine;

const SYMBOLS: [&[u8]; 2] = [b"ACME", b"BOLT"];
const ACCOUNTS: [&[u8]; 4] = [b"ann", b"bea", b"cid", b"dov"];

fn runner(test: &str, cases: u32) -> TestRunner {
    let seed =
        std::env::var("USEC_SEED").map_or(0x0b00_c0de, |seed| seed.parse().expect("USEC_SEED is a number"));
    println!("{test}: seed {seed} (replay with USEC_SEED={seed})");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&u64::to_le_bytes(seed));
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

/// Commands over a few accounts, symbols and prices, so that orders meet; some invalid.
fn command() -> impl Strategy<Value = Command> {
    let account = (0..ACCOUNTS.len()).prop_map(|index| ACCOUNTS[index].to_vec());
    let symbol = (0..SYMBOLS.len()).prop_map(|index| SYMBOLS[index].to_vec());
    let quantity = prop_oneof![20 => 1u64..40, 1 => Just(0u64)];
    let price = prop_oneof![8 => (95u64..=105).prop_map(Some), 1 => Just(None), 1 => Just(Some(0))];
    let order = 0u64..40;
    prop_oneof![
        10 => (account.clone(), symbol.clone(), side(), quantity.clone(), price.clone()).prop_map(
            |(account, symbol, side, quantity, price)| Command::Submit(NewOrder { account, symbol, side, quantity, price })
        ),
        3 => (account.clone(), order.clone()).prop_map(|(account, order)| Command::Cancel { account, order }),
        3 => (account.clone(), order, quantity, price).prop_map(|(account, order, quantity, price)| {
            Command::Replace { account, order, quantity, price: price.filter(|_| quantity % 2 == 0) }
        }),
        1 => (account, 0u32..4).prop_map(|(account, most)| Command::Fills { account, most }),
        1 => symbol.prop_map(|symbol| Command::Book { symbol, depth: 3 }),
        1 => Just(Command::Digest),
    ]
}

fn commands() -> impl Strategy<Value = Vec<Command>> {
    proptest::collection::vec(command(), 0..120)
}

/// Applies `command`; its response, checked to read back from RESP as itself.
fn apply(book: &mut OrderBook, command: &Command) -> Response {
    let mut bytes = Vec::new();
    book.apply(&command.to_bytes(), &mut bytes);
    let response = Response::decode(&bytes).expect("responses decode");
    let mut resp = Vec::new();
    response.write_resp(&mut resp);
    let (value, len) = Value::decode(&resp).expect("RESP").expect("whole");
    assert_eq!(len, resp.len());
    assert_eq!(Response::from_resp(&value).as_ref(), Some(&response), "{command:?} through RESP");
    response
}

fn digest(book: &OrderBook) -> u128 {
    let Some(Response::Digest(digest)) = book.query(&Command::Digest) else { panic!("a digest") };
    digest.digest
}

/// What the test knows of an order from the responses alone.
#[derive(Debug, Default)]
struct Ledger {
    ordered: u64,
    filled: u64,
    cancelled: u64,
}

/// The fills an incoming order should make: the other side in trading order, consumed
/// until the quantity or the limit runs out. (maker, price, quantity, maker left open)
fn expected_fills(
    book: &OrderBook,
    symbol: &[u8],
    side: Side,
    limit: Option<u64>,
    mut quantity: u64,
) -> Vec<(u64, u64, u64, u64)> {
    let mut fills = Vec::new();
    for resting in book.resting(symbol, side.opposite()) {
        if quantity == 0 || limit.is_some_and(|limit| !side.accepts(limit, resting.price)) {
            break;
        }
        let traded = quantity.min(resting.open);
        quantity -= traded;
        fills.push((resting.order, resting.price, traded, resting.open - traded));
    }
    fills
}

fn check_sequence(commands: &[Command]) -> Result<(), TestCaseError> {
    let mut book = OrderBook::new();
    let mut ledgers: HashMap<u64, Ledger> = HashMap::new();
    let mut next_order = 1;
    for (step, command) in commands.iter().enumerate() {
        let before = book.snapshot();
        let digest_before = digest(&book);
        // What the command should do, from the book before it.
        let (expected, open_before) = match command {
            Command::Submit(order) => {
                (Some(expected_fills(&book, &order.symbol, order.side, order.price, order.quantity)), 0)
            }
            Command::Replace { order, quantity, price, .. } => match book.open_order(*order) {
                Some(open) if price.unwrap_or(open.price) != open.price || *quantity > open.open => {
                    let limit = Some(price.unwrap_or(open.price));
                    (Some(expected_fills(&book, &open.symbol, open.side, limit, *quantity)), open.open)
                }
                Some(open) => (Some(Vec::new()), open.open),
                None => (None, 0),
            },
            _ => (None, 0),
        };
        let response = apply(&mut book, command);
        prop_assert_eq!(
            digest(&book) == digest_before,
            book.snapshot() == before,
            "step {}: the digest does not follow the state",
            step
        );
        match (&response, command) {
            (Response::Refused(_), _) => {
                prop_assert_eq!(book.snapshot(), before, "step {}: a refusal changed the book", step);
                continue;
            }
            (Response::Order(execution), Command::Submit(order)) => {
                prop_assert_eq!(execution.order, next_order, "step {}: ids go in order", step);
                next_order += 1;
                ledgers.insert(execution.order, Ledger { ordered: order.quantity, ..Ledger::default() });
            }
            (Response::Order(execution), Command::Replace { quantity, .. }) => {
                let ledger = ledgers.get_mut(&execution.order).expect("replaced orders were submitted");
                ledger.ordered += quantity.saturating_sub(open_before);
                ledger.cancelled += open_before.saturating_sub(*quantity);
            }
            (Response::Cancelled { order, quantity }, _) => {
                ledgers.get_mut(order).expect("cancelled orders were submitted").cancelled += quantity;
            }
            _ => {}
        }
        if let Response::Order(execution) = &response {
            let made: Vec<_> = execution
                .fills
                .iter()
                .map(|fill| (fill.maker_order, fill.price, fill.quantity, fill.maker_open))
                .collect();
            prop_assert_eq!(Some(made), expected, "step {}: fills out of price-time priority", step);
            for fill in &execution.fills {
                ledgers.get_mut(&fill.maker_order).expect("makers were submitted").filled += fill.quantity;
                ledgers.get_mut(&fill.taker_order).expect("takers were submitted").filled += fill.quantity;
            }
            if let Command::Submit(order) = command {
                // A market order's unfilled part is cancelled.
                if order.price.is_none() {
                    ledgers.get_mut(&execution.order).unwrap().cancelled += order.quantity - execution.filled;
                }
            }
            let ledger = &ledgers[&execution.order];
            prop_assert_eq!(
                (execution.filled, execution.cancelled),
                (ledger.filled, ledger.cancelled),
                "step {}",
                step
            );
        }
        for symbol in SYMBOLS {
            if let (Some(bid), Some(ask)) = (book.best(symbol, Side::Buy), book.best(symbol, Side::Sell)) {
                prop_assert!(bid < ask, "step {}: {:?} crossed: bid {} ask {}", step, symbol, bid, ask);
            }
        }
        for (&order, ledger) in &ledgers {
            let (open, filled, cancelled) =
                book.open_order(order).map_or((0, ledger.filled, ledger.cancelled), |open| {
                    (open.open, open.filled, open.cancelled)
                });
            prop_assert_eq!(
                (filled, cancelled),
                (ledger.filled, ledger.cancelled),
                "step {}: order {}",
                step,
                order
            );
            prop_assert_eq!(
                ledger.filled + open + ledger.cancelled,
                ledger.ordered,
                "step {}: order {} leaks",
                step,
                order
            );
        }
    }
    Ok(())
}

#[test]
fn the_book_keeps_its_rules() {
    runner("the_book_keeps_its_rules", 512).run(&commands(), |commands| check_sequence(&commands)).unwrap();
}

#[test]
fn snapshot_restore_continue_equals_continue() {
    runner("snapshot_restore_continue_equals_continue", 256)
        .run(&(commands(), any::<prop::sample::Index>()), |(commands, cut)| {
            let cut = cut.index(commands.len() + 1);
            let mut straight = OrderBook::new();
            let mut restarted = OrderBook::new();
            for command in &commands[..cut] {
                apply(&mut straight, command);
                apply(&mut restarted, command);
            }
            let snapshot = restarted.snapshot();
            let mut restored = OrderBook::with_feed_limit(1);
            restored.restore(&snapshot).unwrap();
            prop_assert_eq!(restored.snapshot(), snapshot);
            for command in &commands[cut..] {
                prop_assert_eq!(apply(&mut restored, command), apply(&mut straight, command));
            }
            prop_assert_eq!(restored.snapshot(), straight.snapshot());
            prop_assert_eq!(digest(&restored), digest(&straight));
            Ok(())
        })
        .unwrap();
}
