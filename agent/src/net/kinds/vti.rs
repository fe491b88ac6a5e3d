//! `ip link add NAME type vti local A remote A [key K] [dev LINK]`.

use lnst_common::device::DeviceSpec;
use lnst_common::WireError;
use netlink_packet_route::link::LinkMessage;
use rtnetlink::LinkVti;

use super::Ctx;

pub fn message(c: &Ctx, spec: &DeviceSpec) -> Result<LinkMessage, WireError> {
    let DeviceSpec::Tunnel {
        local,
        remote,
        key,
        ttl,
        link,
        mode,
        ..
    } = spec
    else {
        return Err(WireError::internal("vti::message: not a tunnel spec"));
    };
    if ttl.is_some() {
        return Err(c.not_an_option("ttl", "gre, gretap, ip6gre, ipip, sit, ip6tnl take a ttl"));
    }
    if mode.is_some() {
        return Err(c.not_an_option("mode", "ipip, sit and ip6tnl take a mode"));
    }
    let mut b = LinkVti::new(c.name);
    if let Some(a) = local {
        b = b.local(c.ip4("local", a)?);
    }
    if let Some(a) = remote {
        b = b.remote(c.ip4("remote", a)?);
    }
    if let Some(k) = key {
        b = b.ikey(*k).okey(*k);
    }
    if let Some(l) = link {
        b = b.dev(c.link(l)?);
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::super::gre::tests::tun;
    use super::super::test_util::*;
    use lnst_common::device::TunnelKind;
    use netlink_packet_route::link::{InfoData, InfoKind, InfoVti};

    #[test]
    fn vti_key() {
        let (k, d) = infos(&tun(TunnelKind::Vti, false, Some(3), None).unwrap());
        assert_eq!(k, Some(InfoKind::Vti));
        let Some(InfoData::Vti(v)) = d else { panic!() };
        assert!(v.contains(&InfoVti::IKey(3)));
        assert!(tun(TunnelKind::Vti, false, None, Some("any")).is_err());
    }
}
