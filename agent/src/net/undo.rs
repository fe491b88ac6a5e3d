//! [`NetUndo`]: how to undo one change of this layer. The journal persists
//! each entry before the change is made and replays them in reverse at the
//! end of a session (or after a crash). Replay is tolerant: what is already
//! gone (device, namespace, address, route) counts as undone.
//! [`undo_all`] replays a list and deletes runs of devices and namespaces
//! concurrently (a link delete costs ~20 ms of kernel time each).

use std::collections::BTreeMap;

use futures::future::join_all;
use lnst_common::device::DevRef;
use lnst_common::host::RouteSpec;
use lnst_common::{ErrorKind, WireError};
use serde::{Deserialize, Serialize};

use super::links::{apply_master, apply_move, apply_state, get_link};
use super::neigh::SavedNeigh;
use super::netem::SavedQdisc;
use super::saved::{SavedAddr, SavedRoute};
use super::{addrs, ethtool, features, files, neigh, netem, netns, routes, sysctl, Nets};

/// One change to undo. Devices are named as they are at undo time.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum NetUndo {
    /// `ip link del NAME` (a created device; a veth takes its peer along).
    DeleteLink { netns: Option<String>, name: String },
    /// `ip link set DEV mtu OLD`
    RestoreMtu { dev: DevRef, mtu: u32 },
    /// `ip link set DEV address OLD`, then the IPv6 link-local addresses
    /// of then (the kernel derives them from the MAC).
    RestoreMac {
        dev: DevRef,
        mac: String,
        link_local: Vec<String>,
    },
    /// `ip link set DEV up|down`
    RestoreState { dev: DevRef, up: bool },
    /// `ip link set DEV master OLD` / `nomaster`
    RestoreMaster { dev: DevRef, master: Option<String> },
    /// `ip link set DEV netns TO` (DEV is where the move put it).
    MoveBack { dev: DevRef, to: Option<String> },
    /// `ip addr del CIDR dev DEV`
    DelAddress { dev: DevRef, cidr: String },
    /// `ip addr add CIDR dev DEV`
    AddAddress { dev: DevRef, cidr: String },
    /// `ethtool -K DEV kernel-name on|off ...` (kernel feature names).
    RestoreFeatures {
        dev: DevRef,
        features: BTreeMap<String, bool>,
    },
    /// `ip netns del NAME` (full name).
    DeleteNetns { name: String },
    /// `sysctl -w KEY=OLD`
    RestoreSysctl {
        netns: Option<String>,
        key: String,
        value: String,
    },
    /// Writes the old content back, or removes a file that did not exist.
    /// The content is kept as base64 text ([`b64`]): as a JSON array of
    /// numbers two 15 MiB files made a 112 MB journal. Journals written
    /// with arrays still read.
    RestoreFile {
        netns: Option<String>,
        path: String,
        #[serde(with = "b64")]
        data: Option<Vec<u8>>,
    },
    /// `ip route del ...`
    DelRoute {
        netns: Option<String>,
        route: RouteSpec,
    },
    /// `ip route add ...`
    AddRoute {
        netns: Option<String>,
        route: RouteSpec,
    },
    /// `ip addr add` with every attribute the address had.
    AddSavedAddress { dev: DevRef, addr: SavedAddr },
    /// `ip route add` with every attribute the route had.
    AddSavedRoute {
        netns: Option<String>,
        route: SavedRoute,
    },
    /// `teamd -k -t NAME` (TERM to the pid in `pid`), then `ip link del
    /// NAME` if teamd left it; removes the config and pid file.
    StopTeamd {
        netns: Option<String>,
        name: String,
        conf: String,
        pid: String,
    },
    /// `ip neigh del DST dev DEV`
    DelNeigh {
        netns: Option<String>,
        dev: String,
        dst: String,
    },
    /// `ip neigh replace` of a static entry as it was.
    AddSavedNeigh {
        netns: Option<String>,
        neigh: SavedNeigh,
    },
    /// `ethtool -C|-G|-L|-A DEV KEY OLD ..`: the old values of the keys
    /// a recipe set.
    RestoreEthtool {
        dev: DevRef,
        group: String,
        values: BTreeMap<String, i64>,
    },
    /// `tc qdisc del dev DEV root` of the netem qdisc this layer added
    /// (the kernel's default root comes back).
    DelRootQdisc { dev: DevRef },
    /// `tc qdisc replace dev DEV root` with the qdisc that was there.
    RestoreRootQdisc { dev: DevRef, qdisc: SavedQdisc },
}

/// `Ok` for "already gone".
fn gone_ok(r: Result<(), WireError>) -> Result<(), WireError> {
    match r {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

impl NetUndo {
    /// Applies this undo. Something already gone is `Ok`.
    pub async fn undo(&self, nets: &Nets) -> Result<(), String> {
        self.apply(nets)
            .await
            .map_err(|e| format!("undo {}: {}", self.describe(), e.message))
    }

    /// Short text for error lists.
    pub fn describe(&self) -> String {
        let d = |d: &DevRef| match &d.netns {
            Some(n) => format!("{} (netns {n})", d.name),
            None => d.name.clone(),
        };
        match self {
            NetUndo::DeleteLink { netns, name } => d(&DevRef {
                netns: netns.clone(),
                name: name.clone(),
            }),
            NetUndo::RestoreMtu { dev, mtu } => format!("mtu {mtu} on {}", d(dev)),
            NetUndo::RestoreMac { dev, mac, .. } => format!("address {mac} on {}", d(dev)),
            NetUndo::RestoreState { dev, up } => {
                format!("{} {}", d(dev), if *up { "up" } else { "down" })
            }
            NetUndo::RestoreMaster { dev, master } => format!("master {:?} of {}", master, d(dev)),
            NetUndo::MoveBack { dev, to } => format!("move {} back to {:?}", d(dev), to),
            NetUndo::DelAddress { dev, cidr } => format!("del {cidr} from {}", d(dev)),
            NetUndo::AddAddress { dev, cidr } => format!("add {cidr} to {}", d(dev)),
            NetUndo::RestoreFeatures { dev, .. } => format!("features of {}", d(dev)),
            NetUndo::DeleteNetns { name } => format!("netns {name}"),
            NetUndo::RestoreSysctl { key, value, .. } => format!("sysctl {key}={value}"),
            NetUndo::RestoreFile { path, .. } => format!("file {path}"),
            NetUndo::DelRoute { route, .. } => format!("del route {}", routes::describe(route)),
            NetUndo::AddRoute { route, .. } => format!("add route {}", routes::describe(route)),
            NetUndo::AddSavedAddress { dev, addr } => format!("add {} to {}", addr.cidr, d(dev)),
            NetUndo::AddSavedRoute { route, .. } => format!("add route {}", route.describe()),
            NetUndo::StopTeamd { netns, name, .. } => format!(
                "stop teamd of {}",
                d(&DevRef {
                    netns: netns.clone(),
                    name: name.clone(),
                })
            ),
            NetUndo::DelNeigh { dev, dst, .. } => format!("del neighbour {dst} dev {dev}"),
            NetUndo::AddSavedNeigh { neigh, .. } => {
                format!("add neighbour {} dev {}", neigh.dst, neigh.dev)
            }
            NetUndo::RestoreEthtool { dev, group, .. } => format!("{group} of {}", d(dev)),
            NetUndo::DelRootQdisc { dev } => format!("netem on {}", d(dev)),
            NetUndo::RestoreRootQdisc { dev, qdisc } => {
                format!("root qdisc {} on {}", qdisc.kind, d(dev))
            }
        }
    }

    async fn apply(&self, nets: &Nets) -> Result<(), WireError> {
        match self {
            NetUndo::DeleteLink { netns, name } => {
                gone_ok(delete_link(nets, netns.as_deref(), name).await)
            }
            NetUndo::RestoreMtu { dev, mtu } => gone_ok(
                async {
                    let conn = nets.conn(dev.netns.as_deref()).await?;
                    let l = get_link(&conn, dev).await?;
                    let msg = rtnetlink::LinkUnspec::new_with_index(l.header.index)
                        .mtu(*mtu)
                        .build();
                    conn.rt
                        .link()
                        .set(msg)
                        .execute()
                        .await
                        .map_err(|e| super::error::nl_error(e, "ip link set mtu"))
                }
                .await,
            ),
            NetUndo::RestoreMac {
                dev,
                mac,
                link_local,
            } => gone_ok(restore_mac(nets, dev, mac, link_local).await),
            NetUndo::RestoreState { dev, up } => gone_ok(
                async {
                    let conn = nets.conn(dev.netns.as_deref()).await?;
                    let l = get_link(&conn, dev).await?;
                    apply_state(&conn, dev, l.header.index, *up).await
                }
                .await,
            ),
            NetUndo::RestoreMaster { dev, master } => gone_ok(
                async {
                    let conn = nets.conn(dev.netns.as_deref()).await?;
                    let l = get_link(&conn, dev).await?;
                    let midx = match master {
                        Some(m) => Some(
                            get_link(
                                &conn,
                                &DevRef {
                                    netns: dev.netns.clone(),
                                    name: m.clone(),
                                },
                            )
                            .await?
                            .header
                            .index,
                        ),
                        None => None,
                    };
                    apply_master(&conn, dev, l.header.index, midx, master.as_deref()).await
                }
                .await,
            ),
            NetUndo::MoveBack { dev, to } => {
                let conn = match nets.conn(dev.netns.as_deref()).await {
                    Ok(c) => c,
                    Err(e) if e.kind == ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(e),
                };
                let l = match get_link(&conn, dev).await {
                    Ok(l) => l,
                    Err(e) if e.kind == ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(e),
                };
                apply_move(&conn, dev, l.header.index, to.as_deref()).await
            }
            NetUndo::DelAddress { dev, cidr } => {
                gone_ok(addrs::apply_del(nets, dev, cidr, true).await)
            }
            NetUndo::AddAddress { dev, cidr } => {
                gone_ok(addrs::apply_add(nets, dev, cidr, true).await)
            }
            NetUndo::RestoreFeatures { dev, features } => {
                gone_ok(features::apply_raw(nets, dev, features).await)
            }
            NetUndo::DeleteNetns { name } => netns::netns_delete(nets, name).await,
            NetUndo::RestoreSysctl { netns, key, value } => {
                if ns_exists(netns.as_deref()).is_err() {
                    return Ok(());
                }
                sysctl::apply(netns.as_deref(), key, value).await
            }
            NetUndo::RestoreFile { netns, path, data } => {
                if ns_exists(netns.as_deref()).is_err() {
                    return Ok(());
                }
                files::apply_write(netns.as_deref(), path, data.as_deref()).await
            }
            NetUndo::DelRoute { netns, route } => {
                gone_ok(routes::apply_del(nets, netns.as_deref(), route, true).await)
            }
            NetUndo::AddRoute { netns, route } => {
                gone_ok(routes::apply_add(nets, netns.as_deref(), route, true).await)
            }
            NetUndo::AddSavedAddress { dev, addr } => {
                gone_ok(addrs::apply_add_saved(nets, dev, addr).await)
            }
            NetUndo::AddSavedRoute { netns, route } => {
                if ns_exists(netns.as_deref()).is_err() {
                    return Ok(());
                }
                gone_ok(routes::apply_add_saved(nets, netns.as_deref(), route).await)
            }
            NetUndo::StopTeamd {
                netns,
                name,
                conf,
                pid,
            } => {
                let (c, p) = (conf.into(), pid.into());
                let stopped = tokio::task::spawn_blocking(move || super::kinds::team::stop(&c, &p))
                    .await
                    .map_err(|e| WireError::internal(format!("teamd stop task: {e}")))?;
                if ns_exists(netns.as_deref()).is_ok() {
                    gone_ok(delete_link(nets, netns.as_deref(), name).await)?;
                }
                stopped
            }
            NetUndo::DelNeigh { netns, dev, dst } => {
                if ns_exists(netns.as_deref()).is_err() {
                    return Ok(());
                }
                gone_ok(neigh::apply_del(nets, netns.as_deref(), dev, dst).await)
            }
            NetUndo::AddSavedNeigh { netns, neigh: n } => {
                if ns_exists(netns.as_deref()).is_err() {
                    return Ok(());
                }
                gone_ok(neigh::apply_add_saved(nets, netns.as_deref(), n).await)
            }
            NetUndo::RestoreEthtool { dev, group, values } => {
                if ns_exists(dev.netns.as_deref()).is_err() {
                    return Ok(());
                }
                gone_ok(ethtool::apply(nets, dev, group, values).await.map(|_| ()))
            }
            NetUndo::DelRootQdisc { dev } => {
                if ns_exists(dev.netns.as_deref()).is_err() {
                    return Ok(());
                }
                gone_ok(netem::apply_del(nets, dev).await)
            }
            NetUndo::RestoreRootQdisc { dev, qdisc } => {
                if ns_exists(dev.netns.as_deref()).is_err() {
                    return Ok(());
                }
                gone_ok(netem::apply_restore(nets, dev, qdisc).await)
            }
        }
    }

    /// Entries whose order among each other does not matter: replayed
    /// concurrently by [`undo_all`].
    fn is_deletion(&self) -> bool {
        matches!(
            self,
            NetUndo::DeleteLink { .. } | NetUndo::DeleteNetns { .. }
        )
    }
}

async fn restore_mac(
    nets: &Nets,
    dev: &DevRef,
    mac: &str,
    link_local: &[String],
) -> Result<(), WireError> {
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let l = get_link(&conn, dev).await?;
    let msg = rtnetlink::LinkUnspec::new_with_index(l.header.index)
        .address(super::links::parse_mac(mac)?)
        .build();
    conn.rt.link().set(msg).execute().await.map_err(|e| {
        super::error::nl_error(e, format!("ip link set {} address {mac}", dev.name))
    })?;
    let now = addrs::dump(&conn.rt, dev.netns.as_deref(), Some(l.header.index))
        .await?
        .remove(&l.header.index)
        .unwrap_or_default();
    for c in now
        .iter()
        .filter(|c| addrs::is_link_local(c) && !link_local.contains(c))
    {
        addrs::apply_del(nets, dev, c, true).await?;
    }
    for c in link_local.iter().filter(|c| !now.contains(c)) {
        addrs::apply_add(nets, dev, c, true).await?;
    }
    Ok(())
}

fn ns_exists(netns: Option<&str>) -> Result<(), WireError> {
    match netns {
        Some(n) => super::nsthread::netns_ident(n).map(|_| ()),
        None => Ok(()),
    }
}

async fn delete_link(nets: &Nets, netns: Option<&str>, name: &str) -> Result<(), WireError> {
    let conn = nets.conn(netns).await?;
    let dev = DevRef {
        netns: netns.map(str::to_string),
        name: name.to_string(),
    };
    let l = get_link(&conn, &dev).await?;
    match conn.rt.link().del(l.header.index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if super::error::errno_of(&e) == Some(nix::errno::Errno::ENODEV) => Ok(()),
        Err(e) => Err(super::error::nl_error(e, format!("ip link del {name}"))),
    }
}

/// Deletes a run of `DeleteLink`/`DeleteNetns` entries: the links of each
/// namespace in one batch (`ip link set DEV group G` for each, then
/// `ip link del group G`, so the kernel unregisters them together instead
/// of paying its ~20 ms per device), namespaces concurrently afterwards.
/// Errors carry the index in `run` of the entry that failed.
async fn delete_many(nets: &Nets, run: &[NetUndo]) -> Vec<(usize, String)> {
    let mut by_ns: BTreeMap<Option<String>, Vec<(usize, &NetUndo)>> = BTreeMap::new();
    let mut namespaces = Vec::new();
    for (i, u) in run.iter().enumerate() {
        match u {
            NetUndo::DeleteLink { netns, .. } => {
                by_ns.entry(netns.clone()).or_default().push((i, u))
            }
            _ => namespaces.push((i, u)),
        }
    }
    let per_ns = by_ns.into_iter().map(|(netns, us)| async move {
        let links: Vec<&NetUndo> = us.iter().map(|(_, u)| *u).collect();
        match group_delete(nets, netns.as_deref(), &links).await {
            Ok(()) => vec![],
            // fall back to one by one, collecting every error
            Err(_) => join_all(
                us.iter()
                    .map(|(i, u)| async move { (*i, u.undo(nets).await) }),
            )
            .await
            .into_iter()
            .filter_map(|(i, r)| r.err().map(|e| (i, e)))
            .collect(),
        }
    });
    let mut errors: Vec<(usize, String)> = join_all(per_ns).await.into_iter().flatten().collect();
    let ns_results = join_all(
        namespaces
            .iter()
            .map(|(i, u)| async move { (*i, u.undo(nets).await) }),
    )
    .await;
    errors.extend(
        ns_results
            .into_iter()
            .filter_map(|(i, r)| r.err().map(|e| (i, e))),
    );
    errors
}

static GROUP_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

async fn group_delete(nets: &Nets, netns: Option<&str>, us: &[&NetUndo]) -> Result<(), WireError> {
    let conn = match nets.conn(netns).await {
        Ok(c) => c,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // A group number no one else uses: high bit pattern, pid and a counter.
    let group = 0x4000_0000
        | ((std::process::id() & 0x3fff) << 16)
        | (GROUP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xffff);
    let mut any = false;
    for u in us {
        let NetUndo::DeleteLink { name, .. } = u else {
            continue;
        };
        let dev = DevRef {
            netns: netns.map(str::to_string),
            name: name.clone(),
        };
        let l = match get_link(&conn, &dev).await {
            Ok(l) => l,
            Err(e) if e.kind == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let msg = rtnetlink::LinkUnspec::new_with_index(l.header.index)
            .link_group(group)
            .build();
        match conn.rt.link().set(msg).execute().await {
            Ok(()) => any = true,
            // a veth peer deleted along with its other end
            Err(e) if super::error::errno_of(&e) == Some(nix::errno::Errno::ENODEV) => {}
            Err(e) => {
                return Err(super::error::nl_error(
                    e,
                    format!("ip link set {name} group {group}"),
                ))
            }
        }
    }
    if !any {
        return Ok(());
    }
    let mut msg = netlink_packet_route::link::LinkMessage::default();
    msg.attributes
        .push(netlink_packet_route::link::LinkAttribute::Group(group));
    match conn.rt.link().del_with_message(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if super::error::errno_of(&e) == Some(nix::errno::Errno::ENODEV) => Ok(()),
        Err(e) => Err(super::error::nl_error(
            e,
            format!("ip link del group {group}"),
        )),
    }
}

/// Replays `entries` (in the order they were recorded) in reverse,
/// deleting consecutive runs of devices and namespaces concurrently. Keeps
/// going after errors and returns all of them.
pub async fn undo_all(nets: &Nets, entries: Vec<NetUndo>) -> Vec<String> {
    undo_all_indexed(nets, &entries)
        .await
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

/// [`undo_all`], each error with the index in `entries` of the entry whose
/// undo failed (the journal keeps those entries to retry them).
pub async fn undo_all_indexed(nets: &Nets, entries: &[NetUndo]) -> Vec<(usize, String)> {
    let mut errors = Vec::new();
    let mut end = entries.len();
    while end > 0 {
        if entries[end - 1].is_deletion() {
            let mut start = end;
            while start > 0 && entries[start - 1].is_deletion() {
                start -= 1;
            }
            errors.extend(
                delete_many(nets, &entries[start..end])
                    .await
                    .into_iter()
                    .map(|(i, e)| (start + i, e)),
            );
            end = start;
        } else {
            if let Err(e) = entries[end - 1].undo(nets).await {
                errors.push((end - 1, e));
            }
            end -= 1;
        }
    }
    errors
}

/// Serde for `Option<Vec<u8>>` as a base64 string (RFC 4648, padded);
/// reads the older form, an array of numbers, too.
mod b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn decode(s: &str) -> Result<Vec<u8>, String> {
        let s = s.trim_end_matches('=');
        let mut out = Vec::with_capacity(s.len() * 3 / 4);
        let (mut acc, mut bits) = (0u32, 0u32);
        for c in s.bytes() {
            let v = ALPHABET
                .iter()
                .position(|&a| a == c)
                .ok_or_else(|| format!("invalid base64 character {:?}", c as char))?;
            acc = (acc << 6) | v as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        Ok(out)
    }

    pub fn serialize<S: Serializer>(data: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match data {
            Some(d) => s.serialize_some(&encode(d)),
            None => s.serialize_none(),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<Form>::deserialize(d)? {
            None => Ok(None),
            Some(Form::Bytes(b)) => Ok(Some(b)),
            Some(Form::Text(t)) => decode(&t).map(Some).map_err(serde::de::Error::custom),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::super::NetUndo;
        use super::*;

        #[test]
        fn round_trips_and_matches_rfc4648() {
            assert_eq!(encode(b"foobar"), "Zm9vYmFy");
            assert_eq!(encode(b"fooba"), "Zm9vYmE=");
            assert_eq!(encode(b"foob"), "Zm9vYg==");
            assert_eq!(encode(b""), "");
            let all: Vec<u8> = (0..=255).collect();
            assert_eq!(decode(&encode(&all)).unwrap(), all);
            assert_eq!(decode("Zm9vYg==").unwrap(), b"foob");
        }

        #[test]
        fn journal_lines_are_compact_and_old_ones_still_read() {
            let u = NetUndo::RestoreFile {
                netns: None,
                path: "/tmp/x".into(),
                data: Some(vec![0xff; 3000]),
            };
            let json = serde_json::to_string(&u).unwrap();
            assert!(json.len() < 4200, "{} bytes", json.len());
            assert_eq!(serde_json::from_str::<NetUndo>(&json).unwrap(), u);
            let old = r#"{"RestoreFile":{"netns":null,"path":"/tmp/x","data":[104,105]}}"#;
            let v: NetUndo = serde_json::from_str(old).unwrap();
            assert!(matches!(v, NetUndo::RestoreFile { data: Some(ref d), .. } if d == b"hi"));
            let none = r#"{"RestoreFile":{"netns":null,"path":"/tmp/x","data":null}}"#;
            let v: NetUndo = serde_json::from_str(none).unwrap();
            assert!(matches!(v, NetUndo::RestoreFile { data: None, .. }));
        }
    }
}
