//! The config file of a group on real devices: each node's host, device and ports.
//!
//! ```text
//! # usec-cluster config: the same file on every host
//! cluster = kv
//! run = 2025-06-01-a      # optional here; then `--run` on every node's command line
//! app = kv                # or orderbook; kv when absent
//! node 0 host=192.168.1.10 device=mlx5_0 control=7100 resp=7000
//! node 1 host=192.168.1.11 device=mlx5_0 control=7100 resp=7000
//! node 2 host=192.168.1.12 device=rxe0   control=7100 resp=7000
//! ```
//!
//! `host` is the node's IP address: its replica's control listener (qp-pool's bootstrap)
//! and RESP listener bind it, and the other nodes and clients reach it there. Node ids run
//! from 0 without gaps. The run is qp-pool's namespace of one launch: every node of a
//! launch must be given the same one, and a relaunch a new one.

use std::net::{IpAddr, SocketAddr};

use crate::plan::{App, GroupPlan, NodePlan};

/// A config file that cannot be used, with the line that says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A line that is none of the forms above.
    #[error("line {line}: {why}")]
    Line {
        /// 1-based.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// Something missing from the whole file.
    #[error("{0}")]
    Incomplete(String),
}

fn line_error(line: usize, why: impl Into<String>) -> ConfigError {
    ConfigError::Line { line, why: why.into() }
}

/// Characters qp-pool takes in cluster and run names.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:+".contains(&b))
}

/// The group `text` describes; `run` (from the command line) overrides the file's.
pub fn parse(text: &str, run: Option<&str>) -> Result<GroupPlan, ConfigError> {
    let mut cluster = None;
    let mut file_run = None;
    let mut app = App::Kv;
    let mut nodes: Vec<Option<NodePlan>> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some((key, value)) = line.split_once('=').filter(|_| !line.starts_with("node ")) {
            let value = value.trim();
            match key.trim() {
                "cluster" if valid_name(value) => cluster = Some(value.to_string()),
                "run" if valid_name(value) => file_run = Some(value.to_string()),
                "cluster" | "run" => {
                    return Err(line_error(number, format!("{value:?}: use 1-64 of [A-Za-z0-9._-:+]")))
                }
                "app" => {
                    app = App::from_name(value)
                        .ok_or_else(|| line_error(number, format!("no app {value:?}: kv or orderbook")))?
                }
                other => return Err(line_error(number, format!("unknown setting {other:?}"))),
            }
            continue;
        }
        let (id, node) = parse_node(line).map_err(|why| line_error(number, why))?;
        if nodes.len() <= id {
            nodes.resize(id + 1, None);
        }
        if nodes[id].replace(node).is_some() {
            return Err(line_error(number, format!("node {id} again")));
        }
    }
    let cluster = cluster.ok_or_else(|| ConfigError::Incomplete("no `cluster = <name>` line".into()))?;
    let run = match run {
        Some(run) if valid_name(run) => run.to_string(),
        Some(run) => {
            return Err(ConfigError::Incomplete(format!("run {run:?}: use 1-64 of [A-Za-z0-9._-:+]")))
        }
        None => file_run.ok_or_else(|| {
            ConfigError::Incomplete("no run: add `run = <name>` or pass --run, the same on every node".into())
        })?,
    };
    if nodes.is_empty() {
        return Err(ConfigError::Incomplete("no node lines".into()));
    }
    let nodes = nodes
        .into_iter()
        .enumerate()
        .map(|(id, node)| {
            node.ok_or_else(|| ConfigError::Incomplete(format!("no node {id}: ids run from 0 without gaps")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(GroupPlan { cluster, run, app, nodes })
}

/// `node <id> host=<ip> device=<name> control=<port> resp=<port>`.
fn parse_node(line: &str) -> Result<(usize, NodePlan), String> {
    let mut words = line.split_whitespace();
    if words.next() != Some("node") {
        return Err(format!("expected `name = value` or `node <id> …`, got {line:?}"));
    }
    let id = words.next().ok_or("a node line without an id")?;
    let id: u16 = id.parse().map_err(|_| format!("node id {id:?} is not a number"))?;
    if id > 4095 {
        return Err(format!("node id {id} is over 4095"));
    }
    let (mut host, mut device, mut control, mut resp) = (None, None, None, None);
    for word in words {
        let (key, value) = word.split_once('=').ok_or_else(|| format!("{word:?}: expected key=value"))?;
        let port = || {
            value.parse::<u16>().ok().filter(|&port| port != 0).ok_or_else(|| format!("{key} port {value:?}"))
        };
        match key {
            "host" => {
                host = Some(
                    value.parse::<IpAddr>().map_err(|_| format!("host {value:?} is not an IP address"))?,
                )
            }
            "device" if !value.is_empty() => device = Some(value.to_string()),
            "control" => control = Some(port()?),
            "resp" => resp = Some(port()?),
            _ => return Err(format!("unknown node field {word:?}")),
        }
    }
    let missing = |what: &str| format!("node {id} has no {what}=");
    let host = host.ok_or_else(|| missing("host"))?;
    let node = NodePlan {
        control: SocketAddr::new(host, control.ok_or_else(|| missing("control"))?),
        resp: SocketAddr::new(host, resp.ok_or_else(|| missing("resp"))?),
        device: device.ok_or_else(|| missing("device"))?,
    };
    if node.control == node.resp {
        return Err(format!("node {id}: control and resp are the same port"));
    }
    Ok((usize::from(id), node))
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str =
        "# a comment\ncluster = kv\nrun = a1\n\nnode 1 host=10.0.0.2 device=rxe0 control=7100 resp=7000\n\
        node 0 host=10.0.0.1 device=mlx5_0 control=7100 resp=7000   # first\n\
        node 2 host=10.0.0.3 device=mlx5_1 resp=7001 control=7101\n";

    #[test]
    fn reads_a_group() {
        let plan = parse(THREE, None).unwrap();
        assert_eq!((plan.cluster.as_str(), plan.run.as_str(), plan.app), ("kv", "a1", App::Kv));
        assert_eq!(
            plan.nodes[2],
            NodePlan {
                control: "10.0.0.3:7101".parse().unwrap(),
                resp: "10.0.0.3:7001".parse().unwrap(),
                device: "mlx5_1".into()
            }
        );
        assert_eq!(plan.nodes[0].device, "mlx5_0");
        assert_eq!(
            plan.spec_text(),
            "cluster = kv\nrun = a1\nnode 0 10.0.0.1:7100\nnode 1 10.0.0.2:7100\nnode 2 10.0.0.3:7101\n"
        );
    }

    #[test]
    fn the_command_lines_run_wins_and_one_is_required() {
        assert_eq!(parse(THREE, Some("b2")).unwrap().run, "b2");
        let no_run = THREE.replace("run = a1\n", "");
        assert!(matches!(parse(&no_run, None), Err(ConfigError::Incomplete(why)) if why.contains("--run")));
        assert_eq!(parse(&no_run, Some("b2")).unwrap().run, "b2");
    }

    #[test]
    fn apps_by_name() {
        assert_eq!(parse(&format!("app = orderbook\n{THREE}"), None).unwrap().app, App::Orderbook);
        assert!(matches!(
            parse(&format!("app = redis\n{THREE}"), None),
            Err(ConfigError::Line { line: 1, .. })
        ));
    }

    #[test]
    fn mistakes_name_their_line() {
        let cases = [
            ("node 0 host=kv.example device=d control=1 resp=2", "not an IP address"),
            ("node 0 host=10.0.0.1 device=d control=1", "no resp="),
            ("node 0 host=10.0.0.1 device=d control=0 resp=2", "control port"),
            ("node 0 host=10.0.0.1 device=d control=1 resp=1", "same port"),
            ("node 0 host=10.0.0.1 device=d control=1 resp=2 colour=red", "unknown node field"),
            ("node x host=10.0.0.1", "not a number"),
            ("nodes 0", "expected"),
            ("cluster = two words", "use 1-64"),
            ("colour = red", "unknown setting"),
        ];
        for (line, why) in cases {
            let text = format!("cluster = kv\nrun = r\n{line}\n");
            match parse(&text, None) {
                Err(ConfigError::Line { line: 3, why: said }) => {
                    assert!(said.contains(why), "{line}: {said}")
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn ids_without_gaps_and_once_each() {
        let gap = "cluster = kv\nrun = r\nnode 0 host=10.0.0.1 device=d control=1 resp=2\nnode 2 host=10.0.0.1 device=d control=3 resp=4\n";
        assert!(matches!(parse(gap, None), Err(ConfigError::Incomplete(why)) if why.contains("no node 1")));
        let twice = "cluster = kv\nrun = r\nnode 0 host=10.0.0.1 device=d control=1 resp=2\nnode 0 host=10.0.0.2 device=d control=1 resp=2\n";
        assert!(matches!(parse(twice, None), Err(ConfigError::Line { line: 4, .. })));
        assert!(matches!(parse("cluster = kv\nrun = r\n", None), Err(ConfigError::Incomplete(_))));
    }
}
