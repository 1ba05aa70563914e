//! The order book on uBFT with real processes on the soft provider: three `usec-bft-kv
//! --app orderbook` replicas (one of them Byzantine), three memory nodes and a
//! `usec-bft-gateway --app orderbook`, driven with RESP as redis-cli would. Limit and
//! market orders, cancels, replaces, fill drains and depth queries go through the
//! gateway; every reply is compared with an order book in this process fed the same
//! commands, and at the end the correct replicas' state digests (`stats … state=`) must
//! be equal — to each other, and to that book's. Once more with concurrent clients while
//! a memory node is SIGKILLed. An unknown `--app` is clap's error on both binaries.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{settled_states, state_digest, stats, Group, Resp, STEP_LIMIT};
use usec_replication::apps::orderbook::{
    to_args, LoadConfig, LoadGenerator, OrderBookApp, RespOrderBook, Response,
};
use usec_replication::apps::resp::{Args, Value};
use usec_replication::apps::server::{App, Prepared};
use usec_replication::StateMachine;

/// Orders that meet: price-time priority, partial fills, a replace that keeps its place
/// and one that loses it, a market order, cancels, refusals, depth and both sides' fills.
const SCENARIO: &[&str] = &[
    "SELL bob ACME 100 10150",
    "SELL carol ACME 50 10140",
    "SELL dan ACME 20 10150",
    "BUY alice ACME 120 10150",
    "FILLS bob",
    "FILLS carol",
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
];

/// What the gateway should answer to `args`, applying it to `book` as a replica would
/// (only commands that go through the group).
fn answer(book: &mut RespOrderBook, args: &[&[u8]]) -> Vec<u8> {
    let (mut bytes, mut ranges) = (Vec::new(), Vec::new());
    for arg in args {
        ranges.push(bytes.len()..bytes.len() + arg.len());
        bytes.extend_from_slice(arg);
    }
    let (mut command, mut reply) = (Vec::new(), Vec::new());
    match OrderBookApp.prepare(Args::new(&bytes, &ranges), 0, &mut command, &mut reply) {
        Prepared::Replied => {}
        Prepared::Read | Prepared::Write => book.apply(&command, &mut reply),
        other => panic!("{:?} is not sent to the group ({other:?})", String::from_utf8_lossy(args[0])),
    }
    reply
}

fn decode(reply: &[u8]) -> Response {
    let (value, _) = Value::decode(reply).unwrap().unwrap();
    Response::from_resp(&value)
        .unwrap_or_else(|| panic!("{:?} is no response", String::from_utf8_lossy(reply)))
}

fn seed() -> u64 {
    let seed = std::env::var("USEC_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0xb00c_5eed);
    println!("seed {seed} (USEC_SEED to repeat)");
    seed
}

/// A small market, so that orders meet often: a few symbols and accounts.
fn market() -> LoadConfig {
    LoadConfig { symbols: 2, accounts: 6, ..LoadConfig::default() }
}

/// The scenario, then `count` seeded commands, one at a time through the gateway: every
/// reply must be the one `book` gives.
fn run_exactly(group: &Group, book: &mut RespOrderBook, count: usize) {
    let mut resp = Resp::open(group.gateway_addr);
    let mut replies = Vec::new();
    for line in SCENARIO {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        let reply = resp.request(&args, STEP_LIMIT).unwrap_or_else(|| panic!("no reply to {line}"));
        let expected = answer(book, &args);
        assert_eq!(String::from_utf8_lossy(&reply), String::from_utf8_lossy(&expected), "{line}");
        replies.push(reply);
    }
    // Fills reach both sides: alice's buy took carol's better price, then bob's earlier
    // order; each maker finds its fill in its own feed, naming alice.
    let Response::Order(buy) = decode(&replies[3]) else { panic!("an execution") };
    let makers: Vec<(&[u8], u64, u64)> =
        buy.fills.iter().map(|fill| (fill.maker.as_slice(), fill.price, fill.quantity)).collect();
    assert_eq!(makers, [(&b"carol"[..], 10140, 50), (b"bob", 10150, 70)]);
    for (at, maker) in [(4, &b"bob"[..]), (5, b"carol")] {
        let Response::Fills { fills, .. } = decode(&replies[at]) else { panic!("fills") };
        assert_eq!(fills.len(), 1);
        assert_eq!((fills[0].maker.as_slice(), fills[0].taker.as_slice()), (maker, &b"alice"[..]));
    }
    let Response::Fills { fills, .. } = decode(&replies[6]) else { panic!("fills") };
    assert_eq!(fills.len(), 2, "the taker's feed holds both its fills");

    let mut load = LoadGenerator::new(seed(), market());
    for _ in 0..count {
        let command = load.next_command();
        let args = to_args(&command);
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let reply = resp.request(&args, STEP_LIMIT).unwrap_or_else(|| panic!("no reply to {command:?}"));
        let expected = answer(book, &args);
        assert_eq!(String::from_utf8_lossy(&reply), String::from_utf8_lossy(&expected), "{command:?}");
        load.observe(&command, &decode(&reply));
    }
    // What the gateway cannot answer stays an error, and the connection goes on.
    let local = resp.request(&[b"BOOK.DIGEST"], STEP_LIMIT).unwrap();
    assert!(local.starts_with(b"-ERR"), "{}", String::from_utf8_lossy(&local));
    let unknown = resp.request(&[b"GET", b"a"], STEP_LIMIT).unwrap();
    assert!(unknown.starts_with(b"-ERR unknown command"), "{}", String::from_utf8_lossy(&unknown));
}

#[test]
fn a_lying_replica_changes_no_reply_and_the_correct_books_agree() {
    let mut group = Group::start("ob-lie", "orderbook", Some((2, "lie")));
    let mut book = RespOrderBook::default();
    run_exactly(&group, &mut book, 150);
    let [zero, one, _] = &mut group.replicas[..] else { unreachable!() };
    let states = settled_states(&mut [zero, one]);
    let expected = state_digest(&book.snapshot());
    assert_eq!(states, [expected.clone(), expected], "each correct replica holds the reference book");
    for n in 0..2 {
        let stats = stats(&mut group.replicas[n]);
        assert!(stats["slow"] > 0 && stats["fast"] == 0, "the liar forces the slow path: {stats:?}");
    }
}

#[test]
fn the_book_survives_a_memory_node_killed_mid_run() {
    let mut group = Group::start("ob-kill", "orderbook", Some((2, "lie")));
    let mut book = RespOrderBook::default();
    run_exactly(&group, &mut book, 20);
    let seed = seed();
    let answered = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let addr = group.gateway_addr;
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..3u64)
            .map(|client| {
                let (answered, stop) = (&answered, &stop);
                scope.spawn(move || {
                    let mut load = LoadGenerator::new(seed.wrapping_add(client + 1), market());
                    let mut resp = Resp::open(addr);
                    while !stop.load(Ordering::Relaxed) {
                        let command = load.next_command();
                        let args = to_args(&command);
                        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                        let reply = resp
                            .request(&args, STEP_LIMIT)
                            .unwrap_or_else(|| panic!("no reply to {command:?}"));
                        load.observe(&command, &decode(&reply));
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let wait_for = |count: u64| {
            let deadline = Instant::now() + STEP_LIMIT;
            while answered.load(Ordering::Relaxed) < count {
                assert!(
                    Instant::now() < deadline,
                    "only {} answered of {count}",
                    answered.load(Ordering::Relaxed)
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait_for(40);
        group.memory[0].kill();
        println!("memory node 3 killed");
        wait_for(120);
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.join().unwrap();
        }
    });
    println!("{} commands answered by the clients", answered.load(Ordering::Relaxed));
    // The group still takes orders and answers them as the book does (the book in this
    // process does not know the clients' commands: a fresh symbol, which they never use).
    let mut resp = Resp::open(group.gateway_addr);
    let sell = resp.request(&[b"SELL", b"zed", b"LAST", b"5", b"100"], STEP_LIMIT).unwrap();
    let Response::Order(sell) = decode(&sell) else { panic!("an execution") };
    let buy = resp.request(&[b"BUY", b"yan", b"LAST", b"5"], STEP_LIMIT).unwrap();
    let Response::Order(buy) = decode(&buy) else { panic!("an execution") };
    assert_eq!(
        (buy.filled, buy.fills[0].maker_order, buy.fills[0].maker.as_slice()),
        (5, sell.order, &b"zed"[..])
    );
    let [zero, one, _] = &mut group.replicas[..] else { unreachable!() };
    let states = settled_states(&mut [zero, one]);
    assert_eq!(states[0], states[1], "the correct replicas hold the same book");
}

#[test]
fn an_unknown_app_is_refused_by_both_binaries() {
    for binary in [env!("CARGO_BIN_EXE_usec-bft-kv"), env!("CARGO_BIN_EXE_usec-bft-gateway")] {
        let output = std::process::Command::new(binary).args(["--app", "redis"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{binary}: {stderr}");
        assert!(stderr.contains("invalid value 'redis' for '--app <APP>'"), "{binary}: {stderr}");
        assert!(stderr.contains("[possible values: kv, orderbook]"), "{binary}: {stderr}");
    }
}
