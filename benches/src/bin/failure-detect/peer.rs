//! The peer that gets killed: a process that bumps its heartbeat counter as fast as it can
//! until SIGKILL, and the initiator's handle on it, which owns the `Child` so that another
//! thread can kill it and wait for the kernel to report its exit.

use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use usec_benches::peer::{channel_to_initiator, Channel, ROLE_VARIABLE};
use usec_benches::pinning::{pin_current_thread, Pinning};
use usec_lease_clock::detector::HeartbeatCounter;
use usec_lease_clock::heartbeat::{HeartbeatEndpoint, VerbsHeartbeats};
use usec_qp_pool::NodeId;
use usec_verbs::{ConnectOptions, Context};

/// The initiator (the watcher) is node 0 of the two; the peer it watches, node 1.
fn initiator_node() -> NodeId {
    NodeId::new(0).expect("a node id")
}

/// The watched peer's node id.
pub fn watched() -> NodeId {
    NodeId::new(1).expect("a node id")
}

/// The peer role name.
pub const PEER_ROLE: &str = "heartbeat";

/// What the peer needs: the device, its core, and the initiator's heartbeat endpoint.
#[derive(Debug, Serialize, Deserialize)]
struct Setup {
    device: String,
    core: Option<usize>,
    endpoint: String,
}

/// The peer's answer once connected.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ready {
    pub endpoint: String,
    pub pinning: Pinning,
}

/// A heartbeat peer seen from the initiator.
pub struct KillablePeer {
    /// `None` once [`Self::take_child`] handed it over.
    child: Option<Child>,
    channel: Channel<ChildStdout, ChildStdin>,
}

impl KillablePeer {
    /// Starts this executable as a heartbeat peer.
    pub fn spawn() -> Result<KillablePeer> {
        let executable = std::env::current_exe().context("finding this benchmark's executable")?;
        let mut child = Command::new(executable)
            .env(ROLE_VARIABLE, PEER_ROLE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the heartbeat peer")?;
        let (stdin, stdout) = (child.stdin.take().expect("piped"), child.stdout.take().expect("piped"));
        Ok(KillablePeer { child: Some(child), channel: Channel::new(stdout, stdin) })
    }

    /// Sends the set-up and waits for the peer's endpoint.
    pub fn connect(&mut self, device: &str, core: Option<usize>, ours: &HeartbeatEndpoint) -> Result<Ready> {
        let setup = Setup { device: device.to_string(), core, endpoint: ours.to_string() };
        self.channel.send(&setup)?;
        match self.channel.receive()? {
            Some(ready) => Ok(ready),
            None => bail!("the heartbeat peer exited during set-up; its stderr is above"),
        }
    }

    /// Hands the process over (to the thread that kills it and waits for it).
    pub fn take_child(&mut self) -> Child {
        self.child.take().expect("the child is taken once")
    }
}

impl Drop for KillablePeer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The peer's side: connect, then bump the counter in a tight loop until killed (or until
/// the initiator is gone).
pub fn serve() -> Result<()> {
    let mut channel = channel_to_initiator();
    let Some(setup): Option<Setup> = channel.receive()? else { return Ok(()) };
    let pinning = pin_current_thread(setup.core);
    let context = Context::open(&setup.device).with_context(|| format!("opening {}", setup.device))?;
    let pd = context.alloc_pd()?;
    let mut heartbeats = VerbsHeartbeats::new(&pd, &[initiator_node()])?;
    let initiator: HeartbeatEndpoint = setup.endpoint.parse()?;
    heartbeats.connect(initiator_node(), &initiator, &ConnectOptions::default())?;
    channel.send(&Ready { endpoint: heartbeats.local(initiator_node())?.to_string(), pinning })?;
    let parent = std::os::unix::process::parent_id();
    let mut counter = HeartbeatCounter::new(0);
    loop {
        for _ in 0..1 << 16 {
            if let Some(value) = counter.tick(0) {
                heartbeats.publish(value);
            }
        }
        if std::os::unix::process::parent_id() != parent {
            return Ok(());
        }
    }
}
