//! `ip link add NAME type dummy`.

use lnst_common::WireError;
use netlink_packet_route::link::LinkMessage;
use rtnetlink::LinkDummy;

use super::Ctx;

pub fn message(c: &Ctx) -> Result<LinkMessage, WireError> {
    Ok(LinkDummy::new(c.name).build())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use lnst_common::device::DeviceSpec;
    use netlink_packet_route::link::InfoKind;

    #[test]
    fn dummy() {
        assert_eq!(infos(&build(DeviceSpec::Dummy)).0, Some(InfoKind::Dummy));
    }
}
