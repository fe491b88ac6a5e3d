//! `ip link`: reading devices into [`DeviceInfo`] and the per-device
//! requests (`set_mtu`, `set_mac`, `set_state`, `set_master`, `move_to`,
//! `destroy`, `wait_carrier`). Each mutating call records its undo first;
//! reads and the read-back after a change come from the namespace's
//! [`super::monitor`] cache.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use lnst_common::device::{DevRef, DeviceInfo, LinkStats};
use lnst_common::{ErrorKind, WireError};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::LinkUnspec;

use super::error::{errno_of, nl_error};
use super::nsthread::NsConn;
use super::{addrs, driver, ns_label, NetUndo, Nets, Recorder};

/// `ip -s -d addr show` of every device in `netns`, from the namespace's
/// device cache ([`super::monitor`]): no link or address dump, one
/// stats-only `RTM_GETSTATS` dump for the counters.
pub async fn devices(nets: &Nets, netns: Option<&str>) -> Result<Vec<DeviceInfo>, WireError> {
    nets.conn(netns).await?.monitor.devices().await
}

/// [`devices`] the old way, from a link dump, an address dump and one
/// driver ioctl per device: for benchmarks and to cross-check the cache.
pub async fn devices_uncached(
    nets: &Nets,
    netns: Option<&str>,
) -> Result<Vec<DeviceInfo>, WireError> {
    let conn = nets.conn(netns).await?;
    let links = dump_links(&conn, netns).await?;
    let mut ips = addrs::dump(&conn.rt, netns, None).await?;
    let names: HashMap<u32, String> = links
        .iter()
        .map(|l| (l.header.index, link_name(l).to_string()))
        .collect();
    Ok(links
        .iter()
        .map(|l| {
            let ips = ips.remove(&l.header.index).unwrap_or_default();
            info_of(&conn, l, ips, |i| names.get(&i).cloned())
        })
        .collect())
}

/// `ip -s -d addr show dev DEV` of one device, from the cache (which has
/// every change made before the call).
pub async fn device(nets: &Nets, dev: &DevRef) -> Result<DeviceInfo, WireError> {
    let conn = nets.conn(dev.netns.as_deref()).await?;
    match conn.monitor.device_by_name(&dev.name).await? {
        Some(d) => Ok(d),
        None => Err(not_found(&conn, dev).await),
    }
}

/// The read-back after a change to the device `index`: from the cache,
/// once it has the change.
async fn device_after(conn: &NsConn, dev: &DevRef, index: u32) -> Result<DeviceInfo, WireError> {
    match conn.monitor.device_by_index(index).await? {
        Some(d) => Ok(d),
        None => Err(WireError::not_found(format!(
            "device {} (index {index}) vanished from {} during the change",
            dev.name,
            ns_label(dev.netns.as_deref())
        ))),
    }
}

/// `ip link set DEV mtu N`
pub async fn set_mtu(
    nets: &Nets,
    rec: &dyn Recorder,
    dev: &DevRef,
    mtu: u32,
) -> Result<DeviceInfo, WireError> {
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let link = get_link(&conn, dev).await?;
    let old = link_mtu(&link);
    if mtu < IPV6_MIN_MTU && old >= IPV6_MIN_MTU {
        // Below 1280 the kernel turns IPv6 off on the device, dropping its
        // IPv6 addresses and routes: bring them back after the MTU.
        addrs::record_routes(&conn, rec, dev, link.header.index).await?;
        record_v6_addrs(&conn, rec, dev, link.header.index).await?;
        // and its neighbours, static ones too
        super::neigh::record_static(&conn, rec, dev, link.header.index).await?;
    }
    rec.record(NetUndo::RestoreMtu {
        dev: dev.clone(),
        mtu: old,
    })?;
    let msg = LinkUnspec::new_with_index(link.header.index)
        .mtu(mtu)
        .build();
    conn.rt.link().set(msg).execute().await.map_err(|e| {
        nl_error(
            e,
            format!(
                "ip link set {} mtu {mtu} in {}",
                dev.name,
                ns_label(dev.netns.as_deref())
            ),
        )
    })?;
    device_after(&conn, dev, link.header.index).await
}

/// `ip link set DEV address MAC`
pub async fn set_mac(
    nets: &Nets,
    rec: &dyn Recorder,
    dev: &DevRef,
    mac: &str,
) -> Result<DeviceInfo, WireError> {
    let bytes = parse_mac(mac)?;
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let link = get_link(&conn, dev).await?;
    // A new MAC can bring a new IPv6 link-local address (EUI-64); the
    // undo puts back the link-local addresses of now.
    let link_local = addrs::dump(&conn.rt, dev.netns.as_deref(), Some(link.header.index))
        .await?
        .remove(&link.header.index)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| addrs::is_link_local(c))
        .collect();
    // The kernel flushes the device's neighbours, static ones too.
    super::neigh::record_static(&conn, rec, dev, link.header.index).await?;
    rec.record(NetUndo::RestoreMac {
        dev: dev.clone(),
        mac: link_mac(&link),
        link_local,
    })?;
    let msg = LinkUnspec::new_with_index(link.header.index)
        .address(bytes)
        .build();
    conn.rt.link().set(msg).execute().await.map_err(|e| {
        nl_error(
            e,
            format!(
                "ip link set {} address {mac} in {}",
                dev.name,
                ns_label(dev.netns.as_deref())
            ),
        )
    })?;
    device_after(&conn, dev, link.header.index).await
}

/// `ip link set DEV up|down`
pub async fn set_state(
    nets: &Nets,
    rec: &dyn Recorder,
    dev: &DevRef,
    up: bool,
) -> Result<DeviceInfo, WireError> {
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let link = get_link(&conn, dev).await?;
    let was_up = link.header.flags.contains(LinkFlags::Up);
    if was_up && !up {
        // Going down drops the routes through the device and the IPv6
        // addresses (unless keep_addr_on_down): re-add them after the state
        // is restored, addresses before routes (replay is in reverse).
        addrs::record_routes(&conn, rec, dev, link.header.index).await?;
        record_v6_addrs(&conn, rec, dev, link.header.index).await?;
    }
    rec.record(NetUndo::RestoreState {
        dev: dev.clone(),
        up: was_up,
    })?;
    apply_state(&conn, dev, link.header.index, up).await?;
    device_after(&conn, dev, link.header.index).await
}

/// The smallest MTU with which the kernel keeps IPv6 on a device.
const IPV6_MIN_MTU: u32 = 1280;

/// Records `AddSavedAddress` for the device's IPv6 addresses other than
/// link-local (which the kernel makes again itself).
async fn record_v6_addrs(
    conn: &NsConn,
    rec: &dyn Recorder,
    dev: &DevRef,
    index: u32,
) -> Result<(), WireError> {
    for a in addrs::saved(conn, dev.netns.as_deref(), index)
        .await?
        .into_iter()
        .rev()
        .filter(|a| a.cidr.contains(':') && !addrs::is_link_local(&a.cidr))
    {
        rec.record(NetUndo::AddSavedAddress {
            dev: dev.clone(),
            addr: a,
        })?;
    }
    Ok(())
}

pub(crate) async fn apply_state(
    conn: &NsConn,
    dev: &DevRef,
    index: u32,
    up: bool,
) -> Result<(), WireError> {
    let b = LinkUnspec::new_with_index(index);
    let msg = if up { b.up() } else { b.down() }.build();
    conn.rt.link().set(msg).execute().await.map_err(|e| {
        let s = if up { "up" } else { "down" };
        nl_error(
            e,
            format!(
                "ip link set {} {s} in {}",
                dev.name,
                ns_label(dev.netns.as_deref())
            ),
        )
    })
}

/// `ip link set DEV master M` / `ip link set DEV nomaster`
pub async fn set_master(
    nets: &Nets,
    rec: &dyn Recorder,
    dev: &DevRef,
    master: Option<&str>,
) -> Result<DeviceInfo, WireError> {
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let link = get_link(&conn, dev).await?;
    let master_idx = match master {
        Some(m) => Some(
            get_link(
                &conn,
                &DevRef {
                    netns: dev.netns.clone(),
                    name: m.to_string(),
                },
            )
            .await?
            .header
            .index,
        ),
        None => None,
    };
    let old = match controller_of(&link) {
        Some(i) => Some(link_name(&get_link_by_index(&conn, i).await?).to_string()),
        None => None,
    };
    // A new master (an L3 master such as a VRF, or a bond) can take the
    // device's routes: put them back after the master is restored.
    addrs::record_routes(&conn, rec, dev, link.header.index).await?;
    // apply_master may take the port down for a moment (and a bond or
    // team takes it down when it lets go, also at undo): journal its up
    // state first, so a replay ends with the port up.
    if bounces(&conn, link.header.index, master_idx).await? {
        rec.record(NetUndo::RestoreState {
            dev: dev.clone(),
            up: true,
        })?;
    }
    rec.record(NetUndo::RestoreMaster {
        dev: dev.clone(),
        master: old,
    })?;
    apply_master(&conn, dev, link.header.index, master_idx, master).await?;
    device_after(&conn, dev, link.header.index).await
}

/// `ip link set DEV master M|nomaster`. A bond or team refuses a port
/// that is up (6.1 kernels, and the team driver always): such a port is
/// taken down for the change and brought back up after it, also when the
/// change fails, so it ends in the state it had (RECIPES.md §6).
pub(crate) async fn apply_master(
    conn: &NsConn,
    dev: &DevRef,
    index: u32,
    master_idx: Option<u32>,
    master: Option<&str>,
) -> Result<(), WireError> {
    let bounce = bounces(conn, index, master_idx).await?;
    if bounce {
        apply_state(conn, dev, index, false).await?;
    }
    let r = set_controller(conn, dev, index, master_idx, master).await;
    if bounce {
        let back = apply_state(conn, dev, index, true).await;
        r?;
        return back;
    }
    r
}

/// Whether changing the master of up port `index` to `master_idx` passes
/// through a bond or team: joining one (it refuses an up port) or leaving
/// one (it takes the port down as it lets go).
async fn bounces(conn: &NsConn, index: u32, master_idx: Option<u32>) -> Result<bool, WireError> {
    let port = get_link_by_index(conn, index).await?;
    if !port.header.flags.contains(LinkFlags::Up) {
        return Ok(false);
    }
    for m in [master_idx, controller_of(&port)].into_iter().flatten() {
        if takes_ports_down(&link_kind(&get_link_by_index(conn, m).await?)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Masters whose ports must be down when they join: bond and team.
pub(crate) fn takes_ports_down(master_kind: &str) -> bool {
    matches!(master_kind, "bond" | "team")
}

async fn set_controller(
    conn: &NsConn,
    dev: &DevRef,
    index: u32,
    master_idx: Option<u32>,
    master: Option<&str>,
) -> Result<(), WireError> {
    let b = LinkUnspec::new_with_index(index);
    let msg = match master_idx {
        Some(m) => b.controller(m),
        None => b.nocontroller(),
    }
    .build();
    conn.rt.link().set(msg).execute().await.map_err(|e| {
        let what = match master {
            Some(m) => format!("master {m}"),
            None => "nomaster".to_string(),
        };
        nl_error(
            e,
            format!(
                "ip link set {} {what} in {}",
                dev.name,
                ns_label(dev.netns.as_deref())
            ),
        )
    })
}

/// `ip link set DEV netns NS` (`None`: the agent's own namespace). For a
/// device that stays, the undo moves it back and restores its state and
/// addresses (a move drops both).
pub async fn move_to(
    nets: &Nets,
    rec: &dyn Recorder,
    dev: &DevRef,
    netns: Option<&str>,
) -> Result<DeviceInfo, WireError> {
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let link = get_link(&conn, dev).await?;
    // Make sure the target exists (and is reachable) before changing anything.
    let target = nets.conn(netns).await?;
    let target_ref = DevRef {
        netns: netns.map(str::to_string),
        name: dev.name.clone(),
    };
    if get_link(&target, &target_ref).await.is_ok() {
        return Err(WireError::new(
            ErrorKind::AlreadyExists,
            format!(
                "cannot move {} to {}: a device of that name exists there",
                dev.name,
                ns_label(netns)
            ),
        ));
    }
    let saved = addrs::saved(&conn, dev.netns.as_deref(), link.header.index).await?;
    // Replay order: move back, addresses, state, then the routes (which
    // need the device up and its addresses).
    addrs::record_routes(&conn, rec, dev, link.header.index).await?;
    rec.record(NetUndo::RestoreState {
        dev: dev.clone(),
        up: link.header.flags.contains(LinkFlags::Up),
    })?;
    // Newest-first replay: record in reverse so primaries come back before
    // their secondaries.
    for a in saved
        .into_iter()
        .rev()
        .filter(|a| !addrs::is_link_local(&a.cidr))
    {
        rec.record(NetUndo::AddSavedAddress {
            dev: dev.clone(),
            addr: a,
        })?;
    }
    rec.record(NetUndo::MoveBack {
        dev: target_ref.clone(),
        to: dev.netns.clone(),
    })?;
    apply_move(&conn, dev, link.header.index, netns).await?;
    device(nets, &target_ref).await
}

pub(crate) async fn apply_move(
    conn: &NsConn,
    dev: &DevRef,
    index: u32,
    netns: Option<&str>,
) -> Result<(), WireError> {
    let path = match netns {
        Some(n) => super::nsthread::netns_path(n),
        // Tokio workers never setns, so the process's namespace is the
        // agent's own.
        None => "/proc/self/ns/net".to_string(),
    };
    let file = std::fs::File::open(&path)
        .map_err(|e| WireError::not_found(format!("{}: {path}: {e}", ns_label(netns))))?;
    let msg = LinkUnspec::new_with_index(index)
        .setns_by_fd(file.as_raw_fd())
        .build();
    let r = conn.rt.link().set(msg).execute().await;
    drop(file);
    r.map_err(|e| {
        nl_error(
            e,
            format!(
                "ip link set {} netns {} (from {})",
                dev.name,
                netns.unwrap_or("<agent>"),
                ns_label(dev.netns.as_deref())
            ),
        )
    })
}

/// `ip link del DEV`, for a device this agent created (its journal holds
/// the `DeleteLink`, or `DEV` is the other end of such a veth, or it was
/// moved where it is now after being created). Nothing is recorded: a
/// device created in this session has its `DeleteLink` undo already. A
/// device the run did not create (a pool machine's NIC, a lab's NIC) is
/// refused: it could not be brought back, and deleting one end of a veth
/// deletes both.
pub async fn destroy(nets: &Nets, rec: &dyn Recorder, dev: &DevRef) -> Result<(), WireError> {
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let link = get_link(&conn, dev).await?;
    if let Some(entries) = rec.recorded() {
        if !created_by_run(nets, &entries, &link, dev).await {
            return Err(WireError::invalid(format!(
                "refusing to destroy {} in {}: this run did not create it (only devices a recipe \
                 created can be destroyed; a NIC of the machine or lab could not be brought back)",
                dev.name,
                ns_label(dev.netns.as_deref())
            )));
        }
    }
    conn.rt
        .link()
        .del(link.header.index)
        .execute()
        .await
        .map_err(|e| {
            nl_error(
                e,
                format!(
                    "ip link del {} in {}",
                    dev.name,
                    ns_label(dev.netns.as_deref())
                ),
            )
        })
}

/// Whether the journal's `entries` say the run created `dev` (whose
/// message is `link`): a `DeleteLink` for it, followed through the
/// `MoveBack`s of later moves, or a created veth whose peer it is (the two
/// ends name each other in `IFLA_LINK`).
async fn created_by_run(
    nets: &Nets,
    entries: &[NetUndo],
    link: &LinkMessage,
    dev: &DevRef,
) -> bool {
    let mut created: Vec<(Option<String>, String)> = Vec::new();
    for e in entries {
        match e {
            NetUndo::DeleteLink { netns, name } => created.push((netns.clone(), name.clone())),
            NetUndo::MoveBack { dev: moved, to } => {
                if created.contains(&(to.clone(), moved.name.clone())) {
                    created.push((moved.netns.clone(), moved.name.clone()));
                }
            }
            _ => {}
        }
    }
    if created.contains(&(dev.netns.clone(), dev.name.clone())) {
        return true;
    }
    if link_kind(link) != "veth" {
        return false;
    }
    let Some(peer) = link_attr_link(link) else {
        return false;
    };
    for (netns, name) in &created {
        let Ok(c) = nets.conn(netns.as_deref()).await else {
            continue;
        };
        let r = DevRef {
            netns: netns.clone(),
            name: name.clone(),
        };
        if let Ok(m) = get_link(&c, &r).await {
            if m.header.index == peer
                && link_kind(&m) == "veth"
                && link_attr_link(&m) == Some(link.header.index)
            {
                return true;
            }
        }
    }
    false
}

/// `IFLA_LINK`: for a veth, the peer's ifindex (in the peer's namespace).
fn link_attr_link(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(i) => Some(*i),
        _ => None,
    })
}

/// Waits up to `timeout_ms` for carrier on `dev` (`ip link show` reporting
/// `LOWER_UP`); `Ok(false)` on timeout.
pub async fn wait_carrier(nets: &Nets, dev: &DevRef, timeout_ms: u64) -> Result<bool, WireError> {
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let link = get_link(&conn, dev).await?;
        if has_carrier(&link) {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- helpers shared with the other modules ----

/// `ip link show DEV`, or `NotFound` listing the devices of the namespace.
pub(crate) async fn get_link(conn: &NsConn, dev: &DevRef) -> Result<LinkMessage, WireError> {
    let r = conn
        .rt
        .link()
        .get()
        .match_name(dev.name.clone())
        .execute()
        .try_next()
        .await;
    match r {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err(not_found(conn, dev).await),
        Err(e) if matches!(errno_of(&e), Some(nix::errno::Errno::ENODEV)) => {
            Err(not_found(conn, dev).await)
        }
        Err(e) => Err(nl_error(
            e,
            format!(
                "ip link show {} in {}",
                dev.name,
                ns_label(dev.netns.as_deref())
            ),
        )),
    }
}

async fn not_found(conn: &NsConn, dev: &DevRef) -> WireError {
    let names = conn.monitor.names().join(", ");
    WireError::not_found(format!(
        "device {} not found in {}; devices there: {names}",
        dev.name,
        ns_label(dev.netns.as_deref())
    ))
}

pub(crate) async fn get_link_by_index(conn: &NsConn, index: u32) -> Result<LinkMessage, WireError> {
    conn.rt
        .link()
        .get()
        .match_index(index)
        .execute()
        .try_next()
        .await
        .map_err(|e| nl_error(e, format!("ip link show index {index}")))?
        .ok_or_else(|| WireError::not_found(format!("no device with index {index}")))
}

pub(crate) async fn dump_links(
    conn: &NsConn,
    netns: Option<&str>,
) -> Result<Vec<LinkMessage>, WireError> {
    conn.rt
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl_error(e, format!("ip link show in {}", ns_label(netns))))
}

pub(crate) fn link_name(l: &LinkMessage) -> &str {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.as_str()),
            _ => None,
        })
        .unwrap_or("")
}

pub(crate) fn link_mtu(l: &LinkMessage) -> u32 {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(0)
}

pub(crate) fn link_kind(l: &LinkMessage) -> String {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Kind(k) => Some(k.to_string()),
                _ => None,
            }),
            _ => None,
        })
        .unwrap_or_default()
}

pub(crate) fn link_mac(l: &LinkMessage) -> String {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => Some(format_mac(b)),
            _ => None,
        })
        .unwrap_or_default()
}

pub(crate) fn controller_of(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(m) => Some(*m),
        _ => None,
    })
}

pub(crate) fn has_carrier(l: &LinkMessage) -> bool {
    l.header.flags.contains(LinkFlags::LowerUp)
}

/// `aa:bb:cc:dd:ee:ff`
pub fn format_mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (also with `-`).
pub fn parse_mac(s: &str) -> Result<Vec<u8>, WireError> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let bad = || {
        WireError::invalid(format!(
            "invalid MAC address {s:?} (expected aa:bb:cc:dd:ee:ff)"
        ))
    };
    if parts.len() != 6 {
        return Err(bad());
    }
    parts
        .iter()
        .map(|p| {
            if p.len() == 2 {
                u8::from_str_radix(p, 16).map_err(|_| bad())
            } else {
                Err(bad())
            }
        })
        .collect()
}

fn info_of(
    conn: &NsConn,
    l: &LinkMessage,
    ips: Vec<String>,
    master_name: impl Fn(u32) -> Option<String>,
) -> DeviceInfo {
    let name = link_name(l).to_string();
    let mut stats = LinkStats::default();
    for a in &l.attributes {
        if let LinkAttribute::Stats64(s) = a {
            stats = LinkStats {
                rx_bytes: s.rx_bytes,
                tx_bytes: s.tx_bytes,
                rx_packets: s.rx_packets,
                tx_packets: s.tx_packets,
                rx_dropped: s.rx_dropped,
                tx_dropped: s.tx_dropped,
                rx_errors: s.rx_errors,
                tx_errors: s.tx_errors,
            };
        }
    }
    DeviceInfo {
        ifindex: l.header.index,
        driver: driver::driver_name(&conn.inet, &name).unwrap_or_default(),
        kind: link_kind(l),
        mac: link_mac(l),
        mtu: link_mtu(l),
        up: l.header.flags.contains(LinkFlags::Up),
        carrier: has_carrier(l),
        ips,
        master: controller_of(l).and_then(master_name),
        stats,
        name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let b = parse_mac("02:00:0a:ff:00:01").unwrap();
        assert_eq!(b, vec![2, 0, 10, 255, 0, 1]);
        assert_eq!(format_mac(&b), "02:00:0a:ff:00:01");
        assert!(parse_mac("02:00:0a:ff:00").is_err());
        assert!(parse_mac("02:00:0a:ff:00:zz").is_err());
        assert!(parse_mac("002:00:0a:ff:00:01").is_err());
    }
}
