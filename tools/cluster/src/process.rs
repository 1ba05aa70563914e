//! One replica's process: started with its output relayed under a label, signalled, and
//! always reaped.
//!
//! Each replica runs in a process group of its own, so the terminal's Ctrl-C reaches the
//! launcher only and the launcher takes the replicas down in order. It is started through
//! the launcher's own executable (`usec-cluster exec-unblocked`, [`exec_replica`]), which
//! clears the signal mask the launcher runs with (see [`crate::signals`]), asks the kernel
//! to SIGKILL it when the launcher's thread that started it ends (`PR_SET_PDEATHSIG`), and
//! then `exec`s `usec-kv` in its place — same process. So if the launcher dies however it
//! dies, even SIGKILLed, its replicas go too, a stopped one included. Replicas must
//! therefore be started from a thread that lives as long as the group: the main thread.

use std::convert::Infallible;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use nix::sys::prctl;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{getppid, Pid};

/// A started replica.
#[derive(Debug)]
pub struct ReplicaProcess {
    child: Child,
    ready: Arc<AtomicBool>,
    reaped: bool,
}

/// How a process ended, in a few words.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => {
            Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |signal| format!("{signal}"))
        }
        (None, None) => status.to_string(),
    }
}

impl ReplicaProcess {
    /// Starts `program` with `args` and `environment` (through `usec-cluster
    /// exec-unblocked`: see [`crate::signals`]); its output lines are printed
    /// after `label`, its standard output's on standard output, the rest on standard
    /// error.
    pub fn spawn(
        program: &Path,
        args: &[OsString],
        environment: &[(String, OsString)],
        label: &str,
    ) -> Result<ReplicaProcess> {
        // Through the trampoline, so that the replica starts with no signal blocked.
        let me = std::env::current_exe().context("finding this executable")?;
        let mut child = Command::new(me)
            .args(["exec-unblocked", "--parent", &std::process::id().to_string()])
            .arg(program)
            .arg("--")
            .args(args)
            .envs(environment.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let ready = Arc::new(AtomicBool::new(false));
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        relay(stdout, format!("{label} "), false, Some(ready.clone()));
        relay(stderr, format!("{label} "), true, None);
        Ok(ReplicaProcess { child, ready, reaped: false })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it said `ready`: it serves clients.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Sends it `signal`.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("pids fit an i32"));
        kill(pid, signal).with_context(|| format!("sending {signal} to process {}", self.pid()))
    }

    /// How it ended, if it did (reaping it).
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>> {
        let status = self.child.try_wait().context("waiting for a replica")?;
        self.reaped |= status.is_some();
        Ok(status)
    }

    /// SIGKILLs it (if it still runs) and reaps it.
    pub fn kill_and_reap(&mut self) -> Result<ExitStatus> {
        if !self.reaped {
            // It may have ended since it was last looked at: then the kill finds a zombie.
            let _ = self.signal(Signal::SIGKILL);
        }
        let status = self.child.wait().context("reaping a replica")?;
        self.reaped = true;
        Ok(status)
    }
}

impl Drop for ReplicaProcess {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.kill_and_reap();
        }
    }
}

/// The trampoline's side of [`ReplicaProcess::spawn`], in the new process: no signal
/// blocked, SIGKILL when the launcher (process `parent`) goes, then `program` in place of
/// this one.
pub fn exec_replica(parent: u32, program: &Path, args: &[OsString]) -> Result<Infallible> {
    crate::signals::unblock_all()?;
    prctl::set_pdeathsig(Signal::SIGKILL).context("asking for SIGKILL when the launcher goes")?;
    // The launcher may have gone before that took hold.
    if u32::try_from(getppid().as_raw()).ok() != Some(parent) {
        bail!("the launcher (process {parent}) is gone");
    }
    let error = Command::new(program).args(args).exec();
    Err(error).with_context(|| format!("running {}", program.display()))
}

/// Prints each line of `from` after `prefix`; sets `ready` at a line `ready …`.
fn relay(from: impl Read + Send + 'static, prefix: String, to_stderr: bool, ready: Option<Arc<AtomicBool>>) {
    std::thread::Builder::new()
        .name("replica-output".into())
        .spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                if to_stderr {
                    eprintln!("{prefix}{line}");
                } else {
                    println!("{prefix}{line}");
                }
                if let Some(ready) = &ready {
                    if line.starts_with("ready ") {
                        ready.store(true, Ordering::Release);
                    }
                }
            }
        })
        .expect("spawning an output relay");
}
