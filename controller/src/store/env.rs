//! `environment.json`: each host's environment as its agent reported it at
//! session start (`Welcome.env`), keyed by requirement host and, for NICs,
//! by the recipe's NIC name (the mapping says which interface that is).
//! The HTML report reads this file; the store keeps a copy per run; series
//! keys take the NICs' driver and speed from it.
//!
//! One match (the usual run) is one object, host → environment. With
//! `--all-matches` a host maps onto a different machine in each match, so
//! the file is an array of those objects, one per match in `mapping.json`'s
//! order ([`to_file`], [`from_file`]).

use std::collections::BTreeMap;

use lnst_common::env::HostEnv;
use serde::{Deserialize, Serialize};

use crate::mapper::HostMatch;

/// `environment.json`: requirement host → its environment.
pub type Environment = BTreeMap<String, HostEnvironment>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostEnvironment {
    /// The pool machine (or lab host) it ran on.
    pub machine: String,
    pub kernel: String,
    pub cmdline: String,
    pub cpu_model: String,
    pub cpus: u32,
    /// Recipe NIC name → the interface it mapped to.
    pub nics: BTreeMap<String, NicEnvironment>,
}

/// `environment.json`'s value for the environments of a run's matches.
pub fn to_file(per_match: &[Environment]) -> serde_json::Value {
    match per_match {
        [one] => serde_json::to_value(one),
        many => serde_json::to_value(many),
    }
    .unwrap_or_default()
}

/// Each match's environments from `environment.json` (either shape).
pub fn from_file(v: serde_json::Value) -> Result<Vec<Environment>, serde_json::Error> {
    if v.is_array() {
        serde_json::from_value(v)
    } else {
        serde_json::from_value(v).map(|e| vec![e])
    }
}

/// One NIC as the agent reported it: the wire type itself, so the two
/// never drift apart (`environment.json` is its JSON).
pub use lnst_common::env::NicEnv as NicEnvironment;

/// One host's entry from what its agent sent and the mapping of its NICs.
/// A mapped NIC the agent did not list keeps only its interface name.
pub fn host_environment(hm: &HostMatch, env: &HostEnv) -> HostEnvironment {
    let nics = hm
        .nics
        .iter()
        .map(|(recipe_nic, ifname)| {
            let n = env.nics.iter().find(|n| &n.ifname == ifname);
            let e = match n {
                Some(n) => n.clone(),
                None => NicEnvironment {
                    ifname: ifname.clone(),
                    ..Default::default()
                },
            };
            (recipe_nic.clone(), e)
        })
        .collect();
    HostEnvironment {
        machine: hm.machine.clone(),
        kernel: env.kernel.clone(),
        cmdline: env.cmdline.clone(),
        cpu_model: env.cpu_model.clone(),
        cpus: env.cpus,
        nics,
    }
}

/// The hardware part of a series' role for one host: its NICs' distinct
/// `driver@speed` (`ixgbe@10000`, `veth@10000`, `?` when unknown), so a
/// 10G and a 25G NIC never share a series.
pub fn hardware(env: Option<&HostEnvironment>) -> String {
    let Some(e) = env else {
        return "?".into();
    };
    let mut hw: Vec<String> = e
        .nics
        .values()
        .map(|n| {
            let d = if n.driver.is_empty() { "?" } else { &n.driver };
            match n.speed_mbps {
                Some(s) => format!("{d}@{s}"),
                None => format!("{d}@?"),
            }
        })
        .collect();
    hw.sort();
    hw.dedup();
    if hw.is_empty() {
        "-".into()
    } else {
        hw.join(",")
    }
}

/// What differs between two runs' environments, one line per difference
/// (`h1 kernel: 6.1.0 -> 6.18.0`, `h1 eth0 driver_version: ..`); features
/// are compared one by one.
pub fn differences(a: &Environment, b: &Environment) -> Vec<String> {
    let mut out = Vec::new();
    let hosts: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for h in hosts {
        let (x, y) = match (a.get(h), b.get(h)) {
            (Some(x), Some(y)) => (x, y),
            (Some(_), None) => {
                out.push(format!("{h}: only in the first run"));
                continue;
            }
            (None, _) => {
                out.push(format!("{h}: only in the second run"));
                continue;
            }
        };
        let mut field = |name: &str, p: String, q: String| {
            if p != q {
                out.push(format!("{h} {name}: {p} -> {q}"));
            }
        };
        field("machine", x.machine.clone(), y.machine.clone());
        field("kernel", x.kernel.clone(), y.kernel.clone());
        field("cmdline", x.cmdline.clone(), y.cmdline.clone());
        field("cpu_model", x.cpu_model.clone(), y.cpu_model.clone());
        field("cpus", x.cpus.to_string(), y.cpus.to_string());
        let nics: std::collections::BTreeSet<&String> =
            x.nics.keys().chain(y.nics.keys()).collect();
        for n in nics {
            let (Some(p), Some(q)) = (x.nics.get(n), y.nics.get(n)) else {
                out.push(format!("{h} {n}: in one run only"));
                continue;
            };
            let sp = |s: Option<u32>| s.map_or("unknown".to_string(), |v| format!("{v} Mb/s"));
            for (name, u, v) in [
                ("ifname", p.ifname.clone(), q.ifname.clone()),
                ("driver", p.driver.clone(), q.driver.clone()),
                (
                    "driver_version",
                    p.driver_version.clone(),
                    q.driver_version.clone(),
                ),
                ("firmware", p.firmware.clone(), q.firmware.clone()),
                ("bus", p.bus.clone(), q.bus.clone()),
                ("speed", sp(p.speed_mbps), sp(q.speed_mbps)),
                ("mtu", p.mtu.to_string(), q.mtu.to_string()),
                ("mac", p.mac.clone(), q.mac.clone()),
            ] {
                if u != v {
                    out.push(format!("{h} {n} {name}: {u} -> {v}"));
                }
            }
            let feats: std::collections::BTreeSet<&String> =
                p.features.keys().chain(q.features.keys()).collect();
            for f in feats {
                let s = |v: Option<&bool>| match v {
                    Some(true) => "on",
                    Some(false) => "off",
                    None => "absent",
                };
                let (u, v) = (p.features.get(f), q.features.get(f));
                if u != v {
                    out.push(format!("{h} {n} feature {f}: {} -> {}", s(u), s(v)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lnst_common::env::NicEnv;

    fn env(speed: Option<u32>) -> HostEnv {
        HostEnv {
            kernel: "6.18.0".into(),
            cpus: 2,
            nics: vec![NicEnv {
                ifname: "ens1f0".into(),
                driver: "ixgbe".into(),
                speed_mbps: speed,
                mtu: 1500,
                features: [("generic-receive-offload".to_string(), true)].into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn nics_by_recipe_name_and_hardware() {
        let hm = HostMatch {
            machine: "m1".into(),
            nics: [("eth0".to_string(), "ens1f0".to_string())].into(),
        };
        let e = host_environment(&hm, &env(Some(10000)));
        assert_eq!(e.nics["eth0"].ifname, "ens1f0");
        assert_eq!(e.nics["eth0"].driver, "ixgbe");
        assert_eq!(hardware(Some(&e)), "ixgbe@10000");
        assert_eq!(
            hardware(Some(&host_environment(&hm, &env(None)))),
            "ixgbe@?"
        );
        assert_eq!(hardware(None), "?");
        let j = serde_json::to_value(&e).unwrap();
        assert!(j["nics"]["eth0"]["speed_mbps"].is_u64());
        assert!(
            serde_json::to_value(host_environment(&hm, &env(None))).unwrap()["nics"]["eth0"]
                ["speed_mbps"]
                .is_null()
        );
    }

    #[test]
    fn differences_name_what_changed() {
        let hm = HostMatch {
            machine: "m1".into(),
            nics: [("eth0".to_string(), "ens1f0".to_string())].into(),
        };
        let a: Environment = [("h1".to_string(), host_environment(&hm, &env(Some(10000))))].into();
        let mut b = a.clone();
        let h = b.get_mut("h1").unwrap();
        h.kernel = "6.19.0".into();
        h.nics.get_mut("eth0").unwrap().speed_mbps = Some(25000);
        h.nics
            .get_mut("eth0")
            .unwrap()
            .features
            .insert("generic-receive-offload".into(), false);
        let d = differences(&a, &b);
        assert!(
            d.contains(&"h1 kernel: 6.18.0 -> 6.19.0".to_string()),
            "{d:?}"
        );
        assert!(
            d.contains(&"h1 eth0 speed: 10000 Mb/s -> 25000 Mb/s".to_string()),
            "{d:?}"
        );
        assert!(
            d.contains(&"h1 eth0 feature generic-receive-offload: on -> off".to_string()),
            "{d:?}"
        );
        assert!(differences(&a, &a).is_empty());
    }
}
