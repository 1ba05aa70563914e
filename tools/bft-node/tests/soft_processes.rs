//! CTBcast with real processes on the soft provider: three `usec-bft-node` participants
//! and three `usec-bft-memory` memory nodes bootstrap into one cluster over loopback TCP.
//! Broadcasts reach every receiver identically; with a participant SIGKILLed the others
//! deliver on the slow path through the memory nodes, and still with a memory node
//! SIGKILLed too. A participant run with `--byzantine` never makes two correct receivers
//! deliver different messages for one index, and its garbage is refused.
//!
//! The memory node binary belongs to another package of the workspace: it is looked for
//! next to this package's binary and built with cargo if it is not there.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use usec_qp_pool::{ClusterSpec, NodeId};

const PARTICIPANTS: u16 = 3;
const MEMORY_NODES: u16 = 3;
const TAIL: &str = "32";
/// How long a step may take on a loaded two-core machine before the test gives up.
const STEP_LIMIT: Duration = Duration::from_secs(60);

fn memory_binary() -> PathBuf {
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_usec-bft-node"));
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
    id: u16,
    child: Child,
    input: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// Lines read while looking for another, kept for [`Process::next`].
    skipped: VecDeque<String>,
}

impl Process {
    fn spawn(mut command: Command, id: u16) -> Process {
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
        Process { id, child, input, lines, skipped: VecDeque::new() }
    }

    /// The next line that starts with `prefix` (others are kept for [`Process::next`]).
    fn expect(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + STEP_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|error| panic!("node {}: no `{prefix}` line ({error})", self.id));
            if line.starts_with(prefix) {
                return line;
            }
            self.skipped.push_back(line);
        }
    }

    /// The next line, waiting up to `left`.
    fn next(&mut self, left: Duration) -> Result<String, mpsc::RecvTimeoutError> {
        match self.skipped.pop_front() {
            Some(line) => Ok(line),
            None => self.lines.recv_timeout(left),
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

/// A delivery line: (broadcaster, index) → (path, message).
type Deliveries = BTreeMap<(u16, u64), (String, Vec<u8>)>;

struct Group {
    participants: Vec<Process>,
    memory: Vec<Process>,
    /// What each participant delivered so far.
    delivered: Vec<Deliveries>,
    /// Other lines each participant printed (equivocations, abandons, stats).
    other: Vec<Vec<String>>,
}

impl Group {
    fn start(name: &str, byzantine: Option<&str>) -> Group {
        let device = format!("soft:bft-node-{name}-{}", std::process::id());
        let ids = |range: std::ops::Range<u16>| range.map(|id| id.to_string()).collect::<Vec<_>>().join(",");
        let (participant_ids, memory_ids) =
            (ids(0..PARTICIPANTS), ids(PARTICIPANTS..PARTICIPANTS + MEMORY_NODES));
        let common = ["--device", &device, "--spec", "-", "--listen", "127.0.0.1:0"];
        let mut memory: Vec<Process> = (PARTICIPANTS..PARTICIPANTS + MEMORY_NODES)
            .map(|id| {
                let mut command = Command::new(memory_binary());
                command.args(common).args(["--id", &id.to_string(), "--writers", &participant_ids]);
                command.args(["--tail", TAIL, "--rings"]);
                Process::spawn(command, id)
            })
            .collect();
        let mut participants: Vec<Process> = (0..PARTICIPANTS)
            .map(|id| {
                let mut command = Command::new(env!("CARGO_BIN_EXE_usec-bft-node"));
                command.args(common).args(["--id", &id.to_string(), "--participants", &participant_ids]);
                command.args(["--memory-nodes", &memory_ids, "--tail", TAIL, "--max-message-bytes", "256"]);
                // Generous: a slow path under this machine's load is a timeout away.
                command.args(["--fast-path-timeout-us", "20000"]);
                if let (0, Some(behaviour)) = (id, byzantine) {
                    command.args(["--byzantine", behaviour]);
                }
                Process::spawn(command, id)
            })
            .collect();
        let mut nodes = Vec::new();
        for process in participants.iter_mut().chain(&mut memory) {
            let line = process.expect("addr ");
            nodes.push((NodeId::new(process.id).unwrap(), line["addr ".len()..].parse().unwrap()));
        }
        let spec = ClusterSpec::new(name, &ClusterSpec::fresh_run(), nodes).unwrap().to_string();
        let mut group = Group {
            participants,
            memory,
            delivered: vec![BTreeMap::new(); PARTICIPANTS as usize],
            other: vec![Vec::new(); PARTICIPANTS as usize],
        };
        for process in group.participants.iter_mut().chain(&mut group.memory) {
            process.say(&format!("{spec}end"));
        }
        for process in group.participants.iter_mut().chain(&mut group.memory) {
            let ready = process.expect("ready");
            println!("node {}: {ready}", process.id);
        }
        group
    }

    fn broadcast(&mut self, from: usize, message: &str) -> u64 {
        self.participants[from].say(&format!("broadcast {message}"));
        let line = self.participants[from].expect("broadcast ");
        line["broadcast ".len()..].parse().unwrap()
    }

    /// Reads participant `n`'s lines until `done` holds of what it delivered.
    fn until(&mut self, n: usize, what: &str, done: impl Fn(&Deliveries, &[String]) -> bool) {
        let deadline = Instant::now() + STEP_LIMIT;
        while !done(&self.delivered[n], &self.other[n]) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.participants[n].next(left).unwrap_or_else(|error| {
                panic!("participant {n}: {what} ({error}); delivered {:?}", self.delivered[n])
            });
            let fields: Vec<&str> = line.split(' ').collect();
            if fields[0] == "deliver" {
                let key = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
                let message = (0..fields[4].len() / 2)
                    .map(|at| u8::from_str_radix(&fields[4][2 * at..2 * at + 2], 16).unwrap())
                    .collect();
                let previous = self.delivered[n].insert(key, (fields[3].to_string(), message));
                assert!(previous.is_none(), "participant {n} delivered {key:?} twice");
            } else {
                self.other[n].push(line);
            }
        }
    }

    fn stats(&mut self, n: usize) -> BTreeMap<String, u64> {
        self.participants[n].say("stats");
        let line = self.participants[n].expect("stats ");
        line.split(' ')
            .skip(1)
            .map(|field| {
                let (name, value) = field.split_once('=').unwrap();
                (name.to_string(), value.parse().unwrap())
            })
            .collect()
    }
}

fn has(delivered: &Deliveries, broadcaster: u16, indices: std::ops::Range<u64>) -> bool {
    indices.into_iter().all(|index| delivered.contains_key(&(broadcaster, index)))
}

#[test]
fn broadcasts_survive_a_killed_participant_and_a_killed_memory_node() {
    let mut group = Group::start("kills", None);
    for n in 0..5 {
        assert_eq!(group.broadcast(0, &format!("zero-{n}")), n);
        assert_eq!(group.broadcast(1, &format!("one-{n}")), n);
    }
    group.until(2, "broadcasts of 0 and 1", |d, _| has(d, 0, 0..5) && has(d, 1, 0..5));
    group.until(1, "broadcasts of 0", |d, _| has(d, 0, 0..5));
    group.until(0, "broadcasts of 1", |d, _| has(d, 1, 0..5));
    for n in 0..5u64 {
        let expected = format!("zero-{n}").into_bytes();
        assert_eq!(group.delivered[1][&(0, n)].1, expected);
        assert_eq!(group.delivered[2][&(0, n)].1, expected);
        assert_eq!(group.delivered[0][&(1, n)].1, group.delivered[2][&(1, n)].1);
    }
    let fast = group.delivered.iter().flat_map(|d| d.values()).filter(|(path, _)| path == "fast").count();
    println!("{fast} of 20 deliveries on the fast path");

    // SIGKILL participant 2: it never echoes again; 1 delivers 0's broadcasts on the slow
    // path, through the memory nodes.
    group.participants[2].kill();
    for n in 5..10 {
        group.broadcast(0, &format!("zero-{n}"));
    }
    group.until(1, "broadcasts after the kill", |d, _| has(d, 0, 5..10));
    for n in 5..10u64 {
        assert_eq!(group.delivered[1][&(0, n)], ("slow".to_string(), format!("zero-{n}").into_bytes()));
    }

    // SIGKILL memory node 3: registers go on with two of three.
    group.memory[0].kill();
    for n in 10..15 {
        group.broadcast(0, &format!("zero-{n}"));
    }
    group.until(1, "broadcasts after the memory node's kill", |d, _| has(d, 0, 10..15));
    for n in 10..15u64 {
        assert_eq!(group.delivered[1][&(0, n)], ("slow".to_string(), format!("zero-{n}").into_bytes()));
    }
    let stats = group.stats(1);
    println!("participant 1: {stats:?}");
    assert_eq!(stats["equivocations"], 0);
}

#[test]
fn an_equivocating_participant_never_makes_correct_receivers_disagree() {
    let mut group = Group::start("equivocate", Some("equivocate"));
    for n in 0..5 {
        group.broadcast(0, &format!("pay-{n}"));
    }
    // Each correct receiver settles every index: delivers it or gives it up.
    let settled = |d: &Deliveries, other: &[String]| {
        (0..5u64).all(|index| {
            d.contains_key(&(0, index))
                || other.iter().any(|line| line.starts_with(&format!("abandon 0 {index} ")))
        })
    };
    group.until(1, "every index settled", settled);
    group.until(2, "every index settled", settled);
    for index in 0..5u64 {
        let (one, two) = (group.delivered[1].get(&(0, index)), group.delivered[2].get(&(0, index)));
        if let (Some(one), Some(two)) = (one, two) {
            assert_eq!(one.1, two.1, "index {index}: two correct receivers delivered different messages");
        }
    }
    let proofs: Vec<&String> =
        group.other[1..].iter().flatten().filter(|line| line.starts_with("equivocation 0 ")).collect();
    assert!(!proofs.is_empty(), "no receiver proved the equivocation");
    assert!(proofs.iter().all(|line| line.ends_with("valid=true")), "{proofs:?}");
}

#[test]
fn garbage_from_a_participant_is_refused_and_its_real_broadcasts_delivered() {
    let mut group = Group::start("garbage", Some("garbage"));
    for n in 0..5 {
        group.broadcast(0, &format!("real-{n}"));
    }
    group.until(1, "the real broadcasts", |d, _| has(d, 0, 0..5));
    group.until(2, "the real broadcasts", |d, _| has(d, 0, 0..5));
    for receiver in 1..3 {
        for n in 0..5u64 {
            assert_eq!(group.delivered[receiver][&(0, n)].1, format!("real-{n}").into_bytes());
        }
        let stats = group.stats(receiver);
        assert!(stats["rejected"] >= 5, "participant {receiver} refused no garbage: {stats:?}");
    }
}
