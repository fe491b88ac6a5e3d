//! `ip link add link LINK NAME type vlan id ID [protocol 802.1Q|802.1ad]`.

use lnst_common::WireError;
use netlink_packet_route::link::{LinkMessage, VlanProtocol};
use rtnetlink::LinkVlan;

use super::Ctx;

pub fn message(
    c: &Ctx,
    link: &str,
    id: u16,
    protocol: Option<&str>,
) -> Result<LinkMessage, WireError> {
    if id == 0 || id >= 4095 {
        return Err(c.bad("id", &id.to_string(), "1-4094"));
    }
    let proto = match protocol {
        Some(p) => Some(c.pick(
            "protocol",
            p,
            &[
                ("802.1Q", VlanProtocol::Ieee8021Q),
                ("802.1ad", VlanProtocol::Ieee8021Ad),
            ],
        )?),
        None => None,
    };
    let mut b = LinkVlan::new(c.name, c.link(link)?, id);
    if let Some(p) = proto {
        b = b.protocol(p);
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::super::build_message;
    use super::super::test_util::*;
    use lnst_common::device::DeviceSpec;
    use lnst_common::ErrorKind;
    use netlink_packet_route::link::{InfoData, InfoKind, InfoVlan, LinkAttribute, VlanProtocol};

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
        let e = build_err(DeviceSpec::Vlan {
            link: "eth0".into(),
            id: 4095,
            protocol: None,
        });
        assert!(e.message.contains("1-4094"), "{}", e.message);
        let e = build_err(DeviceSpec::Vlan {
            link: "eth0".into(),
            id: 5,
            protocol: Some("qinq".into()),
        });
        assert!(
            e.message.contains("qinq") && e.message.contains("802.1ad"),
            "{}",
            e.message
        );
    }
}
