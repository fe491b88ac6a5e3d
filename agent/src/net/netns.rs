//! `ip netns add|del` the way iproute2 does it: `/run/netns` made a shared
//! mount point, an empty file per namespace, and a bind mount of a thread's
//! `/proc/thread-self/ns/net` after `unshare(CLONE_NEWNET)`. Namespaces
//! created here are visible to `ip netns list` and named `<prefix><name>`.

use std::path::Path;

use lnst_common::{ErrorKind, WireError};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use super::nsthread::{netns_path, NETNS_DIR};
use super::{NetUndo, Nets, Recorder};

/// `ip netns add <prefix><name>`; returns the full name.
pub async fn netns_create(
    nets: &Nets,
    rec: &dyn Recorder,
    name: &str,
) -> Result<String, WireError> {
    let full = format!("{}{}", nets.prefix(), name);
    if name.is_empty() || full.contains('/') || full.len() > 200 || full.starts_with('.') {
        return Err(WireError::invalid(format!(
            "invalid network namespace name {name:?}"
        )));
    }
    let path = netns_path(&full);
    if Path::new(&path).exists() {
        return Err(WireError::new(
            ErrorKind::AlreadyExists,
            format!("network namespace {full} already exists"),
        ));
    }
    rec.record(NetUndo::DeleteNetns { name: full.clone() })?;
    let f2 = full.clone();
    tokio::task::spawn_blocking(move || create_blocking(&f2))
        .await
        .map_err(|e| WireError::internal(format!("netns task failed: {e}")))??;
    Ok(full)
}

fn os(what: String) -> impl FnOnce(nix::errno::Errno) -> WireError {
    move |e| WireError::os(format!("{what}: {e}"))
}

fn create_blocking(full: &str) -> Result<(), WireError> {
    std::fs::create_dir_all(NETNS_DIR)
        .map_err(|e| WireError::os(format!("mkdir {NETNS_DIR}: {e}")))?;
    // Make /run/netns a shared mount point so namespaces mounted here are
    // seen from other mount namespaces (as `ip netns add` does).
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    if mount(None::<&str>, NETNS_DIR, None::<&str>, shared, None::<&str>).is_err() {
        mount(
            Some(NETNS_DIR),
            NETNS_DIR,
            Some("none"),
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(os(format!("mount --bind {NETNS_DIR}")))?;
        mount(None::<&str>, NETNS_DIR, None::<&str>, shared, None::<&str>)
            .map_err(os(format!("mount --make-rshared {NETNS_DIR}")))?;
    }
    let path = netns_path(full);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| super::error::io_error(e, format!("creating {path}")))?;
    // A fresh thread: unshare only ever changes that thread's namespace.
    let p2 = path.clone();
    let r = std::thread::spawn(move || -> Result<(), WireError> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(os("unshare(CLONE_NEWNET)".into()))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            p2.as_str(),
            Some("none"),
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(os(format!("mount --bind /proc/thread-self/ns/net {p2}")))
    })
    .join()
    .unwrap_or_else(|_| Err(WireError::internal("netns thread panicked")));
    if r.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    r
}

/// `ip netns del NAME`; a namespace already gone is fine. Devices inside
/// go with it once nothing else holds the namespace.
pub async fn netns_delete(nets: &Nets, name: &str) -> Result<(), WireError> {
    nets.forget(name);
    let path = netns_path(name);
    tokio::task::spawn_blocking(move || {
        if !Path::new(&path).exists() {
            return Ok(());
        }
        // EINVAL: not a mount point (half-created); remove the file anyway.
        match umount2(path.as_str(), MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(WireError::os(format!("umount {path}: {e}"))),
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(WireError::os(format!("rm {path}: {e}"))),
        }
    })
    .await
    .map_err(|e| WireError::internal(format!("netns task failed: {e}")))?
}
