//! Soft device specifications (RECIPES.md §7): `bridge()`, `veth(#{ peer })`,
//! `vlan(#{ link, id })`, ... each returns a checked [`DevSpec`] that
//! `h.NAME = SPEC` / `h.create(NAME, SPEC)` sends as `Request::Create`
//! (`ip link add NAME type KIND ...`). Unknown keys and wrong types are
//! errors here, before any request; a kind the host's kernel lacks is the
//! agent's `Unsupported` error, which the recipe may catch.

use lnst_common::device::{BondOptions, DeviceSpec, TunnelKind};
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
    /// A bool, or `ip link`'s spelling of one: "on"/"off", 1/0.
    fn onoff(&self, k: &str) -> R<Option<bool>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) if v.is_bool() => Ok(v.as_bool().ok()),
            Some(v) if v.is_int() => match v.as_int() {
                Ok(0) => Ok(Some(false)),
                Ok(1) => Ok(Some(true)),
                _ => err(format!(
                    "{}(): {k} must be true/false, \"on\"/\"off\" or 1/0, not {v}",
                    self.kind
                )),
            },
            Some(v) if v.is_string() => match v.to_string().as_str() {
                "on" => Ok(Some(true)),
                "off" => Ok(Some(false)),
                o => err(format!(
                    "{}(): {k} must be true/false, \"on\"/\"off\" or 1/0, not {o:?}",
                    self.kind
                )),
            },
            Some(v) => err(format!(
                "{}(): {k} must be a bool, not {}",
                self.kind,
                v.type_name()
            )),
        }
    }
    /// A list of strings: an array, or one comma-separated string (as
    /// `ip link ... arp_ip_target A,B` takes it).
    fn list(&self, k: &str) -> R<Option<Vec<String>>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) if v.is_string() => Ok(Some(
                v.to_string()
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            )),
            Some(v) if v.is_array() => {
                let a = v.cast::<rhai::Array>();
                a.into_iter()
                    .map(|x| {
                        if x.is_string() {
                            Ok(x.to_string())
                        } else {
                            err(format!(
                                "{}(): {k} must hold strings, not {}",
                                self.kind,
                                x.type_name()
                            ))
                        }
                    })
                    .collect::<R<Vec<_>>>()
                    .map(Some)
            }
            Some(v) => err(format!(
                "{}(): {k} must be an array of strings or a comma-separated string, not {}",
                self.kind,
                v.type_name()
            )),
        }
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
    // `mode` only where `ip link` takes it; `key` not for ipip/sit/ip6tnl.
    let keys: &[&str] = match kind {
        TunnelKind::Ipip | TunnelKind::Sit | TunnelKind::Ip6tnl => {
            &["local", "remote", "ttl", "link", "mode"]
        }
        TunnelKind::Vti => &["local", "remote", "key", "link"],
        _ => &["local", "remote", "key", "ttl", "link"],
    };
    let k = Keys::new(name, m, keys)?;
    let opt = |key: &str| keys.contains(&key);
    Ok(plain(DeviceSpec::Tunnel {
        kind,
        local: k.string("local")?,
        remote: k.string("remote")?,
        key: if opt("key") { k.int("key")? } else { None },
        ttl: if opt("ttl") { k.int("ttl")? } else { None },
        link: k.string("link")?,
        mode: if opt("mode") { k.string("mode")? } else { None },
    }))
}

/// Every option of `ip link add type bond` (ip-link(8)); `num_grat_arp`
/// and `num_unsol_na` are one kernel setting, as in `ip link`.
pub const BOND_KEYS: &[&str] = &[
    "mode",
    "miimon",
    "xmit_hash_policy",
    "lacp_rate",
    "updelay",
    "downdelay",
    "peer_notify_delay",
    "use_carrier",
    "arp_interval",
    "arp_validate",
    "arp_all_targets",
    "arp_ip_target",
    "ns_ip6_target",
    "arp_missed_max",
    "primary",
    "primary_reselect",
    "fail_over_mac",
    "resend_igmp",
    "num_grat_arp",
    "num_unsol_na",
    "all_slaves_active",
    "min_links",
    "lp_interval",
    "packets_per_slave",
    "tlb_dynamic_lb",
    "lacp_active",
    "ad_select",
    "ad_user_port_key",
    "ad_actor_sys_prio",
    "ad_actor_system",
    "coupled_control",
    "broadcast_neigh",
];

fn bond(m: Map) -> R<DevSpec> {
    let k = Keys::new("bond", m, BOND_KEYS)?;
    let grat: Option<u8> = k.int("num_grat_arp")?;
    let unsol: Option<u8> = k.int("num_unsol_na")?;
    if let (Some(a), Some(b)) = (grat, unsol) {
        if a != b {
            return err(format!(
                "bond(): num_grat_arp ({a}) and num_unsol_na ({b}) are one setting; give one"
            ));
        }
    }
    let mode = match k.get("mode") {
        Some(v) if v.is_int() => Some(v.to_string()),
        _ => k.string("mode")?,
    };
    Ok(plain(DeviceSpec::Bond {
        mode,
        miimon: k.int("miimon")?,
        xmit_hash_policy: k.string("xmit_hash_policy")?,
        lacp_rate: k.string("lacp_rate")?,
        opts: Box::new(BondOptions {
            updelay: k.int("updelay")?,
            downdelay: k.int("downdelay")?,
            peer_notify_delay: k.int("peer_notify_delay")?,
            use_carrier: k.onoff("use_carrier")?,
            arp_interval: k.int("arp_interval")?,
            arp_validate: k.string("arp_validate")?,
            arp_all_targets: k.string("arp_all_targets")?,
            arp_ip_target: k.list("arp_ip_target")?,
            ns_ip6_target: k.list("ns_ip6_target")?,
            arp_missed_max: k.int("arp_missed_max")?,
            primary: k.string("primary")?,
            primary_reselect: k.string("primary_reselect")?,
            fail_over_mac: k.string("fail_over_mac")?,
            resend_igmp: k.int("resend_igmp")?,
            num_peer_notif: grat.or(unsol),
            all_slaves_active: k.onoff("all_slaves_active")?,
            min_links: k.int("min_links")?,
            lp_interval: k.int("lp_interval")?,
            packets_per_slave: k.int("packets_per_slave")?,
            tlb_dynamic_lb: k.onoff("tlb_dynamic_lb")?,
            lacp_active: k.onoff("lacp_active")?,
            ad_select: k.string("ad_select")?,
            ad_user_port_key: k.int("ad_user_port_key")?,
            ad_actor_sys_prio: k.int("ad_actor_sys_prio")?,
            ad_actor_system: k.string("ad_actor_system")?,
            coupled_control: k.onoff("coupled_control")?,
            broadcast_neigh: k.onoff("broadcast_neigh")?,
        }),
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
        "bond" => bond(m)?,
        "team" => {
            let k = Keys::new(kind, m, &["runner", "link_watch"])?;
            // link_watch: a watcher name, or a map with `name` and its
            // options (arp_ping's target_host, ..), passed to teamd as JSON.
            let link_watch = match k.get("link_watch") {
                Some(v) if v.is_map() => Some(
                    serde_json::to_string(&crate::recipe::value::to_json(&v))
                        .map_err(|e| format!("team(): link_watch: {e}"))?,
                ),
                _ => k.string("link_watch")?,
            };
            plain(DeviceSpec::Team {
                runner: k.string("runner")?,
                link_watch,
            })
        }
        "macsec" => {
            let k = Keys::new(kind, m, &["link", "port", "encrypt"])?;
            plain(DeviceSpec::Macsec {
                link: k.req_string("link")?,
                port: k.int("port")?,
                encrypt: k.onoff("encrypt")?,
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
    "gretap", "ipip", "sit", "ip6gre", "ip6tnl", "vti", "dummy", "vrf", "macsec",
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
        // every bond key is known; a wrong one lists them
        let s = build(
            "bond",
            map(&[
                ("mode", "802.3ad".into()),
                ("arp_ip_target", "10.0.0.1,10.0.0.2".into()),
                ("num_grat_arp", Dynamic::from(3_i64)),
                ("lacp_active", "on".into()),
                ("primary", "eth0".into()),
            ]),
        )
        .unwrap();
        let DeviceSpec::Bond { opts, .. } = s.spec else {
            panic!()
        };
        assert_eq!(
            opts.arp_ip_target,
            Some(vec!["10.0.0.1".into(), "10.0.0.2".into()])
        );
        assert_eq!(opts.num_peer_notif, Some(3));
        assert_eq!(opts.lacp_active, Some(true));
        assert_eq!(opts.primary.as_deref(), Some("eth0"));
        let e = build("bond", map(&[("miimonn", Dynamic::from(1_i64))]))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("miimonn") && e.contains("ad_actor_system") && e.contains("arp_ip_target"),
            "{e}"
        );
        let e = build("bond", map(&[("use_carrier", "maybe".into())]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("use_carrier") && e.contains("on"), "{e}");
        // mode only for ipip/sit/ip6tnl; key not for them
        let s = build("sit", map(&[("mode", "ip6ip".into())])).unwrap();
        assert!(matches!(s.spec, DeviceSpec::Tunnel { mode: Some(_), .. }));
        let e = build("gre", map(&[("mode", "any".into())]))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("mode") && e.contains("known: local, remote, key"),
            "{e}"
        );
        let e = build("ipip", map(&[("key", Dynamic::from(1_i64))]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("key"), "{e}");
        let s = build(
            "macsec",
            map(&[
                ("link", "eth0".into()),
                ("port", Dynamic::from(11_i64)),
                ("encrypt", "on".into()),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.spec,
            DeviceSpec::Macsec {
                link: "eth0".into(),
                port: Some(11),
                encrypt: Some(true)
            }
        );
        let s = build(
            "team",
            map(&[("runner", "lacp".into()), ("link_watch", "ethtool".into())]),
        )
        .unwrap();
        assert_eq!(
            s.spec,
            DeviceSpec::Team {
                runner: Some("lacp".into()),
                link_watch: Some("ethtool".into())
            }
        );
    }
}
