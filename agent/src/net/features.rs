//! `ethtool -k DEV` / `ethtool -K DEV gro off ...`: offload features.
//!
//! Names are those `ethtool -k` prints: the legacy names for the kernel
//! features they stand for alone (`generic-receive-offload` for `rx-gro`),
//! the legacy group names (`tx-checksumming`, `scatter-gather`,
//! `tcp-segmentation-offload`: on when any member is on) and every other
//! kernel feature by its kernel name. `set_features` also takes the short
//! aliases of `ethtool -K` (gro, gso, tso, lro, rx, tx, sg, ...) and kernel
//! names; reads carry both the `ethtool -k` names and those short
//! aliases ([`readable`]). Reading and writing use the `SIOCETHTOOL` ioctls
//! (`ETHTOOL_GSTRINGS`/`GFEATURES`/`SFEATURES`): the `ethtool` crate 0.3
//! cannot set features and drops feature bit 0 (`tx-scatter-gather`) when
//! parsing, so it is not used here.

use std::collections::BTreeMap;

use lnst_common::device::{DevRef, Features};
use lnst_common::WireError;

use super::driver::{feature_bits, set_feature_bits, FeatureBit};
use super::links::get_link;
use super::{ns_label, NetUndo, Nets, Recorder};

/// `(long name, short alias, kernel features)` as in ethtool's `off_flag_def`.
const LEGACY: &[(&str, &str, &[&str])] = &[
    ("rx-checksumming", "rx", &["rx-checksum"]),
    (
        "tx-checksumming",
        "tx",
        &[
            "tx-checksum-ipv4",
            "tx-checksum-ip-generic",
            "tx-checksum-ipv6",
            "tx-checksum-fcoe-crc",
            "tx-checksum-sctp",
        ],
    ),
    (
        "scatter-gather",
        "sg",
        &["tx-scatter-gather", "tx-scatter-gather-fraglist"],
    ),
    (
        "tcp-segmentation-offload",
        "tso",
        &[
            "tx-tcp-segmentation",
            "tx-tcp-ecn-segmentation",
            "tx-tcp-mangleid-segmentation",
            "tx-tcp6-segmentation",
            // kernel 6.18; ethtool -k shows it under the group
            "tx-tcp-accecn-segmentation",
        ],
    ),
    (
        "udp-fragmentation-offload",
        "ufo",
        &["tx-udp-fragmentation"],
    ),
    (
        "generic-segmentation-offload",
        "gso",
        &["tx-generic-segmentation"],
    ),
    ("generic-receive-offload", "gro", &["rx-gro"]),
    ("large-receive-offload", "lro", &["rx-lro"]),
    ("rx-vlan-offload", "rxvlan", &["rx-vlan-hw-parse"]),
    ("tx-vlan-offload", "txvlan", &["tx-vlan-hw-insert"]),
    ("ntuple-filters", "ntuple", &["rx-ntuple-filter"]),
    ("receive-hashing", "rxhash", &["rx-hashing"]),
];

/// The `ethtool -k` view of kernel feature bits.
pub fn present(bits: &[FeatureBit]) -> Features {
    let mut out = BTreeMap::new();
    let mut covered = std::collections::HashSet::new();
    for (long, _, members) in LEGACY {
        let on: Vec<bool> = bits
            .iter()
            .filter(|b| members.contains(&b.name.as_str()))
            .map(|b| b.active)
            .collect();
        if on.is_empty() {
            continue;
        }
        out.insert(long.to_string(), on.iter().any(|&x| x));
        if members.len() == 1 {
            covered.insert(members[0]);
        }
    }
    for b in bits {
        if !covered.contains(b.name.as_str()) {
            out.insert(b.name.clone(), b.active);
        }
    }
    out
}

/// What `dev.features` reads: the `ethtool -k` view plus the short names
/// of `ethtool -K` (`gro`, `tso`, `sg`, ...) with the same values, so a
/// recipe reads a feature by the name it set it with (RECIPES.md §6).
pub fn readable(bits: &[FeatureBit]) -> Features {
    let mut out = present(bits);
    for (long, short, _) in LEGACY {
        if let Some(&v) = out.get(*long) {
            out.insert(short.to_string(), v);
        }
    }
    out
}

/// Kernel features a requested name stands for, or `None` if unknown.
pub fn expand<'a>(name: &str, bits: &'a [FeatureBit]) -> Option<Vec<&'a FeatureBit>> {
    let members: Vec<&str> = match LEGACY.iter().find(|(l, s, _)| *l == name || *s == name) {
        Some((_, _, m)) => m.to_vec(),
        None => vec![name],
    };
    let found: Vec<&FeatureBit> = bits
        .iter()
        .filter(|b| members.contains(&b.name.as_str()))
        .collect();
    if found.is_empty() {
        None
    } else {
        Some(found)
    }
}

/// `ethtool -k DEV`
pub async fn features(nets: &Nets, dev: &DevRef) -> Result<Features, WireError> {
    let conn = nets.conn(dev.netns.as_deref()).await?;
    get_link(&conn, dev).await?;
    Ok(readable(&feature_bits(&conn.inet, &dev.name)?))
}

/// `ethtool -K DEV NAME on|off ...`; records the old values of the
/// features it changes; returns the features afterwards. Every name is
/// checked (known, changeable) before anything changes; a change the
/// kernel does not make is an error naming the feature.
pub async fn set_features(
    nets: &Nets,
    rec: &dyn Recorder,
    dev: &DevRef,
    want: &Features,
) -> Result<Features, WireError> {
    let conn = nets.conn(dev.netns.as_deref()).await?;
    get_link(&conn, dev).await?;
    let bits = feature_bits(&conn.inet, &dev.name)?;
    let mut set: Vec<(u32, bool)> = Vec::new();
    let mut old = BTreeMap::new();
    for (name, &on) in want {
        let Some(members) = expand(name, &bits) else {
            let known: Vec<String> = present(&bits).into_keys().collect();
            return Err(WireError::invalid(format!(
                "unknown feature {name:?} of {} in {} (known: {}; aliases: {})",
                dev.name,
                ns_label(dev.netns.as_deref()),
                known.join(", "),
                LEGACY.iter().map(|l| l.1).collect::<Vec<_>>().join(", ")
            )));
        };
        let changeable: Vec<&&FeatureBit> = members.iter().filter(|b| b.changeable).collect();
        if changeable.is_empty() && members.iter().any(|b| b.active != on) {
            return Err(WireError::unsupported(format!(
                "feature {name} of {} cannot be changed (fixed by its driver)",
                dev.name
            )));
        }
        for b in changeable {
            old.insert(b.name.clone(), b.active);
            set.push((b.index, on));
        }
    }
    if set.is_empty() {
        return Ok(readable(&bits));
    }
    rec.record(NetUndo::RestoreFeatures {
        dev: dev.clone(),
        features: old,
    })?;
    set_feature_bits(
        &conn.inet,
        &dev.name,
        bits.first().map_or(0, |b| b.count),
        &set,
    )?;
    let after = feature_bits(&conn.inet, &dev.name)?;
    for &(i, on) in &set {
        if let Some(b) = after.iter().find(|b| b.index == i) {
            if b.active != on {
                return Err(WireError::os(format!(
                    "ethtool -K {} {} {}: the kernel left it {} (it may depend on another feature)",
                    dev.name,
                    b.name,
                    if on { "on" } else { "off" },
                    if b.active { "on" } else { "off" }
                )));
            }
        }
    }
    Ok(readable(&after))
}

/// Sets kernel features by kernel name, without recording (undo replay).
pub(crate) async fn apply_raw(
    nets: &Nets,
    dev: &DevRef,
    features: &Features,
) -> Result<(), WireError> {
    let conn = nets.conn(dev.netns.as_deref()).await?;
    get_link(&conn, dev).await?;
    let bits = feature_bits(&conn.inet, &dev.name)?;
    let set: Vec<(u32, bool)> = features
        .iter()
        .filter_map(|(n, &on)| bits.iter().find(|b| &b.name == n).map(|b| (b.index, on)))
        .collect();
    if !set.is_empty() {
        set_feature_bits(
            &conn.inet,
            &dev.name,
            bits.first().map_or(0, |b| b.count),
            &set,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bit(name: &str, index: u32, active: bool, changeable: bool) -> FeatureBit {
        FeatureBit {
            count: 64,
            name: name.into(),
            index,
            active,
            changeable,
            never_changed: false,
        }
    }

    #[test]
    fn names_like_ethtool_k() {
        let bits = vec![
            bit("tx-scatter-gather", 0, true, true),
            bit("tx-checksum-ipv4", 1, false, false),
            bit("tx-checksum-ip-generic", 3, true, true),
            bit("rx-gro", 14, true, true),
            bit("rx-lro", 15, false, false),
            bit("tx-nocache-copy", 20, false, true),
        ];
        let f = present(&bits);
        assert_eq!(f.get("generic-receive-offload"), Some(&true));
        assert_eq!(f.get("large-receive-offload"), Some(&false));
        assert_eq!(f.get("tx-checksumming"), Some(&true));
        assert_eq!(f.get("scatter-gather"), Some(&true));
        assert_eq!(f.get("tx-checksum-ipv4"), Some(&false));
        assert_eq!(f.get("tx-nocache-copy"), Some(&false));
        assert!(!f.contains_key("rx-gro"));
        assert_eq!(expand("gro", &bits).unwrap()[0].index, 14);
        assert_eq!(expand("tx", &bits).unwrap().len(), 2);
        assert_eq!(expand("rx-gro", &bits).unwrap()[0].index, 14);
        assert!(expand("bogus", &bits).is_none());
        let r = readable(&bits);
        assert_eq!(r.get("gro"), Some(&true));
        assert_eq!(r.get("lro"), Some(&false));
        assert_eq!(r.get("sg"), Some(&true));
        assert_eq!(r.get("generic-receive-offload"), Some(&true));
        assert!(!r.contains_key("ufo"), "no alias for an absent feature");
    }
}
