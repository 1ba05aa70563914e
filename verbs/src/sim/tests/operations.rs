//! Each operation's success path, with the data checked.

use super::support::{unique_name, Pair, PairConfig};
use crate::sim::{LatencyModel, SimFabric};
use crate::{
    devices, AccessFlags, CompletionOpcode, Context, LinkLayer, Payload, ProviderKind, QpState, RecvWr,
    RemoteAddr, SendOp, SendWr, Sge, Status,
};

#[test]
fn write_lands_and_completes() {
    let mut pair = Pair::new(1);
    pair.a.put(0, b"0123456789abcdef");
    pair.qp_a.post_send(&[SendWr::write(7, pair.b.remote(100), &pair.a.sge(0, 16))]).unwrap();
    let done = pair.wait_a(1);
    assert_eq!(done[0].wr_id, 7);
    assert_eq!(done[0].status, Status::Success);
    assert_eq!(done[0].opcode, CompletionOpcode::Write);
    assert_eq!(done[0].qp_num, pair.qp_a.qp_num());
    assert_eq!(pair.b.get(100, 16), b"0123456789abcdef");
    assert_eq!(pair.qp_a.state(), QpState::Rts);
    assert!(pair.fabric.now_ns() >= 1_000, "a round trip of at least 2 × 500 ns");
}

#[test]
fn read_copies_remote_bytes() {
    let mut pair = Pair::new(2);
    pair.b.put(40, b"remote bytes");
    pair.qp_a.post_send(&[SendWr::read(3, pair.b.remote(40), &pair.a.sge(8, 12))]).unwrap();
    let done = pair.wait_a(1);
    assert_eq!(
        (done[0].status, done[0].opcode, done[0].byte_len),
        (Status::Success, CompletionOpcode::Read, 12)
    );
    assert_eq!(pair.a.get(8, 12), b"remote bytes");
}

#[test]
fn send_with_imm_scatters_into_the_recv() {
    let mut pair = Pair::new(3);
    let recv_sges = [pair.b.sge(0, 4), pair.b.sge(100, 16)];
    pair.qp_b.post_recv(&[RecvWr::new(50, &recv_sges)]).unwrap();
    pair.a.put(0, b"hello, world");
    let local = pair.a.sge(0, 12);
    let send = SendWr::new(9, SendOp::SendWithImm { imm: 0xfeed }, &local);
    pair.qp_a.post_send(&[send]).unwrap();
    let received = pair.wait_b(1)[0];
    assert_eq!(received.wr_id, 50);
    assert_eq!(received.status, Status::Success);
    assert_eq!(received.opcode, CompletionOpcode::Recv);
    assert_eq!(received.byte_len, 12);
    assert_eq!(received.imm, Some(0xfeed));
    assert_eq!(received.qp_num, pair.qp_b.qp_num());
    assert_eq!(pair.b.get(0, 4), b"hell");
    assert_eq!(pair.b.get(100, 8), b"o, world");
    let sent = pair.wait_a(1)[0];
    assert_eq!((sent.wr_id, sent.status, sent.opcode), (9, Status::Success, CompletionOpcode::Send));
}

#[test]
fn write_with_imm_consumes_a_recv_and_writes_the_target() {
    let mut pair = Pair::new(4);
    pair.qp_b.post_recv(&[RecvWr::new(1, &[])]).unwrap();
    pair.a.put(0, b"imm data");
    let op = SendOp::WriteWithImm { remote: pair.b.remote(256), imm: 77 };
    pair.qp_a.post_send(&[SendWr::new(2, op, &pair.a.sge(0, 8))]).unwrap();
    let received = pair.wait_b(1)[0];
    assert_eq!((received.wr_id, received.status), (1, Status::Success));
    assert_eq!(
        (received.opcode, received.byte_len, received.imm),
        (CompletionOpcode::RecvWithImm, 8, Some(77))
    );
    assert_eq!(pair.b.get(256, 8), b"imm data");
    assert_eq!(pair.wait_a(1)[0].status, Status::Success);
}

#[test]
fn compare_swap_and_fetch_add_return_the_old_value() {
    let mut pair = Pair::new(5);
    pair.b.put(64, &10u64.to_ne_bytes());
    let result = pair.a.sge(0, 8);
    let remote = pair.b.remote(64);
    pair.qp_a.post_send(&[SendWr::compare_swap(1, remote, 10, 20, &result)]).unwrap();
    let done = pair.wait_a(1)[0];
    assert_eq!(
        (done.status, done.opcode, done.byte_len),
        (Status::Success, CompletionOpcode::CompareSwap, 8)
    );
    assert_eq!((pair.a.word(0), pair.b.word(64)), (10, 20));

    pair.qp_a.post_send(&[SendWr::compare_swap(2, remote, 10, 30, &result)]).unwrap();
    assert_eq!(pair.wait_a(1)[0].status, Status::Success);
    assert_eq!((pair.a.word(0), pair.b.word(64)), (20, 20), "a failed compare leaves the word alone");

    pair.qp_a.post_send(&[SendWr::fetch_add(3, remote, u64::MAX, &result)]).unwrap();
    let done = pair.wait_a(1)[0];
    assert_eq!((done.status, done.opcode), (Status::Success, CompletionOpcode::FetchAdd));
    assert_eq!((pair.a.word(0), pair.b.word(64)), (20, 19), "the addend wraps");
}

#[test]
fn a_mebibyte_write_lands_and_pays_for_its_size() {
    let latency = LatencyModel::fixed(1_000).with_ns_per_kib(80);
    let config = PairConfig { memory_bytes: 2 << 20, latency, ..PairConfig::default() };
    let mut pair = Pair::with(6, config);
    let pattern: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    pair.a.put(0, &pattern);
    pair.qp_a.post_send(&[SendWr::write(1, pair.b.remote(4096), &pair.a.sge(0, 1 << 20))]).unwrap();
    assert_eq!(pair.wait_a(1)[0].status, Status::Success);
    assert!(pair.b.get(4096, 1 << 20) == pattern, "the mebibyte differs");
    assert_eq!(pair.fabric.now_ns(), 1_000 + 1024 * 80 + 1_000, "request with payload, then the ACK");
}

#[test]
fn zero_length_operations_succeed_without_checks() {
    let mut pair = Pair::new(7);
    // An address and rkey nothing registered, on purpose: a zero-length access is not checked.
    let nowhere = RemoteAddr { addr: 0, rkey: 0xdead };
    let empty: &[Sge] = &[];
    pair.qp_b.post_recv(&[RecvWr::new(5, &[])]).unwrap();
    pair.qp_a
        .post_send(&[
            SendWr::write(1, nowhere, empty),
            SendWr::read(2, nowhere, empty),
            SendWr::send(3, empty),
            SendWr::write(4, pair.b.remote(0), &pair.a.sge(0, 0)),
        ])
        .unwrap();
    let done = pair.wait_a(4);
    assert!(done.iter().all(|c| c.status == Status::Success), "{done:?}");
    assert_eq!(done.iter().map(|c| c.wr_id).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let received = pair.wait_b(1)[0];
    assert_eq!((received.wr_id, received.status, received.byte_len), (5, Status::Success, 0));
}

#[test]
fn inline_payloads_are_copied_at_post() {
    let mut pair = Pair::new(8);
    let mut bytes = *b"inline!!";
    let wr = SendWr::new(1, SendOp::Write { remote: pair.b.remote(8) }, Payload::Inline(&bytes));
    pair.qp_a.post_send(&[wr]).unwrap();
    bytes.fill(0);
    assert_eq!(pair.wait_a(1)[0].status, Status::Success);
    assert_eq!(pair.b.get(8, 8), b"inline!!");
}

#[test]
fn unsignaled_requests_complete_silently() {
    let mut pair = Pair::new(9);
    pair.a.put(0, b"abcd");
    let sges: Vec<Sge> = (0..4).map(|i| pair.a.sge(i, 1)).collect();
    let wrs: Vec<SendWr<'_>> = (0..4)
        .map(|i| {
            let wr = SendWr::write(i as u64, pair.b.remote(i * 4), &sges[i]);
            if i < 3 {
                wr.unsignaled()
            } else {
                wr
            }
        })
        .collect();
    pair.qp_a.post_send(&wrs).unwrap();
    let done = pair.wait_a(1);
    assert_eq!(done[0].wr_id, 3);
    pair.settle();
    assert!(super::support::drain(&mut pair.a.cq).is_empty());
    assert_eq!([pair.b.get(0, 1), pair.b.get(4, 1), pair.b.get(8, 1), pair.b.get(12, 1)].concat(), b"abcd");
}

#[test]
fn a_fenced_write_waits_for_an_earlier_read() {
    let mut pair = Pair::new(10);
    pair.b.put(0, b"fresh!!!");
    pair.a.put(0, b"stale...");
    let buffer = pair.a.sge(0, 8);
    pair.qp_a
        .post_send(&[
            SendWr::read(1, pair.b.remote(0), &buffer),
            SendWr::write(2, pair.b.remote(16), &buffer).fenced(),
        ])
        .unwrap();
    pair.wait_a(2);
    assert_eq!(pair.b.get(16, 8), b"fresh!!!", "the fenced WRITE sent what the READ brought");
}

#[test]
fn contexts_open_by_name_and_find_their_fabric() {
    let name = unique_name("by-name");
    let first = Context::open(&format!("sim:{name}")).unwrap();
    let second = Context::open(&format!("sim:{name}")).unwrap();
    assert_eq!(first.provider(), ProviderKind::Sim);
    assert_eq!(first.name(), format!("sim:{name}"));
    let fabric = SimFabric::of(&first).unwrap();
    assert_eq!((fabric.name(), fabric.seed()), (name.as_str(), 0));
    assert_eq!(SimFabric::node_of(&first).map(|n| n.index()), Some(0));
    assert_eq!(SimFabric::node_of(&second).map(|n| n.index()), Some(1));
    assert!(SimFabric::get(&name).is_some());
    assert!(SimFabric::create(&name, 1).is_err(), "the name is taken while the fabric lives");
    assert!(devices()
        .unwrap()
        .iter()
        .any(|d| d.name == format!("sim:{name}") && d.provider == ProviderKind::Sim));
    let attributes = first.attributes();
    assert_eq!(attributes.ports[0].link_layer, LinkLayer::Simulated);
    assert!(attributes.atomics_global);
    drop((first, second, fabric));
    assert!(SimFabric::get(&name).is_none(), "the fabric went with its last handle");
    assert!(SimFabric::create(&name, 1).is_ok());
    assert!(SimFabric::create("bad/name", 1).is_err());
}

#[test]
fn memory_registered_read_only_serves_reads() {
    let mut pair = Pair::new(11);
    let read_only = pair.b.pd.register(&pair.b.memory, AccessFlags::REMOTE_READ).unwrap();
    pair.b.put(0, b"ro");
    let remote = read_only.remote_addr(0).unwrap();
    pair.qp_a.post_send(&[SendWr::read(1, remote, &pair.a.sge(0, 2))]).unwrap();
    assert_eq!(pair.wait_a(1)[0].status, Status::Success);
    assert_eq!(pair.a.get(0, 2), b"ro");
}
