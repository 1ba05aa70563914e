//! Starting a Mu group of processes on one soft fabric: replica processes (this binary run
//! again, see [`crate::mu::replica`]) and, optionally, this process as one more replica —
//! the one that measures in its own loop.

use std::net::TcpListener;

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use usec_lease_clock::clock::Clock;
use usec_qp_pool::{ClusterSpec, NodeId};
use usec_replication::cft::RoleKind;
use usec_replication::driver::MuDriver;

use crate::mu::clock::SharedClock;
use crate::mu::machine::Machine;
use crate::mu::replica::{self, FromReplica, Pacing, ReplicaReport, ReplicaSetup, ToReplica, PEER_ROLE};
use crate::mu::settings::GroupSettings;
use crate::peer::Peer;
use crate::pinning::Pinning;

/// One replica process to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessPlan {
    /// Its node id.
    pub me: u16,
    /// Its core, if pinned.
    pub core: Option<usize>,
    /// How it spends idle turns.
    pub pacing: Pacing,
    /// Whether it keeps a command of its own in flight while leading or taking over.
    pub load: bool,
}

/// A group to start.
#[derive(Clone, Debug)]
pub struct GroupPlan {
    /// `soft:<fabric>`.
    pub device: String,
    /// Sizes and timings.
    pub settings: GroupSettings,
    /// Bytes of the commands replicas propose themselves.
    pub command_bytes: usize,
    /// The replica processes.
    pub processes: Vec<ProcessPlan>,
    /// This process's node id, if it is a replica too.
    pub local: Option<u16>,
}

/// A replica process, seen from the benchmark.
#[derive(Debug)]
pub struct ReplicaProcess {
    /// How it was started.
    pub plan: ProcessPlan,
    /// Where it runs.
    pub pinning: Pinning,
    peer: Peer,
}

impl ReplicaProcess {
    /// Its node id.
    pub fn id(&self) -> NodeId {
        NodeId::new(self.plan.me).expect("checked at launch")
    }

    /// Sends it `signal`.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        kill(self.pid()?, signal).with_context(|| format!("sending {signal} to replica {}", self.plan.me))
    }

    /// Its process id (to signal it from another thread).
    pub fn pid(&self) -> Result<Pid> {
        Ok(Pid::from_raw(i32::try_from(self.peer.pid()).context("a pid")?))
    }

    /// What it noted so far (it goes on running).
    pub fn report(&mut self) -> Result<ReplicaReport> {
        self.peer.send(&ToReplica::Report)?;
        expect_report(self.peer.receive()?)
    }

    /// Stops it and returns its last report.
    pub fn stop(mut self) -> Result<ReplicaReport> {
        self.peer.send(&ToReplica::Stop)?;
        let report = expect_report(self.peer.receive()?)?;
        self.peer.finish()?;
        Ok(report)
    }
}

fn expect_report(message: FromReplica) -> Result<ReplicaReport> {
    match message {
        FromReplica::Report(report) => Ok(*report),
        other => bail!("expected a report, got {other:?}"),
    }
}

/// A started group.
#[derive(Debug)]
pub struct Group {
    /// The replica processes, in the plan's order.
    pub processes: Vec<ReplicaProcess>,
    /// This process's replica, if it is one.
    pub local: Option<MuDriver<Machine>>,
}

impl Group {
    /// Starts the processes, then bootstraps every replica (this process's included) on
    /// one fresh run of the description.
    pub fn launch(plan: &GroupPlan) -> Result<Group> {
        let mut peers = Vec::new();
        let mut nodes = Vec::new();
        for process in &plan.processes {
            let mut peer = Peer::spawn(PEER_ROLE)?;
            let FromReplica::Listening { addr } = peer.receive()? else {
                bail!("replica {} did not say where it listens", process.me)
            };
            nodes.push((NodeId::new(process.me)?, addr));
            peers.push(peer);
        }
        let local = plan.local.map(|me| TcpListener::bind("127.0.0.1:0").map(|listener| (me, listener)));
        let local = local.transpose().context("binding this process's control address")?;
        if let Some((me, listener)) = &local {
            nodes.push((NodeId::new(*me)?, listener.local_addr()?));
        }
        let spec = ClusterSpec::new("usec-mu-bench", &ClusterSpec::fresh_run(), nodes)?.to_string();
        let setup = |me: u16, process: Option<&ProcessPlan>| ReplicaSetup {
            device: plan.device.clone(),
            me,
            spec: spec.clone(),
            settings: plan.settings,
            core: process.and_then(|process| process.core),
            pacing: process.map_or(Pacing::BusyPoll, |process| process.pacing),
            load: process.is_some_and(|process| process.load),
            command_bytes: plan.command_bytes,
        };
        for (peer, process) in peers.iter_mut().zip(&plan.processes) {
            peer.send(&ToReplica::Setup(Box::new(setup(process.me, Some(process)))))?;
        }
        let local = match local {
            Some((me, listener)) => Some(replica::bootstrap(&setup(me, None), listener, SharedClock)?),
            None => None,
        };
        let mut processes = Vec::new();
        for (mut peer, process) in peers.into_iter().zip(&plan.processes) {
            let FromReplica::Ready { pinning } = peer.receive()? else {
                bail!("replica {} did not get ready", process.me)
            };
            processes.push(ReplicaProcess { plan: *process, pinning, peer });
        }
        Ok(Group { processes, local })
    }

    /// The process of node `me`.
    pub fn process_mut(&mut self, me: u16) -> Option<&mut ReplicaProcess> {
        self.processes.iter_mut().find(|process| process.plan.me == me)
    }
}

/// Turns `driver` (this process's replica) until it leads; gives up after 10 s.
pub fn await_leadership(driver: &mut MuDriver<Machine>, clock: &SharedClock) -> Result<()> {
    let start = clock.now_ns();
    while driver.replica().role() != RoleKind::Leader {
        let now = clock.now_ns();
        driver.turn(now);
        driver.drain_events().for_each(drop);
        if now - start > 10_000_000_000 {
            bail!("replica 0 did not lead within 10 s: {}", driver.replica().describe());
        }
    }
    Ok(())
}
