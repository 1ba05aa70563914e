//! A cluster of real processes on the soft provider: this test process is node 0, and two
//! children (this test binary run again, see [`child_node`]) are nodes 1 and 2. They
//! bootstrap over loopback TCP, WRITE into each other's regions, and then node 2 is
//! SIGKILLed: node 0's quorum rounds go on with node 1, node 2 is tracked as failed, and
//! its loss surfaces as events. Then membership with real processes: a restarted node
//! rejoins; a stopped one resumed after its replacement (by either road) joined is fenced;
//! a process with an id the description never listed joins; a removed process is refused
//! everywhere, and its id joins again as a newer process.
//!
//! A child speaks lines on stdin/stdout; its own output follows `@@ `. The binary has its
//! own harness (libtest-mimic): a child is this binary started with [`CHILD_ENV`] set, not
//! a test that passes without doing anything in every other run.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::child::{check_marks, command_lines, mark_of, offset_of, write_marks, NodeProcess};
use common::*;
use libtest_mimic::{Arguments, Trial};
use usec_qp_pool::{
    majority, wait_for, BusyPoll, Cluster, ClusterSpec, ControlEvent, NodeId, PeerLoss, PollMode, Poller,
    QuorumWaiter, TcpNetwork, WrId,
};
use usec_verbs::{AsyncEventKind, Context, Status};

const CHILD_ENV: &str = "USEC_QP_POOL_CHILD";
const DEVICE_ENV: &str = "USEC_QP_POOL_CHILD_DEVICE";

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child_node();
    }
    let tests: [(&str, fn()); 6] = [
        (
            "three_processes_bootstrap_write_and_survive_a_kill",
            three_processes_bootstrap_write_and_survive_a_kill,
        ),
        (
            "a_killed_node_restarted_as_a_new_process_rejoins_and_writes_flow_both_ways",
            a_killed_node_restarted_as_a_new_process_rejoins_and_writes_flow_both_ways,
        ),
        (
            "a_stopped_process_resumed_after_its_replacement_joined_is_fenced",
            a_stopped_process_resumed_after_its_replacement_joined_is_fenced,
        ),
        (
            "a_stopped_process_resumed_after_a_joining_replacement_is_fenced",
            a_stopped_process_resumed_after_a_joining_replacement_is_fenced,
        ),
        (
            "a_new_process_outside_the_description_joins_the_running_processes",
            a_new_process_outside_the_description_joins_the_running_processes,
        ),
        (
            "a_removed_process_is_refused_everywhere_and_its_id_joins_again",
            a_removed_process_is_refused_everywhere_and_its_id_joins_again,
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

/// The child's side: serves node 1 or 2, then exits.
fn child_node() -> ! {
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
    // `me <id>`, `me <id> rejoin` for a restarted node, or `me <id> join <addr>...` for a
    // node that joins through those members' addresses.
    let first = next()?;
    let mut words = first.split_whitespace();
    if words.next() != Some("me") {
        return Err(format!("expected `me <id>`, got {first:?}"));
    }
    let me: u16 = words.next().and_then(|id| id.parse().ok()).ok_or("bad id")?;
    let entry = words.next();
    let contacts: Vec<SocketAddr> = words
        .map(|addr| addr.parse().map_err(|_| format!("bad address {addr}")))
        .collect::<Result<_, _>>()?;
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
    let config = match entry {
        None => config(&spec, node(me)),
        Some("rejoin") => config(&spec, node(me)).rejoin(true),
        Some("join") => config(&spec, node(me)).join(contacts),
        Some(other) => return Err(format!("unknown entry {other:?}")),
    };
    let mut cluster =
        Cluster::bootstrap_with(&context, config, Box::new(network)).map_err(|e| e.to_string())?;
    let mut poller = cluster.take_poller(&[]).map_err(|e| e.to_string())?;
    write_marks(&mut cluster, &mut poller)?;
    println!("@@ wrote");
    let mut events = Vec::new();
    loop {
        events.extend(std::iter::from_fn(|| cluster.poll_control()));
        let command = match commands.try_recv() {
            Ok(command) => command,
            Err(mpsc::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
        };
        let mut words = command.split_whitespace();
        let answer = match (words.next(), words.next().and_then(|id| id.parse::<u16>().ok())) {
            (Some("check"), None) => check_marks(&cluster).map(|()| "ok".to_string()),
            (Some("mark"), Some(peer)) => {
                let me = cluster.me();
                match write_and_wait(
                    &mut cluster,
                    &mut poller,
                    node(peer),
                    REPLICATION,
                    offset_of(me),
                    &mark_of(me),
                ) {
                    Status::Success => Ok("ok".to_string()),
                    status => Err(format!("write to node {peer}: {status}")),
                }
            }
            (Some("clear"), Some(peer)) => {
                let region = cluster.region(REGION).map_err(|e| e.to_string())?.region().clone();
                region.write(offset_of(node(peer)) as usize, &[0; 8]).map_err(|e| e.to_string())?;
                Ok("ok".to_string())
            }
            (Some("events"), None) => Ok(format!("events {}", describe(&events))),
            (Some("await"), Some(peer)) => await_arrival(&mut cluster, &mut events, node(peer)),
            (Some("remove"), Some(peer)) => {
                cluster.remove_peer(node(peer)).map(|()| "ok".into()).map_err(|e| e.to_string())
            }
            (Some("fenced"), None) => fenced(&device, &spec, &mut cluster, &mut poller, &mut events),
            (Some("removed"), None) => removed(&device, &spec, &mut cluster, &mut poller, &mut events),
            (Some("exit"), None) => return Ok(()),
            _ => return Err(format!("unknown command {command:?}")),
        };
        match answer {
            Ok(answer) => println!("@@ {answer}"),
            Err(error) => println!("@@ bad {error}"),
        }
    }
}

/// Control events, one line.
fn describe(events: &[ControlEvent]) -> String {
    let described: Vec<String> = events
        .iter()
        .map(|event| match event {
            ControlEvent::PeerLost { peer, reason } => format!("lost {peer} ({reason})"),
            ControlEvent::Rejoined { peer, incarnation } => format!("rejoined {peer} #{incarnation}"),
            ControlEvent::Joined { peer, incarnation } => format!("joined {peer} #{incarnation}"),
            ControlEvent::Removed { peer, .. } => format!("removed {peer}"),
            other => format!("{other:?}"),
        })
        .collect();
    described.join("; ")
}

/// Where a stale process tries to WRITE into node 0.
const STALE_OFFSET: u64 = 4096;

/// Serves the cluster until `peer` joined or rejoined (or 20 s pass).
fn await_arrival(
    cluster: &mut Cluster,
    events: &mut Vec<ControlEvent>,
    peer: NodeId,
) -> Result<String, String> {
    let give_up = Instant::now() + Duration::from_secs(20);
    let arrived = |events: &[ControlEvent]| {
        events.iter().any(|event| {
            matches!(event, ControlEvent::Joined { peer: p, .. } | ControlEvent::Rejoined { peer: p, .. } if *p == peer)
        })
    };
    while !arrived(events) {
        if Instant::now() > give_up {
            return Err(format!("node {peer} never arrived: {}", describe(events)));
        }
        events.extend(std::iter::from_fn(|| cluster.poll_control()));
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok("ok".into())
}

/// Serves the cluster until every peer is lost (or 20 s pass); returns each one's reason.
fn await_all_lost(cluster: &mut Cluster, events: &mut Vec<ControlEvent>) -> Result<Vec<String>, String> {
    let peers: Vec<NodeId> = cluster.peers().collect();
    let give_up = Instant::now() + Duration::from_secs(20);
    while peers.iter().any(|&peer| cluster.peer_lost(peer).is_none()) {
        if Instant::now() > give_up {
            return Err(format!("still connected: {}", describe(events)));
        }
        events.extend(std::iter::from_fn(|| cluster.poll_control()));
    }
    Ok(peers.iter().map(|&peer| cluster.peer_lost(peer).expect("lost").to_string()).collect())
}

/// In a process whose node every peer removed: checks that each fenced it with the
/// reason, that its WRITE into node 0 fails, that it cannot reconnect, and that a
/// bootstrap of its own incarnation is refused as removed.
fn removed(
    device: &str,
    spec: &ClusterSpec,
    cluster: &mut Cluster,
    poller: &mut Poller,
    events: &mut Vec<ControlEvent>,
) -> Result<String, String> {
    for reason in await_all_lost(cluster, events)? {
        let expected = format!("removed node {} (incarnation {})", cluster.me(), cluster.incarnation());
        if !reason.contains("fenced this process out of the cluster") || !reason.contains(&expected) {
            return Err(format!("lost for another reason: {reason}"));
        }
    }
    let fenced = cluster.fenced().ok_or("not fenced")?.to_string();
    let status = write_and_wait(cluster, poller, node(0), REPLICATION, STALE_OFFSET, &[0xee; 8]);
    if status == Status::Success {
        return Err("the removed process's WRITE into node 0 succeeded".into());
    }
    if cluster.start_reconnect(node(0), &[]).is_ok() {
        return Err("the removed process could start a reconnect".into());
    }
    let context = Context::open(device).map_err(|e| e.to_string())?;
    let network = TcpNetwork::bind("127.0.0.1:0".parse().unwrap()).map_err(|e| e.to_string())?;
    let again = config(spec, cluster.me())
        .rejoin(true)
        .incarnation(cluster.incarnation())
        .deadline(Duration::from_secs(2));
    match Cluster::bootstrap_with(&context, again, Box::new(network)) {
        Ok(_) => Err("a bootstrap of the removed incarnation got in".into()),
        Err(error) if error.to_string().contains("was removed from the cluster") => {
            Ok(format!("removed ({status}; {fenced})"))
        }
        Err(error) => Err(format!("the removed incarnation's bootstrap failed otherwise: {error}")),
    }
}

/// In a process that was stopped while a new process of its node rejoined: checks that
/// every peer refused it, that its WRITE into node 0 fails, that it cannot reconnect, and
/// that a bootstrap of its own incarnation is refused as stale.
fn fenced(
    device: &str,
    spec: &ClusterSpec,
    cluster: &mut Cluster,
    poller: &mut Poller,
    events: &mut Vec<ControlEvent>,
) -> Result<String, String> {
    let peers: Vec<NodeId> = cluster.peers().collect();
    let give_up = Instant::now() + Duration::from_secs(20);
    while peers.iter().any(|&peer| cluster.peer_lost(peer).is_none()) {
        if Instant::now() > give_up {
            return Err(format!("still connected after resuming: {}", describe(events)));
        }
        events.extend(std::iter::from_fn(|| cluster.poll_control()));
    }
    for peer in &peers {
        let reason = cluster.peer_lost(*peer).expect("lost").to_string();
        if !reason.contains("restarted: incarnation") {
            return Err(format!("node {peer}: {reason}"));
        }
    }
    if cluster.fenced().is_none() {
        return Err("it does not know that it was fenced".into());
    }
    let status = write_and_wait(cluster, poller, node(0), REPLICATION, STALE_OFFSET, &[0xee; 8]);
    if status == Status::Success {
        return Err("the stale WRITE into node 0 succeeded".into());
    }
    if cluster.start_reconnect(node(0), &[]).is_ok() {
        return Err("the stale process could start a reconnect".into());
    }
    let context = Context::open(device).map_err(|e| e.to_string())?;
    let network = TcpNetwork::bind("127.0.0.1:0".parse().unwrap()).map_err(|e| e.to_string())?;
    let again = config(spec, cluster.me())
        .rejoin(true)
        .incarnation(cluster.incarnation())
        .deadline(Duration::from_secs(2));
    match Cluster::bootstrap_with(&context, again, Box::new(network)) {
        Ok(_) => Err("a bootstrap of the stale incarnation got in".into()),
        Err(error) if error.to_string().contains("is stale") => Ok(format!("fenced ({status})")),
        Err(error) => Err(format!("the stale bootstrap failed otherwise: {error}")),
    }
}

/// A child node, seen from node 0.
fn spawn_child(name: &str, device: &str) -> NodeProcess {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(CHILD_ENV, "1").env(DEVICE_ENV, device);
    NodeProcess::spawn(name, command)
}

/// Tells a child who it is (`me`, e.g. `me 2 rejoin`) and what the cluster is.
fn introduce(child: &mut NodeProcess, me: &str, spec: &ClusterSpec) {
    child.send(me);
    for line in spec.to_string().lines() {
        child.send(line);
    }
    child.send("end");
}

/// Node 0 here and nodes 1 and 2 in child processes, bootstrapped, each node's mark
/// written into every other's region and checked.
fn start_three(device: &str) -> (Vec<NodeProcess>, ClusterSpec, Cluster, Poller) {
    let mut children = vec![spawn_child("child node 1", device), spawn_child("child node 2", device)];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut nodes = vec![(node(0), listener.local_addr().unwrap())];
    for (index, child) in children.iter_mut().enumerate() {
        let addr: SocketAddr = child.read().strip_prefix("addr ").expect("an address").parse().unwrap();
        nodes.push((node(index as u16 + 1), addr));
    }
    let spec = ClusterSpec::new("processes", &ClusterSpec::fresh_run(), nodes).unwrap();
    for (index, child) in children.iter_mut().enumerate() {
        introduce(child, &format!("me {}", index + 1), &spec);
    }
    let context = Context::open(device).unwrap();
    let network = TcpNetwork::from_listener(listener).unwrap();
    let mut cluster = Cluster::bootstrap_with(&context, config(&spec, node(0)), Box::new(network)).unwrap();
    let mut poller = cluster.take_poller(&[]).unwrap();
    write_marks(&mut cluster, &mut poller).unwrap();
    for child in &mut children {
        assert_eq!(child.read(), "wrote");
    }
    check_marks(&cluster).unwrap();
    for child in &mut children {
        assert_eq!(child.ask("check"), "ok");
    }
    (children, spec, cluster, poller)
}

/// Serves node 0's control connections (restarted peers rejoin there), collecting its
/// events, until `child` says something; returns what it said.
fn serve_until_said(
    cluster: &mut Cluster,
    events: &mut Vec<ControlEvent>,
    child: &mut NodeProcess,
) -> String {
    loop {
        events.extend(std::iter::from_fn(|| cluster.poll_control()));
        if let Some(line) = child.try_read() {
            return line;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Serves node 0's control connections until `done` holds of its events (or 20 s pass).
fn serve_until(
    cluster: &mut Cluster,
    events: &mut Vec<ControlEvent>,
    done: impl Fn(&[ControlEvent]) -> bool,
) {
    let give_up = Instant::now() + Duration::from_secs(20);
    while !done(events) {
        assert!(Instant::now() < give_up, "node 0 saw only {events:?}");
        events.extend(std::iter::from_fn(|| cluster.poll_control()));
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn rejoined(peer: NodeId) -> impl Fn(&[ControlEvent]) -> bool {
    move |events| {
        events.iter().any(|event| matches!(event, ControlEvent::Rejoined { peer: p, .. } if *p == peer))
    }
}

/// How a new process of a node comes back.
#[derive(Clone, Copy)]
enum Road<'a> {
    /// With the description.
    Rejoin,
    /// Knowing only these members' addresses.
    Join(&'a [SocketAddr]),
}

/// Starts a process of node `id` that enters the running cluster by `road`; returns it
/// once it bootstrapped (and wrote its marks), with how long that took.
fn start_process(
    id: u16,
    road: Road<'_>,
    device: &str,
    spec: &ClusterSpec,
    cluster: &mut Cluster,
    events: &mut Vec<ControlEvent>,
) -> (NodeProcess, Duration) {
    let mut fresh = spawn_child(&format!("new process of node {id}"), device);
    // It listens where it likes: its peers do not dial a node that joins; it tells them.
    let addr: SocketAddr = fresh.read().strip_prefix("addr ").expect("an address").parse().unwrap();
    let started = Instant::now();
    match road {
        Road::Rejoin => introduce(&mut fresh, &format!("me {id} rejoin"), spec),
        Road::Join(contacts) => {
            // All it knows of the cluster: the names, and its own address.
            let own = ClusterSpec::new(&spec.cluster, &spec.run, [(node(id), addr)]).unwrap();
            let contacts: Vec<String> = contacts.iter().map(ToString::to_string).collect();
            introduce(&mut fresh, &format!("me {id} join {}", contacts.join(" ")), &own);
        }
    }
    assert_eq!(serve_until_said(cluster, events, &mut fresh), "wrote");
    (fresh, started.elapsed())
}

/// Starts a new process of node 2 that rejoins, and serves node 0 until it did.
fn restart_node_two(
    device: &str,
    spec: &ClusterSpec,
    cluster: &mut Cluster,
    events: &mut Vec<ControlEvent>,
) -> (NodeProcess, Duration) {
    restart_node_two_by(Road::Rejoin, device, spec, cluster, events)
}

/// Starts a new process of node 2 that comes back by `road`, and serves node 0 until it
/// did.
fn restart_node_two_by(
    road: Road<'_>,
    device: &str,
    spec: &ClusterSpec,
    cluster: &mut Cluster,
    events: &mut Vec<ControlEvent>,
) -> (NodeProcess, Duration) {
    let (fresh, took) = start_process(2, road, device, spec, cluster, events);
    serve_until(cluster, events, rejoined(node(2)));
    (fresh, took)
}

fn three_processes_bootstrap_write_and_survive_a_kill() {
    let device = soft_device();
    let (mut children, _, mut cluster, mut poller) = start_three(&device);

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
                // How many rounds pass before the loss is seen depends on when the
                // liveness watcher thread runs: thousands in a loaded millisecond. The
                // entries cycle through 8 KiB instead of running off the 64 KiB region.
                512 + 8 * (entry % 1024),
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

fn a_killed_node_restarted_as_a_new_process_rejoins_and_writes_flow_both_ways() {
    let device = soft_device();
    let (mut children, spec, mut cluster, mut poller) = start_three(&device);
    let two = node(2);
    let old_incarnation = cluster.peer_incarnation(two).unwrap();
    children[1].child.kill().unwrap();
    children[1].child.wait().unwrap();
    let mut events = Vec::new();
    serve_until(&mut cluster, &mut events, |events| {
        events.iter().any(|event| matches!(event, ControlEvent::PeerLost { peer, .. } if *peer == node(2)))
    });
    // Forget the old process's marks: only the new one can put them back.
    let region = cluster.region(REGION).unwrap().region().clone();
    region.write(offset_of(two) as usize, &[0; 8]).unwrap();
    assert_eq!(children[0].ask("clear 2"), "ok");

    let (mut fresh, took) = restart_node_two(&device, &spec, &mut cluster, &mut events);
    eprintln!("node 2's new process rejoined in {took:?}");
    assert!(took < Duration::from_secs(20), "within its bootstrap deadline");
    assert!(
        matches!(
            events.as_slice(),
            [
                ControlEvent::PeerLost { reason: PeerLoss::Closed { .. }, .. },
                ControlEvent::Rejoined { peer, incarnation },
            ] if *peer == two && *incarnation > old_incarnation
        ),
        "{events:?}"
    );
    assert!(children[0].ask("events").contains("rejoined 2 #"));
    // Its WRITEs landed at both survivors, and theirs land in its new region.
    check_marks(&cluster).unwrap();
    assert_eq!(children[0].ask("check"), "ok");
    let mark = mark_of(node(0));
    assert_eq!(
        write_and_wait(&mut cluster, &mut poller, two, REPLICATION, offset_of(node(0)), &mark),
        Status::Success
    );
    assert_eq!(children[0].ask("mark 2"), "ok");
    assert_eq!(fresh.ask("check"), "ok");
    for child in [&mut children[0], &mut fresh] {
        child.send("exit");
        assert!(child.child.wait().unwrap().success());
    }
}

fn a_stopped_process_resumed_after_its_replacement_joined_is_fenced() {
    stopped_process_is_fenced_after_a_replacement(false);
}

fn a_stopped_process_resumed_after_a_joining_replacement_is_fenced() {
    stopped_process_is_fenced_after_a_replacement(true);
}

/// SIGSTOP node 2, start its replacement (rejoining with the description, or joining
/// through the stopped process's address and node 0's), SIGCONT the old process: it is
/// refused everywhere.
fn stopped_process_is_fenced_after_a_replacement(by_join: bool) {
    let device = soft_device();
    let (mut children, spec, mut cluster, mut poller) = start_three(&device);
    let two = node(2);
    signal(&children[1], "STOP");
    let mut events = Vec::new();
    let contacts = [spec.addr_of(two).unwrap(), spec.addr_of(node(0)).unwrap()];
    let road = if by_join { Road::Join(&contacts) } else { Road::Rejoin };
    let (mut fresh, _) = restart_node_two_by(road, &device, &spec, &mut cluster, &mut events);
    let incarnation = cluster.peer_incarnation(two).unwrap();
    assert!(
        matches!(
            events.as_slice(),
            [
                ControlEvent::PeerLost { reason: PeerLoss::Superseded { incarnation: superseding }, .. },
                ControlEvent::Rejoined { .. },
            ] if *superseding == incarnation
        ),
        "{events:?}"
    );
    let seen = children[0].ask("events");
    assert!(seen.contains("lost 2 (a newer process of it") && seen.contains("rejoined 2"), "{seen}");

    // The old process resumes: refused everywhere, its WRITE fails, its own incarnation
    // cannot bootstrap again.
    signal(&children[1], "CONT");
    children[1].send("fenced");
    let answer = serve_until_said(&mut cluster, &mut events, &mut children[1]);
    assert!(answer.starts_with("fenced"), "{answer}");
    assert_eq!(read_local(&cluster, STALE_OFFSET as usize, 8), [0; 8], "the stale WRITE never landed");
    let refused = cluster.refused_connections().join("\n");
    assert!(refused.contains("is stale"), "{refused}");
    assert_eq!(cluster.peer_incarnation(two), Some(incarnation), "still the new process");

    // The new process and node 0 still write both ways.
    let mark = mark_of(node(0));
    assert_eq!(
        write_and_wait(&mut cluster, &mut poller, two, REPLICATION, offset_of(node(0)), &mark),
        Status::Success
    );
    assert_eq!(children[0].ask("mark 2"), "ok");
    assert_eq!(fresh.ask("check"), "ok");
    fresh.send("mark 0");
    assert_eq!(serve_until_said(&mut cluster, &mut events, &mut fresh), "ok");
}

fn a_new_process_outside_the_description_joins_the_running_processes() {
    let device = soft_device();
    let (mut children, spec, mut cluster, mut poller) = start_three(&device);
    let newcomer = node(3);
    assert!(spec.addr_of(newcomer).is_none(), "not in the description");
    // It knows only node 1's address.
    let contacts = [spec.addr_of(node(1)).unwrap()];
    let mut events = Vec::new();
    let (mut fresh, took) =
        start_process(3, Road::Join(&contacts), &device, &spec, &mut cluster, &mut events);
    eprintln!("node 3 joined in {took:?}");
    serve_until(&mut cluster, &mut events, |events| {
        events.iter().any(|event| matches!(event, ControlEvent::Joined { peer, .. } if *peer == newcomer))
    });
    assert!(
        matches!(events.as_slice(), [ControlEvent::Joined { peer, .. }] if *peer == newcomer),
        "{events:?}"
    );
    assert_eq!(cluster.peers().collect::<Vec<_>>(), [node(1), node(2), newcomer]);
    for child in &mut children {
        assert_eq!(child.ask("await 3"), "ok");
        assert!(child.ask("events").contains("joined 3 #"));
    }
    // Its marks landed everywhere, and everyone's land in its region.
    check_marks(&cluster).unwrap();
    for child in &mut children {
        assert_eq!(child.ask("check"), "ok");
        assert_eq!(child.ask("mark 3"), "ok");
    }
    let mark = mark_of(node(0));
    assert_eq!(
        write_and_wait(&mut cluster, &mut poller, newcomer, REPLICATION, offset_of(node(0)), &mark),
        Status::Success
    );
    assert_eq!(fresh.ask("check"), "ok");
    for child in children.iter_mut().chain([&mut fresh]) {
        child.send("exit");
        assert!(child.child.wait().unwrap().success());
    }
}

fn a_removed_process_is_refused_everywhere_and_its_id_joins_again() {
    let device = soft_device();
    let (mut children, spec, mut cluster, mut poller) = start_three(&device);
    let two = node(2);
    // A view change removes node 2: each member removes it.
    cluster.remove_peer(two).unwrap();
    assert_eq!(children[0].ask("remove 2"), "ok");
    let mut events: Vec<ControlEvent> = std::iter::from_fn(|| cluster.poll_control()).collect();
    assert!(
        matches!(events.as_slice(), [ControlEvent::Removed { peer, incarnation: Some(_) }] if *peer == two)
    );
    assert_eq!(cluster.peers().collect::<Vec<_>>(), [node(1)]);
    // Its process, still running, is fenced by both, and nothing it sends gets in.
    children[1].send("removed");
    let answer = serve_until_said(&mut cluster, &mut events, &mut children[1]);
    assert!(answer.starts_with("removed") && answer.contains("removed node 2"), "{answer}");
    assert_eq!(read_local(&cluster, STALE_OFFSET as usize, 8), [0; 8], "the removed WRITE never landed");
    let refused = cluster.refused_connections().join("\n");
    assert!(refused.contains("was removed from the cluster"), "{refused}");
    children[1].send("exit");
    assert!(children[1].child.wait().unwrap().success());

    // A newer process of node 2 joins through node 1: a new node to the members.
    let contacts = [spec.addr_of(node(1)).unwrap()];
    let (mut fresh, _) = start_process(2, Road::Join(&contacts), &device, &spec, &mut cluster, &mut events);
    serve_until(&mut cluster, &mut events, |events| {
        events.iter().any(|event| matches!(event, ControlEvent::Joined { peer, .. } if *peer == two))
    });
    assert!(!events.iter().any(|event| matches!(event, ControlEvent::Rejoined { .. })), "{events:?}");
    assert_eq!(children[0].ask("await 2"), "ok");
    check_marks(&cluster).unwrap();
    assert_eq!(children[0].ask("check"), "ok");
    let mark = mark_of(node(0));
    assert_eq!(
        write_and_wait(&mut cluster, &mut poller, two, REPLICATION, offset_of(node(0)), &mark),
        Status::Success
    );
    assert_eq!(children[0].ask("mark 2"), "ok");
    assert_eq!(fresh.ask("check"), "ok");
    for child in [&mut children[0], &mut fresh] {
        child.send("exit");
        assert!(child.child.wait().unwrap().success());
    }
}

/// Sends `signal` (STOP, CONT) to a child with kill(1).
fn signal(child: &NodeProcess, signal: &str) {
    let status =
        Command::new("kill").arg(format!("-{signal}")).arg(child.child.id().to_string()).status().unwrap();
    assert!(status.success(), "kill -{signal}");
}
