//! Retiring a responder QP under fire: once the target destroys its QP, resets it or
//! moves it to ERROR, and then deregisters its memory, nothing more lands there, even with
//! a writer hammering at that moment; and every WRITE the writer saw succeed is there.
//!
//! The writer fills each large WRITE with one value in every 8-byte word, one more each
//! time, so what the target holds says which WRITEs landed: a WRITE lands in increasing
//! address order, so memory is always a prefix of the WRITE in flight over the last one
//! that finished.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use usec_verbs::qp::RtsAttributes;
use usec_verbs::{Completion, ConnectOptions, RemoteAddr, SendWr, Status};

use crate::setup::{Outcome, Pair, PairOptions, Provider, RxeQuirk, Side, SideOptions};
use crate::{ensure, ensure_eq};

/// Bytes per WRITE: large, so that the retirement very likely meets one being copied.
const HAMMER_BYTES: usize = 256 * 1024;
const WORDS: usize = HAMMER_BYTES / 8;
/// Rounds per test: a provider that lets a WRITE land late fails at least one of them
/// unless every retirement happened to fall between two WRITEs.
const ROUNDS: usize = 8;

/// Short transport timers, so the writer hears of the retired QP quickly on every
/// provider (4 µs × 2^10 ≈ 4 ms per try, 3 retries).
fn impatient() -> ConnectOptions {
    ConnectOptions {
        rts: RtsAttributes { timeout: 10, retry_count: 3, ..Default::default() },
        ..Default::default()
    }
}

/// What the writer saw: how many WRITEs succeeded (values 1..=successes) and the status
/// of the first that did not.
struct WriterReport {
    successes: u64,
    first_failure: Option<Status>,
}

/// Spawns a thread that WRITEs value 1, 2, 3, … (in every word) to `target` until one
/// fails or `stop` is raised.
fn hammer(
    mut side: Side,
    target: RemoteAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Side, WriterReport)> {
    std::thread::spawn(move || {
        let mut report = WriterReport { successes: 0, first_failure: None };
        let mut batch = [Completion::default(); 1];
        let mut bytes = vec![0u8; HAMMER_BYTES];
        let sge = side.sge(0, HAMMER_BYTES as u32);
        for value in 1u64.. {
            if stop.load(Ordering::Acquire) {
                break;
            }
            for word in bytes.chunks_exact_mut(8) {
                word.copy_from_slice(&value.to_ne_bytes());
            }
            side.write_bytes(0, &bytes);
            if side.qp.post_send(&[SendWr::write(value, target, &sge)]).is_err() {
                break;
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while side.cq.poll(&mut batch) == 0 {
                if Instant::now() > deadline || stop.load(Ordering::Acquire) {
                    return (side, report);
                }
                std::hint::spin_loop();
            }
            if batch[0].status != Status::Success {
                report.first_failure = Some(batch[0].status);
                break;
            }
            report.successes = value;
        }
        (side, report)
    })
}

/// The words of `region` at `offset..offset + HAMMER_BYTES`.
fn words_at(region: &usec_verbs::Region, offset: usize) -> Vec<u64> {
    let mut bytes = vec![0u8; HAMMER_BYTES];
    region.read(offset, &mut bytes).expect("in bounds");
    bytes.chunks_exact(8).map(|word| u64::from_ne_bytes(word.try_into().expect("8 bytes"))).collect()
}

/// How the target retires its QP.
#[derive(Clone, Copy, Debug)]
enum Retirement {
    Destroy,
    Reset,
    Error,
}

/// One round: the writer gets going, the target retires its QP, then deregisters its MR;
/// memory must not change after either call returned.
fn retire_round(provider: &Provider, retirement: Retirement) -> Outcome {
    let side = SideOptions { region_len: 2 * HAMMER_BYTES, ..Default::default() };
    let options = PairOptions { a: side.clone(), b: side, connect_a: impatient(), ..Default::default() };
    let Pair { a, b, device, .. } = Pair::with(provider, &options)?;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = hammer(a, b.remote(0), Arc::clone(&stop));
    let deadline = Instant::now() + Duration::from_secs(20);
    while words_at(&b.region, b.mr.region_offset())[WORDS - 1] < 20 {
        if Instant::now() > deadline || writer.is_finished() {
            stop.store(true, Ordering::Release);
            return Err("the writer did not get going".into());
        }
        std::thread::yield_now();
    }
    let Side { mut qp, mr, region, cq, pd, ctx, .. } = b;
    match retirement {
        Retirement::Destroy => drop(qp),
        Retirement::Reset => qp.reset()?,
        Retirement::Error => qp.modify_to_error()?,
    }
    let region_offset = mr.region_offset();
    let read_all = || words_at(&region, region_offset);
    let after_retirement = read_all();
    drop(mr);
    let after_deregistration = read_all();
    let joined = Instant::now() + Duration::from_secs(30);
    while !writer.is_finished() {
        if Instant::now() > joined {
            stop.store(true, Ordering::Release);
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (_a, report) = writer.join().map_err(|_| "writer panicked")?;
    let at_end = read_all();
    let failure = report.first_failure.ok_or("the writer stopped without a failure")?;
    if provider.has_quirk(RxeQuirk::RetirementIsNoFence) {
        // What rxe does promise: once the writer saw its WRITEs fail, nothing more lands.
        // (Which of the WRITEs in flight landed, and how much of each, it does not say.)
        std::thread::sleep(Duration::from_millis(100));
        ensure!(read_all() == at_end, "{retirement:?}: a WRITE landed after the writer saw its WRITEs fail");
        ensure_eq!(failure, Status::RetryExceeded, "{retirement:?}: the writer's first failure");
        drop((cq, pd, ctx, region));
        drop(device);
        return Ok(());
    } else {
        ensure!(
            after_retirement == after_deregistration,
            "{retirement:?}: a WRITE landed after the QP was retired and before deregistration returned"
        );
        ensure!(after_retirement == at_end, "{retirement:?}: a WRITE landed after the MR was deregistered");
    }
    let last = at_end[WORDS - 1];
    ensure!(
        last >= report.successes,
        "{retirement:?}: the writer saw WRITE {} succeed but only {last} landed",
        report.successes
    );
    ensure!(
        last <= report.successes + 1,
        "{retirement:?}: WRITE {last} landed, but the writer saw only {} succeed and had one in flight",
        report.successes
    );
    // A prefix of the WRITE in flight over the last complete one.
    let torn = at_end.iter().take_while(|&&word| word == last + 1).count();
    ensure!(
        at_end[torn..].iter().all(|&word| word == last),
        "{retirement:?}: memory is not a prefix of WRITE {} over WRITE {last}",
        last + 1
    );
    // A retired responder stops answering: the writer runs out of retries (rxe0 too).
    ensure_eq!(failure, Status::RetryExceeded, "{retirement:?}: the writer's first failure");
    eprintln!(
        "[{}] {retirement:?}: writer failed with {failure} after {} WRITEs",
        provider.label(),
        report.successes
    );
    drop((cq, pd, ctx, region));
    drop(device);
    Ok(())
}

fn retire_under_fire(provider: &Provider, retirement: Retirement) -> Outcome {
    for _ in 0..ROUNDS {
        retire_round(provider, retirement)?;
    }
    Ok(())
}

pub fn destroyed_qp_then_deregistered_mr_under_a_writer(provider: &Provider) -> Outcome {
    retire_under_fire(provider, Retirement::Destroy)
}

pub fn reset_qp_then_deregistered_mr_under_a_writer(provider: &Provider) -> Outcome {
    retire_under_fire(provider, Retirement::Reset)
}

pub fn errored_qp_then_deregistered_mr_under_a_writer(provider: &Provider) -> Outcome {
    retire_under_fire(provider, Retirement::Error)
}
