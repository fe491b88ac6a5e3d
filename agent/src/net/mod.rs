//! The agent's network layer: devices, addresses, routes, namespaces,
//! sysctls and files, driven over rtnetlink and a few `SIOCETHTOOL`
//! ioctls, with every change recorded as a [`NetUndo`] first.
//!
//! Data flow: the agent's dispatch calls one `pub async fn` per protocol
//! request (`set_mtu` for `Request::SetMtu`, ...), passing the [`Nets`]
//! registry of per-namespace netlink sockets and a [`Recorder`] (the undo
//! journal). Each mutating function asks the recorder to persist how to undo
//! the change *before* applying it, then applies it and reads back the
//! result. The journal later replays the entries in reverse with
//! [`NetUndo::undo`] or, faster, [`undo::undo_all`].
//!
//! Reads come from a per-namespace device cache kept current from netlink
//! notifications ([`monitor`]), which also feeds the `DeviceChanged` /
//! `DeviceRemoved` events of the session holding the agent.
//!
//! Reading order: [`nsthread`] (sockets opened inside a namespace) →
//! [`monitor`] (the device cache and its events) →
//! [`error`] (netlink errors with the kernel's extended-ACK text) →
//! [`links`] (`ip link`) → [`create`] (`ip link add`, dispatching to
//! [`kinds`], one file per link kind) → [`addrs`] →
//! [`routes`] → [`saved`] (addresses and routes kept exactly for undo) →
//! [`features`] / [`driver`] / [`ethtool`] (ethtool) → [`neigh`] →
//! [`netem`] (tc) → [`netns`] →
//! [`sysctl`] → [`files`] → [`undo`].

pub mod addrs;
pub mod create;
pub mod driver;
pub mod env;
pub mod error;
pub mod ethtool;
pub mod features;
pub mod files;
pub mod kinds;
pub mod links;
pub mod monitor;
pub mod neigh;
pub mod netem;
pub mod netns;
pub mod nsthread;
pub mod routes;
pub mod saved;
pub mod sysctl;
pub mod undo;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lnst_common::WireError;

pub use addrs::{ip_add, ip_add_with, ip_del, ip_flush};
pub use create::create;
pub use ethtool::{ethtool_get, ethtool_set};
pub use features::{features, set_features};
pub use files::{file_get, file_put, file_read, file_write, MAX_CHUNK};
pub use links::{
    destroy, device, devices, move_to, set_mac, set_master, set_mtu, set_state, wait_carrier,
};
pub use neigh::{neigh_add, neigh_del, neighs};
pub use netem::netem;
pub use netns::{netns_create, netns_delete};
pub use routes::{route_add, route_del};
pub use sysctl::{sysctl_get, sysctl_set};
pub use undo::{undo_all, undo_all_indexed, NetUndo};

pub use monitor::{Hub, Subscription};
use nsthread::NsConn;

/// Where every mutating function writes how to undo its change, before
/// making it. The agent's journal implements this (and fsyncs); tests use
/// a `Vec`.
pub trait Recorder: Send + Sync {
    /// Persist `undo`; an error aborts the change before it is made.
    fn record(&self, undo: NetUndo) -> Result<(), WireError>;

    /// The network entries recorded so far, oldest first, when this
    /// recorder keeps them: what the run created (so `destroy` can refuse
    /// a device it did not). `None`: unknown, nothing is refused.
    fn recorded(&self) -> Option<Vec<NetUndo>> {
        None
    }

    /// Takes back `undo`, just recorded, because the change it covers was
    /// not made (the write failed). Best effort: an entry recorded after
    /// it stays, and so does this one then (undoing a change that was not
    /// made restores what is there anyway).
    fn cancel(&self, _undo: &NetUndo) {}
}

/// A recorder that records nothing: for undo replay itself and for callers
/// that do not journal (benchmarks).
pub struct NoRecord;

impl Recorder for NoRecord {
    fn record(&self, _undo: NetUndo) -> Result<(), WireError> {
        Ok(())
    }
}

/// The registry of per-namespace netlink connections. Cheap to clone.
///
/// `None` is the agent's own namespace; `Some(name)` is `/run/netns/NAME`
/// (as `ip netns` names it). A connection is opened on first use and kept;
/// it is re-opened when the namespace file now names a different namespace
/// or when the connection died ([`nsthread::NsConn::alive`]), and dropped by [`Nets::forget`] (a socket keeps its namespace alive, so
/// deleting a namespace must forget it first).
#[derive(Clone)]
pub struct Nets {
    inner: Arc<Inner>,
}

struct Inner {
    /// Prefix of namespaces this agent creates (`lnst-<run>-`).
    prefix: String,
    /// std Mutex: held only to look up or insert, never across an await.
    conns: Mutex<HashMap<Option<String>, Arc<NsConn>>>,
    /// Where the namespaces' monitors send device changes.
    hub: Arc<Hub>,
}

impl Nets {
    /// A registry whose [`netns_create`] names namespaces `<prefix><name>`.
    pub fn new(prefix: String) -> Nets {
        Nets {
            inner: Arc::new(Inner {
                prefix,
                conns: Mutex::new(HashMap::new()),
                hub: Arc::new(Hub::default()),
            }),
        }
    }

    /// The prefix given to [`Nets::new`].
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The rtnetlink handle for `netns` (`None`: the agent's own).
    pub async fn handle(&self, netns: Option<&str>) -> Result<rtnetlink::Handle, WireError> {
        Ok(self.conn(netns).await?.rt.clone())
    }

    /// Everything open in `netns`: rtnetlink and an AF_INET socket for
    /// ioctls.
    pub(crate) async fn conn(&self, netns: Option<&str>) -> Result<Arc<NsConn>, WireError> {
        let key = netns.map(str::to_string);
        let ident = match netns {
            Some(name) => Some(nsthread::netns_ident(name)?),
            None => None,
        };
        {
            let conns = self.lock();
            if let Some(c) = conns.get(&key) {
                if c.ident == ident && c.alive() {
                    return Ok(c.clone());
                }
                if !c.alive() {
                    tracing::warn!(netns = ?netns, "netlink connection was dead; reopening");
                }
            }
        }
        let conn = Arc::new(nsthread::open(netns, self.inner.hub.clone()).await?);
        self.lock().insert(key, conn.clone());
        Ok(conn)
    }

    /// Sends `Event::DeviceChanged` / `Event::DeviceRemoved` of the agent's
    /// own namespace, and of every namespace later [`Nets::touch`]ed for
    /// `session`, into `tx` until the returned guard drops. Replaces an
    /// earlier subscription (one controller holds the agent at a time).
    pub async fn subscribe(
        &self,
        session: u64,
        tx: tokio::sync::mpsc::Sender<lnst_common::ToController>,
    ) -> Subscription {
        let sub = self.inner.hub.subscribe(session, tx);
        if let Err(e) = self.conn(None).await {
            tracing::warn!(error = %e, "no device monitor in the agent's namespace");
        }
        sub
    }

    /// Adds `netns` to the namespaces whose device changes `session`
    /// hears about, and starts its monitor. Errors are left to the request
    /// that named the namespace.
    pub async fn touch(&self, session: u64, netns: Option<&str>) {
        self.inner.hub.touch(session, netns);
        let _ = self.conn(netns).await;
    }

    /// Drops the cached connection of `netns` so it no longer pins the
    /// namespace (called before deleting a namespace).
    pub fn forget(&self, netns: &str) {
        self.lock().remove(&Some(netns.to_string()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Option<String>, Arc<NsConn>>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single insert/remove), so a poisoned lock is still usable.
        self.inner.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `netns` for messages: `netns NAME` or `the agent's namespace`.
pub(crate) fn ns_label(netns: Option<&str>) -> String {
    match netns {
        Some(n) => format!("netns {n}"),
        None => "the agent's netns".to_string(),
    }
}
