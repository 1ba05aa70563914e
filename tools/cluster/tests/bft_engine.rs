//! `usec-cluster start --engine bft` as a user drives it: the BFT KV's processes on the
//! soft provider, commands through the gateway, a replica (the first view's leader) and a
//! memory node killed from the console, then `quit`. Deadlines are generous (the processes
//! share two cores with the test); nothing is judged by how fast it happened.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(90);

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

#[test]
fn the_bft_kv_starts_survives_a_replica_and_a_memory_node_killed_and_stops() {
    build_bft();
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port().clamp(1024, 65000 - 200)
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_usec-cluster"))
        .args(["start", "--engine", "bft", "--port", &port.to_string()])
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
    let mut stdin = child.stdin.take().unwrap();
    let wait_for = |what: &str| {
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
    };
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
