//! The registry of work-request kinds: who owns a completion.
//!
//! Every layer that posts work requests draws its kinds from here, so that completions of
//! different roles polled from one CQ can never be taken for each other. A kind is a typed
//! [`WrKind`], never a bare number: either one of the [`RegisteredKind`]s that this
//! workspace's layers own, or one of the 64 kinds of the application range
//! ([`WrKind::application`]).
//!
//! # The ranges
//!
//! | values | owner |
//! |---|---|
//! | `0x00` | nobody: a zeroed `wr_id` belongs to no role |
//! | `0x01..=0x0f` | `usec-qp-pool` (none yet) |
//! | `0x10..=0x1f` | `usec-lease-clock`: heartbeat reads, lease messages |
//! | `0x20..=0x3f` | `usec-replication`, Mu (`cft`): replicate and commit writes, permission requests and acks, recovery reads of the first undecided offset, `min_proposal` and slots, catch-up writes, snapshot transfer |
//! | `0x40..=0x5f` | `usec-membership`, uKharon: CAS Paxos, view reads, lease renewal reads |
//! | `0x60..=0x7f` | `usec-replication`, uBFT (`bft`): tail-broadcast writes, echoes, register writes and reads |
//! | `0x80..=0xbf` | reserved |
//! | `0xc0..=0xff` | applications: [`WrKind::application`]`(0..=63)` |
//!
//! # Registering a kind
//!
//! Add a line to the `registry!` invocation below, with a value in the owner's range. The
//! value is the enum discriminant, so the compiler refuses two kinds with one value
//! (error E0081), and a constant evaluated at compile time refuses a value outside its
//! owner's range: two owners cannot register the same kind, and a build that tries does
//! not compile. Kinds of the application range are the application's to share out.

use std::fmt;

/// A work-request kind: the owner of a completion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WrKind(u8);

/// Who owns a range of kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KindOwner {
    /// `usec-qp-pool`.
    QpPool,
    /// `usec-lease-clock`.
    LeaseClock,
    /// `usec-replication`'s Mu.
    Mu,
    /// `usec-membership` (uKharon).
    UKharon,
    /// `usec-replication`'s uBFT.
    UBft,
}

impl KindOwner {
    /// The values the owner may register, first and last.
    pub const fn range(self) -> (u8, u8) {
        match self {
            KindOwner::QpPool => (0x01, 0x0f),
            KindOwner::LeaseClock => (0x10, 0x1f),
            KindOwner::Mu => (0x20, 0x3f),
            KindOwner::UKharon => (0x40, 0x5f),
            KindOwner::UBft => (0x60, 0x7f),
        }
    }
}

/// The first value of the application range.
const APPLICATION_FIRST: u8 = 0xc0;

macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident = $value:literal, $owner:ident, $name:literal; )*) => {
        /// The kinds this workspace's layers own. The discriminant is the kind's value.
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum RegisteredKind {
            $( $(#[$doc])* $variant = $value, )*
        }

        impl RegisteredKind {
            /// Every registered kind, in value order.
            pub const ALL: &'static [RegisteredKind] = &[$(RegisteredKind::$variant,)*];

            /// Its owner.
            pub const fn owner(self) -> KindOwner {
                match self {
                    $(RegisteredKind::$variant => KindOwner::$owner,)*
                }
            }

            /// Its name, for people.
            pub const fn name(self) -> &'static str {
                match self {
                    $(RegisteredKind::$variant => $name,)*
                }
            }
        }
    };
}

registry! {
    /// lease-clock: a READ of a peer's heartbeat counter.
    HeartbeatRead = 0x10, LeaseClock, "heartbeat read";
    /// lease-clock: a lease message SENT over a lease channel.
    LeaseSend = 0x11, LeaseClock, "lease send";
    /// lease-clock: a RECV posted for a lease message (the sequence is the slot).
    LeaseRecv = 0x12, LeaseClock, "lease receive";
    /// Mu: a WRITE of a log entry into a follower's slot (the sequence is the index).
    MuEntry = 0x20, Mu, "Mu entry write";
    /// Mu: a WRITE of the commit record.
    MuCommit = 0x21, Mu, "Mu commit write";
    /// Mu: a WRITE of a candidate's promise (its proposal number).
    MuPromise = 0x22, Mu, "Mu promise write";
    /// Mu: a WRITE of a snapshot's bytes into a follower's snapshot area.
    MuSnapshotBytes = 0x23, Mu, "Mu snapshot write";
    /// Mu: a WRITE of the record that validates a pushed snapshot.
    MuSnapshotRecord = 0x24, Mu, "Mu snapshot record write";
    /// Mu: a READ of a peer's log head (promise, commit, status).
    MuHeadRead = 0x25, Mu, "Mu head read";
    /// Mu: a READ of a run of a peer's slots, in recovery.
    MuSlotRead = 0x26, Mu, "Mu slot read";
    /// Mu: a READ of a snapshot a peer published.
    MuSnapshotRead = 0x27, Mu, "Mu snapshot read";
    /// Mu: a WRITE into a peer's inbox (permission and snapshot requests, acks).
    MuMessage = 0x28, Mu, "Mu message";
    /// uKharon: a compare-and-swap on an acceptor slot (a Paxos prepare or accept).
    PaxosCas = 0x40, UKharon, "Paxos slot CAS";
    /// uKharon: a WRITE of a value into the proposer's buffer on an acceptor.
    PaxosWrite = 0x41, UKharon, "Paxos value write";
    /// uKharon: a proposer's READ of another proposer's value buffers.
    PaxosProposerRead = 0x42, UKharon, "Paxos proposer read";
    /// uKharon: a learner's READ of an acceptor's slots or value buffers.
    PaxosLearnerRead = 0x43, UKharon, "Paxos learner read";
    /// uBFT: a WRITE of a frame into a ring the writer owns in a peer's memory (CTBcast
    /// entries, point-to-point messages).
    BftRingWrite = 0x60, UBft, "uBFT ring write";
    /// uBFT: a READ of a peer's consumption counter of a credit ring.
    BftRingCreditRead = 0x61, UBft, "uBFT ring credit read";
    /// uBFT: a WRITE of a sub-slot of one of the writer's registers on a memory node.
    BftRegisterWrite = 0x70, UBft, "uBFT register write";
    /// uBFT: a READ of a register (both sub-slots) on a memory node.
    BftRegisterRead = 0x71, UBft, "uBFT register read";
}

// Every registered kind lies in its owner's range, and none in the application range:
// checked when the crate compiles.
const _: () = {
    let mut index = 0;
    while index < RegisteredKind::ALL.len() {
        let kind = RegisteredKind::ALL[index];
        let value = kind as u8;
        let (first, last) = kind.owner().range();
        assert!(value >= first && value <= last, "a kind outside its owner's range");
        assert!(value < APPLICATION_FIRST, "a registered kind in the application range");
        if index > 0 {
            let previous = RegisteredKind::ALL[index - 1] as u8;
            assert!(previous < value, "ALL is in value order");
        }
        index += 1;
    }
};

impl WrKind {
    /// How many kinds the application range has.
    pub const APPLICATION_KINDS: u8 = u8::MAX - APPLICATION_FIRST + 1;

    /// Kind `index` of the application range (`index` below [`Self::APPLICATION_KINDS`]).
    /// In a constant, an index out of range fails the build:
    /// `const LOG_WRITE: WrKind = WrKind::application(0);`.
    pub const fn application(index: u8) -> WrKind {
        assert!(index < WrKind::APPLICATION_KINDS, "the application range has 64 kinds");
        WrKind(APPLICATION_FIRST + index)
    }

    /// The kind of a registered owner.
    pub const fn registered(kind: RegisteredKind) -> WrKind {
        WrKind(kind as u8)
    }

    /// Its value in a `wr_id`.
    pub const fn value(self) -> u8 {
        self.0
    }

    /// The kind a `wr_id` carries, whatever its value (decoding never fails).
    pub(crate) const fn from_value(value: u8) -> WrKind {
        WrKind(value)
    }

    /// The registered kind it is, if any.
    pub fn as_registered(self) -> Option<RegisteredKind> {
        RegisteredKind::ALL.iter().copied().find(|kind| *kind as u8 == self.0)
    }

    /// Its index in the application range, if it is an application kind.
    pub const fn application_index(self) -> Option<u8> {
        if self.0 >= APPLICATION_FIRST {
            Some(self.0 - APPLICATION_FIRST)
        } else {
            None
        }
    }
}

impl From<RegisteredKind> for WrKind {
    fn from(kind: RegisteredKind) -> WrKind {
        WrKind::registered(kind)
    }
}

impl fmt::Display for RegisteredKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for WrKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.as_registered(), self.application_index()) {
            (Some(kind), _) => write!(f, "{kind}"),
            (None, Some(index)) => write!(f, "application kind {index}"),
            (None, None) => write!(f, "unregistered kind {:#04x}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn registered_kinds_are_distinct_owned_and_outside_the_application_range() {
        let values: BTreeSet<u8> = RegisteredKind::ALL.iter().map(|kind| *kind as u8).collect();
        assert_eq!(values.len(), RegisteredKind::ALL.len(), "two kinds share a value");
        assert!(!values.contains(&0), "0 is nobody's");
        let owners =
            [KindOwner::QpPool, KindOwner::LeaseClock, KindOwner::Mu, KindOwner::UKharon, KindOwner::UBft];
        for (index, a) in owners.iter().enumerate() {
            for b in &owners[index + 1..] {
                let ((a_first, a_last), (b_first, b_last)) = (a.range(), b.range());
                assert!(a_last < b_first || b_last < a_first, "{a:?} and {b:?} share values");
            }
            assert!(a.range().1 < APPLICATION_FIRST, "{a:?} reaches into the application range");
        }
        for kind in RegisteredKind::ALL {
            let (first, last) = kind.owner().range();
            assert!((first..=last).contains(&(*kind as u8)), "{kind:?} outside {:?}'s range", kind.owner());
            assert_eq!(WrKind::from(*kind).as_registered(), Some(*kind));
            assert_eq!(WrKind::from(*kind).application_index(), None);
        }
        let names: BTreeSet<&str> = RegisteredKind::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(names.len(), RegisteredKind::ALL.len(), "two kinds share a name");
    }

    #[test]
    fn application_kinds_never_meet_registered_ones() {
        for index in 0..WrKind::APPLICATION_KINDS {
            let kind = WrKind::application(index);
            assert_eq!((kind.application_index(), kind.as_registered()), (Some(index), None));
        }
        assert_eq!(WrKind::application(63).value(), 0xff);
        assert_eq!(WrKind::application(3).to_string(), "application kind 3");
        assert_eq!(WrKind::from(RegisteredKind::HeartbeatRead).to_string(), "heartbeat read");
        assert_eq!(WrKind::from_value(0x85).to_string(), "unregistered kind 0x85");
        assert_eq!(WrKind::default().as_registered(), None, "a zeroed wr_id is nobody's");
    }

    #[test]
    #[should_panic(expected = "64 kinds")]
    fn an_application_kind_past_the_range_is_refused() {
        let index = std::hint::black_box(64);
        WrKind::application(index);
    }
}
