//! Every error status a NIC reports, what it does to the QPs on both ends, and flushing.

use std::time::Duration;

use usec_verbs::qp::{RtrAttributes, RtsAttributes};
use usec_verbs::{
    AccessFlags, AsyncEventKind, ConnectOptions, Payload, QpState, RecvWr, RemoteAddr, SendWr, Sge, Status,
};

use crate::setup::{connect_with_access, wait, Outcome, Pair, PairOptions, Provider, RxeQuirk, SideOptions};
use crate::{ensure, ensure_eq};

/// Posts `wr` from a to b and checks the failure: its status, a's QP in ERROR, the next
/// request flushed, and (for responder-detected errors) b's QP in ERROR with its event.
fn expect_failure(
    pair: &mut Pair,
    wr: SendWr<'_>,
    status: Status,
    responder_event: Option<AsyncEventKind>,
) -> Outcome {
    pair.a.qp.post_send(&[wr])?;
    let done = pair.wait_a(1)?;
    ensure_eq!(done[0].status, status, "status of the failing request");
    ensure_eq!(done[0].wr_id, wr.wr_id, "wr_id");
    ensure_eq!(pair.a.qp.state(), QpState::Error, "requester QP state");
    pair.a.qp.post_send(&[SendWr::write(999, pair.b.remote(0), Payload::Inline(b"late"))])?;
    let flushed = pair.wait_a(1)?;
    ensure_eq!(flushed[0].status, Status::Flushed, "request after the error");
    ensure_eq!(flushed[0].wr_id, 999, "flushed wr_id");
    if let Some(kind) = responder_event {
        ensure_eq!(pair.b.qp.state(), QpState::Error, "responder QP state");
        if pair.provider.has_quirk(RxeQuirk::NoResponderAsyncEvents) {
            return Ok(());
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match pair.b.ctx.poll_event() {
                Some(event) if event.kind == kind && event.qp_num == Some(pair.b.qp.qp_num()) => break,
                Some(_) => {}
                None => ensure!(std::time::Instant::now() < deadline, "no {kind:?} event at the responder"),
            }
        }
    }
    Ok(())
}

pub fn bad_rkey(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    // A forged rkey, built by hand on purpose: no descriptor names it.
    let remote = RemoteAddr { rkey: pair.b.mr.rkey() ^ 0x00ff_f000, ..pair.b.remote(0) };
    expect_failure(
        &mut pair,
        SendWr::write(1, remote, Payload::Inline(b"x")),
        Status::RemoteAccessError,
        Some(AsyncEventKind::QpAccessError),
    )
}

pub fn out_of_bounds(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let past = pair.b.remote(pair.b.mr.len() - 4);
    expect_failure(
        &mut pair,
        SendWr::write(1, past, Payload::Inline(b"12345678")),
        Status::RemoteAccessError,
        Some(AsyncEventKind::QpAccessError),
    )
}

pub fn address_overflow(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    // Out of bounds on purpose (RemoteAddr::within would refuse it): the responder's check is under test.
    let wrap = RemoteAddr { addr: u64::MAX - 3, rkey: pair.b.mr.rkey() };
    expect_failure(
        &mut pair,
        SendWr::write(1, wrap, Payload::Inline(b"12345678")),
        Status::RemoteAccessError,
        Some(AsyncEventKind::QpAccessError),
    )
}

pub fn mr_lacks_remote_write(provider: &Provider) -> Outcome {
    let options = PairOptions {
        b: SideOptions {
            mr_access: AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_READ,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut pair = Pair::with(provider, &options)?;
    let remote = pair.b.remote(0);
    expect_failure(
        &mut pair,
        SendWr::write(1, remote, Payload::Inline(b"x")),
        Status::RemoteAccessError,
        Some(AsyncEventKind::QpAccessError),
    )
}

pub fn qp_lacks_remote_read(provider: &Provider) -> Outcome {
    let options =
        PairOptions { connect_b: connect_with_access(AccessFlags::REMOTE_WRITE), ..Default::default() };
    let mut pair = Pair::with(provider, &options)?;
    let sge = pair.a.sge(0, 8);
    let remote = pair.b.remote(0);
    // ibv_poll_cq(3): an operation the responder QP's access flags do not enable is an
    // invalid request (an access error is about keys, MR rights and bounds).
    expect_failure(
        &mut pair,
        SendWr::read(1, remote, &sge),
        Status::RemoteInvalidRequest,
        Some(AsyncEventKind::QpRequestError),
    )
}

/// rxe refuses malformed atomics when they are posted; check that instead.
fn refused_at_post(pair: &mut Pair, wr: SendWr<'_>) -> Outcome {
    use usec_verbs::Error;
    let result = pair.a.qp.post_send(&[wr]);
    ensure!(
        matches!(result, Err(Error::PostRejected { index: 0, .. })),
        "expected a refusal at post: {result:?}"
    );
    Ok(())
}

pub fn misaligned_atomic(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let sge = pair.a.sge(0, 8);
    let remote = pair.b.remote(4);
    if provider.has_quirk(RxeQuirk::AtomicsCheckedAtPost) {
        return refused_at_post(&mut pair, SendWr::fetch_add(1, remote, 1, &sge));
    }
    expect_failure(
        &mut pair,
        SendWr::fetch_add(1, remote, 1, &sge),
        Status::RemoteInvalidRequest,
        Some(AsyncEventKind::QpRequestError),
    )
}

pub fn bad_lkey(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let sge = Sge { lkey: pair.a.mr.lkey() ^ 0x00ff_f000, ..pair.a.sge(0, 8) };
    let remote = pair.b.remote(0);
    let status = if provider.has_quirk(RxeQuirk::BadLkeyIsQpOperationError) {
        Status::LocalQpOperationError
    } else {
        Status::LocalProtectionError
    };
    expect_failure(&mut pair, SendWr::write(1, remote, &sge), status, None)
}

pub fn local_sge_outside_mr(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let end = pair.a.mr.addr() + pair.a.mr.len() as u64;
    let sge = Sge { addr: end - 4, len: 8, lkey: pair.a.mr.lkey() };
    let remote = pair.b.remote(0);
    expect_failure(&mut pair, SendWr::write(1, remote, &sge), Status::LocalProtectionError, None)
}

pub fn read_into_memory_without_local_write(provider: &Provider) -> Outcome {
    let options = PairOptions {
        a: SideOptions { mr_access: AccessFlags::REMOTE_READ, ..Default::default() },
        ..Default::default()
    };
    let mut pair = Pair::with(provider, &options)?;
    let sge = pair.a.sge(0, 8);
    let remote = pair.b.remote(0);
    expect_failure(&mut pair, SendWr::read(1, remote, &sge), Status::LocalProtectionError, None)
}

pub fn atomic_with_wrong_local_length(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let sge = pair.a.sge(0, 4);
    let remote = pair.b.remote(0);
    if provider.has_quirk(RxeQuirk::AtomicsCheckedAtPost) {
        return refused_at_post(&mut pair, SendWr::fetch_add(1, remote, 1, &sge));
    }
    expect_failure(&mut pair, SendWr::fetch_add(1, remote, 1, &sge), Status::LocalLengthError, None)
}

pub fn recv_buffer_too_small(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let small = pair.b.sge(0, 4);
    pair.b.qp.post_recv(&[RecvWr::new(5, std::slice::from_ref(&small))])?;
    pair.a.qp.post_send(&[SendWr::send(1, Payload::Inline(b"too long for it"))])?;
    let (sender, receiver) = if provider.has_quirk(RxeQuirk::ShortRecvIsOperationError) {
        (Status::RemoteOperationError, Status::LocalQpOperationError)
    } else {
        (Status::RemoteInvalidRequest, Status::LocalLengthError)
    };
    ensure_eq!(pair.wait_a(1)?[0].status, sender, "sender's status");
    let received = pair.wait_b(1)?;
    ensure_eq!(received[0].status, receiver, "receiver's status");
    ensure_eq!(received[0].wr_id, 5, "receiver's wr_id");
    ensure_eq!(pair.b.qp.state(), QpState::Error, "receiver QP state");
    Ok(())
}

fn impatient_rnr() -> ConnectOptions {
    ConnectOptions {
        rtr: RtrAttributes { min_rnr_timer: 1, ..Default::default() },
        rts: RtsAttributes { rnr_retry: 2, ..Default::default() },
        ..Default::default()
    }
}

pub fn rnr_retry_exceeded(provider: &Provider) -> Outcome {
    let options =
        PairOptions { connect_a: impatient_rnr(), connect_b: impatient_rnr(), ..Default::default() };
    let mut pair = Pair::with(provider, &options)?;
    pair.a.qp.post_send(&[SendWr::send(1, Payload::Inline(b"nobody listens"))])?;
    ensure_eq!(pair.wait_a(1)?[0].status, Status::RnrRetryExceeded, "status");
    ensure_eq!(pair.a.qp.state(), QpState::Error, "requester QP state");
    Ok(())
}

pub fn rnr_then_recv_arrives(provider: &Provider) -> Outcome {
    // rnr_retry 7 retries forever: the SEND waits for the RECV posted later.
    let mut pair = Pair::new(provider)?;
    pair.a.qp.post_send(&[SendWr::send(1, Payload::Inline(b"patience"))])?;
    pair.a.qp.post_send(&[SendWr::write(2, pair.b.remote(64), Payload::Inline(b"after"))])?;
    for _ in 0..50 {
        pair.a.pump();
        pair.b.pump();
    }
    ensure!(pair.a.stash.is_empty(), "nothing completes before a RECV is posted: {:?}", pair.a.stash);
    ensure_eq!(pair.b.read_bytes(64, 5), vec![0; 5], "the later WRITE waits behind the SEND");
    let sge = pair.b.sge(0, 64);
    pair.b.qp.post_recv(&[RecvWr::new(3, std::slice::from_ref(&sge))])?;
    let done = pair.wait_a(2)?;
    ensure_eq!((done[0].wr_id, done[0].status), (1, Status::Success), "the SEND");
    ensure_eq!((done[1].wr_id, done[1].status), (2, Status::Success), "the WRITE after it");
    ensure_eq!(pair.wait_b(1)?[0].byte_len, 8, "received");
    ensure_eq!(pair.b.read_bytes(64, 5), b"after".to_vec(), "the later WRITE landed");
    Ok(())
}

pub fn error_flushes_everything(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let sges: Vec<Sge> = (0..3).map(|i| pair.b.sge(i * 64, 64)).collect();
    for (i, sge) in sges.iter().enumerate() {
        pair.b.qp.post_recv(&[RecvWr::new(10 + i as u64, std::slice::from_ref(sge))])?;
    }
    pair.b.qp.modify_to_error()?;
    let flushed = wait(&mut pair.b, 3, None, crate::setup::DEFAULT_WAIT)?;
    let ids: Vec<u64> = flushed.iter().map(|c| c.wr_id).collect();
    ensure_eq!(ids, vec![10, 11, 12], "posted RECVs flush in order");
    ensure!(flushed.iter().all(|c| c.status == Status::Flushed), "all flushed: {flushed:?}");
    pair.b.qp.post_recv(&[RecvWr::new(20, std::slice::from_ref(&sges[0]))])?;
    let late = wait(&mut pair.b, 1, None, crate::setup::DEFAULT_WAIT)?;
    ensure_eq!((late[0].wr_id, late[0].status), (20, Status::Flushed), "RECV posted in ERROR");
    Ok(())
}

pub fn post_time_refusals(provider: &Provider) -> Outcome {
    use usec_verbs::{Error, PostRejection};
    let device = provider.fresh_device();
    let mut side = crate::setup::Side::new(&device, &SideOptions::default())?;
    let inline = [SendWr::write(1, RemoteAddr::default(), Payload::Inline(b"x"))];
    match side.qp.post_send(&inline) {
        Err(Error::PostRejected { index: 0, reason: PostRejection::QpState { state: QpState::Reset } }) => {}
        other => return Err(format!("send in RESET: {other:?}").into()),
    }
    let sge = side.sge(0, 8);
    match side.qp.post_recv(&[RecvWr::new(1, std::slice::from_ref(&sge))]) {
        Err(Error::PostRejected { reason: PostRejection::QpState { .. }, .. }) => {}
        other => return Err(format!("recv in RESET: {other:?}").into()),
    }
    let mut pair = Pair::new(provider)?;
    let max_inline = pair.a.qp.caps().max_inline_data as usize;
    let big = vec![0u8; max_inline + 1];
    let wr = SendWr::write(1, pair.b.remote(0), Payload::Inline(&big));
    ensure!(
        matches!(
            pair.a.qp.post_send(&[wr]),
            Err(Error::PostRejected { reason: PostRejection::InlineTooLarge { .. }, .. })
        ),
        "inline too large"
    );
    let wr = SendWr::read(1, pair.b.remote(0), Payload::Inline(b"12345678"));
    ensure!(
        matches!(
            pair.a.qp.post_send(&[wr]),
            Err(Error::PostRejected { reason: PostRejection::InlineNotAllowed { .. }, .. })
        ),
        "inline READ"
    );
    let too_many = pair.a.qp.caps().max_send_sge as usize + 1;
    let sges: Vec<Sge> = (0..too_many).map(|i| pair.a.sge(i, 1)).collect();
    let wr = SendWr::write(1, pair.b.remote(0), &sges[..]);
    ensure!(
        matches!(
            pair.a.qp.post_send(&[wr]),
            Err(Error::PostRejected { reason: PostRejection::TooManySges { .. }, .. })
        ),
        "too many SGEs"
    );
    ensure_eq!(pair.a.qp.state(), QpState::Rts, "refusals leave the QP alone");
    Ok(())
}

pub fn send_queue_full(provider: &Provider) -> Outcome {
    use usec_verbs::{Error, PostRejection, QpCaps};
    let caps = QpCaps { max_send_wr: 4, ..QpCaps::default() };
    let options = PairOptions { a: SideOptions { caps, ..Default::default() }, ..Default::default() };
    let mut pair = Pair::with(provider, &options)?;
    let depth = pair.a.qp.caps().max_send_wr as usize;
    let remote = pair.b.remote(0);
    let list: Vec<SendWr<'_>> =
        (0..depth + 1).map(|i| SendWr::write(i as u64, remote, Payload::Inline(b"x"))).collect();
    if pair.provider.has_quirk(RxeQuirk::SendQueueDeeperThanReported) {
        // Check what rxe does promise: any refusal is QueueFull past the reported depth,
        // and everything it accepted completes.
        let accepted = match pair.a.qp.post_send(&list) {
            Ok(()) => list.len(),
            Err(Error::PostRejected { index, reason: PostRejection::QueueFull { .. } }) if index >= depth => {
                index
            }
            other => return Err(format!("posting {} into a queue of {depth}: {other:?}", depth + 1).into()),
        };
        let done = pair.wait_a(accepted)?;
        ensure!(done.iter().all(|c| c.status == Status::Success), "the posted ones complete: {done:?}");
        return Ok(());
    }
    match pair.a.qp.post_send(&list) {
        Err(Error::PostRejected { index, reason: PostRejection::QueueFull { .. } }) if index == depth => {}
        other => return Err(format!("posting {} into a queue of {depth}: {other:?}", depth + 1).into()),
    }
    let done = pair.wait_a(depth)?;
    ensure!(done.iter().all(|c| c.status == Status::Success), "the posted ones complete: {done:?}");
    pair.a.qp.post_send(&list[..1])?;
    ensure_eq!(pair.wait_a(1)?[0].status, Status::Success, "room again after polling");
    Ok(())
}

pub fn state_machine_refuses_bad_transitions(provider: &Provider) -> Outcome {
    use usec_verbs::Error;
    let device = provider.fresh_device();
    let mut side = crate::setup::Side::new(&device, &SideOptions::default())?;
    let endpoint = side.qp.endpoint();
    ensure!(
        matches!(side.qp.modify_to_rtr(&endpoint, &Default::default()), Err(Error::InvalidTransition { .. })),
        "RESET -> RTR"
    );
    ensure!(
        matches!(side.qp.modify_to_rts(&Default::default()), Err(Error::InvalidTransition { .. })),
        "RESET -> RTS"
    );
    ensure!(
        matches!(side.qp.set_access(AccessFlags::REMOTE_READ), Err(Error::InvalidTransition { .. })),
        "access in RESET"
    );
    side.qp.modify_to_init(&Default::default())?;
    ensure!(
        matches!(side.qp.modify_to_rts(&Default::default()), Err(Error::InvalidTransition { .. })),
        "INIT -> RTS"
    );
    side.qp.modify_to_error()?;
    ensure!(
        matches!(side.qp.modify_to_init(&Default::default()), Err(Error::InvalidTransition { .. })),
        "ERROR -> INIT"
    );
    side.qp.reset()?;
    ensure_eq!(side.qp.state(), QpState::Reset, "back to RESET");
    Ok(())
}

pub fn foreign_endpoints_are_refused(provider: &Provider) -> Outcome {
    use usec_verbs::qp::{Address, Endpoint, Mtu};
    let device = provider.fresh_device();
    let mut side = crate::setup::Side::new(&device, &SideOptions::default())?;
    side.qp.modify_to_init(&Default::default())?;
    let foreign =
        Endpoint { qp_num: 1, psn: 0, mtu: Mtu::Mtu1024, address: Address::Sim { fabric: 12345, node: 9 } };
    let other_fabric =
        Endpoint { address: Address::Soft { fabric: 1, pid: 1, node: 1, nonce: 1 }, ..foreign };
    for endpoint in [foreign, other_fabric] {
        if provider.kind() == usec_verbs::ProviderKind::Sim && matches!(endpoint.address, Address::Sim { .. })
        {
            continue;
        }
        ensure!(
            side.qp.modify_to_rtr(&endpoint, &Default::default()).is_err(),
            "RTR to {endpoint:?} accepted"
        );
    }
    Ok(())
}
