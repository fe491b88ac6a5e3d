//! `ip link add NAME type gre|gretap|ip6gre local A remote A [key K]
//! [ttl T] [dev LINK]`: one file for the GRE family, which shares its
//! options; gre and gretap take IPv4 endpoints, ip6gre IPv6 ones.

use lnst_common::device::{DeviceSpec, TunnelKind};
use lnst_common::WireError;
use netlink_packet_route::link::{GreIOFlags, LinkMessage};
use rtnetlink::{LinkGre, LinkGre6};

use super::Ctx;

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
        return Err(WireError::internal("gre::message: not a tunnel spec"));
    };
    if mode.is_some() {
        return Err(c.not_an_option("mode", "ipip, sit and ip6tnl take a mode"));
    }
    let dev = match link {
        Some(l) => Some(c.link(l)?),
        None => None,
    };
    if *kind == TunnelKind::Ip6gre {
        let mut b = LinkGre6::new(c.name);
        if let Some(a) = local {
            b = b.local(c.ip6("local", a)?);
        }
        if let Some(a) = remote {
            b = b.remote(c.ip6("remote", a)?);
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
        return Ok(b.build());
    }
    let mut b = if *kind == TunnelKind::Gre {
        LinkGre::new(c.name)
    } else {
        LinkGre::new_gretap(c.name)
    };
    if let Some(a) = local {
        b = b.local(c.ip4("local", a)?);
    }
    if let Some(a) = remote {
        b = b.remote(c.ip4("remote", a)?);
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
    Ok(b.build())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::build_message;
    use super::super::test_util::*;
    use lnst_common::device::{DeviceSpec, TunnelKind};
    use lnst_common::WireError;
    use netlink_packet_route::link::{InfoData, InfoGre, InfoGre6, InfoKind, LinkMessage};

    pub fn tun(
        kind: TunnelKind,
        v6: bool,
        key: Option<u32>,
        mode: Option<&str>,
    ) -> Result<LinkMessage, WireError> {
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
                mode: mode.map(str::to_string),
            },
            &links(),
            None,
        )
    }

    #[test]
    fn gre_family() {
        let (k, d) = infos(&tun(TunnelKind::Gre, false, Some(9), None).unwrap());
        assert_eq!(k, Some(InfoKind::GreTun));
        let Some(InfoData::GreTun(v)) = d else {
            panic!()
        };
        assert!(v.contains(&InfoGre::IKey(9)) && v.contains(&InfoGre::OKey(9)));
        assert!(v.contains(&InfoGre::Link(7)));
        let (k, d) = infos(&tun(TunnelKind::Gretap, false, None, None).unwrap());
        assert_eq!(k, Some(InfoKind::GreTap));
        let Some(InfoData::GreTap(v)) = d else {
            panic!()
        };
        assert!(v.contains(&InfoGre::Remote("10.0.0.2".parse().unwrap())));
        let (k, d) = infos(&tun(TunnelKind::Ip6gre, true, None, None).unwrap());
        assert_eq!(k, Some(InfoKind::GreTun6));
        let Some(InfoData::GreTun6(v)) = d else {
            panic!()
        };
        assert!(v.contains(&InfoGre6::Local("fd00::1".parse().unwrap())));
        let e = tun(TunnelKind::Gre, true, None, None).unwrap_err();
        assert!(e.message.contains("IPv4"), "{}", e.message);
        let e = tun(TunnelKind::Gre, false, None, Some("any")).unwrap_err();
        assert!(e.message.contains("mode"), "{}", e.message);
    }
}
