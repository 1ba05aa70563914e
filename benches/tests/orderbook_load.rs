//! Runs `orderbook-load` against an order book served in this process, so a broken load
//! generator fails CI. Checks counts, never timing: with no warm-up every reply is
//! counted, so the book must have seen exactly the new orders and trades reported.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use usec_replication::apps::orderbook::{OrderBookApp, RespOrderBook, Response};
use usec_replication::apps::resp::{reply, Value};
use usec_replication::apps::server::{Server, ServerConfig, Unreplicated};

fn digest(address: SocketAddr) -> usec_replication::apps::orderbook::Digest {
    let mut stream = TcpStream::connect(address).unwrap();
    let mut request = Vec::new();
    reply::request(&mut request, [&b"BOOK.DIGEST"[..]].into_iter());
    stream.write_all(&request).unwrap();
    let mut input = Vec::new();
    let mut chunk = [0u8; 1024];
    let value = loop {
        if let Some((value, _)) = Value::decode(&input).unwrap() {
            break value;
        }
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "the server closed the connection");
        input.extend_from_slice(&chunk[..read]);
    };
    let Some(Response::Digest(digest)) = Response::from_resp(&value) else { panic!("{value:?}") };
    digest
}

fn run(pipeline: &str) {
    let machine = RespOrderBook::default();
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut server =
        Server::bind(bind, OrderBookApp, Unreplicated::new(machine), ServerConfig::default()).unwrap();
    let address = server.local_addr();
    let stopper = server.stopper();
    let serving = std::thread::spawn(move || server.run());
    let json =
        std::env::temp_dir().join(format!("usec-orderbook-load-{}-{pipeline}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_orderbook-load"))
        .args(["--port", &address.port().to_string(), "--connections", "3", "--pipeline", pipeline])
        .args(["--seconds", "0.5", "--warmup", "0", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("new orders/s"), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).unwrap();
    let count = |field: &str| report[field].as_u64().unwrap_or_else(|| panic!("{field} in {report}"));
    assert_eq!(count("errors"), 0, "{report}");
    assert!(count("new_orders") > 0 && count("commands") > count("new_orders"), "{report}");
    assert_eq!(report["all"]["count"].as_u64(), Some(count("commands")));
    let book = digest(address);
    assert_eq!((book.orders, book.trades), (count("new_orders"), count("trades")), "{report}");
    stopper.stop();
    serving.join().unwrap().unwrap();
}

#[test]
fn one_request_at_a_time() {
    run("1");
}

#[test]
fn pipelined() {
    run("16");
}
