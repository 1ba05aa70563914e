//! Process identity and liveness: pid plus start time names a process even across pid
//! reuse, and a pidfd says when it exits.

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::probe::PeerProbe;

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

/// The kernel's task flag of a task in `do_exit` (`PF_EXITING`, field 9 of
/// /proc/<pid>/stat): set as soon as a killed process starts dying, long before its
/// memory is torn down and its pidfd turns readable.
const PF_EXITING: u64 = 0x4;

/// What /proc says of process `pid`, which must have started at `start_time` (otherwise
/// it is gone and its pid reused): [`PeerProbe::Exiting`] from the moment it starts
/// dying (its main thread in `do_exit`, a zombie, or no such process), `Stopped` while
/// stopped or traced, `Alive` otherwise.
pub(crate) fn probe(pid: u32, start_time: u64) -> PeerProbe {
    // One read of a short file: about a microsecond.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_probe(&stat, start_time),
        Err(_) => PeerProbe::Exiting,
    }
}

fn parse_probe(stat: &str, start_time: u64) -> PeerProbe {
    let Some(fields) = stat.rfind(')').map(|at| stat[at + 1..].split_whitespace().collect::<Vec<_>>()) else {
        return PeerProbe::Unknown;
    };
    // Fields from 3 on: the state is field 3, the flags field 9, the start time field 22.
    let field = |number: usize| fields.get(number - 3).copied();
    let flags = field(9).and_then(|flags| flags.parse::<u64>().ok());
    let started = field(22).and_then(|started| started.parse::<u64>().ok());
    match (field(3), flags, started) {
        (_, _, Some(started)) if started != start_time => PeerProbe::Exiting,
        (Some("Z" | "X" | "x"), _, _) => PeerProbe::Exiting,
        (_, Some(flags), _) if flags & PF_EXITING != 0 => PeerProbe::Exiting,
        (Some("T" | "t"), _, _) => PeerProbe::Stopped,
        (Some(_), Some(_), Some(_)) => PeerProbe::Alive,
        _ => PeerProbe::Unknown,
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

    #[test]
    fn probes_tell_running_stopped_exiting_and_reused() {
        // Fields 3..=22 of a stat line: state, then 17 fields (flags is the 7th of them),
        // then the start time.
        let line = |state: &str, flags: u64, started: u64| {
            let mut fields = vec![state.to_string()];
            fields.extend((4..=22).map(|n| n.to_string()));
            fields[9 - 3] = flags.to_string();
            fields[22 - 3] = started.to_string();
            format!("42 (re ply) {}", fields.join(" "))
        };
        assert_eq!(parse_probe(&line("R", 0x40_0040, 7), 7), PeerProbe::Alive);
        assert_eq!(parse_probe(&line("S", 0, 7), 7), PeerProbe::Alive);
        assert_eq!(parse_probe(&line("T", 0, 7), 7), PeerProbe::Stopped);
        assert_eq!(parse_probe(&line("t", 0, 7), 7), PeerProbe::Stopped);
        assert_eq!(parse_probe(&line("R", 0x40_0044, 7), 7), PeerProbe::Exiting, "PF_EXITING");
        assert_eq!(parse_probe(&line("Z", 0, 7), 7), PeerProbe::Exiting);
        assert_eq!(parse_probe(&line("R", 0, 8), 7), PeerProbe::Exiting, "a later process with its pid");
        assert_eq!(parse_probe("garbage", 7), PeerProbe::Unknown);
        assert_eq!(probe(std::process::id(), own_start_time()), PeerProbe::Alive);
        assert_eq!(probe(u32::MAX / 2, 1), PeerProbe::Exiting);
    }
}
