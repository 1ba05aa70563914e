//! RC ordering, and the order in which a WRITE's bytes land.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use usec_verbs::{Payload, Region, SendWr, Status};

use crate::setup::{Outcome, Pair, PairOptions, Provider, SideOptions};
use crate::{ensure, ensure_eq};

pub fn requests_complete_in_post_order(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let count = 200u64;
    let values: Vec<[u8; 8]> = (1..=count).map(u64::to_ne_bytes).collect();
    let read_back = pair.a.sge(0, 8);
    for (i, value) in values.iter().enumerate() {
        let write = SendWr::write(i as u64 * 2, pair.b.remote(0), Payload::Inline(value));
        // Every READ follows a WRITE of the same word on the same QP: it must see it.
        let read = SendWr::read(i as u64 * 2 + 1, pair.b.remote(0), &read_back);
        pair.a.qp.post_send(&[write, read])?;
        let done = pair.wait_a(2)?;
        ensure_eq!((done[0].wr_id, done[1].wr_id), (i as u64 * 2, i as u64 * 2 + 1), "completion order");
        ensure!(done.iter().all(|c| c.status == Status::Success), "statuses {done:?}");
        ensure_eq!(pair.a.read_u64(0), i as u64 + 1, "READ after WRITE sees it");
    }
    // A burst without waiting: completions still in post order, last value wins.
    let list: Vec<SendWr<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| SendWr::write(1000 + i as u64, pair.b.remote(8), Payload::Inline(v)))
        .collect();
    for chunk in list.chunks(64) {
        pair.a.qp.post_send(chunk)?;
        let done = pair.wait_a(chunk.len())?;
        let ids: Vec<u64> = done.iter().map(|c| c.wr_id).collect();
        let expected: Vec<u64> = chunk.iter().map(|wr| wr.wr_id).collect();
        ensure_eq!(ids, expected, "burst completion order");
    }
    ensure_eq!(pair.b.read_u64(8), count, "last write wins");
    Ok(())
}

/// Reads a buffer of words from its last word down to its first. A writer landing bytes in
/// increasing address order can then never show a new word above an old one: once a new
/// word is seen going down, every lower word must be new too.
fn observe(region: &Region, offset: usize, words: usize, old: u64, new: u64) -> Result<bool, String> {
    let mut seen_new = false;
    for index in (0..words).rev() {
        let value = region.atomic_u64(offset + index * 8).expect("aligned word").load(Ordering::Acquire);
        match value {
            v if v == new => seen_new = true,
            v if v == old => {
                if seen_new {
                    return Err(format!("word {index} old below a new word: bytes landed out of order"));
                }
            }
            v => return Err(format!("word {index} holds {v:#x}, neither old {old:#x} nor new {new:#x}")),
        }
    }
    Ok(seen_new)
}

pub fn write_lands_in_increasing_address_order(provider: &Provider) -> Outcome {
    let size = 256 * 1024;
    let side = SideOptions { region_len: size * 2, ..Default::default() };
    let mut pair = Pair::with(provider, &PairOptions { a: side.clone(), b: side, ..Default::default() })?;
    let words = size / 8;
    let target: Arc<Region> = Arc::clone(&pair.b.region);
    let base = pair.b.mr.region_offset();
    let generation = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Passes the observer completed: the writer waits for one now and then, so that the
    // two really interleave however fast either side runs.
    let passes = Arc::new(AtomicU64::new(0));
    let observer = {
        let (generation, stop, passes) = (Arc::clone(&generation), Arc::clone(&stop), Arc::clone(&passes));
        std::thread::spawn(move || -> Result<u64, String> {
            let mut observations = 0u64;
            while !stop.load(Ordering::Acquire) {
                let round = generation.load(Ordering::Acquire);
                // Between rounds the buffer holds `round`; during one it goes to round + 1.
                match observe(&target, base, words, round, round + 1) {
                    Ok(_) => {
                        observations += 1;
                        passes.fetch_add(1, Ordering::Release);
                    }
                    // The writer may have moved on a round while we looked: only a
                    // consistent round counts.
                    Err(_) if generation.load(Ordering::Acquire) != round => {}
                    Err(err) => return Err(err),
                }
            }
            Ok(observations)
        })
    };
    for round in 0..40u64 {
        if round % 8 == 0 {
            let seen = passes.load(Ordering::Acquire);
            let start = std::time::Instant::now();
            while passes.load(Ordering::Acquire) == seen
                && start.elapsed() < std::time::Duration::from_secs(5)
            {
                std::thread::yield_now();
            }
        }
        let fill: Vec<u8> = std::iter::repeat_n(round + 1, words).flat_map(u64::to_ne_bytes).collect();
        pair.a.write_bytes(0, &fill);
        let sge = pair.a.sge(0, size as u32);
        pair.a.qp.post_send(&[SendWr::write(round, pair.b.remote(0), &sge)])?;
        ensure_eq!(pair.wait_a(1)?[0].status, Status::Success, "write status");
        generation.store(round + 1, Ordering::Release);
    }
    stop.store(true, Ordering::Release);
    let observations = observer.join().map_err(|_| "observer panicked")??;
    ensure!(observations > 0, "the observer never completed a pass");
    ensure_eq!(pair.b.read_u64(size - 8), 40, "final contents");
    Ok(())
}
