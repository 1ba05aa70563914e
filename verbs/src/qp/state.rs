//! The verbs QP state machine.

/// The state of a queue pair (`ibv_qp_state`, without the rarely used SQD/SQE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum QpState {
    /// Just created, or reset: no work requests accepted.
    #[default]
    Reset,
    /// Initialised: RECVs may be posted, nothing is received yet.
    Init,
    /// Ready to receive: connected to a remote QP, serves incoming requests.
    Rtr,
    /// Ready to send: fully connected.
    Rts,
    /// Failed: every outstanding and later work request completes as flushed.
    Error,
}

impl QpState {
    /// Whether the verbs state machine allows moving from `self` to `to` (a "transition"
    /// to the same state is a modify of attributes, allowed for INIT and RTS as in the IB
    /// specification). ERROR is reached from any state but RESET: the specification's
    /// diagram has no RESET → ERROR, and devices refuse it (rxe with EINVAL).
    pub fn can_move_to(self, to: QpState) -> bool {
        use QpState::*;
        matches!(
            (self, to),
            (_, Reset)
                | (Init | Rtr | Rts | Error, Error)
                | (Reset, Init)
                | (Init, Init)
                | (Init, Rtr)
                | (Rtr, Rts)
                | (Rts, Rts)
        )
    }

    /// Whether the send queue executes work requests in this state.
    pub fn sends(self) -> bool {
        self == QpState::Rts
    }

    /// Whether the QP answers incoming requests from its peer in this state.
    pub fn serves_peer(self) -> bool {
        matches!(self, QpState::Rtr | QpState::Rts)
    }

    /// Whether RECVs may be posted in this state.
    pub fn accepts_recv(self) -> bool {
        self != QpState::Reset
    }

    /// A small integer encoding for shared-memory state words.
    pub(crate) fn code(self) -> u8 {
        match self {
            QpState::Reset => 0,
            QpState::Init => 1,
            QpState::Rtr => 2,
            QpState::Rts => 3,
            QpState::Error => 4,
        }
    }

    /// Inverse of [`QpState::code`]; unknown codes read as `Error`.
    pub(crate) fn from_code(code: u8) -> QpState {
        match code {
            0 => QpState::Reset,
            1 => QpState::Init,
            2 => QpState::Rtr,
            3 => QpState::Rts,
            _ => QpState::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::QpState::{self, *};

    // The transition table is checked against the IB specification's state diagram, through
    // the public API on every provider, by the conformance suite (`states::*`).

    #[test]
    fn state_codes_round_trip_and_unknown_codes_read_as_error() {
        for state in [Reset, Init, Rtr, Rts, Error] {
            assert_eq!(QpState::from_code(state.code()), state);
        }
        for code in 5..=u8::MAX {
            assert_eq!(QpState::from_code(code), Error, "code {code}");
        }
    }
}
