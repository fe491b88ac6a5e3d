//! `ip neigh`: neighbour (ARP/NDP) entries. `neigh_add` is `ip neigh
//! replace DST lladdr MAC dev DEV nud permanent` and records how to undo
//! it: `DelNeigh` when there was no entry (or only one the kernel learnt,
//! which it learns again), `AddSavedNeigh` with the old address and state
//! when it replaced a static (`permanent`/`noarp`) one. `neigh_del`
//! records `AddSavedNeigh` for a static entry it removes. `neighs` is
//! `ip neigh show [dev DEV]`.

use std::net::IpAddr;

use futures::TryStreamExt;
use lnst_common::device::DevRef;
use lnst_common::host::{NeighInfo, NeighSpec};
use lnst_common::WireError;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::AddressFamily;
use serde::{Deserialize, Serialize};

use super::error::{errno_of, nl_error};
use super::links::{get_link, get_link_by_index, link_name, parse_mac};
use super::nsthread::NsConn;
use super::{ns_label, NetUndo, Nets, Recorder};

/// A static entry as it was, to put back exactly.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SavedNeigh {
    pub dst: String,
    pub lladdr: Option<String>,
    pub dev: String,
    /// `NUD_*` bits (`permanent` 0x80, `noarp` 0x40).
    pub state: u16,
}

/// `ip neigh` words for a state.
fn state_name(s: NeighbourState) -> String {
    match s {
        NeighbourState::Incomplete => "INCOMPLETE",
        NeighbourState::Reachable => "REACHABLE",
        NeighbourState::Stale => "STALE",
        NeighbourState::Delay => "DELAY",
        NeighbourState::Probe => "PROBE",
        NeighbourState::Failed => "FAILED",
        NeighbourState::Noarp => "NOARP",
        NeighbourState::Permanent => "PERMANENT",
        NeighbourState::None => "NONE",
        _ => "OTHER",
    }
    .to_string()
}

fn is_static(s: NeighbourState) -> bool {
    matches!(s, NeighbourState::Permanent | NeighbourState::Noarp)
}

fn mac_text(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn dst_of(m: &NeighbourMessage) -> Option<IpAddr> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    })
}

fn lladdr_of(m: &NeighbourMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => Some(mac_text(b)),
        _ => None,
    })
}

/// `ip neigh` words of a spec, for messages.
fn describe(n: &NeighSpec) -> String {
    match &n.lladdr {
        Some(l) => format!("{} lladdr {l} dev {}", n.dst, n.dev),
        None => format!("{} dev {}", n.dst, n.dev),
    }
}

fn parse_dst(n: &NeighSpec) -> Result<IpAddr, WireError> {
    n.dst.parse().map_err(|_| {
        WireError::invalid(format!(
            "neighbour {}: dst {:?} is not an IPv4 or IPv6 address",
            describe(n),
            n.dst
        ))
    })
}

/// Unicast entries (no multicast/proxy) of `index` (all devices if
/// `None`), as the kernel lists them.
async fn dump(conn: &NsConn, netns: Option<&str>) -> Result<Vec<NeighbourMessage>, WireError> {
    conn.rt
        .neighbours()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl_error(e, format!("ip neigh show in {}", ns_label(netns))))
}

async fn find(
    conn: &NsConn,
    netns: Option<&str>,
    index: u32,
    dst: IpAddr,
) -> Result<Option<NeighbourMessage>, WireError> {
    Ok(dump(conn, netns)
        .await?
        .into_iter()
        .find(|m| m.header.ifindex == index && dst_of(m) == Some(dst)))
}

/// `ip neigh show [dev DEV]`
pub async fn neighs(
    nets: &Nets,
    netns: Option<&str>,
    dev: Option<&str>,
) -> Result<Vec<NeighInfo>, WireError> {
    let conn = nets.conn(netns).await?;
    let index = match dev {
        Some(d) => Some(
            get_link(
                &conn,
                &DevRef {
                    netns: netns.map(str::to_string),
                    name: d.to_string(),
                },
            )
            .await?
            .header
            .index,
        ),
        None => None,
    };
    let mut names = std::collections::HashMap::new();
    let mut out = Vec::new();
    for m in dump(&conn, netns).await? {
        if index.is_some_and(|i| i != m.header.ifindex) {
            continue;
        }
        if !matches!(m.header.family, AddressFamily::Inet | AddressFamily::Inet6) {
            continue;
        }
        let Some(dst) = dst_of(&m) else { continue };
        let i = m.header.ifindex;
        if let std::collections::hash_map::Entry::Vacant(e) = names.entry(i) {
            let name = match get_link_by_index(&conn, i).await {
                Ok(l) => link_name(&l).to_string(),
                Err(_) => i.to_string(),
            };
            e.insert(name);
        }
        out.push(NeighInfo {
            dst: dst.to_string(),
            lladdr: lladdr_of(&m),
            dev: names[&i].clone(),
            state: state_name(m.header.state),
        });
    }
    Ok(out)
}

/// `ip neigh replace DST lladdr MAC dev DEV nud STATE`.
async fn apply_replace(
    conn: &NsConn,
    index: u32,
    dst: IpAddr,
    mac: &[u8],
    state: NeighbourState,
) -> Result<(), rtnetlink::Error> {
    let mut req = conn.rt.neighbours().add(index, dst).state(state).replace();
    if !mac.is_empty() {
        req = req.link_layer_address(mac);
    }
    req.execute().await
}

fn del_message(index: u32, dst: IpAddr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = if dst.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.ifindex = index;
    m.header.flags = NeighbourFlags::empty();
    m.header.kind = RouteType::Unspec;
    m.attributes
        .push(NeighbourAttribute::Destination(match dst {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
    m
}

/// `ip neigh replace DST lladdr MAC dev DEV nud permanent`
pub async fn neigh_add(
    nets: &Nets,
    rec: &dyn Recorder,
    netns: Option<&str>,
    n: &NeighSpec,
) -> Result<(), WireError> {
    let dst = parse_dst(n)?;
    let Some(ll) = &n.lladdr else {
        return Err(WireError::invalid(format!(
            "neigh_add {}: lladdr is required (\"02:00:00:00:00:01\")",
            describe(n)
        )));
    };
    let mac = parse_mac(ll)?;
    let conn = nets.conn(netns).await?;
    let dref = DevRef {
        netns: netns.map(str::to_string),
        name: n.dev.clone(),
    };
    let index = get_link(&conn, &dref).await?.header.index;
    let old = find(&conn, netns, index, dst).await?;
    let undo = match old {
        Some(m) if is_static(m.header.state) => NetUndo::AddSavedNeigh {
            netns: netns.map(str::to_string),
            neigh: SavedNeigh {
                dst: dst.to_string(),
                lladdr: lladdr_of(&m),
                dev: n.dev.clone(),
                state: u16::from(m.header.state),
            },
        },
        _ => NetUndo::DelNeigh {
            netns: netns.map(str::to_string),
            dev: n.dev.clone(),
            dst: dst.to_string(),
        },
    };
    rec.record(undo)?;
    apply_replace(&conn, index, dst, &mac, NeighbourState::Permanent)
        .await
        .map_err(|e| {
            nl_error(
                e,
                format!("ip neigh replace {} in {}", describe(n), ns_label(netns)),
            )
        })
}

/// `ip neigh del DST dev DEV`
pub async fn neigh_del(
    nets: &Nets,
    rec: &dyn Recorder,
    netns: Option<&str>,
    n: &NeighSpec,
) -> Result<(), WireError> {
    let dst = parse_dst(n)?;
    let conn = nets.conn(netns).await?;
    let dref = DevRef {
        netns: netns.map(str::to_string),
        name: n.dev.clone(),
    };
    let index = get_link(&conn, &dref).await?.header.index;
    let Some(old) = find(&conn, netns, index, dst).await? else {
        return Err(WireError::not_found(format!(
            "ip neigh del {} dev {} in {}: no such entry",
            n.dst,
            n.dev,
            ns_label(netns)
        )));
    };
    if is_static(old.header.state) {
        rec.record(NetUndo::AddSavedNeigh {
            netns: netns.map(str::to_string),
            neigh: SavedNeigh {
                dst: dst.to_string(),
                lladdr: lladdr_of(&old),
                dev: n.dev.clone(),
                state: u16::from(old.header.state),
            },
        })?;
    }
    conn.rt
        .neighbours()
        .del(del_message(index, dst))
        .execute()
        .await
        .map_err(|e| {
            nl_error(
                e,
                format!(
                    "ip neigh del {} dev {} in {}",
                    n.dst,
                    n.dev,
                    ns_label(netns)
                ),
            )
        })
}

/// Records `AddSavedNeigh` for every static entry of `index`, before a
/// change after which the kernel flushes them (a new MAC, going down), so
/// that they come back after that change is undone.
pub(crate) async fn record_static(
    conn: &NsConn,
    rec: &dyn Recorder,
    dev: &DevRef,
    index: u32,
) -> Result<(), WireError> {
    for m in dump(conn, dev.netns.as_deref()).await? {
        if m.header.ifindex != index || !is_static(m.header.state) {
            continue;
        }
        let Some(dst) = dst_of(&m) else { continue };
        rec.record(NetUndo::AddSavedNeigh {
            netns: dev.netns.clone(),
            neigh: SavedNeigh {
                dst: dst.to_string(),
                lladdr: lladdr_of(&m),
                dev: dev.name.clone(),
                state: u16::from(m.header.state),
            },
        })?;
    }
    Ok(())
}

/// Undo of `neigh_add`: `ip neigh del`; an entry or device already gone
/// is fine.
pub(crate) async fn apply_del(
    nets: &Nets,
    netns: Option<&str>,
    dev: &str,
    dst: &str,
) -> Result<(), WireError> {
    let dst: IpAddr = dst
        .parse()
        .map_err(|_| WireError::invalid(format!("bad neighbour address {dst:?}")))?;
    let conn = nets.conn(netns).await?;
    let dref = DevRef {
        netns: netns.map(str::to_string),
        name: dev.to_string(),
    };
    let index = get_link(&conn, &dref).await?.header.index;
    match conn
        .rt
        .neighbours()
        .del(del_message(index, dst))
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if errno_of(&e) == Some(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(nl_error(e, format!("ip neigh del {dst} dev {dev}"))),
    }
}

/// Undo of a replace or delete: the static entry as it was.
pub(crate) async fn apply_add_saved(
    nets: &Nets,
    netns: Option<&str>,
    s: &SavedNeigh,
) -> Result<(), WireError> {
    let dst: IpAddr = s
        .dst
        .parse()
        .map_err(|_| WireError::invalid(format!("bad neighbour address {:?}", s.dst)))?;
    let conn = nets.conn(netns).await?;
    let dref = DevRef {
        netns: netns.map(str::to_string),
        name: s.dev.clone(),
    };
    let index = get_link(&conn, &dref).await?.header.index;
    let mac = match &s.lladdr {
        Some(l) => parse_mac(l)?,
        None => Vec::new(),
    };
    apply_replace(&conn, index, dst, &mac, NeighbourState::from(s.state))
        .await
        .map_err(|e| nl_error(e, format!("ip neigh replace {} dev {}", s.dst, s.dev)))
}
