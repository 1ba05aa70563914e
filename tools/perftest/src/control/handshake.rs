//! Meeting the peer in perftest's order (`exchange_versions`, `check_sys_data`, `check_mtu`,
//! then the tests' own sequences of `ctx_hand_shake` calls in `src/*_lat.c`, `src/*_bw.c`),
//! and the barriers the tests use later.
//!
//! Before the run, every test exchanges one key per QP before it connects its QPs and one
//! per QP after, plus one barrier: the latency tests other than send_lat begin with an
//! extra exchange of QP 0's key and end with the barrier; the bandwidth tests other than
//! send_bw end with the barrier; send_lat and send_bw put it between the two rounds.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use usec_verbs::qp::{Address, Mtu};
use usec_verbs::Endpoint;

use crate::control::connection::Control;
use crate::control::hello::{self, Hello, ENDPOINT_BYTES_MAX, HELLO_BYTES_MAX};
use crate::control::wire::{self, BandwidthReport, KeyMessage, MTU_BYTES, REPORT_FIELD_BYTES, VERSION_BYTES};
use crate::settings::Settings;
use crate::test_kind::{Family, TestKind, Verb};

/// The page size this side announces: its buffers cycle through pages of this size.
pub const CYCLE_BYTES: u32 = 4096;
/// The cache line size this side announces.
pub const CACHE_LINE_BYTES: u32 = 64;

/// One QP of one side: its endpoint, and the buffer the peer's one-sided operations target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QpInfo {
    /// How to connect to it.
    pub endpoint: Endpoint,
    /// Remote key of the buffer.
    pub rkey: u32,
    /// Address of the buffer.
    pub addr: u64,
    /// Length of the buffer.
    pub len: u64,
    /// READs and atomics it lets in flight.
    pub out_reads: u32,
}

/// What the two sides settled before exchanging keys.
#[derive(Clone, Debug)]
pub struct Agreement {
    /// The peer's hello: `Some` when the peer is usec-perftest.
    pub peer_hello: Option<Hello>,
    /// The peer's endpoints, on providers whose addresses perftest's key cannot carry.
    pub peer_endpoints: Option<Vec<Endpoint>>,
    /// The larger of the two sides' page sizes.
    pub cycle_bytes: u32,
    /// The MTU both sides use.
    pub mtu: Mtu,
    /// Whether key messages carry GIDs (routing by GID: RoCE, or InfiniBand with `-x`).
    pub keys_with_gid: bool,
}

/// What this side brings to the meeting.
#[derive(Clone, Debug)]
pub struct Introduction<'a> {
    /// The run's settings.
    pub settings: &'a Settings,
    /// This side's provider (`ibverbs`, `soft`, `sim`).
    pub provider: String,
    /// This side's endpoints.
    pub endpoints: Vec<Endpoint>,
    /// The port's MTU.
    pub port_mtu: Mtu,
    /// Whether this side routes by GID.
    pub routes_by_gid: bool,
}

/// The exchanges before the keys: version, then (usec peers) hello and endpoints, page and
/// cache line sizes, and MTU.
pub fn agree(control: &mut Control, me: &Introduction<'_>) -> Result<Agreement> {
    let role = me.settings.role.name();
    let (peer_role, peer) = (control.peer_role, control.peer_address());
    let peer_version =
        control.exchange_checked(&wire::encode_version(), VERSION_BYTES, "the version", |bytes| {
            let version = wire::decode_version(bytes.try_into().expect("the length read"));
            if !version.compatible() {
                bail!(
                "Current implementation is not compatible with versions older than 5.70 (the {peer_role} at \
                 {peer} sent version {:?}: is it perftest?)",
                version.text
            );
            }
            Ok(version)
        })?;
    let ibverbs = me.provider == "ibverbs";
    let (peer_hello, peer_endpoints) = if peer_version.usec {
        let mine = Hello::new(me.settings, &me.provider);
        let theirs = control.exchange_frame(&mine.to_bytes(), HELLO_BYTES_MAX, "the usec-perftest hello")?;
        let theirs = Hello::from_bytes(&theirs).ok_or_else(|| {
            anyhow!("the {peer_role} at {peer} sent a usec-perftest hello this version cannot read")
        })?;
        if let Some(difference) = mine.mismatch(&theirs, role, peer_role) {
            bail!("mismatched peer at {peer}: {difference}");
        }
        let endpoints = if ibverbs {
            None
        } else {
            let bound = ENDPOINT_BYTES_MAX * me.endpoints.len() + 2;
            let bytes =
                control.exchange_frame(&hello::endpoints_to_bytes(&me.endpoints), bound, "the endpoints")?;
            let endpoints = hello::endpoints_from_bytes(&bytes, me.endpoints.len())
                .ok_or_else(|| anyhow!("the {peer_role} at {peer} sent endpoints that do not parse"))?;
            Some(endpoints)
        };
        (Some(theirs), endpoints)
    } else {
        if !ibverbs {
            bail!(
                "the {peer_role} at {peer} is perftest (version {}), which runs on RDMA devices: run this \
                 side on one too (-d rxe0, mlx5_0), not on the {} provider",
                peer_version.text,
                me.provider
            );
        }
        (None, None)
    };
    let step = Some(control.step_timeout());
    let theirs = control.exchange(&wire::encode_u32(CYCLE_BYTES), 4, "the page size", step)?;
    let cycle_bytes = CYCLE_BYTES.max(wire::decode_u32(theirs.try_into().expect("4 bytes")));
    // The cache line size only steps perftest's own addresses; it is exchanged, not used.
    control.exchange(&wire::encode_u32(CACHE_LINE_BYTES), 4, "the cache line size", step)?;
    let mine = mtu_number(me.port_mtu);
    let theirs = control.exchange(&wire::encode_mtu(mine), MTU_BYTES, "the MTU", step)?;
    // perftest ignores an MTU it cannot read and keeps its own.
    let agreed =
        wire::decode_mtu(theirs.try_into().expect("2 bytes")).map_or(mine, |theirs| theirs.min(mine));
    Ok(Agreement {
        peer_hello,
        peer_endpoints,
        cycle_bytes,
        mtu: mtu_from_number(agreed),
        keys_with_gid: me.routes_by_gid,
    })
}

/// perftest's `ibv_mtu` number for `mtu` (1 for 256 bytes to 5 for 4096).
fn mtu_number(mtu: Mtu) -> u8 {
    (mtu.bytes() / 256).trailing_zeros() as u8 + 1
}

fn mtu_from_number(number: u8) -> Mtu {
    Mtu::from_bytes(128 << number).expect("numbers 1..=5 are MTUs")
}

/// Which QP's key each exchange before the QPs connect carries, in the test's order.
pub fn keys_before_connect(test: TestKind, qps: usize) -> Vec<usize> {
    match (test.verb(), test.family()) {
        (Verb::Send, _) | (_, Family::Bandwidth) => (0..qps).collect(),
        _ => std::iter::once(0).chain(0..qps).collect(),
    }
}

/// Which QP's key each exchange after the QPs connect carries, in the test's order.
pub fn keys_after_connect(test: TestKind, qps: usize) -> Vec<usize> {
    match test.verb() {
        Verb::Send => std::iter::once(0).chain(0..qps).collect(),
        _ => (0..qps).chain(std::iter::once(0)).collect(),
    }
}

/// Runs the key exchanges `order` names, sending `mine[i]` for each `i` and returning the
/// peer's last key for every QP. A peer that is not usec-perftest is checked at its first
/// key: outstanding reads other than 1 mean it runs a READ or atomic test; a server that
/// finds a mismatch closes without answering.
pub fn exchange_keys(
    control: &mut Control,
    settings: &Settings,
    agreement: &Agreement,
    mine: &[KeyMessage],
    order: &[usize],
) -> Result<Vec<KeyMessage>> {
    let mut theirs: Vec<Option<KeyMessage>> = vec![None; mine.len()];
    let peer = control_peer(control);
    for &qp in order {
        let key = exchange_key(control, agreement, &mine[qp], |key| {
            if agreement.peer_hello.is_none() {
                check_perftest_peer(settings, key, peer)?;
            }
            check_gid_types(&mine[qp], key, peer)
        })?;
        theirs[qp] = Some(key);
    }
    Ok(theirs.into_iter().map(|key| key.expect("every QP's key is exchanged")).collect())
}

/// A barrier: one exchange of QP 0's key, the peer having `patience` to get there
/// (`None`: as long as it stays connected).
pub fn barrier(
    control: &mut Control,
    agreement: &Agreement,
    mine: &KeyMessage,
    what: &str,
    patience: Option<Duration>,
) -> Result<()> {
    let len = KeyMessage::encoded_len(agreement.keys_with_gid);
    let theirs = control.exchange(&mine.encode(), len, what, patience)?;
    decode_key(&theirs, agreement, control_peer(control))?;
    Ok(())
}

/// Closes the test as perftest does: a barrier, then "done".
pub fn close(
    control: Control,
    agreement: &Agreement,
    mine: &KeyMessage,
    patience: Option<Duration>,
) -> Result<()> {
    let len = KeyMessage::encoded_len(agreement.keys_with_gid);
    control.close(&mine.encode(), len, patience)
}

/// The bandwidth report exchange (`xchg_bw_reports`): five 8-byte fields, one exchange
/// each; the peer has `patience` for the first (it may still be running).
pub fn exchange_report(
    control: &mut Control,
    mine: &BandwidthReport,
    patience: Option<Duration>,
) -> Result<BandwidthReport> {
    let mut theirs = [[0u8; REPORT_FIELD_BYTES]; 5];
    let mut wait = patience;
    for (field, slot) in mine.fields().iter().zip(theirs.iter_mut()) {
        let bytes = control.exchange(field, REPORT_FIELD_BYTES, "the bandwidth report", wait)?;
        slot.copy_from_slice(&bytes);
        wait = Some(control.step_timeout());
    }
    Ok(BandwidthReport::from_fields(theirs))
}

fn exchange_key(
    control: &mut Control,
    agreement: &Agreement,
    mine: &KeyMessage,
    check: impl FnOnce(&KeyMessage) -> Result<()>,
) -> Result<KeyMessage> {
    let len = KeyMessage::encoded_len(agreement.keys_with_gid);
    let peer = control_peer(control);
    control.exchange_checked(&mine.encode(), len, "the QP keys", |bytes| {
        let key = decode_key(bytes, agreement, peer)?;
        check(&key)?;
        Ok(key)
    })
}

fn control_peer(control: &Control) -> (&'static str, SocketAddr) {
    (control.peer_role, control.peer_address())
}

fn decode_key(bytes: &[u8], agreement: &Agreement, (role, peer): (&str, SocketAddr)) -> Result<KeyMessage> {
    KeyMessage::decode(bytes, agreement.keys_with_gid).map_err(|error| {
        anyhow!(
            "{}: the {role} at {peer} sent {error} (is it perftest or usec-perftest running the same test with \
             the same options?)",
            crate::control::connection::EXCHANGE_FAILED
        )
    })
}

/// What a perftest peer's key says about its test: perftest announces 1 outstanding read
/// for WRITE and SEND tests and the device's maximum for READ and atomic tests.
fn check_perftest_peer(
    settings: &Settings,
    key: &KeyMessage,
    (role, peer): (&str, SocketAddr),
) -> Result<()> {
    let reads = settings.test.verb().reads_into_local_memory();
    if !reads && key.out_reads != 1 {
        bail!(
            "mismatched peer at {peer}: this {} runs {}, whose QPs take 1 outstanding read; the {role}'s take {}: \
             it runs a READ or atomic test",
            settings.role.name(),
            settings.test,
            key.out_reads
        );
    }
    Ok(())
}

/// perftest's `ctx_check_gid_compatibility`: both GIDs IPv4-mapped, or neither (RoCE
/// cannot route between the two kinds; perftest without `-x` picks its own GID index).
fn check_gid_types(mine: &KeyMessage, theirs: &KeyMessage, (role, peer): (&str, SocketAddr)) -> Result<()> {
    let (Some(mine), Some(theirs)) = (mine.gid, theirs.gid) else {
        return Ok(());
    };
    let kind = |gid: [u8; 16]| if ipv4_mapped(gid) { "IPv4-mapped" } else { "IPv6" };
    if ipv4_mapped(mine) != ipv4_mapped(theirs) {
        bail!(
            "Found Incompatibility issue with GID types: this side's GID is {}, the {role}'s at {peer} {}. \
             Please Try to use a different IP version (choose GID indexes of one kind with -x on both sides)",
            kind(mine),
            kind(theirs)
        );
    }
    Ok(())
}

/// Whether `gid` is an IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`).
fn ipv4_mapped(gid: [u8; 16]) -> bool {
    gid[..10].iter().all(|&byte| byte == 0) && gid[10..12] == [0xff, 0xff]
}

/// The peer's QPs, from its keys and, where perftest's key cannot carry the address, its
/// endpoints. `local` is one of this side's endpoints (its address kind is the peer's);
/// `len` is what the peer's target buffer holds.
pub fn peer_qps(
    keys: &[KeyMessage],
    agreement: &Agreement,
    local: &Endpoint,
    len: u64,
) -> Result<Vec<QpInfo>> {
    keys.iter()
        .enumerate()
        .map(|(qp, key)| {
            let endpoint = match &agreement.peer_endpoints {
                Some(endpoints) => endpoints[qp],
                None => Endpoint {
                    qp_num: key.qpn,
                    psn: key.psn,
                    mtu: agreement.mtu,
                    address: address(key, local)?,
                },
            };
            Ok(QpInfo { endpoint, rkey: key.rkey, addr: key.vaddr, len, out_reads: u32::from(key.out_reads) })
        })
        .collect()
}

/// The peer's address, of the same kind as this side's.
fn address(key: &KeyMessage, local: &Endpoint) -> Result<Address> {
    Ok(match local.address {
        Address::Roce { .. } => Address::Roce {
            gid: key.gid.ok_or_else(|| anyhow!("the peer's key carries no GID, which RoCE needs"))?,
            gid_index: 0,
        },
        Address::Infiniband { .. } => Address::Infiniband {
            lid: key.lid,
            gid: key.gid.unwrap_or_default(),
            gid_index: key.gid.map(|_| 0),
        },
        _ => bail!("the peer's address on this provider comes with its endpoints, which it did not send"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_orders_are_perftests() {
        assert_eq!(keys_before_connect(TestKind::WriteLat, 1), vec![0, 0]);
        assert_eq!(keys_after_connect(TestKind::WriteLat, 1), vec![0, 0]);
        assert_eq!(keys_before_connect(TestKind::AtomicLat, 1), vec![0, 0]);
        assert_eq!(keys_before_connect(TestKind::WriteBw, 3), vec![0, 1, 2]);
        assert_eq!(keys_after_connect(TestKind::ReadBw, 3), vec![0, 1, 2, 0]);
        assert_eq!(keys_before_connect(TestKind::SendBw, 2), vec![0, 1]);
        assert_eq!(keys_after_connect(TestKind::SendBw, 2), vec![0, 0, 1]);
        assert_eq!(keys_before_connect(TestKind::SendLat, 1), vec![0]);
        assert_eq!(keys_after_connect(TestKind::SendLat, 1), vec![0, 0]);
    }

    #[test]
    fn gid_kinds_must_match_as_perftest_requires() {
        let key = |gid: Option<[u8; 16]>| KeyMessage {
            lid: 0,
            out_reads: 1,
            qpn: 1,
            psn: 1,
            rkey: 1,
            vaddr: 0,
            gid,
            srqn: 0,
        };
        let link_local = Some([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        let mapped = Some([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 77, 0, 1]);
        let peer = ("server", "127.0.0.1:18515".parse().unwrap());
        assert!(check_gid_types(&key(link_local), &key(link_local), peer).is_ok());
        assert!(check_gid_types(&key(mapped), &key(mapped), peer).is_ok());
        assert!(check_gid_types(&key(None), &key(None), peer).is_ok());
        let error = check_gid_types(&key(link_local), &key(mapped), peer).unwrap_err().to_string();
        assert!(
            error.starts_with("Found Incompatibility issue with GID types: this side's GID is IPv6"),
            "{error}"
        );
        assert!(error.contains("the server's at 127.0.0.1:18515 IPv4-mapped"), "{error}");
    }

    #[test]
    fn mtu_numbers_are_ibv_mtus() {
        assert_eq!(mtu_number(Mtu::Mtu256), 1);
        assert_eq!(mtu_number(Mtu::Mtu1024), 3);
        assert_eq!(mtu_number(Mtu::Mtu4096), 5);
        for number in 1..=5 {
            assert_eq!(mtu_number(mtu_from_number(number)), number);
        }
    }
}
