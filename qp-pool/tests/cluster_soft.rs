//! The cluster on the soft provider: nodes in threads of this process, each with its own
//! device context on one fabric, bootstrapped over loopback TCP; then driven from the test
//! thread (or a serving thread where a peer must answer while we block).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use usec_qp_pool::{
    majority, wait_for, BusyPoll, Cluster, ControlEvent, PeerLoss, PollMode, Poller, QuorumWaiter, WrId,
};
use usec_verbs::{AccessFlags, QpState, SendWr, Status};

fn pollers(clusters: &mut [Cluster]) -> Vec<Poller> {
    clusters.iter_mut().map(|cluster| cluster.take_poller(&[]).unwrap()).collect()
}

#[test]
fn three_nodes_write_to_every_peer() {
    let (listeners, spec) = loopback(3, "three");
    let mut clusters = start_threads(&soft_device(), listeners, &spec);
    let mut pollers = pollers(&mut clusters);
    for (cluster, poller) in clusters.iter_mut().zip(&mut pollers) {
        let me = cluster.me();
        let peers: Vec<_> = cluster.peers().collect();
        assert_eq!(peers.len(), 2);
        for peer in peers {
            let bytes = [me.get() as u8 + 1; 8];
            let status = write_and_wait(cluster, poller, peer, REPLICATION, 8 * u64::from(me.get()), &bytes);
            assert_eq!(status, Status::Success, "node {me} to node {peer}");
        }
    }
    for cluster in &clusters {
        for peer in cluster.peers() {
            let landed = read_local(cluster, 8 * usize::from(peer.get()), 8);
            assert_eq!(landed, vec![peer.get() as u8 + 1; 8], "node {peer}'s write at node {}", cluster.me());
        }
    }
}

#[test]
fn five_nodes_reach_a_quorum_of_writes() {
    let (listeners, spec) = loopback(5, "five");
    let mut clusters = start_threads(&soft_device(), listeners, &spec);
    let mut pollers = pollers(&mut clusters);
    let (leader, poller) = (&mut clusters[0], &mut pollers[0]);
    let followers: Vec<_> = leader.peers().collect();
    let mut waiter = QuorumWaiter::new();
    for entry in 1..=20u64 {
        for &follower in &followers {
            write(
                leader,
                follower,
                REPLICATION,
                WrId::new(LOG_WRITE, follower, entry).unwrap(),
                entry * 8,
                &entry.to_le_bytes(),
            );
        }
        // The leader counts itself: majority(5) = 3 nodes, so 2 followers.
        let key = waiter.begin(LOG_WRITE, entry, &followers, majority(5) - 1).unwrap();
        let mut driver = BusyPoll::new(PollMode::Spin);
        let deadline_ns = driver.deadline_in(20_000_000_000);
        let mut others = |polled: &usec_qp_pool::Polled| panic!("unexpected completion {polled:?}");
        let outcome = wait_for(poller, &mut waiter, key, deadline_ns, &mut driver, &mut others).unwrap();
        assert!(outcome.acked.len() >= 2, "{outcome:?}");
        waiter.finish(key).unwrap();
    }
    assert_eq!(waiter.failed_peers().count(), 0);
    // Late completions still drain into the waiter; then every follower has every entry.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && poller.poll().next().is_some() {}
    for follower in &clusters[1..] {
        for entry in 1..=20u64 {
            assert_eq!(read_local(follower, entry as usize * 8, 8), entry.to_le_bytes().to_vec());
        }
    }
}

/// Drives `a` and `b`'s control connections until neither has a reconnect pending.
fn serve_until_reconnected(a: &mut Cluster, b: &mut Cluster) -> (Vec<ControlEvent>, Vec<ControlEvent>) {
    let (mut events_a, mut events_b) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        events_a.extend(a.poll_control());
        events_b.extend(b.poll_control());
        let pending = a.peers().any(|peer| a.reconnect_pending(peer))
            || b.peers().any(|peer| b.reconnect_pending(peer));
        if !pending {
            events_a.extend(std::iter::from_fn(|| a.poll_control()));
            events_b.extend(std::iter::from_fn(|| b.poll_control()));
            return (events_a, events_b);
        }
        assert!(Instant::now() < deadline, "reconnect did not complete");
    }
}

#[test]
fn revoke_refuses_the_writer_and_grant_lets_it_back() {
    let (listeners, spec) = loopback(3, "toggle");
    let mut clusters = start_threads(&soft_device(), listeners, &spec);
    let mut pollers = pollers(&mut clusters);
    let (writer, owner) = (node(0), node(1));
    let replication = clusters[1].role(REPLICATION).unwrap();

    // Revoke then grant with no write in between: nothing needs a reconnect.
    clusters[1].revoke_write(writer, replication).unwrap();
    clusters[1].grant_write(writer, replication).unwrap();
    let status = write_and_wait(&mut clusters[0], &mut pollers[0], owner, REPLICATION, 0, b"granted!");
    assert_eq!(status, Status::Success);

    // Revoked: the writer is refused, nothing lands, and both QPs are in ERROR.
    clusters[1].revoke_write(writer, replication).unwrap();
    assert!(!clusters[1].peer_access(writer, replication).unwrap().contains(AccessFlags::REMOTE_WRITE));
    let status = write_and_wait(&mut clusters[0], &mut pollers[0], owner, REPLICATION, 64, b"refused!");
    assert_eq!(status, Status::RemoteInvalidRequest, "a write through a QP without write rights");
    assert_eq!(read_local(&clusters[1], 64, 8), vec![0; 8], "the refused write landed");
    assert_eq!(clusters[1].qp(writer, replication).unwrap().state(), QpState::Error);
    // Other peers and other roles are untouched.
    let status = write_and_wait(&mut clusters[2], &mut pollers[2], owner, REPLICATION, 128, b"node two");
    assert_eq!(status, Status::Success);

    // Granting again says the QP needs a reconnect, and remembers the grant for it.
    let error = clusters[1].grant_write(writer, replication).unwrap_err();
    assert!(error.to_string().contains("reconnect"), "{error}");
    assert!(clusters[1].peer_access(writer, replication).unwrap().contains(AccessFlags::REMOTE_WRITE));
    clusters[1].start_reconnect(writer, &[replication]).unwrap();
    let (owner_side, writer_side) = {
        let (left, right) = clusters.split_at_mut(1);
        let (events_owner, events_writer) = serve_until_reconnected(&mut right[0], &mut left[0]);
        (events_owner, events_writer)
    };
    assert!(
        matches!(
            owner_side.as_slice(),
            [ControlEvent::Reconnected { peer, roles, by_peer: false }] if *peer == writer && *roles == [replication]
        ),
        "{owner_side:?}"
    );
    assert!(
        matches!(
            writer_side.as_slice(),
            [ControlEvent::Reconnected { peer, roles, by_peer: true }] if *peer == owner && *roles == [replication]
        ),
        "{writer_side:?}"
    );
    let status = write_and_wait(&mut clusters[0], &mut pollers[0], owner, REPLICATION, 64, b"welcome!");
    assert_eq!(status, Status::Success);
    assert_eq!(read_local(&clusters[1], 64, 8), b"welcome!".to_vec());
}

#[test]
fn region_reregistration_revokes_every_peer_at_once() {
    let (listeners, spec) = loopback(3, "rereg");
    let mut clusters = start_threads(&soft_device(), listeners, &spec);
    let mut pollers = pollers(&mut clusters);
    let owner = node(1);
    let before = clusters[0].remote_region(owner, REGION).unwrap();
    let read_only = AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_READ;
    let descriptor = clusters[1].set_region_access(REGION, read_only).unwrap();
    for writer in [0, 2] {
        let status =
            write_and_wait(&mut clusters[writer], &mut pollers[writer], owner, REPLICATION, 0, b"refused!");
        assert_eq!(status, Status::RemoteAccessError, "node {writer}: the MR no longer allows writes");
    }
    assert_eq!(read_local(&clusters[1], 0, 8), vec![0; 8]);
    clusters[1].set_region_access(REGION, AccessFlags::all_remote()).unwrap();
    // The refused writes moved the QPs to ERROR: reconnect both writers.
    for writer in [0usize, 2] {
        clusters[1].start_reconnect(node(writer as u16), &[]).unwrap();
        let (left, right) = clusters.split_at_mut(1);
        if writer == 0 {
            serve_until_reconnected(&mut right[0], &mut left[0]);
        } else {
            let (middle, last) = right.split_at_mut(1);
            serve_until_reconnected(&mut middle[0], &mut last[0]);
        }
    }
    for writer in [0, 2] {
        let status =
            write_and_wait(&mut clusters[writer], &mut pollers[writer], owner, REPLICATION, 8, b"allowed!");
        assert_eq!(status, Status::Success, "node {writer} after the re-grant");
        // Soft keeps the keys; a provider that changes them sends the new descriptor.
        let now = clusters[writer].remote_region(owner, REGION).unwrap();
        assert_eq!(now, descriptor);
        assert_eq!(now.rkey(), before.rkey());
    }
}

#[test]
fn reconnecting_one_peer_leaves_traffic_to_the_others_alone() {
    let (listeners, spec) = loopback(3, "reconnect");
    let mut clusters = start_threads(&soft_device(), listeners, &spec);
    let mut pollers = pollers(&mut clusters);
    let (one, two) = (node(1), node(2));
    let replication = clusters[0].role(REPLICATION).unwrap();
    let qp_to_two = clusters[0].qp(two, replication).unwrap().qp_num();

    // Non-blocking: node 0 keeps writing to node 2 while the reconnect with node 1 runs.
    clusters[0].start_reconnect(one, &[]).unwrap();
    assert_eq!(clusters[0].qp(one, replication).unwrap().state(), QpState::Reset);
    let mut written = 0u64;
    while clusters[0].reconnect_pending(one) || written < 10 {
        written += 1;
        let status =
            write_and_wait(&mut clusters[0], &mut pollers[0], two, REPLICATION, 8 * written, b"steady!!");
        assert_eq!(status, Status::Success, "write {written} to node 2 during the reconnect");
        clusters[1].poll_control();
        clusters[0].poll_control();
        assert!(written < 100_000, "the reconnect never completed");
    }
    assert_eq!(clusters[0].qp(two, replication).unwrap().qp_num(), qp_to_two);
    assert_eq!(clusters[0].qp(two, replication).unwrap().state(), QpState::Rts);
    assert_eq!(
        write_and_wait(&mut clusters[0], &mut pollers[0], one, REPLICATION, 0, b"back on!"),
        Status::Success
    );

    // Blocking: node 1 serves from its own thread while node 0 waits.
    let stop = Arc::new(AtomicBool::new(false));
    let mut node_one = clusters.remove(1);
    let server = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut events = Vec::new();
            while !stop.load(Ordering::Acquire) {
                events.extend(node_one.poll_control());
                std::thread::yield_now();
            }
            (node_one, events)
        })
    };
    let mut driver = BusyPoll::new(PollMode::SpinThenYield { spins: 0 });
    clusters[0].reconnect(one, &[], driver.deadline_in(20_000_000_000), &mut driver).unwrap();
    let election = clusters[0].role(ELECTION).unwrap();
    assert_eq!(clusters[0].qp(one, election).unwrap().state(), QpState::Rts);
    let status = write_and_wait(&mut clusters[0], &mut pollers[0], two, REPLICATION, 0, b"still ok");
    assert_eq!(status, Status::Success);
    stop.store(true, Ordering::Release);
    let (node_one, events) = server.join().unwrap();
    assert!(events.iter().any(|event| matches!(event, ControlEvent::Reconnected { by_peer: true, .. })));
    clusters.insert(1, node_one);
    let status = write_and_wait(&mut clusters[0], &mut pollers[0], one, REPLICATION, 16, b"again!!!");
    assert_eq!(status, Status::Success);
    assert_eq!(read_local(&clusters[1], 16, 8), b"again!!!".to_vec());
}

#[test]
fn reconnect_to_a_gone_peer_is_an_error_not_a_hang() {
    let (listeners, spec) = loopback(3, "gone");
    let mut clusters = start_threads(&soft_device(), listeners, &spec);
    let silent = node(2);
    // A peer that never polls its control connection: the reconnect times out.
    let mut driver = BusyPoll::new(PollMode::SpinThenYield { spins: 0 });
    let error = clusters[0].reconnect(silent, &[], driver.deadline_in(300_000_000), &mut driver).unwrap_err();
    assert!(error.to_string().contains("did not answer the reconnect"), "{error}");
    // A peer that is gone: a clear error, and an event saying so.
    drop(clusters.remove(2));
    let start = Instant::now();
    let error = loop {
        match clusters[0].reconnect(silent, &[], driver.deadline_in(5_000_000_000), &mut driver) {
            Err(usec_qp_pool::Error::PeerGone { reason, .. }) => break reason,
            Err(usec_qp_pool::Error::ReconnectTimedOut { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(20));
    };
    assert!(error.is_closed(), "{error}");
    assert!(error.to_string().contains("closed its control connection"), "{error}");
    assert!(clusters[0].peer_lost(silent).is_some_and(PeerLoss::is_closed));
    let events: Vec<_> = std::iter::from_fn(|| clusters[0].poll_control()).collect();
    assert!(events
        .iter()
        .any(|event| matches!(event, ControlEvent::PeerLost { peer, .. } if *peer == silent)));
}

#[test]
fn post_send_errors_name_the_peer_and_role() {
    let (listeners, spec) = loopback(2, "post");
    let mut clusters = start_threads(&soft_device(), listeners, &spec);
    let replication = clusters[0].role(REPLICATION).unwrap();
    clusters[0].qp_mut(node(1), replication).unwrap().reset().unwrap();
    let target = remote(&clusters[0], node(1), 0, 1);
    let error = clusters[0]
        .post_send(node(1), replication, &[SendWr::write(1, target, usec_verbs::Payload::Inline(b"x"))])
        .unwrap_err();
    assert!(error.to_string().contains("posting to node 1"), "{error}");
    assert!(clusters[0].role("nope").is_err());
    assert!(clusters[0]
        .remote_region(node(1), "nope")
        .unwrap_err()
        .to_string()
        .contains("offered by node 1"));
    assert!(clusters[0].take_poller(&[]).is_ok());
    assert!(clusters[0].take_poller(&[]).unwrap_err().to_string().contains("belongs to a poller"));
}

#[test]
fn nodes_bind_the_addresses_of_the_description() {
    // Ports picked free (bound, then released): `Cluster::bootstrap` binds them itself.
    let (listeners, spec) = loopback(2, "bind");
    drop(listeners);
    let device = soft_device();
    let clusters: Vec<Cluster> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..2u16)
            .map(|id| {
                let (spec, device) = (&spec, &device);
                scope.spawn(move || {
                    let context = usec_verbs::Context::open(device).unwrap();
                    Cluster::bootstrap(&context, config(spec, node(id))).unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().unwrap()).collect()
    });
    assert_eq!(clusters[0].peers().collect::<Vec<_>>(), vec![node(1)]);
    assert_eq!(clusters[1].spec(), &spec);
}
