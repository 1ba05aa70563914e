//! Threads that turn a [`MuDriver`]: a pinned busy-poll loop (one core per node, lowest
//! latency), a cooperative loop that yields the core when idle (several nodes, or a node
//! and its clients, on a 2-core machine), or one that naps when idle (a machine whose
//! cores are needed by the work the replica waits for, like a kernel's software NIC).
//!
//! The driver belongs to its thread while it runs; another thread (an operator's console,
//! a test) looks at it or changes it through [`NodeThread::with`], which runs a closure
//! between two turns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use usec_lease_clock::clock::Clock;
use usec_qp_pool::NodeId;

use crate::driver::node::MuDriver;
use crate::error::{Error, Result};
use crate::state_machine::StateMachine;

/// How a node's thread spends idle turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// Turn again at once, pinned to `core` if given.
    BusyPoll {
        /// The core to pin to.
        core: Option<usize>,
    },
    /// Turn again at once after something happened, else after `spins` idle turns yield
    /// the core on every idle turn.
    Cooperative {
        /// Idle turns before yielding.
        spins: u32,
    },
    /// As cooperative, but sleep `nap_ns` instead of yielding: for a machine whose cores
    /// the replica shares with work it waits for (a kernel's software NIC, an emulated
    /// CPU), which a thread that only yields starves. Each nap adds up to `nap_ns` (and
    /// the OS's timer slack) to the replica's reaction time.
    Napping {
        /// Idle turns before sleeping.
        spins: u32,
        /// How long an idle thread sleeps.
        nap_ns: u64,
    },
}

/// Work handed to the node's thread, run between two turns.
type Errand<S> = Box<dyn FnOnce(&mut MuDriver<S>) + Send>;

/// A node running in its own thread; [`NodeThread::stop`] gets the driver back.
#[derive(Debug)]
pub struct NodeThread<S> {
    me: NodeId,
    stop: Arc<AtomicBool>,
    errands: mpsc::Sender<Errand<S>>,
    thread: Option<JoinHandle<MuDriver<S>>>,
}

impl<S: StateMachine + 'static> NodeThread<S> {
    /// Starts turning `driver` with time from `clock`.
    pub fn spawn<C: Clock + Send + 'static>(
        mut driver: MuDriver<S>,
        clock: C,
        pacing: Pacing,
    ) -> NodeThread<S> {
        let me = driver.replica().id();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let (errands, inbox) = mpsc::channel::<Errand<S>>();
        let thread = std::thread::Builder::new()
            .name("mu-replica".into())
            .spawn(move || {
                if let Pacing::BusyPoll { core: Some(core) } = pacing {
                    core_affinity::set_for_current(core_affinity::CoreId { id: core });
                }
                let mut idle = 0u32;
                while !stopping.load(Ordering::Relaxed) {
                    let mut busy = driver.turn(clock.now_ns());
                    // An empty channel costs an atomic load: cheap enough for every turn.
                    while let Ok(errand) = inbox.try_recv() {
                        errand(&mut driver);
                        busy = true;
                    }
                    if busy {
                        idle = 0;
                        continue;
                    }
                    idle = idle.saturating_add(1);
                    match pacing {
                        Pacing::Cooperative { spins } if idle > spins => std::thread::yield_now(),
                        Pacing::Napping { spins, nap_ns } if idle > spins => {
                            std::thread::sleep(std::time::Duration::from_nanos(nap_ns))
                        }
                        _ => std::hint::spin_loop(),
                    }
                }
                driver
            })
            .expect("spawning a thread");
        NodeThread { me, stop, errands, thread: Some(thread) }
    }

    /// Runs `errand` on the driver in its thread, between two turns, and returns what it
    /// returned. Blocks until then; fails if the thread is gone.
    pub fn with<R: Send + 'static>(
        &self,
        errand: impl FnOnce(&mut MuDriver<S>) -> R + Send + 'static,
    ) -> Result<R> {
        let (answer, answered) = mpsc::sync_channel(1);
        let boxed: Errand<S> = Box::new(move |driver| {
            // The caller may have given up waiting: nothing to do then.
            let _ = answer.send(errand(driver));
        });
        self.errands.send(boxed).map_err(|_| Error::Stopped(self.me))?;
        answered.recv().map_err(|_| Error::Stopped(self.me))
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// Stops the thread and returns the driver.
    pub fn stop(mut self) -> MuDriver<S> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().expect("joined once").join().expect("the node thread does not panic")
    }
}

impl<S> Drop for NodeThread<S> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
