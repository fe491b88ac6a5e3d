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
use super::saved::{SavedAddr, SavedRoute};
use super::{addrs, features, files, netns, routes, sysctl, Nets};

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
    RestoreFile {
        netns: Option<String>,
        path: String,
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
async fn delete_many(nets: &Nets, run: &[NetUndo]) -> Vec<String> {
    let mut by_ns: BTreeMap<Option<String>, Vec<&NetUndo>> = BTreeMap::new();
    let mut namespaces = Vec::new();
    for u in run {
        match u {
            NetUndo::DeleteLink { netns, .. } => by_ns.entry(netns.clone()).or_default().push(u),
            _ => namespaces.push(u),
        }
    }
    let per_ns = by_ns.into_iter().map(|(netns, us)| async move {
        match group_delete(nets, netns.as_deref(), &us).await {
            Ok(()) => vec![],
            // fall back to one by one, collecting every error
            Err(_) => join_all(us.iter().map(|u| u.undo(nets)))
                .await
                .into_iter()
                .filter_map(Result::err)
                .collect(),
        }
    });
    let mut errors: Vec<String> = join_all(per_ns).await.into_iter().flatten().collect();
    let ns_results = join_all(namespaces.iter().map(|u| u.undo(nets))).await;
    errors.extend(ns_results.into_iter().filter_map(Result::err));
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
    let mut errors = Vec::new();
    let mut rev: Vec<NetUndo> = entries;
    rev.reverse();
    let mut i = 0;
    while i < rev.len() {
        if rev[i].is_deletion() {
            let mut j = i;
            while j < rev.len() && rev[j].is_deletion() {
                j += 1;
            }
            errors.extend(delete_many(nets, &rev[i..j]).await);
            i = j;
        } else {
            if let Err(e) = rev[i].undo(nets).await {
                errors.push(e);
            }
            i += 1;
        }
    }
    errors
}
