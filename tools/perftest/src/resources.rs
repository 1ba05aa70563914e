//! The verbs objects of a run (perftest's `ctx_init` and `ctx_connect`): the device, one
//! registered buffer, the CQs and the QPs, and the settings that depend on the device
//! (the inline size, outstanding reads, MTU, link layer).
//!
//! The buffer holds, per QP, two slots of the same size: the *local* slot is where this
//! side's messages come from (WRITE, SEND) or where its READs and atomics put their results;
//! the *target* slot is what the peer's one-sided operations hit and where its SENDs land.

use std::sync::Arc;

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use usec_regions::RemoteRegion;
use usec_verbs::qp::{Address, ConnectOptions};
use usec_verbs::{
    AccessFlags, CompletionQueue, Context, Endpoint, LinkLayer, MemoryRegion, PortAttributes, ProviderKind,
    QpCaps, QpOptions, QueuePair, Region, RemoteAddr, Sge,
};

use crate::control::handshake::Introduction;
use crate::control::wire::KeyMessage;
use crate::control::QpInfo;
use crate::report::{AddressLine, InlineOrReads};
use crate::settings::Settings;
use crate::test_kind::Verb;

/// Slots are at least a page: small messages cycle through it as perftest's do.
pub const CYCLE_BYTES: u64 = crate::control::handshake::CYCLE_BYTES as u64;
/// perftest's `MIN_RNR_TIMER`.
const MIN_RNR_TIMER: u8 = 12;
/// perftest's RNR retry count: forever.
const RNR_RETRY: u8 = 7;

/// The device, its objects and what was settled about them.
pub struct Resources {
    /// The QPs, one per `-q`.
    pub qps: Vec<QueuePair>,
    /// Send completions (and, except for SEND tests, the unused receive side).
    pub send_cq: CompletionQueue,
    /// Receive completions of SEND tests.
    pub recv_cq: Option<CompletionQueue>,
    /// The registered buffer.
    pub mr: MemoryRegion,
    /// The buffer itself.
    pub region: Arc<Region>,
    /// Bytes per slot.
    pub slot_bytes: u64,
    /// The inline size in force.
    pub inline_size: u32,
    /// READs and atomics in flight per QP.
    pub out_reads: u32,
    /// The port used.
    pub port: PortAttributes,
    /// The GID index in force (given, or 0 on RoCE).
    pub gid_index: Option<u8>,
    /// The device.
    pub context: Context,
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resources")
            .field("device", &self.context.name())
            .field("qps", &self.qps.len())
            .field("slot_bytes", &self.slot_bytes)
            .finish()
    }
}

impl Resources {
    /// Opens the device and creates everything `settings` needs.
    pub fn create(settings: &Settings) -> Result<Resources> {
        let context = open_device(settings.device.as_deref())?;
        let attributes = context.attributes();
        let port = *attributes
            .ports
            .iter()
            .find(|port| port.port == settings.ib_port)
            .ok_or_else(|| anyhow!("device {} has no port {}", context.name(), settings.ib_port))?;
        let verb = settings.test.verb();
        let inline_size = match settings.inline_request {
            Some(requested) => {
                ensure!(
                    requested <= attributes.max_inline_data,
                    "inline size {requested} exceeds the {} bytes device {} can inline",
                    attributes.max_inline_data,
                    context.name()
                );
                requested
            }
            None => settings.default_inline().min(attributes.max_inline_data),
        };
        let out_reads =
            if verb.reads_into_local_memory() { attributes.max_qp_rd_atom.clamp(1, 255) } else { 1 };
        let gid_index = match (settings.gid_index, port.link_layer) {
            (Some(index), _) => Some(index),
            (None, LinkLayer::Ethernet) => Some(0),
            (None, _) => None,
        };
        if let Some(index) = gid_index {
            if port.link_layer == LinkLayer::Ethernet || port.link_layer == LinkLayer::Infiniband {
                ensure!(
                    u32::from(index) < port.gid_table_len,
                    "GID index {index} is beyond port {}'s {} GIDs",
                    port.port,
                    port.gid_table_len
                );
            }
        }

        let qp_count = settings.qps as usize;
        let slot_bytes = settings.max_size().max(CYCLE_BYTES).next_multiple_of(CYCLE_BYTES);
        let region_bytes = usize::try_from(slot_bytes * 2 * settings.qps as u64).context("buffer size")?;
        let region = Arc::new(Region::new(region_bytes).context("allocating the test buffer")?);
        let pd = context.alloc_pd().context("allocating a protection domain")?;
        let mr = pd.register(&region, AccessFlags::all_remote()).context("registering the test buffer")?;
        let send_cq = context
            .create_cq((settings.tx_depth * settings.qps).max(1))
            .context("creating the send completion queue")?;
        let recv_cq = if verb == Verb::Send {
            Some(
                context
                    .create_cq((settings.rx_depth * settings.qps).max(1))
                    .context("creating the receive completion queue")?,
            )
        } else {
            None
        };
        let options = QpOptions {
            caps: QpCaps {
                max_send_wr: settings.tx_depth,
                max_recv_wr: if verb == Verb::Send { settings.rx_depth } else { 1 },
                max_send_sge: 1,
                max_recv_sge: 1,
                max_inline_data: inline_size,
            },
            port: settings.ib_port,
            gid_index: settings.gid_index,
        };
        let mut qps = Vec::with_capacity(qp_count);
        for _ in 0..qp_count {
            let receives = recv_cq.as_ref().unwrap_or(&send_cq);
            qps.push(pd.create_qp(&send_cq, receives, &options).context("creating a queue pair")?);
        }
        Ok(Resources {
            qps,
            send_cq,
            recv_cq,
            mr,
            region,
            slot_bytes,
            inline_size,
            out_reads,
            port,
            gid_index,
            context,
        })
    }

    /// Offset in the buffer of QP `qp`'s local slot.
    pub fn local_slot(&self, qp: usize) -> u64 {
        qp as u64 * 2 * self.slot_bytes
    }

    /// Offset in the buffer of QP `qp`'s target slot.
    pub fn target_slot(&self, qp: usize) -> u64 {
        self.local_slot(qp) + self.slot_bytes
    }

    /// An SGE of `len` bytes at buffer offset `offset`.
    pub fn sge(&self, offset: u64, len: u64) -> Result<Sge> {
        Ok(self.mr.sge(offset as usize, u32::try_from(len).context("message length")?)?)
    }

    /// What the peer needs of each QP.
    pub fn describe(&self) -> Vec<QpInfo> {
        (0..self.qps.len())
            .map(|qp| QpInfo {
                endpoint: self.qps[qp].endpoint(),
                rkey: self.mr.rkey(),
                addr: self.mr.addr() + self.target_slot(qp),
                len: self.slot_bytes,
                out_reads: self.out_reads,
            })
            .collect()
    }

    /// This side's key messages, one per QP, in perftest's form.
    pub fn keys(&self) -> Vec<KeyMessage> {
        self.describe()
            .iter()
            .map(|info| {
                let (lid, gid) = match info.endpoint.address {
                    Address::Infiniband { lid, gid, gid_index } => (lid, gid_index.map(|_| gid)),
                    Address::Roce { gid, .. } => (0, Some(gid)),
                    // The soft and sim providers send their endpoints beside the keys.
                    _ => (0, None),
                };
                KeyMessage {
                    lid,
                    out_reads: u16::try_from(info.out_reads).unwrap_or(u16::MAX),
                    // perftest's fields are 24 bits, as QP numbers and PSNs are on a NIC.
                    qpn: info.endpoint.qp_num & 0xff_ffff,
                    psn: info.endpoint.psn & 0xff_ffff,
                    rkey: info.rkey,
                    vaddr: info.addr,
                    gid,
                    srqn: 0,
                }
            })
            .collect()
    }

    /// What this side brings to the meeting with the peer.
    pub fn introduction<'a>(&self, settings: &'a Settings) -> Introduction<'a> {
        let endpoints: Vec<Endpoint> = self.qps.iter().map(QueuePair::endpoint).collect();
        let routes_by_gid = matches!(
            endpoints[0].address,
            Address::Roce { .. } | Address::Infiniband { gid_index: Some(_), .. }
        );
        Introduction {
            settings,
            provider: self.provider(),
            endpoints,
            port_mtu: self.port.active_mtu,
            routes_by_gid,
        }
    }

    /// Connects QP `i` to the peer's QP `i` (RESET to RTS), with perftest's attributes:
    /// incoming READs and atomics as this side announced, outgoing as the peer announced.
    pub fn connect(&mut self, peers: &[QpInfo], settings: &Settings) -> Result<()> {
        ensure!(
            peers.len() == self.qps.len(),
            "the peer has {} QPs, this side {}",
            peers.len(),
            self.qps.len()
        );
        let reads = |count: u32| u8::try_from(count.max(1)).unwrap_or(u8::MAX);
        for (qp, peer) in self.qps.iter_mut().zip(peers) {
            let mut options = ConnectOptions::default();
            options.rtr.max_dest_rd_atomic = reads(self.out_reads);
            options.rtr.min_rnr_timer = MIN_RNR_TIMER;
            options.rts.max_rd_atomic = reads(peer.out_reads);
            options.rts.timeout = settings.qp_timeout;
            options.rts.retry_count = settings.retry_count;
            options.rts.rnr_retry = RNR_RETRY;
            let endpoint = peer.endpoint;
            qp.connect(&endpoint, &options).with_context(|| {
                format!("connecting QP {:#x} to the peer's QP {:#x}", qp.qp_num(), endpoint.qp_num)
            })?;
        }
        Ok(())
    }

    /// The peer's target slot for one of our QPs, as the region its info names.
    pub fn remote_slot(peer: &QpInfo) -> Result<RemoteRegion> {
        RemoteRegion::new(peer.addr, peer.len, peer.rkey).context("the peer's target slot")
    }

    /// Where one-sided operations of `len` bytes go in the peer's slot: its start.
    pub fn remote_target(peer: &QpInfo, len: u64) -> Result<RemoteAddr> {
        Ok(RemoteAddr::within(&Resources::remote_slot(peer)?, 0, len)?)
    }

    /// The inline line or outstanding reads line of the info block.
    pub fn inline_or_reads(&self, verb: Verb) -> InlineOrReads {
        if verb.reads_into_local_memory() {
            InlineOrReads::OutstandingReads(self.out_reads)
        } else {
            InlineOrReads::Inline(self.inline_size)
        }
    }

    /// The provider's name.
    pub fn provider(&self) -> String {
        self.context.provider().to_string()
    }

    /// `IB` for libibverbs devices (perftest's transport string), else the provider.
    pub fn transport(&self) -> String {
        match self.context.provider() {
            ProviderKind::Ibverbs => "IB".to_string(),
            other => other.to_string(),
        }
    }

    /// The port's link layer as perftest names it.
    pub fn link_type(&self) -> String {
        match self.port.link_layer {
            LinkLayer::Infiniband => "IB",
            LinkLayer::Ethernet => "Ethernet",
            LinkLayer::SharedMemory => "Shared memory",
            LinkLayer::Simulated => "Simulated",
            _ => "Unknown",
        }
        .to_string()
    }
}

/// An address line for `info` (one side's QP), as perftest shows it for `verb`.
pub fn address_line(info: &QpInfo, verb: Verb) -> AddressLine {
    let endpoint = info.endpoint;
    let (lid, gid) = match endpoint.address {
        Address::Infiniband { lid, gid, gid_index } => (lid, gid_index.map(|_| gid)),
        Address::Roce { gid, .. } => (0, Some(gid)),
        _ => (0, None),
    };
    AddressLine {
        lid,
        qpn: endpoint.qp_num,
        psn: endpoint.psn,
        out_reads: (verb == Verb::Read).then_some(info.out_reads),
        rdma: matches!(verb, Verb::Read | Verb::Write).then_some((info.rkey, info.addr)),
        gid,
    }
}

/// Opens `name`, or when none is named the first device that is not emulated (a NIC,
/// rxe, siw), as perftest opens the first ibverbs device.
fn open_device(name: Option<&str>) -> Result<Context> {
    let name = match name {
        Some(name) => name.to_string(),
        None => {
            let found = usec_verbs::devices().context("listing devices")?;
            match found.into_iter().find(|device| !device.provider.is_emulated()) {
                Some(device) => device.name,
                None => bail!(
                    "no RDMA device found: pass -d <device> (soft:<fabric> runs over shared memory between \
                     processes of this host)"
                ),
            }
        }
    };
    Context::open(&name).with_context(|| format!("Couldn't open device {name}"))
}
