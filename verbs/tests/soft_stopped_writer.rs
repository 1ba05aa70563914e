//! Revoking a stopped writer on the soft provider: a writer process SIGSTOPped in the middle
//! of a WRITE must not hold up the target's revocation, and once the revocation returns
//! none of its late bytes may ever become visible, even after SIGCONT; its WRITE completes
//! with an error and its QP goes to ERROR.
//!
//! The writer is this test binary run again as a child (see [`run_child`]). It fills each
//! WRITE with one value in every 8-byte word, one more each time, so the target's memory
//! says how far the WRITE in flight got: a stop that leaves the memory torn (a prefix of the
//! new value over the old) stopped the writer in the middle of copying.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use usec_verbs::qp::RtsAttributes;
use usec_verbs::{
    AccessFlags, Completion, CompletionQueue, ConnectOptions, Context, Endpoint, MemoryRegion, Payload,
    ProtectionDomain, QpOptions, QueuePair, Region, RemoteAddr, SendWr, Status,
};

const CHILD_ENV: &str = "USEC_STOPPED_WRITER_CHILD";
/// Bytes per WRITE: large, so that a SIGSTOP often lands in the middle of a copy.
const WRITE_BYTES: usize = 1 << 20;
const WORDS: usize = WRITE_BYTES / 8;
/// How long the revocation may take while the writer stays stopped. Not a performance
/// margin: without a bounded revocation it never returns until the writer resumes.
const REVOKE_WATCHDOG: Duration = Duration::from_secs(10);

/// Short transport timers, so the writer hears of a retired QP quickly.
fn impatient() -> ConnectOptions {
    ConnectOptions {
        rts: RtsAttributes { timeout: 10, retry_count: 3, ..Default::default() },
        ..Default::default()
    }
}

/// The child: connect to the target it is told of, then WRITE 1, 2, 3, … in every word
/// until a WRITE fails, and report how it ended.
fn run_child() {
    let device = std::env::var(CHILD_ENV).expect("child device");
    let ctx = Context::open(&device).expect("open");
    let pd = ctx.alloc_pd().expect("pd");
    let mut cq = ctx.create_cq(16).expect("cq");
    let region = Arc::new(Region::new(WRITE_BYTES).expect("region"));
    let mr = pd.register(&region, AccessFlags::LOCAL_WRITE).expect("register");
    let mut qp = pd.create_qp(&cq, &cq, &QpOptions::default()).expect("qp");
    println!("endpoint {}", qp.endpoint());
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("stdin");
    let words: Vec<&str> = line.split_whitespace().collect();
    let ["connect", endpoint, addr, rkey] = words.as_slice() else { panic!("bad command {line:?}") };
    let remote: Endpoint = endpoint.parse().expect("endpoint");
    let target = RemoteAddr { addr: addr.parse().expect("addr"), rkey: rkey.parse().expect("rkey") };
    qp.connect(&remote, &impatient()).expect("connect");
    println!("ready");
    let sge = mr.sge(0, WRITE_BYTES as u32).expect("sge");
    let mut bytes = vec![0u8; WRITE_BYTES];
    let mut done = [Completion::default(); 1];
    let mut successes = 0u64;
    for value in 1u64.. {
        for word in bytes.chunks_exact_mut(8) {
            word.copy_from_slice(&value.to_ne_bytes());
        }
        region.write(0, &bytes).expect("local write");
        qp.post_send(&[SendWr::write(value, target, &sge)]).expect("post");
        while cq.poll(&mut done) == 0 {}
        if done[0].status != Status::Success {
            println!("failed {:?} successes {successes} state {:?}", done[0].status, qp.state());
            break;
        }
        successes = value;
    }
    // Stay alive (and connected) until told to go.
    let _ = std::io::stdin().read_line(&mut line);
}

/// The writer process, from the target's side.
struct Writer {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Writer {
    fn spawn(test: &str, device: &str) -> Writer {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, device)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the writer");
        let input = child.stdin.take().expect("stdin");
        let output = BufReader::new(child.stdout.take().expect("stdout"));
        Writer { child, input, output }
    }

    /// The next line the child says (skipping the test harness's own lines).
    fn line(&mut self, prefix: &str) -> String {
        loop {
            let mut line = String::new();
            assert!(self.output.read_line(&mut line).expect("read") > 0, "the writer exited early");
            // The harness may have printed the test's name on the same line first.
            if let Some((_, rest)) = line.trim_end().split_once(prefix) {
                return rest.to_string();
            }
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill({signal}): {}", std::io::Error::last_os_error());
    }

    /// Whether the child is in the stopped state.
    fn stopped(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("stat");
        let after_name = &stat[stat.rfind(')').expect("stat format") + 1..];
        after_name.split_whitespace().next() == Some("T")
    }

    fn wait_stopped(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.stopped() {
            assert!(Instant::now() < deadline, "the writer did not stop");
            std::thread::yield_now();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The target's objects.
struct Target {
    qp: QueuePair,
    mr: MemoryRegion,
    region: Arc<Region>,
    _cq: CompletionQueue,
    _pd: ProtectionDomain,
    _ctx: Context,
}

impl Target {
    fn words(region: &Region) -> Vec<u64> {
        let mut bytes = vec![0u8; WRITE_BYTES];
        region.read(0, &mut bytes).expect("in bounds");
        bytes.chunks_exact(8).map(|word| u64::from_ne_bytes(word.try_into().expect("8 bytes"))).collect()
    }
}

/// A writer in this process through another QP, and another registration of the same
/// region, whose rights no revocation touches. From `go` until `stop` it writes 1, 2, 3, …
/// into a ring of 8-byte entries in the second half of the region, one WRITE each, and
/// must neither fail nor lose an acknowledged entry while the region moves under it.
struct Logger {
    go: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Result<u64, String>>,
    /// The target's end of its connection.
    _target_qp: QueuePair,
    _target_mr: MemoryRegion,
}

const LOG_ENTRIES: u64 = (WRITE_BYTES / 8) as u64;

impl Logger {
    fn spawn(
        device: &str,
        target_pd: &ProtectionDomain,
        target_cq: &CompletionQueue,
        region: &Arc<Region>,
    ) -> Logger {
        let target_mr = target_pd.register(region, AccessFlags::all_remote()).expect("second registration");
        let log = target_mr.remote_addr(WRITE_BYTES).expect("log");
        let mut target_qp = target_pd.create_qp(target_cq, target_cq, &QpOptions::default()).expect("qp");
        let ctx = Context::open(device).expect("open");
        let pd = ctx.alloc_pd().expect("pd");
        let mut cq = ctx.create_cq(16).expect("cq");
        let mut qp = pd.create_qp(&cq, &cq, &QpOptions::default()).expect("qp");
        qp.connect(&target_qp.endpoint(), &impatient()).expect("connect");
        target_qp.connect(&qp.endpoint(), &Default::default()).expect("connect");
        let (go, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (going, stopped) = (Arc::clone(&go), Arc::clone(&stop));
        let handle = std::thread::spawn(move || {
            let _keep = (&ctx, &pd);
            while !going.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            let mut done = [Completion::default(); 1];
            let mut acknowledged = 0;
            for entry in 1.. {
                if stopped.load(Ordering::Acquire) {
                    break;
                }
                let at = RemoteAddr { addr: log.addr + 8 * ((entry - 1) % LOG_ENTRIES), ..log };
                let bytes = entry.to_ne_bytes();
                qp.post_send(&[SendWr::write(entry, at, Payload::Inline(&bytes))])
                    .map_err(|e| e.to_string())?;
                while cq.poll(&mut done) == 0 {}
                if done[0].status != Status::Success {
                    return Err(format!("log entry {entry} failed with {:?}", done[0].status));
                }
                acknowledged = entry;
            }
            Ok(acknowledged)
        });
        Logger { go, stop, handle, _target_qp: target_qp, _target_mr: target_mr }
    }

    /// Stops it and checks that the last acknowledged entry of every ring slot is there:
    /// the ring holds at least the entries of the revocation's copy, which ends the
    /// revocation, if the logger is stopped as soon as the revocation returns.
    fn check(self, region: &Region) {
        self.stop.store(true, Ordering::Release);
        let acknowledged = self.handle.join().expect("the logger panicked").expect("the logger");
        let mut bytes = vec![0u8; WRITE_BYTES];
        region.read(WRITE_BYTES, &mut bytes).expect("in bounds");
        for (slot, entry) in bytes.chunks_exact(8).enumerate() {
            let entry = u64::from_ne_bytes(entry.try_into().expect("8 bytes"));
            let first = slot as u64 + 1;
            let expected =
                if acknowledged < first { 0 } else { acknowledged - (acknowledged - first) % LOG_ENTRIES };
            assert_eq!(entry, expected, "log slot {slot}: acknowledged entry {expected} is lost");
        }
        eprintln!("the logger had {acknowledged} entries acknowledged during the revocation, all there");
    }
}

/// Whether memory shows a WRITE stopped half-way: a prefix of value v + 1 over value v.
fn torn(words: &[u64]) -> bool {
    let last = words[WORDS - 1];
    let prefix = words.iter().take_while(|&&word| word == last + 1).count();
    prefix > 0 && words[prefix..].iter().all(|&word| word == last)
}

/// How the target revokes the writer.
#[derive(Clone, Copy, Debug)]
enum Revocation {
    QpAccess,
    MrAccess,
    Reset,
    Error,
    Destroy,
    Deregister,
}

/// Stops the writer in the middle of a WRITE, revokes it, and checks the claims.
fn revoke_stopped_writer(test: &str, revocation: Revocation) {
    if std::env::var_os(CHILD_ENV).is_some() {
        run_child();
        return;
    }
    let seed: u64 = rand::random();
    eprintln!("{test}: seed {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let device = format!("soft:stopped-writer-{}-{revocation:?}", std::process::id());
    let ctx = Context::open(&device).expect("open");
    let pd = ctx.alloc_pd().expect("pd");
    let cq = ctx.create_cq(16).expect("cq");
    let region = Arc::new(Region::new(2 * WRITE_BYTES).expect("region"));
    let mr = pd.register(&region, AccessFlags::all_remote()).expect("register");
    let mut qp = pd.create_qp(&cq, &cq, &QpOptions::default()).expect("qp");
    let logger = Logger::spawn(&device, &pd, &cq, &region);
    let mut writer = Writer::spawn(test, &device);
    let endpoint: Endpoint = writer.line("endpoint ").parse().expect("endpoint");
    let target = mr.remote_addr(0).expect("remote");
    writeln!(writer.input, "connect {} {} {}", qp.endpoint(), target.addr, target.rkey).expect("tell");
    qp.connect(&endpoint, &Default::default()).expect("connect");
    writer.line("ready");
    let target = Target { qp, mr, region, _cq: cq, _pd: pd, _ctx: ctx };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Target::words(&target.region)[WORDS - 1] < 3 {
        assert!(Instant::now() < deadline, "the writer did not get going");
        std::thread::yield_now();
    }

    // Stop the writer until it is caught in the middle of a copy.
    let mut attempts = 0;
    loop {
        attempts += 1;
        assert!(attempts < 1000, "never caught the writer in the middle of a WRITE");
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..2_000)));
        writer.signal(libc::SIGSTOP);
        writer.wait_stopped();
        let seen = Target::words(&target.region);
        if torn(&seen) && Target::words(&target.region) == seen {
            break;
        }
        writer.signal(libc::SIGCONT);
    }
    eprintln!("{test}: writer stopped mid-WRITE after {attempts} tries");

    // Revoke while it stays stopped.
    let Target { mut qp, mut mr, region, _cq, _pd, _ctx } = target;
    logger.go.store(true, Ordering::Release);
    // The QP and MR come back unless the revocation destroys them.
    let (done, finished) = std::sync::mpsc::channel();
    let revoker = std::thread::spawn(move || {
        let started = Instant::now();
        let survivors = match revocation {
            Revocation::QpAccess => qp.set_access(AccessFlags::REMOTE_READ).map(|()| (Some(qp), Some(mr))),
            Revocation::MrAccess => mr.rereg_access(AccessFlags::LOCAL_WRITE).map(|()| (Some(qp), Some(mr))),
            Revocation::Reset => qp.reset().map(|()| (Some(qp), Some(mr))),
            Revocation::Error => qp.modify_to_error().map(|()| (Some(qp), Some(mr))),
            Revocation::Destroy => {
                drop(qp);
                Ok((None, Some(mr)))
            }
            Revocation::Deregister => {
                drop(mr);
                Ok((Some(qp), None))
            }
        };
        let _ = done.send(started.elapsed());
        survivors.expect("the revocation")
    });
    // Sleeping, not spinning: the revoking thread gets a core of its own.
    let Ok(took) = finished.recv_timeout(REVOKE_WATCHDOG) else {
        writer.signal(libc::SIGCONT);
        let _ = revoker.join();
        panic!("{revocation:?} waited for the stopped writer ({REVOKE_WATCHDOG:?} and counting)");
    };
    let survivors = revoker.join().expect("the revocation panicked");
    logger.check(&region);
    assert!(writer.stopped(), "the writer resumed before the revocation returned");
    let after_revocation = Target::words(&region);
    eprintln!("{test}: {revocation:?} of a stopped writer returned in {took:?}");

    // Let the writer go on: nothing more may land, and its WRITE fails.
    writer.signal(libc::SIGCONT);
    let report = writer.line("failed ");
    let words: Vec<&str> = report.split_whitespace().collect();
    let [status, "successes", successes, "state", state] = words.as_slice() else {
        panic!("bad report {report:?}")
    };
    let successes: u64 = successes.parse().expect("successes");
    std::thread::sleep(Duration::from_millis(20));
    let at_end = Target::words(&region);
    assert!(after_revocation == at_end, "{revocation:?}: the stopped writer's bytes landed after SIGCONT");
    assert_ne!(*status, "Success", "the stopped WRITE's completion");
    assert_eq!(*state, "Error", "the writer's QP after its WRITE failed");
    let last = at_end[WORDS - 1];
    assert!(last >= successes, "WRITE {successes} succeeded but only {last} is visible");
    assert!(last <= successes + 1, "WRITE {last} is visible but only {successes} succeeded");
    eprintln!("{test}: the stopped WRITE failed with {status}; {successes} WRITEs succeeded before");
    drop(writer);
    drop((survivors, region));
}

#[test]
fn qp_access_revocation_of_a_stopped_writer() {
    revoke_stopped_writer("qp_access_revocation_of_a_stopped_writer", Revocation::QpAccess);
}

#[test]
fn mr_access_revocation_of_a_stopped_writer() {
    revoke_stopped_writer("mr_access_revocation_of_a_stopped_writer", Revocation::MrAccess);
}

#[test]
fn reset_under_a_stopped_writer() {
    revoke_stopped_writer("reset_under_a_stopped_writer", Revocation::Reset);
}

#[test]
fn error_under_a_stopped_writer() {
    revoke_stopped_writer("error_under_a_stopped_writer", Revocation::Error);
}

#[test]
fn destroy_under_a_stopped_writer() {
    revoke_stopped_writer("destroy_under_a_stopped_writer", Revocation::Destroy);
}

#[test]
fn deregistration_under_a_stopped_writer() {
    revoke_stopped_writer("deregistration_under_a_stopped_writer", Revocation::Deregister);
}
