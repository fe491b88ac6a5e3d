//! Running code inside a network namespace, and the per-namespace sockets.
//!
//! A socket belongs to the namespace its creating thread was in. So for a
//! named namespace we start a short-lived OS thread, `setns` it into
//! `/run/netns/NAME` (like `ip netns exec`), open the sockets there and hand
//! them back to the agent, where the netlink connections are driven by a
//! runtime on a thread of their own ([`netlink_runtime`]).
//! Never `setns` a tokio worker or blocking-pool thread: they are reused.
//! The same thread trick reads `/proc/sys/net/...` as seen from inside.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use lnst_common::WireError;
use nix::sched::{setns, CloneFlags};
use rtnetlink::sys::AsyncSocket;

use super::monitor::{
    Hub, Monitor, MONITOR_RCVBUF, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR, RTNLGRP_LINK,
};

/// Where `ip netns` keeps its namespace files.
pub const NETNS_DIR: &str = "/run/netns";

/// Identity of a namespace file: `(st_dev, st_ino)` of its nsfs inode.
pub type NsIdent = (u64, u64);

/// The sockets opened inside one namespace.
pub struct NsConn {
    /// Which namespace they were opened in (`None`: the agent's own).
    pub ident: Option<NsIdent>,
    /// rtnetlink (`ip link/addr/route`), extended ACK enabled.
    pub rt: rtnetlink::Handle,
    /// An AF_INET datagram socket for `SIOCETHTOOL` ioctls; ioctls act on
    /// the namespace the socket was created in.
    pub inet: OwnedFd,
    /// The namespace's device cache, kept current from notifications.
    pub(crate) monitor: Monitor,
    /// The tasks driving the two netlink connections. One that ended (a
    /// panic inside netlink-packet-route, a socket error) leaves `rt`
    /// answering every request with an error: [`NsConn::alive`] tells the
    /// registry to open a new connection instead of handing this one out.
    tasks: [tokio::task::AbortHandle; 2],
}

impl NsConn {
    /// Whether both netlink connections are still being driven.
    pub fn alive(&self) -> bool {
        self.tasks.iter().all(|t| !t.is_finished())
    }
}

/// Drives one netlink connection; a panic inside it (netlink-packet-route
/// panics on some malformed attributes) is logged, not lost, and the
/// registry reopens the connection on next use.
/// The runtime that drives every netlink connection: one thread of its
/// own, never an agent worker. Sending a netlink request runs the kernel's
/// handler in the sender's thread, and most rtnetlink handlers take
/// `rtnl_lock`, which the kernel can hold for a second or more (tearing
/// down a namespace full of devices). Driven from the agent's two workers,
/// two such sends stopped every ping and heartbeat for that long
/// (`agent/tests/agent/busy.rs`); here they only delay other netlink
/// traffic, which waits for the same lock anyway.
fn netlink_runtime() -> Result<tokio::runtime::Handle, WireError> {
    static RT: std::sync::OnceLock<Result<tokio::runtime::Handle, String>> =
        std::sync::OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the netlink runtime: {e}"))?;
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("netlink".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .map_err(|e| format!("cannot start the netlink thread: {e}"))?;
        Ok(handle)
    })
    .clone()
    .map_err(WireError::os)
}

async fn drive<F: std::future::Future<Output = ()>>(conn: F, label: String, what: &'static str) {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(conn).catch_unwind().await {
        Ok(()) => tracing::debug!(netns = %label, what, "netlink connection ended"),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(netns = %label, what, panic = %msg,
                "netlink connection panicked; it is reopened on next use")
        }
    }
}

/// `/run/netns/NAME`
pub fn netns_path(name: &str) -> String {
    format!("{NETNS_DIR}/{name}")
}

/// The identity of `/run/netns/NAME`, or `NotFound` naming it.
pub fn netns_ident(name: &str) -> Result<NsIdent, WireError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(WireError::invalid(format!(
            "invalid network namespace name {name:?}"
        )));
    }
    let path = netns_path(name);
    let md = std::fs::metadata(&path).map_err(|e| {
        WireError::not_found(format!("network namespace {name} not found ({path}: {e})"))
    })?;
    Ok((md.dev(), md.ino()))
}

/// Enters `/run/netns/NAME` on the calling thread (`ip netns exec NAME`).
/// Only for threads made for the purpose.
pub fn enter(name: &str) -> Result<(), WireError> {
    let path = netns_path(name);
    let file = std::fs::File::open(&path).map_err(|e| {
        WireError::not_found(format!("network namespace {name} not found ({path}: {e})"))
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET)
        .map_err(|e| WireError::os(format!("setns into network namespace {name}: {e}")))
}

/// Runs blocking `f` inside `netns` (`None`: the agent's own namespace, on
/// the blocking pool) and returns its result.
pub async fn run_in<T, F>(netns: Option<&str>, f: F) -> Result<T, WireError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, WireError> + Send + 'static,
{
    match netns {
        None => tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| WireError::internal(format!("blocking task failed: {e}")))?,
        Some(name) => {
            let name = name.to_string();
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name(format!("netns-{name}"))
                .spawn(move || {
                    let r = enter(&name).and_then(|()| f());
                    let _ = tx.send(r);
                })
                .map_err(|e| WireError::os(format!("cannot start a thread: {e}")))?;
            rx.await
                .map_err(|_| WireError::internal("namespace thread died"))?
        }
    }
}

/// Opens the sockets of [`NsConn`] inside `netns` and starts driving the
/// netlink connections on the current runtime: one for requests, one
/// subscribed to link and address notifications for the [`Monitor`], whose
/// cache is filled before this returns. Its changes go to `hub`.
pub async fn open(netns: Option<&str>, hub: Arc<Hub>) -> Result<NsConn, WireError> {
    let rt = netlink_runtime()?;
    let rt2 = rt.clone();
    let label = super::ns_label(netns);
    let label2 = label.clone();
    let ident = match netns {
        Some(n) => Some(netns_ident(n)?),
        None => None,
    };
    let ((rt_conn, rt_handle), (mon_conn, mon_handle, mon_rx), inet) = run_in(netns, move || {
        // Registering the sockets with the netlink runtime's reactor
        // needs its context; the sockets themselves are created in this
        // thread's namespace.
        let _guard = rt2.enter();
        let os = |what: &str, e: std::io::Error| {
            WireError::os(format!("cannot open a {what} socket in {label}: {e}"))
        };
        let (mut c, h, _) = rtnetlink::new_connection().map_err(|e| os("rtnetlink", e))?;
        {
            let s = c.socket_mut().socket_mut();
            // Extended ACK: the kernel's own error text ("Unknown device
            // type"); capped ACK keeps error replies short. Best effort.
            let _ = s.set_ext_ack(true);
            let _ = s.set_cap_ack(true);
        }
        // `ip monitor link address`: subscribed here, before the cache's
        // dump, so nothing falls between the two.
        let (mut mc, mh, mrx) = rtnetlink::new_connection().map_err(|e| os("rtnetlink", e))?;
        {
            let s = mc.socket_mut().socket_mut();
            for g in [RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR] {
                s.add_membership(g).map_err(|e| os("netlink monitor", e))?;
            }
            force_rcvbuf(s.as_raw_fd(), MONITOR_RCVBUF);
        }
        // SAFETY: plain syscall; the result is checked below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(os("AF_INET", std::io::Error::last_os_error()));
        }
        // SAFETY: fd is a freshly created descriptor owned by nobody else.
        let inet = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(((c, h), (mc, mh, mrx), inet))
    })
    .await?;
    let tasks = [
        rt.spawn(drive(rt_conn, label2.clone(), "requests"))
            .abort_handle(),
        rt.spawn(drive(mon_conn, label2, "monitor")).abort_handle(),
    ];
    let inet2 = inet
        .try_clone()
        .map_err(|e| WireError::os(format!("dup of an AF_INET socket: {e}")))?;
    let monitor = Monitor::start(netns, mon_handle, mon_rx, inet2, hub).await?;
    tracing::debug!(netns = ?netns, fd = inet.as_raw_fd(), "opened netlink sockets");
    Ok(NsConn {
        ident,
        rt: rt_handle,
        inet,
        monitor,
        tasks,
    })
}

/// `SO_RCVBUFFORCE` (root may exceed `rmem_max`), else `SO_RCVBUF`; best
/// effort: a small buffer only makes an overrun and a resync likelier.
fn force_rcvbuf(fd: std::os::fd::RawFd, size: usize) {
    let v = size as libc::c_int;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt with a pointer to a live c_int and its size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &v as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return;
        }
    }
}
