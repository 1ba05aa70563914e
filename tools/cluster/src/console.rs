//! The launcher's console: what can be typed on its standard input.

/// Which replica a command is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Replica (node id) `n`.
    Replica(usize),
    /// Whichever leads now.
    Leader,
}

/// A console command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// SIGKILL the replica (it stays down until `restart`).
    Kill(Target),
    /// SIGSTOP it.
    Pause(Target),
    /// SIGCONT it.
    Resume(Target),
    /// Start it again (killing it first if it runs) as a replacement that lost its
    /// state: `usec-kv --rejoin`.
    Restart(Target),
    /// Print a status line now.
    Status,
    /// List the commands.
    Help,
    /// Stop the group and exit, as Ctrl-C does.
    Quit,
}

/// The console's help text.
pub const HELP: &str = "commands: kill N | pause N | resume N | restart N (N: a node id, or `leader`), \
status, help, quit";

/// Reads one line typed on the console; `Ok(None)` for a blank line.
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let target = |word: Option<&&str>| match word {
        Some(&"leader") => Ok(Target::Leader),
        Some(word) => {
            word.parse().map(Target::Replica).map_err(|_| format!("{word:?} is not a node id or `leader`"))
        }
        None => Err("which replica? a node id or `leader`".to_string()),
    };
    let command = match words.first().copied() {
        None => return Ok(None),
        Some("kill") => Command::Kill(target(words.get(1))?),
        Some("pause" | "stop") => Command::Pause(target(words.get(1))?),
        Some("resume" | "cont" | "continue") => Command::Resume(target(words.get(1))?),
        Some("restart") => Command::Restart(target(words.get(1))?),
        Some("status") => Command::Status,
        Some("help" | "?") => Command::Help,
        Some("quit" | "exit") => Command::Quit,
        Some(other) => return Err(format!("unknown command {other:?}; {HELP}")),
    };
    let takes_target =
        matches!(command, Command::Kill(_) | Command::Pause(_) | Command::Resume(_) | Command::Restart(_));
    if words.len() > 1 + usize::from(takes_target) {
        return Err(format!("too many words in {line:?}; {HELP}"));
    }
    Ok(Some(command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_targets() {
        assert_eq!(parse("kill 1"), Ok(Some(Command::Kill(Target::Replica(1)))));
        assert_eq!(parse("  pause leader "), Ok(Some(Command::Pause(Target::Leader))));
        assert_eq!(parse("resume 2"), Ok(Some(Command::Resume(Target::Replica(2)))));
        assert_eq!(parse("restart 0"), Ok(Some(Command::Restart(Target::Replica(0)))));
        assert_eq!(parse("status"), Ok(Some(Command::Status)));
        assert_eq!(parse("quit"), Ok(Some(Command::Quit)));
        assert_eq!(parse(""), Ok(None));
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(parse("kill").unwrap_err().contains("which replica"));
        assert!(parse("kill one").unwrap_err().contains("not a node id"));
        assert!(parse("kill 1 2").unwrap_err().contains("too many"));
        assert!(parse("status 1").unwrap_err().contains("too many"));
        assert!(parse("reboot 1").unwrap_err().contains("unknown command"));
    }
}
