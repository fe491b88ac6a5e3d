//! `ip link add NAME type vrf table T`.

use lnst_common::WireError;
use netlink_packet_route::link::LinkMessage;
use rtnetlink::LinkVrf;

use super::Ctx;

pub fn message(c: &Ctx, table: u32) -> Result<LinkMessage, WireError> {
    if table == 0 {
        return Err(c.bad("table", "0", "a routing table id > 0"));
    }
    Ok(LinkVrf::new(c.name, table).build())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use lnst_common::device::DeviceSpec;
    use netlink_packet_route::link::{InfoData, InfoKind, InfoVrf};

    #[test]
    fn vrf_table() {
        let (k, d) = infos(&build(DeviceSpec::Vrf { table: 10 }));
        assert_eq!(k, Some(InfoKind::Vrf));
        assert_eq!(d, Some(InfoData::Vrf(vec![InfoVrf::TableId(10)])));
        assert!(build_err(DeviceSpec::Vrf { table: 0 })
            .message
            .contains("table"));
    }
}
