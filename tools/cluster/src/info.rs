//! What a replica says about itself in `INFO replication` (usec-kv's `# Replication`
//! section): its role, whom it follows, how far its log is decided and applied, and how
//! many commands it applied.

use std::net::SocketAddr;

/// A replica's role, as `usec_role` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It leads: writes go to it.
    Leader,
    /// It is taking over.
    Candidate,
    /// It follows a leader (or waits for one).
    Follower,
}

impl Role {
    /// The word the status line uses.
    pub fn word(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Candidate => "candidate",
            Role::Follower => "follower",
        }
    }
}

/// One answer to `INFO replication`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// Its role.
    pub role: Role,
    /// Its node id.
    pub node: u16,
    /// The leader it follows (itself when leading), if known.
    pub leader: Option<u16>,
    /// The leader's RESP address, if known.
    pub leader_address: Option<SocketAddr>,
    /// Entries below are decided, as far as it knows.
    pub commit_index: u64,
    /// Entries below are applied.
    pub applied_index: u64,
    /// Commands this process applied (absent from usec-kv builds before the field).
    pub applied_commands: Option<u64>,
}

/// An answer that is not a replica's `INFO replication`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InfoError {
    /// A field the launcher needs is missing (an unreplicated server has no `usec_role`).
    #[error("INFO has no {0} field: is it a usec-kv replica?")]
    Missing(&'static str),
    /// A field's value does not parse.
    #[error("INFO field {field} has an unexpected value {value:?}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What it said.
        value: String,
    },
}

/// Reads the fields of `text` (`name:value` lines; other lines and sections ignored).
pub fn parse(text: &str) -> Result<ReplicaInfo, InfoError> {
    let field = |name: &'static str| {
        text.lines().find_map(|line| line.trim_end_matches('\r').strip_prefix(name)?.strip_prefix(':'))
    };
    let required = |name: &'static str| field(name).ok_or(InfoError::Missing(name));
    let invalid = |field: &'static str, value: &str| InfoError::Invalid { field, value: value.to_string() };
    let number = |name: &'static str| {
        let value = required(name)?;
        value.parse::<u64>().map_err(|_| invalid(name, value))
    };
    let role = match required("usec_role")? {
        "leader" => Role::Leader,
        "candidate" => Role::Candidate,
        "follower" => Role::Follower,
        other => return Err(invalid("usec_role", other)),
    };
    let node = required("node_id")?;
    let node = node.parse().map_err(|_| invalid("node_id", node))?;
    let leader = match required("leader_id")? {
        "none" => None,
        value => Some(value.parse().map_err(|_| invalid("leader_id", value))?),
    };
    let leader_address = match required("leader_address")? {
        "none" => None,
        value => Some(value.parse().map_err(|_| invalid("leader_address", value))?),
    };
    let applied_commands = match field("applied_commands") {
        None => None,
        Some(value) => Some(value.parse().map_err(|_| invalid("applied_commands", value))?),
    };
    Ok(ReplicaInfo {
        role,
        node,
        leader,
        leader_address,
        commit_index: number("commit_index")?,
        applied_index: number("applied_index")?,
        applied_commands,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOLLOWER: &str =
        "# Replication\r\nrole:slave\r\nusec_role:follower\r\nnode_id:2\r\nleader_id:0\r\n\
        leader_address:127.0.0.1:7001\r\ncommit_index:17\r\napplied_index:16\r\napplied_commands:300\r\n";

    #[test]
    fn reads_a_followers_answer() {
        let info = parse(FOLLOWER).unwrap();
        assert_eq!(
            info,
            ReplicaInfo {
                role: Role::Follower,
                node: 2,
                leader: Some(0),
                leader_address: Some("127.0.0.1:7001".parse().unwrap()),
                commit_index: 17,
                applied_index: 16,
                applied_commands: Some(300),
            }
        );
    }

    #[test]
    fn no_leader_known_and_no_command_count() {
        let text = "usec_role:candidate\r\nnode_id:1\r\nleader_id:none\r\nleader_address:none\r\n\
            commit_index:0\r\napplied_index:0\r\n";
        let info = parse(text).unwrap();
        assert_eq!(
            (info.role, info.leader, info.leader_address, info.applied_commands),
            (Role::Candidate, None, None, None)
        );
    }

    #[test]
    fn an_unreplicated_server_is_refused() {
        let text = "# Replication\r\nrole:master\r\nusec_replication:none\r\napplied_commands:3\r\n";
        assert_eq!(parse(text), Err(InfoError::Missing("usec_role")));
    }

    #[test]
    fn a_field_is_matched_whole() {
        // `leader_id` must not be read from `leader_idx`, nor `node_id` from a longer name.
        let text = FOLLOWER.replace("leader_id:0", "leader_idx:0");
        assert_eq!(parse(&text), Err(InfoError::Missing("leader_id")));
        let text = FOLLOWER.replace("commit_index:17", "commit_index:seventeen");
        assert_eq!(
            parse(&text),
            Err(InfoError::Invalid { field: "commit_index", value: "seventeen".into() })
        );
    }
}
