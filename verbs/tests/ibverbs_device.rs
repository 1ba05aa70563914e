//! Behaviour specific to the ibverbs provider.
//!
//! The host-side tests run everywhere. The device tests need a real device, named by the
//! environment variable `USEC_IBVERBS_DEVICE` (e.g. `rxe0` inside the SoftRoCE VM:
//! `tools/rxe-vm/run env USEC_IBVERBS_DEVICE=rxe0 target/debug/deps/ibverbs_device-*`);
//! without it they print why they did not run, and pass.
#![cfg(feature = "ibverbs")]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use usec_verbs::{
    devices, AccessFlags, Completion, CompletionQueue, ConnectOptions, Context, Error, MemoryRegion, Payload,
    PostRejection, ProtectionDomain, ProviderKind, QpCaps, QpOptions, QpState, QueuePair, RecvWr, Region,
    SendWr, Status,
};

const DEVICE_ENV: &str = "USEC_IBVERBS_DEVICE";
/// Set in a child process of this binary to the name of the scenario it runs.
const CHILD_ENV: &str = "USEC_IBVERBS_TEST_CHILD";

fn device_under_test(test: &str) -> Option<String> {
    match std::env::var(DEVICE_ENV) {
        Ok(device) if !device.is_empty() => Some(device),
        _ => {
            eprintln!("{test}: not run: set {DEVICE_ENV} to an ibverbs device (e.g. rxe0 in tools/rxe-vm) to run it");
            None
        }
    }
}

/// One end of a connection: a context, PD, CQ, a registered region and an RC QP.
struct Side {
    qp: QueuePair,
    cq: CompletionQueue,
    mr: MemoryRegion,
    region: Arc<Region>,
    pd: ProtectionDomain,
    _ctx: Context,
}

impl Side {
    fn new(device: &str, caps: QpCaps) -> Side {
        let ctx = Context::open(device).unwrap_or_else(|err| panic!("opening {device}: {err}"));
        let pd = ctx.alloc_pd().expect("alloc_pd");
        let cq = ctx.create_cq(64).expect("create_cq");
        let region = Arc::new(Region::new(1 << 16).expect("region"));
        let mr = pd.register(&region, AccessFlags::all_remote()).expect("register");
        let qp = pd.create_qp(&cq, &cq, &QpOptions { caps, ..QpOptions::default() }).expect("create_qp");
        Side { qp, cq, mr, region, pd, _ctx: ctx }
    }

    fn wait(&mut self, want: usize) -> Vec<Completion> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        let mut batch = [Completion::default(); 8];
        while got.len() < want {
            let n = self.cq.poll(&mut batch);
            got.extend_from_slice(&batch[..n]);
            assert!(Instant::now() < deadline, "timed out with {got:?} of {want} completions");
        }
        got
    }

    fn read(&self, offset: usize, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.region.read(offset, &mut out).expect("read in bounds");
        out
    }
}

fn connected_pair(device: &str) -> (Side, Side) {
    let (mut a, mut b) = (Side::new(device, QpCaps::default()), Side::new(device, QpCaps::default()));
    let (endpoint_a, endpoint_b) = (a.qp.endpoint(), b.qp.endpoint());
    a.qp.connect(&endpoint_b, &ConnectOptions::default()).expect("connect a");
    b.qp.connect(&endpoint_a, &ConnectOptions::default()).expect("connect b");
    (a, b)
}

/// Runs the test `name` of this binary in a child process with `CHILD_ENV=name` (and
/// `extra` environment), and fails if the child fails.
fn run_child(name: &str, extra: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("own path");
    let output = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .envs(extra.iter().copied())
        .output()
        .expect("spawn the child");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    eprintln!("--- child {name} ---\n{text}--- end of child {name} ---");
    assert!(output.status.success(), "child {name} failed: {}", output.status);
    assert!(text.contains("1 passed"), "child {name} did not run its test");
}

fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|child| child == name)
}

// ---- host-side: no device needed -------------------------------------------------------

#[test]
fn device_list_matches_what_opens() {
    let names: Vec<String> = devices()
        .expect("devices()")
        .into_iter()
        .filter(|info| info.provider == ProviderKind::Ibverbs)
        .map(|info| info.name)
        .collect();
    eprintln!("ibverbs devices here: {names:?}");
    for name in &names {
        let ctx =
            Context::open(name).unwrap_or_else(|err| panic!("{name} is listed but does not open: {err}"));
        assert_eq!(ctx.provider(), ProviderKind::Ibverbs);
        assert_eq!(ctx.name(), name);
    }
}

#[test]
fn absent_devices_are_clear_errors() {
    let names: Vec<String> = devices().expect("devices()").into_iter().map(|info| info.name).collect();
    for absent in ["rxe0", "usec_absent_device9"] {
        if names.iter().any(|name| name == absent) {
            continue;
        }
        let error = Context::open(absent).expect_err("an absent device opened");
        let message = error.to_string();
        eprintln!("Context::open({absent:?}): {message}");
        match &error {
            Error::NoDevice => assert!(message.contains("no RDMA device") && message.contains("soft:")),
            Error::UnknownDevice { name, known } => {
                assert_eq!(name, absent);
                assert!(!known.is_empty(), "UnknownDevice with no known devices should be NoDevice");
                assert!(
                    message.contains(absent) && known.iter().all(|known| message.contains(known.as_str()))
                );
            }
            other => panic!("expected NoDevice or UnknownDevice, got {other:?}"),
        }
    }
}

// ---- on a device ---------------------------------------------------------------------------

#[test]
fn opens_by_name_and_reports_attributes() {
    let Some(device) = device_under_test("opens_by_name_and_reports_attributes") else { return };
    let ctx = Context::open(&device).expect("open");
    assert_eq!((ctx.name(), ctx.provider()), (device.as_str(), ProviderKind::Ibverbs));
    let attributes = ctx.attributes();
    eprintln!("{device}: {attributes:#?}");
    assert!(!attributes.ports.is_empty());
    assert!(attributes.max_inline_data > 0, "inline probe found nothing");
    assert!(attributes.max_qp_wr > 0 && attributes.max_cqe > 0 && attributes.max_sge > 0);
    let error = Context::open("usec_absent_device9").expect_err("absent device opened");
    match &error {
        Error::UnknownDevice { known, .. } => assert!(known.contains(&device), "{known:?} lacks {device}"),
        other => panic!("expected UnknownDevice, got {other:?}"),
    }
    assert!(error.to_string().contains(&device), "{error}");
}

#[test]
fn bad_port_and_gid_index_are_clear_errors() {
    let Some(device) = device_under_test("bad_port_and_gid_index_are_clear_errors") else { return };
    let ctx = Context::open(&device).expect("open");
    let pd = ctx.alloc_pd().expect("pd");
    let cq = ctx.create_cq(16).expect("cq");
    let ports = ctx.attributes().ports.len();
    for port in [0, ports as u8 + 1] {
        let error =
            pd.create_qp(&cq, &cq, &QpOptions { port, ..QpOptions::default() }).expect_err("bad port");
        eprintln!("port {port}: {error}");
        assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
        assert!(error.to_string().contains(&format!("port {port}")), "{error}");
    }
    let table = ctx.attributes().ports[0].gid_table_len;
    let error = pd
        .create_qp(&cq, &cq, &QpOptions { gid_index: Some(255), ..QpOptions::default() })
        .expect_err("GID 255");
    eprintln!("GID index 255 (table of {table}): {error}");
    let message = error.to_string();
    assert!(message.contains("GID index 255") && message.contains(&table.to_string()), "{message}");
    let ok = pd.create_qp(&cq, &cq, &QpOptions { gid_index: Some(0), ..QpOptions::default() });
    assert!(ok.is_ok(), "GID index 0: {ok:?}");
}

#[test]
fn inline_is_capped_at_what_the_device_takes() {
    let Some(device) = device_under_test("inline_is_capped_at_what_the_device_takes") else { return };
    let max = Context::open(&device).expect("open").attributes().max_inline_data;
    let caps = QpCaps { max_inline_data: max, ..QpCaps::default() };
    let (mut a, b) = {
        let (mut a, mut b) = (Side::new(&device, caps), Side::new(&device, QpCaps::default()));
        let (endpoint_a, endpoint_b) = (a.qp.endpoint(), b.qp.endpoint());
        a.qp.connect(&endpoint_b, &ConnectOptions::default()).expect("connect a");
        b.qp.connect(&endpoint_a, &ConnectOptions::default()).expect("connect b");
        (a, b)
    };
    let granted = a.qp.caps().max_inline_data;
    eprintln!("{device}: probed max_inline_data {max}, a QP asking for it got {granted}");
    assert!(granted >= max);
    let bytes: Vec<u8> = (0..granted).map(|i| i as u8).collect();
    a.qp.post_send(&[SendWr::write(1, b.mr.remote_addr(0).unwrap(), Payload::Inline(&bytes))])
        .expect("inline at the cap");
    assert_eq!(a.wait(1)[0].status, Status::Success);
    assert_eq!(b.read(0, bytes.len()), bytes);
    let over = vec![0u8; granted as usize + 1];
    match a.qp.post_send(&[SendWr::write(2, b.mr.remote_addr(0).unwrap(), Payload::Inline(&over))]) {
        Err(Error::PostRejected { index: 0, reason: PostRejection::InlineTooLarge { .. } }) => {}
        other => panic!("inline over the cap: {other:?}"),
    }
    let too_big = QpCaps { max_inline_data: max + 1, ..QpCaps::default() };
    let error = a.pd.create_qp(&a.cq, &a.cq, &QpOptions { caps: too_big, ..QpOptions::default() });
    assert!(matches!(error, Err(Error::InvalidArgument(_))), "{error:?}");
}

/// Revokes remote write on b's QP while connected, and checks reads still work and a write
/// fails; then re-grants and checks a fresh pair's write lands.
fn access_change_scenario(device: &str) {
    let (mut a, mut b) = connected_pair(device);
    let remote = b.mr.remote_addr(0).unwrap();
    a.qp.post_send(&[SendWr::write(1, remote, Payload::Inline(b"before"))]).unwrap();
    assert_eq!(a.wait(1)[0].status, Status::Success);
    b.qp.set_access(AccessFlags::REMOTE_READ).expect("revoke remote write");
    assert_eq!(b.qp.state(), QpState::Rts);
    // The connection survives: a READ through it still works, both ways round.
    let sge = a.mr.sge(256, 6).unwrap();
    a.qp.post_send(&[SendWr::read(2, remote, &sge)]).unwrap();
    let read = a.wait(1);
    assert_eq!((read[0].status, read[0].byte_len), (Status::Success, 6), "{read:?}");
    assert_eq!(a.read(256, 6), b"before");
    let recv = a.mr.sge(512, 16).unwrap();
    a.qp.post_recv(&[RecvWr::new(3, std::slice::from_ref(&recv))]).unwrap();
    b.qp.post_send(&[SendWr::send(4, Payload::Inline(b"from b"))]).unwrap();
    assert_eq!(b.wait(1)[0].status, Status::Success, "SEND from the side whose access changed");
    assert_eq!(a.wait(1)[0].byte_len, 6);
    // Re-grant, write, revoke again.
    b.qp.set_access(AccessFlags::REMOTE_READ | AccessFlags::REMOTE_WRITE).expect("re-grant");
    a.qp.post_send(&[SendWr::write(5, remote, Payload::Inline(b"again!"))]).unwrap();
    assert_eq!(a.wait(1)[0].status, Status::Success, "write after re-grant");
    assert_eq!(b.read(0, 6), b"again!");
    b.qp.set_access(AccessFlags::REMOTE_READ).expect("revoke again");
    a.qp.post_send(&[SendWr::write(6, remote, Payload::Inline(b"denied"))]).unwrap();
    let denied = a.wait(1);
    eprintln!("{device}: WRITE after revoking remote write on the responder QP: {:?}", denied[0].status);
    assert!(
        matches!(denied[0].status, Status::RemoteAccessError | Status::RemoteInvalidRequest),
        "{denied:?}"
    );
    assert_eq!(b.read(0, 6), b"again!", "nothing landed");
}

#[test]
fn access_change_on_a_connected_qp() {
    let Some(device) = device_under_test("access_change_on_a_connected_qp") else { return };
    access_change_scenario(&device);
}

#[test]
fn access_change_by_reconnect() {
    let Some(_) = device_under_test("access_change_by_reconnect") else { return };
    run_child("access_change_by_reconnect_child", &[("USEC_IBVERBS_ACCESS_FALLBACK", "always")]);
}

#[test]
fn access_change_by_reconnect_child() {
    if !is_child("access_change_by_reconnect_child") {
        return;
    }
    let device = std::env::var(DEVICE_ENV).expect("set by the parent");
    access_change_scenario(&device);
}

#[test]
fn rereg_changes_mr_access() {
    let Some(device) = device_under_test("rereg_changes_mr_access") else { return };
    let (mut a, mut b) = connected_pair(&device);
    let before = (b.mr.lkey(), b.mr.rkey());
    b.mr.rereg_access(AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_READ).expect("rereg");
    eprintln!("{device}: keys before rereg {before:x?}, after {:x?}", (b.mr.lkey(), b.mr.rkey()));
    let remote = b.mr.remote_addr(0).unwrap();
    let sge = a.mr.sge(0, 8).unwrap();
    a.qp.post_send(&[SendWr::read(1, remote, &sge)]).unwrap();
    assert_eq!(a.wait(1)[0].status, Status::Success, "read with the new rkey");
    a.qp.post_send(&[SendWr::write(2, remote, Payload::Inline(b"x"))]).unwrap();
    assert_eq!(a.wait(1)[0].status, Status::RemoteAccessError, "write into an MR without remote write");
}

#[test]
fn memlock_limit_is_a_clear_error() {
    let Some(_) = device_under_test("memlock_limit_is_a_clear_error") else { return };
    run_child("memlock_child", &[]);
}

#[test]
fn memlock_child() {
    if !is_child("memlock_child") {
        return;
    }
    let device = std::env::var(DEVICE_ENV).expect("set by the parent");
    drop_ipc_lock_capability();
    let limit = 64 * 1024;
    let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
    // SAFETY: setrlimit with a valid structure; lowers this child process's own limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlimit) }, 0);
    let ctx = Context::open(&device).expect("open");
    let pd = ctx.alloc_pd().expect("pd");
    let region = Arc::new(Region::new(16 << 20).expect("region"));
    let error =
        pd.register(&region, AccessFlags::all_remote()).expect_err("16 MiB under a 64 KiB memlock limit");
    let message = error.to_string();
    eprintln!("registering 16 MiB under RLIMIT_MEMLOCK = 64 KiB: {message}");
    assert!(message.contains("ulimit -l") && message.contains("RLIMIT_MEMLOCK"), "{message}");
    assert!(message.contains(&limit.to_string()), "the current limit is named: {message}");
}

/// Root (or CAP_IPC_LOCK) is exempt from RLIMIT_MEMLOCK: drop the capability from this
/// process so the limit applies, as it does for ordinary users.
fn drop_ipc_lock_capability() {
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_IPC_LOCK: u32 = 14;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget with a version-3 header and room for its two data words.
    let read = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    assert_eq!(read, 0, "capget");
    data[0].effective &= !(1 << CAP_IPC_LOCK);
    data[0].permitted &= !(1 << CAP_IPC_LOCK);
    // SAFETY: capset of this process with the words just read, minus one capability.
    let written = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    assert_eq!(written, 0, "capset");
}

#[test]
fn long_lists_post_in_order_across_chains() {
    let Some(device) = device_under_test("long_lists_post_in_order_across_chains") else { return };
    let (mut a, mut b) = connected_pair(&device);
    // 40 receives and 40 sends: more than one chain of each.
    let recv_sges: Vec<_> = (0..40).map(|i| b.mr.sge(i * 8, 8).unwrap()).collect();
    let recvs: Vec<RecvWr<'_>> = recv_sges
        .iter()
        .enumerate()
        .map(|(i, sge)| RecvWr::new(100 + i as u64, std::slice::from_ref(sge)))
        .collect();
    b.qp.post_recv(&recvs).expect("40 receives");
    let payloads: Vec<[u8; 8]> = (0..40u64).map(|i| i.to_le_bytes()).collect();
    let sends: Vec<SendWr<'_>> = payloads
        .iter()
        .enumerate()
        .map(|(i, bytes)| SendWr::send(i as u64, Payload::Inline(bytes)))
        .collect();
    a.qp.post_send(&sends).expect("40 sends");
    let sent: Vec<u64> = a.wait(40).iter().map(|c| c.wr_id).collect();
    assert_eq!(sent, (0..40).collect::<Vec<_>>(), "send completions in post order");
    let received = b.wait(40);
    assert_eq!(received.iter().map(|c| c.wr_id).collect::<Vec<_>>(), (100..140).collect::<Vec<_>>());
    for i in 0..40 {
        assert_eq!(b.read(i * 8, 8), (i as u64).to_le_bytes(), "message {i}");
    }
    // A refusal in the second chain: the 20 before it are posted, it and the rest are not.
    let two = [a.mr.sge(0, 1).unwrap(), a.mr.sge(1, 1).unwrap()];
    let too_many: Vec<_> = vec![a.mr.sge(0, 1).unwrap(); a.qp.caps().max_send_sge as usize + 1];
    let remote = b.mr.remote_addr(1024).unwrap();
    let mut list: Vec<SendWr<'_>> = (0..30).map(|i| SendWr::write(200 + i, remote, &two[..1])).collect();
    list[20] = SendWr::write(220, remote, &too_many[..]);
    match a.qp.post_send(&list) {
        Err(Error::PostRejected { index: 20, reason: PostRejection::TooManySges { .. } }) => {}
        other => panic!("refusal at 20: {other:?}"),
    }
    let done: Vec<u64> = a.wait(20).iter().map(|c| c.wr_id).collect();
    assert_eq!(done, (200..220).collect::<Vec<_>>());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(a.cq.poll(&mut [Completion::default(); 4]), 0, "nothing after the refused one was posted");
}
