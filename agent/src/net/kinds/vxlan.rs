//! `ip link add NAME type vxlan id ID [dev LINK] [local A] [remote A |
//! group A] [dstport P] [ttl T]`. Without `dstport` the IANA port 4789, as
//! `ip link` does (the kernel's own default is 8472).

use std::net::IpAddr;

use lnst_common::device::DeviceSpec;
use lnst_common::WireError;
use netlink_packet_route::link::LinkMessage;
use rtnetlink::LinkVxlan;

use super::Ctx;

pub fn message(c: &Ctx, spec: &DeviceSpec) -> Result<LinkMessage, WireError> {
    let DeviceSpec::Vxlan {
        id,
        link,
        local,
        remote,
        group,
        dstport,
        ttl,
    } = spec
    else {
        return Err(WireError::internal("vxlan::message: not a vxlan spec"));
    };
    if *id >= 1 << 24 {
        return Err(c.bad("id", &id.to_string(), "0-16777215"));
    }
    if remote.is_some() && group.is_some() {
        return Err(WireError::invalid(format!(
            "vxlan {}: remote and group exclude each other",
            c.name
        )));
    }
    let mut b = LinkVxlan::new(c.name, *id);
    if let Some(l) = link {
        b = b.dev(c.link(l)?);
    }
    if let Some(a) = local {
        b = match c.ip("local", a)? {
            IpAddr::V4(v) => b.local(v),
            IpAddr::V6(v) => b.local6(v),
        };
    }
    if let Some(a) = remote {
        b = match c.ip("remote", a)? {
            IpAddr::V4(v) => b.remote(v),
            IpAddr::V6(v) => b.remote6(v),
        };
    }
    if let Some(a) = group {
        let g = c.ip("group", a)?;
        if !g.is_multicast() {
            return Err(c.bad("group", a, "a multicast address"));
        }
        b = match g {
            IpAddr::V4(v) => b.group(v),
            IpAddr::V6(v) => b.group6(v),
        };
    }
    b = b.port(dstport.unwrap_or(4789));
    if let Some(t) = ttl {
        b = b.ttl(*t);
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use lnst_common::device::DeviceSpec;
    use netlink_packet_route::link::{InfoData, InfoKind, InfoVxlan};

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
        let e = build_err(DeviceSpec::Vxlan {
            id: 1,
            link: None,
            local: None,
            remote: None,
            group: Some("10.0.0.1".into()),
            dstport: None,
            ttl: None,
        });
        assert!(e.message.contains("group"), "{}", e.message);
    }
}
