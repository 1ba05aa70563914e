//! Attributes of QP creation and of each state transition, with the IB encodings of the
//! timers spelled out.

use crate::access::AccessFlags;

/// Path MTU (`ibv_mtu`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mtu {
    /// 256 bytes.
    Mtu256,
    /// 512 bytes.
    Mtu512,
    /// 1024 bytes (the usual RoCE MTU on a 1500-byte Ethernet link).
    #[default]
    Mtu1024,
    /// 2048 bytes.
    Mtu2048,
    /// 4096 bytes.
    Mtu4096,
}

impl Mtu {
    /// The MTU in bytes.
    pub fn bytes(self) -> u32 {
        256 << self.code()
    }

    /// 0 for 256 bytes up to 4 for 4096 (one less than `ibv_mtu`'s numbering).
    pub(crate) fn code(self) -> u8 {
        match self {
            Mtu::Mtu256 => 0,
            Mtu::Mtu512 => 1,
            Mtu::Mtu1024 => 2,
            Mtu::Mtu2048 => 3,
            Mtu::Mtu4096 => 4,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Mtu> {
        Some(match code {
            0 => Mtu::Mtu256,
            1 => Mtu::Mtu512,
            2 => Mtu::Mtu1024,
            3 => Mtu::Mtu2048,
            4 => Mtu::Mtu4096,
            _ => return None,
        })
    }

    /// The largest MTU not above `bytes`, if any.
    pub fn from_bytes(bytes: u32) -> Option<Mtu> {
        [Mtu::Mtu4096, Mtu::Mtu2048, Mtu::Mtu1024, Mtu::Mtu512, Mtu::Mtu256]
            .into_iter()
            .find(|mtu| mtu.bytes() <= bytes)
    }
}

/// Queue sizes asked for at creation; the QP reports what it actually got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QpCaps {
    /// Outstanding send work requests.
    pub max_send_wr: u32,
    /// Outstanding receive work requests.
    pub max_recv_wr: u32,
    /// SGEs per send work request.
    pub max_send_sge: u32,
    /// SGEs per receive work request.
    pub max_recv_sge: u32,
    /// Largest inline payload.
    pub max_inline_data: u32,
}

impl Default for QpCaps {
    fn default() -> QpCaps {
        QpCaps { max_send_wr: 256, max_recv_wr: 256, max_send_sge: 1, max_recv_sge: 1, max_inline_data: 64 }
    }
}

/// How to create a QP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QpOptions {
    /// Queue sizes.
    pub caps: QpCaps,
    /// Port number (ibverbs; 1-based).
    pub port: u8,
    /// GID index for RoCE / global routing (ibverbs); `None` uses LID routing on
    /// InfiniBand and index 0 on RoCE.
    pub gid_index: Option<u8>,
}

impl Default for QpOptions {
    fn default() -> QpOptions {
        QpOptions { caps: QpCaps::default(), port: 1, gid_index: None }
    }
}

/// RESET → INIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitAttributes {
    /// What the peer may do through this QP (responder side).
    pub access: AccessFlags,
    /// Partition key index.
    pub pkey_index: u16,
}

impl Default for InitAttributes {
    fn default() -> InitAttributes {
        InitAttributes { access: AccessFlags::all_remote(), pkey_index: 0 }
    }
}

/// INIT → RTR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtrAttributes {
    /// Path MTU; `None` takes the smaller of the two endpoints' MTUs.
    pub mtu: Option<Mtu>,
    /// Incoming READs and atomics in flight at once.
    pub max_dest_rd_atomic: u8,
    /// Encoded minimum RNR NAK timer the peer must wait before retrying a SEND (see
    /// [`rnr_timer_ns`]).
    pub min_rnr_timer: u8,
}

impl Default for RtrAttributes {
    fn default() -> RtrAttributes {
        RtrAttributes { mtu: None, max_dest_rd_atomic: 16, min_rnr_timer: 12 }
    }
}

/// RTR → RTS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtsAttributes {
    /// Encoded local ACK timeout (see [`ack_timeout_ns`]); 0 waits forever.
    pub timeout: u8,
    /// Transport retries before [`Status::RetryExceeded`](crate::Status::RetryExceeded) (0..=7).
    pub retry_count: u8,
    /// RNR retries before [`Status::RnrRetryExceeded`](crate::Status::RnrRetryExceeded)
    /// (0..=6; 7 retries forever).
    pub rnr_retry: u8,
    /// Outgoing READs and atomics in flight at once.
    pub max_rd_atomic: u8,
}

impl Default for RtsAttributes {
    fn default() -> RtsAttributes {
        RtsAttributes { timeout: 14, retry_count: 7, rnr_retry: 7, max_rd_atomic: 16 }
    }
}

/// Everything [`QueuePair::connect`](crate::QueuePair::connect) needs to go from RESET to
/// RTS in one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// RESET → INIT.
    pub init: InitAttributes,
    /// INIT → RTR.
    pub rtr: RtrAttributes,
    /// RTR → RTS.
    pub rts: RtsAttributes,
}

/// The IB local ACK timeout encoding: 4.096 µs × 2^`code`; 0 means no timeout.
pub fn ack_timeout_ns(code: u8) -> Option<u64> {
    match code {
        0 => None,
        code => Some(4096u64 << code.min(31)),
    }
}

/// The IB RNR NAK timer encoding (`min_rnr_timer`), in nanoseconds.
pub fn rnr_timer_ns(code: u8) -> u64 {
    // IB spec table 45, in units of 10 µs; code 0 is the largest value.
    const TENS_OF_MICROSECONDS: [u64; 32] = [
        65_536, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
        3072, 4096, 6144, 8192, 12288, 16384, 24576, 32768, 49152,
    ];
    TENS_OF_MICROSECONDS[usize::from(code & 31)] * 10_000
}

/// Whether an RNR retry count means "retry forever".
pub fn rnr_retries_forever(rnr_retry: u8) -> bool {
    rnr_retry >= 7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_encodings_match_the_spec() {
        assert_eq!(rnr_timer_ns(1), 10_000);
        assert_eq!(rnr_timer_ns(12), 640_000);
        assert_eq!(rnr_timer_ns(0), 655_360_000);
        assert_eq!(rnr_timer_ns(31), 491_520_000);
        assert_eq!(ack_timeout_ns(0), None);
        assert_eq!(ack_timeout_ns(14), Some(67_108_864));
        assert_eq!(Mtu::from_bytes(1500), Some(Mtu::Mtu1024));
        assert_eq!(Mtu::from_bytes(100), None);
        for code in 0..5 {
            assert_eq!(Mtu::from_code(code).map(Mtu::code), Some(code));
        }
    }
}
