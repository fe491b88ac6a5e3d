//! One file per link kind of RECIPES.md §7: each holds its options'
//! validation and its `RTM_NEWLINK` message (`ip link add NAME type KIND
//! ...`), so [`super::create`] is a short dispatch. Builders are pure:
//! devices they refer to arrive as ifindexes in [`Ctx::links`], so every
//! kind is unit-tested at the message level even where this kernel lacks
//! it. [`validate`] runs the same builders with placeholder ifindexes
//! before anything is looked up or sent, so a bad name or value is the
//! first error a recipe sees, naming the key and the accepted values.
//!
//! tun/tap ([`tuntap`]) are made with an ioctl and team ([`team`]) by
//! `teamd`; they have no message here.

pub mod bond;
pub mod bridge;
pub mod dummy;
pub mod geneve;
pub mod gre;
pub mod ipip;
pub mod ipvlan;
pub mod macsec;
pub mod macvlan;
pub mod team;
pub mod tuntap;
pub mod veth;
pub mod vlan;
pub mod vrf;
pub mod vti;
pub mod vxlan;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use lnst_common::device::{DeviceSpec, TunnelKind};
use lnst_common::WireError;
use netlink_packet_route::link::LinkMessage;

/// What a builder gets besides its options.
pub struct Ctx<'a> {
    /// The new device's name.
    pub name: &'a str,
    /// The `ip link ... type KIND` word.
    pub kind: &'static str,
    /// Names of [`referenced_links`] → ifindex.
    pub links: &'a HashMap<String, u32>,
    /// An open fd of a veth peer's namespace, if it goes elsewhere.
    pub peer_ns_fd: Option<RawFd>,
}

impl Ctx<'_> {
    /// The ifindex of a referenced device.
    pub fn link(&self, l: &str) -> Result<u32, WireError> {
        self.links.get(l).copied().ok_or_else(|| {
            WireError::not_found(format!(
                "{} {}: link device {l} not found",
                self.kind, self.name
            ))
        })
    }

    /// "KIND: bad value V for KEY (accepted: ..)".
    pub fn bad(&self, key: &str, value: &str, accepted: &str) -> WireError {
        bad(self.kind, key, value, accepted)
    }

    /// `value` looked up in `table` (name → value), or an error naming the
    /// key and every accepted name.
    pub fn pick<T: Copy>(
        &self,
        key: &str,
        value: &str,
        table: &[(&str, T)],
    ) -> Result<T, WireError> {
        table
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(value))
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
                self.bad(key, value, &names.join(", "))
            })
    }

    pub fn ip(&self, key: &str, v: &str) -> Result<IpAddr, WireError> {
        v.parse()
            .map_err(|_| self.bad(key, v, "an IPv4 or IPv6 address"))
    }

    pub fn ip4(&self, key: &str, v: &str) -> Result<Ipv4Addr, WireError> {
        v.parse().map_err(|_| self.bad(key, v, "an IPv4 address"))
    }

    pub fn ip6(&self, key: &str, v: &str) -> Result<Ipv6Addr, WireError> {
        v.parse().map_err(|_| self.bad(key, v, "an IPv6 address"))
    }

    /// An option this kind does not take, given anyway.
    pub fn not_an_option(&self, key: &str, takes: &str) -> WireError {
        WireError::invalid(format!(
            "{}: {key} is not an option of {} devices (only {takes})",
            self.kind, self.kind
        ))
    }
}

fn bad(kind: &str, key: &str, value: &str, accepted: &str) -> WireError {
    WireError::invalid(format!(
        "{kind}: bad value {value:?} for {key} (accepted: {accepted})"
    ))
}

/// An interface name as the kernel takes it: 1-15 bytes (IFNAMSIZ 16 with
/// the NUL), no '/', ':' or whitespace, not "." or "..". `what` says which
/// name it is ("device name", "veth peer", "link").
pub fn check_name(what: &str, name: &str) -> Result<(), WireError> {
    if name.is_empty()
        || name.len() >= libc::IFNAMSIZ
        || name.contains(['/', ':'])
        || name.chars().any(char::is_whitespace)
        || name == "."
        || name == ".."
    {
        let shown: String = name.chars().take(40).collect();
        let more = if name.chars().count() > 40 { "…" } else { "" };
        return Err(WireError::invalid(format!(
            "invalid {what} {shown:?}{more} ({} bytes; accepted: 1-15 bytes, no '/', ':' or whitespace)",
            name.len()
        )));
    }
    Ok(())
}

/// The `ip link ... type KIND` word of a spec.
pub fn kind_name(spec: &DeviceSpec) -> &'static str {
    match spec {
        DeviceSpec::Veth { .. } => "veth",
        DeviceSpec::Bridge { .. } => "bridge",
        DeviceSpec::Bond { .. } => "bond",
        DeviceSpec::Team { .. } => "team",
        DeviceSpec::Vlan { .. } => "vlan",
        DeviceSpec::Macvlan { .. } => "macvlan",
        DeviceSpec::Ipvlan { .. } => "ipvlan",
        DeviceSpec::Vxlan { .. } => "vxlan",
        DeviceSpec::Geneve { .. } => "geneve",
        DeviceSpec::Tunnel { kind, .. } => match kind {
            TunnelKind::Gre => "gre",
            TunnelKind::Gretap => "gretap",
            TunnelKind::Ipip => "ipip",
            TunnelKind::Sit => "sit",
            TunnelKind::Ip6gre => "ip6gre",
            TunnelKind::Ip6tnl => "ip6tnl",
            TunnelKind::Vti => "vti",
        },
        DeviceSpec::Dummy => "dummy",
        DeviceSpec::Vrf { .. } => "vrf",
        DeviceSpec::Tun { .. } => "tun",
        DeviceSpec::Tap { .. } => "tap",
        DeviceSpec::Macsec { .. } => "macsec",
    }
}

/// Names of existing devices (in the same namespace) a spec refers to.
pub fn referenced_links(spec: &DeviceSpec) -> Vec<&str> {
    match spec {
        DeviceSpec::Vlan { link, .. }
        | DeviceSpec::Macvlan { link, .. }
        | DeviceSpec::Ipvlan { link, .. }
        | DeviceSpec::Macsec { link, .. } => vec![link.as_str()],
        DeviceSpec::Vxlan { link: Some(l), .. } | DeviceSpec::Tunnel { link: Some(l), .. } => {
            vec![l.as_str()]
        }
        DeviceSpec::Bond { opts, .. } => opts.primary.iter().map(String::as_str).collect(),
        _ => vec![],
    }
}

/// Builds the `RTM_NEWLINK` message for `name` of `spec`. `links` maps the
/// names of [`referenced_links`] to their ifindexes; `peer_ns_fd` is an open
/// fd of the veth peer's namespace, if it goes elsewhere.
pub fn build_message(
    name: &str,
    spec: &DeviceSpec,
    links: &HashMap<String, u32>,
    peer_ns_fd: Option<RawFd>,
) -> Result<LinkMessage, WireError> {
    let c = Ctx {
        name,
        kind: kind_name(spec),
        links,
        peer_ns_fd,
    };
    match spec {
        DeviceSpec::Veth { peer, .. } => veth::message(&c, peer),
        DeviceSpec::Bridge {
            stp,
            vlan_filtering,
        } => bridge::message(&c, *stp, *vlan_filtering),
        DeviceSpec::Bond {
            mode,
            miimon,
            xmit_hash_policy,
            lacp_rate,
            opts,
        } => bond::message(
            &c,
            mode.as_deref(),
            *miimon,
            xmit_hash_policy.as_deref(),
            lacp_rate.as_deref(),
            opts,
        ),
        DeviceSpec::Team { .. } => Err(WireError::invalid(format!(
            "team {name}: team devices are made by teamd, not a netlink message"
        ))),
        DeviceSpec::Vlan { link, id, protocol } => {
            vlan::message(&c, link, *id, protocol.as_deref())
        }
        DeviceSpec::Macvlan { link, mode } => macvlan::message(&c, link, mode.as_deref()),
        DeviceSpec::Ipvlan { link, mode } => ipvlan::message(&c, link, mode.as_deref()),
        DeviceSpec::Vxlan { .. } => vxlan::message(&c, spec),
        DeviceSpec::Geneve {
            id,
            remote,
            dstport,
        } => geneve::message(&c, *id, remote, *dstport),
        DeviceSpec::Tunnel { kind, .. } => match kind {
            TunnelKind::Gre | TunnelKind::Gretap | TunnelKind::Ip6gre => gre::message(&c, spec),
            TunnelKind::Ipip | TunnelKind::Sit | TunnelKind::Ip6tnl => ipip::message(&c, spec),
            TunnelKind::Vti => vti::message(&c, spec),
        },
        DeviceSpec::Dummy => dummy::message(&c),
        DeviceSpec::Vrf { table } => vrf::message(&c, *table),
        DeviceSpec::Macsec {
            link,
            port,
            encrypt,
        } => macsec::message(&c, link, *port, *encrypt),
        DeviceSpec::Tun { .. } | DeviceSpec::Tap { .. } => Err(WireError::invalid(format!(
            "{} {name}: tun/tap devices are made with the TUNSETIFF ioctl, not a netlink message",
            c.kind
        ))),
    }
}

/// Checks every name and option value of a spec before anything is looked
/// up or sent: the device's name, a veth peer's, the referenced devices',
/// then the kind's own validation (its message built with placeholder
/// ifindexes, or teamd's config for a team).
pub fn validate(name: &str, spec: &DeviceSpec) -> Result<(), WireError> {
    check_name("device name", name)?;
    if let DeviceSpec::Veth { peer, .. } = spec {
        check_name("veth peer name", peer)?;
    }
    let mut links = HashMap::new();
    for l in referenced_links(spec) {
        check_name(&format!("{} link", kind_name(spec)), l)?;
        links.insert(l.to_string(), 1);
    }
    match spec {
        DeviceSpec::Tun { .. } | DeviceSpec::Tap { .. } => Ok(()),
        DeviceSpec::Team { runner, link_watch } => {
            team::config(name, runner.as_deref(), link_watch.as_deref()).map(|_| ())
        }
        _ => build_message(name, spec, &links, None).map(|_| ()),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;
    use netlink_packet_route::link::{InfoData, InfoKind, LinkAttribute, LinkInfo};

    pub fn links() -> HashMap<String, u32> {
        HashMap::from([("eth0".to_string(), 7), ("eth1".to_string(), 8)])
    }

    pub fn infos(m: &LinkMessage) -> (Option<InfoKind>, Option<InfoData>) {
        let mut k = None;
        let mut d = None;
        for a in &m.attributes {
            if let LinkAttribute::LinkInfo(is) = a {
                for i in is {
                    match i {
                        LinkInfo::Kind(x) => k = Some(x.clone()),
                        LinkInfo::Data(x) => d = Some(x.clone()),
                        _ => {}
                    }
                }
            }
        }
        (k, d)
    }

    pub fn has(m: &LinkMessage, a: &LinkAttribute) -> bool {
        m.attributes.contains(a)
    }

    pub fn build(spec: DeviceSpec) -> LinkMessage {
        build_message("x0", &spec, &links(), None).unwrap()
    }

    pub fn build_err(spec: DeviceSpec) -> WireError {
        build_message("x0", &spec, &links(), None).unwrap_err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lnst_common::ErrorKind;

    #[test]
    fn names_are_checked_before_anything() {
        let long = "x".repeat(70_000);
        let e = validate(&long, &DeviceSpec::Dummy).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(
            e.message.contains("1-15 bytes") && e.message.contains("70000 bytes"),
            "{}",
            e.message
        );
        assert!(e.message.len() < 300, "the name is cut in the message");
        assert!(validate("a".repeat(15).as_str(), &DeviceSpec::Dummy).is_ok());
        assert!(validate("a".repeat(16).as_str(), &DeviceSpec::Dummy).is_err());
        for bad in ["", "a/b", "a:b", "a b", ".", ".."] {
            assert!(validate(bad, &DeviceSpec::Dummy).is_err(), "{bad:?}");
        }
        let e = validate(
            "v0",
            &DeviceSpec::Veth {
                peer: "p".repeat(16),
                peer_netns: None,
            },
        )
        .unwrap_err();
        assert!(e.message.contains("veth peer name"), "{}", e.message);
        let e = validate(
            "m0",
            &DeviceSpec::Macvlan {
                link: "l".repeat(20),
                mode: None,
            },
        )
        .unwrap_err();
        assert!(e.message.contains("macvlan link"), "{}", e.message);
        // values are checked with placeholder ifindexes: no lookup needed
        let e = validate(
            "m0",
            &DeviceSpec::Macvlan {
                link: "nosuchdev".into(),
                mode: Some("bogus".into()),
            },
        )
        .unwrap_err();
        assert!(
            e.message.contains("bogus") && e.message.contains("vepa"),
            "{}",
            e.message
        );
    }
}
