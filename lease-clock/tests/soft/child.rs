//! Peers in other processes: this test binary run again with [`CHILD_ROLE`] set. A child
//! opens the soft device named by [`CHILD_DEVICE`], prints `endpoint <text>`, reads
//! `connect <text>`, connects, prints `ready`, and serves its role until it is killed or
//! its stdin closes. The `pool` role is a qp-pool cluster node instead (see `pool.rs`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use usec_lease_clock::clock::{Clock, MonotonicClock};
use usec_lease_clock::detector::HeartbeatCounter;
use usec_lease_clock::heartbeat::{HeartbeatEndpoint, VerbsHeartbeats};
use usec_lease_clock::lease::{GrantorConfig, GrantorStart, LeaseChannel, LeaseGrantor, LeaseMessage};
use usec_qp_pool::NodeId;
use usec_verbs::{ConnectOptions, Context, Endpoint};

pub const CHILD_ROLE: &str = "USEC_LEASE_CLOCK_CHILD";
pub const CHILD_DEVICE: &str = "USEC_LEASE_CLOCK_CHILD_DEVICE";

type Failed = libtest_mimic::Failed;

/// A child process seen from the test.
pub struct ChildPeer {
    pub child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl ChildPeer {
    pub fn spawn(role: &str, device: &str) -> Result<ChildPeer, Failed> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(CHILD_ROLE, role)
            .env(CHILD_DEVICE, device)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let input = child.stdin.take().expect("piped");
        let output = BufReader::new(child.stdout.take().expect("piped"));
        Ok(ChildPeer { child, input, output })
    }

    pub fn read_line(&mut self) -> Result<String, Failed> {
        let mut line = String::new();
        self.output.read_line(&mut line)?;
        if line.is_empty() {
            return Err("the child exited early".into());
        }
        Ok(line.trim_end().to_string())
    }

    /// Swaps endpoints: returns the child's text, sends ours once `ours` has it.
    pub fn handshake(&mut self, ours: impl FnOnce(&str) -> Result<String, Failed>) -> Result<(), Failed> {
        let line = self.read_line()?;
        let theirs =
            line.strip_prefix("endpoint ").ok_or_else(|| format!("expected an endpoint, got {line:?}"))?;
        let mine = ours(theirs)?;
        writeln!(self.input, "connect {mine}")?;
        let ready = self.read_line()?;
        if ready != "ready" {
            return Err(format!("expected ready, got {ready:?}").into());
        }
        Ok(())
    }

    /// Sends one line.
    pub fn send(&mut self, line: &str) -> Result<(), Failed> {
        writeln!(self.input, "{line}")?;
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal with kill(1): the test crate has no libc bindings of its own.
    pub fn signal(&self, signal: &str) -> Result<(), Failed> {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status()?;
        if !status.success() {
            return Err(format!("kill -{signal} {} failed", self.pid()).into());
        }
        Ok(())
    }
}

impl Drop for ChildPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's side.
pub fn run_child(role: &str) {
    if let Err(error) = serve(role) {
        eprintln!("child {role}: {error:?}");
        std::process::exit(1);
    }
}

fn serve(role: &str) -> Result<(), Failed> {
    let device = std::env::var(CHILD_DEVICE)?;
    if role == "pool" {
        return crate::pool::serve_pool_child(&device);
    }
    let context = Context::open(&device)?;
    let pd = context.alloc_pd()?;
    let connect_line = || -> Result<String, Failed> {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim_end().strip_prefix("connect ").ok_or("expected connect")?.to_string())
    };
    // The parent closing stdin (or dying) ends the child.
    let orphaned = Arc::new(AtomicBool::new(false));
    match role {
        "heartbeat" => {
            let parent = NodeId::new(0)?; // the test process
            let mut heartbeats = VerbsHeartbeats::new(&pd, &[parent])?;
            println!("endpoint {}", heartbeats.local(parent)?);
            let remote: HeartbeatEndpoint = connect_line()?.parse()?;
            heartbeats.connect(parent, &remote, &ConnectOptions::default())?;
            println!("ready");
            watch_stdin(&orphaned);
            let (clock, mut counter) = (MonotonicClock::new(), HeartbeatCounter::new(0));
            while !orphaned.load(Ordering::Relaxed) {
                if let Some(value) = counter.tick(clock.now_ns()) {
                    heartbeats.publish(value);
                }
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        "grantor" => {
            let mut channel = LeaseChannel::new(&pd, NodeId::new(0)?, 16)?; // the test is node 0
            println!("endpoint {}", channel.endpoint());
            let remote: Endpoint = connect_line()?.parse()?;
            channel.connect(&remote, &ConnectOptions::default())?;
            println!("ready");
            watch_stdin(&orphaned);
            let clock = MonotonicClock::new();
            let mut grantor =
                LeaseGrantor::new(GrantorConfig::default(), GrantorStart::Fresh, clock.now_ns())?;
            while !orphaned.load(Ordering::Relaxed) {
                while let Some(LeaseMessage::Request(request)) = channel.poll()? {
                    let reply = grantor.on_request(clock.now_ns(), &request);
                    channel.send(&LeaseMessage::Reply(reply))?;
                }
                std::thread::yield_now();
            }
        }
        other => return Err(format!("unknown role {other:?}").into()),
    }
    Ok(())
}

fn watch_stdin(orphaned: &Arc<AtomicBool>) {
    let flag = Arc::clone(orphaned);
    std::thread::spawn(move || {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|read| read > 0) {}
        flag.store(true, Ordering::Relaxed);
    });
}
