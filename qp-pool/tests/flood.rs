//! A flood of idle connections against a node whose file descriptors are limited: the node
//! must shed connections and keep bootstrapping, and the real peers must still get in.
//!
//! The flooded node is a child process (this test binary run again, see [`child_node`])
//! with `RLIMIT_NOFILE` lowered; this process floods its control port with idle TCP
//! connections, then runs the two real peers: node 0, which dials the child, and node 2,
//! which the child dials. A child speaks lines on stdin/stdout; its own output follows
//! `@@ `. The binary has its own harness (libtest-mimic): a child is this binary started
//! with [`CHILD_ENV`] set, not a test that passes doing nothing. Another child checks the
//! TCP listener's reserve descriptor with none left at all, and a simulation checks, in
//! virtual time, that failing accepts never end bootstrap.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use libtest_mimic::{Arguments, Trial};
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn};
use usec_qp_pool::handshake::{Handshake, Side};
use usec_qp_pool::wire::{parse_frame, FrameKind};
use usec_qp_pool::{
    Bootstrap, ClusterKey, ClusterSpec, Link, MemoryHub, MemoryNetwork, Network, Progress, Received,
    TcpNetwork,
};
use usec_verbs::sim::SimFabric;
use usec_verbs::Context;

const CHILD_ENV: &str = "USEC_QP_POOL_FLOOD_CHILD";
const DEVICE_ENV: &str = "USEC_QP_POOL_FLOOD_DEVICE";
/// `limit:<n>` sets the child's descriptor limit to n; `headroom:<n>` to the descriptors it
/// has open once its node is set up, plus n.
const NOFILE_ENV: &str = "USEC_QP_POOL_FLOOD_NOFILE";

fn main() {
    if let Some(mode) = std::env::var_os(CHILD_ENV) {
        child_node(&mode);
    }
    let tests: [(&str, fn()); 5] = [
        (
            "a_connection_flood_beyond_the_descriptor_limit_does_not_stop_bootstrap",
            a_connection_flood_beyond_the_descriptor_limit_does_not_stop_bootstrap,
        ),
        ("a_node_with_few_spare_descriptors_sheds_a_flood", a_node_with_few_spare_descriptors_sheds_a_flood),
        (
            "a_listener_out_of_descriptors_sheds_waiting_connections",
            a_listener_out_of_descriptors_sheds_waiting_connections,
        ),
        ("failing_accepts_do_not_end_bootstrap", failing_accepts_do_not_end_bootstrap),
        (
            "a_slow_keyed_flood_neither_starves_the_real_peer_nor_gets_an_offer",
            a_slow_keyed_flood_neither_starves_the_real_peer_nor_gets_an_offer,
        ),
    ];
    let args = Arguments::from_args();
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            Trial::test(name, move || {
                test();
                Ok(())
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// The child's side (`node`: a flooded node; `shed`: a bare listener out of descriptors):
/// serves, then exits.
fn child_node(mode: &std::ffi::OsStr) -> ! {
    let served = if mode == "shed" { serve_shed_child() } else { serve_child() };
    match served {
        Ok(()) => std::process::exit(0),
        Err(error) => {
            println!("@@ error {error}");
            std::process::exit(1);
        }
    }
}

fn open_descriptors() -> Result<u64, String> {
    Ok(std::fs::read_dir("/proc/self/fd").map_err(|e| e.to_string())?.count() as u64)
}

/// A loopback listener with an accept queue as deep as the system allows (`somaxconn`, 4096 by default), so that the
/// flood lands at full speed and the node meets it in one go (std's queue of 128 would
/// pace the flooders with SYN retransmissions instead).
fn deep_listener() -> nix::Result<TcpListener> {
    let socket = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(socket.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0))?;
    listen(&socket, Backlog::MAXALLOWABLE)?;
    Ok(TcpListener::from(socket))
}

fn serve_child() -> Result<(), String> {
    let device = std::env::var(DEVICE_ENV).map_err(|_| format!("{DEVICE_ENV} unset"))?;
    let nofile = std::env::var(NOFILE_ENV).map_err(|_| format!("{NOFILE_ENV} unset"))?;
    let listener = deep_listener().map_err(|e| format!("listening: {e}"))?;
    let context = Context::open(&device).map_err(|e| e.to_string())?;
    let limit = match nofile.split_once(':') {
        Some(("limit", n)) => n.parse::<u64>().map_err(|e| e.to_string())?,
        Some(("headroom", n)) => open_descriptors()? + n.parse::<u64>().map_err(|e| e.to_string())?,
        _ => return Err(format!("bad {NOFILE_ENV} {nofile:?}")),
    };
    setrlimit(Resource::RLIMIT_NOFILE, limit, limit).map_err(|e| format!("setrlimit: {e}"))?;
    println!("@@ addr {} limit {limit}", listener.local_addr().map_err(|e| e.to_string())?);
    let mut lines = std::io::stdin().lock().lines();
    let mut next =
        || -> Result<String, String> { lines.next().ok_or("stdin closed")?.map_err(|e| e.to_string()) };
    let me: u16 = next()?.strip_prefix("me ").ok_or("expected `me <id>`")?.parse().map_err(|_| "bad id")?;
    let mut text = String::new();
    loop {
        let line = next()?;
        if line == "end" {
            break;
        }
        text.push_str(&line);
        text.push('\n');
    }
    let spec = ClusterSpec::parse(&text).map_err(|e| e.to_string())?;
    let network = TcpNetwork::from_listener(listener).map_err(|e| e.to_string())?;
    let boot = Bootstrap::start(&context, config(&spec, node(me)), Box::new(network))
        .map_err(|e| format!("starting the node: {e}"))?;
    // The flood starts now, against a node that accepts as fast as it can.
    println!("@@ polling");
    let start = Instant::now();
    let cluster = boot.run().map_err(|e| format!("bootstrap failed after {:?}: {e}", start.elapsed()))?;
    let (peers, took, refused) = (cluster.peers().count(), start.elapsed(), cluster.bootstrap_rejections());
    println!("@@ done {peers} peers in {took:?}; refused: {}", refused.join("; "));
    // Stay up (the peers' control connections open) until told to go.
    while next()? != "exit" {}
    Ok(())
}

/// A listener in a process with no descriptor left: accepting fails, shedding closes what
/// waits, and once descriptors are back the next connection is accepted.
fn serve_shed_child() -> Result<(), String> {
    let mut network = TcpNetwork::bind(([127, 0, 0, 1], 0).into()).map_err(|e| e.to_string())?;
    let addr = network.local_addr().map_err(|e| e.to_string())?;
    let limit = open_descriptors()? + 4;
    setrlimit(Resource::RLIMIT_NOFILE, limit, limit).map_err(|e| format!("setrlimit: {e}"))?;
    let mut hoard = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        hoard.push(file);
    }
    println!("@@ addr {addr} limit {limit}");
    let mut lines = std::io::stdin().lock().lines();
    let mut expect = |word: &str| -> Result<(), String> {
        match lines.next() {
            Some(Ok(line)) if line == word => Ok(()),
            other => Err(format!("expected {word:?}, got {other:?}")),
        }
    };
    expect("connected")?;
    let accepted = network.accept().map(|link| link.is_some());
    let Err(error) = accepted else { return Err(format!("accept with no descriptor left: {accepted:?}")) };
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut shed = 0;
    while shed < 3 && Instant::now() < give_up {
        match network.shed() {
            Ok(true) => shed += 1,
            Ok(false) => std::thread::sleep(Duration::from_millis(1)),
            Err(error) => return Err(format!("shedding: {error}")),
        }
    }
    println!("@@ shed {shed} after: {error}");
    drop(hoard);
    expect("again")?;
    while Instant::now() < give_up {
        if network.accept().map_err(|e| format!("accepting again: {e}"))?.is_some() {
            println!("@@ accepted");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err("the last connection never came".into())
}

/// The flooded node, seen from this process.
struct ChildNode {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl ChildNode {
    fn spawn(mode: &str, device: &str, nofile: &str) -> ChildNode {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, mode)
            .env(DEVICE_ENV, device)
            .env(NOFILE_ENV, nofile)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning the flooded node");
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        ChildNode { child, input, output }
    }

    /// The child's next line of its own, without the `@@ ` prefix.
    fn read(&mut self) -> String {
        loop {
            let mut line = String::new();
            let read = self.output.read_line(&mut line).unwrap();
            assert!(read > 0, "the flooded node exited without a word");
            // Only lines of its own start with `@@ ` (a panic message may come first).
            if let Some((_, own)) = line.trim_end().split_once("@@ ") {
                assert!(!own.starts_with("error"), "the flooded node failed: {own}");
                return own.to_string();
            }
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.input, "{line}").unwrap();
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens `count` idle connections to `addr` from a few threads at once and keeps them
/// open. It stops early only if the node's port refuses connections (the node is gone).
fn flood(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    const THREADS: usize = 8;
    let give_up = Instant::now() + Duration::from_secs(30);
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let share = count / THREADS + usize::from(thread < count % THREADS);
            std::thread::spawn(move || {
                let mut streams = Vec::with_capacity(share);
                while streams.len() < share && Instant::now() < give_up {
                    match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
                        Ok(stream) => streams.push(stream),
                        Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => break,
                        Err(_) => {}
                    }
                }
                streams
            })
        })
        .collect();
    threads.into_iter().flat_map(|thread| thread.join().unwrap()).collect()
}

/// Makes sure this process may hold `count` more descriptors than it has.
fn allow_descriptors(count: u64) {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let want = open_descriptors().unwrap() + count + 64;
    assert!(hard >= want, "this test needs {want} descriptors, the hard limit is {hard}");
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want, hard).unwrap();
    }
}

/// Node 1 runs in a child limited by `nofile` and is flooded with `connections` idle
/// connections before its real peers (nodes 0 and 2, in this process) start; every node
/// must bootstrap.
fn flooded_node_still_bootstraps(nofile: &str, connections: usize) {
    allow_descriptors(connections as u64);
    let device = soft_device();
    let mut child = ChildNode::spawn("node", &device, nofile);
    let hello = child.read();
    let (addr, limit) = hello.strip_prefix("addr ").and_then(|rest| rest.split_once(" limit ")).unwrap();
    let child_addr: SocketAddr = addr.parse().unwrap();
    eprintln!("flooded node at {child_addr}, descriptor limit {limit}");
    let (mut listeners, _) = loopback(2, "unused");
    let node_two = listeners.pop().unwrap();
    let node_zero = listeners.pop().unwrap();
    let nodes = [
        (node(0), node_zero.local_addr().unwrap()),
        (node(1), child_addr),
        (node(2), node_two.local_addr().unwrap()),
    ];
    let spec = ClusterSpec::new("flood", &ClusterSpec::fresh_run(), nodes).unwrap();
    child.send("me 1");
    for line in spec.to_string().lines() {
        child.send(line);
    }
    child.send("end");
    assert_eq!(child.read(), "polling");

    let start = Instant::now();
    let flood = flood(child_addr, connections);
    eprintln!("{} idle connections opened in {:?}", flood.len(), start.elapsed());

    let peers = std::thread::spawn({
        let spec = spec.clone();
        move || {
            let configs = vec![config(&spec, node(0)), config(&spec, node(2))];
            start_configs(&device, vec![node_zero, node_two], configs)
        }
    });
    let report = child.read();
    assert!(report.starts_with("done 2 peers"), "{report}");
    // The flood was met, not outrun: the node let connections go to make room.
    assert!(report.contains("dropped before they said who they were"), "{report}");
    for result in peers.join().unwrap() {
        let cluster = result.unwrap();
        assert_eq!(cluster.peers().count(), 2);
    }
    eprintln!("flooded node: {report}");
    child.send("exit");
    assert!(child.child.wait().unwrap().success());
    drop(flood);
}

/// The probe's case: 1,100 idle connections against `ulimit -n 1024`.
fn a_connection_flood_beyond_the_descriptor_limit_does_not_stop_bootstrap() {
    flooded_node_still_bootstraps("limit:1024", 1200);
}

/// Descriptors run out long before any cap on waiting connections is reached: the node
/// must make room from the connections it holds, not give up.
fn a_node_with_few_spare_descriptors_sheds_a_flood() {
    flooded_node_still_bootstraps("headroom:40", 400);
}

fn a_listener_out_of_descriptors_sheds_waiting_connections() {
    let mut child = ChildNode::spawn("shed", "unused", "unused");
    let hello = child.read();
    let addr: SocketAddr = hello.strip_prefix("addr ").unwrap().split_once(' ').unwrap().0.parse().unwrap();
    let mut clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    child.send("connected");
    let report = child.read();
    assert!(report.starts_with("shed 3 after: Too many open files"), "{report}");
    for client in &mut clients {
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut byte = [0u8; 1];
        match client.read(&mut byte) {
            Ok(0) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("a shed connection is closed, got {other:?}"),
        }
    }
    let _last = TcpStream::connect(addr).unwrap();
    child.send("again");
    assert_eq!(child.read(), "accepted");
    assert!(child.child.wait().unwrap().success());
}

/// A network whose first `failures` accepts fail for want of descriptors.
#[derive(Debug)]
struct Starved {
    inner: MemoryNetwork,
    failures: usize,
}

impl Network for Starved {
    fn accept(&mut self) -> std::io::Result<Option<Box<dyn Link>>> {
        if self.failures > 0 {
            self.failures -= 1;
            return Err(Errno::EMFILE.into());
        }
        self.inner.accept()
    }

    fn dial(&mut self, addr: SocketAddr) -> std::io::Result<Box<dyn Link>> {
        self.inner.dial(addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// In virtual time: a node whose accepts fail for a while (out of descriptors) keeps
/// polling, and bootstrap completes once they succeed again.
fn failing_accepts_do_not_end_bootstrap() {
    let fabric = SimFabric::create("qp-pool-starved", 11).unwrap();
    let hub = MemoryHub::new();
    let addr = |id: u16| SocketAddr::from(([10, 0, 0, id as u8 + 1], 7000));
    let spec = ClusterSpec::new("starved", "sim", (0..2).map(|id| (node(id), addr(id)))).unwrap();
    let mut boots: Vec<Bootstrap> = (0..2)
        .map(|id| {
            let (_, context) = fabric.open_node().unwrap();
            let listener = hub.listen(addr(id)).unwrap();
            let network: Box<dyn Network> = if id == 1 {
                Box::new(Starved { inner: listener, failures: 100 })
            } else {
                Box::new(listener)
            };
            Bootstrap::start(&context, config(&spec, node(id)).deadline(Duration::from_secs(5)), network)
                .unwrap()
        })
        .collect();
    let mut done = [false, false];
    let mut now_ns = 0;
    while done != [true, true] {
        for (boot, done) in boots.iter_mut().zip(&mut done) {
            if !*done {
                *done = boot.poll(now_ns).unwrap() == Progress::Done;
            }
        }
        now_ns += 1_000_000;
    }
    let starved = boots.pop().unwrap().finish().unwrap();
    let rejections = starved.bootstrap_rejections().join("; ");
    assert!(
        rejections.contains("accepting failed") && rejections.contains("last: Too many open files"),
        "{rejections}"
    );
    boots.pop().unwrap().finish().unwrap();
}

/// In virtual time, with a cluster key: attackers that know the names hold connections
/// open after a hello (they cannot send the proof), old ones idle and new ones arriving
/// every millisecond. The real node 0 still gets in, and no attacker is offered anything.
fn a_slow_keyed_flood_neither_starves_the_real_peer_nor_gets_an_offer() {
    let fabric = SimFabric::create("qp-pool-slowloris", 12).unwrap();
    let hub = MemoryHub::new();
    let addr = |id: u16| SocketAddr::from(([10, 0, 0, id as u8 + 1], 7000));
    let spec = ClusterSpec::new("slow", "sim", (0..2).map(|id| (node(id), addr(id))))
        .unwrap()
        .with_key(ClusterKey::from_bytes([3; 32]));
    let impostor_spec = Arc::new(spec.clone().with_key(ClusterKey::from_bytes([4; 32])));
    let mut attacker = hub.listen(addr(9)).unwrap();
    let mut attacks: Vec<Box<dyn Link>> = Vec::new();
    let mut attack = |attacks: &mut Vec<Box<dyn Link>>, count: usize| {
        for _ in 0..count {
            let side = Side::Dialer { expected: node(1) };
            let serial = attacks.len() as u64;
            let mut nonce = [0u8; 32];
            nonce[..8].copy_from_slice(&serial.to_le_bytes());
            let hello = Handshake::new(Arc::clone(&impostor_spec), node(0), side, "attack", nonce);
            let mut link = attacker.dial(addr(1)).unwrap();
            link.write_some(hello.outgoing()).unwrap();
            attacks.push(link);
        }
    };
    let boot = |id: u16| {
        let (_, context) = fabric.open_node().unwrap();
        let network = Box::new(hub.listen(addr(id)).unwrap());
        Bootstrap::start(&context, config(&spec, node(id)).deadline(Duration::from_secs(10)), network)
            .unwrap()
    };
    let mut one = boot(1);
    attack(&mut attacks, 300);
    let mut now_ns = 0;
    for _ in 0..100 {
        one.poll(now_ns).unwrap();
        now_ns += 1_000_000;
    }
    let mut zero = boot(0);
    let mut done = [false, false];
    while done != [true, true] {
        attack(&mut attacks, 10);
        for (boot, done) in [&mut zero, &mut one].into_iter().zip(&mut done) {
            if !*done {
                *done = boot.poll(now_ns).unwrap() == Progress::Done;
            }
        }
        now_ns += 1_000_000;
    }
    eprintln!(
        "node 0 got in after {} ms of flood, {} attacking connections",
        now_ns / 1_000_000,
        attacks.len()
    );
    let (zero, one) = (zero.finish().unwrap(), one.finish().unwrap());
    assert_eq!((zero.peers().count(), one.peers().count()), (1, 1));
    for link in &mut attacks {
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(Received::Data(count)) = link.read_some(&mut chunk) {
            received.extend_from_slice(&chunk[..count]);
        }
        let mut bytes = &received[..];
        while let Ok(Some(frame)) = parse_frame(bytes) {
            assert_ne!(frame.kind, FrameKind::Offer, "an attacker was offered the node's endpoints");
            bytes = &bytes[frame.len..];
        }
    }
    let refused = one.bootstrap_rejections().join("; ");
    assert!(refused.contains("dropped before they said who they were"), "{refused}");
}
