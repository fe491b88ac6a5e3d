//! `ip link add link LINK NAME type macvlan [mode bridge|private|vepa|passthru|source]`.

use lnst_common::WireError;
use netlink_packet_route::link::{LinkMessage, MacVlanMode};
use rtnetlink::LinkMacVlan;

use super::Ctx;

pub const MODES: &[(&str, MacVlanMode)] = &[
    ("bridge", MacVlanMode::Bridge),
    ("private", MacVlanMode::Private),
    ("vepa", MacVlanMode::Vepa),
    ("passthru", MacVlanMode::Passthrough),
    ("source", MacVlanMode::Source),
];

pub fn message(c: &Ctx, link: &str, mode: Option<&str>) -> Result<LinkMessage, WireError> {
    let m = c.pick("mode", mode.unwrap_or("bridge"), MODES)?;
    Ok(LinkMacVlan::new(c.name, c.link(link)?, m).build())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use lnst_common::device::DeviceSpec;
    use netlink_packet_route::link::{InfoData, InfoKind, InfoMacVlan, LinkAttribute, MacVlanMode};

    #[test]
    fn macvlan_modes() {
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
        let e = build_err(DeviceSpec::Macvlan {
            link: "eth0".into(),
            mode: Some("x".into()),
        });
        assert!(e.message.contains("passthru"), "{}", e.message);
    }
}
