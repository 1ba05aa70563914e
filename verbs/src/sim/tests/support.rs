//! A scripted two-node setup, in the spirit of quinn's `Pair`: a fabric, two nodes with
//! memory, a CQ each, and a connected QP pair.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::sim::{LatencyModel, NodeId, SimFabric};
use crate::{
    AccessFlags, Completion, CompletionQueue, ConnectOptions, Context, MemoryRegion, ProtectionDomain,
    QpCaps, QpOptions, QueuePair, Region, RemoteAddr, Sge,
};

/// A fabric name no other test uses.
pub(super) fn unique_name(label: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{label}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// One node with its PD, a registered region and one CQ.
pub(super) struct TestNode {
    pub(super) id: NodeId,
    pub(super) context: Context,
    pub(super) pd: ProtectionDomain,
    pub(super) memory: Arc<Region>,
    pub(super) mr: MemoryRegion,
    pub(super) cq: CompletionQueue,
}

impl TestNode {
    pub(super) fn open(fabric: &SimFabric, memory_bytes: usize, cq_depth: u32) -> TestNode {
        let (id, context) = fabric.open_node().unwrap();
        let pd = context.alloc_pd().unwrap();
        let memory = Arc::new(Region::new(memory_bytes).unwrap());
        let mr = pd.register(&memory, AccessFlags::all_remote()).unwrap();
        let cq = context.create_cq(cq_depth).unwrap();
        TestNode { id, context, pd, memory, mr, cq }
    }

    pub(super) fn qp(&self, caps: QpCaps) -> QueuePair {
        self.pd.create_qp(&self.cq, &self.cq, &QpOptions { caps, ..QpOptions::default() }).unwrap()
    }

    pub(super) fn sge(&self, offset: usize, len: u32) -> Sge {
        self.mr.sge(offset, len).unwrap()
    }

    pub(super) fn remote(&self, offset: usize) -> RemoteAddr {
        self.mr.remote_addr(offset).unwrap()
    }

    pub(super) fn put(&self, offset: usize, bytes: &[u8]) {
        self.memory.write(offset, bytes).unwrap();
    }

    pub(super) fn get(&self, offset: usize, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        self.memory.read(offset, &mut bytes).unwrap();
        bytes
    }

    pub(super) fn word(&self, offset: usize) -> u64 {
        u64::from_ne_bytes(self.get(offset, 8).try_into().unwrap())
    }
}

/// How to build a [`Pair`].
#[derive(Clone, Copy, Debug)]
pub(super) struct PairConfig {
    pub(super) caps: QpCaps,
    pub(super) connect: ConnectOptions,
    pub(super) cq_depth: u32,
    pub(super) memory_bytes: usize,
    pub(super) latency: LatencyModel,
}

impl Default for PairConfig {
    fn default() -> PairConfig {
        PairConfig {
            caps: QpCaps { max_send_sge: 4, max_recv_sge: 4, ..QpCaps::default() },
            connect: ConnectOptions::default(),
            cq_depth: 1024,
            memory_bytes: 64 << 10,
            latency: LatencyModel::default(),
        }
    }
}

/// Two nodes `a` and `b` with a connected QP pair.
pub(super) struct Pair {
    pub(super) fabric: SimFabric,
    pub(super) a: TestNode,
    pub(super) b: TestNode,
    pub(super) qp_a: QueuePair,
    pub(super) qp_b: QueuePair,
}

impl Pair {
    pub(super) fn new(seed: u64) -> Pair {
        Pair::with(seed, PairConfig::default())
    }

    pub(super) fn with(seed: u64, config: PairConfig) -> Pair {
        let fabric = SimFabric::create(&unique_name("pair"), seed).unwrap();
        fabric.set_latency(config.latency);
        let a = TestNode::open(&fabric, config.memory_bytes, config.cq_depth);
        let b = TestNode::open(&fabric, config.memory_bytes, config.cq_depth);
        let mut qp_a = a.qp(config.caps);
        let mut qp_b = b.qp(config.caps);
        connect(&mut qp_a, &mut qp_b, &config.connect);
        Pair { fabric, a, b, qp_a, qp_b }
    }

    /// Waits for `count` completions on `a`'s CQ.
    pub(super) fn wait_a(&mut self, count: usize) -> Vec<Completion> {
        wait(&self.fabric, &mut self.a.cq, count)
    }

    /// Waits for `count` completions on `b`'s CQ.
    pub(super) fn wait_b(&mut self, count: usize) -> Vec<Completion> {
        wait(&self.fabric, &mut self.b.cq, count)
    }

    /// Runs until nothing is left to run.
    pub(super) fn settle(&self) {
        settle(&self.fabric);
    }
}

/// Connects two QPs to each other.
pub(super) fn connect(one: &mut QueuePair, other: &mut QueuePair, options: &ConnectOptions) {
    let (one_endpoint, other_endpoint) = (one.endpoint(), other.endpoint());
    one.connect(&other_endpoint, options).unwrap();
    other.connect(&one_endpoint, options).unwrap();
}

/// Polls `cq`, running the fabric's events, until `count` completions came.
pub(super) fn wait(fabric: &SimFabric, cq: &mut CompletionQueue, count: usize) -> Vec<Completion> {
    let mut got = Vec::new();
    let mut batch = [Completion::default(); 16];
    while got.len() < count {
        let want = (count - got.len()).min(batch.len());
        let polled = cq.poll(&mut batch[..want]);
        got.extend_from_slice(&batch[..polled]);
        if polled == 0 && !fabric.step() {
            panic!("fabric idle at {} ns with {}/{count} completions: {got:?}", fabric.now_ns(), got.len());
        }
    }
    got
}

/// Everything a CQ holds now.
pub(super) fn drain(cq: &mut CompletionQueue) -> Vec<Completion> {
    let mut got = Vec::new();
    let mut batch = [Completion::default(); 16];
    loop {
        let polled = cq.poll(&mut batch);
        if polled == 0 {
            return got;
        }
        got.extend_from_slice(&batch[..polled]);
    }
}

/// Runs events until none is left.
pub(super) fn settle(fabric: &SimFabric) {
    let limit = 10_000_000;
    assert!(fabric.run_until_idle(limit) < limit, "the fabric never went idle");
}

/// Short timers for tests about failures: 4.096 µs × 2^8 ≈ 1 ms ACK timeout, 3 retries.
pub(super) fn quick_failure_options() -> ConnectOptions {
    let mut options = ConnectOptions::default();
    options.rts.timeout = 8;
    options.rts.retry_count = 3;
    options
}
