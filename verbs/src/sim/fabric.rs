//! [`SimFabric`]: the handle to one simulated fabric, the process-wide registry of fabrics
//! by name, and the controls a test drives: virtual time, faults, latency, the trace.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::device::Context;
use crate::error::{Error, Result};
use crate::provider::DeviceOps;
use crate::sim::device::SimDevice;
use crate::sim::latency::LatencyModel;
use crate::sim::node::NodeId;
use crate::sim::trace::TraceEvent;
use crate::sim::world::World;

/// Live fabrics by name. Weak, so that a fabric goes when its last handle does.
static REGISTRY: Mutex<BTreeMap<String, Weak<Shared>>> = Mutex::new(BTreeMap::new());
/// Fabric identities for endpoints: unique per fabric instance in this process.
static NEXT_FABRIC_ID: AtomicU64 = AtomicU64::new(1);

/// What every handle of one fabric shares.
pub(crate) struct Shared {
    name: String,
    seed: u64,
    id: u64,
    world: Mutex<World>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFabric").field("name", &self.name).field("seed", &self.seed).finish()
    }
}

impl Shared {
    /// The fabric's state. A panic while it was held (a failed assertion in a test) leaves
    /// it usable, so that destructors after the panic do not panic again.
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

/// A simulated RDMA fabric: nodes, links between every pair, virtual time, and a seeded
/// scheduler. See the [module documentation](crate::sim) for a tutorial.
///
/// Cheap to clone; every clone, and every verbs object made on the fabric's nodes, keeps it
/// alive. It is `Send + Sync` (one lock inside), but a run is deterministic only when one
/// thread drives it: the interleaving of calls from several threads is not part of the
/// seed.
#[derive(Clone)]
pub struct SimFabric {
    shared: Arc<Shared>,
}

impl fmt::Debug for SimFabric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFabric")
            .field("name", &self.shared.name)
            .field("seed", &self.shared.seed)
            .field("now_ns", &self.now_ns())
            .finish()
    }
}

impl SimFabric {
    /// Creates the fabric `name` (1-64 characters of `[A-Za-z0-9._-]`, not starting with
    /// '.') whose every random choice derives from `seed`. Fails if a live fabric of that
    /// name exists in this process.
    pub fn create(name: &str, seed: u64) -> Result<SimFabric> {
        let mut registry = registry();
        create_locked(&mut registry, name, seed)
    }

    /// The live fabric called `name`, if any.
    pub fn get(name: &str) -> Option<SimFabric> {
        let registry = registry();
        registry.get(name).and_then(Weak::upgrade).map(|shared| SimFabric { shared })
    }

    /// The fabric a context was opened on, if it is a sim context.
    pub fn of(context: &Context) -> Option<SimFabric> {
        device_of(context).map(|device| SimFabric { shared: Arc::clone(&device.fabric) })
    }

    /// The node a context drives, if it is a sim context.
    pub fn node_of(context: &Context) -> Option<NodeId> {
        device_of(context).map(|device| device.node)
    }

    /// Its name (the device name is `sim:<name>`).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The seed it was created with.
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// Adds a node and opens its device. `Context::open("sim:<name>")` does the same.
    pub fn open_node(&self) -> Result<(NodeId, Context)> {
        let device = self.add_device();
        Ok((device.node, Context::from_device(device)))
    }

    /// Adds a node; its device.
    fn add_device(&self) -> Arc<SimDevice> {
        let node = self.shared.world().add_node();
        Arc::new(SimDevice::new(Arc::clone(&self.shared), node))
    }

    /// The nodes opened so far, crashed ones included.
    pub fn nodes(&self) -> Vec<NodeId> {
        let count = self.shared.world().nodes.len() as u32;
        (0..count).map(NodeId).collect()
    }

    // ---- virtual time ----

    /// Virtual time, in nanoseconds since the fabric was created.
    pub fn now_ns(&self) -> u64 {
        self.shared.world().now()
    }

    /// When the next event is due, if any is queued.
    pub fn next_event_ns(&self) -> Option<u64> {
        self.shared.world().scheduler.next_at_ns()
    }

    /// Runs the next event (moving time to it); false when none is queued.
    pub fn step(&self) -> bool {
        self.shared.world().step()
    }

    /// Runs every event due at or before `at_ns`, then sets the clock to `at_ns`. Time
    /// never goes backwards: an `at_ns` in the past runs nothing.
    pub fn advance_to(&self, at_ns: u64) {
        self.shared.world().advance_to(at_ns);
    }

    /// [`Self::advance_to`] `now + ns`.
    pub fn advance_by(&self, ns: u64) {
        let mut world = self.shared.world();
        let at_ns = world.now().saturating_add(ns);
        world.advance_to(at_ns);
    }

    /// Runs events until none is left or `max_events` have run; returns how many ran.
    /// Idle means nothing in flight: no message, no armed timer.
    pub fn run_until_idle(&self, max_events: usize) -> usize {
        self.shared.world().run_until_idle(max_events)
    }

    /// Whether a poll that finds its CQ empty runs the fabric's next event (default on,
    /// so generic code spinning on `poll` makes progress). Harnesses that drive time
    /// themselves turn it off.
    pub fn set_auto_advance(&self, on: bool) {
        self.shared.world().auto_advance = on;
    }

    /// See [`Self::set_auto_advance`].
    pub fn auto_advance(&self) -> bool {
        self.shared.world().auto_advance
    }

    // ---- faults ----

    /// Crashes `node` for good: its QPs, memory registrations, completions and events
    /// vanish, nothing it sent arrives any more, and requests to it fail with
    /// `RetryExceeded` after their ACK timeouts. Each QP connected to it gets a `PeerLost`
    /// event [`PEER_LOST_DELAY_NS`](crate::sim::PEER_LOST_DELAY_NS) later. The node's verbs
    /// handles stay valid: posts are swallowed, polls find nothing, new objects are refused.
    pub fn crash(&self, node: NodeId) {
        self.shared.world().crash(node);
    }

    /// Pauses `node` as SIGSTOP pauses a process: its NIC still serves peers (one-sided
    /// operations, SENDs into RECVs already posted, responses, retransmissions), but the
    /// work requests it posts wait until [`Self::resume`].
    pub fn pause(&self, node: NodeId) {
        self.shared.world().pause(node);
    }

    /// Resumes a paused node: what it posted meanwhile goes out now.
    pub fn resume(&self, node: NodeId) {
        self.shared.world().resume(node);
    }

    /// Loses every message between `a` and `b`, both ways, until [`Self::heal`]. Requests
    /// lost are retransmitted on ACK timeout, as on RC; a partition longer than the
    /// requester's timeout × (retry count + 1) fails them with `RetryExceeded`.
    pub fn partition(&self, a: NodeId, b: NodeId) {
        self.shared.world().partition(a, b);
    }

    /// Lets messages between `a` and `b` through again. QPs that went to ERROR meanwhile
    /// stay there.
    pub fn heal(&self, a: NodeId, b: NodeId) {
        self.shared.world().heal(a, b);
    }

    /// Whether `node` has crashed.
    pub fn is_crashed(&self, node: NodeId) -> bool {
        self.shared.world().is_crashed(node)
    }

    /// Whether `node` is paused.
    pub fn is_paused(&self, node: NodeId) -> bool {
        self.shared.world().node(node).paused
    }

    /// Whether `a` and `b` are partitioned.
    pub fn is_partitioned(&self, a: NodeId, b: NodeId) -> bool {
        self.shared.world().partitioned(a, b)
    }

    /// Sets the latency of every link without its own model (default
    /// [`LatencyModel::default`]).
    pub fn set_latency(&self, model: LatencyModel) {
        self.shared.world().set_latency(model);
    }

    /// The fabric-wide latency model.
    pub fn latency(&self) -> LatencyModel {
        self.shared.world().latency()
    }

    /// Sets the latency of the link between `a` and `b`, both directions.
    pub fn set_link_latency(&self, a: NodeId, b: NodeId, model: LatencyModel) {
        let mut world = self.shared.world();
        world.node(a);
        world.node(b);
        world.set_link_latency(a, b, model);
    }

    // ---- determinism ----

    /// A hash of everything that ran so far: equal for two runs with the same seed and the
    /// same calls, different (almost surely) otherwise.
    pub fn trace_hash(&self) -> u64 {
        self.shared.world().trace.hash()
    }

    /// Records each event (from now on) for [`Self::trace`], to compare two runs.
    pub fn record_trace(&self, on: bool) {
        self.shared.world().trace.set_recording(on);
    }

    /// The events recorded so far.
    pub fn trace(&self) -> Vec<TraceEvent> {
        self.shared.world().trace.events().to_vec()
    }
}

fn registry() -> MutexGuard<'static, BTreeMap<String, Weak<Shared>>> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

fn create_locked(registry: &mut BTreeMap<String, Weak<Shared>>, name: &str, seed: u64) -> Result<SimFabric> {
    if !valid_name(name) {
        return Err(Error::invalid(format!(
            "sim fabric name {name:?}: use 1-64 characters of [A-Za-z0-9._-], not starting with '.'"
        )));
    }
    registry.retain(|_, fabric| fabric.strong_count() > 0);
    if registry.contains_key(name) {
        return Err(Error::invalid(format!("a sim fabric named {name:?} exists already in this process")));
    }
    // The process id in the high half keeps endpoints of another process's fabric of the
    // same name from being mistaken for ours; the id never enters the trace.
    let id = (u64::from(std::process::id()) << 32) | NEXT_FABRIC_ID.fetch_add(1, Ordering::Relaxed);
    let world = Mutex::new(World::new(id, seed));
    let shared = Arc::new(Shared { name: name.to_string(), seed, id, world });
    registry.insert(name.to_string(), Arc::downgrade(&shared));
    Ok(SimFabric { shared })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn device_of(context: &Context) -> Option<&SimDevice> {
    context.device_as::<SimDevice>()
}

/// `Context::open("sim:<name>")`: a new node on the fabric `name`, created with seed 0 if
/// no live fabric has that name.
pub(crate) fn open_device(name: &str) -> Result<Arc<dyn DeviceOps>> {
    let fabric = {
        let mut registry = registry();
        match registry.get(name).and_then(Weak::upgrade) {
            Some(shared) => SimFabric { shared },
            None => create_locked(&mut registry, name, 0)?,
        }
    };
    Ok(fabric.add_device())
}

/// The names of the live fabrics.
pub(crate) fn live_names() -> Vec<String> {
    let registry = registry();
    registry.iter().filter(|(_, fabric)| fabric.strong_count() > 0).map(|(name, _)| name.clone()).collect()
}
