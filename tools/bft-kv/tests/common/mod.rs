//! What the process tests share: a BFT group of real processes on the soft provider
//! (replicas 0–2 running `usec-bft-kv --app <app>`, memory nodes 3–5, one
//! `usec-bft-gateway`), a RESP client, and the replicas' `stats` lines.
//!
//! The memory node binary belongs to another package of the workspace: it is looked for
//! next to this package's binaries and built with cargo if it is not there.

#![allow(dead_code)] // each test file uses its own part

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use usec_qp_pool::{ClusterSpec, NodeId};
use usec_replication::apps::resp::{reply, scan};

const TAIL: &str = "32";
/// How long a step may take on a loaded two-core machine before the test gives up.
pub const STEP_LIMIT: Duration = Duration::from_secs(90);

fn memory_binary() -> PathBuf {
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_usec-bft-kv"));
    let theirs = ours.with_file_name("usec-bft-memory");
    if !theirs.exists() {
        let profile = ours.parent().and_then(|dir| dir.file_name()).and_then(|name| name.to_str());
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", "usec-bft-memory"]);
        if profile == Some("release") {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo to build usec-bft-memory");
        assert!(status.success() && theirs.exists(), "could not build {}", theirs.display());
    }
    theirs
}

/// A child process whose stdout is read line by line.
pub struct Process {
    pub name: String,
    child: Child,
    input: ChildStdin,
    lines: mpsc::Receiver<String>,
    skipped: VecDeque<String>,
}

impl Process {
    fn spawn(mut command: Command, name: String) -> Process {
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawning");
        let input = child.stdin.take().expect("piped");
        let output = BufReader::new(child.stdout.take().expect("piped"));
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in output.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Process { name, child, input, lines, skipped: VecDeque::new() }
    }

    /// The next line that starts with `prefix` (others are kept).
    pub fn expect(&mut self, prefix: &str) -> String {
        if let Some(at) = self.skipped.iter().position(|line| line.starts_with(prefix)) {
            return self.skipped.remove(at).expect("found");
        }
        let deadline = Instant::now() + STEP_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|error| panic!("{}: no `{prefix}` line ({error})", self.name));
            if line.starts_with(prefix) {
                return line;
            }
            self.skipped.push_back(line);
        }
    }

    pub fn say(&mut self, line: &str) {
        writeln!(self.input, "{line}").unwrap();
    }

    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends `signal` (SIGSTOP / SIGCONT: a pause as the OS or a debugger makes one).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A replica's `stats` line: its counters, and the digest of its state machine's state.
#[derive(Debug)]
pub struct Stats {
    pub counters: BTreeMap<String, u64>,
    pub state: String,
}

impl std::ops::Index<&str> for Stats {
    type Output = u64;

    fn index(&self, name: &str) -> &u64 {
        self.counters.get(name).unwrap_or_else(|| panic!("no counter {name} in {self:?}"))
    }
}

/// Asks a replica for its `stats` line.
pub fn stats(process: &mut Process) -> Stats {
    process.say("stats");
    let line = process.expect("stats ");
    println!("{}: {line}", process.name);
    let mut stats = Stats { counters: BTreeMap::new(), state: String::new() };
    for field in line["stats ".len()..].split(' ') {
        let (name, value) = field.split_once('=').unwrap();
        match name {
            "state" => stats.state = value.to_string(),
            _ => {
                stats.counters.insert(name.to_string(), value.parse().unwrap());
            }
        }
    }
    assert_eq!(stats.state.len(), 16, "a state digest of 16 hex digits: {line}");
    stats
}

/// The state digests of `replicas` once they have all executed the same slots and stay
/// there over two looks (no client is sending any more).
pub fn settled_states(replicas: &mut [&mut Process]) -> Vec<String> {
    let deadline = Instant::now() + STEP_LIMIT;
    let mut last: Option<Vec<(u64, String)>> = None;
    loop {
        let now: Vec<(u64, String)> = replicas
            .iter_mut()
            .map(|process| {
                let stats = stats(process);
                (stats["executed"], stats.state)
            })
            .collect();
        if now.iter().all(|(executed, _)| *executed == now[0].0) && last.as_ref() == Some(&now) {
            return now.into_iter().map(|(_, state)| state).collect();
        }
        assert!(Instant::now() < deadline, "the replicas did not settle: {now:?}");
        last = Some(now);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The digest a replica's `stats` line prints for a state machine whose snapshot is
/// `snapshot`: blake3's first 8 bytes, in hex.
pub fn state_digest(snapshot: &[u8]) -> String {
    blake3::hash(snapshot).as_bytes()[..8].iter().map(|byte| format!("{byte:02x}")).collect()
}

pub struct Group {
    pub replicas: Vec<Process>,
    pub memory: Vec<Process>,
    /// Kept for its `Drop`: the gateway dies with the group.
    pub gateway: Process,
    pub gateway_addr: SocketAddr,
}

impl Group {
    /// Replicas 0–2 of `app`, memory nodes 3–5, a gateway for `app`; `byzantine` =
    /// (replica, behaviour).
    pub fn start(name: &str, app: &str, byzantine: Option<(u16, &str)>) -> Group {
        Group::start_n(name, app, 3, byzantine)
    }

    /// Replicas 0 .. n of `app` (n = 2f + 1), memory nodes n .. n + 3, a gateway.
    pub fn start_n(name: &str, app: &str, n: u16, byzantine: Option<(u16, &str)>) -> Group {
        let device = format!("soft:bft-kv-{name}-{}", std::process::id());
        let common = ["--device", &device, "--spec", "-", "--listen", "127.0.0.1:0"];
        let ids = |range: std::ops::Range<u16>| range.map(|id| id.to_string()).collect::<Vec<_>>().join(",");
        let (replica_ids, memory_ids) = (ids(0..n), ids(n..n + 3));
        let mut memory: Vec<Process> = (n..n + 3)
            .map(|id| {
                let mut command = Command::new(memory_binary());
                command.args(common).args(["--id", &id.to_string(), "--writers", &replica_ids]);
                command.args(["--tail", TAIL, "--rings"]);
                Process::spawn(command, format!("memory node {id}"))
            })
            .collect();
        let mut replicas: Vec<Process> = (0..n)
            .map(|id| {
                let mut command = Command::new(env!("CARGO_BIN_EXE_usec-bft-kv"));
                command.args(common).args(["--id", &id.to_string(), "--memory-nodes", &memory_ids]);
                command.args(["--replicas", &replica_ids]);
                command.args(["--tail", TAIL, "--window", "32", "--app", app]);
                // Generous for this machine's load: a slow path or a view change is a
                // timeout away, and a descheduled leader must not look dead too often.
                command.args(["--fast-path-us", "20000", "--slow-path-us", "40000"]);
                command.args(["--view-change-us", "500000"]);
                if let Some((who, behaviour)) = byzantine.filter(|(who, _)| *who == id) {
                    command.args(["--byzantine", behaviour]);
                    assert_eq!(who, id);
                }
                Process::spawn(command, format!("replica {id}"))
            })
            .collect();
        let mut nodes = Vec::new();
        for (id, process) in replicas.iter_mut().chain(&mut memory).enumerate() {
            let line = process.expect("addr ");
            nodes.push((NodeId::new(id as u16).unwrap(), line["addr ".len()..].parse().unwrap()));
        }
        let spec = ClusterSpec::new(name, &ClusterSpec::fresh_run(), nodes).unwrap().to_string();
        for process in replicas.iter_mut().chain(&mut memory) {
            process.say(&format!("{spec}end"));
        }
        let mut clients = Vec::new();
        for process in &mut replicas {
            let ready = process.expect("ready client=");
            clients.push(ready["ready client=".len()..].to_string());
        }
        for process in &mut memory {
            process.expect("ready");
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_usec-bft-gateway"));
        command.args(["--port", "0", "--replica-addrs", &clients.join(","), "--lanes", "4", "--app", app]);
        command.args(["--replicas", &replica_ids]);
        let mut gateway = Process::spawn(command, "gateway".into());
        let ready = gateway.expect("ready ");
        let gateway_addr = ready["ready ".len()..].parse().unwrap();
        Group { replicas, memory, gateway, gateway_addr }
    }
}

/// A redis-cli of sorts: one connection, one request at a time.
pub struct Resp {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Resp {
    pub fn open(addr: SocketAddr) -> Resp {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        Resp { stream, buffer: Vec::new() }
    }

    /// The reply to `args`, `None` if none came within `timeout` or the connection broke.
    pub fn request(&mut self, args: &[&[u8]], timeout: Duration) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        reply::request(&mut out, args.iter().copied());
        self.stream.write_all(&out).ok()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(len) = scan::reply_len(&self.buffer).expect("well-formed replies") {
                return Some(self.buffer.drain(..len).collect());
            }
            if Instant::now() > deadline {
                return None;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
    }
}
