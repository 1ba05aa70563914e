//! The plain description of a cluster: its name, the run (a namespace fresh for every
//! launch), and each node's id and control address.
//!
//! The text form, one item per line, `#` starting a comment:
//!
//! ```text
//! cluster = kv
//! run = 20261121T164012Z-7f3a9c01d2e4b5a6
//! key = 6b1f...e0  # optional: 64 hexadecimal digits, the cluster key
//! node 0 127.0.0.1:7100
//! node 1 127.0.0.1:7101
//! node 2 127.0.0.1:7102
//! ```
//!
//! A description with a `key` line turns on authentication: every node must hold the same
//! [`ClusterKey`], and a peer that cannot prove it holds it is refused before anything is
//! offered to it. Such a description is as secret as the key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cluster_key::ClusterKey;
use crate::error::{Error, Result};

/// A node's id: 0 to [`NodeId::MAX`], so that it fits the 12 peer bits of a
/// [`WrId`](crate::WrId).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(u16);

impl NodeId {
    /// The largest node id.
    pub const MAX: u16 = 4095;

    /// The id `id`, if it is at most [`NodeId::MAX`].
    pub fn new(id: u16) -> Result<NodeId> {
        if id > NodeId::MAX {
            return Err(Error::OutOfRange { what: "node id", value: id.into(), max: NodeId::MAX.into() });
        }
        Ok(NodeId(id))
    }

    /// The id as a number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Longest cluster, run, role or region name.
pub const NAME_MAX_LEN: usize = 64;

/// Checks a name: 1 to [`NAME_MAX_LEN`] characters of `[A-Za-z0-9._-]` plus `extra`.
pub(crate) fn check_name(what: &str, name: &str, extra: &[u8]) -> std::result::Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= NAME_MAX_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b) || extra.contains(&b));
    if valid {
        return Ok(());
    }
    let allowed = format!("[A-Za-z0-9._-{}]", String::from_utf8_lossy(extra));
    Err(format!("{what} {name:?}: use 1-{NAME_MAX_LEN} characters of {allowed}"))
}

/// Characters a cluster or run name may have beyond `[A-Za-z0-9._-]` (timestamps).
const SPEC_NAME_EXTRA: &[u8] = b":+";

/// Who is in the cluster, and in which run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    /// The cluster's name: nodes of another cluster are refused.
    pub cluster: String,
    /// The run: a namespace that a launcher makes fresh for each launch
    /// ([`ClusterSpec::fresh_run`]); a node of another run (a stale process of an earlier
    /// launch) is refused, so nothing stale is ever picked up. A node restarted within a
    /// launch keeps the run and rejoins it ([`NodeConfig::rejoin`](crate::NodeConfig::rejoin)),
    /// told apart from its predecessor by its incarnation.
    pub run: String,
    /// Each node's id and control address (where it listens for the handshake).
    pub nodes: BTreeMap<NodeId, SocketAddr>,
    /// The cluster key, if the cluster authenticates its handshakes (every node of a
    /// cluster has the same key, or none).
    pub key: Option<ClusterKey>,
}

impl ClusterSpec {
    /// A description from its parts, checked as [`ClusterSpec::parse`] checks text.
    pub fn new(
        cluster: &str,
        run: &str,
        nodes: impl IntoIterator<Item = (NodeId, SocketAddr)>,
    ) -> Result<ClusterSpec> {
        let spec_error = |reason: String| Error::Spec { line: 0, reason };
        check_name("cluster", cluster, SPEC_NAME_EXTRA).map_err(spec_error)?;
        check_name("run", run, SPEC_NAME_EXTRA).map_err(spec_error)?;
        let mut map = BTreeMap::new();
        for (node, addr) in nodes {
            if map.insert(node, addr).is_some() {
                return Err(spec_error(format!("node {node} is listed twice")));
            }
        }
        let spec = ClusterSpec { cluster: cluster.to_string(), run: run.to_string(), nodes: map, key: None };
        spec.check_nodes().map_err(spec_error)?;
        Ok(spec)
    }

    /// The same description with a cluster key: every handshake and control frame is
    /// authenticated with it.
    pub fn with_key(mut self, key: ClusterKey) -> ClusterSpec {
        self.key = Some(key);
        self
    }

    /// Parses the text form (see the [module documentation](self)).
    pub fn parse(text: &str) -> Result<ClusterSpec> {
        let (mut cluster, mut run, mut key) = (None, None, None);
        let mut nodes = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let bad = |reason: String| Error::Spec { line, reason };
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            if let Some((setting, value)) = content.split_once('=') {
                let (setting, value) = (setting.trim(), value.trim());
                if setting == "key" {
                    if key.is_some() {
                        return Err(bad("key is set twice".into()));
                    }
                    key = Some(ClusterKey::from_hex(value).map_err(bad)?);
                    continue;
                }
                let slot = match setting {
                    "cluster" => &mut cluster,
                    "run" => &mut run,
                    other => {
                        return Err(bad(format!("unknown setting {other:?} (expected cluster, run or key)")))
                    }
                };
                if slot.is_some() {
                    return Err(bad(format!("{setting} is set twice")));
                }
                check_name(setting, value, SPEC_NAME_EXTRA).map_err(bad)?;
                *slot = Some(value.to_string());
                continue;
            }
            let words: Vec<&str> = content.split_whitespace().collect();
            let ["node", id, addr] = words.as_slice() else {
                return Err(bad(format!(
                    "expected `node <id> <ip:port>` or `key = value`, found {content:?}"
                )));
            };
            let id: u16 = id.parse().map_err(|_| bad(format!("node id {id:?} is not a number")))?;
            let id = NodeId::new(id).map_err(|err| bad(err.to_string()))?;
            let addr: SocketAddr =
                addr.parse().map_err(|_| bad(format!("node {id}: {addr:?} is not an ip:port address")))?;
            if nodes.insert(id, addr).is_some() {
                return Err(bad(format!("node {id} is listed twice")));
            }
        }
        let missing = |what: &str| Error::Spec { line: 0, reason: format!("no `{what} = ...` line") };
        let spec = ClusterSpec {
            cluster: cluster.ok_or_else(|| missing("cluster"))?,
            run: run.ok_or_else(|| missing("run"))?,
            nodes,
            key,
        };
        spec.check_nodes().map_err(|reason| Error::Spec { line: 0, reason })?;
        Ok(spec)
    }

    fn check_nodes(&self) -> std::result::Result<(), String> {
        if self.nodes.is_empty() {
            return Err("no nodes: list at least one `node <id> <ip:port>`".into());
        }
        let mut seen = BTreeMap::new();
        for (node, addr) in &self.nodes {
            if let Some(other) = seen.insert(*addr, *node) {
                return Err(format!("nodes {other} and {node} share the address {addr}"));
            }
        }
        Ok(())
    }

    /// A run name that no earlier launch used: UTC time to the second and 64 random bits
    /// (from the OS), e.g. `20261121T164012Z-7f3a9c01d2e4b5a6`. For launchers and tests;
    /// protocol code never calls it.
    pub fn fresh_run() -> String {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        format!("{}-{:016x}", utc_timestamp(since_epoch.as_secs()), rand::random::<u64>())
    }

    /// `me`, checked to be in the description.
    pub fn check_member(&self, me: NodeId) -> Result<()> {
        if self.nodes.contains_key(&me) {
            return Ok(());
        }
        Err(Error::Spec {
            line: 0,
            reason: format!(
                "this node ({me}) is not in the cluster description (nodes {})",
                self.member_list()
            ),
        })
    }

    /// The control address of `node`.
    pub fn addr_of(&self, node: NodeId) -> Option<SocketAddr> {
        self.nodes.get(&node).copied()
    }

    /// The node ids, comma-separated, for messages.
    pub fn member_list(&self) -> String {
        self.nodes.keys().map(|node| node.to_string()).collect::<Vec<_>>().join(", ")
    }

    /// A checksum of the canonical text form without the key: nodes that disagree on the
    /// description refuse each other. The key stays out: the digest goes on the wire in
    /// the clear, and a checksum of a secret would help guess it (nodes with different
    /// keys refuse each other anyway, for failing the key check).
    pub fn digest(&self) -> u32 {
        let mut public = String::new();
        self.write_public(&mut public).expect("writing to a String cannot fail");
        crc32fast::hash(public.as_bytes())
    }

    /// The text form without the key.
    fn write_public(&self, out: &mut impl fmt::Write) -> fmt::Result {
        writeln!(out, "cluster = {}", self.cluster)?;
        writeln!(out, "run = {}", self.run)?;
        for (node, addr) in &self.nodes {
            writeln!(out, "node {node} {addr}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ClusterSpec {
    /// The canonical text form, which [`ClusterSpec::parse`] reads back, the key included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_public(f)?;
        if let Some(key) = &self.key {
            writeln!(f, "key = {}", key.to_hex())?;
        }
        Ok(())
    }
}

impl FromStr for ClusterSpec {
    type Err = Error;

    fn from_str(text: &str) -> Result<ClusterSpec> {
        ClusterSpec::parse(text)
    }
}

/// `YYYYMMDDTHHMMSSZ` for seconds since the Unix epoch (proleptic Gregorian, UTC).
fn utc_timestamp(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rest / 3600, rest / 60 % 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str =
        "# a test cluster\ncluster = kv\nrun = 2026-11-21T16:40-7f3a  # fresh per launch\n\n\
                          node 0 127.0.0.1:7100\nnode 2 127.0.0.1:7102\n  node 1   127.0.0.1:7101  \n";

    fn error_of(text: &str) -> String {
        ClusterSpec::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_sample() {
        let spec = ClusterSpec::parse(SAMPLE).unwrap();
        assert_eq!(spec.cluster, "kv");
        assert_eq!(spec.run, "2026-11-21T16:40-7f3a");
        assert_eq!(spec.nodes.len(), 3);
        assert_eq!(spec.addr_of(NodeId(2)), Some("127.0.0.1:7102".parse().unwrap()));
        assert_eq!(spec.member_list(), "0, 1, 2");
        assert!(spec.check_member(NodeId(1)).is_ok());
        let not_member = spec.check_member(NodeId(7)).unwrap_err().to_string();
        assert!(not_member.contains("(7) is not in the cluster"), "{not_member}");
        assert_eq!(ClusterSpec::parse(&spec.to_string()).unwrap(), spec);
    }

    #[test]
    fn refuses_bad_descriptions_with_the_line() {
        let header = "cluster = kv\nrun = r1\n";
        let cases = [
            (format!("{header}node 0 127.0.0.1:1\nnode 0 127.0.0.1:2\n"), "line 4: node 0 is listed twice"),
            (format!("{header}node 0 localhost:1\n"), "line 3: node 0: \"localhost:1\" is not an ip:port"),
            (format!("{header}node 0 127.0.0.1\n"), "is not an ip:port"),
            (format!("{header}node x 127.0.0.1:1\n"), "node id \"x\" is not a number"),
            (format!("{header}node 4096 127.0.0.1:1\n"), "node id = 4096 is out of range"),
            (format!("{header}node 0\n"), "line 3: expected `node <id> <ip:port>`"),
            (header.to_string(), "no nodes"),
            ("run = r\nnode 0 127.0.0.1:1\n".to_string(), "no `cluster = ...` line"),
            ("cluster = c\nnode 0 127.0.0.1:1\n".to_string(), "no `run = ...` line"),
            (format!("{header}cluster = again\nnode 0 127.0.0.1:1\n"), "line 3: cluster is set twice"),
            (format!("{header}colour = blue\n"), "unknown setting \"colour\" (expected cluster, run or key)"),
            ("cluster = a b\nrun = r\nnode 0 127.0.0.1:1\n".to_string(), "line 1: cluster \"a b\""),
            ("cluster = c\nrun =\nnode 0 127.0.0.1:1\n".to_string(), "line 2: run \"\""),
            (format!("{header}node 0 127.0.0.1:1\nnode 1 127.0.0.1:1\n"), "share the address"),
        ];
        for (text, expected) in cases {
            let error = error_of(&text);
            assert!(error.contains(expected), "{text:?}: {error:?} lacks {expected:?}");
        }
    }

    #[test]
    fn a_key_line_turns_authentication_on_and_stays_out_of_the_digest() {
        let key = ClusterKey::generate();
        let keyed = format!("{SAMPLE}key = {}\n", key.to_hex());
        let spec = ClusterSpec::parse(&keyed).unwrap();
        assert_eq!(spec.key.as_ref(), Some(&key));
        let keyless = ClusterSpec::parse(SAMPLE).unwrap();
        assert_eq!(keyless.key, None);
        assert_eq!(keyless.clone().with_key(key.clone()), spec);
        assert_eq!(ClusterSpec::parse(&spec.to_string()).unwrap(), spec);
        assert_eq!(spec.digest(), keyless.digest(), "the digest goes on the wire in the clear");
        assert!(spec.to_string().contains(&key.to_hex()));
        assert!(!format!("{spec:?}").contains(&key.to_hex()), "Debug shows no key");
        let twice = format!("{keyed}key = {}\n", key.to_hex());
        assert!(error_of(&twice).contains("line 9: key is set twice"), "{}", error_of(&twice));
        let typo = format!("{SAMPLE}key = {}\n", &key.to_hex()[1..]);
        let error = error_of(&typo);
        assert!(error.contains("line 8: a cluster key is 64 hexadecimal digits"), "{error}");
        assert!(!error.contains(&key.to_hex()[1..20]), "an error never quotes the key: {error}");
    }

    #[test]
    fn node_ids_fit_twelve_bits() {
        assert_eq!(NodeId::new(4095).unwrap().get(), 4095);
        assert!(NodeId::new(4096).is_err());
    }

    #[test]
    fn fresh_runs_differ_and_are_valid_names() {
        let (a, b) = (ClusterSpec::fresh_run(), ClusterSpec::fresh_run());
        assert_ne!(a, b);
        assert!(check_name("run", &a, SPEC_NAME_EXTRA).is_ok(), "{a}");
        assert_eq!(utc_timestamp(0), "19700101T000000Z");
        assert_eq!(utc_timestamp(1_795_279_212), "20261121T164012Z");
        assert_eq!(utc_timestamp(951_782_400), "20000229T000000Z");
    }

    proptest! {
        #[test]
        fn text_form_round_trips(
            cluster in "[A-Za-z0-9._:+-]{1,64}",
            run in "[A-Za-z0-9._:+-]{1,64}",
            nodes in proptest::collection::btree_map(0u16..=4095, (any::<[u8; 4]>(), 1u16..), 1..20),
            key in proptest::option::of(any::<[u8; 32]>()),
        ) {
            let mut seen = std::collections::BTreeSet::new();
            let nodes: Vec<(NodeId, SocketAddr)> = nodes
                .into_iter()
                .map(|(id, (ip, port))| (NodeId(id), SocketAddr::from((ip, port))))
                .filter(|(_, addr)| seen.insert(*addr))
                .collect();
            let mut spec = ClusterSpec::new(&cluster, &run, nodes).unwrap();
            spec.key = key.map(ClusterKey::from_bytes);
            prop_assert_eq!(ClusterSpec::parse(&spec.to_string()).unwrap(), spec);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = ClusterSpec::parse(&text);
        }
    }
}
