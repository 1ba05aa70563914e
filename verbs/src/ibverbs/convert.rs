//! Translations between the API's types and libibverbs' codes. Pure functions, so the
//! mapping tables are unit-tested without a device.

use rdma_sys::{
    ibv_access_flags, ibv_event_type, ibv_mtu, ibv_port_state, ibv_qp_state, ibv_wc_opcode, ibv_wc_status,
    ibv_wr_opcode,
};

use crate::access::AccessFlags;
use crate::completion::{CompletionOpcode, Status};
use crate::device::{LinkLayer, PortState};
use crate::event::AsyncEventKind;
use crate::ibverbs::raw::{LINK_LAYER_ETHERNET, LINK_LAYER_INFINIBAND, LINK_LAYER_UNSPECIFIED};
use crate::qp::{Mtu, QpState};
use crate::work_request::SendOp;

/// `ibv_access_flags` bits for the API's flags.
pub(crate) fn access_to_ibv(access: AccessFlags) -> u32 {
    let pairs = [
        (AccessFlags::LOCAL_WRITE, ibv_access_flags::IBV_ACCESS_LOCAL_WRITE),
        (AccessFlags::REMOTE_WRITE, ibv_access_flags::IBV_ACCESS_REMOTE_WRITE),
        (AccessFlags::REMOTE_READ, ibv_access_flags::IBV_ACCESS_REMOTE_READ),
        (AccessFlags::REMOTE_ATOMIC, ibv_access_flags::IBV_ACCESS_REMOTE_ATOMIC),
    ];
    pairs.iter().filter(|(ours, _)| access.contains(*ours)).fold(0, |bits, (_, theirs)| bits | theirs.0)
}

/// `ibv_mtu` (1 = 256 bytes ... 5 = 4096).
pub(crate) fn mtu_to_ibv(mtu: Mtu) -> ibv_mtu::Type {
    match mtu {
        Mtu::Mtu256 => ibv_mtu::IBV_MTU_256,
        Mtu::Mtu512 => ibv_mtu::IBV_MTU_512,
        Mtu::Mtu1024 => ibv_mtu::IBV_MTU_1024,
        Mtu::Mtu2048 => ibv_mtu::IBV_MTU_2048,
        Mtu::Mtu4096 => ibv_mtu::IBV_MTU_4096,
    }
}

/// The API's MTU for an `ibv_mtu`; `None` for codes outside 256..=4096.
pub(crate) fn mtu_from_ibv(mtu: ibv_mtu::Type) -> Option<Mtu> {
    Some(match mtu {
        ibv_mtu::IBV_MTU_256 => Mtu::Mtu256,
        ibv_mtu::IBV_MTU_512 => Mtu::Mtu512,
        ibv_mtu::IBV_MTU_1024 => Mtu::Mtu1024,
        ibv_mtu::IBV_MTU_2048 => Mtu::Mtu2048,
        ibv_mtu::IBV_MTU_4096 => Mtu::Mtu4096,
        _ => return None,
    })
}

/// `ibv_qp_state` for a state the API can ask for.
pub(crate) fn state_to_ibv(state: QpState) -> ibv_qp_state::Type {
    match state {
        QpState::Reset => ibv_qp_state::IBV_QPS_RESET,
        QpState::Init => ibv_qp_state::IBV_QPS_INIT,
        QpState::Rtr => ibv_qp_state::IBV_QPS_RTR,
        QpState::Rts => ibv_qp_state::IBV_QPS_RTS,
        QpState::Error => ibv_qp_state::IBV_QPS_ERR,
    }
}

/// The API's state for what `ibv_query_qp` reports. SQD (draining, which this API never
/// asks for) still sends and serves like RTS; SQE and unknown codes cannot take new work:
/// both read as ERROR.
pub(crate) fn state_from_ibv(state: ibv_qp_state::Type) -> QpState {
    match state {
        ibv_qp_state::IBV_QPS_RESET => QpState::Reset,
        ibv_qp_state::IBV_QPS_INIT => QpState::Init,
        ibv_qp_state::IBV_QPS_RTR => QpState::Rtr,
        ibv_qp_state::IBV_QPS_RTS | ibv_qp_state::IBV_QPS_SQD => QpState::Rts,
        _ => QpState::Error,
    }
}

/// The API's status for an `ibv_wc_status`.
pub(crate) fn status_from_ibv(status: ibv_wc_status::Type) -> Status {
    match status {
        ibv_wc_status::IBV_WC_SUCCESS => Status::Success,
        ibv_wc_status::IBV_WC_LOC_LEN_ERR => Status::LocalLengthError,
        ibv_wc_status::IBV_WC_LOC_QP_OP_ERR => Status::LocalQpOperationError,
        ibv_wc_status::IBV_WC_LOC_PROT_ERR => Status::LocalProtectionError,
        ibv_wc_status::IBV_WC_WR_FLUSH_ERR => Status::Flushed,
        ibv_wc_status::IBV_WC_REM_INV_REQ_ERR => Status::RemoteInvalidRequest,
        ibv_wc_status::IBV_WC_REM_ACCESS_ERR => Status::RemoteAccessError,
        ibv_wc_status::IBV_WC_REM_OP_ERR => Status::RemoteOperationError,
        ibv_wc_status::IBV_WC_RETRY_EXC_ERR => Status::RetryExceeded,
        ibv_wc_status::IBV_WC_RNR_RETRY_EXC_ERR => Status::RnrRetryExceeded,
        other => Status::Other(other),
    }
}

/// The API's opcode for an `ibv_wc_opcode`. Codes the API does not post (memory-window
/// binds, tag matching, ...) never come back on its QPs; should a device report one, the
/// receive bit (128) decides between a receive and a send.
pub(crate) fn opcode_from_ibv(opcode: ibv_wc_opcode::Type) -> CompletionOpcode {
    match opcode {
        ibv_wc_opcode::IBV_WC_SEND => CompletionOpcode::Send,
        ibv_wc_opcode::IBV_WC_RDMA_WRITE => CompletionOpcode::Write,
        ibv_wc_opcode::IBV_WC_RDMA_READ => CompletionOpcode::Read,
        ibv_wc_opcode::IBV_WC_COMP_SWAP => CompletionOpcode::CompareSwap,
        ibv_wc_opcode::IBV_WC_FETCH_ADD => CompletionOpcode::FetchAdd,
        ibv_wc_opcode::IBV_WC_RECV => CompletionOpcode::Recv,
        ibv_wc_opcode::IBV_WC_RECV_RDMA_WITH_IMM => CompletionOpcode::RecvWithImm,
        other if other & ibv_wc_opcode::IBV_WC_RECV != 0 => CompletionOpcode::Recv,
        _ => CompletionOpcode::Send,
    }
}

/// The `ibv_wr_opcode` of a send-queue operation.
pub(crate) fn send_opcode(op: &SendOp) -> ibv_wr_opcode::Type {
    match op {
        SendOp::Write { .. } => ibv_wr_opcode::IBV_WR_RDMA_WRITE,
        SendOp::WriteWithImm { .. } => ibv_wr_opcode::IBV_WR_RDMA_WRITE_WITH_IMM,
        SendOp::Read { .. } => ibv_wr_opcode::IBV_WR_RDMA_READ,
        SendOp::Send => ibv_wr_opcode::IBV_WR_SEND,
        SendOp::SendWithImm { .. } => ibv_wr_opcode::IBV_WR_SEND_WITH_IMM,
        SendOp::CompareSwap { .. } => ibv_wr_opcode::IBV_WR_ATOMIC_CMP_AND_SWP,
        SendOp::FetchAdd { .. } => ibv_wr_opcode::IBV_WR_ATOMIC_FETCH_AND_ADD,
    }
}

/// Immediate data as the `__be32` field of `ibv_send_wr` holds it: the API's value in
/// network byte order, so the receiver's [`imm_from_wire`] gives the same number back.
pub(crate) fn imm_to_wire(imm: u32) -> u32 {
    imm.to_be()
}

/// The API's immediate value from the `__be32` field of `ibv_wc`.
pub(crate) fn imm_from_wire(wire: u32) -> u32 {
    u32::from_be(wire)
}

/// The API's port state for an `ibv_port_state`.
pub(crate) fn port_state_from_ibv(state: ibv_port_state::Type) -> PortState {
    match state {
        ibv_port_state::IBV_PORT_DOWN => PortState::Down,
        ibv_port_state::IBV_PORT_INIT => PortState::Init,
        ibv_port_state::IBV_PORT_ARMED => PortState::Armed,
        ibv_port_state::IBV_PORT_ACTIVE => PortState::Active,
        other => PortState::Other(other),
    }
}

/// The API's link layer for `ibv_port_attr::link_layer`. Old InfiniBand drivers leave it
/// unspecified.
pub(crate) fn link_layer_from_ibv(link_layer: u8) -> LinkLayer {
    match link_layer {
        LINK_LAYER_ETHERNET => LinkLayer::Ethernet,
        LINK_LAYER_INFINIBAND | LINK_LAYER_UNSPECIFIED => LinkLayer::Infiniband,
        _ => LinkLayer::Infiniband,
    }
}

/// The API's event kind for an `ibv_event_type` code.
pub(crate) fn event_kind_from_ibv(code: u32) -> AsyncEventKind {
    let is = |event: ibv_event_type| code == event as u32;
    if is(ibv_event_type::IBV_EVENT_QP_FATAL) {
        AsyncEventKind::QpFatal
    } else if is(ibv_event_type::IBV_EVENT_QP_REQ_ERR) {
        AsyncEventKind::QpRequestError
    } else if is(ibv_event_type::IBV_EVENT_QP_ACCESS_ERR) {
        AsyncEventKind::QpAccessError
    } else if is(ibv_event_type::IBV_EVENT_CQ_ERR) {
        AsyncEventKind::CqOverrun
    } else if is(ibv_event_type::IBV_EVENT_PORT_ACTIVE) {
        AsyncEventKind::PortActive
    } else if is(ibv_event_type::IBV_EVENT_PORT_ERR) {
        AsyncEventKind::PortError
    } else if is(ibv_event_type::IBV_EVENT_DEVICE_FATAL) {
        AsyncEventKind::DeviceFatal
    } else {
        AsyncEventKind::Other(code)
    }
}

/// Whether an event of this code names a QP (its element is an `ibv_qp *`).
pub(crate) fn event_names_qp(code: u32) -> bool {
    [
        ibv_event_type::IBV_EVENT_QP_FATAL,
        ibv_event_type::IBV_EVENT_QP_REQ_ERR,
        ibv_event_type::IBV_EVENT_QP_ACCESS_ERR,
        ibv_event_type::IBV_EVENT_COMM_EST,
        ibv_event_type::IBV_EVENT_SQ_DRAINED,
        ibv_event_type::IBV_EVENT_PATH_MIG,
        ibv_event_type::IBV_EVENT_PATH_MIG_ERR,
        ibv_event_type::IBV_EVENT_QP_LAST_WQE_REACHED,
    ]
    .iter()
    .any(|event| *event as u32 == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_their_names() {
        let table = [
            (ibv_wc_status::IBV_WC_SUCCESS, Status::Success),
            (ibv_wc_status::IBV_WC_LOC_LEN_ERR, Status::LocalLengthError),
            (ibv_wc_status::IBV_WC_LOC_QP_OP_ERR, Status::LocalQpOperationError),
            (ibv_wc_status::IBV_WC_LOC_PROT_ERR, Status::LocalProtectionError),
            (ibv_wc_status::IBV_WC_WR_FLUSH_ERR, Status::Flushed),
            (ibv_wc_status::IBV_WC_REM_INV_REQ_ERR, Status::RemoteInvalidRequest),
            (ibv_wc_status::IBV_WC_REM_ACCESS_ERR, Status::RemoteAccessError),
            (ibv_wc_status::IBV_WC_REM_OP_ERR, Status::RemoteOperationError),
            (ibv_wc_status::IBV_WC_RETRY_EXC_ERR, Status::RetryExceeded),
            (ibv_wc_status::IBV_WC_RNR_RETRY_EXC_ERR, Status::RnrRetryExceeded),
            (ibv_wc_status::IBV_WC_MW_BIND_ERR, Status::Other(6)),
            (ibv_wc_status::IBV_WC_GENERAL_ERR, Status::Other(21)),
            (999, Status::Other(999)),
        ];
        for (code, status) in table {
            assert_eq!(status_from_ibv(code), status, "code {code}");
        }
    }

    #[test]
    fn opcodes_map_to_their_names() {
        let table = [
            (ibv_wc_opcode::IBV_WC_SEND, CompletionOpcode::Send),
            (ibv_wc_opcode::IBV_WC_RDMA_WRITE, CompletionOpcode::Write),
            (ibv_wc_opcode::IBV_WC_RDMA_READ, CompletionOpcode::Read),
            (ibv_wc_opcode::IBV_WC_COMP_SWAP, CompletionOpcode::CompareSwap),
            (ibv_wc_opcode::IBV_WC_FETCH_ADD, CompletionOpcode::FetchAdd),
            (ibv_wc_opcode::IBV_WC_RECV, CompletionOpcode::Recv),
            (ibv_wc_opcode::IBV_WC_RECV_RDMA_WITH_IMM, CompletionOpcode::RecvWithImm),
            (ibv_wc_opcode::IBV_WC_TM_RECV, CompletionOpcode::Recv),
            (ibv_wc_opcode::IBV_WC_BIND_MW, CompletionOpcode::Send),
        ];
        for (code, opcode) in table {
            assert_eq!(opcode_from_ibv(code), opcode, "code {code}");
        }
        let remote = crate::work_request::RemoteAddr::default();
        let posted = [
            (SendOp::Write { remote }, ibv_wr_opcode::IBV_WR_RDMA_WRITE),
            (SendOp::WriteWithImm { remote, imm: 1 }, ibv_wr_opcode::IBV_WR_RDMA_WRITE_WITH_IMM),
            (SendOp::Read { remote }, ibv_wr_opcode::IBV_WR_RDMA_READ),
            (SendOp::Send, ibv_wr_opcode::IBV_WR_SEND),
            (SendOp::SendWithImm { imm: 1 }, ibv_wr_opcode::IBV_WR_SEND_WITH_IMM),
            (SendOp::CompareSwap { remote, compare: 0, swap: 1 }, ibv_wr_opcode::IBV_WR_ATOMIC_CMP_AND_SWP),
            (SendOp::FetchAdd { remote, add: 1 }, ibv_wr_opcode::IBV_WR_ATOMIC_FETCH_AND_ADD),
        ];
        for (op, code) in posted {
            assert_eq!(send_opcode(&op), code, "{op:?}");
        }
    }

    #[test]
    fn mtus_round_trip_and_match_ibv_numbering() {
        for (mtu, code) in
            [(Mtu::Mtu256, 1), (Mtu::Mtu512, 2), (Mtu::Mtu1024, 3), (Mtu::Mtu2048, 4), (Mtu::Mtu4096, 5)]
        {
            assert_eq!(mtu_to_ibv(mtu), code);
            assert_eq!(mtu_from_ibv(code), Some(mtu));
            assert_eq!(256 << (code - 1), mtu.bytes());
        }
        assert_eq!(mtu_from_ibv(0), None);
        assert_eq!(mtu_from_ibv(6), None);
    }

    #[test]
    fn states_round_trip() {
        for state in [QpState::Reset, QpState::Init, QpState::Rtr, QpState::Rts, QpState::Error] {
            assert_eq!(state_from_ibv(state_to_ibv(state)), state);
        }
        assert_eq!(state_from_ibv(ibv_qp_state::IBV_QPS_SQD), QpState::Rts);
        assert_eq!(state_from_ibv(ibv_qp_state::IBV_QPS_SQE), QpState::Error);
        assert_eq!(state_from_ibv(ibv_qp_state::IBV_QPS_UNKNOWN), QpState::Error);
    }

    #[test]
    fn immediate_data_is_big_endian_on_the_wire_and_round_trips() {
        let imm = 0x1234_5678;
        let wire = imm_to_wire(imm);
        // The field's bytes in memory are what goes on the wire: most significant first.
        assert_eq!(wire.to_ne_bytes(), [0x12, 0x34, 0x56, 0x78]);
        assert_eq!(imm_from_wire(wire), imm);
        for imm in [0, 1, u32::MAX, 0xdead_beef] {
            assert_eq!(imm_from_wire(imm_to_wire(imm)), imm);
        }
    }

    #[test]
    fn access_bits_match_ibv() {
        assert_eq!(access_to_ibv(AccessFlags::empty()), 0);
        assert_eq!(access_to_ibv(AccessFlags::LOCAL_WRITE), 1);
        assert_eq!(access_to_ibv(AccessFlags::REMOTE_WRITE), 2);
        assert_eq!(access_to_ibv(AccessFlags::REMOTE_READ), 4);
        assert_eq!(access_to_ibv(AccessFlags::REMOTE_ATOMIC), 8);
        assert_eq!(access_to_ibv(AccessFlags::all_remote()), 15);
    }

    #[test]
    fn events_and_ports_map() {
        assert_eq!(event_kind_from_ibv(1), AsyncEventKind::QpFatal);
        assert_eq!(event_kind_from_ibv(2), AsyncEventKind::QpRequestError);
        assert_eq!(event_kind_from_ibv(3), AsyncEventKind::QpAccessError);
        assert_eq!(event_kind_from_ibv(0), AsyncEventKind::CqOverrun);
        assert_eq!(event_kind_from_ibv(8), AsyncEventKind::DeviceFatal);
        assert_eq!(event_kind_from_ibv(9), AsyncEventKind::PortActive);
        assert_eq!(event_kind_from_ibv(10), AsyncEventKind::PortError);
        assert_eq!(event_kind_from_ibv(77), AsyncEventKind::Other(77));
        assert!(event_names_qp(1) && event_names_qp(16) && !event_names_qp(0) && !event_names_qp(9));
        assert_eq!(port_state_from_ibv(4), PortState::Active);
        assert_eq!(port_state_from_ibv(9), PortState::Other(9));
        assert_eq!(link_layer_from_ibv(LINK_LAYER_ETHERNET), LinkLayer::Ethernet);
        assert_eq!(link_layer_from_ibv(LINK_LAYER_UNSPECIFIED), LinkLayer::Infiniband);
    }
}
