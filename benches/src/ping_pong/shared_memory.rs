//! The physical floor: a ping-pong through one bare shared-memory region, no verbs.
//!
//! The initiator creates a [`Region`] (a memfd) and the peer maps the same pages through
//! `/proc/<initiator pid>/fd/<n>`. The ping travels in the first slot of the region, the
//! pong in the second; each is written with [`Region::write`] (bytes in increasing order,
//! the iteration word last) and the receiver spins on that word.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use usec_regions::Region;

use crate::latency::RoundTrips;
use crate::message::Message;
use crate::peer::{channel_to_initiator, Peer};
use crate::ping_pong::{run_block_with_peer, serve_blocks, slot_bytes, InitiatorWatch, PingPong, Scenario};
use crate::pinning::{pin_current_thread, Pinning};
use crate::report::Measurement;
use crate::spin::spin_until;

/// The peer role name of this scenario.
pub const PEER_ROLE: &str = "shared-memory";

/// What the peer needs: the region to map and the message size.
#[derive(Debug, Serialize, Deserialize)]
struct Setup {
    region_path: String,
    region_len: usize,
    size: usize,
    core: Option<usize>,
}

/// The peer's answer once it has mapped the region.
#[derive(Debug, Serialize, Deserialize)]
struct Ready {
    pinning: Pinning,
}

/// Offsets of the two messages in the shared region.
#[derive(Clone, Copy, Debug)]
struct Layout {
    ping: usize,
    pong: usize,
    len: usize,
}

impl Layout {
    fn for_size(size: usize) -> Layout {
        let slot = slot_bytes(size);
        Layout { ping: 0, pong: slot, len: 2 * slot }
    }
}

/// The initiator's side of a floor ping-pong.
#[derive(Debug)]
pub struct Session {
    region: Region,
    layout: Layout,
    message: Message,
    peer: Peer,
    peer_pinning: Pinning,
    initiator: Pinning,
    round_trips: RoundTrips,
}

impl Session {
    /// Creates the region and starts the peer, which maps it.
    pub fn start(config: &PingPong) -> Result<Session> {
        let message = Message::new(config.size)?;
        let layout = Layout::for_size(config.size);
        let region = Region::new(layout.len).context("creating the shared region")?;
        let mut peer = Peer::spawn(PEER_ROLE)?;
        peer.send(&Setup {
            region_path: format!("/proc/{}/fd/{}", std::process::id(), region.fd().as_raw_fd()),
            region_len: region.len(),
            size: config.size,
            core: config.peer_core,
        })?;
        let ready: Ready = peer.receive()?;
        Ok(Session {
            region,
            layout,
            message,
            peer,
            peer_pinning: ready.pinning,
            initiator: config.initiator.clone(),
            round_trips: RoundTrips::new(),
        })
    }

    /// Checks the last pong, stops the peer, and returns the measurement.
    pub fn finish(mut self) -> Result<Measurement> {
        let mut received = vec![0; self.message.len()];
        self.region.read(self.layout.pong, &mut received)?;
        self.message.verify(&received, self.round_trips.last_iteration())?;
        self.peer.finish()?;
        Ok(Measurement {
            label: "bare shared memory".to_string(),
            method: format!(
                "{}-byte stores (Region::write, iteration word last), receiver spins on that word",
                self.message.len()
            ),
            memory: self.region.backing().to_string(),
            initiator: self.initiator,
            peer: self.peer_pinning,
            latency: self.round_trips.recorder().summary(),
        })
    }
}

impl Scenario for Session {
    fn run_block(&mut self, warmup: u64, iterations: u64) -> Result<()> {
        let Session { region, layout, message, peer, round_trips, .. } = self;
        let pong_word = region.atomic_u64(layout.pong + message.word_offset())?;
        run_block_with_peer(peer, round_trips, warmup, iterations, |iteration, peer| {
            region.write(layout.ping, message.stamp(iteration))?;
            spin_until(
                || Ok(pong_word.load(Ordering::Acquire) == iteration),
                || peer.check_alive(),
                || format!("pong {iteration}"),
            )
        })
    }
}

/// The peer side: maps the initiator's region, answers every ping, checks the last one.
pub fn serve_peer() -> Result<()> {
    let watch = InitiatorWatch::new();
    let mut channel = channel_to_initiator();
    let setup: Setup = channel.receive()?.context("the initiator closed the channel before the setup")?;
    let pinning = pin_current_thread(setup.core);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&setup.region_path)
        .with_context(|| format!("opening the initiator's region at {}", setup.region_path))?;
    let region = Region::from_file(file, setup.region_len, true)?;
    let layout = Layout::for_size(setup.size);
    let mut message = Message::new(setup.size)?;
    let ping_word = region.atomic_u64(layout.ping + message.word_offset())?;
    channel.send(&Ready { pinning })?;
    let last = serve_blocks(&mut channel, |iteration| {
        spin_until(
            || Ok(ping_word.load(Ordering::Acquire) == iteration),
            || watch.check(),
            || format!("ping {iteration}"),
        )?;
        region.write(layout.pong, message.stamp(iteration))?;
        Ok(())
    })?;
    let mut received = vec![0; setup.size];
    region.read(layout.ping, &mut received)?;
    message.verify(&received, last)
}
