//! [`Backend`]: where a front end sends the commands it does not answer itself, and the
//! unreplicated one, [`Unreplicated`], which applies them at once in the front end's
//! thread. The replicated one is [`crate::apps::server::mu::MuBackend`].

use crate::apps::server::Served;

/// Which reply a pending command's reply is: the connection and its place there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tag {
    /// The connection's id (never reused).
    pub connection: u64,
    /// The reply's number on that connection.
    pub slot: u64,
}

/// What became of a submitted command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Its reply is in the buffer given.
    Done,
    /// Its reply will come from [`Backend::poll`] with its tag.
    Pending,
}

/// Runs the state machine's commands for a front end.
pub trait Backend {
    /// The largest encoded command it takes; larger ones are answered with an error
    /// before reaching it.
    fn max_command_bytes(&self) -> usize;

    /// Takes an encoded command (`read`: it changes nothing), replying at once into
    /// `out` or later through [`Backend::poll`].
    fn submit(&mut self, tag: Tag, command: &[u8], read: bool, out: &mut Vec<u8>) -> Submitted;

    /// Answers a read from this replica's state as it is, however stale (READONLY, and
    /// [`crate::apps::server::Prepared::Local`] commands).
    fn stale_read(&mut self, command: &[u8], out: &mut Vec<u8>);

    /// Answers a read-only command from this replica's state *if* that state is known to
    /// hold every write acknowledged before (a leader's local read under an Active(view)
    /// lease, [`crate::cft::views`]): true with the reply in `out`; false, with `out`
    /// untouched, if the read must go through [`Backend::submit`]. The front end asks only
    /// when no earlier reply of the connection is pending, so that a client's pipelined
    /// read never overtakes its own write. The default: never.
    fn linearizable_read(&mut self, command: &[u8], out: &mut Vec<u8>) -> bool {
        let _ = (command, out);
        false
    }

    /// Hands over the replies that are in, each with its tag.
    fn poll(&mut self, deliver: &mut dyn FnMut(Tag, &[u8]));

    /// Commands submitted whose replies are not in yet.
    fn in_flight(&self) -> usize;

    /// INFO's `# Replication` lines.
    fn replication_info(&self, out: &mut String);

    /// INFO's `# Keyspace` lines.
    fn keyspace_info(&self, out: &mut String);
}

/// The state machine in the front end's thread: each command applied as it arrives.
#[derive(Debug)]
pub struct Unreplicated<S> {
    machine: S,
    applied: u64,
}

impl<S: Served> Unreplicated<S> {
    /// Serves `machine`.
    pub fn new(machine: S) -> Unreplicated<S> {
        Unreplicated { machine, applied: 0 }
    }

    /// The state machine.
    pub fn machine(&self) -> &S {
        &self.machine
    }
}

impl<S: Served> Backend for Unreplicated<S> {
    fn max_command_bytes(&self) -> usize {
        usize::MAX
    }

    fn submit(&mut self, _tag: Tag, command: &[u8], _read: bool, out: &mut Vec<u8>) -> Submitted {
        self.machine.apply(command, out);
        self.applied += 1;
        Submitted::Done
    }

    fn stale_read(&mut self, command: &[u8], out: &mut Vec<u8>) {
        self.machine.read(command, out);
    }

    fn poll(&mut self, _deliver: &mut dyn FnMut(Tag, &[u8])) {}

    fn in_flight(&self) -> usize {
        0
    }

    fn replication_info(&self, out: &mut String) {
        out.push_str(&format!(
            "role:master\r\nusec_replication:none\r\napplied_commands:{}\r\n",
            self.applied
        ));
    }

    fn keyspace_info(&self, out: &mut String) {
        self.machine.keyspace(out);
    }
}
