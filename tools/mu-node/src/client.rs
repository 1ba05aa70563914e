//! The built-in client: a thread that proposes unique commands through the local replica,
//! one at a time, and prints `ack <command in hex>` for each acknowledged one — before it
//! proposes the next, so that whoever reads the output knows every acknowledged command
//! even if the process is killed right after.
//!
//! A command is `n<node>.<nonce>.<sequence>`: the node id and a random per-process nonce
//! make it unique across the group's life (a restarted node is a new client). A command
//! the replica refused (not the leader) or could not report committed (it lost leadership)
//! is proposed again under the same id, which the replicas apply at most once; so with one
//! command outstanding, a command of this client is never superseded.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use usec_qp_pool::NodeId;
use usec_replication::driver::{ClientError, ClientHandle, Ticket};
use usec_replication::log::CommandId;

/// How the client paces itself.
#[derive(Clone, Copy, Debug)]
pub struct ClientPacing {
    /// Between an acknowledgement and the next command.
    pub pause: Duration,
    /// Before proposing again after a refusal.
    pub retry: Duration,
}

/// How long a stopping client still waits for the outcome of its last command.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The client's thread.
#[derive(Debug)]
pub struct Client {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<u64>>,
}

impl Client {
    /// Starts proposing through `handle`, as node `me` with a process nonce `nonce`.
    pub fn spawn(handle: ClientHandle, me: NodeId, nonce: u64, pacing: ClientPacing) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mu-client".into())
            .spawn(move || propose_until_stopped(handle, me, nonce, pacing, &stopping))
            .expect("spawning a thread");
        Client { stop, thread }
    }

    /// Stops proposing (the command in flight gets a few seconds to be decided) and
    /// returns how many commands were acknowledged.
    pub fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => bail!("the client thread panicked"),
        }
    }
}

fn propose_until_stopped(
    mut handle: ClientHandle,
    me: NodeId,
    nonce: u64,
    pacing: ClientPacing,
    stop: &AtomicBool,
) -> Result<u64> {
    let client = nonce;
    let mut acked = 0;
    for sequence in 1.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let id = CommandId { client, sequence };
        let command = format!("n{me}.{nonce:016x}.{sequence}").into_bytes();
        if !propose_until_acked(&mut handle, id, &command, pacing, stop)? {
            break;
        }
        // One write of a whole line to the (line-buffered) stdout: a line is whole even if
        // the console prints at the same time.
        writeln!(std::io::stdout(), "ack {}", hex(&command))?;
        acked += 1;
        if !pacing.pause.is_zero() {
            std::thread::sleep(pacing.pause);
        }
    }
    Ok(acked)
}

/// Proposes `command` until it is acknowledged (true) or the client stops (false).
fn propose_until_acked(
    handle: &mut ClientHandle,
    id: CommandId,
    command: &[u8],
    pacing: ClientPacing,
    stop: &AtomicBool,
) -> Result<bool> {
    loop {
        let outcome = match handle.submit_as(id, command) {
            Ok(ticket) => outcome(&ticket, stop),
            Err(error) => Some(Err(error)),
        };
        match outcome {
            Some(Ok(_)) => return Ok(true),
            None => return Ok(false),
            Some(Err(ClientError::Refused(_) | ClientError::NotCommitted { .. } | ClientError::Busy)) => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                std::thread::sleep(pacing.retry);
            }
            Some(Err(error)) => bail!("command {id:?}: {error}"),
        }
    }
}

/// Waits for a ticket's outcome; `None` if the client was stopped and the outcome did not
/// come within [`STOP_GRACE`].
fn outcome(ticket: &Ticket, stop: &AtomicBool) -> Option<Result<Vec<u8>, ClientError>> {
    let mut stopped_at = None;
    let mut spins = 0u32;
    loop {
        if let Some(outcome) = ticket.try_take() {
            return Some(outcome);
        }
        if stop.load(Ordering::Relaxed) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if since.elapsed() > STOP_GRACE {
                return None;
            }
        }
        // Spin briefly (a commit takes microseconds), then sleep: on a small machine the
        // replicas need the cores more than this thread does.
        spins += 1;
        if spins < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lowercase_and_two_digits_a_byte() {
        assert_eq!(super::hex(b"n1.\x00\xff"), "6e312e00ff");
    }
}
