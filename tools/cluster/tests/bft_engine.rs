//! `usec-cluster start --engine bft` as a user drives it: the BFT KV's processes on the
//! soft provider, commands through the gateway, a replica (the first view's leader) and a
//! memory node killed from the console, then `quit`; and `--app orderbook`, an order and
//! the one that trades with it. Deadlines are generous (the processes share two cores with
//! the test); nothing is judged by how fast it happened.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use usec_replication::apps::orderbook::Response;
use usec_replication::apps::resp::{reply, scan, Value};

const DEADLINE: Duration = Duration::from_secs(90);

/// One group at a time: each takes a base port and the 105 after it, and two bases drawn
/// at once are neighbours (their ranges overlap: a memory node found its port taken).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Builds the BFT binaries into the target directory the launcher runs from.
fn build_bft() {
    let launcher = Path::new(env!("CARGO_BIN_EXE_usec-cluster"));
    let profile = launcher.parent().and_then(Path::file_name).and_then(|name| name.to_str()).unwrap();
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "-p", "usec-bft-kv", "-p", "usec-bft-memory"]);
    if profile == "release" {
        cargo.arg("--release");
    }
    assert!(cargo.status().expect("running cargo").success(), "building the BFT binaries failed");
}

/// One RESP request, one reply (simple replies only: status, integer, short bulk).
fn request(port: u16, args: &[&str]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut out = format!("*{}\r\n", args.len());
    for arg in args {
        out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(out.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let mut chunk = [0u8; 256];
    // A reply ends with CRLF; a bulk string has two lines.
    loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the gateway closed the connection");
        reply.extend_from_slice(&chunk[..n]);
        let lines = reply.windows(2).filter(|pair| pair == b"\r\n").count();
        let bulk = reply[0] == b'$' && !reply.starts_with(b"$-1");
        if lines == 1 + usize::from(bulk) {
            return String::from_utf8(reply).unwrap();
        }
    }
}

/// One RESP request, its whole reply, as an order-book response.
fn order_book_request(port: u16, args: &[&str]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut out = Vec::new();
    reply::request(&mut out, args.iter().map(|arg| arg.as_bytes()));
    stream.write_all(&out).unwrap();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    while scan::reply_len(&bytes).unwrap().is_none() {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the gateway closed the connection");
        bytes.extend_from_slice(&chunk[..n]);
    }
    let (value, _) = Value::decode(&bytes).unwrap().unwrap();
    Response::from_resp(&value)
        .unwrap_or_else(|| panic!("{:?} is no response", String::from_utf8_lossy(&bytes)))
}

/// A group started by `launch`: the launcher, its stdin, its stdout's lines, the gateway's
/// port, and this test's turn.
type Launched = (Child, ChildStdin, Receiver<String>, u16, MutexGuard<'static, ()>);

/// `usec-cluster start --engine bft` with `more` arguments, on free ports, once no other
/// test's group runs.
fn launch(more: &[&str]) -> Launched {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    build_bft();
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port().clamp(1024, 65000 - 200)
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_usec-cluster"))
        .args(["start", "--engine", "bft", "--port", &port.to_string()])
        .args(more)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (sender, lines) = channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let stdin = child.stdin.take().unwrap();
    (child, stdin, lines, port, turn)
}

/// The next line that contains `what`, printing every line read.
fn wait_for(lines: &Receiver<String>, what: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no line with {what:?}"));
        println!("{line}");
        if line.contains(what) {
            return line;
        }
    }
}

#[test]
fn the_bft_kv_starts_survives_a_replica_and_a_memory_node_killed_and_stops() {
    let (mut child, mut stdin, lines, port, _turn) = launch(&[]);
    let wait_for = |what: &str| wait_for(&lines, what);
    wait_for("the BFT KV is up");
    assert_eq!(request(port, &["SET", "a", "1"]), "+OK\r\n");
    assert_eq!(request(port, &["INCR", "n"]), ":1\r\n");
    writeln!(stdin, "kill 0").unwrap();
    wait_for("r0 killed");
    writeln!(stdin, "kill 3").unwrap();
    wait_for("m3 killed");
    assert_eq!(request(port, &["INCR", "n"]), ":2\r\n");
    assert_eq!(request(port, &["GET", "a"]), "$1\r\n1\r\n");
    wait_for("[r1] view 1");
    writeln!(stdin, "quit").unwrap();
    wait_for("stopped: every process killed and reaped");
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_bft_order_book_starts_trades_one_order_and_stops() {
    let (mut child, mut stdin, lines, port, _turn) = launch(&["--app", "orderbook"]);
    let wait_for = |what: &str| wait_for(&lines, what);
    wait_for("the BFT order book is up");
    let Response::Order(sell) = order_book_request(port, &["SELL", "bob", "ACME", "100", "10150"]) else {
        panic!("an execution")
    };
    assert_eq!((sell.open, sell.filled), (100, 0));
    let Response::Order(buy) = order_book_request(port, &["BUY", "alice", "ACME", "30"]) else {
        panic!("an execution")
    };
    assert_eq!((buy.filled, buy.fills.len()), (30, 1));
    let fill = &buy.fills[0];
    assert_eq!(
        (fill.maker_order, fill.maker.as_slice(), fill.price, fill.maker_open),
        (sell.order, &b"bob"[..], 10150, 70)
    );
    // The status lines go on naming every process.
    writeln!(stdin, "status").unwrap();
    let status = wait_for("gateway:up");
    for name in ["r0:up", "r1:up", "r2:up", "m3:up", "m4:up", "m5:up"] {
        assert!(status.contains(name), "{status}");
    }
    writeln!(stdin, "quit").unwrap();
    wait_for("stopped: every process killed and reaped");
    assert!(child.wait().unwrap().success());
}
