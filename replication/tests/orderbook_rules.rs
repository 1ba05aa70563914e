//! The order book's rules, one scripted scenario each, through the text commands and the
//! state machine's byte interface (as a replica applies them).

use usec_replication::apps::orderbook::{
    parse, resp_reply, Command, Execution, Fill, Level, OrderBook, Refusal, Response, Side,
};
use usec_replication::StateMachine;

fn run(book: &mut OrderBook, line: &str) -> Response {
    let args: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
    let command = parse(&args).unwrap_or_else(|error| panic!("{line}: {error}"));
    let mut response = Vec::new();
    book.apply(&command.to_bytes(), &mut response);
    Response::decode(&response).expect("responses decode")
}

fn order(response: Response) -> Execution {
    match response {
        Response::Order(execution) => execution,
        other => panic!("not an order: {other:?}"),
    }
}

/// (maker order, price, quantity) of each fill.
fn trades(fills: &[Fill]) -> Vec<(u64, u64, u64)> {
    fills.iter().map(|fill| (fill.maker_order, fill.price, fill.quantity)).collect()
}

fn queue(book: &OrderBook, side: Side) -> Vec<(u64, u64, u64)> {
    book.resting(b"ACME", side).iter().map(|order| (order.order, order.price, order.open)).collect()
}

#[test]
fn the_best_price_trades_first_at_the_resting_price() {
    let mut book = OrderBook::new();
    run(&mut book, "SELL bob ACME 100 101"); // 1
    run(&mut book, "SELL carol ACME 50 100"); // 2
    let buy = order(run(&mut book, "BUY alice ACME 120 101"));
    assert_eq!(buy.order, 3);
    assert_eq!(trades(&buy.fills), [(2, 100, 50), (1, 101, 70)]);
    assert_eq!((buy.filled, buy.open, buy.cancelled), (120, 0, 0));
    assert_eq!(queue(&book, Side::Sell), [(1, 101, 30)]);
    let fill = &buy.fills[1];
    assert_eq!(
        (fill.taker.as_slice(), fill.maker.as_slice(), fill.maker_open),
        (&b"alice"[..], &b"bob"[..], 30)
    );
    assert_eq!((fill.trade, fill.taker_side, fill.taker_order), (2, Side::Buy, 3));
}

#[test]
fn at_one_price_the_earliest_trades_first() {
    let mut book = OrderBook::new();
    run(&mut book, "BUY b1 ACME 10 100");
    run(&mut book, "BUY b2 ACME 10 100");
    run(&mut book, "BUY b3 ACME 10 99");
    let sell = order(run(&mut book, "SELL s ACME 15 99"));
    assert_eq!(trades(&sell.fills), [(1, 100, 10), (2, 100, 5)]);
    assert_eq!(queue(&book, Side::Buy), [(2, 100, 5), (3, 99, 10)]);
}

#[test]
fn a_limit_order_never_trades_past_its_price_and_rests_the_rest() {
    let mut book = OrderBook::new();
    run(&mut book, "SELL s ACME 10 100");
    run(&mut book, "SELL s ACME 10 102");
    let buy = order(run(&mut book, "BUY b ACME 25 101"));
    assert_eq!(trades(&buy.fills), [(1, 100, 10)]);
    assert_eq!((buy.filled, buy.open), (10, 15));
    assert_eq!(queue(&book, Side::Buy), [(3, 101, 15)]);
    assert_eq!((book.best(b"ACME", Side::Buy), book.best(b"ACME", Side::Sell)), (Some(101), Some(102)));
}

#[test]
fn market_orders_take_what_is_there_and_never_rest() {
    let mut book = OrderBook::new();
    let empty = order(run(&mut book, "BUY b ACME 10"));
    assert_eq!((empty.filled, empty.open, empty.cancelled), (0, 0, 10));
    run(&mut book, "SELL s ACME 4 100");
    run(&mut book, "SELL s ACME 3 150");
    let sweep = order(run(&mut book, "BUY b ACME 10"));
    assert_eq!(trades(&sweep.fills), [(2, 100, 4), (3, 150, 3)]);
    assert_eq!((sweep.filled, sweep.open, sweep.cancelled), (7, 0, 3));
    assert_eq!(book.open_orders(), 0);
}

#[test]
fn cancels_are_checked() {
    let mut book = OrderBook::new();
    run(&mut book, "BUY alice ACME 10 100");
    run(&mut book, "SELL bob ACME 10 100"); // fills order 1 entirely
    run(&mut book, "BUY alice ACME 7 99"); // 3
    assert_eq!(run(&mut book, "CANCEL bob 3"), Response::Refused(Refusal::NotOwner(3)));
    assert_eq!(run(&mut book, "CANCEL alice 9"), Response::Refused(Refusal::NoSuchOrder(9)));
    assert_eq!(run(&mut book, "CANCEL alice 0"), Response::Refused(Refusal::NoSuchOrder(0)));
    assert_eq!(run(&mut book, "CANCEL alice 1"), Response::Refused(Refusal::Closed(1)));
    assert_eq!(run(&mut book, "CANCEL alice 3"), Response::Cancelled { order: 3, quantity: 7 });
    assert_eq!(run(&mut book, "CANCEL alice 3"), Response::Refused(Refusal::Closed(3)));
    assert_eq!(book.open_orders(), 0);
}

#[test]
fn a_smaller_replace_keeps_its_place_and_a_larger_one_loses_it() {
    let mut book = OrderBook::new();
    run(&mut book, "SELL a ACME 10 100"); // 1
    run(&mut book, "SELL b ACME 10 100"); // 2
    let smaller = order(run(&mut book, "REPLACE a 1 6"));
    assert_eq!((smaller.open, smaller.cancelled, smaller.fills.len()), (6, 4, 0));
    assert_eq!(queue(&book, Side::Sell), [(1, 100, 6), (2, 100, 10)], "still first");
    let larger = order(run(&mut book, "REPLACE a 1 12"));
    assert_eq!((larger.open, larger.cancelled), (12, 4));
    assert_eq!(queue(&book, Side::Sell), [(2, 100, 10), (1, 100, 12)], "now behind b");
    let buy = order(run(&mut book, "BUY c ACME 11 100"));
    assert_eq!(trades(&buy.fills), [(2, 100, 10), (1, 100, 1)]);
}

#[test]
fn a_new_price_loses_the_place_and_may_trade_at_once() {
    let mut book = OrderBook::new();
    run(&mut book, "BUY b ACME 10 99"); // 1
    run(&mut book, "SELL a ACME 10 101"); // 2
    run(&mut book, "SELL c ACME 10 101"); // 3
    let moved = order(run(&mut book, "REPLACE a 2 15 99"));
    assert_eq!(trades(&moved.fills), [(1, 99, 10)]);
    assert_eq!((moved.order, moved.filled, moved.open, moved.cancelled), (2, 10, 5, 0));
    assert_eq!(queue(&book, Side::Sell), [(2, 99, 5), (3, 101, 10)]);
    // Back to 101 with the same 5 open: a new price, so behind c.
    let back = order(run(&mut book, "REPLACE a 2 5 101"));
    assert_eq!((back.filled, back.open, back.cancelled), (10, 5, 0));
    assert_eq!(queue(&book, Side::Sell), [(3, 101, 10), (2, 101, 5)]);
}

#[test]
fn refusals_leave_the_book_alone() {
    let mut book = OrderBook::new();
    run(&mut book, "BUY alice ACME 10 100");
    let before = book.snapshot();
    let bad = Command::Replace { account: b"alice".to_vec(), order: 1, quantity: 0, price: None };
    let mut response = Vec::new();
    book.apply(&bad.to_bytes(), &mut response);
    assert_eq!(Response::decode(&response), Some(Response::Refused(Refusal::BadQuantity(0))));
    response.clear();
    book.apply(b"\x01\x09garbage", &mut response);
    assert_eq!(
        Response::decode(&response),
        Some(Response::Refused(Refusal::Malformed("unknown operation 9".into())))
    );
    assert_eq!(run(&mut book, "REPLACE bob 1 5"), Response::Refused(Refusal::NotOwner(1)));
    assert_eq!(book.snapshot(), before);
}

#[test]
fn both_sides_find_their_fills_in_their_feeds() {
    let mut book = OrderBook::with_feed_limit(2);
    run(&mut book, "SELL bob ACME 10 100");
    run(&mut book, "SELL bob ACME 10 100");
    run(&mut book, "SELL bob ACME 10 100");
    run(&mut book, "BUY alice ACME 25 100"); // three fills: bob's feed keeps the last two
    let Response::Fills { fills, missed, remaining } = run(&mut book, "FILLS bob 1") else { panic!() };
    assert_eq!((trades(&fills), missed, remaining), (vec![(2, 100, 10)], 1, 1));
    let Response::Fills { fills, missed, remaining } = run(&mut book, "FILLS bob") else { panic!() };
    assert_eq!((trades(&fills), missed, remaining), (vec![(3, 100, 5)], 0, 0));
    assert_eq!(fills[0].maker_open, 5);
    let Response::Fills { fills, .. } = run(&mut book, "FILLS alice") else { panic!() };
    assert_eq!(fills.len(), 2, "the taker's feed too");
    assert_eq!(
        run(&mut book, "FILLS nobody"),
        Response::Fills { fills: Vec::new(), missed: 0, remaining: 0 }
    );
}

#[test]
fn depth_is_by_level_and_symbols_are_apart() {
    let mut book = OrderBook::new();
    run(&mut book, "BUY a ACME 10 99");
    run(&mut book, "BUY b ACME 5 99");
    run(&mut book, "BUY a ACME 7 98");
    run(&mut book, "SELL a ACME 3 101");
    run(&mut book, "SELL a OTHER 3 50"); // would cross ACME's bids, but is another symbol
    let level = |price, quantity, orders| Level { price, quantity, orders };
    assert_eq!(
        run(&mut book, "BOOK ACME"),
        Response::Book { bids: vec![level(99, 15, 2), level(98, 7, 1)], asks: vec![level(101, 3, 1)] }
    );
    assert_eq!(
        run(&mut book, "BOOK ACME 1"),
        Response::Book { bids: vec![level(99, 15, 2)], asks: vec![level(101, 3, 1)] }
    );
    assert_eq!(run(&mut book, "BOOK OTHER"), Response::Book { bids: vec![], asks: vec![level(50, 3, 1)] });
    assert_eq!(run(&mut book, "BOOK NONE"), Response::Book { bids: vec![], asks: vec![] });
}

#[test]
fn replies_are_resp() {
    let mut book = OrderBook::new();
    let mut bytes = Vec::new();
    book.apply(&parse(&[b"BUY", b"al", b"X", b"5", b"7"]).unwrap().to_bytes(), &mut bytes);
    let expected = "*12\r\n$5\r\norder\r\n:1\r\n$6\r\nstatus\r\n$4\r\nopen\r\n$6\r\nfilled\r\n:0\r\n\
                    $4\r\nopen\r\n:5\r\n$9\r\ncancelled\r\n:0\r\n$5\r\nfills\r\n*0\r\n";
    assert_eq!(String::from_utf8(resp_reply(&bytes)).unwrap(), expected);
    bytes.clear();
    book.apply(&parse(&[b"CANCEL", b"al", b"3"]).unwrap().to_bytes(), &mut bytes);
    assert_eq!(resp_reply(&bytes), b"-NOORDER no order 3\r\n");
    assert_eq!(resp_reply(b"junk"), b"-ERR the order book's response does not decode\r\n");
}

#[test]
fn snapshots_restore_exactly_and_refuse_damage() {
    let mut book = OrderBook::new();
    for line in ["SELL bob ACME 10 100", "BUY al ACME 4 100", "BUY al ACME 4 90", "SELL cy OTHER 1 5"] {
        run(&mut book, line);
    }
    let snapshot = book.snapshot();
    let mut copy = OrderBook::with_feed_limit(7);
    copy.restore(&snapshot).unwrap();
    assert_eq!(copy, book);
    assert_eq!(copy.snapshot(), snapshot);
    for cut in 0..snapshot.len() {
        assert!(copy.restore(&snapshot[..cut]).is_err(), "a snapshot cut at {cut} restored");
    }
    let mut longer = snapshot.clone();
    longer.push(0);
    assert!(copy.restore(&longer).is_err());
    assert_eq!(copy, book, "a refused snapshot changes nothing");
    // Both continue the same way.
    assert_eq!(run(&mut copy, "BUY dee ACME 9 100"), run(&mut book, "BUY dee ACME 9 100"));
    assert_eq!(copy.snapshot(), book.snapshot());
}
