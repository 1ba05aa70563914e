//! A key-value store with Redis's string commands, as a replicated state machine.
//!
//! - [`KvMachine`]: the state machine (Redis's replies as RESP bytes);
//! - [`command`]: what it applies, and the compact versioned encoding in the log;
//! - [`syntax`]: requests to commands, with Redis's errors — [`KvApp`] for the front end;
//! - [`keyspace`]: keys in a deterministic order, deadlines; [`glob`]: KEYS/SCAN patterns.
//!
//! Expiry is deterministic: the front end that proposes a command stamps its time into
//! it, and replicas expire keys by the stamps of the commands they apply — never by their
//! own clocks.
//!
//! ```
//! use usec_replication::apps::kv::{KvApp, KvMachine};
//! use usec_replication::apps::resp::{Parsed, RequestParser, Limits};
//! use usec_replication::apps::server::{App, Prepared};
//! use usec_replication::StateMachine;
//!
//! let mut machine = KvMachine::new();
//! let mut parser = RequestParser::new(Limits::default());
//! let mut reply = Vec::new();
//! for (request, stamp_ms) in [(&b"SET k v PX 100\r\n"[..], 1_000), (b"GET k\r\n", 1_050), (b"GET k\r\n", 1_100)] {
//!     let Ok(Parsed::Request { .. }) = parser.parse(request) else { unreachable!() };
//!     let mut command = Vec::new();
//!     assert_ne!(KvApp.prepare(parser.args(request), stamp_ms, &mut command, &mut reply), Prepared::Replied);
//!     machine.apply(&command, &mut reply);
//! }
//! // Set, read before the deadline, read at it: by the stamps, not by any clock.
//! assert_eq!(reply, b"+OK\r\n$1\r\nv\r\n$-1\r\n");
//! ```

pub mod command;
pub mod glob;
pub mod keyspace;
pub mod machine;
pub mod syntax;

pub use machine::KvMachine;

use std::sync::OnceLock;

use crate::apps::resp::Args;
use crate::apps::server::commands::Table;
use crate::apps::server::{App, Prepared, Served};

/// The KV's requests, for the front end.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvApp;

impl App for KvApp {
    fn prepare(&self, args: Args<'_>, stamp_ms: i64, command: &mut Vec<u8>, reply: &mut Vec<u8>) -> Prepared {
        syntax::prepare(args, stamp_ms, command, reply)
    }

    fn commands(&self) -> &'static Table {
        static TABLE: OnceLock<Table> = OnceLock::new();
        TABLE.get_or_init(|| Table::new(syntax::COMMANDS, &[]))
    }
}

impl Served for KvMachine {
    fn read(&self, command: &[u8], response: &mut Vec<u8>) {
        KvMachine::read(self, command, response)
    }

    fn keyspace(&self, out: &mut String) {
        if !self.is_empty() {
            out.push_str(&format!("db0:keys={},expires=0,avg_ttl=0\r\n", self.len()));
        }
    }
}
