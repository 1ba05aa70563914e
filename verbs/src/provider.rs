//! The seam between the public API and the providers.
//!
//! Two halves. The [table](PROVIDERS) says which providers exist: for each, the prefix
//! that picks it in a device name, its [`ProviderKind`] and what callers may ask of one
//! (is it a NIC, is its time real), and how to open and list its devices. The traits
//! below it are what each provider implements; the public types in this crate hold trait
//! objects and add what every provider shares (argument checks, the state machine). A
//! call through a trait object costs one indirect call, which is noise next to what a
//! post or a poll does.
//!
//! Adding a provider: a module that implements the traits, a [`ProviderKind`] variant,
//! and an entry in [`PROVIDERS`]. Nothing else in the crate (device names, listing,
//! reports) nor above it names providers one by one.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use usec_regions::Region;

use crate::access::AccessFlags;
use crate::completion::Completion;
use crate::device::DeviceAttributes;
use crate::error::{Error, Result};
use crate::event::AsyncEvent;
use crate::qp::{Endpoint, InitAttributes, QpCaps, QpOptions, QpState, RtrAttributes, RtsAttributes};
use crate::work_request::{RecvWr, SendWr};

/// Which provider serves a device.
///
/// New providers may be added, so match with a wildcard arm, or better ask the
/// predicates ([`Self::is_emulated`], [`Self::has_real_time`], [`Self::spans_processes`])
/// for what you need to know, and print [`Self::label`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProviderKind {
    /// libibverbs: real NICs, SoftRoCE, siw.
    Ibverbs,
    /// Userspace RDMA over shared memory between processes of one host.
    Soft,
    /// Deterministic in-process simulation.
    Sim,
}

impl ProviderKind {
    /// Its short name: `ibverbs`, `soft`, `sim` (also its `Display`).
    pub fn name(self) -> &'static str {
        self.entry().name
    }

    /// A phrase for reports and logs, e.g. `soft provider (shared memory)`.
    pub fn label(self) -> &'static str {
        self.entry().label
    }

    /// Whether this crate emulates the RDMA device in software (soft, sim) rather than
    /// driving one through a kernel driver. Figures measured on an emulated provider say
    /// nothing about a NIC. (A kernel software device such as `rxe0` is not emulated
    /// here: it is reached through libibverbs like any NIC.)
    pub fn is_emulated(self) -> bool {
        self.entry().emulated
    }

    /// Whether operations take real time. False for sim, whose clock is virtual: a time
    /// measured around its operations is not a latency.
    pub fn has_real_time(self) -> bool {
        self.entry().real_time
    }

    /// Whether two processes can connect QPs through it. False for sim, whose fabric
    /// lives inside one process.
    pub fn spans_processes(self) -> bool {
        self.entry().spans_processes
    }

    fn entry(self) -> &'static Provider {
        PROVIDERS.iter().find(|provider| provider.kind == self).expect("every ProviderKind has a table entry")
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Opens the device named by the part of a device name after the prefix.
type OpenFn = fn(&str) -> Result<Arc<dyn DeviceOps>>;
/// Lists the devices there are, as the part of their name after the prefix.
type ListFn = fn() -> Result<Vec<String>>;

/// One entry of the provider table.
#[derive(Debug)]
pub(crate) struct Provider {
    pub(crate) kind: ProviderKind,
    /// What a device name of this provider starts with, before a ':'. `None` for the one
    /// provider that takes names without a prefix (ibverbs, as libibverbs names devices).
    pub(crate) prefix: Option<&'static str>,
    name: &'static str,
    label: &'static str,
    emulated: bool,
    real_time: bool,
    spans_processes: bool,
    pub(crate) open: OpenFn,
    pub(crate) list: ListFn,
}

impl Provider {
    /// The full device name of `device`, one of this provider's.
    pub(crate) fn device_name(&self, device: &str) -> String {
        match self.prefix {
            Some(prefix) => format!("{prefix}:{device}"),
            None => device.to_string(),
        }
    }
}

/// Every provider, in the order [`devices`](crate::devices) lists their devices.
pub(crate) const PROVIDERS: &[Provider] = &[
    Provider {
        kind: ProviderKind::Soft,
        prefix: Some("soft"),
        name: "soft",
        label: "soft provider (shared memory)",
        emulated: true,
        real_time: true,
        spans_processes: true,
        open: crate::soft::open,
        list: crate::soft::fabrics,
    },
    Provider {
        kind: ProviderKind::Sim,
        prefix: Some("sim"),
        name: "sim",
        label: "sim provider (simulated time)",
        emulated: true,
        real_time: false,
        spans_processes: false,
        open: crate::sim::open,
        list: crate::sim::fabrics,
    },
    Provider {
        kind: ProviderKind::Ibverbs,
        prefix: None,
        name: "ibverbs",
        label: "ibverbs provider (libibverbs)",
        emulated: false,
        real_time: true,
        spans_processes: true,
        open: ibverbs::open,
        list: ibverbs::list,
    },
];

/// The provider a device name picks, and the part of the name after its prefix.
pub(crate) fn resolve(name: &str) -> Result<(&'static Provider, &str)> {
    let (provider, device) = match name.split_once(':') {
        Some((prefix, device)) => match PROVIDERS.iter().find(|provider| provider.prefix == Some(prefix)) {
            Some(provider) => (provider, device),
            None => {
                return Err(Error::UnknownProvider {
                    prefix: prefix.to_string(),
                    name: name.to_string(),
                    known: PROVIDERS.iter().filter_map(|provider| provider.prefix).collect(),
                })
            }
        },
        None => (unprefixed(), name),
    };
    let valid = !device.is_empty()
        && device.len() <= 64
        && device.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !device.starts_with('.');
    if !valid {
        return Err(Error::invalid(format!(
            "device name {name:?}: the part after the prefix must be 1-64 characters of [A-Za-z0-9._-], not starting with '.'"
        )));
    }
    Ok((provider, device))
}

/// The provider of names without a prefix.
fn unprefixed() -> &'static Provider {
    PROVIDERS.iter().find(|provider| provider.prefix.is_none()).expect("one provider takes unprefixed names")
}

/// The ibverbs provider's entry points, or, built without it, ones that say so.
#[cfg(feature = "ibverbs")]
mod ibverbs {
    pub(super) use crate::ibverbs::{device_names as list, open};
}

#[cfg(not(feature = "ibverbs"))]
mod ibverbs {
    use std::sync::Arc;

    use super::{DeviceOps, ProviderKind, PROVIDERS};
    use crate::error::{Error, Result};

    pub(super) fn open(device: &str) -> Result<Arc<dyn DeviceOps>> {
        let others: Vec<String> = PROVIDERS
            .iter()
            .filter_map(|provider| provider.prefix)
            .map(|prefix| format!("{prefix}:<name>"))
            .collect();
        Err(Error::ProviderUnavailable {
            provider: ProviderKind::Ibverbs,
            reason: format!(
                "{device:?} looks like an ibverbs device, but usec-verbs was built without the `ibverbs` \
                 feature; use {}",
                others.join(" or ")
            ),
        })
    }

    pub(super) fn list() -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// An opened device.
pub(crate) trait DeviceOps: Send + Sync + fmt::Debug {
    fn name(&self) -> &str;
    fn kind(&self) -> ProviderKind;
    fn attributes(&self) -> DeviceAttributes;
    fn alloc_pd(&self) -> Result<Arc<dyn PdOps>>;
    fn create_cq(&self, depth: u32) -> Result<Box<dyn CqOps>>;
    fn poll_event(&self) -> Option<AsyncEvent>;
    fn as_any(&self) -> &dyn Any;
}

/// A protection domain.
pub(crate) trait PdOps: Send + Sync + fmt::Debug {
    /// Registers `len` bytes of `region` from `offset` (already bounds-checked, non-empty,
    /// flags already valid for an MR).
    fn register(
        &self,
        region: &Arc<Region>,
        offset: usize,
        len: usize,
        access: AccessFlags,
    ) -> Result<Box<dyn MrOps>>;

    /// Creates an RC QP. The CQs are this provider's own (checked with `as_any`).
    fn create_qp(
        &self,
        send_cq: &dyn CqOps,
        recv_cq: &dyn CqOps,
        options: &QpOptions,
    ) -> Result<Box<dyn QpOps>>;
}

/// A memory registration; dropping it deregisters.
pub(crate) trait MrOps: Send + Sync + fmt::Debug {
    fn lkey(&self) -> u32;
    fn rkey(&self) -> u32;
    /// Changes the MR's rights. When this returns, no operation with the old rights can
    /// still land.
    fn rereg_access(&mut self, access: AccessFlags) -> Result<()>;
}

/// A completion queue.
pub(crate) trait CqOps: Send + fmt::Debug {
    /// Moves up to `out.len()` completions into `out`; returns how many. Never allocates.
    fn poll(&mut self, out: &mut [Completion]) -> usize;
    fn depth(&self) -> u32;
    fn as_any(&self) -> &dyn Any;
}

/// A state change asked of a QP. The public layer has already checked it against the
/// state machine.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Transition<'a> {
    Init(&'a InitAttributes),
    Rtr(&'a Endpoint, &'a RtrAttributes),
    Rts(&'a RtsAttributes),
    /// Change the responder access flags of a QP in INIT or RTS. When this returns, no
    /// operation with the old rights can still land.
    Access(AccessFlags),
    Error,
    Reset,
}

impl Transition<'_> {
    pub(crate) fn target(&self, current: QpState) -> QpState {
        match self {
            Transition::Init(_) => QpState::Init,
            Transition::Rtr(..) => QpState::Rtr,
            Transition::Rts(_) => QpState::Rts,
            Transition::Access(_) => current,
            Transition::Error => QpState::Error,
            Transition::Reset => QpState::Reset,
        }
    }
}

/// A reliable-connected queue pair.
pub(crate) trait QpOps: Send + fmt::Debug {
    fn qp_num(&self) -> u32;
    fn state(&self) -> QpState;
    fn caps(&self) -> QpCaps;
    fn endpoint(&self) -> Endpoint;
    fn modify(&mut self, transition: Transition<'_>) -> Result<()>;
    fn post_send(&mut self, wrs: &[SendWr<'_>]) -> Result<()>;
    fn post_recv(&mut self, wrs: &[RecvWr<'_>]) -> Result<()>;
    /// The state of the peer's process, if the provider can see it.
    fn probe_peer(&self) -> crate::PeerProbe {
        crate::PeerProbe::Unknown
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn prefixes_kinds_and_names_are_unique() {
        let prefixes: Vec<_> = PROVIDERS.iter().map(|provider| provider.prefix).collect();
        assert_eq!(prefixes.iter().collect::<HashSet<_>>().len(), prefixes.len(), "{prefixes:?}");
        assert_eq!(prefixes.iter().filter(|prefix| prefix.is_none()).count(), 1, "{prefixes:?}");
        let kinds: HashSet<_> = PROVIDERS.iter().map(|provider| provider.kind).collect();
        assert_eq!(kinds.len(), PROVIDERS.len());
        let names: HashSet<_> = PROVIDERS.iter().map(|provider| provider.name).collect();
        assert_eq!(names.len(), PROVIDERS.len());
        for provider in PROVIDERS {
            let prefix = provider.prefix.unwrap_or("");
            assert!(!prefix.contains(':'), "{prefix:?} would split a device name in the wrong place");
            assert_eq!(provider.kind.entry().name, provider.name);
        }
    }

    #[test]
    fn names_route_to_their_provider() {
        for (name, kind, device) in [
            ("soft:fab", ProviderKind::Soft, "fab"),
            ("sim:a.b-c_1", ProviderKind::Sim, "a.b-c_1"),
            ("mlx5_0", ProviderKind::Ibverbs, "mlx5_0"),
            ("rxe0", ProviderKind::Ibverbs, "rxe0"),
        ] {
            let (provider, rest) = resolve(name).unwrap();
            assert_eq!((provider.kind, rest), (kind, device), "{name}");
        }
        // Every entry's own device names come back to it.
        for provider in PROVIDERS {
            let name = provider.device_name("x-1");
            let (found, rest) = resolve(&name).unwrap();
            assert_eq!((found.kind, rest), (provider.kind, "x-1"), "{name}");
        }
    }

    #[test]
    fn an_unknown_prefix_lists_the_known_ones() {
        let error = resolve("foo:bar").unwrap_err();
        match &error {
            Error::UnknownProvider { prefix, name, known } => {
                assert_eq!((prefix.as_str(), name.as_str()), ("foo", "foo:bar"));
                let expected: Vec<_> = PROVIDERS.iter().filter_map(|provider| provider.prefix).collect();
                assert_eq!(known, &expected);
            }
            other => panic!("not UnknownProvider: {other:?}"),
        }
        let text = error.to_string();
        for prefix in ["\"foo\"", "soft:", "sim:"] {
            assert!(text.contains(prefix), "{text}");
        }
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in ["soft:", "soft:../x", "soft:a/b", "sim:.hidden", "", "soft:a b", "soft:a:b"] {
            assert!(matches!(resolve(bad), Err(Error::InvalidArgument(_))), "{bad:?} accepted");
        }
    }

    #[cfg(not(feature = "ibverbs"))]
    #[test]
    fn without_ibverbs_a_bare_name_says_what_to_use_instead() {
        let error = crate::Context::open("mlx5_0").unwrap_err();
        assert!(
            matches!(error, Error::ProviderUnavailable { provider: ProviderKind::Ibverbs, .. }),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(text.contains("soft:<name> or sim:<name>"), "{text}");
    }

    #[test]
    fn the_predicates_say_what_callers_branch_on() {
        assert_eq!(ProviderKind::Soft.label(), "soft provider (shared memory)");
        assert!(ProviderKind::Soft.is_emulated() && ProviderKind::Sim.is_emulated());
        assert!(!ProviderKind::Ibverbs.is_emulated());
        assert!(!ProviderKind::Sim.has_real_time() && !ProviderKind::Sim.spans_processes());
        assert!(ProviderKind::Soft.has_real_time() && ProviderKind::Soft.spans_processes());
        assert_eq!(ProviderKind::Ibverbs.to_string(), "ibverbs");
    }
}
