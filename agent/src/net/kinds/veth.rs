//! `ip link add NAME type veth peer name PEER [netns NS]`: the peer is
//! created in its namespace directly (by fd), in one message.

use lnst_common::WireError;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkMessage};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};

use super::Ctx;

pub fn message(c: &Ctx, peer: &str) -> Result<LinkMessage, WireError> {
    let mut p = LinkUnspec::new_with_name(peer);
    if let Some(fd) = c.peer_ns_fd {
        p = p.setns_by_fd(fd);
    }
    Ok(
        LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(c.name.to_string())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(p.build())))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::build_message;
    use super::super::test_util::*;
    use lnst_common::device::DeviceSpec;
    use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute};

    #[test]
    fn veth_peer_and_netns_fd() {
        let m = build_message(
            "a",
            &DeviceSpec::Veth {
                peer: "b".into(),
                peer_netns: Some("n".into()),
            },
            &links(),
            Some(42),
        )
        .unwrap();
        let (k, d) = infos(&m);
        assert_eq!(k, Some(InfoKind::Veth));
        let Some(InfoData::Veth(InfoVeth::Peer(p))) = d else {
            panic!("no peer")
        };
        assert!(p.attributes.contains(&LinkAttribute::IfName("b".into())));
        assert!(p.attributes.contains(&LinkAttribute::NetNsFd(42)));
        assert!(has(&m, &LinkAttribute::IfName("a".into())));
    }
}
