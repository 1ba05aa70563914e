//! Work completions: what a CQ hands back.

use std::fmt;

/// How a work request ended, named as the NIC reports it (`ibv_wc_status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// The operation completed.
    #[default]
    Success,
    /// A local length error: e.g. a RECV buffer too small for the incoming message, or an
    /// atomic whose local buffer is not 8 bytes.
    LocalLengthError,
    /// An internal consistency error of the local QP (e.g. a malformed work request).
    LocalQpOperationError,
    /// A local SGE names an unknown lkey, lies outside its MR, or lacks local write.
    LocalProtectionError,
    /// The QP was (or went) into the error state; this request was not executed.
    Flushed,
    /// The responder rejected the request: bad opcode for the QP, atomic misaligned, a
    /// message too long for the receive buffer (as seen by the sender), or the like.
    RemoteInvalidRequest,
    /// The responder refused access: unknown rkey, out of bounds, or the MR or responder
    /// QP lacks the right.
    RemoteAccessError,
    /// The responder could not complete the operation (e.g. its QP is in error).
    RemoteOperationError,
    /// No acknowledgement after the configured retries: the peer is dead or unreachable.
    RetryExceeded,
    /// The responder had no RECV posted for a SEND after the configured RNR retries.
    RnrRetryExceeded,
    /// A provider-specific failure with the provider's raw code.
    Other(u32),
}

impl Status {
    /// Whether the status is [`Status::Success`].
    pub fn is_success(self) -> bool {
        self == Status::Success
    }
}

impl Status {
    /// A stable small-integer encoding, for shared memory.
    pub(crate) fn code(self) -> u32 {
        match self {
            Status::Success => 0,
            Status::LocalLengthError => 1,
            Status::LocalQpOperationError => 2,
            Status::LocalProtectionError => 3,
            Status::Flushed => 4,
            Status::RemoteInvalidRequest => 5,
            Status::RemoteAccessError => 6,
            Status::RemoteOperationError => 7,
            Status::RetryExceeded => 8,
            Status::RnrRetryExceeded => 9,
            Status::Other(code) => 0x1000_0000 | (code & 0x0fff_ffff),
        }
    }

    /// Inverse of [`Status::code`].
    pub(crate) fn from_code(code: u32) -> Status {
        match code {
            0 => Status::Success,
            1 => Status::LocalLengthError,
            2 => Status::LocalQpOperationError,
            3 => Status::LocalProtectionError,
            4 => Status::Flushed,
            5 => Status::RemoteInvalidRequest,
            6 => Status::RemoteAccessError,
            7 => Status::RemoteOperationError,
            8 => Status::RetryExceeded,
            9 => Status::RnrRetryExceeded,
            other => Status::Other(other & 0x0fff_ffff),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Status::Success => "success",
            Status::LocalLengthError => "local length error",
            Status::LocalQpOperationError => "local QP operation error",
            Status::LocalProtectionError => "local protection error",
            Status::Flushed => "work request flushed",
            Status::RemoteInvalidRequest => "remote invalid request error",
            Status::RemoteAccessError => "remote access error",
            Status::RemoteOperationError => "remote operation error",
            Status::RetryExceeded => "transport retry counter exceeded",
            Status::RnrRetryExceeded => "RNR retry counter exceeded",
            Status::Other(code) => return write!(f, "provider status {code}"),
        };
        f.write_str(text)
    }
}

/// Which operation a completion belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CompletionOpcode {
    /// A SEND or SEND_WITH_IMM on the send queue.
    #[default]
    Send,
    /// An RDMA WRITE or WRITE_WITH_IMM on the send queue.
    Write,
    /// An RDMA READ.
    Read,
    /// A compare-and-swap.
    CompareSwap,
    /// A fetch-and-add.
    FetchAdd,
    /// A RECV consumed by an incoming SEND.
    Recv,
    /// A RECV consumed by an incoming WRITE_WITH_IMM (the data went to the WRITE's target).
    RecvWithImm,
}

impl CompletionOpcode {
    /// A stable small-integer encoding, for shared memory.
    pub(crate) fn code(self) -> u32 {
        match self {
            CompletionOpcode::Send => 0,
            CompletionOpcode::Write => 1,
            CompletionOpcode::Read => 2,
            CompletionOpcode::CompareSwap => 3,
            CompletionOpcode::FetchAdd => 4,
            CompletionOpcode::Recv => 5,
            CompletionOpcode::RecvWithImm => 6,
        }
    }

    /// Inverse of [`CompletionOpcode::code`]; unknown codes read as `Recv`.
    pub(crate) fn from_code(code: u32) -> CompletionOpcode {
        match code {
            0 => CompletionOpcode::Send,
            1 => CompletionOpcode::Write,
            2 => CompletionOpcode::Read,
            3 => CompletionOpcode::CompareSwap,
            4 => CompletionOpcode::FetchAdd,
            6 => CompletionOpcode::RecvWithImm,
            _ => CompletionOpcode::Recv,
        }
    }
}

/// One work completion.
///
/// `Completion` is `Copy` and has a `Default` so callers can poll into a plain array:
/// `let mut batch = [Completion::default(); 16];`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// The `wr_id` of the work request, untouched.
    pub wr_id: u64,
    /// How it ended.
    pub status: Status,
    /// What it was. For flushed or failed requests this is the request's own kind.
    pub opcode: CompletionOpcode,
    /// Bytes received (RECV), read (READ), or 8 for atomics; 0 where not meaningful.
    pub byte_len: u32,
    /// The immediate data of a SEND_WITH_IMM or WRITE_WITH_IMM, at the receiver.
    pub imm: Option<u32>,
    /// The local QP number the request was posted on.
    pub qp_num: u32,
}

impl Completion {
    /// Whether the completion reports success.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
}
