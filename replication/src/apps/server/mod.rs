//! A RESP front end: a driver that puts a state machine on TCP for Redis clients.
//!
//! It is not part of any state machine: an [`App`] says how requests become commands, a
//! [`Backend`] runs them — unreplicated in the front end's own thread ([`Unreplicated`]),
//! or through a Mu replica ([`MuBackend`]) — so the same application runs either way.
//!
//! - [`Server`] ([`event_loop`]): the non-blocking event loop (mio), many clients, pipelining, bounded
//!   buffers, fairness between clients;
//! - [`connection`]: one client, its replies kept in request order;
//! - [`local`]: commands answered by the front end (PING, HELLO, CLIENT, COMMAND, INFO, …);
//! - [`commands`]: COMMAND's replies, per application: Redis's own for Redis's commands;
//! - [`backend`], [`mu`], [`bft`]: where the rest goes; [`shared`]: a state machine read by the
//!   front end while a replica applies to it.

pub mod backend;
pub mod bft;
pub mod commands;
pub(crate) mod connection;
pub mod event_loop;
pub mod local;
pub mod mu;
pub mod shared;

pub use backend::{Backend, Submitted, Tag, Unreplicated};
pub use bft::BftBackend;
pub use event_loop::{Server, ServerConfig, Stopper};
pub use mu::MuBackend;
pub use shared::Shared;

use crate::apps::resp::Args;
use crate::state_machine::StateMachine;

/// What [`App::prepare`] made of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// A command that changes nothing is in the command buffer.
    Read,
    /// A command that may change the state is in the command buffer.
    Write,
    /// A command that changes nothing is in the command buffer, to be answered from
    /// this replica's state as it is, never through the log (a local read: on a
    /// replica behind the leader, an earlier state).
    Local,
    /// The reply (an error) is in the reply buffer; nothing goes to the state machine.
    Replied,
    /// Not a command of this application.
    Unknown,
}

/// How an application's requests become commands for its state machine.
pub trait App {
    /// Encodes `args` as a command stamped with `stamp_ms` (Unix milliseconds) into
    /// `command`, or writes the reply into `reply`.
    fn prepare(&self, args: Args<'_>, stamp_ms: i64, command: &mut Vec<u8>, reply: &mut Vec<u8>) -> Prepared;

    /// Its commands and the front end's, as COMMAND describes them.
    fn commands(&self) -> &'static commands::Table;
}

/// A state machine a front end can serve: besides applying, it answers reads without
/// changing anything and describes itself for INFO.
pub trait Served: StateMachine {
    /// Answers a read-only command from the state as it is.
    fn read(&self, command: &[u8], response: &mut Vec<u8>);
    /// INFO's `# Keyspace` lines.
    fn keyspace(&self, out: &mut String);
}
