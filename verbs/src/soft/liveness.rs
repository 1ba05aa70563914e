//! Peer-death detection: one watcher thread per process, asleep in `epoll_wait` on the
//! pidfds of every peer process, so the hot path only loads a flag.
//!
//! The kernel makes a pidfd readable when its process exits (SIGKILL included), so a dead
//! peer is seen within microseconds of its exit, and operations to it complete with
//! `RetryExceeded` instead of landing in memory nobody will read. Listeners (the nodes that
//! have QPs connected to the peer) get a `PeerLost` async event per QP.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::error::{Error, PeerLoss, Result};
use crate::event::{AsyncEvent, AsyncEventKind};
use crate::soft::process::{pidfd_open, start_time_of};

/// Somebody to tell when a peer dies: a node's event queue and its QP number.
pub(crate) type EventSink = Mutex<std::collections::VecDeque<AsyncEvent>>;

/// Whether one peer process is alive.
#[derive(Debug)]
pub(crate) struct Liveness {
    dead: AtomicBool,
    listeners: Mutex<Vec<(Weak<EventSink>, u32)>>,
}

impl Liveness {
    /// A process that can never die from our point of view (ourselves).
    fn immortal() -> Liveness {
        Liveness { dead: AtomicBool::new(false), listeners: Mutex::new(Vec::new()) }
    }

    /// Whether the process has exited. One relaxed load: the hot path calls it per op.
    #[inline]
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Asks for a `PeerLost` event for `qp_num` into `sink` when the peer dies (at once if
    /// it already has).
    pub(crate) fn listen(&self, sink: &Arc<EventSink>, qp_num: u32) {
        let mut listeners = self.listeners.lock().expect("listener lock");
        listeners.retain(|(sink, _)| sink.strong_count() > 0);
        if self.is_dead() {
            drop(listeners);
            push_lost(sink, qp_num);
        } else {
            listeners.push((Arc::downgrade(sink), qp_num));
        }
    }

    /// Cancels [`Liveness::listen`] for `qp_num` of `sink`.
    pub(crate) fn unlisten(&self, sink: &Arc<EventSink>, qp_num: u32) {
        let target = Arc::downgrade(sink);
        self.listeners
            .lock()
            .expect("listener lock")
            .retain(|(sink, qpn)| !(sink.ptr_eq(&target) && *qpn == qp_num));
    }

    /// The process started dying (its death word is marked, see `death_word.rs`): a
    /// `PeerLost` to every listener now, once, without calling the process dead — its
    /// other threads may still be finishing an operation, which only the pidfd rules out
    /// ([`Liveness::is_dead`]).
    pub(crate) fn report_dying(&self) {
        drop(self.tell_listeners());
    }

    fn mark_dead(&self) {
        // Under the listener lock, so `listen` either registers before (and is told here)
        // or sees the flag; events first, so whoever sees the flag finds its event too.
        let listeners = self.tell_listeners();
        self.dead.store(true, Ordering::Release);
        drop(listeners);
    }

    /// `PeerLost` to every listener, who are forgotten; the lock, still held.
    fn tell_listeners(&self) -> std::sync::MutexGuard<'_, Vec<(Weak<EventSink>, u32)>> {
        let mut listeners = self.listeners.lock().expect("listener lock");
        for (sink, qp_num) in listeners.drain(..) {
            if let Some(sink) = sink.upgrade() {
                push_lost(&sink, qp_num);
            }
        }
        listeners
    }
}

fn push_lost(sink: &EventSink, qp_num: u32) {
    sink.lock()
        .expect("event lock")
        .push_back(AsyncEvent { kind: AsyncEventKind::PeerLost, qp_num: Some(qp_num) });
}

/// The process-wide watcher.
struct Watcher {
    epoll: Epoll,
    wake: EventFd,
    /// Live entries by pid; the watcher thread owns the pidfds in `pidfds`.
    watched: Mutex<HashMap<u32, Weak<Liveness>>>,
    pidfds: Mutex<HashMap<u32, (OwnedFd, Arc<Liveness>)>>,
}

static WATCHER: OnceLock<std::result::Result<Arc<Watcher>, String>> = OnceLock::new();

fn watcher() -> Result<Arc<Watcher>> {
    let watcher = WATCHER.get_or_init(|| start_watcher().map_err(|err| err.to_string()));
    watcher.clone().map_err(|reason| Error::ProviderUnavailable {
        provider: crate::provider::ProviderKind::Soft,
        reason,
    })
}

fn start_watcher() -> Result<Arc<Watcher>> {
    let epoll =
        Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|err| Error::os("epoll_create", err.into()))?;
    let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(|err| Error::os("eventfd", err.into()))?;
    epoll
        .add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, u64::MAX))
        .map_err(|err| Error::os("epoll_ctl", err.into()))?;
    let watcher = Arc::new(Watcher {
        epoll,
        wake,
        watched: Mutex::new(HashMap::new()),
        pidfds: Mutex::new(HashMap::new()),
    });
    let thread_watcher = Arc::clone(&watcher);
    std::thread::Builder::new()
        .name("usec-soft-peers".into())
        .spawn(move || thread_watcher.run())
        .map_err(|err| Error::os("spawning the peer watcher", err))?;
    Ok(watcher)
}

/// Lets the watcher run on any CPU: it inherits the affinity of the thread that started
/// it, typically one pinned to a core it busy-polls, which the watcher would otherwise
/// have to preempt to report a death. The kernel keeps the set within the process's
/// allowed CPUs.
fn widen_affinity() {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let mut all = CpuSet::new();
    for cpu in 0..CpuSet::count() {
        let _ = all.set(cpu);
    }
    // Best effort: if it fails the watcher still works, possibly a little later.
    let _ = sched_setaffinity(Pid::from_raw(0), &all);
}

impl Watcher {
    fn run(&self) {
        widen_affinity();
        let mut events = [EpollEvent::empty(); 32];
        loop {
            let ready = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(ready) => ready,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(err) => panic!("usec soft provider: epoll_wait failed: {err}"),
            };
            for event in &events[..ready] {
                if event.data() == u64::MAX {
                    let _ = self.wake.read();
                    continue;
                }
                self.reap(event.data() as u32);
            }
        }
    }

    fn reap(&self, pid: u32) {
        let entry = self.pidfds.lock().expect("pidfd lock").remove(&pid);
        self.watched.lock().expect("watched lock").remove(&pid);
        if let Some((pidfd, liveness)) = entry {
            let _ = self.epoll.delete(pidfd.as_fd());
            liveness.mark_dead();
        }
    }

    /// The liveness of process `pid` whose start time must be `start_time`.
    fn watch(&self, pid: u32, start_time: u64) -> Result<Arc<Liveness>> {
        let mut watched = self.watched.lock().expect("watched lock");
        if let Some(existing) = watched.get(&pid).and_then(Weak::upgrade) {
            return Ok(existing);
        }
        let unreachable = |reason| Error::unreachable(format!("process {pid}"), reason);
        let pidfd = pidfd_open(pid).map_err(|err| match err.raw_os_error() {
            Some(libc::ESRCH) => unreachable(PeerLoss::Exited { pid }),
            _ => Error::os(format!("pidfd_open({pid})"), err),
        })?;
        // The pidfd now pins the process identity; check that it is the peer's process and
        // not a later one that reused its pid.
        if start_time_of(pid) != Some(start_time) {
            return Err(unreachable(PeerLoss::PidReused { pid }));
        }
        let liveness = Arc::new(Liveness::immortal());
        self.epoll
            .add(pidfd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, u64::from(pid)))
            .map_err(|err| Error::os("epoll_ctl(pidfd)", err.into()))?;
        let raw = pidfd.as_raw_fd();
        debug_assert!(raw >= 0);
        self.pidfds.lock().expect("pidfd lock").insert(pid, (pidfd, Arc::clone(&liveness)));
        watched.insert(pid, Arc::downgrade(&liveness));
        Ok(liveness)
    }
}

/// The liveness of peer process `pid` (started at `start_time`); our own process is never
/// reported dead.
pub(crate) fn watch(pid: u32, start_time: u64) -> Result<Arc<Liveness>> {
    if pid == std::process::id() {
        return Ok(Arc::new(Liveness::immortal()));
    }
    watcher()?.watch(pid, start_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn sees_a_child_exit() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let pid = child.id();
        let liveness = watch(pid, start_time_of(pid).expect("child start time")).expect("watch child");
        let sink: Arc<EventSink> = Arc::new(Mutex::new(Default::default()));
        liveness.listen(&sink, 7);
        assert!(!liveness.is_dead());
        child.kill().expect("kill");
        child.wait().expect("reap");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !liveness.is_dead() {
            assert!(Instant::now() < deadline, "death not seen");
            std::thread::yield_now();
        }
        let event = sink.lock().unwrap().pop_front();
        assert_eq!(event, Some(AsyncEvent { kind: AsyncEventKind::PeerLost, qp_num: Some(7) }));
        assert!(watch(pid, 1).is_err());
    }
}
