//! `ip link add NAME type geneve id ID remote A [dstport P]`.

use std::net::IpAddr;

use lnst_common::WireError;
use netlink_packet_route::link::LinkMessage;
use rtnetlink::LinkGeneve;

use super::Ctx;

pub fn message(
    c: &Ctx,
    id: u32,
    remote: &str,
    dstport: Option<u16>,
) -> Result<LinkMessage, WireError> {
    if id >= 1 << 24 {
        return Err(c.bad("id", &id.to_string(), "0-16777215"));
    }
    let mut b = LinkGeneve::new(c.name, id);
    b = match c.ip("remote", remote)? {
        IpAddr::V4(v) => b.remote(v),
        IpAddr::V6(v) => b.remote6(v),
    };
    if let Some(p) = dstport {
        b = b.port(p);
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use lnst_common::device::DeviceSpec;
    use netlink_packet_route::link::{InfoData, InfoKind};

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
        let e = build_err(DeviceSpec::Geneve {
            id: 5,
            remote: "nope".into(),
            dstport: None,
        });
        assert!(
            e.message.contains("nope") && e.message.contains("address"),
            "{}",
            e.message
        );
    }
}
