//! Memory nodes as real processes on the soft provider: three `usec-bft-memory` processes
//! and three replicas (threads of this test, each its own soft node) bootstrap into one
//! cluster over loopback TCP; one replica's write into another's register is refused by
//! the memory node's device; the replicas write and read their registers; one memory node
//! is SIGKILLed and registers go on on the other two; a second kill leaves no majority,
//! and operations fail instead of hanging.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use usec_qp_pool::{
    BusyPoll, Cluster, ClusterSpec, NodeConfig, NodeId, PollMode, Poller, TcpNetwork, WrId, WrKind,
};
use usec_replication::bft::register::port::{ALL_GRANT, ROLE, SCRATCH_REGION};
use usec_replication::bft::register::{ReadResult, RegisterLayout, RegisterPort, RegisterReplica};
use usec_verbs::{Context, RemoteAddr, SendWr, Status};

const REPLICAS: u16 = 3;
const MEMORY_NODES: u16 = 3;
const TAIL: usize = 128;
/// How long a step may take on a loaded two-core machine before the test gives up.
const STEP_LIMIT_NS: u64 = 30_000_000_000;

struct MemoryProcess {
    child: Child,
    input: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl MemoryProcess {
    fn spawn(id: u16, device: &str, writers: &str) -> MemoryProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_usec-bft-memory"))
            .args(["--device", device, "--id", &id.to_string(), "--spec", "-", "--listen", "127.0.0.1:0"])
            .args(["--writers", writers, "--tail", &TAIL.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning usec-bft-memory");
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
        MemoryProcess { child, input, lines }
    }

    fn line(&self, expecting: &str) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|error| panic!("no line from a memory node ({error}); expected {expecting}"))
    }
}

impl Drop for MemoryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replica 2 WRITEs into replica 0's register 7 on `memory`, through the read-only grant
/// of everything: the memory node process's device refuses it with a remote access error,
/// and the QP breaks (the register port repairs it later: replica 2's writes need that
/// memory node once another is killed).
fn forge(cluster: &mut Cluster, poller: &mut Poller, layout: &RegisterLayout, memory: NodeId) {
    let role = cluster.role(ROLE).unwrap();
    let all = cluster.remote_region(memory, ALL_GRANT).unwrap();
    let offset = layout.sub_slot_offset(0, 7, 0) as u64;
    let target = RemoteAddr::within(&all, offset, layout.sub_slot_bytes() as u64).unwrap();
    let scratch = cluster.region(SCRATCH_REGION).unwrap();
    scratch.region().write(0, &vec![0xee; layout.sub_slot_bytes()]).unwrap();
    let sge = scratch.sge(0, layout.sub_slot_bytes() as u32).unwrap();
    let wr_id = WrId::new(WrKind::application(9), memory, 1).unwrap().to_raw();
    cluster.post_send(memory, role, &[SendWr::write(wr_id, target, &sge)]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(polled) = poller.poll().next() {
            break polled.completion.status;
        }
        assert!(Instant::now() < deadline, "no completion for the forged write");
    };
    assert_eq!(status, Status::RemoteAccessError, "a forged write into another replica's register");
}

/// Turns every replica until it has seen memory node `index` die (a failed operation to
/// it, or its control connection closed), within a bounded time and without any register
/// operation waiting for it.
fn until_down(replicas: &mut [RegisterReplica], index: usize, since: Instant) {
    let deadline = Instant::now() + Duration::from_nanos(STEP_LIMIT_NS);
    for replica in replicas {
        while replica.port().is_up(index) {
            assert!(Instant::now() < deadline, "the death of memory node {index} went unnoticed");
            replica.turn(since.elapsed().as_nanos() as u64);
        }
    }
}

fn node(id: u16) -> NodeId {
    NodeId::new(id).unwrap()
}

#[test]
fn registers_outlive_a_killed_memory_node() {
    let device = format!("soft:bft-memory-{}", std::process::id());
    let layout = RegisterLayout::for_ctbcast(usize::from(REPLICAS), TAIL);
    let mut memory: Vec<MemoryProcess> =
        (REPLICAS..REPLICAS + MEMORY_NODES).map(|id| MemoryProcess::spawn(id, &device, "0,1,2")).collect();
    let listeners: Vec<TcpListener> =
        (0..REPLICAS).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let mut nodes: Vec<(NodeId, SocketAddr)> = listeners
        .iter()
        .enumerate()
        .map(|(id, listener)| (node(id as u16), listener.local_addr().unwrap()))
        .collect();
    for (index, process) in memory.iter().enumerate() {
        let line = process.line("addr");
        let addr = line.strip_prefix("addr ").unwrap_or_else(|| panic!("not an address: {line}"));
        nodes.push((node(REPLICAS + index as u16), addr.parse().unwrap()));
    }
    let spec = ClusterSpec::new("bft-memory", &ClusterSpec::fresh_run(), nodes).unwrap();
    let text = spec.to_string();
    for process in &mut memory {
        writeln!(process.input, "{text}end").unwrap();
    }

    let memory_ids: Vec<NodeId> = (REPLICAS..REPLICAS + MEMORY_NODES).map(node).collect();
    let mut replicas: Vec<RegisterReplica> = std::thread::scope(|scope| {
        let threads: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(writer, listener)| {
                let (spec, device, memory_ids) = (spec.clone(), device.clone(), memory_ids.clone());
                scope.spawn(move || {
                    let config = NodeConfig::new(spec, node(writer as u16)).deadline(Duration::from_secs(60));
                    let config = RegisterPort::configure(config, &layout, 256).unwrap();
                    let network = TcpNetwork::from_listener(listener).unwrap();
                    let context = Context::open(&device).unwrap();
                    let mut cluster = Cluster::bootstrap_with(&context, config, Box::new(network)).unwrap();
                    let role = cluster.role(ROLE).unwrap();
                    let mut poller = cluster.take_poller(&[role]).unwrap();
                    if writer == 2 {
                        forge(&mut cluster, &mut poller, &layout, memory_ids[0]);
                    }
                    RegisterReplica::with_poller(cluster, poller, layout, writer, &memory_ids).unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().expect("no panic")).collect()
    });
    for process in &memory {
        let ready = process.line("ready");
        println!("memory node: {ready}");
        let expected = format!("ready registered={}", layout.memory_bytes());
        assert!(ready.starts_with(&expected), "{ready}");
        assert!(layout.memory_bytes() < 1 << 20);
    }

    let mut driver = BusyPoll::new(PollMode::SpinThenYield { spins: 64 });
    let value = |tag: u8| vec![tag; layout.value_bytes];
    let mut write =
        |replicas: &mut Vec<RegisterReplica>, writer: usize, slot: usize, incarnation: u64, tag: u8| {
            let deadline = driver.deadline_in(STEP_LIMIT_NS);
            replicas[writer].write(slot, incarnation, &value(tag), &mut driver, deadline).unwrap()
        };
    for writer in 0..3 {
        assert!(write(&mut replicas, writer, 7, 1, writer as u8 + 1));
    }
    let mut driver = BusyPoll::new(PollMode::SpinThenYield { spins: 64 });
    let mut read = |replicas: &mut Vec<RegisterReplica>, reader: usize, owner: usize, slot: usize| {
        let deadline = driver.deadline_in(STEP_LIMIT_NS);
        replicas[reader].read(owner, slot, &mut driver, deadline).unwrap()
    };
    for reader in 0..3 {
        for owner in 0..3 {
            let expected = ReadResult::Value { incarnation: 1, value: value(owner as u8 + 1) };
            assert_eq!(read(&mut replicas, reader, owner, 7), expected);
        }
    }

    // Replica 2's QP to memory node 0, broken by its forged write, is repaired by its port
    // (a reconnect over the control plane, which the memory node serves every millisecond):
    // its writes need that node once another is killed.
    let repairing = Instant::now();
    let deadline = repairing + Duration::from_nanos(STEP_LIMIT_NS);
    while !replicas[2].port().is_up(0) {
        assert!(Instant::now() < deadline, "replica 2's QP to memory node 0 was never repaired");
        replicas[2].turn(repairing.elapsed().as_nanos() as u64);
    }

    // SIGKILL one memory node: writes and reads complete on the other two.
    memory[1].child.kill().unwrap();
    memory[1].child.wait().unwrap();
    let killed_at = Instant::now();
    for incarnation in 2..=20u64 {
        let writer = incarnation as usize % 3;
        assert!(write(&mut replicas, writer, 7, incarnation, incarnation as u8), "write {incarnation}");
        let reader = (writer + 1) % 3;
        let expected = ReadResult::Value { incarnation, value: value(incarnation as u8) };
        assert_eq!(read(&mut replicas, reader, writer, 7), expected);
    }
    println!("19 writes and reads with a memory node killed: {:?}", killed_at.elapsed());
    // Every replica learns of the death (its operations to the dead node fail) within a
    // bounded time, without any operation waiting for it.
    until_down(&mut replicas, 1, killed_at);

    // A second kill leaves one of three: no majority, and operations say so. (Until the
    // soft provider's watcher thread has seen the death, a WRITE may still land in the
    // dead process's memory and count: on a loaded machine that window is not
    // microseconds. So the replicas first notice it.)
    memory[2].child.kill().unwrap();
    memory[2].child.wait().unwrap();
    until_down(&mut replicas, 2, killed_at);
    assert!(!write(&mut replicas, 0, 8, 1, 1), "a write completed without a majority");
    assert_eq!(read(&mut replicas, 1, 0, 7), ReadResult::Unavailable);
}
