//! Nodes that are processes: this test binary run again as one test (the node's side), told
//! what to do in lines on its stdin, answering in lines on its stdout that start with `@@ `
//! (the test harness prints text of its own around them). Used by the tests that SIGKILL a
//! node: a thread cannot be killed.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use usec_qp_pool::{Cluster, NodeId, Poller};
use usec_verbs::Status;

use super::{read_local, write_and_wait, REPLICATION};

/// How long a node may stay silent before the test gives up on it: generous, the nodes may
/// run under an emulated CPU (tools/rxe-vm).
const SILENCE_LIMIT: Duration = Duration::from_secs(120);

/// A node process, seen from the test that started it.
pub struct NodeProcess {
    pub child: Child,
    name: String,
    input: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl NodeProcess {
    /// Starts `command` (which runs this test binary's node side) with piped stdin and
    /// stdout; `name` is how failures refer to it.
    pub fn spawn(name: &str, mut command: Command) -> NodeProcess {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("spawning {name}: {error}"));
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        let (sender, lines) = mpsc::channel();
        // A thread per node, so that reading can time out.
        std::thread::spawn(move || {
            for line in output.lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        NodeProcess { child, name: name.to_string(), input, lines }
    }

    /// The node's next line of its own, without the `@@ ` prefix.
    pub fn read(&mut self) -> String {
        loop {
            let line = match self.lines.recv_timeout(SILENCE_LIMIT) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{} said nothing for {SILENCE_LIMIT:?}", self.name)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|status| status.to_string()).unwrap_or_default();
                    panic!("{} exited early ({status})", self.name)
                }
            };
            // The harness may have printed `test <name> ... ` on the same line.
            if let Some((_, own)) = line.trim_end().split_once("@@ ") {
                assert!(!own.starts_with("error"), "{} failed: {own}", self.name);
                return own.to_string();
            }
        }
    }

    /// The node's next line of its own if one is there, without waiting (for a test that
    /// must serve its own cluster meanwhile).
    pub fn try_read(&mut self) -> Option<String> {
        loop {
            let line = match self.lines.try_recv() {
                Ok(line) => line,
                Err(mpsc::TryRecvError::Empty) => return None,
                Err(mpsc::TryRecvError::Disconnected) => {
                    let status = self.child.wait().map(|status| status.to_string()).unwrap_or_default();
                    panic!("{} exited early ({status})", self.name)
                }
            };
            if let Some((_, own)) = line.trim_end().split_once("@@ ") {
                assert!(!own.starts_with("error"), "{} failed: {own}", self.name);
                return Some(own.to_string());
            }
        }
    }

    /// Sends one line.
    pub fn send(&mut self, line: &str) {
        writeln!(self.input, "{line}").unwrap_or_else(|error| panic!("writing to {}: {error}", self.name));
    }

    /// Sends `line` and returns the answer.
    pub fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.read()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The node side's command lines, read from stdin by a thread of their own so that the
/// node can go on serving its cluster between them.
pub fn command_lines() -> mpsc::Receiver<String> {
    let (lines, commands) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    commands
}

/// The byte node `id` writes into its peers' regions, at [`offset_of`] `id`.
pub fn mark_of(id: NodeId) -> [u8; 8] {
    [id.get() as u8 + 1; 8]
}

pub fn offset_of(id: NodeId) -> u64 {
    64 * u64::from(id.get())
}

/// Writes this node's mark into every peer's region.
pub fn write_marks(cluster: &mut Cluster, poller: &mut Poller) -> Result<(), String> {
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
pub fn check_marks(cluster: &Cluster) -> Result<(), String> {
    for peer in cluster.peers() {
        let landed = read_local(cluster, offset_of(peer) as usize, 8);
        if landed != mark_of(peer) {
            return Err(format!("node {peer}'s mark at node {}: {landed:?}", cluster.me()));
        }
    }
    Ok(())
}
