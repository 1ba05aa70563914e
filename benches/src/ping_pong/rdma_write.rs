//! RDMA WRITE ping-pong through a verbs provider, the way perftest's `ib_write_lat` runs:
//! each side posts a signaled WRITE of the message into the other's registered memory
//! (inline by default), polls its CQ for that WRITE's completion before anything else,
//! and the receiver spins on the message's last word in its own memory. The send queue
//! and CQ are one entry deep, as perftest's latency tests make them.
//!
//! Set-up over the peer channel: the initiator sends its QP endpoint and its region
//! descriptor; the peer connects to it and answers with its own; the initiator connects
//! and starts. The peer only spins on its memory until the first WRITE lands, so it is
//! ready before the initiator posts.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use usec_regions::{Region, RemoteRegion};
use usec_verbs::{
    AccessFlags, Completion, CompletionOpcode, CompletionQueue, ConnectOptions, Context, Endpoint,
    MemoryRegion, Payload, QpCaps, QpOptions, QueuePair, RemoteAddr, SendWr, Sge,
};

use crate::latency::RoundTrips;
use crate::message::Message;
use crate::peer::{channel_to_initiator, Peer};
use crate::ping_pong::{run_block_with_peer, serve_blocks, slot_bytes, InitiatorWatch, PingPong, Scenario};
use crate::pinning::{pin_current_thread, Pinning};
use crate::report::{provider_label, Measurement};
use crate::spin::spin_until;

/// The peer role name of this scenario.
pub const PEER_ROLE: &str = "rdma-write";

/// Send queue and CQ depth: one WRITE in flight, as in perftest's latency tests.
const QUEUE_DEPTH: u32 = 1;

/// How the WRITEs are posted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOptions {
    /// The device both sides open (for the soft provider, the same fabric).
    pub device: String,
    /// Post the message inline (copied at post time) rather than from registered memory.
    pub inline: bool,
}

/// What the peer needs from the initiator.
#[derive(Debug, Serialize, Deserialize)]
struct Setup {
    options: WriteOptions,
    size: usize,
    core: Option<usize>,
    endpoint: String,
    region: Vec<u8>,
}

/// The peer's answer, once its QP is connected to the initiator's.
#[derive(Debug, Serialize, Deserialize)]
struct Ready {
    pinning: Pinning,
    endpoint: String,
    region: Vec<u8>,
}

/// Where the incoming message lands and where an outgoing one is staged (SGE posts).
#[derive(Clone, Copy, Debug)]
struct Layout {
    receive: usize,
    send: usize,
    len: usize,
}

/// Moves the staging buffer off page alignment: the peer's receive buffer is page aligned,
/// and a copy whose source and destination share their low 12 address bits suffers 4 KiB
/// aliasing (loads wrongly wait on earlier stores), a cost of the harness, not of the
/// provider.
const SEND_SKEW_BYTES: usize = 1024;

impl Layout {
    fn for_size(size: usize) -> Layout {
        let slot = slot_bytes(size);
        let send = slot + SEND_SKEW_BYTES;
        Layout { receive: 0, send, len: send + size }
    }
}

/// One side's verbs objects. Fields drop in order: the QP before its CQ and memory.
struct Side {
    qp: QueuePair,
    cq: CompletionQueue,
    mr: MemoryRegion,
    context: Context,
    region: Arc<Region>,
    layout: Layout,
    send_sge: Sge,
    inline: bool,
    completions: [Completion; 1],
}

impl Side {
    fn open(options: &WriteOptions, size: usize) -> Result<Side> {
        let context = open_device(options, size)?;
        let size_u32 = u32::try_from(size).context("the message size does not fit a work request")?;
        let pd = context.alloc_pd()?;
        let layout = Layout::for_size(size);
        let region = Arc::new(Region::new(layout.len).context("creating the registered region")?);
        let mr = pd.register(&region, AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_WRITE)?;
        let cq = context.create_cq(QUEUE_DEPTH)?;
        let caps = QpCaps {
            max_send_wr: QUEUE_DEPTH,
            max_recv_wr: 1,
            max_send_sge: 1,
            max_recv_sge: 1,
            max_inline_data: if options.inline { size_u32 } else { 0 },
        };
        let qp = pd.create_qp(&cq, &cq, &QpOptions { caps, ..QpOptions::default() })?;
        let send_sge = mr.sge(layout.send, size_u32)?;
        Ok(Side {
            qp,
            cq,
            mr,
            context,
            region,
            layout,
            send_sge,
            inline: options.inline,
            completions: [Completion::default(); 1],
        })
    }

    fn endpoint(&self) -> String {
        self.qp.endpoint().to_string()
    }

    fn region_descriptor(&self) -> Vec<u8> {
        self.mr.remote_region().to_bytes().to_vec()
    }

    fn connect(&mut self, endpoint: &str) -> Result<()> {
        let remote: Endpoint = endpoint.parse().context("the peer's endpoint")?;
        self.qp.connect(&remote, &ConnectOptions::default()).context("connecting the QP")
    }

    /// The peer's receive slot, from its region descriptor.
    fn target(&self, descriptor: &[u8], size: usize) -> Result<RemoteAddr> {
        let remote = RemoteRegion::from_bytes(descriptor).context("the peer's region descriptor")?;
        Ok(RemoteAddr::within(&remote, self.layout.receive as u64, size as u64)?)
    }

    /// Posts a signaled WRITE of `message` to `target` and polls its completion.
    #[inline]
    fn write(
        &mut self,
        target: RemoteAddr,
        message: &[u8],
        wr_id: u64,
        still_alive: impl FnMut() -> Result<()>,
    ) -> Result<()> {
        let wr = if self.inline {
            SendWr::write(wr_id, target, Payload::Inline(message))
        } else {
            self.region.write(self.layout.send, message)?;
            SendWr::write(wr_id, target, &self.send_sge)
        };
        self.qp.post_send(&[wr]).with_context(|| format!("posting WRITE {wr_id}"))?;
        let (cq, completions) = (&mut self.cq, &mut self.completions);
        spin_until(
            || Ok(cq.poll(completions) == 1),
            still_alive,
            || format!("the completion of WRITE {wr_id}"),
        )?;
        let completion = completions[0];
        if !completion.is_success()
            || completion.wr_id != wr_id
            || completion.opcode != CompletionOpcode::Write
        {
            bail!("WRITE {wr_id} completed as {completion:?}");
        }
        Ok(())
    }

    /// Reads what landed in the receive slot.
    fn received(&self, size: usize) -> Result<Vec<u8>> {
        let mut bytes = vec![0; size];
        self.region.read(self.layout.receive, &mut bytes)?;
        Ok(bytes)
    }
}

/// Opens the device and checks that it suits the benchmark.
fn open_device(options: &WriteOptions, size: usize) -> Result<Context> {
    let context = Context::open(&options.device).with_context(|| format!("opening {}", options.device))?;
    if !context.provider().spans_processes() {
        bail!(
            "{}: the {} lives inside one process; this benchmark needs two",
            options.device,
            context.provider().label()
        );
    }
    let max_inline_data = context.attributes().max_inline_data;
    if options.inline && size > max_inline_data as usize {
        bail!(
            "{size}-byte messages do not fit {}'s max_inline_data of {max_inline_data} bytes; use --no-inline",
            options.device
        );
    }
    Ok(context)
}

/// Fails early, before any scenario runs, if `options` cannot work for `size`-byte
/// messages (the device does not open, cannot span two processes, or inline is too big).
pub fn preflight(options: &WriteOptions, size: usize) -> Result<()> {
    open_device(options, size).map(drop)
}

/// The initiator's side of a WRITE ping-pong.
pub struct Session {
    side: Side,
    target: RemoteAddr,
    message: Message,
    peer: Peer,
    peer_pinning: Pinning,
    initiator: Pinning,
    round_trips: RoundTrips,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("device", &self.side.context.name())
            .field("qp", &self.side.qp)
            .field("target", &self.target)
            .field("last_iteration", &self.round_trips.last_iteration())
            .finish()
    }
}

impl Session {
    /// Opens the device, starts the peer, and connects the two QPs.
    pub fn start(config: &PingPong, options: &WriteOptions) -> Result<Session> {
        let message = Message::new(config.size)?;
        let mut side = Side::open(options, config.size)?;
        let mut peer = Peer::spawn(PEER_ROLE)?;
        peer.send(&Setup {
            options: options.clone(),
            size: config.size,
            core: config.peer_core,
            endpoint: side.endpoint(),
            region: side.region_descriptor(),
        })?;
        let ready: Ready = peer.receive()?;
        side.connect(&ready.endpoint)?;
        let target = side.target(&ready.region, config.size)?;
        Ok(Session {
            side,
            target,
            message,
            peer,
            peer_pinning: ready.pinning,
            initiator: config.initiator.clone(),
            round_trips: RoundTrips::new(),
        })
    }

    /// Checks the last reply, stops the peer, and returns the measurement.
    pub fn finish(mut self) -> Result<Measurement> {
        let size = self.message.len();
        self.message.verify(&self.side.received(size)?, self.round_trips.last_iteration())?;
        self.peer.finish()?;
        let payload = if self.side.inline { "inline" } else { "from registered memory (one SGE)" };
        Ok(Measurement {
            label: provider_label(&self.side.context),
            method: format!(
                "RDMA WRITE of {size} bytes, {payload}, every WRITE signaled and its completion polled \
                 before the next post; receiver spins on the last word of its memory (as ib_write_lat)"
            ),
            memory: self.side.region.backing().to_string(),
            initiator: self.initiator,
            peer: self.peer_pinning,
            latency: self.round_trips.recorder().summary(),
        })
    }
}

impl Scenario for Session {
    fn run_block(&mut self, warmup: u64, iterations: u64) -> Result<()> {
        let Session { side, target, message, peer, round_trips, .. } = self;
        let region = Arc::clone(&side.region);
        let reply_word = region.atomic_u64(side.layout.receive + message.word_offset())?;
        run_block_with_peer(peer, round_trips, warmup, iterations, |iteration, peer| {
            side.write(*target, message.stamp(iteration), iteration, || peer.check_alive())?;
            spin_until(
                || Ok(reply_word.load(Ordering::Acquire) == iteration),
                || peer.check_alive(),
                || format!("the reply to WRITE {iteration}"),
            )
        })
    }
}

/// The peer side: connects back, answers every WRITE with one of its own, checks the last.
pub fn serve_peer() -> Result<()> {
    let watch = InitiatorWatch::new();
    let mut channel = channel_to_initiator();
    let setup: Setup = channel.receive()?.context("the initiator closed the channel before the setup")?;
    let pinning = pin_current_thread(setup.core);
    let mut message = Message::new(setup.size)?;
    let mut side = Side::open(&setup.options, setup.size)?;
    side.connect(&setup.endpoint)?;
    let target = side.target(&setup.region, setup.size)?;
    channel.send(&Ready { pinning, endpoint: side.endpoint(), region: side.region_descriptor() })?;
    let region = Arc::clone(&side.region);
    let ping_word = region.atomic_u64(side.layout.receive + message.word_offset())?;
    let last = serve_blocks(&mut channel, |iteration| {
        spin_until(
            || Ok(ping_word.load(Ordering::Acquire) == iteration),
            || watch.check(),
            || format!("WRITE {iteration} from the initiator"),
        )?;
        side.write(target, message.stamp(iteration), iteration, || watch.check())
    })?;
    message.verify(&side.received(setup.size)?, last)
}
