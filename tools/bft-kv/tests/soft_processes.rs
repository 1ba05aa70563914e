//! The BFT KV with real processes on the soft provider: three `usec-bft-kv` replicas,
//! three `usec-bft-memory` memory nodes and a `usec-bft-gateway`, driven with RESP as
//! redis-cli would. Client threads run SET / GET / INCR through the gateway while a memory
//! node is SIGKILLed and then the leader; or while one replica lies (`--byzantine`). Every
//! history is checked linearizable with `usec_check`'s checker.
//!
//! The memory node binary belongs to another package of the workspace: it is looked for
//! next to this package's binaries and built with cargo if it is not there.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use usec_check::linearizability::{check, Options, Verdict};
use usec_check::models::{Kv, KvInput, KvOutput};
use usec_check::Bytes;
use usec_check::Recorder;
use usec_qp_pool::{ClusterSpec, NodeId};
use usec_replication::apps::resp::{reply, scan};

const TAIL: &str = "32";
/// How long a step may take on a loaded two-core machine before the test gives up.
const STEP_LIMIT: Duration = Duration::from_secs(90);
/// How long a client waits for one reply before it counts the operation as unknown.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

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

struct Process {
    name: String,
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
    fn expect(&mut self, prefix: &str) -> String {
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

    fn say(&mut self, line: &str) {
        writeln!(self.input, "{line}").unwrap();
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A replica's `stats` line as numbers.
fn stats(process: &mut Process) -> std::collections::BTreeMap<String, u64> {
    process.say("stats");
    let line = process.expect("stats ");
    println!("{}: {line}", process.name);
    line["stats ".len()..]
        .split(' ')
        .map(|field| {
            let (name, value) = field.split_once('=').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

struct Group {
    replicas: Vec<Process>,
    memory: Vec<Process>,
    /// Kept for its `Drop`: the gateway dies with the group.
    #[allow(dead_code)]
    gateway: Process,
    gateway_addr: SocketAddr,
}

impl Group {
    /// Replicas 0–2, memory nodes 3–5, a gateway; `byzantine` = (replica, behaviour).
    fn start(name: &str, byzantine: Option<(u16, &str)>) -> Group {
        let device = format!("soft:bft-kv-{name}-{}", std::process::id());
        let common = ["--device", &device, "--spec", "-", "--listen", "127.0.0.1:0"];
        let mut memory: Vec<Process> = (3..6u16)
            .map(|id| {
                let mut command = Command::new(memory_binary());
                command.args(common).args(["--id", &id.to_string(), "--writers", "0,1,2"]);
                command.args(["--tail", TAIL, "--rings"]);
                Process::spawn(command, format!("memory node {id}"))
            })
            .collect();
        let mut replicas: Vec<Process> = (0..3u16)
            .map(|id| {
                let mut command = Command::new(env!("CARGO_BIN_EXE_usec-bft-kv"));
                command.args(common).args(["--id", &id.to_string(), "--memory-nodes", "3,4,5"]);
                command.args(["--tail", TAIL, "--window", "32"]);
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
        command.args(["--port", "0", "--replica-addrs", &clients.join(","), "--lanes", "4"]);
        let mut gateway = Process::spawn(command, "gateway".into());
        let ready = gateway.expect("ready ");
        let gateway_addr = ready["ready ".len()..].parse().unwrap();
        Group { replicas, memory, gateway, gateway_addr }
    }
}

/// A redis-cli of sorts: one connection, one request at a time.
struct Resp {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Resp {
    fn open(addr: SocketAddr) -> Resp {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        Resp { stream, buffer: Vec::new() }
    }

    /// The reply to `args`, `None` if none came within `timeout` or the connection broke.
    fn request(&mut self, args: &[&[u8]], timeout: Duration) -> Option<Vec<u8>> {
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

fn output(bytes: &[u8]) -> KvOutput {
    let text = String::from_utf8_lossy(bytes).into_owned();
    match bytes[0] {
        b'+' if text == "+OK\r\n" => KvOutput::Ok,
        b':' => KvOutput::Integer(text[1..text.len() - 2].parse().unwrap()),
        b'$' if text == "$-1\r\n" => KvOutput::Value(None),
        b'$' => {
            let header = text.find("\r\n").unwrap();
            KvOutput::Value(Some(Bytes::from(&bytes[header + 2..bytes.len() - 2])))
        }
        _ => panic!("unexpected reply {text:?}"),
    }
}

fn args(input: &KvInput) -> Vec<Vec<u8>> {
    match input {
        KvInput::Get(key) => vec![b"GET".to_vec(), key.0.clone()],
        KvInput::Set(key, value) => vec![b"SET".to_vec(), key.0.clone(), value.0.clone()],
        KvInput::IncrBy(key, 1) => vec![b"INCR".to_vec(), key.0.clone()],
        other => unreachable!("not generated: {other:?}"),
    }
}

/// A seeded generator (xorshift64*): the workload is reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Client `client`'s operations until `stop`: registers `k0`, `k1` set and read, counters
/// `c0`, `c1` incremented and read.
fn client_loop(
    client: u64,
    seed: u64,
    addr: SocketAddr,
    recorder: &Recorder<KvInput, KvOutput>,
    answered: &AtomicU64,
    stop: &AtomicBool,
) {
    let mut rng = Rng(seed.wrapping_add(client).max(1));
    let mut resp = Resp::open(addr);
    let mut written = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = |kind: &str, rng: &mut Rng| Bytes::from(format!("{kind}{}", rng.below(2)).as_bytes());
        let input = match rng.below(4) {
            0 => KvInput::Get(key("k", &mut rng)),
            1 => {
                written += 1;
                KvInput::Set(key("k", &mut rng), Bytes::from(format!("{client}-{written}").as_bytes()))
            }
            2 => KvInput::Get(key("c", &mut rng)),
            _ => KvInput::IncrBy(key("c", &mut rng), 1),
        };
        let request = args(&input);
        let invocation = recorder.invoke(client, input);
        let parts: Vec<&[u8]> = request.iter().map(Vec::as_slice).collect();
        match resp.request(&parts, REPLY_TIMEOUT) {
            Some(reply) => {
                recorder.ok(invocation, output(&reply));
                answered.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                // Perhaps applied: left without a return, and a fresh connection.
                drop(invocation);
                resp = Resp::open(addr);
            }
        }
    }
}

/// Runs `clients` client threads through the gateway; `faults` runs alongside with the
/// count of answered operations to wait on; then the history is checked.
fn workload(group: &mut Group, clients: u64, faults: impl FnOnce(&mut Group, &dyn Fn(u64))) {
    let seed = std::env::var("USEC_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_b0f7);
    println!("seed {seed} (USEC_SEED to repeat)");
    let recorder = Recorder::new();
    let answered = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let addr = group.gateway_addr;
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|client| {
                let (recorder, answered, stop) = (&recorder, &answered, &stop);
                scope.spawn(move || client_loop(client, seed, addr, recorder, answered, stop))
            })
            .collect();
        let wait_for = |count: u64| {
            let deadline = Instant::now() + STEP_LIMIT;
            while answered.load(Ordering::Relaxed) < count {
                assert!(
                    Instant::now() < deadline,
                    "only {} operations answered of {count}",
                    answered.load(Ordering::Relaxed)
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        faults(group, &wait_for);
        stop.store(true, Ordering::Relaxed);
        for thread in threads {
            thread.join().unwrap();
        }
    });
    let history = recorder.operations();
    let unknown = history.iter().filter(|operation| operation.output().is_none()).count();
    println!("{} operations, {unknown} unanswered", history.len());
    let options = Options { max_steps_per_key: 1_000_000, ..Options::default() };
    match check(&Kv, &history, &options) {
        Verdict::Linearizable => {}
        other => panic!("the history is not known linearizable: {other}"),
    }
}

fn basic_commands(group: &Group) {
    let mut resp = Resp::open(group.gateway_addr);
    let mut run = |args: &[&[u8]]| resp.request(args, STEP_LIMIT).expect("a reply");
    assert_eq!(run(&[b"SET", b"greeting", b"hello"]), b"+OK\r\n");
    assert_eq!(run(&[b"GET", b"greeting"]), b"$5\r\nhello\r\n");
    assert_eq!(run(&[b"INCR", b"n"]), b":1\r\n");
    assert_eq!(run(&[b"INCR", b"n"]), b":2\r\n");
    assert_eq!(run(&[b"GET", b"missing"]), b"$-1\r\n");
}

#[test]
fn the_kv_survives_a_memory_node_and_then_the_leader_killed() {
    let mut group = Group::start("kill", None);
    basic_commands(&group);
    let before = stats(&mut group.replicas[1]);
    assert!(before["fast"] > 0, "all correct and up: the fast path ({before:?})");
    workload(&mut group, 3, |group, wait_for| {
        wait_for(30);
        group.memory[0].kill();
        println!("memory node 3 killed");
        wait_for(60);
        // Replica 0 leads view 0.
        group.replicas[0].kill();
        println!("replica 0 (the leader) killed");
        let view = group.replicas[1].expect("view ");
        println!("replica 1: {view}");
        wait_for(120);
    });
    let mut resp = Resp::open(group.gateway_addr);
    assert_eq!(resp.request(&[b"GET", b"greeting"], STEP_LIMIT).unwrap(), b"$5\r\nhello\r\n");
    let (one, two) = (stats(&mut group.replicas[1]), stats(&mut group.replicas[2]));
    assert!(one["view"] >= 1 && two["view"] >= 1, "{one:?} {two:?}");
}

#[test]
fn a_lying_replica_changes_nothing_clients_see() {
    let mut group = Group::start("lie", Some((2, "lie")));
    basic_commands(&group);
    workload(&mut group, 3, |_, wait_for| wait_for(60));
    // Replica 2's promises never match: no slot gets every promise, each is decided on
    // the slow path, by certificates.
    for n in 0..2 {
        let stats = stats(&mut group.replicas[n]);
        assert_eq!(stats["fast"], 0, "replica {n}: {stats:?}");
        assert!(stats["slow"] > 0, "replica {n}: {stats:?}");
    }
}

#[test]
fn a_leader_that_drops_requests_is_replaced_by_timeout() {
    let mut group = Group::start("drop", Some((0, "drop")));
    basic_commands(&group);
    let view = group.replicas[1].expect("view ");
    println!("replica 1: {view}");
    workload(&mut group, 3, |_, wait_for| wait_for(60));
    let stats = stats(&mut group.replicas[1]);
    assert!(stats["view"] >= 1, "{stats:?}");
}
