//! The console: command lines on stdin, answers on stdout, one line each (`history`
//! answers with several, then `end`).
//!
//! - `status` → `status role=<follower|candidate|leader> leader=<id|-> commit=<n>
//!   applied=<n> commands=<n> eligible=<bool> candidacies=<n> leaderships=<n> proposal=<n|-> queued=<n>
//!   restored=<n> failed=<n> refused=<n> view=<id|-> voters=<n> voting=<bool>`: the replica's view (`applied` counts log entries,
//!   `commands` the commands in its history), what it has done (every new
//!   candidacy ends whatever role it had; `restored`: snapshots it was brought back by), and what its driver saw (`refused`: its WRITEs
//!   into a peer's log the peer refused); with `--views`, the latest membership view it
//!   learned, its consensus members, and whether this process is one (`-`, 0, false
//!   without views);
//! - `history` → each applied command in hex, in order, one a line, then `end`;
//! - `describe` → `describe <one line of the replica's internals>`;
//! - `trace on`, `trace off` → `trace on|off`: the replica records its decisions, or not;
//!   `trace` → the decisions recorded since the last `trace`, one a line, then `end`;
//! - `client stop` → `client stopped acked=<n>` (or `client none`);
//! - `quit` → `bye`, and the process exits.

use std::io::Write;
use std::sync::mpsc;

use anyhow::{anyhow, Result};
use usec_replication::cft::RoleKind;
use usec_replication::driver::{MuDriver, NodeThread};
use usec_replication::History;

use crate::client::{hex, Client};

/// What the console holds: the node's thread and the client's, if any.
pub struct Console {
    pub node: NodeThread<History>,
    pub client: Option<Client>,
}

/// Whether the console goes on after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    Quit,
}

impl Console {
    /// Serves command lines until `quit` or the end of stdin.
    pub fn serve(mut self, lines: &mpsc::Receiver<String>) -> Result<()> {
        while let Ok(line) = lines.recv() {
            if self.run(line.trim())? == Next::Quit {
                break;
            }
        }
        if let Some(client) = self.client.take() {
            client.stop()?;
        }
        drop(self.node.stop());
        Ok(())
    }

    fn run(&mut self, line: &str) -> Result<Next> {
        let mut out = std::io::stdout();
        match line {
            "" => {}
            "status" => {
                let status = self.node.with(status)?;
                writeln!(out, "{status}")?;
            }
            "history" => {
                let applied = self.node.with(|driver| driver.replica().state_machine().applied.clone())?;
                // One lock for the whole answer: the client's `ack` lines wait until it is out.
                let mut out = out.lock();
                for command in &applied {
                    writeln!(out, "{}", hex(command))?;
                }
                writeln!(out, "end")?;
            }
            "trace on" | "trace off" => {
                let on = line == "trace on";
                self.node.with(move |driver| driver.replica_mut().set_trace(on))?;
                writeln!(out, "trace {}", if on { "on" } else { "off" })?;
            }
            "trace" => {
                let trace = self.node.with(|driver| driver.replica_mut().take_trace())?;
                let mut out = out.lock();
                for line in &trace {
                    writeln!(out, "{line}")?;
                }
                writeln!(out, "end")?;
            }
            "describe" => {
                let description = self.node.with(|driver| driver.replica().describe())?;
                writeln!(out, "describe {description}")?;
            }
            "client stop" => match self.client.take() {
                Some(client) => writeln!(out, "client stopped acked={}", client.stop()?)?,
                None => writeln!(out, "client none")?,
            },
            "quit" => {
                writeln!(out, "bye")?;
                return Ok(Next::Quit);
            }
            other => return Err(anyhow!("unknown console command {other:?}")),
        }
        Ok(Next::Continue)
    }
}

/// The `status` line.
fn status(driver: &mut MuDriver<History>) -> String {
    let replica = driver.replica();
    let role = match replica.role() {
        RoleKind::Follower => "follower",
        RoleKind::Candidate => "candidate",
        RoleKind::Leader => "leader",
    };
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
    let stats = replica.stats();
    let counts = driver.counts();
    // The membership itself, not the status the driver publishes after its maintenance
    // (which a console command can come before).
    let (me, incarnation) = (driver.cluster().me(), driver.cluster().incarnation());
    let view = driver.views().map(|views| {
        let view = views.view();
        let voters =
            view.members().iter().filter(|member| view.is_consensus(member.node, member.incarnation));
        (view.id(), voters.count(), view.is_consensus(me, incarnation))
    });
    format!(
        "status role={role} leader={} commit={} applied={} commands={} eligible={} candidacies={} leaderships={} \
         proposal={} queued={} restored={} failed={} refused={} view={} voters={} voting={}",
        or_dash(replica.leader().map(|node| node.to_string())),
        replica.commit_index(),
        replica.applied_index(),
        replica.state_machine().applied.len(),
        replica.is_eligible(),
        stats.candidacies,
        stats.leaderships,
        or_dash(replica.proposal().map(|proposal| proposal.to_string())),
        replica.queued(),
        stats.snapshots_restored,
        counts.failed_completions,
        counts.refused_log_writes,
        or_dash(view.map(|(id, _, _)| id.to_string())),
        view.map_or(0, |(_, voters, _)| voters),
        view.is_some_and(|(_, _, voting)| voting),
    )
}
