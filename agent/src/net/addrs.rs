//! `ip addr`: listing, adding, deleting and flushing addresses.
//! `ip_add` records `DelAddress`; `ip_del` and `ip_flush` record
//! `AddAddress` for what they remove.

use std::collections::HashMap;
use std::net::IpAddr;

use futures::TryStreamExt;
use lnst_common::device::{DevRef, DeviceInfo};
use lnst_common::WireError;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::AddressFamily;

use super::error::{errno_of, nl_error};
use super::links::{device, get_link};
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

/// `ip addr add CIDR dev DEV`
pub async fn ip_add(
    nets: &Nets,
    rec: &dyn Recorder,
    dev: &DevRef,
    cidr: &str,
) -> Result<DeviceInfo, WireError> {
    let (addr, prefix) = parse_cidr(cidr)?;
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let link = get_link(&conn, dev).await?;
    rec.record(NetUndo::DelAddress {
        dev: dev.clone(),
        cidr: format!("{addr}/{prefix}"),
    })?;
    conn.rt
        .address()
        .add(link.header.index, addr, prefix)
        .execute()
        .await
        .map_err(|e| {
            nl_error(
                e,
                format!(
                    "ip addr add {addr}/{prefix} dev {} in {}",
                    dev.name,
                    ns_label(dev.netns.as_deref())
                ),
            )
        })?;
    device(nets, dev).await
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
    rec.record(NetUndo::AddAddress {
        dev: dev.clone(),
        cidr: want.clone(),
    })?;
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
    let mut order: Vec<&String> = have.iter().filter(|c| !is_link_local(c)).collect();
    order.reverse();
    for cidr in order {
        rec.record(NetUndo::AddAddress {
            dev: dev.clone(),
            cidr: cidr.clone(),
        })?;
        apply_del(nets, dev, cidr, true).await?;
    }
    device(nets, dev).await
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
