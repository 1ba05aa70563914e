//! The `ibv_qp_attr` and attribute mask of each state transition of an RC QP, as pure
//! functions (the IB specification's table of required attributes, per transition).

use rdma_sys::{ibv_qp_attr, ibv_qp_attr_mask as Mask};

use crate::access::AccessFlags;
use crate::error::{Error, Result};
use crate::ibverbs::address::{ah_attr, Route};
use crate::ibverbs::convert::{access_to_ibv, mtu_to_ibv, state_to_ibv};
use crate::ibverbs::raw::zeroed;
use crate::qp::{InitAttributes, Mtu, QpState, RtrAttributes, RtsAttributes};

/// One `ibv_modify_qp` call's arguments.
pub(crate) struct Modify {
    pub attr: ibv_qp_attr,
    pub mask: Mask,
    /// For messages: what the call does.
    pub what: &'static str,
}

impl Modify {
    fn new(state: QpState, what: &'static str) -> Modify {
        let mut attr: ibv_qp_attr = zeroed();
        attr.qp_state = state_to_ibv(state);
        Modify { attr, mask: Mask::IBV_QP_STATE, what }
    }
}

/// RESET → INIT (or INIT → INIT): port, partition key and responder rights.
pub(crate) fn init(port: u8, attributes: &InitAttributes) -> Modify {
    let mut modify = Modify::new(QpState::Init, "to INIT");
    modify.attr.port_num = port;
    modify.attr.pkey_index = attributes.pkey_index;
    modify.attr.qp_access_flags = access_to_ibv(attributes.access);
    modify.mask |= Mask::IBV_QP_PORT | Mask::IBV_QP_PKEY_INDEX | Mask::IBV_QP_ACCESS_FLAGS;
    modify
}

/// What RTR needs besides the attributes the caller gave.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RtrTarget {
    pub route: Route,
    pub port: u8,
    pub dest_qp_num: u32,
    /// The first PSN the peer will send (its endpoint's PSN, or where it is now).
    pub rq_psn: u32,
    pub path_mtu: Mtu,
    /// The device's `max_qp_rd_atom`.
    pub max_dest_rd_atomic_limit: u32,
}

/// INIT → RTR: the path to the peer, its QP number and first PSN, and incoming READ and
/// atomic resources (clamped to what the device has).
pub(crate) fn rtr(target: &RtrTarget, attributes: &RtrAttributes) -> Result<Modify> {
    if attributes.min_rnr_timer > 31 {
        return Err(Error::invalid(format!(
            "min_rnr_timer {} is not a 5-bit code",
            attributes.min_rnr_timer
        )));
    }
    let mut modify = Modify::new(QpState::Rtr, "INIT to RTR");
    let attr = &mut modify.attr;
    attr.path_mtu = mtu_to_ibv(target.path_mtu);
    attr.dest_qp_num = target.dest_qp_num;
    attr.rq_psn = target.rq_psn & 0xff_ffff;
    attr.max_dest_rd_atomic = clamp_rd_atomic(attributes.max_dest_rd_atomic, target.max_dest_rd_atomic_limit);
    attr.min_rnr_timer = attributes.min_rnr_timer;
    attr.ah_attr = ah_attr(target.route, target.port);
    modify.mask = modify.mask
        | Mask::IBV_QP_AV
        | Mask::IBV_QP_PATH_MTU
        | Mask::IBV_QP_DEST_QPN
        | Mask::IBV_QP_RQ_PSN
        | Mask::IBV_QP_MAX_DEST_RD_ATOMIC
        | Mask::IBV_QP_MIN_RNR_TIMER;
    Ok(modify)
}

/// RTR → RTS: timers, retries, the first PSN this QP sends, and outgoing READ and atomic
/// resources (clamped to the device's `max_qp_init_rd_atom`).
pub(crate) fn rts(sq_psn: u32, attributes: &RtsAttributes, max_rd_atomic_limit: u32) -> Result<Modify> {
    let checks = [
        ("timeout", attributes.timeout, 31),
        ("retry_count", attributes.retry_count, 7),
        ("rnr_retry", attributes.rnr_retry, 7),
    ];
    for (what, value, max) in checks {
        if value > max {
            return Err(Error::invalid(format!("{what} = {value} outside 0..={max}")));
        }
    }
    let mut modify = Modify::new(QpState::Rts, "RTR to RTS");
    let attr = &mut modify.attr;
    attr.timeout = attributes.timeout;
    attr.retry_cnt = attributes.retry_count;
    attr.rnr_retry = attributes.rnr_retry;
    attr.sq_psn = sq_psn & 0xff_ffff;
    attr.max_rd_atomic = clamp_rd_atomic(attributes.max_rd_atomic, max_rd_atomic_limit);
    modify.mask = modify.mask
        | Mask::IBV_QP_TIMEOUT
        | Mask::IBV_QP_RETRY_CNT
        | Mask::IBV_QP_RNR_RETRY
        | Mask::IBV_QP_SQ_PSN
        | Mask::IBV_QP_MAX_QP_RD_ATOMIC;
    Ok(modify)
}

/// INIT → INIT or RTS → RTS changing only the responder rights.
pub(crate) fn access(state: QpState, access: AccessFlags) -> Modify {
    let mut modify = Modify::new(state, "change of access flags");
    modify.attr.qp_access_flags = access_to_ibv(access);
    modify.mask |= Mask::IBV_QP_ACCESS_FLAGS;
    modify
}

/// Any state → ERROR or RESET.
pub(crate) fn to_state(state: QpState) -> Modify {
    Modify::new(state, if state == QpState::Reset { "to RESET" } else { "to ERROR" })
}

/// The path MTU: the caller's choice, else the smaller of the two ports' MTUs.
pub(crate) fn path_mtu(asked: Option<Mtu>, local: Mtu, remote: Mtu) -> Mtu {
    asked.unwrap_or(local.min(remote))
}

/// READs and atomics in flight: at least 1 (0 would forbid them), at most the device's.
fn clamp_rd_atomic(asked: u8, limit: u32) -> u8 {
    let limit = u8::try_from(limit).unwrap_or(u8::MAX).max(1);
    asked.clamp(1, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(masks: &[Mask]) -> u32 {
        masks.iter().fold(0, |all, mask| all | mask.0)
    }

    #[test]
    fn init_sets_port_pkey_and_access() {
        let modify = init(2, &InitAttributes { access: AccessFlags::REMOTE_READ, pkey_index: 3 });
        assert_eq!(
            modify.mask.0,
            bits(&[
                Mask::IBV_QP_STATE,
                Mask::IBV_QP_PORT,
                Mask::IBV_QP_PKEY_INDEX,
                Mask::IBV_QP_ACCESS_FLAGS
            ])
        );
        assert_eq!((modify.attr.qp_state, modify.attr.port_num, modify.attr.pkey_index), (1, 2, 3));
        assert_eq!(modify.attr.qp_access_flags, 4);
    }

    #[test]
    fn rtr_takes_qpn_psn_and_path_from_the_peer() {
        let target = RtrTarget {
            route: Route::Global { dlid: 0, dgid: [1; 16], sgid_index: 0 },
            port: 1,
            dest_qp_num: 0x11,
            rq_psn: 0x1ab_cdef,
            path_mtu: Mtu::Mtu1024,
            max_dest_rd_atomic_limit: 4,
        };
        let modify = rtr(&target, &RtrAttributes::default()).unwrap();
        assert_eq!(
            modify.mask.0,
            bits(&[
                Mask::IBV_QP_STATE,
                Mask::IBV_QP_AV,
                Mask::IBV_QP_PATH_MTU,
                Mask::IBV_QP_DEST_QPN,
                Mask::IBV_QP_RQ_PSN,
                Mask::IBV_QP_MAX_DEST_RD_ATOMIC,
                Mask::IBV_QP_MIN_RNR_TIMER,
            ])
        );
        let attr = &modify.attr;
        assert_eq!((attr.qp_state, attr.dest_qp_num, attr.rq_psn, attr.path_mtu), (2, 0x11, 0xab_cdef, 3));
        assert_eq!(attr.max_dest_rd_atomic, 4, "clamped to the device");
        assert_eq!((attr.ah_attr.is_global, attr.ah_attr.port_num), (1, 1));
        let bad = RtrAttributes { min_rnr_timer: 32, ..Default::default() };
        assert!(rtr(&target, &bad).is_err());
    }

    #[test]
    fn rts_takes_our_psn_and_checks_retry_ranges() {
        let modify = rts(0x42, &RtsAttributes::default(), 128).unwrap();
        assert_eq!(
            modify.mask.0,
            bits(&[
                Mask::IBV_QP_STATE,
                Mask::IBV_QP_TIMEOUT,
                Mask::IBV_QP_RETRY_CNT,
                Mask::IBV_QP_RNR_RETRY,
                Mask::IBV_QP_SQ_PSN,
                Mask::IBV_QP_MAX_QP_RD_ATOMIC,
            ])
        );
        let attr = &modify.attr;
        assert_eq!(
            (attr.qp_state, attr.sq_psn, attr.timeout, attr.retry_cnt, attr.rnr_retry),
            (3, 0x42, 14, 7, 7)
        );
        assert_eq!(attr.max_rd_atomic, 16);
        assert!(rts(0, &RtsAttributes { retry_count: 8, ..Default::default() }, 16).is_err());
        assert!(rts(0, &RtsAttributes { rnr_retry: 9, ..Default::default() }, 16).is_err());
        assert!(rts(0, &RtsAttributes { timeout: 32, ..Default::default() }, 16).is_err());
        let zero = rts(0, &RtsAttributes { max_rd_atomic: 0, ..Default::default() }, 0).unwrap();
        assert_eq!(zero.attr.max_rd_atomic, 1);
    }

    #[test]
    fn access_error_and_reset_masks() {
        let modify = access(QpState::Rts, AccessFlags::REMOTE_WRITE | AccessFlags::REMOTE_READ);
        assert_eq!(modify.mask.0, bits(&[Mask::IBV_QP_STATE, Mask::IBV_QP_ACCESS_FLAGS]));
        assert_eq!((modify.attr.qp_state, modify.attr.qp_access_flags), (3, 6));
        let error = to_state(QpState::Error);
        assert_eq!((error.mask.0, error.attr.qp_state), (Mask::IBV_QP_STATE.0, 6));
        assert_eq!(to_state(QpState::Reset).attr.qp_state, 0);
    }

    #[test]
    fn path_mtu_is_the_smaller_unless_given() {
        assert_eq!(path_mtu(None, Mtu::Mtu4096, Mtu::Mtu1024), Mtu::Mtu1024);
        assert_eq!(path_mtu(None, Mtu::Mtu1024, Mtu::Mtu2048), Mtu::Mtu1024);
        assert_eq!(path_mtu(Some(Mtu::Mtu512), Mtu::Mtu1024, Mtu::Mtu2048), Mtu::Mtu512);
    }
}
