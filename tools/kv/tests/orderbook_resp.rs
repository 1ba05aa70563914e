//! The order book on usec-kv's RESP front end (`--app orderbook`): `redis-cli` drives it,
//! unreplicated and on a 3-replica group (through a follower, with `redis-cli -c`
//! following `-MOVED`); every reply is the reply of an order book in this process fed the
//! same commands; fills reach both sides; `BOOK.DIGEST` is answered by each replica from
//! its own state; bad input gets Redis-style errors and the server goes on.

mod common;

use std::time::{Duration, Instant};

use common::orderbook::{answer, digest, ORDERBOOK};
use common::{redis_cli, unreplicated, Client, Group};
use usec_replication::apps::orderbook::{Command, RespOrderBook, Response};
use usec_replication::apps::resp::Value;
use usec_replication::apps::server::Served;

/// Orders that meet: price-time priority, partial fills, a replace that keeps its place and
/// one that loses it, a market order, cancels, refusals, depth and fills on both sides.
const SCENARIO: &[&str] = &[
    "SELL bob ACME 100 10150",
    "SELL carol ACME 50 10140",
    "SELL dan ACME 20 10150",
    "BUY alice ACME 120 10150",
    "FILLS bob",
    "FILLS carol",
    "FILLS alice 1",
    "FILLS alice",
    "BOOK ACME",
    "REPLACE bob 1 10",
    "REPLACE dan 3 40",
    "BOOK ACME",
    "BUY erin ACME 25",
    "FILLS dan",
    "CANCEL bob 1",
    "CANCEL bob 1",
    "CANCEL alice 3",
    "CANCEL bob 99",
    "BUY frank ACME 0 10",
    "SELL gina ACME 10 0",
    "BUY gina OTHER 7 500",
    "BOOK OTHER 1",
    "BOOK.DIGEST",
];

fn words(line: &str) -> Vec<&str> {
    line.split(' ').collect()
}

/// What an order book in this process answers to each line, as the front end would
/// route it.
fn expected(lines: &[&str]) -> (Vec<Vec<u8>>, RespOrderBook) {
    let mut book = RespOrderBook::default();
    let replies = lines
        .iter()
        .map(|line| {
            let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
            answer(&mut book, &args)
        })
        .collect();
    (replies, book)
}

fn decode(reply: &[u8]) -> Response {
    let (value, _) = Value::decode(reply).unwrap().unwrap();
    Response::from_resp(&value)
        .unwrap_or_else(|| panic!("{:?} is no response", String::from_utf8_lossy(reply)))
}

#[test]
fn redis_cli_drives_the_book_and_fills_reach_both_sides() {
    let (_book, port) = unreplicated(ORDERBOOK);
    assert_eq!(
        redis_cli(port, &["SELL", "bob", "ACME", "100", "10150"]),
        "order\n1\nstatus\nopen\nfilled\n0\nopen\n100\ncancelled\n0\nfills\n\n"
    );
    let fill = "trade\n1\nsymbol\nACME\nprice\n10150\nquantity\n30\ntaker_side\nbuy\ntaker_order\n2\n\
                taker\nalice\nmaker_order\n1\nmaker\nbob\nmaker_open\n70\n";
    // The taker sees the fill in its reply, the maker in its feed.
    assert_eq!(
        redis_cli(port, &["BUY", "alice", "ACME", "30"]),
        format!("order\n2\nstatus\nfilled\nfilled\n30\nopen\n0\ncancelled\n0\nfills\n{fill}")
    );
    assert_eq!(redis_cli(port, &["FILLS", "bob"]), format!("fills\n{fill}missed\n0\nremaining\n0\n"));
    assert_eq!(redis_cli(port, &["FILLS", "alice"]), format!("fills\n{fill}missed\n0\nremaining\n0\n"));
    assert_eq!(redis_cli(port, &["BOOK", "ACME"]), "bids\n\nasks\n10150\n70\n1\n");
    assert_eq!(redis_cli(port, &["CANCEL", "alice", "1"]), "NOTOWNER order 1 belongs to another account\n\n");
}

#[test]
fn every_reply_is_the_books_own() {
    let (_book, port) = unreplicated(ORDERBOOK);
    let (replies, _) = expected(SCENARIO);
    let mut client = Client::connect(port);
    for (line, expected) in SCENARIO.iter().zip(&replies) {
        let reply = client.request(&words(line));
        assert_eq!(String::from_utf8_lossy(&reply), String::from_utf8_lossy(expected), "{line}");
    }
    // Price-time priority, read back: alice's 120 took carol's better price first, then
    // bob's order (earlier than dan's at the same price).
    let Response::Order(buy) = decode(&replies[3]) else { panic!("an execution") };
    let makers: Vec<(&[u8], u64, u64)> =
        buy.fills.iter().map(|fill| (fill.maker.as_slice(), fill.price, fill.quantity)).collect();
    assert_eq!(makers, [(&b"carol"[..], 10140, 50), (b"bob", 10150, 70)]);
    // Both sides' feeds hold the fills: each maker its own, the taker both.
    let Response::Fills { fills, .. } = decode(&replies[4]) else { panic!("fills") };
    assert_eq!((fills.len(), fills[0].taker.as_slice(), fills[0].maker_open), (1, &b"alice"[..], 30));
    let Response::Fills { fills, remaining, .. } = decode(&replies[6]) else { panic!("fills") };
    assert_eq!((fills.len(), remaining), (1, 1));
    let Response::Fills { fills, remaining, .. } = decode(&replies[7]) else { panic!("fills") };
    assert_eq!((fills.len(), remaining), (1, 0));
}

#[test]
fn a_replicated_book_answers_as_the_unreplicated_one_and_replicas_agree() {
    let (_book, single) = unreplicated(ORDERBOOK);
    let group = Group::start_with("orderbook", 3, ORDERBOOK);
    let leader = group.leader();
    let follower = group.ports[(leader + 1) % 3];
    // Through a follower: redis-cli -c follows -MOVED to the leader, once the follower
    // knows it (before, it answers -CLUSTERDOWN).
    let moved = format!("-MOVED 0 127.0.0.1:{}\r\n", group.ports[leader]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = String::from_utf8(Client::connect(follower).request(&["FILLS", "bob"])).unwrap();
        if reply == moved {
            break;
        }
        assert!(reply.starts_with("-CLUSTERDOWN") && Instant::now() < deadline, "{reply}");
        std::thread::sleep(Duration::from_millis(20));
    }
    for line in SCENARIO {
        let args = words(line);
        let theirs = redis_cli(single, &args);
        let ours = redis_cli(follower, &[&["-c"], &args[..]].concat());
        if *line != "BOOK.DIGEST" {
            assert_eq!(ours, theirs, "redis-cli -c {line}");
        }
    }
    // BOOK.DIGEST is each replica's own, never redirected: once every replica applied the
    // scenario, all equal the unreplicated book's, and the book of this process.
    let (_, book) = expected(SCENARIO);
    let mut reference = Vec::new();
    book.read(&Command::Digest.to_bytes(), &mut reference);
    assert_eq!(digest(single), reference);
    let deadline = Instant::now() + Duration::from_secs(20);
    for &port in &group.ports {
        while digest(port) != reference {
            assert!(
                Instant::now() < deadline,
                "replica on {port}: {:?}",
                String::from_utf8_lossy(&digest(port))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // BOOK goes through the log (a follower redirects it) unless the client asked for
    // READONLY; then the follower answers from its own state. Writes still go to the leader.
    let mut stale = Client::connect(follower);
    assert!(stale.request(&["BOOK", "ACME"]).starts_with(b"-MOVED 0 "));
    assert_eq!(stale.request(&["READONLY"]), b"+OK\r\n");
    assert_eq!(stale.request(&["BOOK", "ACME"]), Client::connect(single).request(&["BOOK", "ACME"]));
    assert!(stale.request(&["FILLS", "bob"]).starts_with(b"-MOVED 0 "));
}

#[test]
fn bad_input_gets_redis_style_errors() {
    let (_book, port) = unreplicated(ORDERBOOK);
    let mut client = Client::connect(port);
    let long = "x".repeat(100_000);
    let cases: &[(&[&str], &str)] = &[
        (&["BUY", "alice", "ACME"], "-ERR wrong number of arguments for 'buy' command"),
        (&["sell", "a", "S", "1", "2", "3"], "-ERR wrong number of arguments for 'sell' command"),
        (&["BOOK.DIGEST", "now"], "-ERR wrong number of arguments for 'book.digest' command"),
        (
            &["BUY", "alice", "ACME", "-5"],
            "-BADQTY quantity must be a positive integer of at most 10^12, not '-5'",
        ),
        (
            &["BUY", "alice", "ACME", "1000000000001"],
            "-BADQTY quantity must be a positive integer of at most 10^12, not 1000000000001",
        ),
        (
            &["BUY", "alice", "ACME", "5", "1.5"],
            "-BADPRICE price must be a positive integer number of ticks of at most 10^12, not '1.5'",
        ),
        (&["CANCEL", "alice", "x"], "-ERR an order id is a positive integer, not 'x'"),
        (&["BOOK", "ACME", "1001"], "-ERR depth must be between 1 and 1000, not 1001"),
        (&["BUY", &long, "ACME", "1", "1"], "-BADNAME account must be 1 to 64 bytes without spaces"),
        (&["BUY", "two words", "ACME", "1", "1"], "-BADNAME account must be 1 to 64 bytes without spaces"),
        (&["GET", "k"], "-ERR unknown command 'GET', with args beginning with: 'k' "),
        (&["REPLACE", "alice", "1", "5"], "-NOORDER no order 1"),
    ];
    for (request, error) in cases {
        let reply = String::from_utf8(client.request(request)).unwrap();
        assert_eq!(reply, format!("{error}\r\n"), "{:?}", &request[..request.len().min(3)]);
    }
    // The same words from redis-cli.
    assert_eq!(
        redis_cli(port, &["CANCEL", "alice"]),
        "ERR wrong number of arguments for 'cancel' command\n\n"
    );
    // A malformed frame: Redis's protocol error, then the connection closes.
    let mut broken = Client::connect(port);
    broken.send(b"*1\r\n$536870913\r\n");
    assert_eq!(broken.reply(), b"-ERR Protocol error: invalid bulk length\r\n");
    assert!(broken.closed());
    // Nothing above reached the book.
    let reply = client.request(&["BOOK.DIGEST"]);
    let Response::Digest(digest) = decode(&reply) else { panic!("a digest") };
    assert_eq!((digest.orders, digest.open_orders), (0, 0));
}
