//! A cluster of real processes on the soft provider: this test process is node 0, and two
//! children (this test binary run again, see [`child_node`]) are nodes 1 and 2. They
//! bootstrap over loopback TCP, WRITE into each other's regions, and then node 2 is
//! SIGKILLed: node 0's quorum rounds go on with node 1, node 2 is tracked as failed, and
//! its loss surfaces as events.
//!
//! A child speaks lines on stdin/stdout; its own output follows `@@ ` (the test harness
//! prints text of its own around it).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::child::{check_marks, command_lines, write_marks, NodeProcess};
use common::*;
use usec_qp_pool::{
    majority, wait_for, BusyPoll, Cluster, ClusterSpec, ControlEvent, PollMode, QuorumWaiter, TcpNetwork,
    WrId,
};
use usec_verbs::{AsyncEventKind, Context};

const CHILD_ENV: &str = "USEC_QP_POOL_CHILD";
const DEVICE_ENV: &str = "USEC_QP_POOL_CHILD_DEVICE";

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
    let commands = command_lines();
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
fn spawn_child(index: usize, device: &str) -> NodeProcess {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child_node", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, "1")
        .env(DEVICE_ENV, device);
    NodeProcess::spawn(&format!("child node {}", index + 1), command)
}

#[test]
fn three_processes_bootstrap_write_and_survive_a_kill() {
    let device = soft_device();
    let mut children = [spawn_child(0, &device), spawn_child(1, &device)];
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
