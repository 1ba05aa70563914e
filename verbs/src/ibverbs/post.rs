//! Posting: work-request lists become `ibv_send_wr` / `ibv_recv_wr` chains built on the
//! stack, in chunks of up to [`CHAIN_WRS`] requests and [`CHAIN_SGES`] SGEs, one
//! `ibv_post_*` call (one doorbell) per chunk; nothing is allocated unless a single
//! request has more SGEs than a chunk holds.
//!
//! The partial-post rule of the API holds across chunks: a refusal in a later chunk
//! leaves the earlier chunks posted, and the error's index counts from the list's start.
//!
//! The common post of a single request takes a shorter path, as Dory's cached work request
//! did: one `ibv_send_wr` kept per QP has only the fields that change written, and the
//! caller's SGEs go to libibverbs in place (`Sge` is laid out as `ibv_sge`).
//!
//! Requests are checked before they reach libibverbs with the same post-time checks as
//! the other providers (SGE count, inline size, inline only where data goes out), so the
//! refusals read the same everywhere; the device checks the rest (lkeys, bounds, queue
//! room) as a NIC does.

use std::io;
use std::mem::MaybeUninit;
use std::ptr;

use rdma_sys::{
    atomic_t, ibv_post_recv, ibv_post_send, ibv_recv_wr, ibv_send_flags, ibv_send_wr, ibv_sge, rdma_t,
};

use crate::emulation::checks::{check_recv_post, check_send_post};
use crate::error::{Error, PostRejection, Result};
use crate::ibverbs::convert::{imm_to_wire, send_opcode};
use crate::ibverbs::queue_pair::IbvQp;
use crate::ibverbs::raw::{zeroed, Zeroable};
use crate::qp::QpState;
use crate::work_request::{Payload, RecvWr, SendOp, SendWr, Sge};

/// Requests per `ibv_post_*` call.
pub(crate) const CHAIN_WRS: usize = 16;
/// SGEs per `ibv_post_*` call.
pub(crate) const CHAIN_SGES: usize = 64;

/// `ibv_send_wr` and `ibv_recv_wr`: what a chain needs to link its entries.
trait Linked: Zeroable {
    fn link(&mut self, next: *mut Self, sg_list: *mut ibv_sge);
    fn num_sge(&self) -> usize;
}

impl Linked for ibv_send_wr {
    fn link(&mut self, next: *mut Self, sg_list: *mut ibv_sge) {
        self.next = next;
        self.sg_list = sg_list;
    }

    fn num_sge(&self) -> usize {
        usize::try_from(self.num_sge).unwrap_or(0)
    }
}

impl Linked for ibv_recv_wr {
    fn link(&mut self, next: *mut Self, sg_list: *mut ibv_sge) {
        self.next = next;
        self.sg_list = sg_list;
    }

    fn num_sge(&self) -> usize {
        usize::try_from(self.num_sge).unwrap_or(0)
    }
}

/// A chunk of requests and their SGEs, on the stack; linked just before posting, so it
/// may move freely while being filled.
struct Chain<W> {
    wrs: [MaybeUninit<W>; CHAIN_WRS],
    sges: [MaybeUninit<ibv_sge>; CHAIN_SGES],
    sge_starts: [usize; CHAIN_WRS],
    len: usize,
    sges_used: usize,
    /// Index in the caller's list of the chain's first request.
    first: usize,
}

impl<W: Linked> Chain<W> {
    fn new() -> Chain<W> {
        Chain {
            wrs: [const { MaybeUninit::uninit() }; CHAIN_WRS],
            sges: [const { MaybeUninit::uninit() }; CHAIN_SGES],
            sge_starts: [0; CHAIN_WRS],
            len: 0,
            sges_used: 0,
            first: 0,
        }
    }

    fn has_room(&self, sges: usize) -> bool {
        self.len < CHAIN_WRS && self.sges_used + sges <= CHAIN_SGES
    }

    /// Appends `wr` (its `num_sge` already set to `sges.len()`); the caller checked room.
    fn push(&mut self, wr: W, sges: impl ExactSizeIterator<Item = ibv_sge>) {
        assert!(self.has_room(sges.len()), "chain overfilled");
        self.sge_starts[self.len] = self.sges_used;
        for sge in sges {
            self.sges[self.sges_used].write(sge);
            self.sges_used += 1;
        }
        self.wrs[self.len].write(wr);
        self.len += 1;
    }

    /// Links the entries into a list and returns its head.
    fn link(&mut self) -> *mut W {
        let wrs = self.wrs.as_mut_ptr().cast::<W>();
        let sges = self.sges.as_mut_ptr().cast::<ibv_sge>();
        for index in 0..self.len {
            // The pointers stay inside the two arrays (sge_starts[index] + num_sge <= sges_used).
            // SAFETY: entries 0..len were written by `push`.
            unsafe {
                let wr = &mut *wrs.add(index);
                let next = if index + 1 < self.len { wrs.add(index + 1) } else { ptr::null_mut() };
                let sg_list =
                    if wr.num_sge() == 0 { ptr::null_mut() } else { sges.add(self.sge_starts[index]) };
                wr.link(next, sg_list);
            }
        }
        wrs
    }

    /// The caller's index of the request `bad` points at (the chain's first if unknown).
    fn index_of(&self, bad: *const W) -> usize {
        let base = self.wrs.as_ptr() as usize;
        let offset = (bad as usize).wrapping_sub(base) / size_of::<W>();
        self.first + if offset < self.len { offset } else { 0 }
    }

    /// Empties the chain; the next request has index `first`.
    fn restart(&mut self, first: usize) {
        self.len = 0;
        self.sges_used = 0;
        self.first = first;
    }
}

// `Sge` is `#[repr(C)]` with the fields of `ibv_sge` in its order: the fast paths pass a
// caller's `&[Sge]` to libibverbs as `ibv_sge`s.
const _: () = {
    assert!(size_of::<Sge>() == size_of::<ibv_sge>());
    assert!(align_of::<Sge>() == align_of::<ibv_sge>());
    assert!(std::mem::offset_of!(Sge, addr) == std::mem::offset_of!(ibv_sge, addr));
    assert!(std::mem::offset_of!(Sge, len) == std::mem::offset_of!(ibv_sge, length));
    assert!(std::mem::offset_of!(Sge, lkey) == std::mem::offset_of!(ibv_sge, lkey));
};

/// The caller's SGEs as libibverbs' type, without copying.
fn sges_in_place(sges: &[Sge]) -> *mut ibv_sge {
    if sges.is_empty() {
        ptr::null_mut()
    } else {
        // libibverbs takes `*mut` but never writes through `sg_list`.
        sges.as_ptr().cast::<ibv_sge>().cast_mut()
    }
}

/// The `ibv_send_wr` of a QP's single-request posts. Between posts its pointers (`sg_list`)
/// are stale and never read: every post writes them before `ibv_post_send` sees them.
pub(crate) struct SendTemplate(ibv_send_wr);

// SAFETY: the raw pointers inside are only used during a post, by the thread that owns
// the QP (`&mut self`); between posts they are dead values no one dereferences.
unsafe impl Send for SendTemplate {}

impl std::fmt::Debug for SendTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SendTemplate")
    }
}

impl SendTemplate {
    pub(crate) fn new() -> SendTemplate {
        SendTemplate(zeroed())
    }

    /// Writes `wr` into the template (everything a provider may read for its opcode),
    /// with `sg_list` pointing at the caller's SGEs or at `inline`.
    fn fill(&mut self, wr: &SendWr<'_>, inline: &mut ibv_sge) -> *mut ibv_send_wr {
        let out = &mut self.0;
        out.wr_id = wr.wr_id;
        out.next = ptr::null_mut();
        out.opcode = send_opcode(&wr.op);
        out.send_flags = send_flags(wr);
        out.imm_data_invalidated_rkey_union.imm_data = wr.op.imm().map_or(0, imm_to_wire);
        set_operation(out, &wr.op);
        match wr.payload {
            Payload::Sges(sges) => {
                out.sg_list = sges_in_place(sges);
                out.num_sge = sges.len() as i32;
            }
            Payload::Inline([]) => {
                out.sg_list = ptr::null_mut();
                out.num_sge = 0;
            }
            Payload::Inline(bytes) => {
                *inline = ibv_sge { addr: bytes.as_ptr() as u64, length: bytes.len() as u32, lkey: 0 };
                out.sg_list = inline;
                out.num_sge = 1;
            }
        }
        out
    }
}

fn send_flags(wr: &SendWr<'_>) -> u32 {
    let mut flags = 0;
    if wr.signaled {
        flags |= ibv_send_flags::IBV_SEND_SIGNALED.0;
    }
    if wr.fence {
        flags |= ibv_send_flags::IBV_SEND_FENCE.0;
    }
    if let Payload::Inline(_) = wr.payload {
        flags |= ibv_send_flags::IBV_SEND_INLINE.0;
    }
    flags
}

/// The opcode-specific part of a send work request.
fn set_operation(out: &mut ibv_send_wr, op: &SendOp) {
    match *op {
        SendOp::Write { remote } | SendOp::WriteWithImm { remote, .. } | SendOp::Read { remote } => {
            out.wr.rdma = rdma_t { remote_addr: remote.addr, rkey: remote.rkey };
        }
        SendOp::CompareSwap { remote, compare, swap } => {
            out.wr.atomic =
                atomic_t { remote_addr: remote.addr, compare_add: compare, swap, rkey: remote.rkey };
        }
        SendOp::FetchAdd { remote, add } => {
            out.wr.atomic =
                atomic_t { remote_addr: remote.addr, compare_add: add, swap: 0, rkey: remote.rkey };
        }
        SendOp::Send | SendOp::SendWithImm { .. } => {}
    }
}

fn sge_to_ibv(sge: &Sge) -> ibv_sge {
    ibv_sge { addr: sge.addr, length: sge.len, lkey: sge.lkey }
}

/// The `ibv_send_wr` of `wr`, without links; its SGEs are returned apart.
fn send_wr_to_ibv(wr: &SendWr<'_>) -> ibv_send_wr {
    let mut out: ibv_send_wr = zeroed();
    out.wr_id = wr.wr_id;
    out.opcode = send_opcode(&wr.op);
    out.send_flags = send_flags(wr);
    if let Some(imm) = wr.op.imm() {
        out.imm_data_invalidated_rkey_union.imm_data = imm_to_wire(imm);
    }
    set_operation(&mut out, &wr.op);
    out.num_sge = payload_sges(&wr.payload).len() as i32;
    out
}

/// The SGEs of a payload. An inline payload is one SGE over the borrowed bytes with lkey 0:
/// libibverbs copies them into the work queue during `ibv_post_send` (IBV_SEND_INLINE),
/// and the borrow outlives that call.
fn payload_sges<'a>(payload: &'a Payload<'a>) -> PayloadSges<'a> {
    match payload {
        Payload::Sges(sges) => PayloadSges::Listed(sges.iter()),
        Payload::Inline([]) => PayloadSges::Inline(None),
        Payload::Inline(bytes) => PayloadSges::Inline(Some(ibv_sge {
            addr: bytes.as_ptr() as u64,
            length: bytes.len() as u32,
            lkey: 0,
        })),
    }
}

enum PayloadSges<'a> {
    Listed(std::slice::Iter<'a, Sge>),
    Inline(Option<ibv_sge>),
}

impl Iterator for PayloadSges<'_> {
    type Item = ibv_sge;

    fn next(&mut self) -> Option<ibv_sge> {
        match self {
            PayloadSges::Listed(sges) => sges.next().map(sge_to_ibv),
            PayloadSges::Inline(sge) => sge.take(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = match self {
            PayloadSges::Listed(sges) => sges.len(),
            PayloadSges::Inline(sge) => usize::from(sge.is_some()),
        };
        (len, Some(len))
    }
}

impl ExactSizeIterator for PayloadSges<'_> {}

/// Which queue a post goes to, for messages and refusals.
#[derive(Clone, Copy)]
enum Queue {
    Send,
    Recv,
}

impl IbvQp {
    pub(super) fn post_send_list(&mut self, wrs: &[SendWr<'_>]) -> Result<()> {
        if let [wr] = wrs {
            return self.post_send_one(wr);
        }
        if wrs.is_empty() {
            return Ok(());
        }
        self.check_state(Queue::Send)?;
        let mut chain = Chain::<ibv_send_wr>::new();
        for (index, wr) in wrs.iter().enumerate() {
            if let Err(reason) = check_send_post(wr, &self.caps) {
                self.flush_send(&mut chain)?;
                return Err(Error::PostRejected { index, reason });
            }
            let sges = payload_sges(&wr.payload);
            if !chain.has_room(sges.len()) {
                self.flush_send(&mut chain)?;
                chain.restart(index);
            }
            if chain.has_room(sges.len()) {
                chain.push(send_wr_to_ibv(wr), sges);
            } else {
                // More SGEs than a whole chain holds: post this one alone from the heap.
                self.post_send_alone(wr, index)?;
                chain.restart(index + 1);
            }
        }
        self.flush_send(&mut chain)
    }

    /// The hot path: one request, from the QP's template, its SGEs in place.
    fn post_send_one(&mut self, wr: &SendWr<'_>) -> Result<()> {
        self.check_state(Queue::Send)?;
        check_send_post(wr, &self.caps).map_err(|reason| Error::PostRejected { index: 0, reason })?;
        let mut inline = ibv_sge { addr: 0, length: 0, lkey: 0 };
        let head = self.send_template.fill(wr, &mut inline);
        let mut bad: *mut ibv_send_wr = ptr::null_mut();
        // `head` is one request (next = null) whose `sg_list` points at the caller's SGEs (borrowed for
        // this call, laid out as `ibv_sge`, naming registered memory the device validates) or at
        // `inline`, on this frame, pointing into the `&[u8]` payload libibverbs copies before returning.
        // SAFETY: a live QP with one owner (`&mut self`); nothing keeps these pointers after the call.
        let code = unsafe { ibv_post_send(self.handle.as_ptr(), head, &mut bad) };
        if code != 0 {
            return Err(self.rejection(Queue::Send, 0, code));
        }
        Ok(())
    }

    /// One RECV, its SGEs in place.
    fn post_recv_one(&mut self, wr: &RecvWr<'_>) -> Result<()> {
        self.check_state(Queue::Recv)?;
        check_recv_post(wr, &self.caps).map_err(|reason| Error::PostRejected { index: 0, reason })?;
        let mut out = ibv_recv_wr {
            wr_id: wr.wr_id,
            next: ptr::null_mut(),
            sg_list: sges_in_place(wr.sges),
            num_sge: wr.sges.len() as i32,
        };
        let mut bad = ptr::null_mut();
        // One request whose SGEs are the caller's, borrowed for this call; the device validates them by
        // lkey (with local write) before writing.
        // SAFETY: as in `post_send_one`; nothing keeps the pointers after the call.
        let code = unsafe { ibv_post_recv(self.handle.as_ptr(), &mut out, &mut bad) };
        if code != 0 {
            return Err(self.rejection(Queue::Recv, 0, code));
        }
        self.flush_if_in_error();
        Ok(())
    }

    pub(super) fn post_recv_list(&mut self, wrs: &[RecvWr<'_>]) -> Result<()> {
        if let [wr] = wrs {
            return self.post_recv_one(wr);
        }
        if wrs.is_empty() {
            return Ok(());
        }
        self.check_state(Queue::Recv)?;
        let mut chain = Chain::<ibv_recv_wr>::new();
        for (index, wr) in wrs.iter().enumerate() {
            if let Err(reason) = check_recv_post(wr, &self.caps) {
                self.flush_recv(&mut chain)?;
                return Err(Error::PostRejected { index, reason });
            }
            if !chain.has_room(wr.sges.len()) {
                self.flush_recv(&mut chain)?;
                chain.restart(index);
            }
            let mut out: ibv_recv_wr = zeroed();
            out.wr_id = wr.wr_id;
            out.num_sge = wr.sges.len() as i32;
            if chain.has_room(wr.sges.len()) {
                chain.push(out, wr.sges.iter().map(sge_to_ibv));
            } else {
                let mut sges: Vec<ibv_sge> = wr.sges.iter().map(sge_to_ibv).collect();
                out.sg_list = sges.as_mut_ptr();
                let mut bad = ptr::null_mut();
                // SAFETY: as in `flush_recv`, for a single request whose SGEs are in `sges`.
                let code = unsafe { ibv_post_recv(self.handle.as_ptr(), &mut out, &mut bad) };
                if code != 0 {
                    return Err(self.rejection(Queue::Recv, index, code));
                }
                chain.restart(index + 1);
            }
        }
        self.flush_recv(&mut chain)?;
        self.flush_if_in_error();
        Ok(())
    }

    /// RECVs posted to a QP in ERROR must complete as flushed. rxe (Linux 6.1) only
    /// flushes when its responder next runs, which nothing triggers on a dead connection;
    /// moving the QP to ERROR again does. Only when we know the QP is in ERROR (we moved
    /// it, or `state()` saw it), so the usual post costs no system call.
    fn flush_if_in_error(&self) {
        if self.state.get() == QpState::Error {
            let _ = self.handle.modify(&mut crate::ibverbs::transitions::to_state(QpState::Error));
        }
    }

    /// Refuses the whole list when the QP's state takes no requests on this queue: sends
    /// need RTS (or ERROR, where they complete as flushed), receives anything but RESET.
    /// The last transition's state answers without a system call in the usual case; only
    /// a refusal asks the device, which may have moved the QP to ERROR since.
    fn check_state(&self, queue: Queue) -> Result<()> {
        let accepts = |state: QpState| match queue {
            Queue::Send => matches!(state, QpState::Rts | QpState::Error),
            Queue::Recv => state != QpState::Reset,
        };
        if accepts(self.state.get()) {
            return Ok(());
        }
        let state = self.current_state();
        if accepts(state) {
            return Ok(());
        }
        Err(Error::PostRejected { index: 0, reason: PostRejection::QpState { state } })
    }

    fn flush_send(&self, chain: &mut Chain<ibv_send_wr>) -> Result<()> {
        if chain.len == 0 {
            return Ok(());
        }
        let head = chain.link();
        let mut bad: *mut ibv_send_wr = ptr::null_mut();
        // `head` is a well-formed list of `chain.len` requests whose SGE arrays live in `chain`; SGEs
        // name registered memory the device validates by lkey; inline SGEs point into `&[u8]` payloads
        // borrowed for this call, which libibverbs copies before returning.
        // SAFETY: a live QP with one owner (`&mut` at the API); nothing keeps the list after the call.
        let code = unsafe { ibv_post_send(self.handle.as_ptr(), head, &mut bad) };
        if code != 0 {
            return Err(self.rejection(Queue::Send, chain.index_of(bad), code));
        }
        Ok(())
    }

    fn flush_recv(&self, chain: &mut Chain<ibv_recv_wr>) -> Result<()> {
        if chain.len == 0 {
            return Ok(());
        }
        let head = chain.link();
        let mut bad: *mut ibv_recv_wr = ptr::null_mut();
        // Receive SGEs name registered memory the device validates by lkey (with local write).
        // SAFETY: as in `flush_send`.
        let code = unsafe { ibv_post_recv(self.handle.as_ptr(), head, &mut bad) };
        if code != 0 {
            return Err(self.rejection(Queue::Recv, chain.index_of(bad), code));
        }
        Ok(())
    }

    fn post_send_alone(&self, wr: &SendWr<'_>, index: usize) -> Result<()> {
        let mut sges: Vec<ibv_sge> = payload_sges(&wr.payload).collect();
        let mut out = send_wr_to_ibv(wr);
        out.sg_list = sges.as_mut_ptr();
        let mut bad = ptr::null_mut();
        // SAFETY: as in `flush_send`, for a single request whose SGEs are in `sges`.
        let code = unsafe { ibv_post_send(self.handle.as_ptr(), &mut out, &mut bad) };
        if code != 0 {
            return Err(self.rejection(Queue::Send, index, code));
        }
        Ok(())
    }

    /// The error for a refusal by libibverbs or the device of request `index`.
    fn rejection(&self, queue: Queue, index: usize, code: i32) -> Error {
        let error = if code > 0 { io::Error::from_raw_os_error(code) } else { io::Error::last_os_error() };
        let depth = match queue {
            Queue::Send => self.caps.max_send_wr,
            Queue::Recv => self.caps.max_recv_wr,
        };
        match error.raw_os_error() {
            Some(libc::ENOMEM) => Error::PostRejected { index, reason: PostRejection::QueueFull { depth } },
            Some(libc::EINVAL) => {
                let state = self.current_state();
                let wrong_state = match queue {
                    Queue::Send => !matches!(state, QpState::Rts | QpState::Error),
                    Queue::Recv => state == QpState::Reset,
                };
                if wrong_state {
                    Error::PostRejected { index, reason: PostRejection::QpState { state } }
                } else {
                    self.post_error(queue, index, error)
                }
            }
            _ => self.post_error(queue, index, error),
        }
    }

    fn post_error(&self, queue: Queue, index: usize, error: io::Error) -> Error {
        let call = match queue {
            Queue::Send => "ibv_post_send",
            Queue::Recv => "ibv_post_recv",
        };
        let errno = error.raw_os_error().unwrap_or(0);
        Error::PostRejected {
            index,
            reason: PostRejection::RefusedByDevice { call, errno, message: error.to_string() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work_request::RemoteAddr;
    use rdma_sys::ibv_wr_opcode;

    #[test]
    fn send_requests_translate() {
        // Any address: only its translation is checked, nothing is posted.
        let remote = RemoteAddr { addr: 0x1000, rkey: 0x77 };
        let sges = [Sge { addr: 1, len: 2, lkey: 3 }, Sge { addr: 4, len: 5, lkey: 6 }];
        let wr = SendWr::new(9, SendOp::WriteWithImm { remote, imm: 0x0102_0304 }, &sges[..]).fenced();
        let out = send_wr_to_ibv(&wr);
        assert_eq!((out.wr_id, out.opcode, out.num_sge), (9, ibv_wr_opcode::IBV_WR_RDMA_WRITE_WITH_IMM, 2));
        assert_eq!(out.send_flags, ibv_send_flags::IBV_SEND_SIGNALED.0 | ibv_send_flags::IBV_SEND_FENCE.0);
        // SAFETY: reading the union members written by `send_wr_to_ibv` for this opcode.
        let (rdma, imm) = unsafe { (out.wr.rdma, out.imm_data_invalidated_rkey_union.imm_data) };
        assert_eq!((rdma.remote_addr, rdma.rkey), (0x1000, 0x77));
        assert_eq!(imm.to_ne_bytes(), [1, 2, 3, 4]);

        let result = Sge { addr: 8, len: 8, lkey: 1 };
        let out = send_wr_to_ibv(&SendWr::compare_swap(1, remote, 5, 6, &result).unsignaled());
        // SAFETY: as above.
        let atomic = unsafe { out.wr.atomic };
        assert_eq!((atomic.remote_addr, atomic.compare_add, atomic.swap, atomic.rkey), (0x1000, 5, 6, 0x77));
        assert_eq!(out.send_flags, 0);
        let out = send_wr_to_ibv(&SendWr::fetch_add(1, remote, 3, &result));
        // SAFETY: as above.
        let atomic = unsafe { out.wr.atomic };
        assert_eq!((atomic.compare_add, atomic.swap), (3, 0));
    }

    #[test]
    fn inline_payloads_are_one_keyless_sge_over_the_bytes() {
        let bytes = *b"hello";
        let wr = SendWr::send(1, Payload::Inline(&bytes));
        let out = send_wr_to_ibv(&wr);
        assert_ne!(out.send_flags & ibv_send_flags::IBV_SEND_INLINE.0, 0);
        let sges: Vec<ibv_sge> = payload_sges(&wr.payload).collect();
        assert_eq!(sges.len(), 1);
        assert_eq!((sges[0].addr, sges[0].length, sges[0].lkey), (bytes.as_ptr() as u64, 5, 0));
        assert_eq!(payload_sges(&Payload::Inline(&[])).len(), 0);
        let listed = [Sge::default(); 3];
        assert_eq!(payload_sges(&Payload::Sges(&listed)).len(), 3);
        let plain = send_wr_to_ibv(&SendWr::send(1, &listed[..]));
        assert_eq!(plain.send_flags & ibv_send_flags::IBV_SEND_INLINE.0, 0, "listed SGEs are never inline");
    }

    #[test]
    fn chains_link_in_order_and_locate_refusals() {
        let mut chain = Chain::<ibv_recv_wr>::new();
        chain.restart(10);
        for wr_id in 0..3u64 {
            let mut wr: ibv_recv_wr = zeroed();
            wr.wr_id = wr_id;
            wr.num_sge = (wr_id % 2) as i32 * 2;
            let sges = (0..wr.num_sge).map(|n| ibv_sge { addr: wr_id * 100 + n as u64, length: 1, lkey: 0 });
            chain.push(wr, sges.collect::<Vec<_>>().into_iter());
        }
        let head = chain.link();
        let mut seen = Vec::new();
        let mut cursor = head;
        while !cursor.is_null() {
            // SAFETY: walking the list just linked inside `chain`, which is alive.
            let wr = unsafe { &*cursor };
            let first_sge = if wr.num_sge > 0 {
                // SAFETY: as above; sg_list points at `num_sge` entries of the chain.
                Some(unsafe { (*wr.sg_list).addr })
            } else {
                assert!(wr.sg_list.is_null());
                None
            };
            seen.push((wr.wr_id, first_sge));
            cursor = wr.next;
        }
        assert_eq!(seen, [(0, None), (1, Some(100)), (2, None)]);
        // SAFETY: pointer arithmetic inside the chain's array only.
        let second = unsafe { head.add(1) };
        assert_eq!(chain.index_of(second), 11);
        assert_eq!(chain.index_of(ptr::null()), 10);
        assert!(chain.has_room(CHAIN_SGES - 2));
        assert!(!chain.has_room(CHAIN_SGES - 1));
    }
}
