//! The cluster on a real verbs device: runs only when `USEC_QP_POOL_DEVICE` names one
//! (`rxe0` inside the SoftRoCE VM: `tools/rxe-vm/run -- env USEC_QP_POOL_DEVICE=rxe0
//! <this test binary>`); otherwise it reports `ignored` and says why. A device that is
//! named but does not open fails it.
//!
//! Three nodes in threads, each with its own context on the device, bootstrap over
//! loopback TCP; they WRITE to every peer; then one node revokes and grants a peer's write
//! on a connected QP (with the reconnect a refused write makes necessary), and
//! re-registers its region, whose new keys (ibverbs may change them) reach the peers over
//! the control connections.

mod common;

use std::time::{Duration, Instant};

use common::*;
use libtest_mimic::{Arguments, Completion, Trial};
use usec_qp_pool::{Cluster, ControlEvent, Poller};
use usec_verbs::{AccessFlags, Context, QpState, Status};

const DEVICE_ENV: &str = "USEC_QP_POOL_DEVICE";
/// Why the test reports `ignored` where no device is named.
const NO_DEVICE: &str = "needs an RDMA device: set USEC_QP_POOL_DEVICE (e.g. rxe0 in tools/rxe-vm)";

/// The device named by [`DEVICE_ENV`]: `Ok(None)` when the variable is unset, an error
/// when it is set but empty or not unicode (a misconfigured run must not look like a run
/// without a device).
fn device() -> Result<Option<String>, String> {
    match std::env::var(DEVICE_ENV) {
        Ok(device) if device.trim().is_empty() => Err(format!("{DEVICE_ENV} is set but empty")),
        Ok(device) => Ok(Some(device)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(err) => Err(format!("{DEVICE_ENV}: {err}")),
    }
}

fn serve_until_reconnected(owner: &mut Cluster, peer: &mut Cluster) -> Vec<ControlEvent> {
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while owner.peers().any(|node| owner.reconnect_pending(node)) {
        peer.poll_control();
        events.extend(owner.poll_control());
        assert!(Instant::now() < deadline, "the reconnect did not complete");
    }
    events
}

fn refused(status: Status) -> bool {
    matches!(status, Status::RemoteInvalidRequest | Status::RemoteAccessError)
}

fn main() {
    let args = Arguments::from_args();
    let trial = Trial::ignorable_test("three_nodes_on_a_verbs_device", || match device()? {
        Some(device) => {
            three_nodes_on_a_verbs_device(&device);
            Ok(Completion::Completed)
        }
        None => Ok(Completion::ignored_with(NO_DEVICE)),
    });
    libtest_mimic::run(&args, vec![trial]).exit();
}

fn three_nodes_on_a_verbs_device(device: &str) {
    // Said here, once, rather than as a panic in each node's thread.
    if let Err(err) = Context::open(device) {
        panic!("{DEVICE_ENV}={device} does not open: {err}");
    }
    let start = Instant::now();
    let (listeners, spec) = loopback(3, "rxe");
    let mut clusters = start_threads(device, listeners, &spec);
    eprintln!("[{device}] 3 nodes bootstrapped in {:?}", start.elapsed());
    let mut pollers: Vec<Poller> =
        clusters.iter_mut().map(|cluster| cluster.take_poller(&[]).unwrap()).collect();

    // Every node writes its mark into every peer's region.
    for (cluster, poller) in clusters.iter_mut().zip(&mut pollers) {
        let me = cluster.me();
        let peers: Vec<_> = cluster.peers().collect();
        for peer in peers {
            let mark = [me.get() as u8 + 1; 8];
            let status = write_and_wait(cluster, poller, peer, REPLICATION, 8 * u64::from(me.get()), &mark);
            assert_eq!(status, Status::Success, "node {me} to node {peer}");
        }
    }
    for cluster in &clusters {
        for peer in cluster.peers() {
            assert_eq!(read_local(cluster, 8 * usize::from(peer.get()), 8), vec![peer.get() as u8 + 1; 8]);
        }
    }
    eprintln!("[{device}] every node wrote to every peer");

    // Revoke node 0's write at node 1, then grant it: no write in between, no reconnect.
    let (writer, owner) = (node(0), node(1));
    let replication = clusters[1].role(REPLICATION).unwrap();
    clusters[1].revoke_write(writer, replication).unwrap();
    clusters[1].grant_write(writer, replication).unwrap();
    let status = write_and_wait(&mut clusters[0], &mut pollers[0], owner, REPLICATION, 256, b"granted!");
    assert_eq!(status, Status::Success);

    // Revoke, and the writer is refused; granting needs the reconnect.
    clusters[1].revoke_write(writer, replication).unwrap();
    let status = write_and_wait(&mut clusters[0], &mut pollers[0], owner, REPLICATION, 264, b"refused!");
    assert!(refused(status), "a write after the revocation completed with {status}");
    eprintln!("[{device}] a write through the revoked QP: {status}");
    assert_eq!(read_local(&clusters[1], 264, 8), vec![0; 8]);
    let state = clusters[1].qp(writer, replication).unwrap().state();
    if state == QpState::Error {
        let error = clusters[1].grant_write(writer, replication).unwrap_err();
        eprintln!("[{device}] grant after the refusal: {error}");
    } else {
        eprintln!("[{device}] the responder QP stayed in {state:?} after the refusal");
        clusters[1].grant_write(writer, replication).unwrap();
    }
    clusters[1].start_reconnect(writer, &[replication]).unwrap();
    let (left, right) = clusters.split_at_mut(1);
    serve_until_reconnected(&mut right[0], &mut left[0]);
    let status = write_and_wait(&mut clusters[0], &mut pollers[0], owner, REPLICATION, 264, b"welcome!");
    assert_eq!(status, Status::Success);
    assert_eq!(read_local(&clusters[1], 264, 8), b"welcome!".to_vec());
    eprintln!("[{device}] revoke, refusal, grant and reconnect: ok");

    // The alternative: re-register the region read-only, then with every right again.
    let before = clusters[0].remote_region(owner, REGION).unwrap();
    clusters[1].set_region_access(REGION, AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_READ).unwrap();
    let status = write_and_wait(&mut clusters[0], &mut pollers[0], owner, REPLICATION, 272, b"refused!");
    assert!(refused(status), "a write after the re-registration completed with {status}");
    let after = clusters[1].set_region_access(REGION, AccessFlags::all_remote()).unwrap();
    clusters[1].start_reconnect(writer, &[]).unwrap();
    let (left, right) = clusters.split_at_mut(1);
    serve_until_reconnected(&mut right[0], &mut left[0]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while clusters[0].remote_region(owner, REGION).unwrap() != after {
        clusters[0].poll_control();
        assert!(Instant::now() < deadline, "the new descriptor never arrived");
    }
    eprintln!(
        "[{device}] re-registration: rkey {:#x} -> {:#x}; the peer has the new descriptor",
        before.rkey(),
        after.rkey()
    );
    let status = write_and_wait(&mut clusters[0], &mut pollers[0], owner, REPLICATION, 272, b"allowed!");
    assert_eq!(status, Status::Success);
    eprintln!("[{device}] all checks passed in {:?}", start.elapsed());
}
