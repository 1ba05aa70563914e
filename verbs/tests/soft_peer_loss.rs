//! Why the soft provider cannot connect to a peer, as a reason a caller can branch on: a
//! peer process that exited, one whose death its pidfd reported while we watched, a node
//! that closed, a node or QP that does not exist, a stale endpoint, and endpoints of
//! another fabric or provider.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use usec_verbs::qp::Address;
use usec_verbs::{
    AsyncEventKind, BadEndpoint, CompletionQueue, Context, Endpoint, Error, PeerLoss, PeerProbe,
    ProtectionDomain, ProviderKind, QpOptions, QueuePair,
};

const CHILD_ENV: &str = "USEC_SOFT_PEER_LOSS_CHILD";

/// A QP of `context`, in INIT, with its PD and CQ kept alive beside it.
struct Local {
    _pd: ProtectionDomain,
    _cq: CompletionQueue,
    qp: QueuePair,
}

impl Local {
    fn new(context: &Context) -> Local {
        let pd = context.alloc_pd().unwrap();
        let cq = context.create_cq(4).unwrap();
        let mut qp = pd.create_qp(&cq, &cq, &QpOptions::default()).unwrap();
        qp.modify_to_init(&Default::default()).unwrap();
        Local { _pd: pd, _cq: cq, qp }
    }

    fn connect(&mut self, remote: &Endpoint) -> Result<(), Error> {
        self.qp.modify_to_rtr(remote, &Default::default())
    }
}

/// The reason of a `PeerUnreachable`, or a panic that shows what came instead.
fn loss(result: Result<(), Error>) -> PeerLoss {
    match result {
        Err(Error::PeerUnreachable { reason, .. }) => reason,
        other => panic!("expected PeerUnreachable, got {other:?}"),
    }
}

/// One test of this file at a time. Opening a soft fabric sweeps every fabric of dead
/// processes' control blocks, so another test opening one (or its children) could remove
/// the control block of a child this test killed, before the test looks at it: CI once
/// found "no such node" where the dead child's node was to be.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The child: opens a node with two QPs, prints their endpoints, and waits to be killed
/// (or for its stdin to close, so that it never outlives a parent that failed).
fn child(fabric: &str) {
    let context = Context::open(&format!("soft:{fabric}")).unwrap();
    let (first, second) = (Local::new(&context), Local::new(&context));
    println!("{} {}", first.qp.endpoint(), second.qp.endpoint());
    let _ = std::io::stdin().read_line(&mut String::new());
}

fn spawn_child(fabric: &str) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_dead_peer_process_is_a_typed_loss", "--nocapture"])
        .env(CHILD_ENV, fabric)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// The two endpoints the child printed.
fn endpoints(lines: &mut Lines<BufReader<ChildStdout>>) -> (Endpoint, Endpoint) {
    for line in lines {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [first, second] = words[..] {
            if let (Ok(first), Ok(second)) = (first.parse(), second.parse()) {
                return (first, second);
            }
        }
    }
    panic!("the child exited before printing its endpoints")
}

#[test]
fn a_dead_peer_process_is_a_typed_loss() {
    if let Some(fabric) = std::env::var_os(CHILD_ENV) {
        return child(fabric.to_str().unwrap());
    }
    let _serial = one_at_a_time();
    let fabric = format!("peer-loss-{}", std::process::id());
    let context = Context::open(&format!("soft:{fabric}")).unwrap();

    // Watched while it dies: we connect to it first, so its pidfd is ours to watch.
    let (mut watched, mut lines) = spawn_child(&fabric);
    let (first, second) = endpoints(&mut lines);
    let mut connected = Local::new(&context);
    connected.connect(&first).unwrap();
    // Probed on the spot: running, stopped, running again, and dying as soon as killed.
    assert_eq!(connected.qp.probe_peer(), PeerProbe::Alive);
    let child = Pid::from_raw(watched.id() as i32);
    let probed = |wanted: PeerProbe| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while connected.qp.probe_peer() != wanted {
            assert!(Instant::now() < deadline, "the peer never probed {wanted:?}");
            std::thread::yield_now();
        }
    };
    signal::kill(child, Signal::SIGSTOP).unwrap();
    probed(PeerProbe::Stopped);
    signal::kill(child, Signal::SIGCONT).unwrap();
    probed(PeerProbe::Alive);
    watched.kill().unwrap();
    probed(PeerProbe::Exiting);
    watched.wait().unwrap();
    assert_eq!(connected.qp.probe_peer(), PeerProbe::Exiting, "reaped");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match context.poll_event() {
            Some(event) if event.kind == AsyncEventKind::PeerLost => break,
            _ => assert!(Instant::now() < deadline, "no PeerLost event after the child died"),
        }
        std::thread::yield_now();
    }
    let pid = watched.id();
    let reason = loss(Local::new(&context).connect(&second));
    assert_eq!(reason, PeerLoss::DeathReported { pid });
    assert!(reason.process_died());

    // Dead before we ever looked: its control block is left behind (SIGKILL), but the
    // process is gone.
    let (mut unwatched, mut lines) = spawn_child(&fabric);
    let (first, _) = endpoints(&mut lines);
    unwatched.kill().unwrap();
    unwatched.wait().unwrap();
    let pid = unwatched.id();
    let error = Local::new(&context).connect(&first).unwrap_err();
    assert!(error.to_string().contains(&format!("process {pid} has exited")), "{error}");
    let reason = loss(Err(error));
    assert!(
        matches!(reason, PeerLoss::Exited { pid: p } | PeerLoss::PidReused { pid: p } if p == pid),
        "{reason:?}"
    );
    assert!(reason.process_died());
}

#[test]
fn a_closed_or_missing_node_or_qp_is_a_typed_loss() {
    let _serial = one_at_a_time();
    let fabric = format!("peer-loss-nodes-{}", std::process::id());
    let device = format!("soft:{fabric}");
    let context = Context::open(&device).unwrap();
    let mut local = Local::new(&context);

    let peer = Context::open(&device).unwrap();
    let remote = Local::new(&peer);
    let endpoint = remote.qp.endpoint();

    // A QP number the node never handed out.
    let missing = Endpoint { qp_num: endpoint.qp_num ^ 0x40, ..endpoint };
    let reason = loss(local.connect(&missing));
    assert_eq!(reason, PeerLoss::NoSuchQp { qp_num: missing.qp_num });
    assert!(!reason.process_died());

    // The same node and process, another nonce: the node this endpoint named was replaced.
    let Address::Soft { fabric: hash, pid, node, nonce } = endpoint.address else {
        panic!("a soft endpoint")
    };
    let stale = Endpoint { address: Address::Soft { fabric: hash, pid, node, nonce: nonce ^ 1 }, ..endpoint };
    assert_eq!(loss(local.connect(&stale)), PeerLoss::Replaced);

    // Closed while we know it: a QP connected to it keeps our view of it.
    let mut connected = Local::new(&context);
    connected.connect(&endpoint).unwrap();
    drop(remote);
    drop(peer);
    assert_eq!(loss(local.connect(&endpoint)), PeerLoss::Closed);

    // Closed and forgotten: its control block is gone from the fabric.
    drop(connected);
    assert_eq!(loss(local.connect(&endpoint)), PeerLoss::NoSuchNode);
}

#[test]
fn endpoints_of_another_fabric_or_provider_are_typed_refusals() {
    let _serial = one_at_a_time();
    let id = std::process::id();
    let context = Context::open(&format!("soft:peer-loss-here-{id}")).unwrap();
    let mut local = Local::new(&context);

    let elsewhere = Context::open(&format!("soft:peer-loss-there-{id}")).unwrap();
    let foreign = Local::new(&elsewhere).qp.endpoint();
    let error = local.connect(&foreign).unwrap_err();
    assert!(matches!(error, Error::BadEndpoint(BadEndpoint::OtherFabric { .. })), "{error:?}");
    assert!(error.to_string().contains(&format!("soft:peer-loss-here-{id}")), "{error}");

    let sim = Context::open(&format!("sim:peer-loss-{id}")).unwrap();
    let simulated = Local::new(&sim).qp.endpoint();
    let error = local.connect(&simulated).unwrap_err();
    assert!(
        matches!(
            error,
            Error::BadEndpoint(BadEndpoint::OtherProvider { provider: ProviderKind::Soft, address })
                if address == simulated.address
        ),
        "{error:?}"
    );
}

const EXEC_CHILD_ENV: &str = "USEC_SOFT_PEER_EXEC_CHILD";

/// A peer whose process replaces its image (`execve`) is as gone as a dead one — its
/// node, QPs and memory went with the old image — and is reported lost at once, though
/// the process lives on (here as `sleep`): the kernel marks the node's death word when
/// the exec ends its threads, where the pidfd stays silent until the new program exits.
/// (The same mark is what reports a SIGKILLed peer before its memory is torn down.)
#[test]
fn a_peer_that_execs_is_lost_while_its_process_lives_on() {
    if let Some(fabric) = std::env::var_os(EXEC_CHILD_ENV) {
        let context = Context::open(&format!("soft:{}", fabric.to_str().unwrap())).unwrap();
        let local = Local::new(&context);
        println!("{} {}", local.qp.endpoint(), local.qp.endpoint());
        // Until the parent has connected; then the image goes, node and all.
        let _ = std::io::stdin().read_line(&mut String::new());
        use std::os::unix::process::CommandExt;
        let error = Command::new("sleep").arg("30").exec();
        panic!("exec failed: {error}");
    }
    let _serial = one_at_a_time();
    let fabric = format!("peer-exec-{}", std::process::id());
    let context = Context::open(&format!("soft:{fabric}")).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_peer_that_execs_is_lost_while_its_process_lives_on", "--nocapture"])
        .env(EXEC_CHILD_ENV, &fabric)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (endpoint, _) = endpoints(&mut lines);
    let mut connected = Local::new(&context);
    connected.connect(&endpoint).unwrap();
    assert_eq!(connected.qp.probe_peer(), PeerProbe::Alive);
    use std::io::Write;
    writeln!(child.stdin.as_mut().unwrap(), "exec").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match context.poll_event() {
            Some(event) if event.kind == AsyncEventKind::PeerLost => break,
            _ => assert!(Instant::now() < deadline, "no PeerLost event 10 s after the peer's exec"),
        }
        std::thread::yield_now();
    }
    assert_eq!(child.try_wait().unwrap(), None, "the process still runs: the pidfd could not have told");
    assert_eq!(connected.qp.probe_peer(), PeerProbe::Exiting);
    let pid = child.id();
    assert_eq!(loss(Local::new(&context).connect(&endpoint)), PeerLoss::DeathReported { pid });
    child.kill().unwrap();
    child.wait().unwrap();
}
