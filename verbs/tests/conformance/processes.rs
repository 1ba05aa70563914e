//! Peers in other processes: a SIGKILLed peer gives errors, not hangs; fetch-and-add from
//! two processes adds up exactly. On the sim provider, which lives in one process, the
//! same bodies use a simulated node and its crash.
//!
//! A child is this test binary run again with `USEC_CONFORMANCE_CHILD=peer`; it speaks a
//! line protocol on stdin/stdout (see [`run_child`]).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use usec_regions::RemoteRegion;
use usec_verbs::qp::RtsAttributes;
use usec_verbs::sim::SimFabric;
use usec_verbs::{
    AsyncEventKind, ConnectOptions, Endpoint, Payload, ProviderKind, QpOptions, RemoteAddr, SendWr, Status,
};

use crate::setup::{wait, Device, Outcome, Pair, Provider, Side, SideOptions, DEFAULT_WAIT};
use crate::{ensure, ensure_eq};

pub const CHILD_ENV: &str = "USEC_CONFORMANCE_CHILD";
const DEVICE_ENV: &str = "USEC_CONFORMANCE_CHILD_DEVICE";

/// Short transport timers, so a dead peer is declared dead quickly on real NICs too
/// (4 µs × 2^10 ≈ 4 ms per try, 3 retries).
fn impatient() -> ConnectOptions {
    ConnectOptions {
        rts: RtsAttributes { timeout: 10, retry_count: 3, ..Default::default() },
        ..Default::default()
    }
}

/// A peer in another process.
struct ChildPeer {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl ChildPeer {
    fn spawn(device: &Device) -> Result<ChildPeer, libtest_mimic::Failed> {
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .env(CHILD_ENV, "peer")
            .env(DEVICE_ENV, &device.name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|err| format!("spawning the peer process: {err}"))?;
        let input = child.stdin.take().expect("piped stdin");
        let output = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(ChildPeer { child, input, output })
    }

    fn read_line(&mut self) -> Result<String, libtest_mimic::Failed> {
        let mut line = String::new();
        self.output.read_line(&mut line).map_err(|err| format!("reading from the peer: {err}"))?;
        if line.is_empty() {
            return Err("the peer process exited early".into());
        }
        if let Some(error) = line.strip_prefix("error ") {
            return Err(format!("the peer process failed: {error}").into());
        }
        Ok(line.trim_end().to_string())
    }

    fn send_line(&mut self, line: &str) -> Result<(), libtest_mimic::Failed> {
        writeln!(self.input, "{line}").map_err(|err| format!("writing to the peer: {err}").into())
    }

    /// Exchanges endpoints with the child and connects both ends.
    fn connect(
        &mut self,
        qp: &mut usec_verbs::QueuePair,
        options: &ConnectOptions,
    ) -> Result<(), libtest_mimic::Failed> {
        let line = self.read_line()?;
        let endpoint: Endpoint = line.strip_prefix("endpoint ").ok_or("expected an endpoint")?.parse()?;
        self.send_line(&format!("connect {}", qp.endpoint()))?;
        qp.connect(&endpoint, options)?;
        ensure_eq!(self.read_line()?, "ready", "the peer's handshake");
        Ok(())
    }
}

impl Drop for ChildPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's side: open the device, connect, serve commands.
pub fn run_child() {
    if let Err(err) = serve_child() {
        println!("error {err}");
        std::process::exit(1);
    }
}

fn serve_child() -> Result<(), String> {
    let device = std::env::var(DEVICE_ENV).map_err(|_| format!("{DEVICE_ENV} unset"))?;
    let ctx = usec_verbs::Context::open(&device).map_err(|e| e.to_string())?;
    let pd = ctx.alloc_pd().map_err(|e| e.to_string())?;
    let mut cq = ctx.create_cq(64).map_err(|e| e.to_string())?;
    let region = std::sync::Arc::new(usec_verbs::Region::new(1 << 16).map_err(|e| e.to_string())?);
    let mr = pd.register(&region, usec_verbs::AccessFlags::all_remote()).map_err(|e| e.to_string())?;
    let mut qp = pd.create_qp(&cq, &cq, &QpOptions::default()).map_err(|e| e.to_string())?;
    println!("endpoint {}", qp.endpoint());
    let mut lines = std::io::stdin().lock().lines();
    let mut next = || lines.next().and_then(|line| line.ok()).unwrap_or_default();
    let remote: Endpoint =
        next().strip_prefix("connect ").ok_or("expected connect")?.parse().map_err(|e| format!("{e}"))?;
    qp.connect(&remote, &impatient()).map_err(|e| e.to_string())?;
    println!("ready");
    loop {
        let line = next();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["fetch_add", addr, len, rkey, count] => {
                let counter = RemoteRegion::new(
                    addr.parse().map_err(|_| "addr")?,
                    len.parse().map_err(|_| "len")?,
                    rkey.parse().map_err(|_| "rkey")?,
                )
                .map_err(|e| e.to_string())?;
                let target = RemoteAddr::within(&counter, 0, 8).map_err(|e| e.to_string())?;
                let count: u64 = count.parse().map_err(|_| "count")?;
                let result = mr.sge(0, 8).map_err(|e| e.to_string())?;
                let mut olds = Vec::with_capacity(count as usize);
                let mut batch = [usec_verbs::Completion::default(); 1];
                for i in 0..count {
                    qp.post_send(&[SendWr::fetch_add(i, target, 1, &result)]).map_err(|e| e.to_string())?;
                    while cq.poll(&mut batch) == 0 {}
                    if batch[0].status != Status::Success {
                        return Err(format!("fetch_add {i}: {}", batch[0].status));
                    }
                    let mut old = [0u8; 8];
                    region.read(0, &mut old).map_err(|e| e.to_string())?;
                    olds.push(u64::from_ne_bytes(old).to_string());
                }
                println!("olds {}", olds.join(" "));
            }
            ["exit"] | [] => return Ok(()),
            other => return Err(format!("unknown command {other:?}")),
        }
    }
}

/// Waits until a WRITE to the dead peer fails; returns the status and how long it took.
fn write_until_failure(
    side: &mut Side,
    target: RemoteAddr,
) -> Result<(Status, Duration), libtest_mimic::Failed> {
    let start = Instant::now();
    for attempt in 0.. {
        side.qp.post_send(&[SendWr::write(attempt, target, Payload::Inline(b"anyone?"))])?;
        let done = wait(side, 1, None, DEFAULT_WAIT)?;
        if done[0].status != Status::Success {
            return Ok((done[0].status, start.elapsed()));
        }
        ensure!(start.elapsed() < Duration::from_secs(10), "writes to a dead peer kept succeeding");
    }
    unreachable!()
}

pub fn killed_peer_fails_requests(provider: &Provider) -> Outcome {
    if provider.kind() == ProviderKind::Sim {
        return crashed_sim_node_fails_requests(provider);
    }
    let device = provider.fresh_device();
    let mut side = Side::new(&device, &SideOptions::default())?;
    let mut peer = ChildPeer::spawn(&device)?;
    peer.connect(&mut side.qp, &impatient())?;
    // A zero-length READ needs no rkey (the responder does not check it) but still needs
    // a live, connected responder: a probe that touches none of the child's memory.
    let empty = side.sge(0, 0);
    side.qp.post_send(&[SendWr::read(1, RemoteAddr::default(), &empty)])?;
    ensure_eq!(wait(&mut side, 1, None, DEFAULT_WAIT)?[0].status, Status::Success, "the peer is alive");
    peer.child.kill().map_err(|err| format!("SIGKILL: {err}"))?;
    let killed_at = Instant::now();
    peer.child.wait().map_err(|err| format!("reaping: {err}"))?;
    let start = Instant::now();
    let status = loop {
        side.qp.post_send(&[SendWr::read(2, RemoteAddr::default(), &empty)])?;
        let done = wait(&mut side, 1, None, DEFAULT_WAIT)?;
        if done[0].status != Status::Success {
            break done[0].status;
        }
        ensure!(start.elapsed() < Duration::from_secs(10), "requests to a dead peer kept succeeding");
    };
    ensure_eq!(status, Status::RetryExceeded, "status of a request to a killed peer");
    eprintln!("[{}] killed peer detected {:?} after SIGKILL", provider.label(), killed_at.elapsed());
    if provider.kind() == ProviderKind::Soft {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match side.ctx.poll_event() {
                Some(event)
                    if event.kind == AsyncEventKind::PeerLost && event.qp_num == Some(side.qp.qp_num()) =>
                {
                    break
                }
                Some(_) => {}
                None => ensure!(Instant::now() < deadline, "no PeerLost event"),
            }
        }
    }
    Ok(())
}

fn crashed_sim_node_fails_requests(provider: &Provider) -> Outcome {
    let options =
        crate::setup::PairOptions { connect_a: impatient(), connect_b: impatient(), ..Default::default() };
    let mut pair = Pair::with(provider, &options)?;
    let fabric = SimFabric::of(&pair.b.ctx).ok_or("not a sim context")?;
    let node = SimFabric::node_of(&pair.b.ctx).ok_or("no sim node")?;
    let target = pair.b.remote(0);
    pair.a.qp.post_send(&[SendWr::write(1, target, Payload::Inline(b"alive?"))])?;
    ensure_eq!(pair.wait_a(1)?[0].status, Status::Success, "the peer is alive");
    fabric.crash(node);
    let (status, _) = write_until_failure(&mut pair.a, target)?;
    ensure_eq!(status, Status::RetryExceeded, "status of a request to a crashed node");
    Ok(())
}

pub fn closed_peer_fails_requests(provider: &Provider) -> Outcome {
    let options =
        crate::setup::PairOptions { connect_a: impatient(), connect_b: impatient(), ..Default::default() };
    let pair = Pair::with(provider, &options)?;
    let Pair { mut a, b, device, .. } = pair;
    let target = b.remote(0);
    drop(b);
    let (status, _) = write_until_failure(&mut a, target)?;
    ensure_eq!(status, Status::RetryExceeded, "status of a request to a closed peer");
    drop(device);
    Ok(())
}

pub fn fetch_add_from_two_processes(provider: &Provider) -> Outcome {
    let per_peer = 2_000u64;
    if provider.kind() == ProviderKind::Sim {
        return fetch_add_from_two_sim_nodes(provider, per_peer);
    }
    let device = provider.fresh_device();
    let mut side = Side::new(&device, &SideOptions::default())?;
    let mut extra = side.pd.create_qp(&side.cq, &side.cq, &QpOptions::default())?;
    let mut peers = [ChildPeer::spawn(&device)?, ChildPeer::spawn(&device)?];
    peers[0].connect(&mut side.qp, &impatient())?;
    peers[1].connect(&mut extra, &impatient())?;
    let counter = side.mr.remote_region().sub(64, 8)?;
    for peer in peers.iter_mut() {
        let (addr, len, rkey) = (counter.addr(), counter.len(), counter.rkey());
        peer.send_line(&format!("fetch_add {addr} {len} {rkey} {per_peer}"))?;
    }
    let mut all = Vec::new();
    for peer in peers.iter_mut() {
        let line = peer.read_line()?;
        let olds: Vec<u64> = line
            .strip_prefix("olds ")
            .ok_or("expected olds")?
            .split_whitespace()
            .map(|v| v.parse().map_err(|_| "bad number"))
            .collect::<Result<_, _>>()?;
        ensure!(olds.windows(2).all(|w| w[0] < w[1]), "one peer's old values increase");
        all.extend(olds);
        peer.send_line("exit")?;
    }
    ensure_eq!(side.read_u64(64), 2 * per_peer, "the counter");
    all.sort_unstable();
    ensure!(all.iter().copied().eq(0..2 * per_peer), "old values are exactly 0..{} once each", 2 * per_peer);
    Ok(())
}

fn fetch_add_from_two_sim_nodes(provider: &Provider, per_peer: u64) -> Outcome {
    let device = provider.fresh_device();
    let mut side = Side::new(&device, &SideOptions::default())?;
    let mut extra = side.pd.create_qp(&side.cq, &side.cq, &QpOptions::default())?;
    let mut peers =
        [Side::new(&device, &SideOptions::default())?, Side::new(&device, &SideOptions::default())?];
    let options = ConnectOptions::default();
    for (peer, qp) in peers.iter_mut().zip([&mut side.qp, &mut extra]) {
        peer.qp.connect(&qp.endpoint(), &options)?;
        qp.connect(&peer.qp.endpoint(), &options)?;
    }
    let counter = side.remote(64);
    let mut all = Vec::new();
    for i in 0..per_peer {
        // Both peers have one in flight at a time, interleaved by the simulator.
        for peer in peers.iter_mut() {
            let result = peer.sge(0, 8);
            peer.qp.post_send(&[SendWr::fetch_add(i, counter, 1, &result)])?;
        }
        for peer in peers.iter_mut() {
            ensure_eq!(wait(peer, 1, None, DEFAULT_WAIT)?[0].status, Status::Success, "fetch_add");
            all.push(peer.read_u64(0));
        }
    }
    ensure_eq!(side.read_u64(64), 2 * per_peer, "the counter");
    all.sort_unstable();
    ensure!(all.iter().copied().eq(0..2 * per_peer), "old values are exactly 0..{} once each", 2 * per_peer);
    Ok(())
}
