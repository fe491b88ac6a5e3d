//! `ip link add link LINK NAME type ipvlan [mode l2|l3|l3s]`.

use lnst_common::WireError;
use netlink_packet_route::link::{IpVlanMode, LinkMessage};
use rtnetlink::LinkIpVlan;

use super::Ctx;

pub fn message(c: &Ctx, link: &str, mode: Option<&str>) -> Result<LinkMessage, WireError> {
    let m = c.pick(
        "mode",
        mode.unwrap_or("l3"),
        &[
            ("l2", IpVlanMode::L2),
            ("l3", IpVlanMode::L3),
            ("l3s", IpVlanMode::L3S),
        ],
    )?;
    Ok(LinkIpVlan::new(c.name, c.link(link)?, m).build())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use lnst_common::device::DeviceSpec;
    use netlink_packet_route::link::{InfoData, InfoIpVlan, InfoKind, IpVlanMode};

    #[test]
    fn ipvlan_modes() {
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
        let e = build_err(DeviceSpec::Ipvlan {
            link: "eth0".into(),
            mode: Some("l4".into()),
        });
        assert!(e.message.contains("l3s"), "{}", e.message);
    }
}
