//! A `usec-mu-node` process seen from a test: its console (lines on stdin, answers on
//! stdout), the commands its client got acknowledged (every `ack` line, timestamped as it
//! arrived, kept after the process dies), and signals.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// An acknowledged command (hex) and when its `ack` line arrived.
pub type Ack = (Instant, String);

/// Whether a node process runs, is stopped (SIGSTOP), or is dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    Running,
    Stopped,
    Dead,
}

/// One node process.
pub struct NodeProcess {
    pub id: u16,
    pub name: String,
    child: Child,
    input: ChildStdin,
    answers: mpsc::Receiver<String>,
    acks: Arc<Mutex<Vec<Ack>>>,
    pub life: Life,
    /// How long an answer may take before the test gives up.
    pub answer_limit: Duration,
}

impl NodeProcess {
    /// Starts `command` (a `usec-mu-node`, possibly behind a wrapper that execs it).
    pub fn spawn(id: u16, name: String, mut command: Command, answer_limit: Duration) -> NodeProcess {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("spawning {name}: {error}"));
        let input = child.stdin.take().expect("piped");
        let output = BufReader::new(child.stdout.take().expect("piped"));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let (sender, answers) = mpsc::channel();
        let store = acks.clone();
        std::thread::spawn(move || {
            for line in output.lines() {
                let Ok(line) = line else { break };
                if let Some(command) = line.strip_prefix("ack ") {
                    store.lock().unwrap().push((Instant::now(), command.to_string()));
                } else if sender.send(line).is_err() {
                    break;
                }
            }
        });
        NodeProcess { id, name, child, input, answers, acks, life: Life::Running, answer_limit }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// The next line that is not an `ack`.
    pub fn read(&mut self, expecting: &str) -> String {
        match self.answers.recv_timeout(self.answer_limit) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{}: no answer within {:?} (expected {expecting})", self.name, self.answer_limit)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().map(|status| status.to_string()).unwrap_or_default();
                panic!(
                    "{} exited ({status}) while the test expected {expecting} (its stderr is above)",
                    self.name
                )
            }
        }
    }

    pub fn send(&mut self, line: &str) {
        writeln!(self.input, "{line}").unwrap_or_else(|error| panic!("writing to {}: {error}", self.name));
    }

    /// Sends a console command and returns the answer, checked to start with `prefix`.
    pub fn ask(&mut self, line: &str, prefix: &str) -> String {
        assert_eq!(self.life, Life::Running, "{} is not running: it cannot answer {line:?}", self.name);
        self.send(line);
        let answer = self.read(&format!("an answer to {line:?}"));
        assert!(answer.starts_with(prefix), "{}: {line:?} answered {answer:?}", self.name);
        answer
    }

    /// The `addr` line (with `--listen`).
    pub fn addr(&mut self) -> SocketAddr {
        let line = self.read("`addr <ip:port>`");
        line.strip_prefix("addr ")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("{}: expected `addr <ip:port>`, got {line:?}", self.name))
    }

    /// Sends the cluster description over stdin.
    pub fn send_spec(&mut self, spec: &str) {
        for line in spec.lines() {
            self.send(line);
        }
        self.send("end");
    }

    pub fn status(&mut self) -> Status {
        let line = self.ask("status", "status ");
        Status::parse(&line).unwrap_or_else(|| panic!("{}: bad status line {line:?}", self.name))
    }

    /// The applied commands, in hex.
    pub fn history(&mut self) -> Vec<String> {
        assert_eq!(self.life, Life::Running, "{} is not running", self.name);
        self.send("history");
        let mut history = Vec::new();
        loop {
            let line = self.read("a history line or `end`");
            if line == "end" {
                return history;
            }
            history.push(line);
        }
    }

    pub fn describe(&mut self) -> String {
        self.ask("describe", "describe ")
    }

    /// Every command acknowledged so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    pub fn ack_count(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    pub fn stop(&mut self) {
        kill(self.pid(), Signal::SIGSTOP).unwrap();
        self.life = Life::Stopped;
    }

    pub fn resume(&mut self) {
        kill(self.pid(), Signal::SIGCONT).unwrap();
        self.life = Life::Running;
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        kill(self.pid(), Signal::SIGKILL).unwrap();
        self.child.wait().unwrap();
        self.life = Life::Dead;
    }

    /// Asks it to quit, and checks it exits cleanly.
    pub fn quit(&mut self) {
        self.ask("quit", "bye");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{} exited with {status}", self.name);
        self.life = Life::Dead;
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if self.life != Life::Dead {
            let _ = kill(self.pid(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// A `status` line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub role: String,
    pub leader: Option<u16>,
    pub commit: u64,
    pub applied: u64,
    pub commands: u64,
    pub eligible: bool,
    pub candidacies: u64,
    pub leaderships: u64,
    pub proposal: Option<u64>,
    pub queued: u64,
    pub restored: u64,
    pub refused: u64,
    /// With `--views`: the latest view learned, its consensus members, and whether this
    /// process is one.
    pub view: Option<u64>,
    pub voters: u64,
    pub voting: bool,
}

impl Status {
    pub fn parse(line: &str) -> Option<Status> {
        let mut status = Status::default();
        for field in line.strip_prefix("status ")?.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            let number = || value.parse::<u64>().ok();
            match key {
                "role" => status.role = value.to_string(),
                "leader" => status.leader = value.parse().ok(),
                "commit" => status.commit = number()?,
                "applied" => status.applied = number()?,
                "commands" => status.commands = number()?,
                "eligible" => status.eligible = value.parse().ok()?,
                "candidacies" => status.candidacies = number()?,
                "leaderships" => status.leaderships = number()?,
                "proposal" => status.proposal = number(),
                "queued" => status.queued = number()?,
                "restored" => status.restored = number()?,
                "refused" => status.refused = number()?,
                "view" => status.view = number(),
                "voters" => status.voters = number()?,
                "voting" => status.voting = value.parse().ok()?,
                _ => {}
            }
        }
        Some(status)
    }

    pub fn leads(&self) -> bool {
        self.role == "leader"
    }
}
