//! Addresses and routes as the kernel has them, saved so that an undo puts
//! them back exactly (`ip -d addr show` / `ip route show table all` in,
//! `ip addr add ...` / `ip route add ...` with every attribute out).
//!
//! [`SavedAddr`] and [`SavedRoute`] are read from dump messages
//! ([`SavedAddr::from_message`], [`SavedRoute::from_message`]) before a
//! change that removes them (`ip_del`, `ip_flush`, `route_del`, and the
//! changes after which the kernel drops routes: a device going down, a
//! move to another namespace, an address removal, a new master or MTU), and
//! journaled as plain JSON; the undo rebuilds the netlink message from them
//! with the device looked up by name at undo time. The device is named, not
//! indexed: a device moved away and back may get a new ifindex.

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
    AddressScope, CacheInfo,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RoutePreference, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;
use serde::{Deserialize, Serialize};

use lnst_common::WireError;

use super::error::nl_error;
use super::ns_label;
use super::nsthread::NsConn;

/// `IFA_F_*` flags a request may carry (`nodad`, `optimistic`, `home`,
/// `mngtmpaddr`, `noprefixroute`, `autojoin`); the others (secondary,
/// permanent, tentative, ...) are the kernel's to set.
const SETTABLE_ADDR_FLAGS: u32 = 0x02 | 0x04 | 0x10 | 0x100 | 0x200 | 0x400;
/// `RTNH_F_ONLINK`: the only `rtm_flags` bit a route request may carry
/// that a dump shows (`dead`/`linkdown` are refused by the kernel).
const ONLINK: u32 = 4;
/// A lifetime of `forever`.
const FOREVER: u32 = u32::MAX;
/// `RTPROT_KERNEL`: routes the kernel makes from addresses.
pub const PROTO_KERNEL: u8 = 2;
/// `RTPROT_RA`: routes from router advertisements.
pub const PROTO_RA: u8 = 9;

/// One address with all it had: `ip addr add LOCAL/PREFIX [peer P]
/// [broadcast B] [label L] [scope S] [valid_lft V preferred_lft P]
/// [metric M] [proto P] [FLAGS] dev DEV`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SavedAddr {
    /// `addr/prefix` (IFA_LOCAL for IPv4, IFA_ADDRESS for IPv6).
    pub cidr: String,
    /// IFA_ADDRESS when it differs from IFA_LOCAL (a point-to-point peer).
    pub peer: Option<String>,
    /// `None` when the address had no broadcast (`ip addr add` without
    /// `brd +` adds none; rtnetlink's builder would add one).
    pub broadcast: Option<String>,
    pub label: Option<String>,
    /// IFA_F_* (only the settable ones are sent back).
    pub flags: u32,
    pub scope: u8,
    /// Seconds left when saved; `None` for forever.
    pub valid_lft: Option<u32>,
    pub preferred_lft: Option<u32>,
    /// Metric of the prefix route (IFA_RT_PRIORITY).
    pub metric: Option<u32>,
    pub proto: Option<u8>,
}

impl SavedAddr {
    /// From an `RTM_NEWADDR` dump entry.
    pub fn from_message(m: &AddressMessage) -> Option<SavedAddr> {
        let mut local = None;
        let mut address = None;
        let mut s = SavedAddr {
            cidr: String::new(),
            peer: None,
            broadcast: None,
            label: None,
            flags: u32::from(m.header.flags.bits()),
            scope: u8::from(m.header.scope),
            valid_lft: None,
            preferred_lft: None,
            metric: None,
            proto: None,
        };
        for a in &m.attributes {
            match a {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                AddressAttribute::Broadcast(b) => s.broadcast = Some(b.to_string()),
                AddressAttribute::Label(l) => s.label = Some(l.clone()),
                AddressAttribute::Flags(f) => s.flags = f.bits(),
                AddressAttribute::CacheInfo(c) => {
                    s.valid_lft = (c.ifa_valid != FOREVER).then_some(c.ifa_valid);
                    s.preferred_lft = (c.ifa_preferred != FOREVER).then_some(c.ifa_preferred);
                }
                AddressAttribute::RoutePriority(p) => s.metric = Some(*p),
                AddressAttribute::Protocol(p) => s.proto = Some(u8::from(*p)),
                _ => {}
            }
        }
        let ip = local.or(address)?;
        s.cidr = format!("{ip}/{}", m.header.prefix_len);
        if let (Some(l), Some(a)) = (local, address) {
            if l != a {
                s.peer = Some(a.to_string());
            }
        }
        Some(s)
    }

    /// The address part of [`SavedAddr::cidr`].
    pub fn ip(&self) -> Result<(IpAddr, u8), WireError> {
        super::addrs::parse_cidr(&self.cidr)
    }

    /// Whether this IPv4 address is a secondary (`IFA_F_SECONDARY`).
    pub fn is_secondary(&self) -> bool {
        self.flags & 0x01 != 0
    }

    /// The `RTM_NEWADDR` body putting this address back on `index`.
    pub fn message(&self, index: u32) -> Result<AddressMessage, WireError> {
        let bad = |what: &str| WireError::invalid(format!("saved address {}: {what}", self.cidr));
        let (ip, prefix) = self.ip()?;
        let mut m = AddressMessage::default();
        m.header.family = if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.header.scope = AddressScope::from(self.scope);
        m.header.flags = AddressHeaderFlags::empty();
        let peer: Option<IpAddr> = match &self.peer {
            Some(p) => Some(p.parse().map_err(|_| bad("bad peer"))?),
            None => None,
        };
        if ip.is_ipv4() {
            m.attributes.push(AddressAttribute::Local(ip));
            m.attributes
                .push(AddressAttribute::Address(peer.unwrap_or(ip)));
        } else {
            if let Some(p) = peer {
                m.attributes.push(AddressAttribute::Local(ip));
                m.attributes.push(AddressAttribute::Address(p));
            } else {
                m.attributes.push(AddressAttribute::Address(ip));
            }
        }
        if let Some(b) = &self.broadcast {
            m.attributes.push(AddressAttribute::Broadcast(
                b.parse().map_err(|_| bad("bad broadcast"))?,
            ));
        }
        if let Some(l) = &self.label {
            m.attributes.push(AddressAttribute::Label(l.clone()));
        }
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
                self.flags & SETTABLE_ADDR_FLAGS,
            )));
        if self.valid_lft.is_some() || self.preferred_lft.is_some() {
            let mut c = CacheInfo::default();
            c.ifa_preferred = self.preferred_lft.unwrap_or(FOREVER);
            c.ifa_valid = self.valid_lft.unwrap_or(FOREVER);
            m.attributes.push(AddressAttribute::CacheInfo(c));
        }
        if let Some(p) = self.metric {
            m.attributes.push(AddressAttribute::RoutePriority(p));
        }
        if let Some(p) = self.proto {
            m.attributes
                .push(AddressAttribute::Protocol(AddressProtocol::from(p)));
        }
        Ok(m)
    }
}

/// One route with all it had: `ip route add [TYPE] DST [tos T] [table T]
/// [proto P] [scope S] [metric M] [via GW] [dev DEV] [src S] [onlink]
/// [pref P]`. Multipath routes and route metrics (`mtu`, ...) are not
/// saved ([`SavedRoute::from_message`] returns `None` for multipath).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SavedRoute {
    /// `addr/prefix`; `0.0.0.0/0` or `::/0` for default.
    pub dst: String,
    pub tos: u8,
    pub table: u32,
    pub protocol: u8,
    pub scope: u8,
    /// RTN_* (unicast, blackhole, unreachable, ...).
    pub kind: u8,
    pub flags: u32,
    pub metric: Option<u32>,
    pub via: Option<String>,
    pub src: Option<String>,
    /// The output device's name (looked up again at undo time).
    pub dev: Option<String>,
    pub pref: Option<u8>,
}

impl SavedRoute {
    /// From an `RTM_NEWROUTE` dump entry; `dev_name` maps the output
    /// ifindex to a name. `None` for multipath and non-IP routes.
    pub fn from_message(
        m: &RouteMessage,
        dev_name: impl Fn(u32) -> Option<String>,
    ) -> Option<SavedRoute> {
        let v4 = match m.header.address_family {
            AddressFamily::Inet => true,
            AddressFamily::Inet6 => false,
            _ => return None,
        };
        let mut dst = None;
        let mut s = SavedRoute {
            dst: String::new(),
            tos: m.header.tos,
            table: u32::from(m.header.table),
            protocol: u8::from(m.header.protocol),
            scope: u8::from(m.header.scope),
            kind: u8::from(m.header.kind),
            flags: m.header.flags.bits() & ONLINK,
            metric: None,
            via: None,
            src: None,
            dev: None,
            pref: None,
        };
        let ip = |a: &RouteAddress| match a {
            RouteAddress::Inet(i) => Some(i.to_string()),
            RouteAddress::Inet6(i) => Some(i.to_string()),
            _ => None,
        };
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(d) => dst = ip(d),
                RouteAttribute::Gateway(g) => s.via = ip(g),
                RouteAttribute::PrefSource(p) => s.src = ip(p),
                RouteAttribute::Oif(i) => s.dev = Some(dev_name(*i)?),
                RouteAttribute::Priority(p) => s.metric = Some(*p),
                RouteAttribute::Table(t) => s.table = *t,
                RouteAttribute::Preference(p) => s.pref = Some(u8::from(*p)),
                RouteAttribute::MultiPath(_) => return None,
                _ => {}
            }
        }
        let unspec = if v4 { "0.0.0.0" } else { "::" };
        s.dst = format!(
            "{}/{}",
            dst.as_deref().unwrap_or(unspec),
            m.header.destination_prefix_length
        );
        Some(s)
    }

    /// `ip route` words, for messages.
    pub fn describe(&self) -> String {
        let mut s = self.dst.clone();
        if let Some(v) = &self.via {
            s += &format!(" via {v}");
        }
        if let Some(d) = &self.dev {
            s += &format!(" dev {d}");
        }
        s += &format!(" table {} proto {}", self.table, self.protocol);
        if let Some(m) = self.metric {
            s += &format!(" metric {m}");
        }
        s
    }

    /// The `RTM_NEWROUTE`/`RTM_DELROUTE` body for this route; `oif` is the
    /// ifindex of [`SavedRoute::dev`] now.
    pub fn message(&self, oif: Option<u32>) -> Result<RouteMessage, WireError> {
        let bad =
            |what: &str| WireError::invalid(format!("saved route {}: {what}", self.describe()));
        let (dst, len) = super::addrs::parse_cidr(&self.dst)?;
        let addr = |s: &str| -> Result<RouteAddress, WireError> {
            let ip: IpAddr = s.parse().map_err(|_| bad("bad address"))?;
            Ok(RouteAddress::from(ip))
        };
        let mut m = RouteMessage::default();
        m.header.address_family = if dst.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.destination_prefix_length = len;
        m.header.tos = self.tos;
        // RT_TABLE_COMPAT in the header when the id needs RTA_TABLE.
        m.header.table = u8::try_from(self.table).unwrap_or(252);
        m.header.protocol = RouteProtocol::from(self.protocol);
        m.header.scope = RouteScope::from(self.scope);
        m.header.kind = RouteType::from(self.kind);
        m.header.flags = RouteFlags::from_bits_retain(self.flags & ONLINK);
        m.attributes.push(RouteAttribute::Table(self.table));
        if len > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        }
        if let Some(v) = &self.via {
            m.attributes.push(RouteAttribute::Gateway(addr(v)?));
        }
        if let Some(s) = &self.src {
            m.attributes.push(RouteAttribute::PrefSource(addr(s)?));
        }
        if let Some(i) = oif {
            m.attributes.push(RouteAttribute::Oif(i));
        }
        if let Some(p) = self.metric {
            m.attributes.push(RouteAttribute::Priority(p));
        }
        if let Some(p) = self.pref {
            m.attributes
                .push(RouteAttribute::Preference(RoutePreference::from(p)));
        }
        Ok(m)
    }
}

/// `ip route show table all` and `ip -6 route show table all`.
pub(crate) async fn dump_routes(
    conn: &NsConn,
    netns: Option<&str>,
) -> Result<Vec<RouteMessage>, WireError> {
    let mut out = Vec::new();
    for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut m = RouteMessage::default();
        m.header.address_family = fam;
        let v: Vec<RouteMessage> = conn
            .rt
            .route()
            .get(m)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_error(e, format!("ip route show table all in {}", ns_label(netns))))?;
        out.extend(v);
    }
    Ok(out)
}

/// The routes through device `index` that the kernel would drop with it
/// (down, moved, its addresses gone) and not make again by itself: all
/// but `proto kernel` and `proto ra`, and not multipath.
pub(crate) async fn routes_via(
    conn: &NsConn,
    netns: Option<&str>,
    index: u32,
    name: &str,
) -> Result<Vec<SavedRoute>, WireError> {
    let msgs = dump_routes(conn, netns).await?;
    Ok(msgs
        .iter()
        .filter(|m| {
            let p = u8::from(m.header.protocol);
            p != PROTO_KERNEL && p != PROTO_RA && m.attributes.contains(&RouteAttribute::Oif(index))
        })
        .filter_map(|m| SavedRoute::from_message(m, |i| (i == index).then(|| name.to_string())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_round_trip_keeps_no_broadcast_and_flags() {
        let a = SavedAddr {
            cidr: "10.0.0.1/24".into(),
            peer: None,
            broadcast: None,
            label: Some("nic1:x".into()),
            flags: 0x200 | 0x80 | 0x01,
            scope: 0,
            valid_lft: Some(100),
            preferred_lft: None,
            metric: Some(9),
            proto: None,
        };
        let m = a.message(7).unwrap();
        assert_eq!(m.header.index, 7);
        assert!(!m
            .attributes
            .iter()
            .any(|x| matches!(x, AddressAttribute::Broadcast(_))));
        assert!(m
            .attributes
            .contains(&AddressAttribute::Flags(AddressFlags::from_bits_retain(
                0x200
            ))));
        let back = SavedAddr::from_message(&m).unwrap();
        assert_eq!(back.cidr, a.cidr);
        assert_eq!(back.label, a.label);
        assert_eq!(back.valid_lft, Some(100));
        assert_eq!(back.preferred_lft, None);
        assert_eq!(back.metric, Some(9));
    }

    #[test]
    fn route_round_trip() {
        let r = SavedRoute {
            dst: "10.51.0.0/24".into(),
            tos: 0,
            table: 1000,
            protocol: 3,
            scope: 0,
            kind: 1,
            flags: ONLINK,
            metric: Some(5),
            via: Some("10.50.0.2".into()),
            src: Some("10.50.0.1".into()),
            dev: Some("nic1".into()),
            pref: None,
        };
        let m = r.message(Some(4)).unwrap();
        assert_eq!(m.header.table, 252);
        let back = SavedRoute::from_message(&m, |i| (i == 4).then(|| "nic1".to_string())).unwrap();
        assert_eq!(back, r);
        let d = SavedRoute {
            dst: "::/0".into(),
            ..r.clone()
        };
        let m = d.message(None).unwrap();
        assert!(!m
            .attributes
            .iter()
            .any(|x| matches!(x, RouteAttribute::Destination(_))));
    }
}
