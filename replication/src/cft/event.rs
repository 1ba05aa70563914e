//! What a replica tells its driver: outcomes of proposals, and changes of role.

use usec_qp_pool::NodeId;

use crate::log::CommandId;

/// The role a replica plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoleKind {
    /// It follows: its log is written by whoever it granted.
    Follower,
    /// It is taking over: permissions, then recovery.
    Candidate,
    /// It replicates commands.
    Leader,
}

/// How far a replica taking over has come (see [`crate::cft::candidate`]); for
/// measurements and operators, not for decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Takeover {
    /// Asking for permissions: fewer than a majority granted it their logs so far.
    Permissions,
    /// A majority granted and its proposal number is chosen: catching up and recovering
    /// the undecided entries.
    Recovery,
}

/// Something the driver should act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A command proposed here was decided and applied: its response.
    Committed {
        /// The command.
        id: CommandId,
        /// The state machine's response.
        response: Vec<u8>,
    },
    /// A command proposed here will not be reported committed by this replica (it lost
    /// leadership first). It may still be decided by the next leader; proposing it again
    /// with the same id is safe (it is applied at most once).
    NotCommitted {
        /// The command.
        id: CommandId,
        /// The leader this replica follows now, if it knows one.
        leader: Option<NodeId>,
    },
    /// A command proposed here reached the log after a later command of the same client
    /// was applied: it is never applied (clients wait for each command before the next).
    Superseded {
        /// The command.
        id: CommandId,
    },
    /// The replica's role changed.
    RoleChanged {
        /// Its role now.
        role: RoleKind,
        /// The replica it considers leader (itself as leader or candidate).
        leader: Option<NodeId>,
    },
}

/// Why a proposal was refused at once.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeError {
    /// This replica does not lead; `leader` is the one it follows, if it knows one.
    #[error("not the leader (the leader is {})", leader.map_or("unknown".to_string(), |node| format!("node {node}")))]
    NotLeader {
        /// The leader it follows.
        leader: Option<NodeId>,
    },
    /// The command does not fit a log entry.
    #[error("a command of {len} bytes does not fit an entry (at most {max})")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The most an entry carries.
        max: usize,
    },
    /// Too many commands wait already.
    #[error("{0} commands are waiting already")]
    QueueFull(usize),
}
