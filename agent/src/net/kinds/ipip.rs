//! `ip link add NAME type ipip|sit|ip6tnl local A remote A [ttl T]
//! [dev LINK] [mode M]`: the IP-in-IP family. `mode` is the inner
//! protocol, as `ip link` takes it: ipip `ipip|mplsip|any`, sit
//! `ip6ip|ipip|mplsip|any`, ip6tnl `ip6ip6|ipip6|any`
//! (`IFLA_IPTUN_PROTO`; `any` is 0). No `key` (GRE and vti only).

use lnst_common::device::{DeviceSpec, TunnelKind};
use lnst_common::WireError;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::IpProtocol;
use rtnetlink::{LinkIp6Tnl, LinkIpIp, LinkSit};

use super::Ctx;

pub const IPIP_MODES: &[(&str, IpProtocol)] = &[
    ("ipip", IpProtocol::Ipip),
    ("mplsip", IpProtocol::Mpls),
    ("any", IpProtocol::Hopopts),
];
pub const SIT_MODES: &[(&str, IpProtocol)] = &[
    ("ip6ip", IpProtocol::Ipv6),
    ("ipip", IpProtocol::Ipip),
    ("mplsip", IpProtocol::Mpls),
    ("any", IpProtocol::Hopopts),
];
pub const IP6TNL_MODES: &[(&str, IpProtocol)] = &[
    ("ip6ip6", IpProtocol::Ipv6),
    ("ipip6", IpProtocol::Ipip),
    ("any", IpProtocol::Hopopts),
];

pub fn message(c: &Ctx, spec: &DeviceSpec) -> Result<LinkMessage, WireError> {
    let DeviceSpec::Tunnel {
        kind,
        local,
        remote,
        key,
        ttl,
        link,
        mode,
    } = spec
    else {
        return Err(WireError::internal("ipip::message: not a tunnel spec"));
    };
    if key.is_some() {
        return Err(c.not_an_option("key", "gre, gretap, ip6gre, vti"));
    }
    let dev = match link {
        Some(l) => Some(c.link(l)?),
        None => None,
    };
    let table = match kind {
        TunnelKind::Sit => SIT_MODES,
        TunnelKind::Ip6tnl => IP6TNL_MODES,
        _ => IPIP_MODES,
    };
    let proto = match mode {
        Some(m) => Some(c.pick("mode", m, table)?),
        None => None,
    };
    Ok(match kind {
        TunnelKind::Ip6tnl => {
            let mut b = LinkIp6Tnl::new(c.name);
            if let Some(a) = local {
                b = b.local(c.ip6("local", a)?);
            }
            if let Some(a) = remote {
                b = b.remote(c.ip6("remote", a)?);
            }
            if let Some(t) = ttl {
                b = b.ttl(*t);
            }
            if let Some(d) = dev {
                b = b.dev(d);
            }
            if let Some(p) = proto {
                b = b.mode(p);
            }
            b.build()
        }
        TunnelKind::Sit => {
            let mut b = LinkSit::new(c.name);
            if let Some(a) = local {
                b = b.local(c.ip4("local", a)?);
            }
            if let Some(a) = remote {
                b = b.remote(c.ip4("remote", a)?);
            }
            if let Some(t) = ttl {
                b = b.ttl(*t);
            }
            if let Some(d) = dev {
                b = b.dev(d);
            }
            if let Some(p) = proto {
                b = b.protocol(p);
            }
            b.build()
        }
        _ => {
            let mut b = LinkIpIp::new(c.name);
            if let Some(a) = local {
                b = b.local(c.ip4("local", a)?);
            }
            if let Some(a) = remote {
                b = b.remote(c.ip4("remote", a)?);
            }
            if let Some(t) = ttl {
                b = b.ttl(*t);
            }
            if let Some(d) = dev {
                b = b.dev(d);
            }
            if let Some(p) = proto {
                b = b.protocol(p);
            }
            b.build()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::gre::tests::tun;
    use super::super::test_util::*;
    use lnst_common::device::TunnelKind;
    use netlink_packet_route::link::{InfoData, InfoIpTunnel, InfoKind};
    use netlink_packet_route::IpProtocol;

    fn proto(d: Option<InfoData>) -> Option<IpProtocol> {
        let v = match d {
            Some(InfoData::IpTunnel(v)) => v,
            other => panic!("{other:?}"),
        };
        v.into_iter().find_map(|a| match a {
            InfoIpTunnel::Protocol(p) => Some(p),
            _ => None,
        })
    }

    #[test]
    fn ip_in_ip_and_modes() {
        let (k, d) = infos(&tun(TunnelKind::Ipip, false, None, None).unwrap());
        assert_eq!(k, Some(InfoKind::IpIp));
        let Some(InfoData::IpTunnel(v)) = d.clone() else {
            panic!("{d:?}")
        };
        assert!(v.contains(&InfoIpTunnel::Remote("10.0.0.2".parse().unwrap())));
        let (_, d) = infos(&tun(TunnelKind::Ipip, false, None, Some("any")).unwrap());
        assert_eq!(proto(d), Some(IpProtocol::Hopopts));
        let (k, d) = infos(&tun(TunnelKind::Sit, false, None, Some("ip6ip")).unwrap());
        assert_eq!(k, Some(InfoKind::SitTun));
        assert_eq!(proto(d), Some(IpProtocol::Ipv6));
        let (k, d) = infos(&tun(TunnelKind::Ip6tnl, true, None, Some("ipip6")).unwrap());
        assert_eq!(k, Some(InfoKind::Ip6Tnl));
        assert_eq!(proto(d), Some(IpProtocol::Ipip));
        let e = tun(TunnelKind::Ip6tnl, true, None, Some("ip6ip")).unwrap_err();
        assert!(
            e.message.contains("ip6ip") && e.message.contains("ip6ip6, ipip6, any"),
            "{}",
            e.message
        );
        let e = tun(TunnelKind::Ipip, false, Some(1), None).unwrap_err();
        assert!(e.message.contains("key"), "{}", e.message);
    }
}
