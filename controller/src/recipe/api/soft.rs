//! Soft device specifications (RECIPES.md §7): `bridge()`, `veth(#{ peer })`,
//! `vlan(#{ link, id })`, ... each returns a checked [`DevSpec`] that
//! `h.NAME = SPEC` / `h.create(NAME, SPEC)` sends as `Request::Create`
//! (`ip link add NAME type KIND ...`). Unknown keys and wrong types are
//! errors here, before any request; a kind the host's kernel lacks is the
//! agent's `Unsupported` error, which the recipe may catch.

use lnst_common::device::{DeviceSpec, TunnelKind};
use rhai::{Dynamic, Engine, Map};

use super::device::Device;
use super::host::Host;
use super::{err, R};

/// A soft device to create, plus where a veth peer should appear.
#[derive(Clone)]
pub struct DevSpec {
    pub spec: DeviceSpec,
    /// A veth peer's namespace given as a host-like object, so the peer
    /// can be registered there as `ns.PEER`.
    pub peer_host: Option<Host>,
}

struct Keys<'a> {
    kind: &'a str,
    map: Map,
    allowed: &'a [&'a str],
}

impl<'a> Keys<'a> {
    fn new(kind: &'a str, map: Map, allowed: &'a [&'a str]) -> R<Self> {
        for k in map.keys() {
            if !allowed.contains(&k.as_str()) {
                return err(format!(
                    "{kind}(): unknown key {k:?}; known: {}",
                    if allowed.is_empty() {
                        "(none)".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ));
            }
        }
        Ok(Keys { kind, map, allowed })
    }
    fn get(&self, k: &str) -> Option<Dynamic> {
        debug_assert!(self.allowed.contains(&k));
        self.map.get(k).filter(|v| !v.is_unit()).cloned()
    }
    fn string(&self, k: &str) -> R<Option<String>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) if v.is_string() => Ok(Some(v.to_string())),
            Some(v) => match v.clone().try_cast::<Device>() {
                Some(d) => Ok(Some(d.0.dref_name())),
                None => err(format!(
                    "{}(): {k} must be a string, not {}",
                    self.kind,
                    v.type_name()
                )),
            },
        }
    }
    fn req_string(&self, k: &str) -> R<String> {
        self.string(k)?
            .ok_or_else(|| format!("{}(): {k} is required", self.kind).into())
    }
    fn int<T: TryFrom<i64>>(&self, k: &str) -> R<Option<T>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => {
                let i = v
                    .as_int()
                    .map_err(|t| format!("{}(): {k} must be an int, not {t}", self.kind))?;
                T::try_from(i)
                    .map(Some)
                    .map_err(|_| format!("{}(): {k} = {i} is out of range", self.kind).into())
            }
        }
    }
    fn req_int<T: TryFrom<i64>>(&self, k: &str) -> R<T> {
        self.int(k)?
            .ok_or_else(|| format!("{}(): {k} is required", self.kind).into())
    }
    fn boolean(&self, k: &str) -> R<Option<bool>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .map_err(|t| format!("{}(): {k} must be a bool, not {t}", self.kind).into()),
        }
    }
}

fn tunnel(kind: TunnelKind, name: &str, m: Map) -> R<DevSpec> {
    let k = Keys::new(name, m, &["local", "remote", "key", "ttl", "link"])?;
    Ok(plain(DeviceSpec::Tunnel {
        kind,
        local: k.string("local")?,
        remote: k.string("remote")?,
        key: k.int("key")?,
        ttl: k.int("ttl")?,
        link: k.string("link")?,
    }))
}

fn plain(spec: DeviceSpec) -> DevSpec {
    DevSpec {
        spec,
        peer_host: None,
    }
}

/// Builds the spec of constructor `kind` from its option map.
pub fn build(kind: &str, m: Map) -> R<DevSpec> {
    Ok(match kind {
        "veth" => {
            let k = Keys::new(kind, m, &["peer", "peer_netns"])?;
            let peer_host = k.get("peer_netns").and_then(|v| v.try_cast::<Host>());
            let peer_netns = match &peer_host {
                Some(h) => Some(h.0.netns.clone().ok_or_else(|| {
                    format!("veth(): peer_netns: host {} is not a namespace", h.0.name)
                })?),
                None => k.string("peer_netns")?,
            };
            DevSpec {
                spec: DeviceSpec::Veth {
                    peer: k.req_string("peer")?,
                    peer_netns,
                },
                peer_host,
            }
        }
        "bridge" => {
            let k = Keys::new(kind, m, &["stp", "vlan_filtering"])?;
            plain(DeviceSpec::Bridge {
                stp: k.boolean("stp")?,
                vlan_filtering: k.boolean("vlan_filtering")?,
            })
        }
        "bond" => {
            let k = Keys::new(
                kind,
                m,
                &["mode", "miimon", "xmit_hash_policy", "lacp_rate"],
            )?;
            plain(DeviceSpec::Bond {
                mode: k.string("mode")?,
                miimon: k.int("miimon")?,
                xmit_hash_policy: k.string("xmit_hash_policy")?,
                lacp_rate: k.string("lacp_rate")?,
            })
        }
        "team" => {
            let k = Keys::new(kind, m, &["runner"])?;
            plain(DeviceSpec::Team {
                runner: k.string("runner")?,
            })
        }
        "vlan" => {
            let k = Keys::new(kind, m, &["link", "id", "protocol"])?;
            plain(DeviceSpec::Vlan {
                link: k.req_string("link")?,
                id: k.req_int("id")?,
                protocol: k.string("protocol")?,
            })
        }
        "macvlan" | "ipvlan" => {
            let k = Keys::new(kind, m, &["link", "mode"])?;
            let (link, mode) = (k.req_string("link")?, k.string("mode")?);
            plain(if kind == "macvlan" {
                DeviceSpec::Macvlan { link, mode }
            } else {
                DeviceSpec::Ipvlan { link, mode }
            })
        }
        "vxlan" => {
            let k = Keys::new(
                kind,
                m,
                &["id", "link", "local", "remote", "group", "dstport", "ttl"],
            )?;
            plain(DeviceSpec::Vxlan {
                id: k.req_int("id")?,
                link: k.string("link")?,
                local: k.string("local")?,
                remote: k.string("remote")?,
                group: k.string("group")?,
                dstport: k.int("dstport")?,
                ttl: k.int("ttl")?,
            })
        }
        "geneve" => {
            let k = Keys::new(kind, m, &["id", "remote", "dstport"])?;
            plain(DeviceSpec::Geneve {
                id: k.req_int("id")?,
                remote: k.req_string("remote")?,
                dstport: k.int("dstport")?,
            })
        }
        "gre" => tunnel(TunnelKind::Gre, kind, m)?,
        "gretap" => tunnel(TunnelKind::Gretap, kind, m)?,
        "ipip" => tunnel(TunnelKind::Ipip, kind, m)?,
        "sit" => tunnel(TunnelKind::Sit, kind, m)?,
        "ip6gre" => tunnel(TunnelKind::Ip6gre, kind, m)?,
        "ip6tnl" => tunnel(TunnelKind::Ip6tnl, kind, m)?,
        "vti" => tunnel(TunnelKind::Vti, kind, m)?,
        "dummy" => {
            Keys::new(kind, m, &[])?;
            plain(DeviceSpec::Dummy)
        }
        "vrf" => {
            let k = Keys::new(kind, m, &["table"])?;
            plain(DeviceSpec::Vrf {
                table: k.req_int("table")?,
            })
        }
        other => return err(format!("unknown device kind {other:?}")),
    })
}

/// Constructor names, as recipes call them.
pub const KINDS: &[&str] = &[
    "veth", "bridge", "bond", "team", "vlan", "macvlan", "ipvlan", "vxlan", "geneve", "gre",
    "gretap", "ipip", "sit", "ip6gre", "ip6tnl", "vti", "dummy", "vrf",
];

/// Registers every constructor, with and without a map.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<DevSpec>("DeviceSpec");
    for &k in KINDS {
        engine.register_fn(k, move |m: Map| build(k, m));
        engine.register_fn(k, move || build(k, Map::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, Dynamic)]) -> Map {
        kv.iter().map(|(k, v)| ((*k).into(), v.clone())).collect()
    }

    #[test]
    fn specs_are_checked() {
        let s = build(
            "vlan",
            map(&[("link", "eth0".into()), ("id", Dynamic::from(10_i64))]),
        )
        .unwrap();
        assert_eq!(
            s.spec,
            DeviceSpec::Vlan {
                link: "eth0".into(),
                id: 10,
                protocol: None
            }
        );
        let e = build(
            "vlan",
            map(&[("link", "eth0".into()), ("id", Dynamic::from(70000_i64))]),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("out of range"), "{e}");
        let e = build("bridge", map(&[("stpp", true.into())]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("stpp") && e.contains("vlan_filtering"), "{e}");
        let e = build("veth", Map::new()).err().unwrap().to_string();
        assert!(e.contains("peer is required"), "{e}");
        assert_eq!(build("dummy", Map::new()).unwrap().spec, DeviceSpec::Dummy);
        let e = build("bond", map(&[("miimon", "x".into())]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("must be an int"), "{e}");
    }
}
