//! The cluster across three hosts on RoCE: runs only inside `tools/rxe-vm/run --hosts 3`
//! (which exports `RXE_VM_HOSTS`); elsewhere it reports `ignored` and says why. Host
//! `i` there is a network namespace with its own address `10.78.0.<10+i>` and its own RDMA
//! device `rxe_h<i>`, whose RoCEv2 GID is that address, the only device it sees; RoCE
//! packets between two hosts cross a bridge (see tools/rxe-vm/README.md, "Several hosts").
//!
//! This test process stays in the VM's root namespace and is not a node. It starts one node
//! per host, as a process (this test binary again, [`host_node`], run through
//! `$RXE_VM_ON_HOST <i>`), hands out the cluster description, and drives the nodes with
//! command lines. They bootstrap over TCP between the hosts' addresses and WRITE into
//! every peer's region; node 1 revokes node 0's write right and grants it again (with the
//! reconnect a refused write makes necessary); then node 2 is SIGKILLed, and nodes 0 and 1
//! see its control connection close and a WRITE to it fail, within a bound, while they go
//! on writing to each other.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

use common::child::{check_marks, command_lines, write_marks, NodeProcess};
use common::*;
use libtest_mimic::{Arguments, Completion, Trial};
use usec_qp_pool::{Cluster, ClusterSpec, ControlEvent, NodeId, Poller, WrId};
use usec_verbs::qp::Address;
use usec_verbs::{Context, ProviderKind, QpState, Status};

/// Set (to anything) in a node process.
const NODE_ENV: &str = "USEC_QP_POOL_HOST_NODE";
const NODES: usize = 3;
/// How long a node gives a dead peer to show as lost: its control connection closed and a
/// WRITE to it completed with an error. The WRITE takes the QPs' retries (7 ACK timeouts of
/// 67 ms, see [`serve_node`]); both are seconds at worst under an emulated CPU.
const LOSS_LIMIT: Duration = Duration::from_secs(30);

/// One host of the VM, as `tools/rxe-vm/run --hosts` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Host {
    device: String,
    addr: Ipv4Addr,
    gid_index: u8,
}

impl Host {
    /// Parses `device,address,gid-index` (`RXE_VM_HOST<i>`).
    fn parse(text: &str) -> Result<Host, String> {
        let bad = || format!("{text:?} is not device,address,gid-index");
        let mut fields = text.split(',');
        let (Some(device), Some(addr), Some(gid_index), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad());
        };
        Ok(Host {
            device: device.to_string(),
            addr: addr.parse().map_err(|_| bad())?,
            gid_index: gid_index.parse().map_err(|_| bad())?,
        })
    }

    fn from_env(id: usize) -> Result<Host, String> {
        let name = format!("RXE_VM_HOST{id}");
        Host::parse(&std::env::var(&name).map_err(|_| format!("{name} is unset"))?)
    }
}

// ---------------------------------------------------------------------------------------
// The node's side.

/// Why the cluster test reports `ignored` outside the VM.
const NO_HOSTS: &str = "runs inside `tools/rxe-vm/run --hosts 3` (RXE_VM_HOSTS is unset)";

/// This binary has its own harness (libtest-mimic): a node is this binary started with
/// [`NODE_ENV`] set, not a test that passes without doing anything in every other run.
fn main() {
    if std::env::var_os(NODE_ENV).is_some() {
        host_node();
    }
    let args = Arguments::from_args();
    let trials = vec![
        Trial::ignorable_test("three_hosts_over_roce", || match hosts() {
            Some((on_host, hosts)) => {
                three_hosts_over_roce(&on_host, &hosts);
                Ok(Completion::Completed)
            }
            None => Ok(Completion::ignored_with(NO_HOSTS)),
        }),
        Trial::test("host_descriptions_parse", || {
            host_descriptions_parse();
            Ok(())
        }),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// A node on its host: serves, then exits.
fn host_node() -> ! {
    if let Err(error) = serve_node() {
        println!("@@ error {error}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

fn serve_node() -> Result<(), String> {
    let id: usize = std::env::var("RXE_VM_HOST_ID")
        .map_err(|_| "RXE_VM_HOST_ID unset (not on a host)")?
        .parse()
        .map_err(|_| "bad RXE_VM_HOST_ID")?;
    let host = Host::from_env(id)?;
    let devices: Vec<String> = usec_verbs::devices()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|device| device.provider == ProviderKind::Ibverbs)
        .map(|device| device.name)
        .collect();
    println!("@@ devices {}", devices.join(","));
    let listener = TcpListener::bind((host.addr, 0)).map_err(|e| e.to_string())?;
    println!("@@ addr {}", listener.local_addr().map_err(|e| e.to_string())?);

    let commands = command_lines();
    let next = || {
        commands.recv_timeout(Duration::from_secs(120)).map_err(|_| "no command from the test".to_string())
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
    let context = Context::open(&host.device).map_err(|e| e.to_string())?;
    let mut config = config(&spec, node(me));
    config.qp.gid_index = Some(host.gid_index);
    // rdma_rxe reads a transport retry count of 7 as "retry forever" (as the spec does only
    // for the RNR retry count): a WRITE to a dead node would never complete. 6 retries of
    // the 67 ms ACK timeout fail it in about half a second.
    config.connect.rts.retry_count = 6;
    let network = usec_qp_pool::TcpNetwork::from_listener(listener).map_err(|e| e.to_string())?;
    let cluster = Cluster::bootstrap_with(&context, config, Box::new(network)).map_err(|e| e.to_string())?;
    let mut node = Node::new(cluster)?;
    println!("@@ gid {}", node.gid()?);
    write_marks(&mut node.cluster, &mut node.poller)?;
    println!("@@ wrote");

    loop {
        node.serve_control();
        match commands.try_recv() {
            Ok(line) => match node.run(&line)? {
                Some(answer) => println!("@@ {answer}"),
                None => return Ok(()),
            },
            Err(std::sync::mpsc::TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(1)),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return Ok(()),
        }
    }
}

/// A node between commands.
struct Node {
    cluster: Cluster,
    poller: Poller,
    /// When each lost peer's control connection was seen closed.
    lost: BTreeMap<NodeId, Instant>,
}

impl Node {
    fn new(mut cluster: Cluster) -> Result<Node, String> {
        let poller = cluster.take_poller(&[]).map_err(|e| e.to_string())?;
        Ok(Node { cluster, poller, lost: BTreeMap::new() })
    }

    /// The GID this node's QPs carry, as an IPv6 address.
    fn gid(&self) -> Result<Ipv6Addr, String> {
        let role = self.cluster.role(REPLICATION).map_err(|e| e.to_string())?;
        let peer = self.cluster.peers().next().ok_or("no peers")?;
        match self.cluster.qp(peer, role).map_err(|e| e.to_string())?.endpoint().address {
            Address::Roce { gid, .. } => Ok(Ipv6Addr::from(gid)),
            other => Err(format!("not a RoCE endpoint: {other:?}")),
        }
    }

    /// Answers peers on the control connections; notes the ones lost.
    fn serve_control(&mut self) {
        while let Some(event) = self.cluster.poll_control() {
            if let ControlEvent::PeerLost { peer, .. } = event {
                self.lost.entry(peer).or_insert_with(Instant::now);
            }
        }
    }

    /// Runs one command; its answer, or `None` for `exit`.
    fn run(&mut self, line: &str) -> Result<Option<String>, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |index: usize| -> Result<u64, String> {
            words.get(index).and_then(|word| word.parse().ok()).ok_or(format!("bad command {line:?}"))
        };
        let peer = || number(1).map(|id| node(id as u16));
        let replication = self.cluster.role(REPLICATION).map_err(|e| e.to_string())?;
        let answer = match words.first().copied() {
            Some("check") => match check_marks(&self.cluster) {
                Ok(()) => "ok".to_string(),
                Err(error) => format!("bad {error}"),
            },
            Some("revoke") => {
                self.cluster.revoke_write(peer()?, replication).map_err(|e| e.to_string())?;
                "done".to_string()
            }
            Some("grant") => {
                self.cluster.grant_write(peer()?, replication).map_err(|e| e.to_string())?;
                "done".to_string()
            }
            Some("write") => {
                let bytes = words.get(3).ok_or(format!("bad command {line:?}"))?.as_bytes();
                let status = write_and_wait(
                    &mut self.cluster,
                    &mut self.poller,
                    peer()?,
                    REPLICATION,
                    number(2)?,
                    bytes,
                );
                format!("status {status:?}")
            }
            Some("read") => {
                let bytes = read_local(&self.cluster, number(1)? as usize, number(2)? as usize);
                format!("bytes {}", String::from_utf8_lossy(&bytes).replace('\0', "."))
            }
            Some("regrant") => self.regrant(peer()?)?,
            Some("lost") => self.wait_lost(peer()?)?,
            Some("exit") => return Ok(None),
            _ => return Err(format!("unknown command {line:?}")),
        };
        Ok(Some(answer))
    }

    /// Gives `writer` its write right back after a refused WRITE moved the QPs to ERROR:
    /// grant (refused on a QP in ERROR), then reconnect, which carries the right.
    fn regrant(&mut self, writer: NodeId) -> Result<String, String> {
        let replication = self.cluster.role(REPLICATION).map_err(|e| e.to_string())?;
        let state = self.cluster.qp(writer, replication).map_err(|e| e.to_string())?.state();
        match self.cluster.grant_write(writer, replication) {
            Ok(()) if state != QpState::Error => {}
            Err(_) if state == QpState::Error => {}
            result => return Err(format!("grant with the QP in {state:?}: {result:?}")),
        }
        self.cluster.start_reconnect(writer, &[replication]).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.cluster.reconnect_pending(writer) {
            self.serve_control();
            if Instant::now() > deadline {
                return Err("the reconnect did not complete in 60 s".into());
            }
        }
        Ok(format!("reconnected from {state:?}"))
    }

    /// WRITEs to `peer`, which is dead, and waits until the WRITE has failed and the control
    /// connection is seen closed; answers with what was seen and when, counted from now.
    fn wait_lost(&mut self, peer: NodeId) -> Result<String, String> {
        let start = Instant::now();
        let wr_id = WrId::new(PROBE_WRITE, peer, 0).map_err(|e| e.to_string())?;
        write(&mut self.cluster, peer, REPLICATION, wr_id, 512, b"too late");
        let mut failed = None;
        while failed.is_none() || !self.lost.contains_key(&peer) {
            if start.elapsed() > LOSS_LIMIT {
                return Err(format!(
                    "node {peer} not seen lost within {LOSS_LIMIT:?} (write: {failed:?}, control: {})",
                    self.lost.contains_key(&peer)
                ));
            }
            self.serve_control();
            if let Some(polled) = self.poller.poll().next() {
                let completion = polled.completion;
                if completion.wr_id != wr_id.to_raw() {
                    return Err(format!("unexpected completion {completion:?}"));
                }
                if completion.status == Status::Success {
                    return Err(format!("a WRITE to the dead node {peer} succeeded"));
                }
                failed = Some((completion.status, start.elapsed()));
            }
        }
        let (status, after) = failed.expect("the loop ends with the WRITE failed");
        let control = self.lost[&peer].saturating_duration_since(start);
        Ok(format!("lost write={status:?} write_ms={} control_ms={}", after.as_millis(), control.as_millis()))
    }
}

// ---------------------------------------------------------------------------------------
// The test's side.

/// The hosts, or `None` outside `tools/rxe-vm/run --hosts`.
fn hosts() -> Option<(String, Vec<Host>)> {
    let count = std::env::var("RXE_VM_HOSTS").ok()?;
    let count: usize = count.parse().expect("RXE_VM_HOSTS is a count");
    assert!(count >= NODES, "this test needs {NODES} hosts, the VM has {count}");
    let on_host = std::env::var("RXE_VM_ON_HOST").expect("RXE_VM_ON_HOST is set with RXE_VM_HOSTS");
    let hosts = (0..NODES).map(|id| Host::from_env(id).unwrap()).collect();
    Some((on_host, hosts))
}

fn spawn_node(on_host: &str, id: usize) -> NodeProcess {
    let mut command = Command::new(on_host);
    command.arg(id.to_string()).arg(std::env::current_exe().unwrap()).env(NODE_ENV, "1");
    NodeProcess::spawn(&format!("node {id} (host usec-h{id})"), command)
}

/// Asks `process` to WRITE `text` (8 bytes) to `peer` at `offset`; the status it answers.
fn write_from(process: &mut NodeProcess, peer: usize, offset: u64, text: &str) -> String {
    process.ask(&format!("write {peer} {offset} {text}"))
}

fn three_hosts_over_roce(on_host: &str, hosts: &[Host]) {
    let start = Instant::now();
    let mut nodes: Vec<NodeProcess> = (0..NODES).map(|id| spawn_node(on_host, id)).collect();
    let mut addresses = Vec::new();
    for (id, (process, host)) in nodes.iter_mut().zip(hosts).enumerate() {
        assert_eq!(process.read(), format!("devices {}", host.device), "host {id} sees other devices");
        let addr: SocketAddr = process.read().strip_prefix("addr ").expect("an address").parse().unwrap();
        assert_eq!(addr.ip(), host.addr);
        addresses.push((node(id as u16), addr));
    }
    let spec = ClusterSpec::new("hosts", &ClusterSpec::fresh_run(), addresses).unwrap();
    for (id, process) in nodes.iter_mut().enumerate() {
        process.send(&format!("me {id}"));
        for line in spec.to_string().lines() {
            process.send(line);
        }
        process.send("end");
    }
    for (process, host) in nodes.iter_mut().zip(hosts) {
        // The GID its QPs carry is the host's own address.
        assert_eq!(process.read(), format!("gid {}", host.addr.to_ipv6_mapped()));
    }
    for process in &mut nodes {
        assert_eq!(process.read(), "wrote");
    }
    for process in &mut nodes {
        assert_eq!(process.ask("check"), "ok");
    }
    eprintln!("{NODES} hosts bootstrapped and wrote to every peer in {:?}", start.elapsed());

    // Node 1 revokes node 0's write and grants it: no write in between, no reconnect.
    assert_eq!(nodes[1].ask("revoke 0"), "done");
    assert_eq!(nodes[1].ask("grant 0"), "done");
    assert_eq!(write_from(&mut nodes[0], 1, 256, "granted!"), "status Success");
    // Revoked, node 0 is refused; the right comes back with a reconnect.
    assert_eq!(nodes[1].ask("revoke 0"), "done");
    let refused = write_from(&mut nodes[0], 1, 264, "refused!");
    assert!(
        ["status RemoteInvalidRequest", "status RemoteAccessError"].contains(&refused.as_str()),
        "a write after the revocation: {refused}"
    );
    assert_eq!(nodes[1].ask("read 264 8"), "bytes ........");
    let regrant = nodes[1].ask("regrant 0");
    assert!(regrant.starts_with("reconnected"), "{regrant}");
    assert_eq!(write_from(&mut nodes[0], 1, 264, "welcome!"), "status Success");
    assert_eq!(nodes[1].ask("read 264 8"), "bytes welcome!");
    eprintln!("revoke, refusal ({refused}), grant and reconnect ({regrant}): ok at {:?}", start.elapsed());

    // SIGKILL node 2: nodes 0 and 1 see it lost, and go on with each other.
    nodes[2].child.kill().unwrap();
    nodes[2].child.wait().unwrap();
    let killed = Instant::now();
    // Both wait at once, from the kill on (a node that saw the control connection close
    // while idle answers control_ms=0).
    for process in nodes.iter_mut().take(2) {
        process.send("lost 2");
    }
    for (id, process) in nodes.iter_mut().enumerate().take(2) {
        let lost = process.read();
        assert!(lost.starts_with("lost write="), "{lost}");
        eprintln!("node {id} saw node 2 lost ({:?} after the kill): {lost}", killed.elapsed());
    }
    assert_eq!(write_from(&mut nodes[0], 1, 320, "survived"), "status Success");
    assert_eq!(write_from(&mut nodes[1], 0, 328, "survived"), "status Success");
    assert_eq!(nodes[1].ask("read 320 8"), "bytes survived");
    assert_eq!(nodes[0].ask("read 328 8"), "bytes survived");
    for process in nodes.iter_mut().take(2) {
        process.send("exit");
        assert!(process.child.wait().unwrap().success());
    }
    eprintln!("all checks passed in {:?}", start.elapsed());
}

fn host_descriptions_parse() {
    assert_eq!(
        Host::parse("rxe_h1,10.78.0.11,1"),
        Ok(Host { device: "rxe_h1".into(), addr: Ipv4Addr::new(10, 78, 0, 11), gid_index: 1 })
    );
    for bad in ["rxe_h1,10.78.0.11", "rxe_h1,10.78.0.11,1,2", "rxe_h1,host,1", "rxe_h1,10.78.0.11,x"] {
        assert!(Host::parse(bad).is_err(), "{bad}");
    }
}
