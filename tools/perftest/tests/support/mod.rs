//! Running the binary as server and client, and reading its output the way scripts read
//! perftest's.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_usec-perftest")
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A soft fabric name of its own for each call.
pub fn fabric(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("soft:perftest-{name}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Connects to a server starting on `port` of this host, retrying for up to 30 s.
pub fn connect(port: u16) -> TcpStream {
    let started = Instant::now();
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => return stream,
            Err(error) if started.elapsed() > Duration::from_secs(30) => {
                panic!("no server on {port}: {error}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs the binary with `args` to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(binary()).args(args).stdin(Stdio::null()).output().expect("the binary runs")
}

/// Starts the binary with `args` in the background.
pub fn spawn(args: &[&str]) -> Child {
    Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// Waits for `child`, killing it after `limit`.
pub fn finish(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("waiting works").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collecting output works")
}

/// The server and client outputs of one test; `options` go to both, the client also gets
/// the host.
pub fn pair(test: &str, options: &[&str]) -> (Output, Output) {
    let port = free_port().to_string();
    let mut server_args = vec![test, "-p", &port];
    server_args.extend_from_slice(options);
    let server = spawn(&server_args);
    let mut client_args = server_args.clone();
    client_args.extend_from_slice(&["--connect_timeout", "30", "127.0.0.1"]);
    let client = finish(spawn(&client_args), Duration::from_secs(240));
    let server = finish(server, Duration::from_secs(30));
    (server, client)
}

/// Text of a stream.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A result table: its header line and its rows split on whitespace.
#[derive(Debug)]
pub struct Table {
    pub header: String,
    pub rows: Vec<Vec<String>>,
}

/// The table of a perftest-style output: the `#bytes` line and the lines after it up to
/// the next dashed line.
pub fn table(output: &str) -> Option<Table> {
    let mut lines = output.lines().skip_while(|line| !line.contains("#bytes"));
    let header = lines.next()?.to_string();
    let rows = lines
        .take_while(|line| !line.starts_with("-----"))
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .collect();
    Some(Table { header, rows })
}

/// Asserts `output` failed with exactly one line on stderr containing `expected`, and
/// returns that line.
pub fn one_line_failure(output: &Output, expected: &str) -> String {
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "succeeded; stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(expected), "{stderr:?} lacks {expected:?}");
    stderr.trim_end().to_string()
}

/// Reads `child`'s stdout line by line until `enough` says so or `limit` passes; the lines.
pub fn read_lines_until(
    child: &mut Child,
    limit: Duration,
    enough: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    use std::io::BufRead as _;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let mut lines = Vec::new();
    while !enough(&lines) {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    lines
}
