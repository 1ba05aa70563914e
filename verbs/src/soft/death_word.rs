//! A node's death word: a 32-bit word in its control block that the kernel itself marks
//! when the node's process dies, long before the process's pidfd turns readable.
//!
//! A pidfd (see `liveness.rs`) turns readable only once the whole process has exited:
//! after its last thread tore its memory down, which for a replica mapping its peers'
//! regions takes a few hundred microseconds, more on a busy machine. The kernel does
//! something for a dying process much earlier: each exiting thread's *robust futex list*
//! (`set_robust_list(2)`, the mechanism behind robust mutexes) is walked at the start of
//! `exit_mm`, before any memory is torn down, and every futex word on it that holds the
//! thread's id gets `FUTEX_OWNER_DIED` set, in whatever file it lives. So each node
//! starts a keeper thread that writes its own thread id into the node's death word and
//! puts that word, alone, on its robust list; then it sleeps until the node closes. When
//! the process is killed (SIGKILL included: every thread runs `do_exit`) or replaces its
//! image (`execve` walks the list too), the word turns `FUTEX_OWNER_DIED` while peers
//! still have it mapped, and a peer's look at it is one load.
//!
//! When the node closes, the keeper takes the word off its list before it ends, so a clean
//! close is reported by the header's `closed` flag, not as a death. A word that never
//! turns (a kernel without robust futexes, a keeper that could not start) leaves the pidfd
//! to report the death, as before.

use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::primitive::sync::atomic::{AtomicU32, Ordering};

/// What the kernel sets in a robust futex word whose owner died.
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;

/// Whether a death word says its owner died.
#[inline]
pub(crate) fn owner_died(word: &AtomicU32) -> bool {
    word.load(Ordering::Acquire) & FUTEX_OWNER_DIED != 0
}

/// The kernel's `struct robust_list`.
#[repr(C)]
struct RobustList {
    next: *const RobustList,
}

/// The kernel's `struct robust_list_head`.
#[repr(C)]
struct RobustListHead {
    list: RobustList,
    /// Where an entry's futex word is, from the entry.
    futex_offset: libc::c_long,
    list_op_pending: *const RobustList,
}

/// The word's address, sendable to the keeper thread.
#[derive(Clone, Copy)]
struct WordAddress(usize);

/// The owner's side: the keeper thread, until the node closes.
#[derive(Debug)]
pub(crate) struct DeathWord {
    stop: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
}

impl DeathWord {
    /// Arms `word` (zero, in the node's mapped control block): returns once the keeper
    /// thread has put it on its robust list. The word must stay mapped until
    /// [`DeathWord::disarm`] returns.
    pub(crate) fn arm(word: &AtomicU32) -> Result<DeathWord> {
        let address = WordAddress(word as *const AtomicU32 as usize);
        let (armed_tx, armed_rx) = mpsc::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        let keeper = std::thread::Builder::new()
            .name("usec-soft-death".into())
            .spawn(move || keep(address, &armed_tx, &stopped))
            .map_err(|err| Error::os("spawning the death word's keeper", err))?;
        let armed = armed_rx.recv().unwrap_or(Err(0));
        let mut death_word = DeathWord { stop: Some(stop), keeper: Some(keeper) };
        if let Err(errno) = armed {
            death_word.disarm();
            let err = std::io::Error::from_raw_os_error(errno);
            return Err(Error::os("set_robust_list", err));
        }
        Ok(death_word)
    }

    /// Takes the word off the keeper's list and ends the keeper. After it the word is
    /// never marked (it may be unmapped).
    pub(crate) fn disarm(&mut self) {
        drop(self.stop.take());
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}

impl Drop for DeathWord {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// The keeper thread: arms the word, says so, sleeps until told to stop (or the owner
/// goes), disarms it.
fn keep(address: WordAddress, armed: &mpsc::Sender<std::result::Result<(), i32>>, stop: &mpsc::Receiver<()>) {
    // The owner keeps the control block mapped until `disarm` has joined this thread.
    // SAFETY: `address` is an `AtomicU32` in that mapping, alive for this thread's life.
    let word = unsafe { &*(address.0 as *const AtomicU32) };
    // Lives on this thread's stack, which outlives every use the kernel makes of it: the
    // list is walked at this thread's exit (the stack still mapped) or emptied below.
    let mut entry = RobustList { next: std::ptr::null() };
    let mut head = RobustListHead {
        list: RobustList { next: std::ptr::null() },
        futex_offset: (address.0 as isize).wrapping_sub(&entry as *const RobustList as isize) as libc::c_long,
        list_op_pending: std::ptr::null(),
    };
    // The kernel marks a word only if it holds the dying thread's id.
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
    word.store(tid, Ordering::Release);
    // A circular list of one entry: head → entry → head.
    entry.next = &head.list;
    head.list.next = &entry;
    let head_size = std::mem::size_of::<RobustListHead>();
    let head_address = &head as *const RobustListHead;
    // `head` stays in place until the list is replaced below (or the thread dies, when the
    // kernel walks it).
    // SAFETY: `head_address` is a valid robust list head for this thread, alive as long.
    let result = unsafe { libc::syscall(libc::SYS_set_robust_list, head_address, head_size) };
    if result != 0 {
        word.store(0, Ordering::Release);
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let _ = armed.send(Err(errno));
        return;
    }
    let _ = armed.send(Ok(()));
    // Until the node closes (or drops its sender without a word).
    let _ = stop.recv();
    // The thread goes on after this function returns (the runtime's exit path), and the
    // kernel walks whatever head is registered when it finally exits: not `head`, whose
    // stack slot is reused by then, but an empty head that lives for the process. Then
    // the word gets nobody's id: a clean end of this thread marks nothing.
    // SAFETY: `empty_head` is a valid, empty robust list head that is never freed.
    unsafe { libc::syscall(libc::SYS_set_robust_list, empty_head(), head_size) };
    word.store(0, Ordering::Release);
    // `head` and `entry` stay alive (and in place) until here.
    let _ = (&head, &entry);
}

/// An empty robust list head (its list pointing at itself), allocated once and never
/// freed: what an ending keeper leaves registered.
fn empty_head() -> *const RobustListHead {
    static EMPTY: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let address = *EMPTY.get_or_init(|| {
        let head = Box::leak(Box::new(RobustListHead {
            list: RobustList { next: std::ptr::null() },
            futex_offset: 0,
            list_op_pending: std::ptr::null(),
        }));
        head.list.next = &head.list;
        head as *const RobustListHead as usize
    });
    address as *const RobustListHead
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clean disarm leaves the word unmarked (and clear of any thread id).
    #[test]
    fn a_disarmed_word_is_not_marked() {
        let word = Box::new(AtomicU32::new(0));
        let mut death_word = DeathWord::arm(&word).expect("arming");
        assert_ne!(word.load(Ordering::Acquire), 0, "armed with the keeper's id");
        death_word.disarm();
        assert_eq!(word.load(Ordering::Acquire), 0);
        assert!(!owner_died(&word));
    }
}
