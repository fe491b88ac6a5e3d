//! `ip link add NAME type KIND ...`: one message builder per kind of
//! RECIPES.md §7, then `create`, which checks, records `DeleteLink` and
//! sends it. Builders are pure (devices they refer to are resolved to
//! ifindexes first), so every kind is unit-tested at the message level even
//! where this kernel lacks it. tun and tap are the exception: `ip tuntap
//! add`, the `TUNSETIFF` ioctl on `/dev/net/tun` in the namespace's thread.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};

use lnst_common::device::{DevRef, DeviceInfo, DeviceSpec, TunnelKind};
use lnst_common::{ErrorKind, WireError};
use netlink_packet_route::link::{
    BondLacpRate, BondMode, BondXmitHashPolicy, BridgeStpState, GreIOFlags, InfoData, InfoKind,
    InfoVeth, IpVlanMode, LinkMessage, MacVlanMode, VlanProtocol,
};
use rtnetlink::{
    LinkBond, LinkBridge, LinkDummy, LinkGeneve, LinkGre, LinkGre6, LinkIp6Tnl, LinkIpIp,
    LinkIpVlan, LinkMacVlan, LinkMessageBuilder, LinkSit, LinkTeam, LinkUnspec, LinkVeth, LinkVlan,
    LinkVrf, LinkVti, LinkVxlan,
};

use super::error::{errno_of, nl_error};
use super::links::{device, get_link};
use super::{ns_label, NetUndo, Nets, Recorder};

/// The `ip link ... type KIND` word of a spec.
pub fn kind_name(spec: &DeviceSpec) -> &'static str {
    match spec {
        DeviceSpec::Veth { .. } => "veth",
        DeviceSpec::Bridge { .. } => "bridge",
        DeviceSpec::Bond { .. } => "bond",
        DeviceSpec::Team { .. } => "team",
        DeviceSpec::Vlan { .. } => "vlan",
        DeviceSpec::Macvlan { .. } => "macvlan",
        DeviceSpec::Ipvlan { .. } => "ipvlan",
        DeviceSpec::Vxlan { .. } => "vxlan",
        DeviceSpec::Geneve { .. } => "geneve",
        DeviceSpec::Tunnel { kind, .. } => match kind {
            TunnelKind::Gre => "gre",
            TunnelKind::Gretap => "gretap",
            TunnelKind::Ipip => "ipip",
            TunnelKind::Sit => "sit",
            TunnelKind::Ip6gre => "ip6gre",
            TunnelKind::Ip6tnl => "ip6tnl",
            TunnelKind::Vti => "vti",
        },
        DeviceSpec::Dummy => "dummy",
        DeviceSpec::Vrf { .. } => "vrf",
        DeviceSpec::Tun { .. } => "tun",
        DeviceSpec::Tap { .. } => "tap",
    }
}

/// Names of existing devices (in the same namespace) a spec refers to.
pub fn referenced_links(spec: &DeviceSpec) -> Vec<&str> {
    match spec {
        DeviceSpec::Vlan { link, .. }
        | DeviceSpec::Macvlan { link, .. }
        | DeviceSpec::Ipvlan { link, .. } => {
            vec![link.as_str()]
        }
        DeviceSpec::Vxlan { link: Some(l), .. } | DeviceSpec::Tunnel { link: Some(l), .. } => {
            vec![l.as_str()]
        }
        _ => vec![],
    }
}

fn bad(kind: &str, key: &str, value: &str, accepted: &str) -> WireError {
    WireError::invalid(format!(
        "{kind}: bad value {value:?} for {key} (accepted: {accepted})"
    ))
}

fn ip(kind: &str, key: &str, v: &str) -> Result<IpAddr, WireError> {
    v.parse()
        .map_err(|_| bad(kind, key, v, "an IPv4 or IPv6 address"))
}

fn ip4(kind: &str, key: &str, v: &str) -> Result<std::net::Ipv4Addr, WireError> {
    v.parse().map_err(|_| bad(kind, key, v, "an IPv4 address"))
}

fn ip6(kind: &str, key: &str, v: &str) -> Result<std::net::Ipv6Addr, WireError> {
    v.parse().map_err(|_| bad(kind, key, v, "an IPv6 address"))
}

/// Builds the `RTM_NEWLINK` message for `name` of `spec`. `links` maps the
/// names of [`referenced_links`] to their ifindexes; `peer_ns_fd` is an open
/// fd of the veth peer's namespace, if it goes elsewhere.
pub fn build_message(
    name: &str,
    spec: &DeviceSpec,
    links: &HashMap<String, u32>,
    peer_ns_fd: Option<RawFd>,
) -> Result<LinkMessage, WireError> {
    let kind = kind_name(spec);
    let link_idx = |l: &str| {
        links.get(l).copied().ok_or_else(|| {
            WireError::not_found(format!("{kind} {name}: link device {l} not found"))
        })
    };
    let msg = match spec {
        DeviceSpec::Veth { peer, .. } => {
            let mut p = LinkUnspec::new_with_name(peer);
            if let Some(fd) = peer_ns_fd {
                p = p.setns_by_fd(fd);
            }
            LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
                .name(name.to_string())
                .set_info_data(InfoData::Veth(InfoVeth::Peer(p.build())))
                .build()
        }
        DeviceSpec::Bridge {
            stp,
            vlan_filtering,
        } => {
            let mut b = LinkBridge::new(name);
            if let Some(s) = stp {
                b = b.stp_state(if *s {
                    BridgeStpState::KernelStp
                } else {
                    BridgeStpState::Disabled
                });
            }
            if let Some(v) = vlan_filtering {
                b = b.vlan_filtering(*v);
            }
            b.build()
        }
        DeviceSpec::Bond {
            mode,
            miimon,
            xmit_hash_policy,
            lacp_rate,
        } => {
            let mut b = LinkBond::new(name);
            if let Some(m) = mode {
                let accepted = "balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb or 0-6";
                b = b.mode(match m.as_str() {
                    "balance-rr" | "0" => BondMode::BalanceRr,
                    "active-backup" | "1" => BondMode::ActiveBackup,
                    "balance-xor" | "2" => BondMode::BalanceXor,
                    "broadcast" | "3" => BondMode::Broadcast,
                    "802.3ad" | "4" => BondMode::Ieee8023Ad,
                    "balance-tlb" | "5" => BondMode::BalanceTlb,
                    "balance-alb" | "6" => BondMode::BalanceAlb,
                    _ => return Err(bad(kind, "mode", m, accepted)),
                });
            }
            if let Some(n) = miimon {
                b = b.miimon(*n);
            }
            if let Some(p) = xmit_hash_policy {
                let accepted = "layer2, layer3+4, layer2+3, encap2+3, encap3+4, vlan+srcmac";
                b = b.xmit_hash_policy(match p.as_str() {
                    "layer2" => BondXmitHashPolicy::Layer2,
                    "layer3+4" => BondXmitHashPolicy::Layer34,
                    "layer2+3" => BondXmitHashPolicy::Layer23,
                    "encap2+3" => BondXmitHashPolicy::Encap23,
                    "encap3+4" => BondXmitHashPolicy::Encap34,
                    "vlan+srcmac" => BondXmitHashPolicy::VlanSrcMac,
                    _ => return Err(bad(kind, "xmit_hash_policy", p, accepted)),
                });
            }
            if let Some(r) = lacp_rate {
                b = b.ad_lacp_rate(match r.as_str() {
                    "slow" | "0" => BondLacpRate::Slow,
                    "fast" | "1" => BondLacpRate::Fast,
                    _ => return Err(bad(kind, "lacp_rate", r, "slow, fast")),
                });
            }
            b.build()
        }
        DeviceSpec::Team { runner } => {
            if let Some(r) = runner {
                // The runner is teamd's configuration, not the kernel's:
                // refusing beats silently creating a team without it.
                return Err(WireError::unsupported(format!(
                    "team {name}: runner {r:?} needs teamd, which lnst does not drive; create the team without a runner"
                )));
            }
            LinkTeam::new(name).build()
        }
        DeviceSpec::Vlan { link, id, protocol } => {
            if *id == 0 || *id >= 4095 {
                return Err(bad(kind, "id", &id.to_string(), "1-4094"));
            }
            let mut b = LinkVlan::new(name, link_idx(link)?, *id);
            if let Some(p) = protocol {
                b = b.protocol(match p.to_ascii_lowercase().as_str() {
                    "802.1q" => VlanProtocol::Ieee8021Q,
                    "802.1ad" => VlanProtocol::Ieee8021Ad,
                    _ => return Err(bad(kind, "protocol", p, "802.1Q, 802.1ad")),
                });
            }
            b.build()
        }
        DeviceSpec::Macvlan { link, mode } => {
            let m = match mode.as_deref() {
                None | Some("bridge") => MacVlanMode::Bridge,
                Some("private") => MacVlanMode::Private,
                Some("vepa") => MacVlanMode::Vepa,
                Some("passthru") => MacVlanMode::Passthrough,
                Some("source") => MacVlanMode::Source,
                Some(o) => {
                    return Err(bad(
                        kind,
                        "mode",
                        o,
                        "bridge, private, vepa, passthru, source",
                    ))
                }
            };
            LinkMacVlan::new(name, link_idx(link)?, m).build()
        }
        DeviceSpec::Ipvlan { link, mode } => {
            let m = match mode.as_deref() {
                None | Some("l3") => IpVlanMode::L3,
                Some("l2") => IpVlanMode::L2,
                Some("l3s") => IpVlanMode::L3S,
                Some(o) => return Err(bad(kind, "mode", o, "l2, l3, l3s")),
            };
            LinkIpVlan::new(name, link_idx(link)?, m).build()
        }
        DeviceSpec::Vxlan {
            id,
            link,
            local,
            remote,
            group,
            dstport,
            ttl,
        } => {
            if *id >= 1 << 24 {
                return Err(bad(kind, "id", &id.to_string(), "0-16777215"));
            }
            if remote.is_some() && group.is_some() {
                return Err(WireError::invalid(format!(
                    "{kind} {name}: remote and group exclude each other"
                )));
            }
            let mut b = LinkVxlan::new(name, *id);
            if let Some(l) = link {
                b = b.dev(link_idx(l)?);
            }
            if let Some(a) = local {
                b = match ip(kind, "local", a)? {
                    IpAddr::V4(v) => b.local(v),
                    IpAddr::V6(v) => b.local6(v),
                };
            }
            if let Some(a) = remote {
                b = match ip(kind, "remote", a)? {
                    IpAddr::V4(v) => b.remote(v),
                    IpAddr::V6(v) => b.remote6(v),
                };
            }
            if let Some(a) = group {
                let g = ip(kind, "group", a)?;
                if !g.is_multicast() {
                    return Err(bad(kind, "group", a, "a multicast address"));
                }
                b = match g {
                    IpAddr::V4(v) => b.group(v),
                    IpAddr::V6(v) => b.group6(v),
                };
            }
            // `ip link add ... type vxlan` without dstport uses the IANA
            // port 4789; the kernel's default is 8472, so say it.
            b = b.port(dstport.unwrap_or(4789));
            if let Some(t) = ttl {
                b = b.ttl(*t);
            }
            b.build()
        }
        DeviceSpec::Geneve {
            id,
            remote,
            dstport,
        } => {
            if *id >= 1 << 24 {
                return Err(bad(kind, "id", &id.to_string(), "0-16777215"));
            }
            let mut b = LinkGeneve::new(name, *id);
            b = match ip(kind, "remote", remote)? {
                IpAddr::V4(v) => b.remote(v),
                IpAddr::V6(v) => b.remote6(v),
            };
            if let Some(p) = dstport {
                b = b.port(*p);
            }
            b.build()
        }
        DeviceSpec::Tunnel {
            kind: tk,
            local,
            remote,
            key,
            ttl,
            link,
        } => {
            let dev = match link {
                Some(l) => Some(link_idx(l)?),
                None => None,
            };
            let no_key = |k: &Option<u32>| match k {
                Some(_) => Err(WireError::invalid(format!(
                    "{kind}: key is not an option of {kind} tunnels (only gre, gretap, ip6gre, vti)"
                ))),
                None => Ok(()),
            };
            match tk {
                TunnelKind::Gre | TunnelKind::Gretap => {
                    let mut b = if *tk == TunnelKind::Gre {
                        LinkGre::new(name)
                    } else {
                        LinkGre::new_gretap(name)
                    };
                    if let Some(a) = local {
                        b = b.local(ip4(kind, "local", a)?);
                    }
                    if let Some(a) = remote {
                        b = b.remote(ip4(kind, "remote", a)?);
                    }
                    if let Some(k) = key {
                        b = b
                            .iflags(GreIOFlags::Key)
                            .oflags(GreIOFlags::Key)
                            .ikey(*k)
                            .okey(*k);
                    }
                    if let Some(t) = ttl {
                        b = b.ttl(*t);
                    }
                    if let Some(d) = dev {
                        b = b.dev(d);
                    }
                    b.build()
                }
                TunnelKind::Ip6gre => {
                    let mut b = LinkGre6::new(name);
                    if let Some(a) = local {
                        b = b.local(ip6(kind, "local", a)?);
                    }
                    if let Some(a) = remote {
                        b = b.remote(ip6(kind, "remote", a)?);
                    }
                    if let Some(k) = key {
                        b = b
                            .iflags(GreIOFlags::Key)
                            .oflags(GreIOFlags::Key)
                            .ikey(*k)
                            .okey(*k);
                    }
                    if let Some(t) = ttl {
                        b = b.ttl(*t);
                    }
                    if let Some(d) = dev {
                        b = b.dev(d);
                    }
                    b.build()
                }
                TunnelKind::Ipip => {
                    no_key(key)?;
                    let mut b = LinkIpIp::new(name);
                    if let Some(a) = local {
                        b = b.local(ip4(kind, "local", a)?);
                    }
                    if let Some(a) = remote {
                        b = b.remote(ip4(kind, "remote", a)?);
                    }
                    if let Some(t) = ttl {
                        b = b.ttl(*t);
                    }
                    if let Some(d) = dev {
                        b = b.dev(d);
                    }
                    b.build()
                }
                TunnelKind::Sit => {
                    no_key(key)?;
                    let mut b = LinkSit::new(name);
                    if let Some(a) = local {
                        b = b.local(ip4(kind, "local", a)?);
                    }
                    if let Some(a) = remote {
                        b = b.remote(ip4(kind, "remote", a)?);
                    }
                    if let Some(t) = ttl {
                        b = b.ttl(*t);
                    }
                    if let Some(d) = dev {
                        b = b.dev(d);
                    }
                    b.build()
                }
                TunnelKind::Ip6tnl => {
                    no_key(key)?;
                    let mut b = LinkIp6Tnl::new(name);
                    if let Some(a) = local {
                        b = b.local(ip6(kind, "local", a)?);
                    }
                    if let Some(a) = remote {
                        b = b.remote(ip6(kind, "remote", a)?);
                    }
                    if let Some(t) = ttl {
                        b = b.ttl(*t);
                    }
                    if let Some(d) = dev {
                        b = b.dev(d);
                    }
                    b.build()
                }
                TunnelKind::Vti => {
                    if ttl.is_some() {
                        return Err(WireError::invalid(
                            "vti: ttl is not an option of vti tunnels",
                        ));
                    }
                    let mut b = LinkVti::new(name);
                    if let Some(a) = local {
                        b = b.local(ip4(kind, "local", a)?);
                    }
                    if let Some(a) = remote {
                        b = b.remote(ip4(kind, "remote", a)?);
                    }
                    if let Some(k) = key {
                        b = b.ikey(*k).okey(*k);
                    }
                    if let Some(d) = dev {
                        b = b.dev(d);
                    }
                    b.build()
                }
            }
        }
        DeviceSpec::Dummy => LinkDummy::new(name).build(),
        DeviceSpec::Vrf { table } => {
            if *table == 0 {
                return Err(bad(kind, "table", "0", "a routing table id > 0"));
            }
            LinkVrf::new(name, *table).build()
        }
        DeviceSpec::Tun { .. } | DeviceSpec::Tap { .. } => {
            return Err(WireError::invalid(format!(
                "{kind} {name}: tun/tap devices are made with the TUNSETIFF ioctl, not a netlink message"
            )))
        }
    };
    Ok(msg)
}

/// `ip link add NAME type KIND ...` in `netns`. For a veth, returns the
/// first end; its peer is created in `peer_netns` when given. Records
/// `DeleteLink` (which also removes a veth peer) before creating.
pub async fn create(
    nets: &Nets,
    rec: &dyn Recorder,
    netns: Option<&str>,
    name: &str,
    spec: &DeviceSpec,
) -> Result<DeviceInfo, WireError> {
    let kind = kind_name(spec);
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', ':']) {
        return Err(WireError::invalid(format!(
            "invalid device name {name:?} (1-15 characters, no '/', ':' or spaces)"
        )));
    }
    let conn = nets.conn(netns).await?;
    let me = DevRef {
        netns: netns.map(str::to_string),
        name: name.to_string(),
    };
    if get_link(&conn, &me).await.is_ok() {
        return Err(WireError::new(
            ErrorKind::AlreadyExists,
            format!(
                "cannot create {kind} {name}: a device of that name exists in {}",
                ns_label(netns)
            ),
        ));
    }
    if let DeviceSpec::Tun { owner, multi_queue } | DeviceSpec::Tap { owner, multi_queue } = spec {
        let tap = matches!(spec, DeviceSpec::Tap { .. });
        rec.record(NetUndo::DeleteLink {
            netns: me.netns.clone(),
            name: name.to_string(),
        })?;
        let (n, o, mq) = (name.to_string(), *owner, *multi_queue);
        super::nsthread::run_in(netns, move || tuntap_add(&n, tap, o, mq)).await?;
        return device(nets, &me).await;
    }
    let mut links = HashMap::new();
    for l in referenced_links(spec) {
        let r = DevRef {
            netns: me.netns.clone(),
            name: l.to_string(),
        };
        links.insert(l.to_string(), get_link(&conn, &r).await?.header.index);
    }
    let mut peer_file = None;
    if let DeviceSpec::Veth { peer, peer_netns } = spec {
        let pconn = nets.conn(peer_netns.as_deref()).await?;
        let pref = DevRef {
            netns: peer_netns.clone(),
            name: peer.clone(),
        };
        if get_link(&pconn, &pref).await.is_ok() || (peer_netns.as_deref() == netns && peer == name)
        {
            return Err(WireError::new(
                ErrorKind::AlreadyExists,
                format!(
                    "cannot create veth {name}: its peer name {peer} is taken in {}",
                    ns_label(peer_netns.as_deref())
                ),
            ));
        }
        if peer_netns.as_deref() != netns {
            let path = match peer_netns {
                Some(n) => super::nsthread::netns_path(n),
                None => "/proc/self/ns/net".to_string(),
            };
            peer_file = Some(std::fs::File::open(&path).map_err(|e| {
                WireError::not_found(format!(
                    "veth {name}: peer {}: {path}: {e}",
                    ns_label(peer_netns.as_deref())
                ))
            })?);
        }
    }
    let msg = build_message(
        name,
        spec,
        &links,
        peer_file.as_ref().map(|f| f.as_raw_fd()),
    )?;
    rec.record(NetUndo::DeleteLink {
        netns: me.netns.clone(),
        name: name.to_string(),
    })?;
    let r = conn.rt.link().add(msg).execute().await;
    drop(peer_file);
    r.map_err(|e| {
        if errno_of(&e) == Some(nix::errno::Errno::EOPNOTSUPP) {
            let why = nl_error(e, "").message;
            let why = why.trim_start_matches(": ");
            WireError::unsupported(format!(
                "this kernel does not support {kind} devices ({why})"
            ))
        } else {
            nl_error(
                e,
                format!("ip link add {name} type {kind} in {}", ns_label(netns)),
            )
        }
    })?;
    device(nets, &me).await
}

/// `_IOW('T', 202, int)` etc. of `<linux/if_tun.h>`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;

/// `struct ifreq` with `ifr_flags`.
#[repr(C)]
struct TunReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `ip tuntap add NAME mode tun|tap [user UID] [multi_queue]`: `TUNSETIFF`
/// on `/dev/net/tun`, then `TUNSETOWNER` and `TUNSETPERSIST` so the device
/// outlives the file descriptor. The device is made in the namespace of
/// the calling thread (the one that opens `/dev/net/tun`).
fn tuntap_add(
    name: &str,
    tap: bool,
    owner: Option<u32>,
    multi_queue: bool,
) -> Result<(), WireError> {
    let mode = if tap { "tap" } else { "tun" };
    let what = |step: &str| format!("ip tuntap add {name} mode {mode}: {step}");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                WireError::unsupported(format!(
                    "this kernel does not support {mode} devices (/dev/net/tun: {e})"
                ))
            } else {
                super::error::io_error(e, what("open /dev/net/tun"))
            }
        })?;
    let mut req = TunReq {
        name: [0; libc::IFNAMSIZ],
        flags: if tap { IFF_TAP } else { IFF_TUN } | IFF_NO_PI,
        _pad: [0; 22],
    };
    if multi_queue {
        req.flags |= IFF_MULTI_QUEUE;
    }
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let fd = file.as_raw_fd();
    let check = |r: libc::c_int, step: &str| {
        if r < 0 {
            Err(super::error::io_error(
                std::io::Error::last_os_error(),
                what(step),
            ))
        } else {
            Ok(())
        }
    };
    // SAFETY: `req` is a valid ifreq for TUNSETIFF, alive for the call.
    check(
        unsafe { libc::ioctl(fd, TUNSETIFF, &mut req as *mut TunReq) },
        "TUNSETIFF",
    )?;
    if let Some(uid) = owner {
        // SAFETY: TUNSETOWNER takes the uid as the argument value.
        check(
            unsafe { libc::ioctl(fd, TUNSETOWNER, uid as libc::c_ulong) },
            "TUNSETOWNER",
        )?;
    }
    // SAFETY: TUNSETPERSIST takes 0/1 as the argument value.
    check(
        unsafe { libc::ioctl(fd, TUNSETPERSIST, 1 as libc::c_ulong) },
        "TUNSETPERSIST",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::{
        InfoBond, InfoBridge, InfoGre, InfoGre6, InfoIpTunnel, InfoIpVlan, InfoMacVlan, InfoVlan,
        InfoVrf, InfoVti, InfoVxlan, LinkAttribute, LinkInfo,
    };

    fn links() -> HashMap<String, u32> {
        HashMap::from([("eth0".to_string(), 7)])
    }

    fn infos(m: &LinkMessage) -> (Option<InfoKind>, Option<InfoData>) {
        let mut k = None;
        let mut d = None;
        for a in &m.attributes {
            if let LinkAttribute::LinkInfo(is) = a {
                for i in is {
                    match i {
                        LinkInfo::Kind(x) => k = Some(x.clone()),
                        LinkInfo::Data(x) => d = Some(x.clone()),
                        _ => {}
                    }
                }
            }
        }
        (k, d)
    }

    fn has(m: &LinkMessage, a: &LinkAttribute) -> bool {
        m.attributes.contains(a)
    }

    fn build(spec: DeviceSpec) -> LinkMessage {
        build_message("x0", &spec, &links(), None).unwrap()
    }

    #[test]
    fn veth_peer_and_netns_fd() {
        let m = build_message(
            "a",
            &DeviceSpec::Veth {
                peer: "b".into(),
                peer_netns: Some("n".into()),
            },
            &links(),
            Some(42),
        )
        .unwrap();
        let (k, d) = infos(&m);
        assert_eq!(k, Some(InfoKind::Veth));
        let Some(InfoData::Veth(InfoVeth::Peer(p))) = d else {
            panic!("no peer")
        };
        assert!(p.attributes.contains(&LinkAttribute::IfName("b".into())));
        assert!(p.attributes.contains(&LinkAttribute::NetNsFd(42)));
        assert!(has(&m, &LinkAttribute::IfName("a".into())));
    }

    #[test]
    fn bridge_options() {
        let m = build(DeviceSpec::Bridge {
            stp: Some(true),
            vlan_filtering: Some(false),
        });
        let (k, d) = infos(&m);
        assert_eq!(k, Some(InfoKind::Bridge));
        let Some(InfoData::Bridge(v)) = d else {
            panic!()
        };
        assert!(v.contains(&InfoBridge::StpState(BridgeStpState::KernelStp)));
        assert!(v.contains(&InfoBridge::VlanFiltering(false)));
    }

    #[test]
    fn bond_options_and_errors() {
        let m = build(DeviceSpec::Bond {
            mode: Some("802.3ad".into()),
            miimon: Some(100),
            xmit_hash_policy: Some("layer3+4".into()),
            lacp_rate: Some("fast".into()),
        });
        let (k, d) = infos(&m);
        assert_eq!(k, Some(InfoKind::Bond));
        let Some(InfoData::Bond(v)) = d else { panic!() };
        assert!(v.contains(&InfoBond::Mode(BondMode::Ieee8023Ad)));
        assert!(v.contains(&InfoBond::MiiMon(100)));
        assert!(v.contains(&InfoBond::XmitHashPolicy(BondXmitHashPolicy::Layer34)));
        assert!(v.contains(&InfoBond::AdLacpRate(BondLacpRate::Fast)));
        let e = build_message(
            "b",
            &DeviceSpec::Bond {
                mode: Some("fastest".into()),
                miimon: None,
                xmit_hash_policy: None,
                lacp_rate: None,
            },
            &links(),
            None,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(
            e.message.contains("mode")
                && e.message.contains("fastest")
                && e.message.contains("active-backup"),
            "{}",
            e.message
        );
    }

    #[test]
    fn team_dummy_vrf() {
        assert_eq!(
            infos(&build(DeviceSpec::Team { runner: None })).0,
            Some(InfoKind::Team)
        );
        assert!(build_message(
            "t",
            &DeviceSpec::Team {
                runner: Some("lacp".into())
            },
            &links(),
            None
        )
        .is_err());
        assert_eq!(infos(&build(DeviceSpec::Dummy)).0, Some(InfoKind::Dummy));
        let (k, d) = infos(&build(DeviceSpec::Vrf { table: 10 }));
        assert_eq!(k, Some(InfoKind::Vrf));
        assert_eq!(d, Some(InfoData::Vrf(vec![InfoVrf::TableId(10)])));
    }

    #[test]
    fn vlan_needs_link_and_valid_id() {
        let m = build(DeviceSpec::Vlan {
            link: "eth0".into(),
            id: 10,
            protocol: Some("802.1ad".into()),
        });
        assert!(has(&m, &LinkAttribute::Link(7)));
        let (k, d) = infos(&m);
        assert_eq!(k, Some(InfoKind::Vlan));
        let Some(InfoData::Vlan(v)) = d else { panic!() };
        assert!(v.contains(&InfoVlan::Id(10)));
        assert!(v.contains(&InfoVlan::Protocol(VlanProtocol::Ieee8021Ad)));
        let e = build_message(
            "v",
            &DeviceSpec::Vlan {
                link: "eth9".into(),
                id: 10,
                protocol: None,
            },
            &links(),
            None,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(build_message(
            "v",
            &DeviceSpec::Vlan {
                link: "eth0".into(),
                id: 4095,
                protocol: None
            },
            &links(),
            None
        )
        .is_err());
    }

    #[test]
    fn macvlan_ipvlan_modes() {
        let m = build(DeviceSpec::Macvlan {
            link: "eth0".into(),
            mode: Some("vepa".into()),
        });
        assert!(has(&m, &LinkAttribute::Link(7)));
        let (k, d) = infos(&m);
        assert_eq!(k, Some(InfoKind::MacVlan));
        assert_eq!(
            d,
            Some(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Vepa
            )]))
        );
        let m = build(DeviceSpec::Ipvlan {
            link: "eth0".into(),
            mode: Some("l2".into()),
        });
        let (k, d) = infos(&m);
        assert_eq!(k, Some(InfoKind::IpVlan));
        let Some(InfoData::IpVlan(v)) = d else {
            panic!()
        };
        assert!(v.contains(&InfoIpVlan::Mode(IpVlanMode::L2)));
        assert!(build_message(
            "m",
            &DeviceSpec::Macvlan {
                link: "eth0".into(),
                mode: Some("x".into())
            },
            &links(),
            None
        )
        .is_err());
    }

    #[test]
    fn vxlan_attributes() {
        let m = build(DeviceSpec::Vxlan {
            id: 42,
            link: Some("eth0".into()),
            local: Some("10.0.0.1".into()),
            remote: Some("10.0.0.2".into()),
            group: None,
            dstport: None,
            ttl: Some(5),
        });
        let (k, d) = infos(&m);
        assert_eq!(k, Some(InfoKind::Vxlan));
        let Some(InfoData::Vxlan(v)) = d else {
            panic!()
        };
        assert!(v.contains(&InfoVxlan::Id(42)));
        assert!(v.contains(&InfoVxlan::Link(7)));
        assert!(v.contains(&InfoVxlan::Port(4789)));
        assert!(v.contains(&InfoVxlan::Ttl(5)));
        assert!(v.contains(&InfoVxlan::Local("10.0.0.1".parse().unwrap())));
        assert!(v.contains(&InfoVxlan::Group("10.0.0.2".parse().unwrap())));
        let e = build_message(
            "v",
            &DeviceSpec::Vxlan {
                id: 1,
                link: None,
                local: None,
                remote: None,
                group: Some("10.0.0.1".into()),
                dstport: None,
                ttl: None,
            },
            &links(),
            None,
        )
        .unwrap_err();
        assert!(e.message.contains("group"), "{}", e.message);
    }

    #[test]
    fn geneve_attributes() {
        let m = build(DeviceSpec::Geneve {
            id: 5,
            remote: "fd00::2".into(),
            dstport: Some(6082),
        });
        let (k, d) = infos(&m);
        assert_eq!(k, Some(InfoKind::Geneve));
        assert!(matches!(d, Some(InfoData::Geneve(_))));
        assert!(build_message(
            "g",
            &DeviceSpec::Geneve {
                id: 5,
                remote: "nope".into(),
                dstport: None
            },
            &links(),
            None
        )
        .is_err());
    }

    fn tun(kind: TunnelKind, v6: bool, key: Option<u32>) -> Result<LinkMessage, WireError> {
        let (l, r) = if v6 {
            ("fd00::1", "fd00::2")
        } else {
            ("10.0.0.1", "10.0.0.2")
        };
        build_message(
            "t0",
            &DeviceSpec::Tunnel {
                kind,
                local: Some(l.into()),
                remote: Some(r.into()),
                key,
                ttl: None,
                link: Some("eth0".into()),
            },
            &links(),
            None,
        )
    }

    #[test]
    fn tunnels() {
        let (k, d) = infos(&tun(TunnelKind::Gre, false, Some(9)).unwrap());
        assert_eq!(k, Some(InfoKind::GreTun));
        let Some(InfoData::GreTun(v)) = d else {
            panic!()
        };
        assert!(v.contains(&InfoGre::IKey(9)) && v.contains(&InfoGre::OKey(9)));
        assert!(v.contains(&InfoGre::Link(7)));
        let (k, d) = infos(&tun(TunnelKind::Gretap, false, None).unwrap());
        assert_eq!(k, Some(InfoKind::GreTap));
        let Some(InfoData::GreTap(v)) = d else {
            panic!()
        };
        assert!(v.contains(&InfoGre::Remote("10.0.0.2".parse().unwrap())));
        let (k, d) = infos(&tun(TunnelKind::Ip6gre, true, None).unwrap());
        assert_eq!(k, Some(InfoKind::GreTun6));
        let Some(InfoData::GreTun6(v)) = d else {
            panic!()
        };
        assert!(v.contains(&InfoGre6::Local("fd00::1".parse().unwrap())));
        let (k, d) = infos(&tun(TunnelKind::Ipip, false, None).unwrap());
        assert_eq!(k, Some(InfoKind::IpIp));
        let Some(InfoData::IpTunnel(v)) = d else {
            panic!()
        };
        assert!(v.contains(&InfoIpTunnel::Remote("10.0.0.2".parse().unwrap())));
        assert_eq!(
            infos(&tun(TunnelKind::Sit, false, None).unwrap()).0,
            Some(InfoKind::SitTun)
        );
        assert_eq!(
            infos(&tun(TunnelKind::Ip6tnl, true, None).unwrap()).0,
            Some(InfoKind::Ip6Tnl)
        );
        let (k, d) = infos(&tun(TunnelKind::Vti, false, Some(3)).unwrap());
        assert_eq!(k, Some(InfoKind::Vti));
        let Some(InfoData::Vti(v)) = d else { panic!() };
        assert!(v.contains(&InfoVti::IKey(3)));
        // wrong family and options a kind lacks are errors naming them
        let e = tun(TunnelKind::Gre, true, None).unwrap_err();
        assert!(e.message.contains("IPv4"), "{}", e.message);
        let e = tun(TunnelKind::Ipip, false, Some(1)).unwrap_err();
        assert!(e.message.contains("key"), "{}", e.message);
    }
}
