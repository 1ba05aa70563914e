//! A group of `usec-mu-node` processes, one per node, started, signalled and checked by a
//! test; the same on the soft provider (one host) and on rxe hosts (tools/rxe-vm).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use usec_qp_pool::{ClusterSpec, NodeId};

use super::node::{Ack, Life, NodeProcess, Status};

/// How long the steps of a scenario may take (the VM is far slower than the host).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A console answer.
    pub answer: Duration,
    /// From start (or restart) to `ready`: bootstrap.
    pub ready: Duration,
    /// A leader after a fault.
    pub leader: Duration,
    /// A number of commands acknowledged by a leader.
    pub progress: Duration,
    /// A resumed leader seen to step down.
    pub step_down: Duration,
    /// A rejoining replica caught up.
    pub catch_up: Duration,
    /// Every replica at the same point once clients stop.
    pub converge: Duration,
    /// Between two looks at the nodes' status.
    pub poll: Duration,
}

/// How to start node `id`: the command (the binary, perhaps behind a wrapper that execs
/// it on the node's host) with its device and addressing, and the address it first
/// listens at (port 0).
pub struct Launcher {
    pub label: &'static str,
    pub command: Box<dyn Fn(u16) -> Command>,
    pub listen: Box<dyn Fn(u16) -> SocketAddr>,
    /// Arguments every node gets (timings, sizes, the client's pace).
    pub args: Vec<String>,
    pub limits: Limits,
}

/// The nodes, and the processes that died (whose acknowledgements still count).
pub struct Group {
    pub launcher: Launcher,
    pub nodes: Vec<NodeProcess>,
    retired: Vec<NodeProcess>,
    addrs: Vec<SocketAddr>,
    spec: String,
    pub started: Instant,
}

impl Group {
    /// Starts `n` nodes, each with its client, and waits until all are ready.
    pub fn start(launcher: Launcher, n: u16) -> Group {
        let started = Instant::now();
        let mut nodes: Vec<NodeProcess> = (0..n)
            .map(|id| {
                let listen = (launcher.listen)(id).to_string();
                spawn(&launcher, id, &["--listen", &listen, "--start", "initial"])
            })
            .collect();
        let addrs: Vec<SocketAddr> = nodes.iter_mut().map(NodeProcess::addr).collect();
        let members = addrs.iter().enumerate().map(|(id, addr)| (NodeId::new(id as u16).unwrap(), *addr));
        let spec = ClusterSpec::new("mu-processes", &ClusterSpec::fresh_run(), members).unwrap().to_string();
        for node in &mut nodes {
            node.send_spec(&spec);
        }
        let mut group = Group { launcher, nodes, retired: Vec::new(), addrs, spec, started };
        for id in 0..n {
            group.wait_ready(id);
        }
        group.note(&format!("{n} nodes ready"));
        group
    }

    /// Prints a line for the record, with the time since start.
    pub fn note(&self, what: &str) {
        eprintln!("[mu {} {:>8.3} s] {what}", self.launcher.label, self.started.elapsed().as_secs_f64());
    }

    fn wait_ready(&mut self, id: u16) {
        let node = &mut self.nodes[usize::from(id)];
        let limit = node.answer_limit;
        node.answer_limit = self.launcher.limits.ready;
        let line = node.read("`ready` (bootstrap done)");
        node.answer_limit = limit;
        assert_eq!(line, "ready", "{}: expected `ready`", node.name);
    }

    /// Starts a fresh process for node `id` (the old one dead), in rejoin mode, at the
    /// node's address; waits until it is ready.
    pub fn restart(&mut self, id: u16) {
        let index = usize::from(id);
        assert_eq!(self.nodes[index].life, Life::Dead, "restart only a dead node");
        let listen = self.addrs[index].to_string();
        let mut fresh = spawn(&self.launcher, id, &["--listen", &listen, "--start", "rejoin"]);
        assert_eq!(fresh.addr(), self.addrs[index]);
        fresh.send_spec(&self.spec);
        let old = std::mem::replace(&mut self.nodes[index], fresh);
        self.retired.push(old);
        self.wait_ready(id);
    }

    pub fn node(&mut self, id: u16) -> &mut NodeProcess {
        &mut self.nodes[usize::from(id)]
    }

    pub fn running(&self) -> Vec<u16> {
        self.nodes.iter().filter(|node| node.life == Life::Running).map(|node| node.id).collect()
    }

    /// Every running node's status.
    pub fn statuses(&mut self) -> BTreeMap<u16, Status> {
        self.nodes
            .iter_mut()
            .filter(|node| node.life == Life::Running)
            .map(|node| (node.id, node.status()))
            .collect()
    }

    /// Every running node's status and internals, for a failure message.
    pub fn report(&mut self) -> String {
        let mut lines = Vec::new();
        for node in self.nodes.iter_mut() {
            match node.life {
                Life::Running => {
                    let status = node.ask("status", "status ");
                    let describe = node.describe();
                    lines.push(format!("  {}: {status}\n    {describe}", node.name));
                }
                life => lines.push(format!("  {}: {life:?}", node.name)),
            }
        }
        lines.join("\n")
    }

    /// Polls until `check` gives a value; panics after `limit` saying what was expected.
    pub fn wait_for<T>(
        &mut self,
        limit: Duration,
        expected: &str,
        mut check: impl FnMut(&mut Group) -> Option<T>,
    ) -> (T, Duration) {
        let start = Instant::now();
        loop {
            if let Some(value) = check(self) {
                return (value, start.elapsed());
            }
            if start.elapsed() > limit {
                let report = self.report();
                panic!(
                    "[mu {}] expected {expected} within {limit:?}; the nodes now:\n{report}",
                    self.launcher.label
                );
            }
            std::thread::sleep(self.launcher.limits.poll);
        }
    }

    /// Waits until exactly one running node leads, and it is `expected` (Mu: the lowest
    /// live id); returns how long it took.
    pub fn wait_leader(&mut self, expected: u16) -> Duration {
        let limit = self.launcher.limits.leader;
        let what = format!("node {expected} to lead, alone among the running nodes");
        self.wait_for(limit, &what, |group| {
            let leaders: Vec<u16> =
                group.statuses().iter().filter(|(_, status)| status.leads()).map(|(&id, _)| id).collect();
            (leaders == [expected]).then_some(())
        })
        .1
    }

    /// Waits until node `id`'s client has `count` more commands acknowledged than
    /// `since`; returns how long it took.
    pub fn wait_progress(&mut self, id: u16, since: usize, count: usize) -> Duration {
        let limit = self.launcher.limits.progress;
        let what = format!("{count} commands acknowledged through node {id}");
        self.wait_for(limit, &what, |group| (group.node(id).ack_count() >= since + count).then_some(())).1
    }

    /// Waits for a command acknowledged through `id` after `instant`; returns how long
    /// after `instant` the first one was.
    pub fn wait_ack_after(&mut self, id: u16, instant: Instant) -> Duration {
        let limit = self.launcher.limits.progress;
        let what = format!("a command acknowledged through node {id}");
        self.wait_for(limit, &what, |group| {
            let acks = group.node(id).acks();
            acks.iter().map(|(at, _)| *at).find(|&at| at > instant).map(|at| at - instant)
        })
        .0
    }

    /// Every acknowledged command, the dead processes' included.
    pub fn all_acks(&self) -> Vec<Ack> {
        self.nodes.iter().chain(&self.retired).flat_map(NodeProcess::acks).collect()
    }

    /// Stops every running node's client, waits until all running nodes applied the same
    /// commands, and checks their histories: one sequence, no command twice, each client's
    /// commands in order and without gaps, and every acknowledged command in every
    /// history. Returns the history's length.
    pub fn quiesce_and_check(&mut self) -> usize {
        for id in self.running() {
            self.node(id).ask("client stop", "client ");
        }
        let limit = self.launcher.limits.converge;
        let (histories, _) = self.wait_for(limit, "the running nodes to apply the same commands", |group| {
            let statuses = group.statuses();
            let first = statuses.values().next().cloned().unwrap_or_default();
            if !statuses.values().all(|status| status.commands == first.commands && status.queued == 0) {
                return None;
            }
            // A command stopped clients left in flight may still be decided (a leader
            // change adopts it): look again until the histories are read equal.
            let histories: Vec<(u16, Vec<String>)> =
                group.running().into_iter().map(|id| (id, group.node(id).history())).collect();
            check_prefixes(&histories);
            let equal = histories.windows(2).all(|pair| pair[0].1.len() == pair[1].1.len());
            equal.then_some(histories)
        });
        let longest = &histories[0].1;
        check_one_sequence(longest);
        let acks = self.all_acks();
        let applied: HashSet<&String> = longest.iter().collect();
        let lost: Vec<&String> =
            acks.iter().map(|(_, command)| command).filter(|c| !applied.contains(c)).collect();
        assert!(
            lost.is_empty(),
            "{} acknowledged commands are missing, e.g. {:?}",
            lost.len(),
            decode(lost[0])
        );
        self.note(&format!(
            "checked: {} nodes agree on {} commands, all {} acknowledged ones among them",
            histories.len(),
            longest.len(),
            acks.len()
        ));
        longest.len()
    }
}

fn spawn(launcher: &Launcher, id: u16, extra: &[&str]) -> NodeProcess {
    let mut command = (launcher.command)(id);
    command.args(["--id", &id.to_string(), "--spec", "-", "--client"]).args(&launcher.args).args(extra);
    NodeProcess::spawn(id, format!("node {id} ({})", launcher.label), command, launcher.limits.answer)
}

/// Every history is a prefix of the longest.
fn check_prefixes(histories: &[(u16, Vec<String>)]) {
    let longest = histories.iter().map(|(_, history)| history).max_by_key(|history| history.len()).unwrap();
    for (id, history) in histories {
        assert!(
            longest.starts_with(history),
            "node {id}'s history is not a prefix of the longest: they part at {}",
            history.iter().zip(longest).position(|(a, b)| a != b).unwrap_or(history.len())
        );
    }
}

/// Decodes a command (hex of `n<node>.<nonce>.<sequence>`).
pub fn decode(hex: &str) -> String {
    let bytes: Vec<u8> =
        (0..hex.len()).step_by(2).map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex")).collect();
    String::from_utf8(bytes).expect("commands are text")
}

/// No command twice, and each client's commands in order, 1, 2, 3, … (a client proposes
/// the next only once the last is acknowledged, so the log holds them in that order).
fn check_one_sequence(history: &[String]) {
    let mut seen = HashSet::new();
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    for (index, hex) in history.iter().enumerate() {
        let command = decode(hex);
        assert!(seen.insert(hex), "command {command} is applied twice (again at {index})");
        let (client, sequence) = command.rsplit_once('.').expect("n<node>.<nonce>.<sequence>");
        let sequence: u64 = sequence.parse().expect("a sequence number");
        let expected = next.entry(client.to_string()).or_insert(1);
        assert_eq!(
            sequence, *expected,
            "client {client}: command {sequence} at {index}, expected {expected}"
        );
        *expected += 1;
    }
}
