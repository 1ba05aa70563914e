//! Every operation's success path, with the data and the completion checked.

use usec_verbs::{CompletionOpcode, Payload, QpCaps, RecvWr, RemoteAddr, SendOp, SendWr, Sge, Status};

use crate::setup::{Outcome, Pair, PairOptions, Provider, SideOptions};
use crate::{ensure, ensure_eq};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

pub fn write_then_read_back(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let data = pattern(64, 7);
    pair.a.write_bytes(0, &data);
    let sge = pair.a.sge(0, 64);
    pair.a.qp.post_send(&[SendWr::write(11, pair.b.remote(128), &sge)])?;
    let done = pair.wait_a(1)?;
    ensure_eq!(done[0].status, Status::Success, "write status");
    ensure_eq!(done[0].wr_id, 11, "wr_id");
    ensure_eq!(done[0].opcode, CompletionOpcode::Write, "opcode");
    ensure_eq!(done[0].qp_num, pair.a.qp.qp_num(), "qp_num");
    ensure_eq!(pair.b.read_bytes(128, 64), data, "written bytes");
    let back = pair.a.sge(1024, 64);
    pair.a.qp.post_send(&[SendWr::read(12, pair.b.remote(128), &back)])?;
    let done = pair.wait_a(1)?;
    ensure_eq!(done[0].status, Status::Success, "read status");
    ensure_eq!(done[0].opcode, CompletionOpcode::Read, "opcode");
    ensure_eq!(done[0].byte_len, 64, "read byte_len");
    ensure_eq!(pair.a.read_bytes(1024, 64), data, "read bytes");
    Ok(())
}

pub fn gather_and_inline_writes(provider: &Provider) -> Outcome {
    let options = PairOptions {
        a: SideOptions {
            caps: QpCaps { max_send_sge: 3, max_inline_data: 64, ..QpCaps::default() },
            ..Default::default()
        },
        ..Default::default()
    };
    let mut pair = Pair::with(provider, &options)?;
    pair.a.write_bytes(0, b"alpha-");
    pair.a.write_bytes(100, b"beta-");
    pair.a.write_bytes(200, b"gamma");
    let sges = [pair.a.sge(0, 6), pair.a.sge(100, 5), pair.a.sge(200, 5)];
    pair.a.qp.post_send(&[SendWr::write(1, pair.b.remote(0), &sges[..])])?;
    let inline = SendWr::write(2, pair.b.remote(64), Payload::Inline(b"inline bytes"));
    pair.a.qp.post_send(&[inline])?;
    let done = pair.wait_a(2)?;
    ensure!(done.iter().all(|c| c.status == Status::Success), "statuses {done:?}");
    ensure_eq!(pair.b.read_bytes(0, 16), b"alpha-beta-gamma".to_vec(), "gathered write");
    ensure_eq!(pair.b.read_bytes(64, 12), b"inline bytes".to_vec(), "inline write");
    Ok(())
}

pub fn send_and_receive(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let recv_sge = pair.b.sge(512, 256);
    pair.b.qp.post_recv(&[RecvWr::new(77, std::slice::from_ref(&recv_sge))])?;
    let data = pattern(100, 3);
    pair.a.write_bytes(0, &data);
    let sge = pair.a.sge(0, 100);
    pair.a.qp.post_send(&[SendWr::send(5, &sge)])?;
    let sent = pair.wait_a(1)?;
    ensure_eq!(sent[0].status, Status::Success, "send status");
    ensure_eq!(sent[0].opcode, CompletionOpcode::Send, "send opcode");
    let received = pair.wait_b(1)?;
    ensure_eq!(received[0].status, Status::Success, "recv status");
    ensure_eq!(received[0].wr_id, 77, "recv wr_id");
    ensure_eq!(received[0].opcode, CompletionOpcode::Recv, "recv opcode");
    ensure_eq!(received[0].byte_len, 100, "recv byte_len");
    ensure_eq!(received[0].imm, None, "no imm");
    ensure_eq!(received[0].qp_num, pair.b.qp.qp_num(), "recv qp_num");
    ensure_eq!(pair.b.read_bytes(512, 100), data, "received bytes");
    Ok(())
}

pub fn send_with_imm_and_scatter(provider: &Provider) -> Outcome {
    let options = PairOptions {
        b: SideOptions { caps: QpCaps { max_recv_sge: 3, ..QpCaps::default() }, ..Default::default() },
        ..Default::default()
    };
    let mut pair = Pair::with(provider, &options)?;
    let sges = [pair.b.sge(0, 4), pair.b.sge(100, 0), pair.b.sge(200, 16)];
    pair.b.qp.post_recv(&[RecvWr::new(1, &sges)])?;
    let wr = SendWr::new(9, SendOp::SendWithImm { imm: 0xdead_beef }, Payload::Inline(b"0123456789"));
    pair.a.qp.post_send(&[wr])?;
    ensure_eq!(pair.wait_a(1)?[0].status, Status::Success, "send status");
    let received = pair.wait_b(1)?;
    ensure_eq!(received[0].status, Status::Success, "recv status");
    ensure_eq!(received[0].imm, Some(0xdead_beef), "imm");
    ensure_eq!(received[0].byte_len, 10, "byte_len");
    ensure_eq!(pair.b.read_bytes(0, 4), b"0123".to_vec(), "first SGE");
    ensure_eq!(pair.b.read_bytes(200, 6), b"456789".to_vec(), "third SGE");
    Ok(())
}

pub fn write_with_imm_consumes_a_recv(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    pair.b.qp.post_recv(&[RecvWr::new(31, &[])])?;
    let wr = SendWr::new(
        8,
        SendOp::WriteWithImm { remote: pair.b.remote(300), imm: 42 },
        Payload::Inline(b"imm!"),
    );
    pair.a.qp.post_send(&[wr])?;
    ensure_eq!(pair.wait_a(1)?[0].status, Status::Success, "write status");
    let received = pair.wait_b(1)?;
    ensure_eq!(received[0].status, Status::Success, "recv status");
    ensure_eq!(received[0].opcode, CompletionOpcode::RecvWithImm, "opcode");
    ensure_eq!(received[0].imm, Some(42), "imm");
    ensure_eq!(received[0].wr_id, 31, "wr_id");
    ensure_eq!(received[0].byte_len, 4, "byte_len");
    ensure_eq!(pair.b.read_bytes(300, 4), b"imm!".to_vec(), "data landed at the WRITE's address");
    Ok(())
}

pub fn compare_and_swap(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    pair.b.write_bytes(64, &10u64.to_ne_bytes());
    let result = pair.a.sge(0, 8);
    pair.a.qp.post_send(&[SendWr::compare_swap(1, pair.b.remote(64), 10, 20, &result)])?;
    let done = pair.wait_a(1)?;
    ensure_eq!(done[0].status, Status::Success, "status");
    ensure_eq!(done[0].opcode, CompletionOpcode::CompareSwap, "opcode");
    ensure_eq!(pair.a.read_u64(0), 10, "old value returned");
    ensure_eq!(pair.b.read_u64(64), 20, "swapped");
    pair.a.qp.post_send(&[SendWr::compare_swap(2, pair.b.remote(64), 10, 30, &result)])?;
    ensure_eq!(pair.wait_a(1)?[0].status, Status::Success, "status");
    ensure_eq!(pair.a.read_u64(0), 20, "old value returned on mismatch");
    ensure_eq!(pair.b.read_u64(64), 20, "not swapped on mismatch");
    Ok(())
}

pub fn fetch_and_add(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    pair.b.write_bytes(8, &(u64::MAX - 1).to_ne_bytes());
    let result = pair.a.sge(16, 8);
    pair.a.qp.post_send(&[SendWr::fetch_add(1, pair.b.remote(8), 5, &result)])?;
    let done = pair.wait_a(1)?;
    ensure_eq!(done[0].status, Status::Success, "status");
    ensure_eq!(done[0].opcode, CompletionOpcode::FetchAdd, "opcode");
    ensure_eq!(pair.a.read_u64(16), u64::MAX - 1, "old value");
    ensure_eq!(pair.b.read_u64(8), 3, "wrapping add");
    Ok(())
}

pub fn unsignaled_requests_and_post_lists(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let sges: Vec<Sge> = (0..4).map(|i| pair.a.sge(i * 8, 8)).collect();
    for (i, value) in [1u64, 2, 3, 4].iter().enumerate() {
        pair.a.write_bytes(i * 8, &value.to_ne_bytes());
    }
    let list: Vec<SendWr<'_>> = sges
        .iter()
        .enumerate()
        .map(|(i, sge)| {
            let wr = SendWr::write(100 + i as u64, pair.b.remote(i * 8), sge);
            if i < 3 {
                wr.unsignaled()
            } else {
                wr
            }
        })
        .collect();
    pair.a.qp.post_send(&list)?;
    let done = pair.wait_a(1)?;
    ensure_eq!(done[0].wr_id, 103, "only the signaled request completes");
    crate::setup::expect_quiet(&mut pair.a, std::time::Duration::from_millis(20))?;
    for i in 0..4 {
        ensure_eq!(pair.b.read_u64(i * 8), i as u64 + 1, "word {i}");
    }
    Ok(())
}

pub fn wr_ids_come_back_untouched(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let ids = [0, 1, u64::MAX, 0x8000_0000_0000_0001, 0xdead_beef_cafe_f00d];
    for &id in &ids {
        pair.a.qp.post_send(&[SendWr::write(id, pair.b.remote(0), Payload::Inline(b"x"))])?;
    }
    let done = pair.wait_a(ids.len())?;
    let seen: Vec<u64> = done.iter().map(|c| c.wr_id).collect();
    ensure_eq!(seen, ids.to_vec(), "wr_ids in post order");
    Ok(())
}

pub fn zero_length_operations(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let empty = pair.a.sge(0, 0);
    pair.a.qp.post_send(&[SendWr::write(1, pair.b.remote(0), &empty)])?;
    pair.a.qp.post_send(&[SendWr::read(2, pair.b.remote(0), &empty)])?;
    // A zero-length transfer's rkey is not validated (IB spec 9.4.x): it succeeds. The
    // address and rkey are forged on purpose.
    pair.a.qp.post_send(&[SendWr::write(3, RemoteAddr { addr: 0, rkey: 0xbad }, &empty)])?;
    pair.b.qp.post_recv(&[RecvWr::new(4, &[])])?;
    pair.a.qp.post_send(&[SendWr::send(5, &empty)])?;
    let done = pair.wait_a(4)?;
    ensure!(done.iter().all(|c| c.status == Status::Success), "statuses {done:?}");
    let received = pair.wait_b(1)?;
    ensure_eq!(received[0].byte_len, 0, "empty message");
    ensure_eq!(received[0].status, Status::Success, "recv status");
    Ok(())
}

pub fn edge_offsets(provider: &Provider) -> Outcome {
    let mut pair = Pair::new(provider)?;
    let len = pair.b.mr.len();
    pair.a.write_bytes(0, &[0xab]);
    let one = pair.a.sge(0, 1);
    pair.a.qp.post_send(&[SendWr::write(1, pair.b.remote(len - 1), &one)])?;
    pair.a.qp.post_send(&[SendWr::write(2, pair.b.remote(0), &one)])?;
    let done = pair.wait_a(2)?;
    ensure!(done.iter().all(|c| c.status == Status::Success), "statuses {done:?}");
    ensure_eq!(pair.b.read_bytes(len - 1, 1), vec![0xab], "last byte");
    ensure_eq!(pair.b.read_bytes(0, 1), vec![0xab], "first byte");
    let whole = pair.a.sge(0, len as u32);
    pair.a.qp.post_send(&[SendWr::read(3, pair.b.remote(0), &whole)])?;
    ensure_eq!(pair.wait_a(1)?[0].byte_len, len as u32, "whole-MR read");
    Ok(())
}

pub fn one_mebibyte_write(provider: &Provider) -> Outcome {
    let size = 1 << 20;
    let side = SideOptions { region_len: 2 * size, ..Default::default() };
    let options = PairOptions { a: side.clone(), b: side, ..Default::default() };
    let mut pair = Pair::with(provider, &options)?;
    let data = pattern(size, 99);
    pair.a.write_bytes(0, &data);
    let sge = pair.a.sge(0, size as u32);
    pair.a.qp.post_send(&[SendWr::write(1, pair.b.remote(size), &sge)])?;
    ensure_eq!(pair.wait_a(1)?[0].status, Status::Success, "write status");
    ensure!(pair.b.read_bytes(size, size) == data, "1 MiB landed intact");
    let back = pair.a.sge(size, size as u32);
    pair.a.qp.post_send(&[SendWr::read(2, pair.b.remote(size), &back)])?;
    let done = pair.wait_a(1)?;
    ensure_eq!(done[0].byte_len, size as u32, "read length");
    ensure!(pair.a.read_bytes(size, size) == data, "1 MiB read back intact");
    Ok(())
}
