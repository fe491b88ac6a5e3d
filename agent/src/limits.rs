//! Request limits: every name, path and string a request carries is checked
//! here, in [`check`], before any handler builds a netlink message or
//! touches the file system.
//!
//! Why one place: netlink-packet-route panics inside the connection task
//! when an attribute is longer than a netlink attribute can hold (~64 KiB),
//! which used to leave that namespace's netlink connection dead; a NUL byte
//! in a namespace name made `CString` panic a thread. A device name the
//! kernel cannot hold (IFNAMSIZ 16 with its NUL) is refused with the same
//! words `ip link` uses, so the user sees the mistake, not a crash.
//! [`check`] is called by [`crate::dispatch::dispatch`] first.

use lnst_common::device::{DevRef, DeviceSpec};
use lnst_common::host::RouteSpec;
use lnst_common::{Request, WireError};

/// `IFNAMSIZ` - 1: the longest device name the kernel accepts.
pub const IFNAME_MAX: usize = 15;
/// `NAME_MAX`: a namespace name is a file name under `/run/netns`.
pub const NETNS_NAME_MAX: usize = 255;
/// `PATH_MAX` - 1.
pub const PATH_MAX: usize = 4095;
/// Longest sysctl key (a path under `/proc/sys`) or value we pass on.
pub const SYSCTL_MAX: usize = 4095;
/// Longest short text (MAC, CIDR, address, mode names, signal-free words).
pub const WORD_MAX: usize = 255;
/// Longest job command line (`sh -c` gets it as one argument; the kernel's
/// `MAX_ARG_STRLEN` is 32 pages).
pub const COMMAND_MAX: usize = 128 * 1024;

/// Checks `req` against the limits above; the error names the field.
pub fn check(req: &Request) -> Result<(), WireError> {
    match req {
        Request::Ping | Request::EndSession | Request::JournalEmpty => Ok(()),
        Request::JournalTest { path, marker } => {
            self::path("path", path)?;
            text("marker", marker, WORD_MAX)
        }
        Request::JobStart(spec) => {
            text("command", &spec.command, COMMAND_MAX)?;
            netns_opt(&spec.netns)?;
            if let Some(c) = &spec.cwd {
                self::path("cwd", c)?;
            }
            for (k, v) in &spec.env {
                if k.is_empty() || k.contains('=') {
                    return Err(WireError::invalid(format!(
                        "invalid environment variable name {:?}",
                        clip(k)
                    )));
                }
                text("environment variable name", k, WORD_MAX)?;
                text("environment variable value", v, COMMAND_MAX)?;
            }
            Ok(())
        }
        Request::JobWait { .. } | Request::JobKill { .. } => Ok(()),
        Request::Devices { netns } => netns_opt(netns),
        Request::SetMtu { dev, .. }
        | Request::SetState { dev, .. }
        | Request::IpFlush { dev }
        | Request::Features { dev }
        | Request::WaitCarrier { dev, .. }
        | Request::Destroy { dev } => devref(dev),
        Request::SetMac { dev, mac } => {
            devref(dev)?;
            text("MAC address", mac, WORD_MAX)
        }
        Request::SetMaster { dev, master } => {
            devref(dev)?;
            match master {
                Some(m) => ifname("master", m),
                None => Ok(()),
            }
        }
        Request::IpAdd { dev, cidr } | Request::IpDel { dev, cidr } => {
            devref(dev)?;
            text("address", cidr, WORD_MAX)
        }
        Request::SetFeatures { dev, features } => {
            devref(dev)?;
            for k in features.keys() {
                text("feature name", k, WORD_MAX)?;
            }
            Ok(())
        }
        Request::MoveTo { dev, netns } => {
            devref(dev)?;
            netns_opt(netns)
        }
        Request::Create { netns, name, spec } => {
            netns_opt(netns)?;
            ifname("device name", name)?;
            device_spec(spec)
        }
        Request::NetnsCreate { name } => netns_name(name),
        Request::SysctlGet { netns, key } => {
            netns_opt(netns)?;
            text("sysctl key", key, SYSCTL_MAX)
        }
        Request::SysctlSet { netns, key, value } => {
            netns_opt(netns)?;
            text("sysctl key", key, SYSCTL_MAX)?;
            text("sysctl value", value, SYSCTL_MAX)
        }
        Request::FileRead { netns, path } | Request::FileWrite { netns, path, .. } => {
            netns_opt(netns)?;
            self::path("path", path)
        }
        Request::RouteAdd { netns, route } | Request::RouteDel { netns, route } => {
            netns_opt(netns)?;
            route_spec(route)
        }
        Request::FilePut { path, .. } | Request::FileGet { path, .. } => self::path("path", path),
        Request::Defer { netns, command } => {
            netns_opt(netns)?;
            text("command", command, COMMAND_MAX)
        }
        Request::NeighAdd { netns, neigh } | Request::NeighDel { netns, neigh } => {
            netns_opt(netns)?;
            ifname("dev", &neigh.dev)?;
            text("neighbour address", &neigh.dst, WORD_MAX)?;
            match &neigh.lladdr {
                Some(l) => text("lladdr", l, WORD_MAX),
                None => Ok(()),
            }
        }
        Request::Neighs { netns, dev } => {
            netns_opt(netns)?;
            match dev {
                Some(d) => ifname("dev", d),
                None => Ok(()),
            }
        }
        Request::EthtoolGet { dev, group } => {
            devref(dev)?;
            text("ethtool group", group, WORD_MAX)
        }
        Request::EthtoolSet { dev, group, values } => {
            devref(dev)?;
            text("ethtool group", group, WORD_MAX)?;
            for k in values.keys() {
                text("ethtool setting", k, WORD_MAX)?;
            }
            Ok(())
        }
        Request::IpAddWith { dev, cidr, .. } => {
            devref(dev)?;
            text("address", cidr, WORD_MAX)
        }
        Request::Netem { dev, .. } => devref(dev),
        Request::Service { name, action } => {
            text("service name", name, WORD_MAX)?;
            text("service action", action, WORD_MAX)
        }
    }
}

/// Every string in a device spec. Link names are IFNAMSIZ-checked; other
/// words (modes, addresses) only bounded and NUL-free.
fn device_spec(spec: &DeviceSpec) -> Result<(), WireError> {
    let word = |what: &str, s: &Option<String>| match s {
        Some(s) => text(what, s, WORD_MAX),
        None => Ok(()),
    };
    let link = |s: &Option<String>| match s {
        Some(s) => ifname("link", s),
        None => Ok(()),
    };
    match spec {
        DeviceSpec::Veth { peer, peer_netns } => {
            ifname("peer", peer)?;
            netns_opt(peer_netns)
        }
        DeviceSpec::Bridge { .. }
        | DeviceSpec::Dummy
        | DeviceSpec::Vrf { .. }
        | DeviceSpec::Tun { .. }
        | DeviceSpec::Tap { .. } => Ok(()),
        DeviceSpec::Bond {
            mode,
            xmit_hash_policy,
            lacp_rate,
            ..
        } => {
            word("mode", mode)?;
            word("xmit_hash_policy", xmit_hash_policy)?;
            word("lacp_rate", lacp_rate)
        }
        DeviceSpec::Team { runner, link_watch } => {
            word("runner", runner)?;
            word("link_watch", link_watch)
        }
        DeviceSpec::Vlan { link, protocol, .. } => {
            ifname("link", link)?;
            word("protocol", protocol)
        }
        DeviceSpec::Macvlan { link, mode } | DeviceSpec::Ipvlan { link, mode } => {
            ifname("link", link)?;
            word("mode", mode)
        }
        DeviceSpec::Vxlan {
            link: l,
            local,
            remote,
            group,
            ..
        } => {
            link(l)?;
            word("local", local)?;
            word("remote", remote)?;
            word("group", group)
        }
        DeviceSpec::Geneve { remote, .. } => text("remote", remote, WORD_MAX),
        DeviceSpec::Tunnel {
            local,
            remote,
            link: l,
            ..
        } => {
            link(l)?;
            word("local", local)?;
            word("remote", remote)
        }
        DeviceSpec::Macsec { link, .. } => ifname("link", link),
    }
}

fn route_spec(r: &RouteSpec) -> Result<(), WireError> {
    text("route destination", &r.dst, WORD_MAX)?;
    if let Some(v) = &r.via {
        text("route gateway", v, WORD_MAX)?;
    }
    if let Some(d) = &r.dev {
        ifname("route dev", d)?;
    }
    Ok(())
}

fn devref(d: &DevRef) -> Result<(), WireError> {
    netns_opt(&d.netns)?;
    ifname("device name", &d.name)
}

/// A device name as the kernel takes it (`dev_valid_name`): 1 to 15 bytes,
/// no `/`, no whitespace, no NUL, not `.` or `..`.
pub fn ifname(what: &str, name: &str) -> Result<(), WireError> {
    if name.len() > IFNAME_MAX {
        return Err(WireError::invalid(format!(
            "{what} {:?} is too long: {} bytes, a device name has at most {IFNAME_MAX} (IFNAMSIZ)",
            clip(name),
            name.len()
        )));
    }
    if name.is_empty()
        || name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == 0 || b == b'/' || b == b':' || b.is_ascii_whitespace())
    {
        return Err(WireError::invalid(format!(
            "{what} {name:?} is not a valid device name (empty, \".\", \"..\", or contains '/', ':', whitespace or NUL)"
        )));
    }
    Ok(())
}

fn netns_opt(n: &Option<String>) -> Result<(), WireError> {
    match n {
        Some(n) => netns_name(n),
        None => Ok(()),
    }
}

/// A namespace name is a file name under `/run/netns`.
pub fn netns_name(name: &str) -> Result<(), WireError> {
    if name.len() > NETNS_NAME_MAX {
        return Err(WireError::invalid(format!(
            "network namespace name {:?} is too long: {} bytes, at most {NETNS_NAME_MAX}",
            clip(name),
            name.len()
        )));
    }
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(WireError::invalid(format!(
            "invalid network namespace name {name:?} (empty, \".\", \"..\", or contains '/' or NUL)"
        )));
    }
    Ok(())
}

fn path(what: &str, p: &str) -> Result<(), WireError> {
    if p.is_empty() {
        return Err(WireError::invalid(format!("{what} is empty")));
    }
    text(what, p, PATH_MAX)
}

/// At most `max` bytes and no NUL (every one of these strings ends up in a
/// C string or a netlink attribute).
fn text(what: &str, s: &str, max: usize) -> Result<(), WireError> {
    if s.len() > max {
        return Err(WireError::invalid(format!(
            "{what} {:?} is too long: {} bytes, at most {max}",
            clip(s),
            s.len()
        )));
    }
    if s.contains('\0') {
        return Err(WireError::invalid(format!(
            "{what} {:?} contains a NUL byte",
            clip(s)
        )));
    }
    Ok(())
}

/// The first 32 characters of `s`, for messages about oversized values.
fn clip(s: &str) -> String {
    match s.char_indices().nth(32) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str) -> DevRef {
        DevRef {
            netns: None,
            name: name.into(),
        }
    }

    #[test]
    fn device_names_follow_the_kernel() {
        assert!(ifname("d", "eth0").is_ok());
        assert!(ifname("d", "a23456789012345").is_ok());
        let e = ifname("d", "a234567890123456").unwrap_err();
        assert!(e.message.contains("IFNAMSIZ"), "{}", e.message);
        for bad in ["", ".", "..", "a/b", "a b", "a\0b", "a:b"] {
            assert!(ifname("d", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn huge_names_are_refused_everywhere_with_a_short_message() {
        let s = "x".repeat(70_000);
        let reqs = [
            Request::SetMaster {
                dev: dev("eth0"),
                master: Some(s.clone()),
            },
            Request::SetMtu {
                dev: dev(&s),
                mtu: 1500,
            },
            Request::RouteAdd {
                netns: None,
                route: RouteSpec {
                    dst: "10.0.0.0/8".into(),
                    via: None,
                    dev: Some(s.clone()),
                    table: None,
                    metric: None,
                },
            },
            Request::Create {
                netns: None,
                name: "v0".into(),
                spec: DeviceSpec::Veth {
                    peer: s.clone(),
                    peer_netns: None,
                },
            },
            Request::NetnsCreate { name: s.clone() },
            Request::FileRead {
                netns: None,
                path: s.clone(),
            },
        ];
        for r in &reqs {
            let e = check(r).unwrap_err();
            assert!(e.message.len() < 200, "{}", e.message);
        }
    }

    #[test]
    fn nul_in_namespace_name_is_refused() {
        assert!(check(&Request::NetnsCreate {
            name: "a\0b".into()
        })
        .is_err());
        assert!(check(&Request::Devices {
            netns: Some("a\0b".into())
        })
        .is_err());
    }
}
