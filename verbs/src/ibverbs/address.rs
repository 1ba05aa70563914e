//! Port and GID selection, and the route to a peer: InfiniBand LID routing (with a global
//! route header when both sides select a GID index) or RoCE GID routing. The port's link
//! layer decides which.

use rdma_sys::ibv_ah_attr;

use crate::device::LinkLayer;
use crate::error::{BadEndpoint, Error, Result};
use crate::ibverbs::device::DeviceShared;
use crate::ibverbs::raw::{zeroed, Zeroable};
use crate::provider::ProviderKind;
use crate::qp::{Address, Gid, Mtu, QpOptions};

/// IP's customary initial hop limit; within one subnet any value above 0 works.
const HOP_LIMIT: u8 = 64;

// SAFETY: `ibv_ah_attr` is a `#[repr(C)]` struct of integers and a GID union of byte
// arrays and integers: all-zero bytes are valid.
unsafe impl Zeroable for ibv_ah_attr {}

/// The local side of a QP's path, resolved and checked at QP creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LocalPort {
    pub port: u8,
    pub link_layer: LinkLayer,
    pub lid: u16,
    /// The GID index in use: always set on RoCE (0 unless chosen), on InfiniBand only if
    /// chosen.
    pub gid_index: Option<u8>,
    /// The GID at `gid_index` (zero when none).
    pub gid: Gid,
    /// The port's active MTU when the QP was created.
    pub mtu: Mtu,
}

impl LocalPort {
    /// Checks `options.port` and `options.gid_index` against the device and reads what
    /// the endpoint will carry.
    pub(crate) fn resolve(device: &DeviceShared, options: &QpOptions) -> Result<LocalPort> {
        device.check_port(options.port)?;
        let port = options.port;
        let attributes = device
            .port(port)
            .map_err(|error| Error::os(format!("ibv_query_port({}, {port})", device.name), error))?;
        let gid_index = match attributes.link_layer {
            LinkLayer::Ethernet => Some(options.gid_index.unwrap_or(0)),
            _ => options.gid_index,
        };
        let gid = match gid_index {
            Some(index) => read_gid(device, port, index, attributes.gid_table_len)?,
            None => [0; 16],
        };
        Ok(LocalPort {
            port,
            link_layer: attributes.link_layer,
            lid: attributes.lid,
            gid_index,
            gid,
            mtu: attributes.active_mtu,
        })
    }

    /// The address the peer connects to.
    pub(crate) fn address(&self) -> Address {
        match (self.link_layer, self.gid_index) {
            (LinkLayer::Ethernet, Some(gid_index)) => Address::Roce { gid: self.gid, gid_index },
            _ => Address::Infiniband { lid: self.lid, gid: self.gid, gid_index: self.gid_index },
        }
    }
}

/// The GID at `index`, refusing an index past the table and an empty (all-zero) entry.
fn read_gid(device: &DeviceShared, port: u8, index: u8, table_len: u32) -> Result<Gid> {
    let what = || format!("GID index {index} on port {port} of {}", device.name);
    if u32::from(index) >= table_len {
        return Err(Error::invalid(format!(
            "{}: the port's GID table has {table_len} entries (indexes 0..{table_len})",
            what()
        )));
    }
    let empty = || {
        Error::invalid(format!(
            "{}: the entry is empty (the port's GID table has {table_len} entries; \
             `ibv_devinfo -v` lists the populated ones)",
            what()
        ))
    };
    let gid = device.query_gid(port, index).map_err(|_| empty())?;
    if gid == [0; 16] {
        return Err(empty());
    }
    Ok(gid)
}

/// How packets reach the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// By LID within an InfiniBand subnet.
    Local { dlid: u16 },
    /// With a global route header: RoCE always, InfiniBand when both sides chose a GID.
    Global { dlid: u16, dgid: Gid, sgid_index: u8 },
}

/// The route from `local` to the peer at `remote`.
pub(crate) fn route(local: &LocalPort, remote: &Address) -> Result<Route> {
    match (local.link_layer, *remote) {
        (LinkLayer::Ethernet, Address::Roce { gid, .. }) => {
            let sgid_index = local.gid_index.expect("RoCE ports always resolve a GID index");
            Ok(Route::Global { dlid: 0, dgid: gid, sgid_index })
        }
        (LinkLayer::Ethernet, address @ Address::Infiniband { .. }) => {
            Err(Error::BadEndpoint(BadEndpoint::WrongLinkLayer {
                port: local.port,
                link_layer: local.link_layer,
                address,
            }))
        }
        (_, Address::Infiniband { lid, gid, gid_index }) => match (local.gid_index, gid_index) {
            (Some(sgid_index), Some(_)) => Ok(Route::Global { dlid: lid, dgid: gid, sgid_index }),
            _ if lid == 0 => Err(Error::BadEndpoint(BadEndpoint::ZeroLid)),
            _ => Ok(Route::Local { dlid: lid }),
        },
        (_, address @ Address::Roce { .. }) => Err(Error::BadEndpoint(BadEndpoint::WrongLinkLayer {
            port: local.port,
            link_layer: local.link_layer,
            address,
        })),
        (_, address) => {
            Err(Error::BadEndpoint(BadEndpoint::OtherProvider { provider: ProviderKind::Ibverbs, address }))
        }
    }
}

/// `ibv_ah_attr` for a route out of `port`.
pub(crate) fn ah_attr(route: Route, port: u8) -> ibv_ah_attr {
    let mut attr: ibv_ah_attr = zeroed();
    attr.port_num = port;
    match route {
        Route::Local { dlid } => attr.dlid = dlid,
        Route::Global { dlid, dgid, sgid_index } => {
            attr.dlid = dlid;
            attr.is_global = 1;
            attr.grh.dgid.raw = dgid;
            attr.grh.sgid_index = sgid_index;
            attr.grh.hop_limit = HOP_LIMIT;
        }
    }
    attr
}

#[cfg(test)]
mod tests {
    use super::*;

    const GID: Gid = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];

    fn port(link_layer: LinkLayer, gid_index: Option<u8>) -> LocalPort {
        LocalPort { port: 1, link_layer, lid: 5, gid_index, gid: GID, mtu: Mtu::Mtu1024 }
    }

    #[test]
    fn roce_routes_by_gid_from_the_local_index() {
        let local = port(LinkLayer::Ethernet, Some(3));
        assert_eq!(local.address(), Address::Roce { gid: GID, gid_index: 3 });
        let remote = Address::Roce { gid: [9; 16], gid_index: 0 };
        assert_eq!(route(&local, &remote).unwrap(), Route::Global { dlid: 0, dgid: [9; 16], sgid_index: 3 });
        let attr = ah_attr(route(&local, &remote).unwrap(), 1);
        assert_eq!((attr.is_global, attr.grh.sgid_index, attr.port_num), (1, 3, 1));
        // SAFETY: reading the byte-array member of a union just written through it.
        assert_eq!(unsafe { attr.grh.dgid.raw }, [9; 16]);
        let error = route(&local, &Address::Infiniband { lid: 1, gid: GID, gid_index: None }).unwrap_err();
        assert!(
            matches!(
                error,
                Error::BadEndpoint(BadEndpoint::WrongLinkLayer {
                    port: 1,
                    link_layer: LinkLayer::Ethernet,
                    ..
                })
            ),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("InfiniBand (LID) address, but port 1 is Ethernet (RoCE)"),
            "{error}"
        );
    }

    #[test]
    fn infiniband_routes_by_lid_unless_both_sides_chose_a_gid() {
        let plain = port(LinkLayer::Infiniband, None);
        assert_eq!(plain.address(), Address::Infiniband { lid: 5, gid: GID, gid_index: None });
        let remote = Address::Infiniband { lid: 9, gid: [7; 16], gid_index: Some(1) };
        assert_eq!(route(&plain, &remote).unwrap(), Route::Local { dlid: 9 });
        let attr = ah_attr(Route::Local { dlid: 9 }, 2);
        assert_eq!((attr.is_global, attr.dlid, attr.port_num), (0, 9, 2));
        let global = port(LinkLayer::Infiniband, Some(2));
        assert_eq!(route(&global, &remote).unwrap(), Route::Global { dlid: 9, dgid: [7; 16], sgid_index: 2 });
        let remote_plain = Address::Infiniband { lid: 9, gid: [0; 16], gid_index: None };
        assert_eq!(route(&global, &remote_plain).unwrap(), Route::Local { dlid: 9 });
        let no_lid = Address::Infiniband { lid: 0, gid: [0; 16], gid_index: None };
        let error = route(&plain, &no_lid).unwrap_err();
        assert!(matches!(error, Error::BadEndpoint(BadEndpoint::ZeroLid)), "{error:?}");
        assert!(error.to_string().contains("LID is 0"), "{error}");
        let error = route(&plain, &Address::Roce { gid: GID, gid_index: 0 }).unwrap_err();
        assert!(
            matches!(
                error,
                Error::BadEndpoint(BadEndpoint::WrongLinkLayer {
                    port: 1,
                    link_layer: LinkLayer::Infiniband,
                    ..
                })
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("RoCE (GID) address, but port 1 is InfiniBand"), "{error}");
    }

    #[test]
    fn other_providers_endpoints_are_refused() {
        let local = port(LinkLayer::Ethernet, Some(0));
        for remote in
            [Address::Sim { fabric: 1, node: 2 }, Address::Soft { fabric: 1, pid: 2, node: 3, nonce: 4 }]
        {
            let error = route(&local, &remote).unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::BadEndpoint(BadEndpoint::OtherProvider { provider: ProviderKind::Ibverbs, address })
                        if address == remote
                ),
                "{error:?}"
            );
        }
    }
}
