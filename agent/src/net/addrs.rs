//! `ip addr`: listing, adding, deleting and flushing addresses.
//! `ip_add` records `DelAddress`; `ip_del` and `ip_flush` record
//! `AddSavedAddress` for what they remove, with every attribute the kernel
//! had ([`SavedAddr`]), and `AddSavedRoute` for the routes through the
//! device (the kernel drops a route whose gateway or source goes with the
//! address).

use std::collections::HashMap;
use std::net::IpAddr;

use futures::TryStreamExt;
use lnst_common::device::{DevRef, DeviceInfo};
use lnst_common::WireError;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::AddressFamily;

use super::error::{errno_of, nl_error};
use super::links::{device, get_link};
use super::nsthread::NsConn;
use super::saved::{routes_via, SavedAddr};
use super::{ns_label, NetUndo, Nets, Recorder};

/// Parses `addr/prefix` (a bare address gets /32 or /128, like `ip addr add`).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), WireError> {
    let bad = |why: &str| {
        WireError::invalid(format!(
            "invalid address {s:?}: {why} (expected e.g. 192.168.1.1/24 or fd00::1/64)"
        ))
    };
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = a.trim().parse().map_err(|_| bad("not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match p {
        Some(p) => p
            .trim()
            .parse::<u8>()
            .map_err(|_| bad("bad prefix length"))?,
        None => max,
    };
    if prefix > max {
        return Err(bad("prefix length too long"));
    }
    Ok((addr, prefix))
}

/// IPv6 link-local (`fe80::/10`): made by the kernel, left alone by flush.
pub fn is_link_local(cidr: &str) -> bool {
    match parse_cidr(cidr) {
        Ok((IpAddr::V6(a), _)) => (a.segments()[0] & 0xffc0) == 0xfe80,
        _ => false,
    }
}

fn cidr_of(m: &AddressMessage) -> Option<String> {
    let mut local = None;
    let mut address = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    // IPv4: IFA_LOCAL is the address (IFA_ADDRESS may be a peer); IPv6 has
    // only IFA_ADDRESS.
    local
        .or(address)
        .map(|ip| format!("{ip}/{}", m.header.prefix_len))
}

/// `ip addr show [dev]`: ifindex → `addr/prefix`, IPv4 first, kernel order.
pub(crate) async fn dump(
    h: &rtnetlink::Handle,
    netns: Option<&str>,
    index: Option<u32>,
) -> Result<HashMap<u32, Vec<String>>, WireError> {
    let mut req = h.address().get();
    if let Some(i) = index {
        req = req.set_link_index_filter(i);
    }
    let msgs: Vec<AddressMessage> = req
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl_error(e, format!("ip addr show in {}", ns_label(netns))))?;
    let mut v4: HashMap<u32, Vec<String>> = HashMap::new();
    let mut v6: HashMap<u32, Vec<String>> = HashMap::new();
    for m in &msgs {
        let Some(c) = cidr_of(m) else { continue };
        let map = if m.header.family == AddressFamily::Inet {
            &mut v4
        } else {
            &mut v6
        };
        map.entry(m.header.index).or_default().push(c);
    }
    for (i, l) in v6 {
        v4.entry(i).or_default().extend(l);
    }
    Ok(v4)
}

/// `ip addr add CIDR dev DEV`, waiting for IPv6 DAD (see [`ip_add_with`]).
pub async fn ip_add(
    nets: &Nets,
    rec: &dyn Recorder,
    dev: &DevRef,
    cidr: &str,
) -> Result<DeviceInfo, WireError> {
    ip_add_with(nets, rec, dev, cidr, false).await
}

/// Longest wait for IPv6 DAD (the kernel's default is one probe a second;
/// `dad_transmits` above 1 or a slow link take longer).
const DAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// `ip addr add CIDR dev DEV [nodad]`. An IPv6 address is usable when this
/// returns: unless `nodad`, it waits until the kernel's duplicate address
/// detection is over (the address no longer `tentative`) and fails when
/// DAD found the address in use (`dadfailed`: the address is removed
/// again). On a device that is down or without carrier DAD runs when the
/// link comes up, so there is nothing to wait for here.
pub async fn ip_add_with(
    nets: &Nets,
    rec: &dyn Recorder,
    dev: &DevRef,
    cidr: &str,
    nodad: bool,
) -> Result<DeviceInfo, WireError> {
    let (addr, prefix) = parse_cidr(cidr)?;
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let link = get_link(&conn, dev).await?;
    let index = link.header.index;
    rec.record(NetUndo::DelAddress {
        dev: dev.clone(),
        cidr: format!("{addr}/{prefix}"),
    })?;
    let words = format!(
        "ip addr add {addr}/{prefix} dev {}{} in {}",
        dev.name,
        if nodad { " nodad" } else { "" },
        ns_label(dev.netns.as_deref())
    );
    let mut req = conn.rt.address().add(index, addr, prefix);
    if nodad && addr.is_ipv6() {
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute().await.map_err(|e| nl_error(e, &words))?;
    if addr.is_ipv6() && !nodad {
        wait_dad(&conn, dev, index, addr, prefix, &words).await?;
    }
    device(nets, dev).await
}

/// Waits until `addr` on `index` is no longer tentative; an error if DAD
/// failed (then the address is removed) or did not end in time.
async fn wait_dad(
    conn: &NsConn,
    dev: &DevRef,
    index: u32,
    addr: IpAddr,
    prefix: u8,
    words: &str,
) -> Result<(), WireError> {
    let deadline = tokio::time::Instant::now() + DAD_TIMEOUT;
    loop {
        let link = super::links::get_link_by_index(conn, index).await?;
        let running = link
            .header
            .flags
            .contains(netlink_packet_route::link::LinkFlags::Up)
            && link
                .header
                .flags
                .contains(netlink_packet_route::link::LinkFlags::LowerUp);
        let msgs: Vec<AddressMessage> = conn
            .rt
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_error(e, format!("ip addr show dev {}", dev.name)))?;
        let flags = msgs
            .iter()
            .find(|m| {
                m.header.prefix_len == prefix
                    && m.attributes
                        .iter()
                        .any(|a| matches!(a, AddressAttribute::Address(a) if *a == addr))
            })
            .map(|m| {
                m.attributes
                    .iter()
                    .find_map(|a| match a {
                        AddressAttribute::Flags(f) => Some(f.bits()),
                        _ => None,
                    })
                    .unwrap_or(u32::from(m.header.flags.bits()))
            });
        let Some(flags) = flags else {
            // gone already (removed by someone, or the device went away)
            return Ok(());
        };
        if flags & AddressFlags::Dadfailed.bits() != 0 {
            let _ = conn
                .rt
                .address()
                .del(
                    msgs.into_iter()
                        .find(|m| {
                            m.attributes
                                .iter()
                                .any(|a| matches!(a, AddressAttribute::Address(a) if *a == addr))
                        })
                        .unwrap_or_default(),
                )
                .execute()
                .await;
            return Err(WireError::new(
                lnst_common::ErrorKind::Os,
                format!(
                    "{words}: duplicate address detection failed: another host on the link \
                     has {addr} (the address was removed; `nodad: true` skips DAD)"
                ),
            ));
        }
        if flags & AddressFlags::Tentative.bits() == 0 || !running {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(WireError::new(
                lnst_common::ErrorKind::Os,
                format!(
                    "{words}: still tentative (DAD not done) after {} s",
                    DAD_TIMEOUT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `ip addr del CIDR dev DEV`
pub async fn ip_del(
    nets: &Nets,
    rec: &dyn Recorder,
    dev: &DevRef,
    cidr: &str,
) -> Result<DeviceInfo, WireError> {
    let (addr, prefix) = parse_cidr(cidr)?;
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let link = get_link(&conn, dev).await?;
    let want = format!("{addr}/{prefix}");
    let have = dump(&conn.rt, dev.netns.as_deref(), Some(link.header.index))
        .await?
        .remove(&link.header.index)
        .unwrap_or_default();
    if !have.contains(&want) {
        return Err(WireError::not_found(format!(
            "address {want} is not on {} in {} (it has: {})",
            dev.name,
            ns_label(dev.netns.as_deref()),
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        )));
    }
    let all = saved(&conn, dev.netns.as_deref(), link.header.index).await?;
    record_routes(&conn, rec, dev, link.header.index).await?;
    // Deleting an IPv4 primary takes the secondaries of its subnet along,
    // or (promote_secondaries) makes one of them primary. Either way the
    // undo removes what is left of them, adds the primary, then them, so
    // the primary/secondary order comes back as it was.
    if let Some(target) = all.iter().find(|a| a.cidr == want) {
        let secs: Vec<&SavedAddr> = if addr.is_ipv4() && !target.is_secondary() {
            all.iter()
                .filter(|a| a.is_secondary() && same_subnet(&a.cidr, &want))
                .collect()
        } else {
            Vec::new()
        };
        for sec in &secs {
            rec.record(NetUndo::AddSavedAddress {
                dev: dev.clone(),
                addr: (*sec).clone(),
            })?;
        }
        rec.record(NetUndo::AddSavedAddress {
            dev: dev.clone(),
            addr: target.clone(),
        })?;
        for sec in secs.iter().rev() {
            rec.record(NetUndo::DelAddress {
                dev: dev.clone(),
                cidr: sec.cidr.clone(),
            })?;
        }
    }
    apply_del(nets, dev, &want, false).await?;
    device(nets, dev).await
}

/// `ip addr flush dev DEV`, except IPv6 link-local addresses (which the
/// kernel owns and IPv6 needs).
pub async fn ip_flush(
    nets: &Nets,
    rec: &dyn Recorder,
    dev: &DevRef,
) -> Result<DeviceInfo, WireError> {
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let link = get_link(&conn, dev).await?;
    let have = dump(&conn.rt, dev.netns.as_deref(), Some(link.header.index))
        .await?
        .remove(&link.header.index)
        .unwrap_or_default();
    // Delete IPv6 first, then IPv4 in reverse so that secondaries go before
    // their primary (deleting a primary drops its secondaries).
    let all = saved(&conn, dev.netns.as_deref(), link.header.index).await?;
    record_routes(&conn, rec, dev, link.header.index).await?;
    let mut order: Vec<&String> = have.iter().filter(|c| !is_link_local(c)).collect();
    order.reverse();
    for cidr in order {
        if let Some(a) = all.iter().find(|a| &a.cidr == cidr) {
            rec.record(NetUndo::AddSavedAddress {
                dev: dev.clone(),
                addr: a.clone(),
            })?;
        }
        apply_del(nets, dev, cidr, true).await?;
    }
    device(nets, dev).await
}

/// Whether two IPv4 `addr/prefix` share prefix length and network.
fn same_subnet(a: &str, b: &str) -> bool {
    match (parse_cidr(a), parse_cidr(b)) {
        (Ok((IpAddr::V4(x), p)), Ok((IpAddr::V4(y), q))) if p == q => {
            let mask = if p == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(p))
            };
            u32::from(x) & mask == u32::from(y) & mask
        }
        _ => false,
    }
}

/// `ip -d addr show dev DEV` with every attribute, kernel order.
pub(crate) async fn saved(
    conn: &NsConn,
    netns: Option<&str>,
    index: u32,
) -> Result<Vec<SavedAddr>, WireError> {
    let msgs: Vec<AddressMessage> = conn
        .rt
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl_error(e, format!("ip addr show in {}", ns_label(netns))))?;
    Ok(msgs
        .iter()
        .filter(|m| m.header.index == index)
        .filter_map(SavedAddr::from_message)
        .collect())
}

/// Records `AddSavedRoute` for every route through device `index` that
/// the kernel would drop with a change to it (see [`routes_via`]). Call it
/// before recording the entries that bring the device's addresses and
/// state back: replay is in reverse, and a route needs both.
pub(crate) async fn record_routes(
    conn: &NsConn,
    rec: &dyn Recorder,
    dev: &DevRef,
    index: u32,
) -> Result<(), WireError> {
    for route in routes_via(conn, dev.netns.as_deref(), index, &dev.name).await? {
        rec.record(NetUndo::AddSavedRoute {
            netns: dev.netns.clone(),
            route,
        })?;
    }
    Ok(())
}

/// `ip addr add` of a [`SavedAddr`] on `dev` (as named now); one already
/// there is fine.
pub(crate) async fn apply_add_saved(
    nets: &Nets,
    dev: &DevRef,
    a: &SavedAddr,
) -> Result<(), WireError> {
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let link = get_link(&conn, dev).await?;
    let (addr, prefix) = a.ip()?;
    let mut req = conn.rt.address().add(link.header.index, addr, prefix);
    *req.message_mut() = a.message(link.header.index)?;
    match req.execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno_of(&e) == Some(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(nl_error(
            e,
            format!(
                "ip addr add {} dev {} in {}",
                a.cidr,
                dev.name,
                ns_label(dev.netns.as_deref())
            ),
        )),
    }
}

/// Adds `cidr`; with `tolerant`, an address already present is fine.
pub(crate) async fn apply_add(
    nets: &Nets,
    dev: &DevRef,
    cidr: &str,
    tolerant: bool,
) -> Result<(), WireError> {
    let (addr, prefix) = parse_cidr(cidr)?;
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let link = get_link(&conn, dev).await?;
    match conn
        .rt
        .address()
        .add(link.header.index, addr, prefix)
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if tolerant && errno_of(&e) == Some(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(nl_error(
            e,
            format!(
                "ip addr add {cidr} dev {} in {}",
                dev.name,
                ns_label(dev.netns.as_deref())
            ),
        )),
    }
}

/// Deletes `cidr`; with `tolerant`, an address already gone is fine.
pub(crate) async fn apply_del(
    nets: &Nets,
    dev: &DevRef,
    cidr: &str,
    tolerant: bool,
) -> Result<(), WireError> {
    let (addr, prefix) = parse_cidr(cidr)?;
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let link = get_link(&conn, dev).await?;
    let mut msg = AddressMessage::default();
    msg.header.index = link.header.index;
    msg.header.prefix_len = prefix;
    msg.header.family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    msg.attributes.push(AddressAttribute::Local(addr));
    if addr.is_ipv6() {
        msg.attributes.clear();
        msg.attributes.push(AddressAttribute::Address(addr));
    }
    match conn.rt.address().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if tolerant && errno_of(&e) == Some(nix::errno::Errno::EADDRNOTAVAIL) => Ok(()),
        Err(e) => Err(nl_error(
            e,
            format!(
                "ip addr del {cidr} dev {} in {}",
                dev.name,
                ns_label(dev.netns.as_deref())
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert_eq!(
            parse_cidr("10.0.0.1/24").unwrap(),
            ("10.0.0.1".parse().unwrap(), 24)
        );
        assert_eq!(parse_cidr("10.0.0.1").unwrap().1, 32);
        assert_eq!(parse_cidr("fd00::1").unwrap().1, 128);
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(parse_cidr("10.0.0/24").is_err());
        assert!(is_link_local("fe80::1/64"));
        assert!(!is_link_local("fd00::1/64"));
        assert!(!is_link_local("10.0.0.1/8"));
    }
}
