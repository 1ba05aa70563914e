//! A cluster of real processes on the soft provider: this test process is node 0, and two
//! children (this test binary run again, see [`child_node`]) are nodes 1 and 2. They
//! bootstrap over loopback TCP, WRITE into each other's regions, and then node 2 is
//! SIGKILLed: node 0's quorum rounds go on with node 1, node 2 is tracked as failed, and
//! its loss surfaces as events.
//!
//! A child speaks lines on stdin/stdout; its own output follows `@@ ` (the test harness
//! prints text of its own around it).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use usec_qp_pool::{
    majority, wait_for, BusyPoll, Cluster, ClusterSpec, ControlEvent, NodeId, PollMode, QuorumWaiter,
    TcpNetwork, WrId,
};
use usec_verbs::{AsyncEventKind, Context, Status};

const CHILD_ENV: &str = "USEC_QP_POOL_CHILD";
const DEVICE_ENV: &str = "USEC_QP_POOL_CHILD_DEVICE";

/// The byte node `id` writes into its peers' regions, at offset 64 × id.
fn mark_of(id: NodeId) -> [u8; 8] {
    [id.get() as u8 + 1; 8]
}

fn offset_of(id: NodeId) -> u64 {
    64 * u64::from(id.get())
}

/// Writes this node's mark into every peer's region.
fn write_marks(cluster: &mut Cluster, poller: &mut usec_qp_pool::Poller) -> Result<(), String> {
    let me = cluster.me();
    let peers: Vec<NodeId> = cluster.peers().collect();
    for peer in peers {
        let status = write_and_wait(cluster, poller, peer, REPLICATION, offset_of(me), &mark_of(me));
        if status != Status::Success {
            return Err(format!("write to node {peer}: {status}"));
        }
    }
    Ok(())
}

/// Whether every peer's mark is in this node's region.
fn check_marks(cluster: &Cluster) -> Result<(), String> {
    for peer in cluster.peers() {
        let landed = read_local(cluster, offset_of(peer) as usize, 8);
        if landed != mark_of(peer) {
            return Err(format!("node {peer}'s mark at node {}: {landed:?}", cluster.me()));
        }
    }
    Ok(())
}

/// The child's side. As a normal test it does nothing.
#[test]
fn child_node() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    if let Err(error) = serve_child() {
        println!("@@ error {error}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

fn serve_child() -> Result<(), String> {
    let device = std::env::var(DEVICE_ENV).map_err(|_| format!("{DEVICE_ENV} unset"))?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    println!("@@ addr {}", listener.local_addr().map_err(|e| e.to_string())?);
    let (lines, commands) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        commands.recv_timeout(Duration::from_secs(30)).map_err(|_| "no command from the parent".to_string())
    };
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
    let context = Context::open(&device).map_err(|e| e.to_string())?;
    let network = TcpNetwork::from_listener(listener).map_err(|e| e.to_string())?;
    let mut cluster = Cluster::bootstrap_with(&context, config(&spec, node(me)), Box::new(network))
        .map_err(|e| e.to_string())?;
    let mut poller = cluster.take_poller(&[]).map_err(|e| e.to_string())?;
    write_marks(&mut cluster, &mut poller)?;
    println!("@@ wrote");
    loop {
        cluster.poll_control();
        match commands.try_recv() {
            Ok(command) if command == "check" => match check_marks(&cluster) {
                Ok(()) => println!("@@ ok"),
                Err(error) => println!("@@ bad {error}"),
            },
            Ok(command) if command == "exit" => return Ok(()),
            Ok(command) => return Err(format!("unknown command {command:?}")),
            Err(mpsc::TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(1)),
            Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
        }
    }
}

/// A child node, seen from node 0.
struct ChildNode {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl ChildNode {
    fn spawn(device: &str) -> ChildNode {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_node", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, "1")
            .env(DEVICE_ENV, device)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning a child node");
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        ChildNode { child, input, output }
    }

    /// The child's next line of its own, without the `@@ ` prefix.
    fn read(&mut self) -> String {
        loop {
            let mut line = String::new();
            let read = self.output.read_line(&mut line).unwrap();
            assert!(read > 0, "the child exited early");
            // The harness may have printed `test child_node ... ` on the same line.
            if let Some(own) = line.trim_end().split_once("@@ ").map(|(_, own)| own) {
                assert!(!own.starts_with("error"), "the child failed: {own}");
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

#[test]
fn three_processes_bootstrap_write_and_survive_a_kill() {
    let device = soft_device();
    let mut children = [ChildNode::spawn(&device), ChildNode::spawn(&device)];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut nodes = vec![(node(0), listener.local_addr().unwrap())];
    for (index, child) in children.iter_mut().enumerate() {
        let addr: SocketAddr = child.read().strip_prefix("addr ").expect("an address").parse().unwrap();
        nodes.push((node(index as u16 + 1), addr));
    }
    let spec = ClusterSpec::new("processes", &ClusterSpec::fresh_run(), nodes).unwrap();
    for (index, child) in children.iter_mut().enumerate() {
        child.send(&format!("me {}", index + 1));
        for line in spec.to_string().lines() {
            child.send(line);
        }
        child.send("end");
    }
    let context = Context::open(&device).unwrap();
    let network = TcpNetwork::from_listener(listener).unwrap();
    let mut cluster = Cluster::bootstrap_with(&context, config(&spec, node(0)), Box::new(network)).unwrap();
    let mut poller = cluster.take_poller(&[]).unwrap();
    write_marks(&mut cluster, &mut poller).unwrap();
    for child in &mut children {
        assert_eq!(child.read(), "wrote");
    }
    check_marks(&cluster).unwrap();
    for child in &mut children {
        child.send("check");
        assert_eq!(child.read(), "ok");
    }

    // SIGKILL node 2: node 0's rounds go on with node 1.
    children[1].child.kill().unwrap();
    children[1].child.wait().unwrap();
    let (one, two) = (node(1), node(2));
    let mut waiter = QuorumWaiter::new();
    let start = Instant::now();
    let mut entry = 0;
    while !waiter.is_failed(two) {
        entry += 1;
        for peer in [one, two] {
            write(
                &mut cluster,
                peer,
                REPLICATION,
                WrId::new(LOG_WRITE, peer, entry).unwrap(),
                512 + 8 * entry,
                &entry.to_le_bytes(),
            );
        }
        let key = waiter.begin(LOG_WRITE, entry, &[one, two], majority(3) - 1).unwrap();
        let mut driver = BusyPoll::new(PollMode::SpinThenYield { spins: 1000 });
        let deadline_ns = driver.deadline_in(20_000_000_000);
        let outcome =
            wait_for(&mut poller, &mut waiter, key, deadline_ns, &mut driver, &mut |_: &_| {}).unwrap();
        assert!(outcome.acked.contains(&one), "{outcome:?}");
        waiter.finish(key).unwrap();
        assert!(start.elapsed() < Duration::from_secs(20), "the dead node never failed");
    }
    eprintln!("node 2 failed after {entry} rounds, {:?} after the kill", start.elapsed());
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut peer_lost, mut control_lost) = (false, false);
    while !(peer_lost && control_lost) {
        assert!(Instant::now() < deadline, "no loss events (verbs: {peer_lost}, control: {control_lost})");
        if let Some(event) = cluster.poll_event() {
            peer_lost |= event.event.kind == AsyncEventKind::PeerLost && event.peer == Some(two);
        }
        if let Some(ControlEvent::PeerLost { peer, .. }) = cluster.poll_control() {
            control_lost |= peer == two;
        }
    }
    children[0].send("exit");
    assert!(children[0].child.wait().unwrap().success());
}
