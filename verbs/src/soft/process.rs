//! Process identity and liveness: pid plus start time names a process even across pid
//! reuse, and a pidfd says when it exits.

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};

/// The start time of process `pid` (clock ticks since boot, field 22 of /proc/<pid>/stat).
pub(crate) fn start_time_of(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces and ')', so
    // count fields from the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow; the start time is field 22, i.e. the 20th after the name.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` exists (a zombie counts as gone).
pub(crate) fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rfind(')').and_then(|at| stat[at + 1..].split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// This process's start time.
pub(crate) fn own_start_time() -> u64 {
    start_time_of(std::process::id()).expect("/proc/self/stat is readable")
}

/// Opens a pidfd for `pid` (readable once the process exits).
pub(crate) fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_time_with_odd_names() {
        let fields: Vec<String> = (3..=30).map(|n| n.to_string()).collect();
        let stat = format!("123 (a b) c)) {}", fields.join(" "));
        assert_eq!(parse_start_time(&stat), Some(22));
        assert!(own_start_time() > 0);
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX / 2));
    }
}
