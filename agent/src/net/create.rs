//! `ip link add NAME type KIND ...`: the verb. [`create`] validates the
//! name and every option ([`kinds::validate`]) before anything is looked
//! up, checks the name is free, records the undo, then dispatches on how
//! the kind is made: a netlink message ([`kinds::build_message`]), the tun
//! ioctl ([`kinds::tuntap`]) or teamd ([`kinds::team`]). The kinds
//! themselves, their options and messages, live in [`super::kinds`].

use std::collections::HashMap;
use std::os::fd::AsRawFd;

use lnst_common::device::{DevRef, DeviceInfo, DeviceSpec};
use lnst_common::{ErrorKind, WireError};

use super::error::{errno_of, nl_error};
use super::kinds::{self, build_message, kind_name, referenced_links};
use super::links::{device, get_link};
use super::{ns_label, NetUndo, Nets, Recorder};

/// `ip link add NAME type KIND ...` in `netns`. For a veth, returns the
/// first end; its peer is created in `peer_netns` when given. Records
/// `DeleteLink` (which also removes a veth peer) before creating.
pub async fn create(
    nets: &Nets,
    rec: &dyn Recorder,
    netns: Option<&str>,
    name: &str,
    spec: &DeviceSpec,
) -> Result<DeviceInfo, WireError> {
    let kind = kind_name(spec);
    kinds::validate(name, spec)?;
    let conn = nets.conn(netns).await?;
    let me = DevRef {
        netns: netns.map(str::to_string),
        name: name.to_string(),
    };
    if get_link(&conn, &me).await.is_ok() {
        return Err(WireError::new(
            ErrorKind::AlreadyExists,
            format!(
                "cannot create {kind} {name}: a device of that name exists in {}",
                ns_label(netns)
            ),
        ));
    }
    if let DeviceSpec::Tun { owner, multi_queue } | DeviceSpec::Tap { owner, multi_queue } = spec {
        let tap = matches!(spec, DeviceSpec::Tap { .. });
        rec.record(NetUndo::DeleteLink {
            netns: me.netns.clone(),
            name: name.to_string(),
        })?;
        let (n, o, mq) = (name.to_string(), *owner, *multi_queue);
        super::nsthread::run_in(netns, move || kinds::tuntap::tuntap_add(&n, tap, o, mq)).await?;
        return device(nets, &me).await;
    }
    if let DeviceSpec::Team { runner, link_watch } = spec {
        let text = kinds::team::config(name, runner.as_deref(), link_watch.as_deref())?;
        let (conf, pid) = kinds::team::files(netns, name);
        rec.record(NetUndo::StopTeamd {
            netns: me.netns.clone(),
            name: name.to_string(),
            conf: conf.display().to_string(),
            pid: pid.display().to_string(),
        })?;
        let n = name.to_string();
        super::nsthread::run_in(netns, move || kinds::team::start(&n, &text, &conf, &pid)).await?;
        return device(nets, &me).await;
    }
    let mut links = HashMap::new();
    for l in referenced_links(spec) {
        let r = DevRef {
            netns: me.netns.clone(),
            name: l.to_string(),
        };
        links.insert(l.to_string(), get_link(&conn, &r).await?.header.index);
    }
    let mut peer_file = None;
    if let DeviceSpec::Veth { peer, peer_netns } = spec {
        // As `ip link add NAME type veth peer name PEER [netns NS]`: without
        // a namespace of its own the peer is where the device is.
        let peer_ns = peer_netns.as_deref().or(netns);
        let pconn = nets.conn(peer_ns).await?;
        let pref = DevRef {
            netns: peer_ns.map(str::to_string),
            name: peer.clone(),
        };
        if get_link(&pconn, &pref).await.is_ok() || (peer_ns == netns && peer == name) {
            return Err(WireError::new(
                ErrorKind::AlreadyExists,
                format!(
                    "cannot create veth {name}: its peer name {peer} is taken in {}",
                    ns_label(peer_ns)
                ),
            ));
        }
        if let (Some(n), false) = (peer_ns, peer_ns == netns) {
            let path = super::nsthread::netns_path(n);
            peer_file = Some(std::fs::File::open(&path).map_err(|e| {
                WireError::not_found(format!(
                    "veth {name}: peer {}: {path}: {e}",
                    ns_label(peer_ns)
                ))
            })?);
        }
    }
    let msg = build_message(
        name,
        spec,
        &links,
        peer_file.as_ref().map(|f| f.as_raw_fd()),
    )?;
    rec.record(NetUndo::DeleteLink {
        netns: me.netns.clone(),
        name: name.to_string(),
    })?;
    let r = conn.rt.link().add(msg).execute().await;
    drop(peer_file);
    r.map_err(|e| {
        if errno_of(&e) == Some(nix::errno::Errno::EOPNOTSUPP) {
            let why = nl_error(e, "").message;
            let why = why.trim_start_matches(": ");
            WireError::unsupported(format!(
                "this kernel does not support {kind} devices ({why})"
            ))
        } else {
            nl_error(
                e,
                format!("ip link add {name} type {kind} in {}", ns_label(netns)),
            )
        }
    })?;
    device(nets, &me).await
}
