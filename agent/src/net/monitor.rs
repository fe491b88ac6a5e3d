//! The live device cache of one namespace (`ip monitor link address`, kept
//! in memory), and the [`Hub`] that pushes its changes to the controller.
//!
//! Each namespace's [`super::nsthread::NsConn`] owns a [`Monitor`]: a
//! second netlink socket, opened inside the namespace and subscribed to
//! `RTNLGRP_LINK`, `RTNLGRP_IPV4_IFADDR` and `RTNLGRP_IPV6_IFADDR`. It is
//! filled by one dump of links and addresses and then kept current from the
//! notifications, which a task applies as they arrive. Reads
//! ([`Monitor::devices`], [`Monitor::device_by_name`]) answer from it.
//!
//! Freshness: a read first sends an `RTM_GETSTATS` request on the monitor
//! socket itself. The kernel queues a notification before it acknowledges
//! the change that caused it, and a socket's messages are read in order, so
//! once that reply is in, every notification of a change made before the
//! read (by us, or by `ip link set` in a job) has been received; the reader
//! applies them before answering. The same reply brings the counters, which
//! the kernel does not notify (`ip -s link`): one stats-only dump per
//! `devices()`, one `RTM_GETSTATS` of one device per read-back. The driver
//! name (`ETHTOOL_GDRVINFO` ioctl) is asked once per ifindex and cached.
//! If the socket overflows (`ENOBUFS`), notifications were lost: the next
//! reader or the task dumps again and reports the differences as events.
//!
//! Address order follows the kernel's lists, as `ip addr` shows them: a new
//! IPv4 primary goes after the last primary of the same or wider scope, a
//! secondary at the end; a new IPv6 address goes before the first one of
//! the same or narrower scope (newest first, global before link-local).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use futures::{StreamExt, TryStreamExt};
use lnst_common::device::{DeviceInfo, LinkStats};
use lnst_common::{Event, ToController, WireError};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, Stats64};
use netlink_packet_route::stats::{StatsAttribute, StatsFilterMask, StatsMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use tokio::sync::{mpsc, oneshot, Notify};

use super::error::nl_error;
use super::links::{controller_of, link_kind, link_mac, link_mtu, link_name};
use super::{driver, ns_label};

/// Multicast groups of `ip monitor link address`.
pub const RTNLGRP_LINK: u32 = 1;
pub const RTNLGRP_IPV4_IFADDR: u32 = 5;
pub const RTNLGRP_IPV6_IFADDR: u32 = 9;

/// Receive buffer of the monitor socket: room for a burst of a few
/// thousand notifications before the kernel drops some (`ENOBUFS`).
pub const MONITOR_RCVBUF: usize = 4 << 20;

/// How long the pusher waits after a change before sending, so that a
/// burst (a bridge with 10 ports coming up) becomes one event per device.
pub const COALESCE: Duration = Duration::from_millis(10);

/// A notification as the netlink connection hands it over.
pub(crate) type Notification = (
    NetlinkMessage<RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
);

/// One namespace's device cache and the socket that keeps it current.
pub(crate) struct Monitor {
    netns: Option<String>,
    /// rtnetlink on the monitor socket: dumps and the stats requests that
    /// double as barriers are sent here, so their replies come in order
    /// with the notifications.
    handle: rtnetlink::Handle,
    /// std Mutex: held only to apply notifications or to read, never
    /// across an await.
    state: Arc<Mutex<State>>,
    /// Dropped with the monitor: stops the task that applies notifications.
    _stop: oneshot::Sender<()>,
}

struct State {
    netns: Option<String>,
    rx: UnboundedReceiver<Notification>,
    /// By ifindex; a link dump is in ifindex order too.
    links: BTreeMap<u32, Link>,
    /// An AF_INET socket of the namespace for the driver ioctl.
    inet: OwnedFd,
    hub: Arc<Hub>,
    /// Notifications were lost (socket overrun): dump again.
    need_resync: bool,
}

/// What the cache knows of one device.
#[derive(Debug, Clone, PartialEq)]
struct Link {
    name: String,
    kind: String,
    mac: String,
    mtu: u32,
    up: bool,
    carrier: bool,
    master: Option<u32>,
    stats: LinkStats,
    /// `ethtool -i`, asked once (`None`: not yet).
    driver: Option<String>,
    v4: Vec<Addr4>,
    v6: Vec<Addr6>,
}

#[derive(Debug, Clone, PartialEq)]
struct Addr4 {
    cidr: String,
    secondary: bool,
    /// `RT_SCOPE_*` (host 254 > link 253 > universe 0).
    scope: u8,
}

#[derive(Debug, Clone, PartialEq)]
struct Addr6 {
    cidr: String,
    /// `ipv6_addr_src_scope`: global 0xe > site 0x5 > link 0x2 > node 0x1.
    scope: u8,
}

impl Monitor {
    /// Takes over a connection whose socket is already subscribed (see
    /// [`super::nsthread::open`]), fills the cache with one dump and starts
    /// the task that applies notifications.
    pub(crate) async fn start(
        netns: Option<&str>,
        handle: rtnetlink::Handle,
        rx: UnboundedReceiver<Notification>,
        inet: OwnedFd,
        hub: Arc<Hub>,
    ) -> Result<Monitor, WireError> {
        let (stop_tx, stop_rx) = oneshot::channel();
        let state = Arc::new(Mutex::new(State {
            netns: netns.map(str::to_string),
            rx,
            links: BTreeMap::new(),
            inet,
            hub,
            need_resync: false,
        }));
        let m = Monitor {
            netns: netns.map(str::to_string),
            handle,
            state: state.clone(),
            _stop: stop_tx,
        };
        m.resync(false).await?;
        tokio::spawn(apply_loop(state, m.handle.clone(), stop_rx));
        Ok(m)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// `ip -s -d addr show`: every device, with fresh counters.
    pub(crate) async fn devices(&self) -> Result<Vec<DeviceInfo>, WireError> {
        let stats = self.stats(None).await?;
        self.catch_up().await?;
        let mut st = self.lock();
        let idx: Vec<u32> = st.links.keys().copied().collect();
        Ok(idx
            .into_iter()
            .filter_map(|i| {
                let mut d = st.info(i)?;
                if let Some(s) = stats.get(&i) {
                    d.stats = s.clone();
                }
                Some(d)
            })
            .collect())
    }

    /// `ip -s -d addr show dev DEV`, `None` if there is no such device.
    pub(crate) async fn device_by_name(&self, name: &str) -> Result<Option<DeviceInfo>, WireError> {
        let guess = self.lock().index_of(name);
        // ifindex 1 is `lo`, always there: a cheap barrier when the name is
        // not known yet (a device just created).
        let stats = self.stats(Some(guess.unwrap_or(1))).await;
        self.catch_up().await?;
        let Some(i) = self.lock().index_of(name) else {
            return Ok(None);
        };
        let stats = match (guess == Some(i), stats) {
            (true, Ok(s)) => s,
            _ => self.stats(Some(i)).await.unwrap_or_default(),
        };
        Ok(self.with_stats(i, &stats))
    }

    /// The device `ifindex` as it is now, `None` if it is gone.
    pub(crate) async fn device_by_index(
        &self,
        ifindex: u32,
    ) -> Result<Option<DeviceInfo>, WireError> {
        let stats = self.stats(Some(ifindex)).await.unwrap_or_default();
        self.catch_up().await?;
        Ok(self.with_stats(ifindex, &stats))
    }

    /// Names of the devices in the cache (for error messages).
    pub(crate) fn names(&self) -> Vec<String> {
        self.lock().links.values().map(|l| l.name.clone()).collect()
    }

    fn with_stats(&self, i: u32, stats: &HashMap<u32, LinkStats>) -> Option<DeviceInfo> {
        let mut d = self.lock().info(i)?;
        if let Some(s) = stats.get(&i) {
            d.stats = s.clone();
        }
        Some(d)
    }

    /// Applies every notification received so far; dumps again first if
    /// some were lost.
    async fn catch_up(&self) -> Result<(), WireError> {
        let resync = {
            let mut st = self.lock();
            st.drain();
            st.need_resync
        };
        if resync {
            self.resync(true).await?;
        }
        Ok(())
    }

    /// `ip -s link` counters through `RTM_GETSTATS` (`IFLA_STATS_LINK_64`
    /// only): of one device, or of all (a dump). Sent on the monitor socket,
    /// so it is also a barrier (see the module doc).
    async fn stats(&self, ifindex: Option<u32>) -> Result<HashMap<u32, LinkStats>, WireError> {
        let mut m = StatsMessage::default();
        m.header.filter_mask = StatsFilterMask::Link64;
        m.header.ifindex = ifindex.unwrap_or(0);
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetStats(m));
        req.header.flags = NLM_F_REQUEST | if ifindex.is_none() { NLM_F_DUMP } else { 0 };
        let what = || match ifindex {
            Some(i) => format!(
                "ip stats show dev index {i} in {}",
                ns_label(self.netns.as_deref())
            ),
            None => format!("ip stats show in {}", ns_label(self.netns.as_deref())),
        };
        let mut replies = self
            .handle
            .clone()
            .request(req)
            .map_err(|e| nl_error(e, what()))?;
        let mut out = HashMap::new();
        while let Some(msg) = replies.next().await {
            match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewStats(s)) => {
                    for a in s.attributes {
                        if let StatsAttribute::Link64(x) = a {
                            out.insert(s.header.ifindex, stats_of(&x));
                        }
                    }
                }
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(nl_error(rtnetlink::Error::NetlinkError(e), what()));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Replaces the cache with a fresh dump of links and addresses (taken
    /// after the socket subscribed, so later notifications apply on top);
    /// with `report`, differences go to the hub as events.
    async fn resync(&self, report: bool) -> Result<(), WireError> {
        resync(&self.state, &self.handle, self.netns.as_deref(), report).await
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every update is a plain field or map write: a panic cannot leave the
    // cache half-updated in a way later notifications would not repair.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

async fn resync(
    state: &Mutex<State>,
    handle: &rtnetlink::Handle,
    netns: Option<&str>,
    report: bool,
) -> Result<(), WireError> {
    lock(state).need_resync = false;
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl_error(e, format!("ip link show in {}", ns_label(netns))))?;
    let addrs: Vec<AddressMessage> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl_error(e, format!("ip addr show in {}", ns_label(netns))))?;
    let mut st = lock(state);
    let old = std::mem::take(&mut st.links);
    for l in &links {
        let mut link = link_of(l);
        if let Some(o) = old.get(&l.header.index) {
            if o.name == link.name && o.kind == link.kind {
                link.driver = o.driver.clone();
            }
        }
        st.links.insert(l.header.index, link);
    }
    for a in &addrs {
        st.new_addr(a, false);
    }
    if report {
        let gone: Vec<(u32, String)> = old
            .iter()
            .filter(|(i, _)| !st.links.contains_key(i))
            .map(|(i, l)| (*i, l.name.clone()))
            .collect();
        for (i, name) in gone {
            st.removed(i, name);
        }
        let changed: Vec<u32> = st
            .links
            .iter()
            .filter(|(i, l)| old.get(i).is_none_or(|o| !same_but_stats(o, l)))
            .map(|(i, _)| *i)
            .collect();
        for i in changed {
            st.changed(i);
        }
    }
    st.drain();
    Ok(())
}

/// Applies notifications as they arrive, until the monitor is dropped.
async fn apply_loop(
    state: Arc<Mutex<State>>,
    handle: rtnetlink::Handle,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let ready = futures::future::poll_fn(|cx| {
            let mut st = lock(&state);
            loop {
                match st.rx.poll_next_unpin(cx) {
                    Poll::Ready(Some((msg, _))) => st.apply(msg),
                    Poll::Ready(None) => return Poll::Ready(false),
                    Poll::Pending if st.need_resync => return Poll::Ready(true),
                    Poll::Pending => return Poll::Pending,
                }
            }
        });
        tokio::select! {
            _ = &mut stop => return,
            r = ready => {
                if !r {
                    tracing::warn!("netlink monitor socket closed");
                    return;
                }
                let netns = lock(&state).netns.clone();
                tracing::warn!(netns = ?netns, "netlink notifications lost; dumping again");
                if let Err(e) = resync(&state, &handle, netns.as_deref(), true).await {
                    tracing::error!(error = %e, "resync of the device cache failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    lock(&state).need_resync = true;
                }
            }
        }
    }
}

impl State {
    fn index_of(&self, name: &str) -> Option<u32> {
        self.links
            .iter()
            .find(|(_, l)| l.name == name)
            .map(|(i, _)| *i)
    }

    /// Applies what the connection has queued, without waiting.
    fn drain(&mut self) {
        while let Ok((msg, _)) = self.rx.try_recv() {
            self.apply(msg);
        }
    }

    // The cache update (`new_addr`, `del_addr`) mutates: it stays in the arm
    // body, not in a match guard as collapsible_match suggests.
    #[allow(clippy::collapsible_match)]
    fn apply(&mut self, msg: NetlinkMessage<RouteNetlinkMessage>) {
        match msg.payload {
            NetlinkPayload::InnerMessage(m) => match m {
                // AF_BRIDGE link messages describe bridge ports (partial
                // attributes); a DELLINK of that family is a port leaving
                // its bridge, not the device going away.
                RouteNetlinkMessage::NewLink(l)
                    if l.header.interface_family != AddressFamily::Bridge =>
                {
                    self.new_link(&l)
                }
                RouteNetlinkMessage::DelLink(l)
                    if l.header.interface_family != AddressFamily::Bridge =>
                {
                    if let Some(old) = self.links.remove(&l.header.index) {
                        self.removed(l.header.index, old.name);
                    }
                }
                RouteNetlinkMessage::NewAddress(a) => {
                    if self.new_addr(&a, true) {
                        self.changed(a.header.index);
                    }
                }
                RouteNetlinkMessage::DelAddress(a) => {
                    if self.del_addr(&a) {
                        self.changed(a.header.index);
                    }
                }
                _ => {}
            },
            NetlinkPayload::Overrun(_) => self.need_resync = true,
            _ => {}
        }
    }

    fn new_link(&mut self, l: &LinkMessage) {
        let i = l.header.index;
        let mut new = link_of(l);
        match self.links.get_mut(&i) {
            Some(old) => {
                new.v4 = std::mem::take(&mut old.v4);
                new.v6 = std::mem::take(&mut old.v6);
                if old.name == new.name {
                    new.driver = old.driver.take();
                }
                let same = same_but_stats(old, &new);
                *old = new;
                if !same {
                    self.changed(i);
                }
            }
            None => {
                self.links.insert(i, new);
                self.changed(i);
            }
        }
    }

    /// Inserts or updates an address where the kernel has it; true if the
    /// list changed. Addresses of unknown links are ignored (their link's
    /// own notification, queued later, brings the link).
    fn new_addr(&mut self, a: &AddressMessage, _notified: bool) -> bool {
        let Some((ip, cidr)) = cidr_of(a) else {
            return false;
        };
        let Some(link) = self.links.get_mut(&a.header.index) else {
            return false;
        };
        match ip {
            IpAddr::V4(_) => {
                let secondary = is_secondary(a);
                let scope = u8::from(a.header.scope);
                if let Some(p) = link.v4.iter().position(|x| x.cidr == cidr) {
                    if link.v4[p].secondary == secondary {
                        return false;
                    }
                    // A secondary promoted to primary moves.
                    link.v4.remove(p);
                }
                let e = Addr4 {
                    cidr,
                    secondary,
                    scope,
                };
                if secondary {
                    link.v4.push(e);
                } else {
                    let at = link
                        .v4
                        .iter()
                        .rposition(|x| !x.secondary && scope <= x.scope)
                        .map_or(0, |p| p + 1);
                    link.v4.insert(at, e);
                }
                true
            }
            IpAddr::V6(v6) => {
                if link.v6.iter().any(|x| x.cidr == cidr) {
                    return false;
                }
                let scope = v6_scope(&v6);
                let at = link
                    .v6
                    .iter()
                    .position(|x| scope >= x.scope)
                    .unwrap_or(link.v6.len());
                link.v6.insert(at, Addr6 { cidr, scope });
                true
            }
        }
    }

    fn del_addr(&mut self, a: &AddressMessage) -> bool {
        let Some((_, cidr)) = cidr_of(a) else {
            return false;
        };
        let Some(link) = self.links.get_mut(&a.header.index) else {
            return false;
        };
        let (n4, n6) = (link.v4.len(), link.v6.len());
        link.v4.retain(|x| x.cidr != cidr);
        link.v6.retain(|x| x.cidr != cidr);
        (n4, n6) != (link.v4.len(), link.v6.len())
    }

    /// The device as [`DeviceInfo`]; asks the driver once.
    fn info(&mut self, i: u32) -> Option<DeviceInfo> {
        let master = self.links.get(&i)?.master.map(|m| {
            self.links
                .get(&m)
                .map_or(format!("if{m}"), |l| l.name.clone())
        });
        let inet = &self.inet;
        let l = self.links.get_mut(&i)?;
        let driver = l
            .driver
            .get_or_insert_with(|| driver::driver_name(inet, &l.name).unwrap_or_default())
            .clone();
        Some(DeviceInfo {
            ifindex: i,
            name: l.name.clone(),
            kind: l.kind.clone(),
            driver,
            mac: l.mac.clone(),
            mtu: l.mtu,
            up: l.up,
            carrier: l.carrier,
            ips: l
                .v4
                .iter()
                .map(|a| a.cidr.clone())
                .chain(l.v6.iter().map(|a| a.cidr.clone()))
                .collect(),
            master,
            stats: l.stats.clone(),
        })
    }

    fn changed(&mut self, i: u32) {
        if !self.hub.wants(self.netns.as_deref()) {
            return;
        }
        if let Some(device) = self.info(i) {
            let netns = self.netns.clone();
            self.hub
                .push(netns.clone(), i, Event::DeviceChanged { netns, device });
        }
    }

    fn removed(&mut self, ifindex: u32, name: String) {
        if !self.hub.wants(self.netns.as_deref()) {
            return;
        }
        let netns = self.netns.clone();
        self.hub.push(
            netns.clone(),
            ifindex,
            Event::DeviceRemoved {
                netns,
                ifindex,
                name,
            },
        );
    }
}

fn link_of(l: &LinkMessage) -> Link {
    let mut stats = LinkStats::default();
    for a in &l.attributes {
        if let LinkAttribute::Stats64(s) = a {
            stats = stats_of(s);
        }
    }
    Link {
        name: link_name(l).to_string(),
        kind: link_kind(l),
        mac: link_mac(l),
        mtu: link_mtu(l),
        up: l.header.flags.contains(LinkFlags::Up),
        carrier: l.header.flags.contains(LinkFlags::LowerUp),
        master: controller_of(l),
        stats,
        driver: None,
        v4: Vec::new(),
        v6: Vec::new(),
    }
}

/// Equal in everything but the counters (which change without notice).
fn same_but_stats(a: &Link, b: &Link) -> bool {
    a.name == b.name
        && a.kind == b.kind
        && a.mac == b.mac
        && a.mtu == b.mtu
        && a.up == b.up
        && a.carrier == b.carrier
        && a.master == b.master
        && a.v4 == b.v4
        && a.v6 == b.v6
}

fn stats_of(s: &Stats64) -> LinkStats {
    LinkStats {
        rx_bytes: s.rx_bytes,
        tx_bytes: s.tx_bytes,
        rx_packets: s.rx_packets,
        tx_packets: s.tx_packets,
        rx_dropped: s.rx_dropped,
        tx_dropped: s.tx_dropped,
        rx_errors: s.rx_errors,
        tx_errors: s.tx_errors,
    }
}

/// IPv4: `IFA_LOCAL` is the address (`IFA_ADDRESS` may be a peer); IPv6
/// has only `IFA_ADDRESS`.
fn cidr_of(m: &AddressMessage) -> Option<(IpAddr, String)> {
    let mut local = None;
    let mut address = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    let ip = local.or(address)?;
    Some((ip, format!("{ip}/{}", m.header.prefix_len)))
}

fn is_secondary(m: &AddressMessage) -> bool {
    let attr = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Flags(f) => Some(f.contains(AddressFlags::Secondary)),
        _ => None,
    });
    attr.unwrap_or_else(|| m.header.flags.contains(AddressHeaderFlags::Secondary))
}

/// The kernel's `ipv6_addr_src_scope`.
fn v6_scope(a: &std::net::Ipv6Addr) -> u8 {
    let s = a.segments();
    if a.is_multicast() {
        (s[0] & 0x000f) as u8
    } else if a.is_loopback() {
        0x1
    } else if s[0] & 0xffc0 == 0xfe80 {
        0x2
    } else if s[0] & 0xffc0 == 0xfec0 {
        0x5
    } else {
        0xe
    }
}

/// Where device changes go: the session holding the agent, for the
/// namespaces it has touched. Changes are coalesced per device (the latest
/// state wins) and sent by a task of their own, so a slow controller holds
/// up only that task, never the netlink readers; the queue is bounded by
/// the number of devices. An event's `stats` are the counters of the
/// notification that caused it (the kernel does not notify counters); a
/// `Devices` request has fresh ones.
#[derive(Default)]
pub struct Hub {
    /// std Mutex: held only to queue or take events.
    state: Mutex<HubState>,
    wake: Notify,
}

#[derive(Default)]
struct HubState {
    /// The subscribed session.
    session: Option<u64>,
    /// Namespaces whose changes it gets (`None`: the agent's own).
    touched: HashSet<Option<String>>,
    /// Pending events in first-change order, one per device.
    queue: Vec<Event>,
    index: HashMap<(Option<String>, u32), usize>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        // Plain collection updates: usable after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a subscriber wants changes of `netns`.
    fn wants(&self, netns: Option<&str>) -> bool {
        let st = self.lock();
        st.session.is_some() && st.touched.contains(&netns.map(str::to_string))
    }

    fn push(&self, netns: Option<String>, ifindex: u32, ev: Event) {
        let mut st = self.lock();
        if st.session.is_none() {
            return;
        }
        match st.index.get(&(netns.clone(), ifindex)) {
            Some(&p) => st.queue[p] = ev,
            None => {
                let p = st.queue.len();
                st.queue.push(ev);
                st.index.insert((netns, ifindex), p);
            }
        }
        drop(st);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<Event> {
        let mut st = self.lock();
        st.index.clear();
        std::mem::take(&mut st.queue)
    }

    /// Makes `session` the receiver of device events, sent as
    /// `ToController::Event` into `tx`, until the returned guard drops.
    /// Starts with the agent's own namespace touched.
    pub fn subscribe(
        self: &Arc<Self>,
        session: u64,
        tx: mpsc::Sender<ToController>,
    ) -> Subscription {
        {
            let mut st = self.lock();
            *st = HubState::default();
            st.session = Some(session);
            st.touched.insert(None);
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(push_loop(self.clone(), tx, stop_rx));
        Subscription {
            hub: self.clone(),
            session,
            _stop: stop_tx,
        }
    }

    /// Adds `netns` to what `session` hears about (if it is subscribed).
    pub fn touch(&self, session: u64, netns: Option<&str>) {
        let mut st = self.lock();
        if st.session == Some(session) {
            st.touched.insert(netns.map(str::to_string));
        }
    }
}

/// A session's subscription to device events; dropping it stops them.
pub struct Subscription {
    hub: Arc<Hub>,
    session: u64,
    /// Dropped with the subscription: stops the pusher task.
    _stop: oneshot::Sender<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut st = self.hub.lock();
        if st.session == Some(self.session) {
            *st = HubState::default();
        }
    }
}

async fn push_loop(hub: Arc<Hub>, tx: mpsc::Sender<ToController>, mut stop: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = hub.wake.notified() => {}
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(COALESCE) => {}
        }
        for ev in hub.take() {
            tokio::select! {
                _ = &mut stop => return,
                r = tx.send(ToController::Event(ev)) => if r.is_err() { return },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_scopes_order_like_the_kernel() {
        let s = |a: &str| v6_scope(&a.parse().unwrap());
        assert_eq!(s("fe80::1"), 2);
        assert_eq!(s("::1"), 1);
        assert_eq!(s("fd00::1"), 0xe);
        assert_eq!(s("2001:db8::1"), 0xe);
        assert!(s("2001:db8::1") > s("fe80::1"));
    }
}
