//! Behaviour specific to the ibverbs provider.
//!
//! The host-side tests run everywhere. The device tests need a real device, named by the
//! environment variable `USEC_IBVERBS_DEVICE` (e.g. `rxe0` inside the SoftRoCE VM:
//! `tools/rxe-vm/run env USEC_IBVERBS_DEVICE=rxe0 target/debug/deps/ibverbs_device-*`).
//! Without it they report `ignored` and say why: a test that did not run never reports
//! `ok`. A device that is named but does not open fails them.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Completion as TrialCompletion, Trial};
use usec_verbs::{
    devices, AccessFlags, Completion, CompletionQueue, ConnectOptions, Context, Error, MemoryRegion, Payload,
    PostRejection, ProtectionDomain, ProviderKind, QpCaps, QpOptions, QpState, QueuePair, RecvWr, Region,
    SendWr, Status,
};

const DEVICE_ENV: &str = "USEC_IBVERBS_DEVICE";
/// Why a device test reports `ignored` where no device is named.
const NO_DEVICE: &str = "needs an RDMA device: set USEC_IBVERBS_DEVICE (e.g. rxe0 in tools/rxe-vm)";
/// Set in a child process of this binary to the name of the scenario it runs.
const CHILD_ENV: &str = "USEC_IBVERBS_TEST_CHILD";
/// The last line a child prints when its scenario ran to the end.
const CHILD_DONE: &str = "child scenario finished";

/// The device named by [`DEVICE_ENV`]: `Ok(None)` when the variable is unset, an error
/// when it is set but empty or not unicode (a misconfigured run must not look like a run
/// without a device).
fn device_under_test() -> Result<Option<String>, String> {
    match std::env::var(DEVICE_ENV) {
        Ok(device) if device.trim().is_empty() => Err(format!("{DEVICE_ENV} is set but empty")),
        Ok(device) => Ok(Some(device)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(err) => Err(format!("{DEVICE_ENV}: {err}")),
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

/// Runs the scenario `name` of [`CHILD_SCENARIOS`] in a child process of this binary with
/// `CHILD_ENV=name` (and `extra` environment) on `device`, and fails unless the child ran
/// it to the end.
fn run_child(name: &str, device: &str, extra: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("own path");
    let output = Command::new(exe)
        .env(CHILD_ENV, name)
        .env(DEVICE_ENV, device)
        .envs(extra.iter().copied())
        .output()
        .expect("spawn the child");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    eprintln!("--- child {name} ---\n{text}--- end of child {name} ---");
    assert!(output.status.success(), "child {name} failed: {}", output.status);
    assert!(text.contains(CHILD_DONE), "child {name} did not finish its scenario");
}

/// Runs the child scenario `name` in this process (the child side of [`run_child`]).
fn child_main(name: &str) {
    let Some(&(_, scenario)) = CHILD_SCENARIOS.iter().find(|(known, _)| *known == name) else {
        panic!("{CHILD_ENV}={name:?} names no child scenario");
    };
    let device = std::env::var(DEVICE_ENV).expect("set by the parent");
    scenario(&device);
    println!("{CHILD_DONE}");
}

// ---- host-side: no device needed -------------------------------------------------------

/// Every listed ibverbs device opens, and the device under test is listed. Without any
/// ibverbs device there is nothing to open: that reports `ignored`, not `ok`.
fn device_list_matches_what_opens(device: Option<&str>) -> TrialCompletion {
    let names: Vec<String> = devices()
        .expect("devices()")
        .into_iter()
        .filter(|info| info.provider == ProviderKind::Ibverbs)
        .map(|info| info.name)
        .collect();
    eprintln!("ibverbs devices here: {names:?}");
    if let Some(device) = device {
        assert!(names.iter().any(|name| name == device), "{DEVICE_ENV}={device} is not listed in {names:?}");
    }
    if names.is_empty() {
        return TrialCompletion::ignored_with("no ibverbs device here to open");
    }
    for name in &names {
        let ctx =
            Context::open(name).unwrap_or_else(|err| panic!("{name} is listed but does not open: {err}"));
        assert_eq!(ctx.provider(), ProviderKind::Ibverbs);
        assert_eq!(ctx.name(), name);
    }
    TrialCompletion::Completed
}

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

fn opens_by_name_and_reports_attributes(device: &str) {
    let ctx = Context::open(device).expect("open");
    assert_eq!((ctx.name(), ctx.provider()), (device, ProviderKind::Ibverbs));
    let attributes = ctx.attributes();
    eprintln!("{device}: {attributes:#?}");
    assert!(!attributes.ports.is_empty());
    assert!(attributes.max_inline_data > 0, "inline probe found nothing");
    assert!(attributes.max_qp_wr > 0 && attributes.max_cqe > 0 && attributes.max_sge > 0);
    let error = Context::open("usec_absent_device9").expect_err("absent device opened");
    match &error {
        Error::UnknownDevice { known, .. } => {
            assert!(known.iter().any(|known| known == device), "{known:?} lacks {device}")
        }
        other => panic!("expected UnknownDevice, got {other:?}"),
    }
    assert!(error.to_string().contains(device), "{error}");
}

fn bad_port_and_gid_index_are_clear_errors(device: &str) {
    let ctx = Context::open(device).expect("open");
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

fn inline_is_capped_at_what_the_device_takes(device: &str) {
    let max = Context::open(device).expect("open").attributes().max_inline_data;
    let caps = QpCaps { max_inline_data: max, ..QpCaps::default() };
    let (mut a, b) = {
        let (mut a, mut b) = (Side::new(device, caps), Side::new(device, QpCaps::default()));
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

fn access_change_on_a_connected_qp(device: &str) {
    access_change_scenario(device);
}

/// The same scenario where the provider must fall back to reconnecting (the environment
/// variable forces the fallback, which only a fresh process reads).
fn access_change_by_reconnect(device: &str) {
    run_child("access_change_by_reconnect", device, &[("USEC_IBVERBS_ACCESS_FALLBACK", "always")]);
}

fn rereg_changes_mr_access(device: &str) {
    let (mut a, mut b) = connected_pair(device);
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

/// In a child process: it lowers its own memlock limit and drops a capability.
fn memlock_limit_is_a_clear_error(device: &str) {
    run_child("memlock_limit", device, &[]);
}

fn memlock_limit_scenario(device: &str) {
    assert!(std::env::var_os(CHILD_ENV).is_some(), "changes process-wide limits: only in a child");
    drop_ipc_lock_capability();
    let limit = 64 * 1024;
    let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
    // SAFETY: setrlimit with a valid structure; lowers this child process's own limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlimit) }, 0);
    let ctx = Context::open(device).expect("open");
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

fn long_lists_post_in_order_across_chains(device: &str) {
    let (mut a, mut b) = connected_pair(device);
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

// ---- the harness -----------------------------------------------------------------------

type DeviceTest = fn(&str);

/// The tests that need the device named by [`DEVICE_ENV`].
const DEVICE_TESTS: &[(&str, DeviceTest)] = &[
    ("opens_by_name_and_reports_attributes", opens_by_name_and_reports_attributes),
    ("bad_port_and_gid_index_are_clear_errors", bad_port_and_gid_index_are_clear_errors),
    ("inline_is_capped_at_what_the_device_takes", inline_is_capped_at_what_the_device_takes),
    ("access_change_on_a_connected_qp", access_change_on_a_connected_qp),
    ("access_change_by_reconnect", access_change_by_reconnect),
    ("rereg_changes_mr_access", rereg_changes_mr_access),
    ("memlock_limit_is_a_clear_error", memlock_limit_is_a_clear_error),
    ("long_lists_post_in_order_across_chains", long_lists_post_in_order_across_chains),
];

/// What [`run_child`] runs in a child process, by name.
const CHILD_SCENARIOS: &[(&str, DeviceTest)] =
    &[("access_change_by_reconnect", access_change_scenario), ("memlock_limit", memlock_limit_scenario)];

fn main() {
    if let Ok(name) = std::env::var(CHILD_ENV) {
        child_main(&name);
        return;
    }
    let args = Arguments::from_args();
    let device = device_under_test();
    let listed_device = device.clone();
    let mut trials = vec![
        Trial::ignorable_test("device_list_matches_what_opens", move || {
            let device = listed_device?;
            Ok(device_list_matches_what_opens(device.as_deref()))
        }),
        Trial::test("absent_devices_are_clear_errors", || {
            absent_devices_are_clear_errors();
            Ok(())
        }),
    ];
    for &(name, test) in DEVICE_TESTS {
        let device = device.clone();
        trials.push(Trial::ignorable_test(name, move || match device? {
            Some(device) => {
                test(&device);
                Ok(TrialCompletion::Completed)
            }
            None => Ok(TrialCompletion::ignored_with(NO_DEVICE)),
        }));
    }
    libtest_mimic::run(&args, trials).exit();
}
