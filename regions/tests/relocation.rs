//! Moving a region to a fresh file: contents and address survive, the old file is an
//! orphan, no store of this process is lost, and faults that are not a move's still crash.
//!
//! Not under Miri: moves are memfds, `mprotect`, `mremap` and a signal handler, none of
//! which Miri interprets.
#![cfg(not(miri))]

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use usec_regions::{Region, RegionOptions};

const CHILD_ENV: &str = "USEC_RELOCATION_TEST_CHILD";

fn region(len: usize) -> Region {
    Region::with_options(&RegionOptions {
        huge_pages: usec_regions::HugePages::Never,
        ..RegionOptions::new(len)
    })
    .unwrap()
}

/// A second mapping of the region's current file, as a peer process would have.
fn peer_view(region: &Region) -> Region {
    let path = format!("/proc/self/fd/{}", region.fd().as_raw_fd());
    let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
    Region::from_file(file, region.len(), false).unwrap()
}

#[test]
fn contents_and_address_survive_a_move() {
    let region = region(1 << 20);
    let pattern: Vec<u8> = (0..region.len()).map(|i| (i * 7 % 251) as u8).collect();
    region.write(0, &pattern).unwrap();
    let (addr, fd) = (region.addr(), region.fd().as_raw_fd());
    region.relocate().unwrap();
    assert_eq!(region.addr(), addr, "same address");
    assert_ne!(region.fd().as_raw_fd(), fd, "a fresh file");
    let mut back = vec![0u8; region.len()];
    region.read(0, &mut back).unwrap();
    assert!(back == pattern, "same contents");
    region.write(5, b"after").unwrap();
    region.read(5, &mut back[..5]).unwrap();
    assert_eq!(&back[..5], b"after");
    // A peer that maps the fresh file sees the region.
    let mut seen = [0u8; 5];
    peer_view(&region).read(5, &mut seen).unwrap();
    assert_eq!(&seen, b"after");
}

#[test]
fn the_old_file_becomes_an_orphan() {
    let region = region(64 * 1024);
    let stale = peer_view(&region);
    stale.write(0, b"before the move").unwrap();
    region.relocate().unwrap();
    let mut seen = [0u8; 15];
    region.read(0, &mut seen).unwrap();
    assert_eq!(&seen, b"before the move", "what the old file held was copied");
    stale.write(0, b"after the move!").unwrap();
    stale.write(4096, b"late").unwrap();
    region.read(0, &mut seen).unwrap();
    assert_eq!(&seen, b"before the move", "a late write to the old file stays there");
    assert_eq!(region.read_pod::<[u8; 4]>(4096).unwrap(), [0; 4]);
}

#[test]
fn no_store_of_this_process_is_lost_while_it_moves() {
    const THREADS: u64 = 2;
    const INCREMENTS: u64 = 200_000;
    let region = Arc::new(region(256 * 1024));
    let done = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let region = Arc::clone(&region);
            std::thread::spawn(move || {
                // One shared counter (atomics) and one private word (plain copies).
                let counter = region.atomic_u64(0).unwrap();
                let own = 4096 * (1 + thread as usize);
                for i in 1..=INCREMENTS {
                    counter.fetch_add(1, Ordering::Relaxed);
                    region.write_pod(own, &i).unwrap();
                }
            })
        })
        .collect();
    let mover = {
        let (region, done) = (Arc::clone(&region), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut moves = 0u64;
            while !done.load(Ordering::Acquire) || moves == 0 {
                region.relocate().unwrap();
                moves += 1;
            }
            moves
        })
    };
    for worker in workers {
        worker.join().unwrap();
    }
    done.store(true, Ordering::Release);
    let moves = mover.join().unwrap();
    eprintln!("{moves} moves under {THREADS} writers");
    assert_eq!(region.atomic_u64(0).unwrap().load(Ordering::Relaxed), THREADS * INCREMENTS);
    for thread in 0..THREADS as usize {
        assert_eq!(region.read_pod::<u64>(4096 * (1 + thread)).unwrap(), INCREMENTS);
    }
}

#[test]
fn a_fault_that_is_not_a_move_still_crashes() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let region = region(4096);
        region.relocate().unwrap();
        // A wild store: the handler must pass it on, and the process must die of it.
        let wild = std::hint::black_box(16usize) as *mut u64;
        // SAFETY: deliberately not: this store faults, which is what is tested.
        unsafe { wild.write_volatile(1) };
        std::process::exit(0);
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_fault_that_is_not_a_move_still_crashes", "--nocapture"])
        .env(CHILD_ENV, "1")
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "the child's fate: {status:?}");
}
