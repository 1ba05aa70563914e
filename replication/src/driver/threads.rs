//! Threads that turn a [`MuDriver`]: a pinned busy-poll loop (one core per node, lowest
//! latency), or a cooperative loop that yields the core when idle (several nodes, or a
//! node and its clients, on a 2-core machine).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use usec_lease_clock::clock::Clock;

use crate::driver::node::MuDriver;
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
}

/// A node running in its own thread; [`NodeThread::stop`] gets the driver back.
#[derive(Debug)]
pub struct NodeThread<S> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<MuDriver<S>>>,
}

impl<S: StateMachine + 'static> NodeThread<S> {
    /// Starts turning `driver` with time from `clock`.
    pub fn spawn<C: Clock + Send + 'static>(
        mut driver: MuDriver<S>,
        clock: C,
        pacing: Pacing,
    ) -> NodeThread<S> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mu-replica".into())
            .spawn(move || {
                if let Pacing::BusyPoll { core: Some(core) } = pacing {
                    core_affinity::set_for_current(core_affinity::CoreId { id: core });
                }
                let mut idle = 0u32;
                while !stopping.load(Ordering::Relaxed) {
                    if driver.turn(clock.now_ns()) {
                        idle = 0;
                        continue;
                    }
                    idle = idle.saturating_add(1);
                    match pacing {
                        Pacing::Cooperative { spins } if idle > spins => std::thread::yield_now(),
                        _ => std::hint::spin_loop(),
                    }
                }
                driver
            })
            .expect("spawning a thread");
        NodeThread { stop, thread: Some(thread) }
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
