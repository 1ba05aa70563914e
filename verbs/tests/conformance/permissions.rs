//! Permission changes: once a revocation returns, nothing with the old rights lands, even
//! with a writer hammering at that moment; and the MR lifecycle.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use usec_verbs::{AccessFlags, Completion, Payload, QpState, SendWr, Status};

use crate::setup::{Outcome, Pair, PairOptions, Provider, Side, SideOptions};
use crate::{ensure, ensure_eq};

/// What the writer thread saw.
struct WriterReport {
    writes_ok: u64,
    first_failure: Option<Status>,
}

/// Bytes per WRITE of the hammering writer: large, so that a revocation very likely
/// arrives while one is being copied (a provider without a fence then lets it land).
const HAMMER_BYTES: usize = 256 * 1024;
/// Where the writer's counter sits: the last word of each WRITE, which lands last.
const COUNTER_OFFSET: usize = HAMMER_BYTES - 8;

/// Spawns a thread that WRITEs increasing counters (in the last word of large WRITEs) to
/// the peer until one fails.
fn hammer(
    mut side: Side,
    target: usec_verbs::RemoteAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Side, WriterReport)> {
    std::thread::spawn(move || {
        let mut report = WriterReport { writes_ok: 0, first_failure: None };
        let mut batch = [Completion::default(); 1];
        let mut value = 1u64;
        let sge = side.sge(0, HAMMER_BYTES as u32);
        while !stop.load(Ordering::Acquire) {
            side.write_bytes(COUNTER_OFFSET, &value.to_ne_bytes());
            if side.qp.post_send(&[SendWr::write(value, target, &sge)]).is_err() {
                break;
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while side.cq.poll(&mut batch) == 0 {
                if Instant::now() > deadline {
                    return (side, report);
                }
                std::hint::spin_loop();
            }
            if batch[0].status != Status::Success {
                report.first_failure = Some(batch[0].status);
                break;
            }
            report.writes_ok += 1;
            value += 1;
        }
        (side, report)
    })
}

fn revoke_under_fire(
    provider: &Provider,
    refusal: Status,
    revoke: impl FnOnce(&mut Side) -> usec_verbs::Result<()>,
) -> Outcome {
    let side = SideOptions { region_len: 2 * HAMMER_BYTES, ..Default::default() };
    let pair = Pair::with(provider, &PairOptions { a: side.clone(), b: side, ..Default::default() })?;
    let Pair { a, mut b, device, .. } = pair;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = hammer(a, b.remote(0), Arc::clone(&stop));
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.read_u64(COUNTER_OFFSET) < 20 {
        if Instant::now() > deadline || writer.is_finished() {
            stop.store(true, Ordering::Release);
            return Err("the writer did not get going".into());
        }
        std::thread::yield_now();
    }
    revoke(&mut b)?;
    let at_revoke = b.read_u64(COUNTER_OFFSET);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !writer.is_finished() {
        if Instant::now() > deadline {
            stop.store(true, Ordering::Release);
            break;
        }
        // Pump b so a provider that needs the responder's polls (none should) progresses.
        b.pump();
        std::thread::yield_now();
    }
    let (_a, report) = writer.join().map_err(|_| "writer panicked")?;
    let after = b.read_u64(COUNTER_OFFSET);
    ensure_eq!(after, at_revoke, "a write landed after the revocation returned");
    ensure_eq!(report.first_failure, Some(refusal), "the writer's first failure");
    // Every success landed; beyond them, at most the WRITE in flight at the revocation
    // (a WRITE may land and still fail: the soft provider fails one it revoked while it was
    // copying, whose bytes may have made it into the copy).
    ensure!(
        report.writes_ok <= at_revoke && at_revoke <= report.writes_ok + 1,
        "writer counted {} successes but {} landed",
        report.writes_ok,
        at_revoke
    );
    drop(device);
    Ok(())
}

pub fn qp_access_revocation_under_a_writer(provider: &Provider) -> Outcome {
    // The QP no longer enables writes: an invalid request (ibv_poll_cq(3)).
    revoke_under_fire(provider, Status::RemoteInvalidRequest, |b| b.qp.set_access(AccessFlags::REMOTE_READ))
}

pub fn mr_rereg_revocation_under_a_writer(provider: &Provider) -> Outcome {
    // The MR no longer allows writes: a protection (access) error.
    revoke_under_fire(provider, Status::RemoteAccessError, |b| {
        b.mr.rereg_access(AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_READ)
    })
}

pub fn regrant_after_revocation(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    pair.b.qp.set_access(AccessFlags::REMOTE_READ)?;
    let sge = pair.a.sge(0, 8);
    // Reads are still allowed.
    pair.a.qp.post_send(&[SendWr::read(1, pair.b.remote(0), &sge)])?;
    ensure_eq!(pair.wait_a(1)?[0].status, Status::Success, "read with read rights");
    pair.b.qp.set_access(AccessFlags::REMOTE_READ | AccessFlags::REMOTE_WRITE)?;
    pair.a.qp.post_send(&[SendWr::write(2, pair.b.remote(0), Payload::Inline(b"granted!"))])?;
    ensure_eq!(pair.wait_a(1)?[0].status, Status::Success, "write after re-grant");
    ensure_eq!(pair.b.read_bytes(0, 8), b"granted!".to_vec(), "landed");
    Ok(())
}

pub fn deregistered_memory_is_unreachable(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let stale = pair.b.remote(0);
    let region = Arc::clone(&pair.b.region);
    let fresh = pair.b.pd.register(&region, AccessFlags::all_remote())?;
    pair.b.mr = fresh;
    // The first registration is dropped: its rkey must no longer work.
    pair.a.qp.post_send(&[SendWr::write(1, stale, Payload::Inline(b"x"))])?;
    ensure_eq!(pair.wait_a(1)?[0].status, Status::RemoteAccessError, "write through a deregistered rkey");
    Ok(())
}

pub fn reconnect_after_error(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    // A forged rkey, on purpose, to put the QPs in ERROR.
    let bad = usec_verbs::RemoteAddr { rkey: pair.b.mr.rkey() ^ 0x00ff_f000, ..pair.b.remote(0) };
    pair.a.qp.post_send(&[SendWr::write(1, bad, Payload::Inline(b"x"))])?;
    ensure_eq!(pair.wait_a(1)?[0].status, Status::RemoteAccessError, "provoked error");
    ensure_eq!(pair.a.qp.state(), QpState::Error, "requester in error");
    for side in [&mut pair.a, &mut pair.b] {
        side.qp.reset()?;
    }
    let (endpoint_a, endpoint_b) = (pair.a.qp.endpoint(), pair.b.qp.endpoint());
    pair.a.qp.connect(&endpoint_b, &Default::default())?;
    pair.b.qp.connect(&endpoint_a, &Default::default())?;
    pair.a.qp.post_send(&[SendWr::write(2, pair.b.remote(0), Payload::Inline(b"again"))])?;
    ensure_eq!(pair.wait_a(1)?[0].status, Status::Success, "write after reconnect");
    ensure_eq!(pair.b.read_bytes(0, 5), b"again".to_vec(), "landed");
    let sge = pair.b.sge(64, 16);
    pair.b.qp.post_recv(&[usec_verbs::RecvWr::new(3, std::slice::from_ref(&sge))])?;
    pair.a.qp.post_send(&[SendWr::send(4, Payload::Inline(b"hello"))])?;
    ensure_eq!(pair.wait_a(1)?[0].status, Status::Success, "send after reconnect");
    ensure_eq!(pair.wait_b(1)?[0].wr_id, 3, "recv after reconnect");
    Ok(())
}

/// An MR registered in another protection domain than the responder QP's is out of reach,
/// with a valid rkey and full rights: the PD is what confines a peer to the memory meant
/// for it (uBFT's single-writer registers are built on this).
pub fn mr_of_another_pd_is_unreachable(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let other_pd = pair.b.ctx.alloc_pd()?;
    let region = Arc::clone(&pair.b.region);
    let foreign = other_pd.register(&region, AccessFlags::all_remote())?;
    let target = foreign.remote_addr(0)?;
    let sge = pair.a.sge(0, 8);
    pair.a.qp.post_send(&[SendWr::read(1, target, &sge)])?;
    ensure_eq!(pair.wait_a(1)?[0].status, Status::RemoteAccessError, "read through another PD's MR");
    ensure_eq!(pair.a.qp.state(), QpState::Error, "requester in error");
    Ok(())
}
