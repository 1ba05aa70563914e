//! The seven tests, and what perftest calls each of them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The RDMA operation a test measures (perftest's `VerbType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verb {
    /// Two-sided SEND/RECV.
    Send,
    /// One-sided RDMA WRITE.
    Write,
    /// One-sided RDMA READ.
    Read,
    /// 8-byte remote atomics.
    Atomic,
}

impl Verb {
    /// perftest's `testsStr`: the first word of the test's title.
    pub fn title(self) -> &'static str {
        match self {
            Verb::Send => "Send",
            Verb::Write => "RDMA_Write",
            Verb::Read => "RDMA_Read",
            Verb::Atomic => "Atomic",
        }
    }

    /// Whether the initiator's own memory receives the data (READ, atomics): such verbs
    /// take no inline payload and are limited by outstanding reads instead.
    pub fn reads_into_local_memory(self) -> bool {
        matches!(self, Verb::Read | Verb::Atomic)
    }
}

/// Latency (ping-pong or one op at a time) or bandwidth (a window of ops in flight).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    /// `*_lat`.
    Latency,
    /// `*_bw`.
    Bandwidth,
}

/// One of the tests, by its perftest name without the `ib_` prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    /// `ib_write_lat`: both sides WRITE, each polls its memory for the peer's last byte.
    WriteLat,
    /// `ib_read_lat`: the client READs, the server is passive.
    ReadLat,
    /// `ib_send_lat`: SEND/RECV ping-pong.
    SendLat,
    /// `ib_atomic_lat`: the client runs fetch-and-add or compare-and-swap.
    AtomicLat,
    /// `ib_write_bw`: the client streams WRITEs.
    WriteBw,
    /// `ib_read_bw`: the client streams READs.
    ReadBw,
    /// `ib_send_bw`: the client streams SENDs, the server reposts RECVs.
    SendBw,
}

impl TestKind {
    /// Every test, in the order `--help` lists them.
    pub const ALL: [TestKind; 7] = [
        TestKind::WriteLat,
        TestKind::ReadLat,
        TestKind::SendLat,
        TestKind::AtomicLat,
        TestKind::WriteBw,
        TestKind::ReadBw,
        TestKind::SendBw,
    ];

    /// The name on the command line (`write_lat`).
    pub fn name(self) -> &'static str {
        match self {
            TestKind::WriteLat => "write_lat",
            TestKind::ReadLat => "read_lat",
            TestKind::SendLat => "send_lat",
            TestKind::AtomicLat => "atomic_lat",
            TestKind::WriteBw => "write_bw",
            TestKind::ReadBw => "read_bw",
            TestKind::SendBw => "send_bw",
        }
    }

    /// The operation measured.
    pub fn verb(self) -> Verb {
        match self {
            TestKind::WriteLat | TestKind::WriteBw => Verb::Write,
            TestKind::ReadLat | TestKind::ReadBw => Verb::Read,
            TestKind::SendLat | TestKind::SendBw => Verb::Send,
            TestKind::AtomicLat => Verb::Atomic,
        }
    }

    /// Latency or bandwidth.
    pub fn family(self) -> Family {
        match self {
            TestKind::WriteLat | TestKind::ReadLat | TestKind::SendLat | TestKind::AtomicLat => {
                Family::Latency
            }
            TestKind::WriteBw | TestKind::ReadBw | TestKind::SendBw => Family::Bandwidth,
        }
    }

    /// Whether it is a latency test.
    pub fn is_latency(self) -> bool {
        self.family() == Family::Latency
    }

    /// What one latency sample is divided by: a ping-pong's round trip holds two one-way
    /// trips (WRITE, SEND), a READ or an atomic's round trip is the operation itself
    /// (`rtt_factor` in perftest's `print_report_lat`).
    pub fn rtt_factor(self) -> u32 {
        match self.verb() {
            Verb::Read | Verb::Atomic => 1,
            Verb::Send | Verb::Write => 2,
        }
    }

    /// The title line of the info block (`RDMA_Write Latency Test`).
    pub fn title(self, atomic: AtomicType) -> String {
        let mut title = format!("{} ", self.verb().title());
        if self.verb() == Verb::Atomic {
            title.push_str(atomic.perftest_name());
            title.push(' ');
        }
        title.push_str(if self.is_latency() { "Latency " } else { "BW " });
        title.push_str("Test");
        title
    }
}

impl fmt::Display for TestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TestKind {
    type Err = String;

    /// Accepts `write_lat`, `write-lat`, `ib_write_lat` and `usec_write_lat`.
    fn from_str(text: &str) -> Result<TestKind, String> {
        let normalised = text.replace('-', "_");
        let bare = normalised
            .strip_prefix("ib_")
            .or_else(|| normalised.strip_prefix("usec_"))
            .unwrap_or(&normalised);
        TestKind::ALL.into_iter().find(|test| test.name() == bare).ok_or_else(|| {
            let names: Vec<&str> = TestKind::ALL.iter().map(|test| test.name()).collect();
            format!("unknown test {text:?} (choose one of {})", names.join(", "))
        })
    }
}

/// The atomic operation of `atomic_lat` (`-A`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AtomicType {
    /// Compare-and-swap.
    CmpAndSwap,
    /// Fetch-and-add, perftest's default.
    #[default]
    FetchAndAdd,
}

impl AtomicType {
    /// perftest's spelling (`atomicTypesStr`).
    pub fn perftest_name(self) -> &'static str {
        match self {
            AtomicType::CmpAndSwap => "CMP_AND_SWAP",
            AtomicType::FetchAndAdd => "FETCH_AND_ADD",
        }
    }
}

impl FromStr for AtomicType {
    type Err = String;

    fn from_str(text: &str) -> Result<AtomicType, String> {
        match text {
            "CMP_AND_SWAP" => Ok(AtomicType::CmpAndSwap),
            "FETCH_AND_ADD" => Ok(AtomicType::FetchAndAdd),
            _ => Err(format!("invalid atomic type {text:?}: choose CMP_AND_SWAP or FETCH_AND_ADD")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases_parse() {
        for test in TestKind::ALL {
            assert_eq!(test.name().parse::<TestKind>(), Ok(test));
            assert_eq!(format!("ib_{}", test.name()).parse::<TestKind>(), Ok(test));
            assert_eq!(format!("usec_{}", test.name()).parse::<TestKind>(), Ok(test));
            assert_eq!(test.name().replace('_', "-").parse::<TestKind>(), Ok(test));
        }
        assert!("write_latency".parse::<TestKind>().is_err());
        assert!("".parse::<TestKind>().is_err());
    }

    #[test]
    fn titles_are_perftest_titles() {
        let atomic = AtomicType::default();
        assert_eq!(TestKind::WriteLat.title(atomic), "RDMA_Write Latency Test");
        assert_eq!(TestKind::ReadBw.title(atomic), "RDMA_Read BW Test");
        assert_eq!(TestKind::SendLat.title(atomic), "Send Latency Test");
        assert_eq!(TestKind::AtomicLat.title(atomic), "Atomic FETCH_AND_ADD Latency Test");
        assert_eq!(TestKind::AtomicLat.title(AtomicType::CmpAndSwap), "Atomic CMP_AND_SWAP Latency Test");
    }

    #[test]
    fn round_trip_factors_follow_perftest() {
        assert_eq!(TestKind::WriteLat.rtt_factor(), 2);
        assert_eq!(TestKind::SendLat.rtt_factor(), 2);
        assert_eq!(TestKind::ReadLat.rtt_factor(), 1);
        assert_eq!(TestKind::AtomicLat.rtt_factor(), 1);
    }
}
