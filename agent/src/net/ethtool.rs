//! `ethtool -c|-g|-l|-a DEV` and `ethtool -C|-G|-L|-A DEV KEY VALUE ..`:
//! coalescing, ring sizes, channels and pause settings, read as a map of
//! `ethtool -C/-G/-L/-A` argument names (with `_` for `-`: `rx_usecs`) to
//! numbers (0/1 for the on/off ones) and set a few keys at a time.
//!
//! Each group is one fixed struct of `u32`s in `<linux/ethtool.h>`, read
//! and written with the `SIOCETHTOOL` ioctl (`ETHTOOL_GCOALESCE` ..):
//! every kernel and driver that ethtool's netlink interface serves also
//! answers these, and they need no new dependency (the `ethtool` crate 0.3
//! reads these groups over netlink but cannot set them). What the ioctls do
//! not carry (ring `rx-buf-len`, `cqe-size`, `tcp-data-split`; coalesce
//! CQE modes) is not offered.
//!
//! `ethtool_set` records `RestoreEthtool` with the old values of the keys
//! it changes, then writes the whole struct with those keys replaced, and
//! reads it back. Keys given with their current value are left out (a map
//! read, changed in one key and written back changes that key only). A driver without the group is an error naming the group
//! and the driver; a key it cannot take (a ring or channel count above its
//! maximum, a coalesce parameter it does not support) an error naming the
//! key.

use std::collections::BTreeMap;

use lnst_common::device::DevRef;
use lnst_common::{ErrorKind, WireError};

use super::driver::{driver_name, ethtool_ioctl};
use super::links::get_link;
use super::{ns_label, NetUndo, Nets, Recorder};

/// How a field reads and sets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    /// A number the recipe may set.
    Num,
    /// 0/1 (`on`/`off`), settable.
    Bool,
    /// A maximum the driver reports (`max_rx`): read only; `of` names the
    /// field it bounds.
    Max { of: &'static str },
}

/// One settings group: its ioctl commands and its struct's fields after
/// `cmd`, in order.
struct Group {
    name: &'static str,
    get: u32,
    set: u32,
    /// `ethtool` option that reads it (for messages).
    show: &'static str,
    fields: &'static [(&'static str, Field)],
}

use Field::{Bool, Max, Num};

const GROUPS: &[Group] = &[
    Group {
        name: "coalesce",
        get: 0x0e,
        set: 0x0f,
        show: "-c",
        fields: &[
            ("rx_usecs", Num),
            ("rx_frames", Num),
            ("rx_usecs_irq", Num),
            ("rx_frames_irq", Num),
            ("tx_usecs", Num),
            ("tx_frames", Num),
            ("tx_usecs_irq", Num),
            ("tx_frames_irq", Num),
            ("stats_block_usecs", Num),
            ("adaptive_rx", Bool),
            ("adaptive_tx", Bool),
            ("pkt_rate_low", Num),
            ("rx_usecs_low", Num),
            ("rx_frames_low", Num),
            ("tx_usecs_low", Num),
            ("tx_frames_low", Num),
            ("pkt_rate_high", Num),
            ("rx_usecs_high", Num),
            ("rx_frames_high", Num),
            ("tx_usecs_high", Num),
            ("tx_frames_high", Num),
            ("sample_interval", Num),
        ],
    },
    Group {
        name: "rings",
        get: 0x10,
        set: 0x11,
        show: "-g",
        fields: &[
            ("max_rx", Max { of: "rx" }),
            ("max_rx_mini", Max { of: "rx_mini" }),
            ("max_rx_jumbo", Max { of: "rx_jumbo" }),
            ("max_tx", Max { of: "tx" }),
            ("rx", Num),
            ("rx_mini", Num),
            ("rx_jumbo", Num),
            ("tx", Num),
        ],
    },
    Group {
        name: "pause",
        get: 0x12,
        set: 0x13,
        show: "-a",
        fields: &[("autoneg", Bool), ("rx", Bool), ("tx", Bool)],
    },
    Group {
        name: "channels",
        get: 0x3c,
        set: 0x3d,
        show: "-l",
        fields: &[
            ("max_rx", Max { of: "rx" }),
            ("max_tx", Max { of: "tx" }),
            ("max_other", Max { of: "other" }),
            ("max_combined", Max { of: "combined" }),
            ("rx", Num),
            ("tx", Num),
            ("other", Num),
            ("combined", Num),
        ],
    },
];

/// The group names, for messages.
pub const GROUP_NAMES: &str = "coalesce, rings, channels, pause";

fn group(name: &str) -> Result<&'static Group, WireError> {
    GROUPS.iter().find(|g| g.name == name).ok_or_else(|| {
        WireError::invalid(format!(
            "unknown ethtool settings group {name:?}; groups: {GROUP_NAMES}"
        ))
    })
}

/// The keys of `g` a recipe may set.
fn settable(g: &Group) -> Vec<&'static str> {
    g.fields
        .iter()
        .filter(|(_, f)| !matches!(f, Max { .. }))
        .map(|(n, _)| *n)
        .collect()
}

/// `rx-usecs` and `rx_usecs` alike.
fn norm(key: &str) -> String {
    key.replace('-', "_")
}

/// The struct as `cmd` + fields; 24 words cover the largest
/// (`ethtool_coalesce`, 23).
type Buf = [u32; 24];

fn read_raw(conn: &super::nsthread::NsConn, dev: &DevRef, g: &Group) -> Result<Buf, WireError> {
    let mut buf: Buf = [0; 24];
    buf[0] = g.get;
    match ethtool_ioctl(
        &conn.inet,
        &dev.name,
        buf.as_mut_ptr() as *mut libc::c_void,
        g.show,
    ) {
        Ok(_) => Ok(buf),
        Err(e) if e.kind == ErrorKind::Unsupported || e.message.contains("not supported") => {
            let driver = driver_name(&conn.inet, &dev.name).unwrap_or_else(|_| "?".into());
            Err(WireError::unsupported(format!(
                "{} (driver {driver}) has no {} settings: `ethtool {} {}` is not supported by its driver",
                dev.name, g.name, g.show, dev.name
            )))
        }
        Err(e) => Err(e),
    }
}

fn to_map(g: &Group, buf: &Buf) -> BTreeMap<String, i64> {
    g.fields
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.to_string(), i64::from(buf[i + 1])))
        .collect()
}

/// Checks `values` against the group's keys and the driver's maxima;
/// returns them by field index.
fn check(
    g: &Group,
    dev: &DevRef,
    now: &Buf,
    values: &BTreeMap<String, i64>,
) -> Result<Vec<(usize, u32)>, WireError> {
    let mut out = Vec::new();
    for (k, v) in values {
        let key = norm(k);
        let Some(i) = g.fields.iter().position(|(n, _)| *n == key) else {
            return Err(WireError::invalid(format!(
                "{} of {}: unknown key {k:?}; keys: {}",
                g.name,
                dev.name,
                settable(g).join(", ")
            )));
        };
        let (name, f) = g.fields[i];
        // Unchanged keys are left out, so that a whole map read and
        // written back (`dev.channels.rx = 2` in Rhai) changes one key.
        if u32::try_from(*v).is_ok_and(|v| v == now[i + 1]) {
            continue;
        }
        match f {
            Max { .. } => {
                return Err(WireError::invalid(format!(
                    "{} of {}: {name} is the driver's maximum and cannot be set; keys: {}",
                    g.name,
                    dev.name,
                    settable(g).join(", ")
                )))
            }
            Bool if !(0..=1).contains(v) => {
                return Err(WireError::invalid(format!(
                    "{} of {}: {name} is on/off (true or false), not {v}",
                    g.name, dev.name
                )))
            }
            _ => {}
        }
        let Ok(v32) = u32::try_from(*v) else {
            return Err(WireError::invalid(format!(
                "{} of {}: {name} = {v} is out of range 0..={}",
                g.name,
                dev.name,
                u32::MAX
            )));
        };
        // A count above the driver's maximum (0: it has none of that kind).
        if let Some(mi) = g
            .fields
            .iter()
            .position(|(_, f)| matches!(f, Max { of } if *of == name))
        {
            let max = now[mi + 1];
            if v32 > max {
                return Err(WireError::invalid(if max == 0 {
                    format!(
                        "{} of {}: the driver has no {name} {} (its maximum is 0); set one of: {}",
                        g.name,
                        dev.name,
                        if g.name == "channels" {
                            "channels"
                        } else {
                            "ring"
                        },
                        have(g, now).join(", ")
                    )
                } else {
                    format!(
                        "{} of {}: {name} = {v} is above the driver's maximum {max}",
                        g.name, dev.name
                    )
                }));
            }
        }
        out.push((i, v32));
    }
    Ok(out)
}

/// The kinds the driver has some of (`rx`, `tx` for a veth's channels).
fn have(g: &Group, now: &Buf) -> Vec<&'static str> {
    g.fields
        .iter()
        .enumerate()
        .filter_map(|(j, (_, f))| match f {
            Max { of } if now[j + 1] > 0 => Some(*of),
            _ => None,
        })
        .collect()
}

fn write_raw(
    conn: &super::nsthread::NsConn,
    dev: &DevRef,
    g: &Group,
    now: &Buf,
    changes: &[(usize, u32)],
) -> Result<(), WireError> {
    let mut buf = *now;
    buf[0] = g.set;
    for (i, v) in changes {
        buf[i + 1] = *v;
    }
    let words: Vec<String> = changes
        .iter()
        .map(|(i, v)| format!("{} {v}", g.fields[*i].0.replace('_', "-")))
        .collect();
    let what = format!(
        "{} {} {}",
        g.show.to_ascii_uppercase(),
        dev.name,
        words.join(" ")
    );
    match ethtool_ioctl(
        &conn.inet,
        &dev.name,
        buf.as_mut_ptr() as *mut libc::c_void,
        &what,
    ) {
        Ok(_) => Ok(()),
        Err(e) if e.kind == ErrorKind::Unsupported || e.message.contains("not supported") => {
            let driver = driver_name(&conn.inet, &dev.name).unwrap_or_else(|_| "?".into());
            let keys: Vec<&str> = changes.iter().map(|(i, _)| g.fields[*i].0).collect();
            Err(WireError::unsupported(format!(
                "{} of {}: the driver ({driver}) does not support setting {} (`ethtool {what}`: not supported)",
                g.name,
                dev.name,
                keys.join(", ")
            )))
        }
        Err(e) => Err(e),
    }
}

/// `ethtool -c|-g|-l|-a DEV`
pub async fn ethtool_get(
    nets: &Nets,
    dev: &DevRef,
    group_name: &str,
) -> Result<BTreeMap<String, i64>, WireError> {
    let g = group(group_name)?;
    let conn = nets.conn(dev.netns.as_deref()).await?;
    get_link(&conn, dev).await?;
    Ok(to_map(g, &read_raw(&conn, dev, g)?))
}

/// `ethtool -C|-G|-L|-A DEV KEY VALUE ..`; records the old values first.
pub async fn ethtool_set(
    nets: &Nets,
    rec: &dyn Recorder,
    dev: &DevRef,
    group_name: &str,
    values: &BTreeMap<String, i64>,
) -> Result<BTreeMap<String, i64>, WireError> {
    let g = group(group_name)?;
    if values.is_empty() {
        return Err(WireError::invalid(format!(
            "{} of {}: no keys given; keys: {}",
            g.name,
            dev.name,
            settable(g).join(", ")
        )));
    }
    let conn = nets.conn(dev.netns.as_deref()).await?;
    get_link(&conn, dev).await?;
    let now = read_raw(&conn, dev, g)?;
    let changes = check(g, dev, &now, values)?;
    if changes.is_empty() {
        return Ok(to_map(g, &now));
    }
    let old: BTreeMap<String, i64> = changes
        .iter()
        .map(|(i, _)| (g.fields[*i].0.to_string(), i64::from(now[i + 1])))
        .collect();
    rec.record(NetUndo::RestoreEthtool {
        dev: dev.clone(),
        group: g.name.to_string(),
        values: old,
    })?;
    write_raw(&conn, dev, g, &now, &changes).map_err(|mut e| {
        e.message = format!("{} (in {})", e.message, ns_label(dev.netns.as_deref()));
        e
    })?;
    Ok(to_map(g, &read_raw(&conn, dev, g)?))
}

/// Undo: sets `values` without recording.
pub(crate) async fn apply(
    nets: &Nets,
    dev: &DevRef,
    group_name: &str,
    values: &BTreeMap<String, i64>,
) -> Result<BTreeMap<String, i64>, WireError> {
    ethtool_set(nets, &super::NoRecord, dev, group_name, values).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> DevRef {
        DevRef {
            netns: None,
            name: "eth0".into(),
        }
    }

    #[test]
    fn struct_sizes_fit_the_buffer() {
        for g in GROUPS {
            assert!(g.fields.len() < 24, "{}", g.name);
        }
        assert_eq!(group("coalesce").unwrap().fields.len(), 22);
        assert!(group("ring").err().unwrap().message.contains(GROUP_NAMES));
    }

    #[test]
    fn keys_are_checked_and_named() {
        let g = group("channels").unwrap();
        // max_rx 2, max_tx 2, max_other 0, max_combined 0, rx 1, tx 1
        let mut now: Buf = [0; 24];
        now[1] = 2;
        now[2] = 2;
        now[5] = 1;
        now[6] = 1;
        let v = |k: &str, n: i64| BTreeMap::from([(k.to_string(), n)]);
        assert_eq!(check(g, &dev(), &now, &v("rx", 2)).unwrap(), vec![(4, 2)]);
        let e = check(g, &dev(), &now, &v("rxx", 2)).unwrap_err().message;
        assert!(
            e.contains("\"rxx\"") && e.contains("rx, tx, other, combined"),
            "{e}"
        );
        let e = check(g, &dev(), &now, &v("rx", 3)).unwrap_err().message;
        assert!(e.contains("rx = 3") && e.contains("maximum 2"), "{e}");
        let e = check(g, &dev(), &now, &v("combined", 1))
            .unwrap_err()
            .message;
        assert!(
            e.contains("no combined channels") && e.contains("rx, tx"),
            "{e}"
        );
        assert!(check(g, &dev(), &now, &v("max_rx", 2)).unwrap().is_empty());
        let e = check(g, &dev(), &now, &v("max_rx", 1)).unwrap_err().message;
        assert!(e.contains("cannot be set"), "{e}");
        let e = check(g, &dev(), &now, &v("rx", -1)).unwrap_err().message;
        assert!(e.contains("out of range"), "{e}");
        let p = group("pause").unwrap();
        let e = check(p, &dev(), &[0; 24], &v("rx", 2)).unwrap_err().message;
        assert!(e.contains("on/off"), "{e}");
        let c = group("coalesce").unwrap();
        assert_eq!(
            check(c, &dev(), &now, &v("rx-usecs", 8)).unwrap(),
            vec![(0, 8)]
        );
    }
}
