//! The launcher as a user drives it: real `usec-kv` processes on the soft provider, its
//! status stream read line by line, console commands typed on its standard input, and
//! signals sent to it. Deadlines are generous (the replicas share two cores with the
//! test); nothing is judged by how fast it happened.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Generous: three replicas start, elect and fail over on two busy cores well within it.
const DEADLINE: Duration = Duration::from_secs(60);

/// One group at a time: two on two cores starve each other's heartbeats.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Builds usec-kv into the target directory the launcher runs from (it looks for it
/// there). `cargo test -p usec-cluster` alone does not build another package's binary.
fn build_kv() {
    static BUILT: Once = Once::new();
    BUILT.call_once(|| {
        let launcher = Path::new(env!("CARGO_BIN_EXE_usec-cluster"));
        let profile = launcher.parent().and_then(Path::file_name).and_then(|name| name.to_str()).unwrap();
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-p", "usec-kv", "--bin", "usec-kv"]);
        match profile {
            "debug" => {}
            "release" => {
                cargo.arg("--release");
            }
            other => {
                cargo.args(["--profile", other]);
            }
        }
        let status = cargo.status().expect("running cargo");
        assert!(status.success(), "building usec-kv failed");
        assert!(launcher.with_file_name("usec-kv").is_file());
    });
}

/// A running `usec-cluster`, its standard output read line by line.
struct Launcher {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    transcript: Vec<String>,
}

impl Launcher {
    fn spawn(args: &[&str]) -> Launcher {
        build_kv();
        let mut child = Command::new(env!("CARGO_BIN_EXE_usec-cluster"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Launcher { child, stdin, lines, transcript: Vec::new() }
    }

    /// Reads lines until `find` returns something; fails with the transcript at the
    /// deadline or when the output ends.
    fn expect<T>(&mut self, what: &str, mut find: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let line = match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("no {what} within {} s", DEADLINE.as_secs()))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(&format!("the launcher's output ended before {what}"))
                }
            };
            println!("| {line}");
            self.transcript.push(line.clone());
            if let Some(found) = find(&line) {
                return found;
            }
        }
    }

    fn fail(&self, why: &str) -> ! {
        panic!("{why}; the launcher said:\n{}", self.transcript.join("\n"))
    }

    fn type_line(&mut self, line: &str) {
        writeln!(self.stdin.as_mut().unwrap(), "{line}").unwrap();
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the launcher did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // A failed test still takes its replicas down: SIGINT is the orderly way.
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal(Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `replica N serves RESP on ADDR (pid P)`.
fn replica_line(line: &str) -> Option<(usize, SocketAddr, u32)> {
    let rest = line.strip_prefix("usec-cluster: replica ")?;
    let (node, rest) = rest.split_once(" serves RESP on ")?;
    let (address, rest) = rest.split_once(" (pid ")?;
    Some((node.parse().ok()?, address.parse().ok()?, rest.trim_end_matches(')').parse().ok()?))
}

/// The fabric's directory, from the first line.
fn fabric_dir(line: &str) -> Option<PathBuf> {
    let start = line.find(" (/")? + 2;
    let end = start + line[start..].find(')')?;
    Some(PathBuf::from(&line[start..end]))
}

/// A status line: its leader and each replica's text.
fn status(line: &str) -> Option<(Option<usize>, Vec<String>)> {
    let rest = line.strip_prefix("status ")?;
    let mut parts = rest.split(" | ");
    let head = parts.next()?;
    let leader = head.split_whitespace().find_map(|word| word.strip_prefix("leader="))?;
    let replicas = parts.map(|part| part.split_once(' ').map_or("", |(_, text)| text).to_string()).collect();
    Some((leader.parse().ok(), replicas))
}

/// `applied=N` in a replica's status text.
fn applied(text: &str) -> Option<u64> {
    text.split_whitespace().find_map(|word| word.strip_prefix("applied="))?.parse().ok()
}

/// A raw RESP client.
struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    fn connect(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client { stream, buffer: Vec::new() }
    }

    /// Sends `args` and reads one reply (a simple line or one bulk).
    fn request(&mut self, args: &[&str]) -> String {
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.stream.write_all(out.as_bytes()).unwrap();
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                if let Some(len) = line.strip_prefix('$').and_then(|len| len.parse::<usize>().ok()) {
                    if self.buffer.len() >= end + 2 + len + 2 {
                        let value =
                            String::from_utf8_lossy(&self.buffer[end + 2..end + 2 + len]).into_owned();
                        self.buffer.drain(..end + 2 + len + 2);
                        return value;
                    }
                } else {
                    self.buffer.drain(..end + 2);
                    return line;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the server closed the connection");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Client {
    /// Sends `args` and reads one whole reply of any kind, as it came.
    fn raw_request(&mut self, args: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        usec_replication::apps::resp::reply::request(&mut out, args.iter().map(|arg| arg.as_bytes()));
        self.stream.write_all(&out).unwrap();
        loop {
            if let Some(len) = usec_replication::apps::resp::scan::reply_len(&self.buffer).unwrap() {
                return self.buffer.drain(..len).collect();
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the server closed the connection");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Whether `pid` is a live process (a zombie left to an init that does not reap is not).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next());
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    state != Some("Z") && String::from_utf8_lossy(&cmdline).contains("usec-kv")
}

fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + DEADLINE;
    while pids.iter().any(|&pid| alive(pid)) {
        assert!(Instant::now() < deadline, "replica processes survived: {pids:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The start-up lines: the fabric, and each replica's address and pid.
fn started(launcher: &mut Launcher) -> (PathBuf, Vec<SocketAddr>, Vec<u32>, SocketAddr) {
    let fabric = launcher.expect("the first line", fabric_dir);
    let mut addresses = Vec::new();
    let mut pids = Vec::new();
    for node in 0..3 {
        let (id, address, pid) = launcher.expect("a replica's address", replica_line);
        assert_eq!(id, node);
        addresses.push(address);
        pids.push(pid);
    }
    let door = launcher.expect("the front door", |line| {
        line.strip_prefix("usec-cluster: front door ")?
            .split(':')
            .take(2)
            .collect::<Vec<_>>()
            .join(":")
            .parse()
            .ok()
    });
    (fabric, addresses, pids, door)
}

const START: &[&str] = &[
    "start",
    "--replicas",
    "3",
    "--port",
    "0",
    "--",
    "--heartbeat-us",
    "100000",
    "--log-slots",
    "256",
    "--snapshot-mib",
    "8",
];

#[test]
fn kill_the_leader_restart_it_and_stop_with_ctrl_c() {
    kill_restart_stop(START, false);
}

/// The same on membership views: the view change removes the killed leader, the next
/// lowest id leads, and the restarted process rejoins (as a member that does not vote)
/// and catches up; the new leader answers the GETs locally.
#[test]
fn on_views_kill_the_leader_restart_it_and_stop_with_ctrl_c() {
    let mut args = START.to_vec();
    args.insert(1, "--views");
    kill_restart_stop(&args, true);
}

fn kill_restart_stop(args: &[&str], views: bool) {
    let _turn = one_at_a_time();
    let mut launcher = Launcher::spawn(args);
    let (fabric, addresses, mut pids, door) = started(&mut launcher);
    let leader = launcher.expect("a leader in the status stream", |line| status(line)?.0);

    // A write straight to the leader, and one through the front door.
    assert_eq!(Client::connect(addresses[leader]).request(&["SET", "straight", "to the leader"]), "+OK");
    let mut through_door = Client::connect(door);
    assert_eq!(through_door.request(&["SET", "through", "the front door"]), "+OK");

    launcher.type_line(&format!("kill {leader}"));
    let killed = format!("usec-cluster: replica {leader} (pid {}) killed", pids[leader]);
    launcher.expect("the kill", |line| line.starts_with(&killed).then_some(()));
    assert!(
        !alive(pids[leader]) && !Path::new(&format!("/proc/{}", pids[leader])).exists(),
        "killed and reaped"
    );
    let new_leader = launcher.expect("a new leader", |line| {
        let (leader_now, replicas) = status(line)?;
        (replicas[leader] == "killed").then_some(leader_now?)
    });
    assert_ne!(new_leader, leader);

    // What was acknowledged is still there, read through the log of the new leader; the
    // front door's client kept its connection.
    assert_eq!(Client::connect(addresses[new_leader]).request(&["GET", "straight"]), "to the leader");
    assert_eq!(through_door.request(&["GET", "through"]), "the front door");
    let target = launcher.expect("the new leader's applied index", |line| {
        let (_, replicas) = status(line)?;
        applied(&replicas[new_leader])
    });

    if views {
        let info = Client::connect(addresses[new_leader]).raw_request(&["INFO", "replication"]);
        let info = String::from_utf8_lossy(&info);
        assert!(info.contains("usec_local_reads:leases"), "{info}");
    }

    launcher.type_line(&format!("restart {leader}"));
    let restarted = format!("usec-cluster: replica {leader} restarted (pid ");
    let pid =
        launcher.expect("the restart", |line| line.strip_prefix(&restarted)?.split(',').next()?.parse().ok());
    pids.push(pid);
    launcher.expect("the restarted replica caught up", |line| {
        let (_, replicas) = status(line)?;
        applied(&replicas[leader]).filter(|&index| index >= target)
    });
    // Writes go on with the restarted replica back, and it applies them.
    assert_eq!(through_door.request(&["SET", "after", "the restart"]), "+OK");
    let target = launcher.expect("the leader's applied index", |line| {
        let (leader_now, replicas) = status(line)?;
        applied(&replicas[leader_now?])
    });
    launcher.expect("the restarted replica applied the write after it", |line| {
        let (_, replicas) = status(line)?;
        applied(&replicas[leader]).filter(|&index| index >= target)
    });

    launcher.signal(Signal::SIGINT);
    launcher.expect("the stop", |line| line.starts_with("usec-cluster: stopped:").then_some(()));
    assert!(launcher.wait().success());
    wait_gone(&pids);
    assert!(!fabric.exists(), "{} is left behind", fabric.display());
}

#[test]
fn replicas_go_when_the_launcher_is_killed() {
    let _turn = one_at_a_time();
    let mut launcher = Launcher::spawn(START);
    let (fabric, _, pids, _) = started(&mut launcher);
    // The launcher blocks the signals it waits for; its replicas must not inherit that.
    for pid in &pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let blocked = status.lines().find_map(|line| line.strip_prefix("SigBlk:")).unwrap().trim();
        assert_eq!(u64::from_str_radix(blocked, 16).unwrap(), 0, "replica {pid} starts with signals blocked");
    }
    // A stopped replica cannot read the end of its input: the kernel's SIGHUP to an
    // orphaned process group with a stopped member takes it.
    launcher.type_line("pause 1");
    launcher.expect("the pause", |line| line.contains("replica 1 (pid").then_some(()));
    launcher.signal(Signal::SIGKILL);
    launcher.wait();
    // What a killed launcher cannot remove: the fabric, and the description named as it.
    let description = std::env::temp_dir().join(fabric.file_name().unwrap());
    let _ = std::fs::remove_dir_all(&description);
    let _ = std::fs::remove_dir_all(&fabric);
    wait_gone(&pids);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn config_file_nodes_form_a_group() {
    let _turn = one_at_a_time();
    let run = format!("config-test-{}", std::process::id());
    let mut config = format!("cluster = kv\nrun = {run}\n");
    for node in 0..3 {
        config.push_str(&format!(
            "node {node} host=127.0.0.1 device=soft:{run} control={} resp={}\n",
            free_port(),
            free_port()
        ));
    }
    let path = std::env::temp_dir().join(format!("{run}.conf"));
    std::fs::write(&path, config).unwrap();
    let path = path.to_str().unwrap().to_string();
    let mut nodes: Vec<Launcher> = (0..3)
        .map(|node| {
            let node = node.to_string();
            Launcher::spawn(&["node", "--config", &path, "--node", &node, "--", "--heartbeat-us", "100000"])
        })
        .collect();
    let mut pids = Vec::new();
    for node in &mut nodes {
        let pid: u32 = node.expect("the node's pid", |line| line.rsplit("pid ").next()?.parse().ok());
        pids.push(pid);
    }
    // Every node sees the whole group up, with a leader.
    for node in &mut nodes {
        node.expect("the group up with a leader", |line| {
            let (leader, replicas) = status(line)?;
            let up = replicas.len() == 3
                && replicas.iter().all(|text| text.starts_with("leader") || text.starts_with("follower"));
            up.then_some(leader?)
        });
    }
    for node in &mut nodes {
        node.signal(Signal::SIGINT);
        assert!(node.wait().success());
    }
    wait_gone(&pids);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir_all(format!("/dev/shm/usec-soft/{run}"));
}

#[test]
fn an_order_book_group_keeps_its_book_across_a_leader_kill() {
    let _turn = one_at_a_time();
    let mut args = START.to_vec();
    args.splice(1..1, ["--app", "orderbook"]);
    let mut launcher = Launcher::spawn(&args);
    let (fabric, _, pids, door) = started(&mut launcher);
    let leader = launcher.expect("a leader in the status stream", |line| status(line)?.0);
    let mut client = Client::connect(door);
    let sold = String::from_utf8(client.raw_request(&["SELL", "bob", "ACME", "100", "10150"])).unwrap();
    assert!(sold.starts_with('*') && sold.contains("open"), "{sold:?}");
    let bought = String::from_utf8(client.raw_request(&["BUY", "alice", "ACME", "20", "10150"])).unwrap();
    assert!(bought.contains("filled") && bought.contains("bob"), "{bought:?}");
    let digest = client.raw_request(&["BOOK.DIGEST"]);

    launcher.type_line("kill leader");
    let killed = format!("usec-cluster: replica {leader} (pid {}) killed", pids[leader]);
    launcher.expect("the kill", |line| line.starts_with(&killed).then_some(()));
    launcher.expect("a new leader", |line| {
        let (leader_now, replicas) = status(line)?;
        (replicas[leader] == "killed").then_some(leader_now?)
    });
    // The same connection, through the front door: the new leader has the same book.
    assert_eq!(client.raw_request(&["BOOK.DIGEST"]), digest);
    let sold = String::from_utf8(client.raw_request(&["SELL", "carol", "ACME", "5", "10200"])).unwrap();
    assert!(sold.contains("open"), "{sold:?}");

    launcher.signal(Signal::SIGINT);
    assert!(launcher.wait().success());
    wait_gone(&pids);
    assert!(!fabric.exists(), "{} is left behind", fabric.display());
}
