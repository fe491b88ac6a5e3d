//! `ip link add link LINK NAME type macsec [port P] [encrypt on|off]`.
//! Keys (`ip macsec add NAME tx sa ..`) are set by jobs, as RECIPES.md §7
//! says.

use lnst_common::WireError;
use netlink_packet_route::link::LinkMessage;
use rtnetlink::LinkMacSec;

use super::Ctx;

pub fn message(
    c: &Ctx,
    link: &str,
    port: Option<u16>,
    encrypt: Option<bool>,
) -> Result<LinkMessage, WireError> {
    if port == Some(0) {
        return Err(c.bad("port", "0", "1-65535"));
    }
    let mut b = LinkMacSec::new(c.name, c.link(link)?);
    if let Some(p) = port {
        b = b.port(p);
    }
    if let Some(e) = encrypt {
        b = b.encrypt(e);
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use lnst_common::device::DeviceSpec;
    use netlink_packet_route::link::{InfoData, InfoKind, InfoMacSec, LinkAttribute};

    #[test]
    fn macsec_link_port_encrypt() {
        let m = build(DeviceSpec::Macsec {
            link: "eth1".into(),
            port: Some(11),
            encrypt: Some(true),
        });
        assert!(has(&m, &LinkAttribute::Link(8)));
        let (k, d) = infos(&m);
        assert_eq!(k, Some(InfoKind::MacSec));
        let Some(InfoData::MacSec(v)) = d else {
            panic!()
        };
        assert!(v.contains(&InfoMacSec::Port(11)));
        assert!(v.contains(&InfoMacSec::Encrypt(1)));
        let e = build_err(DeviceSpec::Macsec {
            link: "eth1".into(),
            port: Some(0),
            encrypt: None,
        });
        assert!(e.message.contains("port"), "{}", e.message);
    }
}
