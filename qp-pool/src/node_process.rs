//! What a node process does before it bootstraps, the same in every tool that starts one
//! (`usec-bft-memory`, `usec-bft-node`, `usec-bft-kv`): listen early when asked (so a
//! launcher can learn the port before it writes the description), read the description
//! from a file or from stdin up to a line `end`, and listen at the address the description
//! gives this node.

use std::io;
use std::net::{SocketAddr, TcpListener};

use crate::{ClusterSpec, NodeId};

/// Why a node process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding the listening socket failed.
    #[error("listening at {addr}")]
    Listen {
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Stdin ended (or failed) before the description's closing `end` line.
    #[error("stdin ended before the description's `end`")]
    StdinEnded,
    /// Reading stdin failed.
    #[error("reading the description from stdin")]
    Stdin(#[source] io::Error),
    /// Reading the description's file failed.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The description does not parse.
    #[error("the description ({origin})")]
    Spec {
        /// The file, or `-` for stdin.
        origin: String,
        /// Why.
        #[source]
        source: Box<crate::Error>,
    },
    /// The description has no address for this node.
    #[error("node {0} is not in the description")]
    NotDescribed(NodeId),
    /// The node listens early at another address than the description gives it.
    #[error("the description gives node {me} {described}, but it listens at {listening}")]
    Mismatch {
        /// This node.
        me: NodeId,
        /// Its address in the description.
        described: SocketAddr,
        /// Where it listens.
        listening: SocketAddr,
    },
}

/// Listens at `addr` now, if given (the caller prints the bound address for its launcher).
pub fn listen_early(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, StartError> {
    addr.map(|addr| TcpListener::bind(addr).map_err(|source| StartError::Listen { addr, source })).transpose()
}

/// The description from the file `source`, or from `lines` (stdin) up to a line `end` when
/// `source` is `-`; what follows `end` stays in `lines` for the caller's console.
pub fn read_description(
    source: &str,
    lines: &mut impl Iterator<Item = io::Result<String>>,
) -> Result<ClusterSpec, StartError> {
    let text = if source == "-" {
        let mut text = String::new();
        loop {
            let line = lines.next().ok_or(StartError::StdinEnded)?.map_err(StartError::Stdin)?;
            if line.trim() == "end" {
                break text;
            }
            text.push_str(&line);
            text.push('\n');
        }
    } else {
        std::fs::read_to_string(source)
            .map_err(|source_error| StartError::Read { path: source.to_owned(), source: source_error })?
    };
    ClusterSpec::parse(&text)
        .map_err(|error| StartError::Spec { origin: source.to_owned(), source: Box::new(error) })
}

/// The listener at `me`'s address in `spec`: `early` if it is there, else a fresh one.
pub fn own_listener(
    spec: &ClusterSpec,
    me: NodeId,
    early: Option<TcpListener>,
) -> Result<TcpListener, StartError> {
    let described = *spec.nodes.get(&me).ok_or(StartError::NotDescribed(me))?;
    match early {
        Some(listener) => {
            let listening =
                listener.local_addr().map_err(|source| StartError::Listen { addr: described, source })?;
            if listening == described {
                Ok(listener)
            } else {
                Err(StartError::Mismatch { me, described, listening })
            }
        }
        None => TcpListener::bind(described).map_err(|source| StartError::Listen { addr: described, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "cluster = t\nrun = r\nnode 0 127.0.0.1:1\nnode 1 127.0.0.1:2\n";

    fn lines(text: &str) -> impl Iterator<Item = io::Result<String>> + '_ {
        text.lines().map(|line| Ok(line.to_owned()))
    }

    #[test]
    fn stdin_is_read_up_to_end_and_the_rest_is_left() {
        let input = format!("{SPEC}end\nstatus\n");
        let mut input = lines(&input);
        let spec = read_description("-", &mut input).unwrap();
        assert_eq!(spec.nodes.len(), 2);
        assert_eq!(input.next().unwrap().unwrap(), "status");
    }

    #[test]
    fn a_description_without_end_or_without_this_node_is_refused() {
        let error = read_description("-", &mut lines(SPEC)).unwrap_err();
        assert!(matches!(error, StartError::StdinEnded), "{error}");
        let spec = read_description("-", &mut lines(&format!("{SPEC}end"))).unwrap();
        let error = own_listener(&spec, NodeId::new(7).unwrap(), None).unwrap_err();
        assert_eq!(error.to_string(), "node 7 is not in the description");
    }

    #[test]
    fn an_early_listener_elsewhere_than_described_is_refused() {
        let spec = read_description("-", &mut lines(&format!("{SPEC}end"))).unwrap();
        let early = listen_early(Some("127.0.0.1:0".parse().unwrap())).unwrap();
        let error = own_listener(&spec, NodeId::new(0).unwrap(), early).unwrap_err();
        assert!(matches!(error, StartError::Mismatch { .. }), "{error}");
    }
}
