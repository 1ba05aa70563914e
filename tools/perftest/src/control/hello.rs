//! What two usec-perftest processes tell each other beyond perftest's messages: a hello
//! naming everything that must match, so that a mismatch is one clear line on both sides
//! (perftest itself exchanges no options and simply goes wrong), and, on the soft and sim
//! providers whose addresses perftest's key message cannot carry, the QP endpoints.
//!
//! Both travel as frames ([`super::wire::encode_frame`]) of JSON, bounded.

use serde::{Deserialize, Serialize};
use usec_verbs::Endpoint;

use crate::settings::{DurationPlan, Settings};
use crate::test_kind::{AtomicType, TestKind};

/// The longest hello accepted.
pub const HELLO_BYTES_MAX: usize = 16 * 1024;
/// What each QP may add to the endpoints frame (a soft endpoint is under 50 bytes, as hex
/// text under 100).
pub const ENDPOINT_BYTES_MAX: usize = 256;

/// The usec hello: what this side is about to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's crate version, for messages.
    pub version: String,
    /// The test.
    pub test: TestKind,
    /// The atomic operation.
    pub atomic: AtomicType,
    /// The sizes, in order.
    pub sizes: Vec<u64>,
    /// Iterations per size (unused with a duration).
    pub iterations: u64,
    /// The duration plan, if any.
    pub duration: Option<DurationPlan>,
    /// QPs.
    pub qps: u32,
    /// `-b`.
    pub bidirectional: bool,
    /// `--run_infinitely`.
    pub run_infinitely: bool,
    /// The provider of the sender's device (`soft`, `ibverbs`, `sim`).
    pub provider: String,
}

impl Hello {
    /// What `settings` will run on `provider`.
    pub fn new(settings: &Settings, provider: &str) -> Hello {
        Hello {
            version: env!("CARGO_PKG_VERSION").to_string(),
            test: settings.test,
            atomic: settings.atomic,
            sizes: settings.sizes(),
            iterations: settings.iterations,
            duration: settings.duration,
            qps: settings.qps,
            bidirectional: settings.bidirectional,
            run_infinitely: settings.infinite_interval_s.is_some(),
            provider: provider.to_string(),
        }
    }

    /// How `peer` differs from this side in what must match, as one phrase naming both
    /// values (`test: this client runs read_lat, the server runs write_lat`); `None` if
    /// they match.
    pub fn mismatch(&self, peer: &Hello, me: &str, them: &str) -> Option<String> {
        let differ = |what: &str, mine: String, theirs: String| {
            Some(format!("{what}: this {me} has {mine}, the {them} {theirs}"))
        };
        let flag = |on: bool, name: &str| if on { name.to_string() } else { format!("no {name}") };
        if peer.test != self.test {
            return Some(format!("test: this {me} runs {}, the {them} runs {}", self.test, peer.test));
        }
        if peer.atomic != self.atomic {
            return differ(
                "atomic type",
                self.atomic.perftest_name().into(),
                peer.atomic.perftest_name().into(),
            );
        }
        if peer.sizes != self.sizes {
            return differ("message sizes (-s/-a)", describe_sizes(&self.sizes), describe_sizes(&peer.sizes));
        }
        if peer.run_infinitely != self.run_infinitely {
            return differ(
                "--run_infinitely",
                flag(self.run_infinitely, "--run_infinitely"),
                flag(peer.run_infinitely, "--run_infinitely"),
            );
        }
        if peer.duration != self.duration && !self.run_infinitely {
            return differ(
                "duration (-D)",
                describe_duration(self.duration),
                describe_duration(peer.duration),
            );
        }
        if self.duration.is_none() && peer.iterations != self.iterations {
            return differ("iterations (-n)", self.iterations.to_string(), peer.iterations.to_string());
        }
        if peer.qps != self.qps {
            return differ("QPs (-q)", self.qps.to_string(), peer.qps.to_string());
        }
        if peer.bidirectional != self.bidirectional {
            return differ(
                "bidirectional (-b)",
                flag(self.bidirectional, "-b"),
                flag(peer.bidirectional, "-b"),
            );
        }
        if peer.provider != self.provider {
            return differ("provider (-d)", self.provider.clone(), peer.provider.clone());
        }
        None
    }

    /// The frame's payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a hello always serialises")
    }

    /// Reads [`Hello::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Hello> {
        serde_json::from_slice(bytes).ok()
    }
}

fn describe_sizes(sizes: &[u64]) -> String {
    match sizes {
        [one] => format!("size {one}"),
        _ => "all sizes (-a)".to_string(),
    }
}

fn describe_duration(duration: Option<DurationPlan>) -> String {
    duration.map_or_else(|| "no duration".to_string(), |plan| format!("{} s", plan.total_s))
}

/// The endpoints frame's payload: each endpoint in its text form.
pub fn endpoints_to_bytes(endpoints: &[Endpoint]) -> Vec<u8> {
    let texts: Vec<String> = endpoints.iter().map(Endpoint::to_string).collect();
    serde_json::to_vec(&texts).expect("strings always serialise")
}

/// Reads [`endpoints_to_bytes`]; `None` unless it holds `count` valid endpoints.
pub fn endpoints_from_bytes(bytes: &[u8], count: usize) -> Option<Vec<Endpoint>> {
    let texts: Vec<String> = serde_json::from_slice(bytes).ok()?;
    if texts.len() != count {
        return None;
    }
    texts.iter().map(|text| text.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            version: "0.1.0".into(),
            test: TestKind::WriteLat,
            atomic: AtomicType::FetchAndAdd,
            sizes: vec![2],
            iterations: 1000,
            duration: None,
            qps: 1,
            bidirectional: false,
            run_infinitely: false,
            provider: "soft".into(),
        }
    }

    #[test]
    fn matching_hellos_agree() {
        assert_eq!(hello().mismatch(&hello(), "client", "server"), None);
        // Iterations do not matter in duration mode.
        let plan = Some(DurationPlan { total_s: 4, margin_s: 1 });
        let (mut a, mut b) = (hello(), hello());
        (a.duration, b.duration, b.iterations) = (plan, plan, 5);
        assert_eq!(a.mismatch(&b, "client", "server"), None);
    }

    #[test]
    fn every_difference_is_named_with_both_values() {
        let base = hello();
        let cases: Vec<(Hello, &str)> = vec![
            (
                Hello { test: TestKind::ReadLat, ..hello() },
                "test: this client runs write_lat, the server runs read_lat",
            ),
            (
                Hello { sizes: vec![64], ..hello() },
                "message sizes (-s/-a): this client has size 2, the server size 64",
            ),
            (Hello { iterations: 10, ..hello() }, "iterations (-n): this client has 1000, the server 10"),
            (Hello { qps: 2, ..hello() }, "QPs (-q): this client has 1, the server 2"),
            (
                Hello { provider: "ibverbs".into(), ..hello() },
                "provider (-d): this client has soft, the server ibverbs",
            ),
            (Hello { atomic: AtomicType::CmpAndSwap, ..hello() }, "atomic type"),
            (
                Hello { bidirectional: true, ..hello() },
                "bidirectional (-b): this client has no -b, the server -b",
            ),
            (Hello { run_infinitely: true, ..hello() }, "--run_infinitely"),
            (
                Hello { duration: Some(DurationPlan { total_s: 4, margin_s: 1 }), ..hello() },
                "duration (-D): this client has no duration, the server 4 s",
            ),
        ];
        for (peer, expected) in cases {
            let said = base.mismatch(&peer, "client", "server").expect("a mismatch");
            assert!(said.contains(expected), "{said:?} lacks {expected:?}");
        }
    }

    #[test]
    fn hellos_and_endpoints_round_trip_and_garbage_is_refused() {
        assert_eq!(Hello::from_bytes(&hello().to_bytes()), Some(hello()));
        assert_eq!(Hello::from_bytes(b"{\"version\":1}"), None);
        assert_eq!(Hello::from_bytes(&[0xff; 40]), None);
        let endpoint: Endpoint = Endpoint {
            qp_num: 7,
            psn: 9,
            mtu: usec_verbs::qp::Mtu::Mtu1024,
            address: usec_verbs::qp::Address::Sim { fabric: 3, node: 4 },
        };
        let bytes = endpoints_to_bytes(&[endpoint, endpoint]);
        assert_eq!(endpoints_from_bytes(&bytes, 2), Some(vec![endpoint, endpoint]));
        assert_eq!(endpoints_from_bytes(&bytes, 1), None);
        assert_eq!(endpoints_from_bytes(b"[\"zz\"]", 1), None);
    }
}
