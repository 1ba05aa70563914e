//! The soft provider's fabric directory across runs: leftovers of a crashed run never break
//! a new run on the same fabric name, and a clean run leaves nothing behind.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use usec_verbs::{AccessFlags, Completion, Context, Payload, QpOptions, Region, SendWr, Status};

const CHILD_ENV: &str = "USEC_SOFT_FABRIC_TEST_CHILD";

fn fabric_dir(fabric: &str) -> PathBuf {
    let base = std::env::var_os("USEC_SOFT_DIR").unwrap_or_else(|| "/dev/shm/usec-soft".into());
    PathBuf::from(base).join(fabric)
}

fn node_files(fabric: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(fabric_dir(fabric)) else { return Vec::new() };
    let mut names: Vec<String> =
        entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into()).collect();
    names.sort();
    names
}

/// A WRITE between two fresh nodes of `fabric` works.
fn write_works(fabric: &str) {
    let device = format!("soft:{fabric}");
    let (a, b) = (Context::open(&device).unwrap(), Context::open(&device).unwrap());
    let (pd_a, pd_b) = (a.alloc_pd().unwrap(), b.alloc_pd().unwrap());
    let (mut cq_a, cq_b) = (a.create_cq(4).unwrap(), b.create_cq(4).unwrap());
    let memory = Arc::new(Region::new(4096).unwrap());
    let mr = pd_b.register(&memory, AccessFlags::all_remote()).unwrap();
    let mut qp_a = pd_a.create_qp(&cq_a, &cq_a, &QpOptions::default()).unwrap();
    let mut qp_b = pd_b.create_qp(&cq_b, &cq_b, &QpOptions::default()).unwrap();
    qp_a.connect(&qp_b.endpoint(), &Default::default()).unwrap();
    qp_b.connect(&qp_a.endpoint(), &Default::default()).unwrap();
    qp_a.post_send(&[SendWr::write(1, mr.remote_addr(0).unwrap(), Payload::Inline(b"fresh"))]).unwrap();
    let mut done = [Completion::default(); 1];
    while cq_a.poll(&mut done) == 0 {}
    assert_eq!(done[0].status, Status::Success);
}

#[test]
fn a_crashed_run_leaves_nothing_that_breaks_the_next() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // The child: open a node, say so, and wait to be killed.
        let fabric = std::env::var(CHILD_ENV).unwrap();
        let _node = Context::open(&format!("soft:{fabric}")).unwrap();
        println!("open");
        std::thread::park();
        return;
    }
    let fabric = format!("fabric-test-{}", std::process::id());
    // A control block of an earlier run whose process is gone (a pid that cannot exist,
    // and garbage inside), and a node of a process we SIGKILL.
    std::fs::create_dir_all(fabric_dir(&fabric)).unwrap();
    std::fs::write(fabric_dir(&fabric).join("node-4000000000-0"), b"garbage from an earlier run").unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_crashed_run_leaves_nothing_that_breaks_the_next", "--nocapture"])
        .env(CHILD_ENV, &fabric)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    while !line.contains("open") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the child exited early");
    }
    let killed = format!("node-{}-0", child.id());
    assert!(
        node_files(&fabric).contains(&killed),
        "the child's node is published: {:?}",
        node_files(&fabric)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(node_files(&fabric).contains(&killed), "SIGKILL leaves the control block behind");

    // The next run on the same name opens, sweeps both leftovers, and works.
    write_works(&fabric);
    let left = node_files(&fabric);
    assert!(
        !left.contains(&killed) && !left.iter().any(|n| n.starts_with("node-4000000000")),
        "swept: {left:?}"
    );
    // Both nodes closed cleanly: nothing remains, not even the directory.
    assert!(!fabric_dir(&fabric).exists(), "left behind: {:?}", node_files(&fabric));
}
