//! The grantor peer: a `LeaseGrantor` behind a `LeaseChannel`, answering in a busy loop on
//! its own core until the initiator closes the channel.

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use usec_benches::peer::{channel_to_initiator, Peer};
use usec_benches::pinning::{pin_current_thread, Pinning};
use usec_lease_clock::clock::{CalibratedClock, CalibrationOptions, Clock};
use usec_lease_clock::lease::{GrantorConfig, GrantorStart, LeaseChannel, LeaseGrantor, LeaseMessage};
use usec_qp_pool::NodeId;
use usec_verbs::{ConnectOptions, Context, Endpoint};

/// The peer role name.
pub const PEER_ROLE: &str = "lease-grantor";

/// The grantor's node id in the work-request ids of the lease channels.
pub fn grantor_node() -> NodeId {
    NodeId::new(1).expect("1 is a node id")
}

/// The holder's (the initiator's) node id.
pub fn holder_node() -> NodeId {
    NodeId::new(0).expect("0 is a node id")
}

/// What the grantor needs.
#[derive(Debug, Serialize, Deserialize)]
struct Setup {
    device: String,
    core: Option<usize>,
    lease_ns: u64,
    rho_ppm: u32,
    slack_ns: u64,
    endpoint: String,
}

/// The grantor's answer once connected.
#[derive(Debug, Serialize, Deserialize)]
struct Ready {
    endpoint: String,
    pinning: Pinning,
    clock: String,
}

/// The initiator's word that the run is over.
#[derive(Debug, Serialize, Deserialize)]
struct Finish;

/// What the grantor saw of its own loop.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct GrantorStats {
    /// Requests answered.
    pub requests: u64,
    /// Replies dropped because the send queue was full.
    pub replies_dropped: u64,
    /// Turns of its loop that started more than 1 ms after the previous one (the process
    /// was off its core).
    pub stalls_over_1ms: u64,
    /// The longest such gap.
    pub longest_stall_ns: u64,
}

/// Ends the run: asks the grantor for its statistics and waits for it to exit.
pub fn stop(mut peer: Peer) -> Result<GrantorStats> {
    peer.send(&Finish)?;
    let stats = peer.receive()?;
    peer.finish()?;
    Ok(stats)
}

/// The initiator's side: start the grantor and connect `channel` to it.
pub fn start(
    channel: &mut LeaseChannel,
    device: &str,
    core: Option<usize>,
    config: &GrantorConfig,
) -> Result<(Peer, Pinning, String)> {
    let mut peer = Peer::spawn(PEER_ROLE)?;
    peer.send(&Setup {
        device: device.to_string(),
        core,
        lease_ns: config.lease_ns,
        rho_ppm: config.drift.ppm(),
        slack_ns: config.slack_ns,
        endpoint: channel.endpoint().to_string(),
    })?;
    let ready: Ready = peer.receive()?;
    let endpoint: Endpoint = ready.endpoint.parse().context("the grantor's endpoint")?;
    channel.connect(&endpoint, &ConnectOptions::default())?;
    Ok((peer, ready.pinning, ready.clock))
}

/// The grantor's side.
pub fn serve() -> Result<()> {
    let mut initiator = channel_to_initiator();
    let Some(setup): Option<Setup> = initiator.receive()? else { return Ok(()) };
    let pinning = pin_current_thread(setup.core);
    let clock = CalibratedClock::calibrate(&CalibrationOptions::default())?;
    let context = Context::open(&setup.device).with_context(|| format!("opening {}", setup.device))?;
    let pd = context.alloc_pd()?;
    let mut channel = LeaseChannel::new(&pd, holder_node(), 64)?;
    channel.connect(&setup.endpoint.parse()?, &ConnectOptions::default())?;
    let drift = usec_lease_clock::lease::DriftBound::from_ppm(setup.rho_ppm)?;
    let config = GrantorConfig { lease_ns: setup.lease_ns, drift, slack_ns: setup.slack_ns };
    let mut grantor = LeaseGrantor::new(config, GrantorStart::Fresh, clock.now_ns())?;
    initiator.send(&Ready {
        endpoint: channel.endpoint().to_string(),
        pinning,
        clock: clock.report().to_string(),
    })?;

    // The initiator's next line (`Finish`), or its closing our stdin, ends the run. A
    // thread waits for it so that the loop below never blocks.
    let finished = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&finished);
    std::thread::spawn(move || {
        let _ = std::io::stdin().lock().read_line(&mut String::new());
        flag.store(true, Ordering::Relaxed);
    });
    let (mut stats, mut spins, mut last_turn_ns) = (GrantorStats::default(), 0u32, clock.now_ns());
    loop {
        let now = clock.now_ns();
        let gap = now.saturating_sub(last_turn_ns);
        if gap > 1_000_000 {
            stats.stalls_over_1ms += 1;
            stats.longest_stall_ns = stats.longest_stall_ns.max(gap);
        }
        last_turn_ns = now;
        while let Some(message) = channel.poll()? {
            if let LeaseMessage::Request(request) = message {
                stats.requests += 1;
                // Read after the request arrived.
                let reply = grantor.on_request(clock.now_ns(), &request);
                stats.replies_dropped += u64::from(!channel.send(&LeaseMessage::Reply(reply))?);
            }
        }
        spins = spins.wrapping_add(1);
        if spins % 1024 == 0 && finished.load(Ordering::Relaxed) {
            return initiator.send(&stats);
        }
    }
}
