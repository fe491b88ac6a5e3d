//! `ip link add NAME type bridge [stp_state 0|1] [vlan_filtering 0|1]`.

use lnst_common::WireError;
use netlink_packet_route::link::{BridgeStpState, LinkMessage};
use rtnetlink::LinkBridge;

use super::Ctx;

pub fn message(
    c: &Ctx,
    stp: Option<bool>,
    vlan_filtering: Option<bool>,
) -> Result<LinkMessage, WireError> {
    let mut b = LinkBridge::new(c.name);
    if let Some(s) = stp {
        b = b.stp_state(if s {
            BridgeStpState::KernelStp
        } else {
            BridgeStpState::Disabled
        });
    }
    if let Some(v) = vlan_filtering {
        b = b.vlan_filtering(v);
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use lnst_common::device::DeviceSpec;
    use netlink_packet_route::link::{BridgeStpState, InfoBridge, InfoData, InfoKind};

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
}
