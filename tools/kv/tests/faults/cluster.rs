//! Looking at the replicas from outside, as an operator would: INFO with timeouts (a
//! killed replica refuses, a stopped one never answers), signals, and each replica's
//! whole state read without the log.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use usec_replication::apps::resp::scan::split_replies;

use super::client::Connection;
use crate::common::Group;

/// How long a look at a replica may take.
const LOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// What a replica's INFO says of replication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    /// `leader`, `candidate` or `follower`.
    pub role: String,
    /// The leader it knows, if any.
    pub leader: Option<usize>,
    pub commit_index: u64,
    pub applied_index: u64,
}

/// Replica at `port`'s INFO replication fields, if it answers in time.
pub fn role(port: u16) -> Option<Role> {
    let mut connection = Connection::open(port)?;
    let reply = connection.request(&[b"INFO", b"replication"], LOOK_TIMEOUT)?;
    let text = String::from_utf8_lossy(&reply).into_owned();
    let fields: BTreeMap<&str, &str> = text.lines().filter_map(|line| line.split_once(':')).collect();
    Some(Role {
        role: fields.get("usec_role")?.to_string(),
        leader: fields.get("leader_id")?.parse().ok(),
        commit_index: fields.get("commit_index")?.parse().ok()?,
        applied_index: fields.get("applied_index")?.parse().ok()?,
    })
}

/// Replica at `port`'s read counts (INFO's `local_reads`, `log_reads`), if it answers.
pub fn reads(port: u16) -> Option<(u64, u64)> {
    let mut connection = Connection::open(port)?;
    let reply = connection.request(&[b"INFO", b"replication"], LOOK_TIMEOUT)?;
    let text = String::from_utf8_lossy(&reply).into_owned();
    let fields: BTreeMap<&str, &str> = text.lines().filter_map(|line| line.split_once(':')).collect();
    Some((fields.get("local_reads")?.trim().parse().ok()?, fields.get("log_reads")?.trim().parse().ok()?))
}

/// Replica at `port`'s membership view (INFO's `view_id`, `view_voters`, `voting`), if it
/// answers and follows views.
pub fn view(port: u16) -> Option<(u64, u32, bool)> {
    let mut connection = Connection::open(port)?;
    let reply = connection.request(&[b"INFO", b"replication"], LOOK_TIMEOUT)?;
    let text = String::from_utf8_lossy(&reply).into_owned();
    let fields: BTreeMap<&str, &str> = text.lines().filter_map(|line| line.split_once(':')).collect();
    let number = |name: &str| fields.get(name)?.trim().parse::<u64>().ok();
    Some((number("view_id")?, number("view_voters")? as u32, number("voting")? == 1))
}

/// The view id, when every replica answers, knows the same view, and votes in it.
pub fn full_strength(ports: &[u16]) -> Option<u64> {
    let views: Vec<(u64, u32, bool)> = ports.iter().map(|&port| view(port)).collect::<Option<_>>()?;
    let (id, voters, _) = views[0];
    let every = views.iter().all(|&(other, _, voting)| other == id && voting);
    (every && voters as usize == ports.len()).then_some(id)
}

/// Every replica's INFO, for a failure report.
pub fn describe(ports: &[u16]) -> String {
    let mut lines = Vec::new();
    for (id, port) in ports.iter().enumerate() {
        match role(*port) {
            Some(role) => lines.push(format!("  replica {id} (port {port}): {role:?}")),
            None => lines.push(format!("  replica {id} (port {port}): no answer")),
        }
    }
    lines.join("\n")
}

/// The replica, among `candidates`, that says it leads.
pub fn leader(ports: &[u16], candidates: &[usize]) -> Option<(usize, Role)> {
    candidates
        .iter()
        .filter_map(|&id| role(ports[id]).map(|role| (id, role)))
        .find(|(_, role)| role.role == "leader")
}

/// The leader every replica names, when they all answer, agree, and it says it leads.
pub fn agreed(ports: &[u16]) -> Option<usize> {
    let roles: Vec<Role> = ports.iter().map(|&port| role(port)).collect::<Option<_>>()?;
    let leader = roles[0].leader?;
    let agree = roles.iter().all(|role| role.leader == Some(leader));
    (agree && roles.get(leader)?.role == "leader").then_some(leader)
}

/// Polls `look` until it gives a value, or fails saying what was awaited.
pub fn wait_for<T>(what: &str, limit: Duration, mut look: impl FnMut() -> Option<T>) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = look() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(format!("waited {limit:?} for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` to replica `id`'s process.
pub fn signal(group: &Group, id: usize, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(group.replicas[id].0.id()).expect("pids fit i32"));
    kill(pid, signal).unwrap_or_else(|error| panic!("{signal} to replica {id}: {error}"));
}

/// A replica's whole state, read from its own copy without the log (READONLY): every key
/// and its value.
pub fn dump(port: u16) -> Result<BTreeMap<Vec<u8>, Option<Vec<u8>>>, String> {
    let failed = |what: &str| format!("port {port}: {what}");
    let mut connection = Connection::open(port).ok_or_else(|| failed("refused"))?;
    let mut ask = |args: &[&[u8]]| {
        connection
            .request(args, Duration::from_secs(20))
            .ok_or_else(|| failed(&format!("no reply to {args:?}")))
    };
    let readonly = ask(&[b"READONLY"])?;
    if readonly != b"+OK\r\n" {
        return Err(failed(&format!("READONLY: {}", String::from_utf8_lossy(&readonly))));
    }
    let mut keys = items(&ask(&[b"KEYS", b"*"])?).map_err(|error| failed(&error))?;
    keys.sort();
    let mut state = BTreeMap::new();
    for chunk in keys.chunks(256) {
        let keys: Vec<Vec<u8>> = chunk.iter().map(|key| key.clone().expect("keys are bulks")).collect();
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(keys.iter().map(Vec::as_slice));
        let values = items(&ask(&args)?).map_err(|error| failed(&error))?;
        state.extend(keys.into_iter().zip(values));
    }
    Ok(state)
}

/// The bulks (or nils) of an array reply.
fn items(reply: &[u8]) -> Result<Vec<Option<Vec<u8>>>, String> {
    let not_an_array = || format!("not an array of bulks: {:?}", String::from_utf8_lossy(reply));
    let header_end = |bytes: &[u8]| bytes.windows(2).position(|pair| pair == b"\r\n").map(|end| end + 2);
    let start = header_end(reply).filter(|_| reply.starts_with(b"*")).ok_or_else(not_an_array)?;
    let (replies, rest) = split_replies(&reply[start..]).map_err(|_| not_an_array())?;
    if !rest.is_empty() {
        return Err(not_an_array());
    }
    let item = |bytes: &[u8]| match bytes {
        b"$-1\r\n" => Ok(None),
        bulk if bulk.starts_with(b"$") => {
            let start = header_end(bulk).ok_or_else(not_an_array)?;
            Ok(Some(bulk[start..bulk.len() - 2].to_vec()))
        }
        _ => Err(not_an_array()),
    };
    replies.into_iter().map(item).collect()
}
