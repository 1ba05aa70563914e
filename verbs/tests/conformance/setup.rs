//! What every conformance test stands on: the provider under test, a side (device, PD, CQ,
//! registered region, QP), a connected pair of sides, and waiting for completions.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use usec_verbs::qp::InitAttributes;
use usec_verbs::{
    AccessFlags, Completion, CompletionQueue, ConnectOptions, Context, MemoryRegion, ProtectionDomain,
    ProviderKind, QpCaps, QpOptions, QueuePair, Region, RemoteAddr, Sge,
};

pub type Outcome = Result<(), libtest_mimic::Failed>;

/// Fails the test with a message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(format!("{} (at {}:{})", format!($($message)+), file!(), line!()).into());
        }
    };
}

/// Fails the test unless the two sides are equal.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($message:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(format!("{}: {:?} != {:?} (at {}:{})", format!($($message)+), left, right, file!(), line!()).into());
        }
    }};
}

/// The provider a trial runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provider {
    Soft,
    Sim,
    Ibverbs(String),
}

/// Behaviours in which SoftRoCE (rxe) differs from what the suite expects of a NIC. A test
/// meeting one on rxe checks what rxe does instead, and prints the limitation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxeQuirk {
    /// rxe moves the responder QP to ERROR after a refused request but raises no
    /// IBV_EVENT_QP_ACCESS_ERR / IBV_EVENT_QP_REQ_ERR.
    NoResponderAsyncEvents,
    /// rxe refuses, at post time (EINVAL), atomics that are misaligned or whose local buffer
    /// is not 8 bytes, instead of completing them with an error.
    AtomicsCheckedAtPost,
    /// rxe completes a request with an unknown lkey as IBV_WC_LOC_QP_OP_ERR, not
    /// IBV_WC_LOC_PROT_ERR.
    BadLkeyIsQpOperationError,
    /// rxe NAKs a SEND longer than the posted RECV as a remote operation error (not an
    /// invalid request) and completes the RECV as a QP operation error (not a length error).
    ShortRecvIsOperationError,
    /// rxe's send queue accepts more requests than the max_send_wr it reports.
    SendQueueDeeperThanReported,
    /// rxe's responder may finish placing a WRITE it was executing after its QP was moved
    /// to ERROR, reset or destroyed, or its MR deregistered: those calls do not wait for
    /// the packet work in flight (seen in the VM under load).
    RetirementIsNoFence,
}

impl RxeQuirk {
    fn describe(self) -> &'static str {
        match self {
            RxeQuirk::NoResponderAsyncEvents => "no async QP event at the responder of a refused request",
            RxeQuirk::AtomicsCheckedAtPost => "malformed atomics are refused at post (EINVAL), not completed with an error",
            RxeQuirk::BadLkeyIsQpOperationError => "an unknown lkey completes as LOC_QP_OP_ERR, not LOC_PROT_ERR",
            RxeQuirk::ShortRecvIsOperationError => {
                "a SEND longer than the RECV fails as REM_OP_ERR / LOC_QP_OP_ERR, not REM_INV_REQ_ERR / LOC_LEN_ERR"
            }
            RxeQuirk::SendQueueDeeperThanReported => "the send queue accepts more than the max_send_wr it reports",
            RxeQuirk::RetirementIsNoFence => {
                "a WRITE in flight may land after its responder QP is retired or its MR deregistered"
            }
        }
    }
}

static NEXT_FABRIC: AtomicU32 = AtomicU32::new(0);

impl Provider {
    pub fn label(&self) -> String {
        match self {
            Provider::Soft => "soft".into(),
            Provider::Sim => "sim".into(),
            Provider::Ibverbs(device) => device.clone(),
        }
    }

    pub fn kind(&self) -> ProviderKind {
        match self {
            Provider::Soft => ProviderKind::Soft,
            Provider::Sim => ProviderKind::Sim,
            Provider::Ibverbs(_) => ProviderKind::Ibverbs,
        }
    }

    /// Whether this is an rxe device with `quirk`; says so on stderr when it is.
    pub fn has_quirk(&self, quirk: RxeQuirk) -> bool {
        let rxe = matches!(self, Provider::Ibverbs(device) if device.starts_with("rxe"));
        if rxe {
            eprintln!("[{}] rxe limitation ({quirk:?}): {}", self.label(), quirk.describe());
        }
        rxe
    }

    /// A device name for one test: soft and sim get a fabric of their own, so tests
    /// running in parallel never meet.
    pub fn fresh_device(&self) -> Device {
        let serial = NEXT_FABRIC.fetch_add(1, Ordering::Relaxed);
        match self {
            Provider::Soft => Device::new(format!("soft:conformance-{}-{serial}", std::process::id())),
            Provider::Sim => Device::new(format!("sim:conformance-{serial}")),
            Provider::Ibverbs(device) => Device::new(device.clone()),
        }
    }
}

/// A device name for one test.
pub struct Device {
    pub name: String,
}

impl Device {
    fn new(name: String) -> Device {
        Device { name }
    }

    pub fn open(&self) -> Result<Context, libtest_mimic::Failed> {
        Context::open(&self.name).map_err(|err| format!("opening {}: {err}", self.name).into())
    }
}

/// How to build one side.
#[derive(Clone, Debug)]
pub struct SideOptions {
    pub region_len: usize,
    pub mr_access: AccessFlags,
    pub caps: QpCaps,
    pub cq_depth: u32,
}

impl Default for SideOptions {
    fn default() -> SideOptions {
        SideOptions {
            region_len: 1 << 16,
            mr_access: AccessFlags::all_remote(),
            caps: QpCaps::default(),
            cq_depth: 256,
        }
    }
}

/// One end: a device context with a PD, a CQ, a registered region and an RC QP.
pub struct Side {
    /// Completions polled while waiting on the other side, kept for this side's waits.
    pub stash: std::collections::VecDeque<Completion>,
    pub qp: QueuePair,
    pub cq: CompletionQueue,
    pub mr: MemoryRegion,
    pub region: Arc<Region>,
    pub pd: ProtectionDomain,
    pub ctx: Context,
}

impl Side {
    pub fn new(device: &Device, options: &SideOptions) -> Result<Side, libtest_mimic::Failed> {
        let ctx = device.open()?;
        let pd = ctx.alloc_pd().map_err(|err| format!("alloc_pd: {err}"))?;
        let cq = ctx.create_cq(options.cq_depth).map_err(|err| format!("create_cq: {err}"))?;
        let region = Arc::new(Region::new(options.region_len).map_err(|err| format!("region: {err}"))?);
        let mr = pd.register(&region, options.mr_access).map_err(|err| format!("register: {err}"))?;
        let qp_options = QpOptions { caps: options.caps, ..QpOptions::default() };
        let qp = pd.create_qp(&cq, &cq, &qp_options).map_err(|err| format!("create_qp: {err}"))?;
        Ok(Side { stash: Default::default(), qp, cq, mr, region, pd, ctx })
    }

    /// An SGE over `len` bytes at `offset` of this side's MR.
    pub fn sge(&self, offset: usize, len: u32) -> Sge {
        self.mr.sge(offset, len).expect("SGE inside the MR")
    }

    /// Where a peer reaches `offset` of this side's MR.
    pub fn remote(&self, offset: usize) -> RemoteAddr {
        self.mr.remote_addr(offset).expect("offset inside the MR")
    }

    pub fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        self.region.write(self.mr.region_offset() + offset, bytes).expect("local write in bounds");
    }

    pub fn read_bytes(&self, offset: usize, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.region.read(self.mr.region_offset() + offset, &mut out).expect("local read in bounds");
        out
    }

    /// Polls the CQ into the stash (so deferred work of this side progresses).
    pub fn pump(&mut self) {
        let mut batch = [Completion::default(); 16];
        let n = self.cq.poll(&mut batch);
        self.stash.extend(&batch[..n]);
    }

    pub fn read_u64(&self, offset: usize) -> u64 {
        u64::from_ne_bytes(self.read_bytes(offset, 8).try_into().unwrap())
    }
}

/// Two sides whose QPs are connected to each other.
pub struct Pair {
    pub a: Side,
    pub b: Side,
    pub provider: Provider,
    pub device: Device,
}

/// How to connect a pair.
#[derive(Clone, Debug, Default)]
pub struct PairOptions {
    pub a: SideOptions,
    pub b: SideOptions,
    pub connect_a: ConnectOptions,
    pub connect_b: ConnectOptions,
}

impl Pair {
    pub fn new(provider: &Provider) -> Result<Pair, libtest_mimic::Failed> {
        Pair::with(provider, &PairOptions::default())
    }

    pub fn with(provider: &Provider, options: &PairOptions) -> Result<Pair, libtest_mimic::Failed> {
        let device = provider.fresh_device();
        let mut a = Side::new(&device, &options.a)?;
        let mut b = Side::new(&device, &options.b)?;
        let (endpoint_a, endpoint_b) = (a.qp.endpoint(), b.qp.endpoint());
        a.qp.connect(&endpoint_b, &options.connect_a).map_err(|err| format!("connect a: {err}"))?;
        b.qp.connect(&endpoint_a, &options.connect_b).map_err(|err| format!("connect b: {err}"))?;
        Ok(Pair { a, b, provider: provider.clone(), device })
    }

    /// Waits for `want` completions of `a`, pumping `b` meanwhile.
    #[track_caller]
    pub fn wait_a(&mut self, want: usize) -> Result<Vec<Completion>, libtest_mimic::Failed> {
        wait(&mut self.a, want, Some(&mut self.b), DEFAULT_WAIT)
    }

    /// Waits for `want` completions of `b`, pumping `a` meanwhile.
    #[track_caller]
    pub fn wait_b(&mut self, want: usize) -> Result<Vec<Completion>, libtest_mimic::Failed> {
        wait(&mut self.b, want, Some(&mut self.a), DEFAULT_WAIT)
    }
}

pub const DEFAULT_WAIT: Duration = Duration::from_secs(20);

/// Takes `want` completions of `side` (stash first, then its CQ) within `limit`, pumping
/// `other` in between so its deferred work (a peer's RNR retries) progresses.
#[track_caller]
pub fn wait(
    side: &mut Side,
    want: usize,
    mut other: Option<&mut Side>,
    limit: Duration,
) -> Result<Vec<Completion>, libtest_mimic::Failed> {
    let caller = std::panic::Location::caller();
    let deadline = Instant::now() + limit;
    let mut got = Vec::with_capacity(want);
    while got.len() < want {
        if let Some(completion) = side.stash.pop_front() {
            got.push(completion);
            continue;
        }
        side.pump();
        if let Some(other) = other.as_deref_mut() {
            other.pump();
        }
        if side.stash.is_empty() {
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out with {} of {want} completions at {caller}: {got:?}",
                    got.len()
                )
                .into());
            }
            std::hint::spin_loop();
        }
    }
    Ok(got)
}

/// Polls `cq` for `quiet` and fails if any completion arrives.
pub fn expect_quiet(side: &mut Side, quiet: Duration) -> Outcome {
    let deadline = Instant::now() + quiet;
    while Instant::now() < deadline {
        side.pump();
        ensure!(side.stash.is_empty(), "unexpected completion {:?}", side.stash);
        std::thread::yield_now();
    }
    Ok(())
}

/// Default connection options with the given responder rights on the QP.
pub fn connect_with_access(access: AccessFlags) -> ConnectOptions {
    ConnectOptions { init: InitAttributes { access, ..Default::default() }, ..Default::default() }
}
