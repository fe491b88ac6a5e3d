//! `Host`: a matched host (RECIPES.md §5) — its name, machine and params,
//! its NICs by recipe name, its devices, and `run`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use lnst_common::device::DeviceSpec;
use lnst_common::host::{NeighSpec, RouteSpec};
use lnst_common::{Request, Response};
use rhai::{Array, Blob, Dynamic, Engine, Map};

use super::device::{Created, Device};
use super::job::{self, JobWatch};
use super::soft::DevSpec;
use super::{err, Core, R};
use crate::client::AgentClient;

/// A matched host. Cheap to clone.
#[derive(Clone)]
pub struct Host(pub Rc<HostInner>);

pub struct HostInner {
    /// Requirement name (`h1`).
    pub name: String,
    /// Pool machine id.
    pub machine: String,
    pub params: Map,
    pub client: AgentClient,
    /// The namespace this host object works in (`None`: the agent's own).
    pub netns: Option<String>,
    pub core: Rc<Core>,
    /// Job output and exits from the agent's events.
    pub watch: Arc<JobWatch>,
    /// Recipe NIC name → device (the matched NIC may have another name).
    pub nics: RefCell<BTreeMap<String, Device>>,
    /// Namespace objects assigned as members (`h.ns1 = h.netns("ns1")`).
    pub members: RefCell<BTreeMap<String, Host>>,
}

/// `Host(NAME on MACHINE)`: what `print`, `${h}` and result data show.
impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Host({} on {})", self.0.name, self.0.machine)
    }
}

impl Host {
    /// A host with its matched NICs: `nics` maps recipe name → real name.
    pub fn new(
        name: String,
        machine: String,
        params: Map,
        client: AgentClient,
        core: Rc<Core>,
        nics: &BTreeMap<String, String>,
    ) -> Host {
        let watch = JobWatch::spawn(&core.rt, &client);
        core.clients.borrow_mut().push(client.clone());
        let devs = nics
            .iter()
            .map(|(k, real)| {
                (
                    k.clone(),
                    Device::new(client.clone(), Rc::clone(&core), None, real.clone()),
                )
            })
            .collect();
        let h = Host(Rc::new(HostInner {
            name,
            machine,
            params,
            client,
            netns: None,
            core: Rc::clone(&core),
            watch,
            nics: RefCell::new(devs),
            members: RefCell::new(BTreeMap::new()),
        }));
        core.hosts.borrow_mut().push(h.clone());
        h
    }

    /// `h.NAME`: a NIC or created device, a namespace assigned as a
    /// member, or a device made behind lnst's back (a job's `ip link add`),
    /// which is then registered under its name.
    fn member(&mut self, name: &str) -> R<Dynamic> {
        if let Some(d) = self.0.nics.borrow().get(name) {
            return Ok(Dynamic::from(d.clone()));
        }
        if let Some(h) = self.0.members.borrow().get(name) {
            return Ok(Dynamic::from(h.clone()));
        }
        if let Ok(list) = self.devices() {
            if let Some(d) = list
                .into_iter()
                .filter_map(|d| d.try_cast::<Device>())
                .find(|d| d.0.dref_name() == name)
            {
                self.0.nics.borrow_mut().insert(name.to_string(), d.clone());
                return Ok(Dynamic::from(d));
            }
        }
        err(format!(
            "host {} has no device or member {name:?}; NICs and devices: {}; namespaces: {}; members: name, machine, params, devices, netns_name, run, ..",
            self.0.name,
            self.0.nics.borrow().keys().cloned().collect::<Vec<_>>().join(", "),
            self.0.members.borrow().keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    }

    /// The host or namespace object a device on `client`'s agent in
    /// `netns` belongs to; a namespace the recipe never made an object for
    /// (a device moved there by name) gets one.
    pub fn of_device(core: &Rc<Core>, client: &AgentClient, netns: &Option<String>) -> R<Host> {
        let hosts = core.hosts.borrow().clone();
        let same_agent = |h: &&Host| h.0.client.host() == client.host();
        if let Some(h) = hosts
            .iter()
            .filter(same_agent)
            .find(|h| &h.0.netns == netns)
        {
            return Ok(h.clone());
        }
        let Some(root) = hosts
            .iter()
            .filter(same_agent)
            .find(|h| h.0.netns.is_none())
        else {
            return err(format!("no host object for agent {}", client.host()));
        };
        let ns = netns.clone().unwrap_or_default();
        Ok(root.ns_object(ns.clone(), ns))
    }

    /// A host-like object for namespace `full` (its kernel name), shown as
    /// `HOST/short`.
    fn ns_object(&self, short: String, full: String) -> Host {
        let h = &self.0;
        let ns = Host(Rc::new(HostInner {
            name: format!("{}/{short}", h.name),
            machine: h.machine.clone(),
            params: h.params.clone(),
            client: h.client.clone(),
            netns: Some(full),
            core: Rc::clone(&h.core),
            watch: Arc::clone(&h.watch),
            nics: RefCell::new(BTreeMap::new()),
            members: RefCell::new(BTreeMap::new()),
        }));
        h.core.hosts.borrow_mut().push(ns.clone());
        ns
    }

    /// `ip link show`: every device now on the host.
    fn devices(&mut self) -> R<Array> {
        let h = &self.0;
        match h.core.request(
            &h.client,
            Request::Devices {
                netns: h.netns.clone(),
            },
        )? {
            Response::Devices(list) => Ok(list
                .into_iter()
                .map(|info| {
                    let d = Device::new(
                        h.client.clone(),
                        Rc::clone(&h.core),
                        h.netns.clone(),
                        info.name.clone(),
                    );
                    d.set_info(info);
                    Dynamic::from(d)
                })
                .collect()),
            other => err(format!(
                "agent {}: unexpected reply {other:?} to Devices",
                h.name
            )),
        }
    }
}

/// How a device made from `spec` is recorded in `devices.json`; `kind`
/// is the kernel's name for it from the reply (`""` if it gave none).
fn created_as(spec: &DeviceSpec, kind: &str) -> Created {
    let (asked, peer, link) = match spec {
        DeviceSpec::Veth { peer, .. } => ("veth", Some(peer.clone()), None),
        DeviceSpec::Bridge { .. } => ("bridge", None, None),
        DeviceSpec::Bond { .. } => ("bond", None, None),
        DeviceSpec::Team { .. } => ("team", None, None),
        DeviceSpec::Vlan { link, .. } => ("vlan", None, Some(link.clone())),
        DeviceSpec::Macvlan { link, .. } => ("macvlan", None, Some(link.clone())),
        DeviceSpec::Ipvlan { link, .. } => ("ipvlan", None, Some(link.clone())),
        DeviceSpec::Vxlan { link, .. } => ("vxlan", None, link.clone()),
        DeviceSpec::Geneve { .. } => ("geneve", None, None),
        DeviceSpec::Tunnel { link, .. } => ("tunnel", None, link.clone()),
        DeviceSpec::Dummy => ("dummy", None, None),
        DeviceSpec::Vrf { .. } => ("vrf", None, None),
        DeviceSpec::Tun { .. } => ("tun", None, None),
        DeviceSpec::Tap { .. } => ("tap", None, None),
        DeviceSpec::Macsec { link, .. } => ("macsec", None, Some(link.clone())),
    };
    Created {
        kind: if kind.is_empty() { asked } else { kind }.to_string(),
        peer,
        link,
    }
}

/// Every device the match's host and namespace objects know of, one
/// record each (a device reachable under two names is recorded once).
pub fn device_records(core: &Core) -> Vec<crate::report::devices::DeviceRec> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for h in core.hosts.borrow().iter() {
        let host = h.0.name.split('/').next().unwrap_or(&h.0.name).to_string();
        for (recipe_name, d) in h.0.nics.borrow().iter() {
            let netns = d.netns();
            if !seen.insert((
                h.0.client.host().to_string(),
                netns.clone(),
                d.0.dref_name(),
            )) {
                continue;
            }
            // The namespace as the recipe named it: the part after `/`
            // of the namespace object's name when the device is there.
            let shown = netns.as_ref().map(|full| {
                core.hosts
                    .borrow()
                    .iter()
                    .find(|o| o.0.netns.as_ref() == Some(full))
                    .and_then(|o| o.0.name.split_once('/').map(|(_, s)| s.to_string()))
                    .unwrap_or_else(|| full.clone())
            });
            out.push(d.record(&host, shown, recipe_name));
        }
    }
    out
}

/// Largest chunk of `send_file` / `recv_file` per request.
const FILE_CHUNK: usize = 1024 * 1024;

fn opt_netns(h: &Host) -> Option<String> {
    h.0.netns.clone()
}

impl Host {
    fn request(&self, req: Request) -> R<Response> {
        self.0.core.request(&self.0.client, req)
    }

    /// The namespace a recipe means by `name` on this host's agent: one
    /// this run made with `h.netns(name)` (whose kernel name is
    /// `lnst-<agent>-s<session>-NAME`) as its object, else `None`: then
    /// `name` is taken as `ip netns` lists it (made by a job, or before
    /// the run). At most one matches: the kernel name has no nesting, so
    /// a second `netns(name)` on the same agent, even from a namespace
    /// object, is refused as existing.
    pub fn netns_named(&self, name: &str) -> Option<Host> {
        let agent = self.0.client.host();
        let hosts = self.0.core.hosts.borrow();
        hosts
            .iter()
            .filter(|h| h.0.client.host() == agent && h.0.netns.is_some())
            .find(|h| {
                h.0.name
                    .rsplit_once('/')
                    .is_some_and(|(_, short)| short == name)
            })
            .cloned()
    }

    /// [`Host::netns_named`]'s kernel name, or `name` as it is.
    pub fn netns_kernel_name(&self, name: &str) -> String {
        self.netns_named(name)
            .and_then(|h| h.0.netns.clone())
            .unwrap_or_else(|| name.to_string())
    }

    /// `ip link add NAME type KIND ...`; registers the device (and a veth
    /// peer) under its name.
    pub fn create(&mut self, name: &str, mut spec: DevSpec) -> R<Device> {
        // `veth(#{ peer_netns: "ns1" })`: a namespace of this run by the
        // name the recipe gave it.
        if let (
            lnst_common::device::DeviceSpec::Veth {
                peer_netns: Some(n),
                ..
            },
            None,
        ) = (&mut spec.spec, &spec.peer_host)
        {
            if let Some(h) = self.netns_named(n) {
                *n = h.0.netns.clone().unwrap_or_default();
                spec.peer_host = Some(h);
            }
        }
        let known = self.0.nics.borrow().get(name).map(|d| d.0.dref_name());
        if let Some(kernel_name) = known {
            // A name whose device is gone (`dev.destroy()`, an `ip link
            // del` job) is free again, as in LNST after `del host.NAME`.
            let exists = self
                .devices()?
                .into_iter()
                .filter_map(|d| d.try_cast::<Device>())
                .any(|d| d.0.dref_name() == kernel_name);
            if exists {
                return err(format!(
                    "host {} already has a device named {name:?}",
                    self.0.name
                ));
            }
            self.0.nics.borrow_mut().remove(name);
        }
        let r = self.request(Request::Create {
            netns: opt_netns(self),
            name: name.to_string(),
            spec: spec.spec.clone(),
        })?;
        let Response::Device(info) = r else {
            return err(format!(
                "agent {}: unexpected reply {r:?} to Create",
                self.0.name
            ));
        };
        let d = Device::new(
            self.0.client.clone(),
            Rc::clone(&self.0.core),
            opt_netns(self),
            name.to_string(),
        );
        d.mark_created(created_as(&spec.spec, &info.kind));
        d.set_info(info);
        self.0.nics.borrow_mut().insert(name.to_string(), d.clone());
        if let lnst_common::device::DeviceSpec::Veth { peer, peer_netns } = &spec.spec {
            let owner = match (&spec.peer_host, peer_netns) {
                (Some(h), _) => Some(h.clone()),
                (None, None) => Some(self.clone()),
                (None, Some(_)) => None,
            };
            if let Some(o) = owner {
                let pd = Device::new(
                    o.0.client.clone(),
                    Rc::clone(&o.0.core),
                    opt_netns(&o),
                    peer.clone(),
                );
                pd.mark_created(Created {
                    kind: "veth".into(),
                    peer: Some(name.to_string()),
                    link: None,
                });
                o.0.nics.borrow_mut().insert(peer.clone(), pd);
            }
        }
        Ok(d)
    }

    /// `ip netns add`: a namespace on this host, as a host-like object.
    fn netns(&mut self, name: &str) -> R<Host> {
        let r = self.request(Request::NetnsCreate {
            name: name.to_string(),
        })?;
        let Response::Netns { name: full } = r else {
            return err(format!(
                "agent {}: unexpected reply {r:?} to NetnsCreate",
                self.0.name
            ));
        };
        Ok(self.ns_object(name.to_string(), full))
    }

    fn sysctl_get(&mut self, key: &str) -> R<String> {
        match self.request(Request::SysctlGet {
            netns: opt_netns(self),
            key: key.to_string(),
        })? {
            Response::Text(t) => Ok(t),
            r => err(format!(
                "agent {}: unexpected reply {r:?} to SysctlGet",
                self.0.name
            )),
        }
    }

    fn sysctl_set(&mut self, key: &str, value: Dynamic) -> R<()> {
        self.request(Request::SysctlSet {
            netns: opt_netns(self),
            key: key.to_string(),
            value: value.to_string(),
        })?;
        Ok(())
    }

    fn read(&mut self, path: &str) -> R<String> {
        match self.request(Request::FileRead {
            netns: opt_netns(self),
            path: path.to_string(),
        })? {
            Response::Bytes(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            r => err(format!(
                "agent {}: unexpected reply {r:?} to FileRead",
                self.0.name
            )),
        }
    }

    fn write(&mut self, path: &str, value: Dynamic) -> R<()> {
        let data = match value.clone().try_cast::<Blob>() {
            Some(b) => b,
            None => value.to_string().into_bytes(),
        };
        self.request(Request::FileWrite {
            netns: opt_netns(self),
            path: path.to_string(),
            data,
        })?;
        Ok(())
    }

    fn route(&mut self, m: Map, add: bool) -> R<()> {
        let mut route = RouteSpec {
            dst: String::new(),
            via: None,
            dev: None,
            table: None,
            metric: None,
        };
        for (k, v) in m {
            let text = || -> R<String> {
                if let Some(d) = v.clone().try_cast::<Device>() {
                    Ok(d.0.dref_name())
                } else if v.is_string() {
                    Ok(v.to_string())
                } else {
                    err(format!(
                        "route: {k} must be a string, not {}",
                        v.type_name()
                    ))
                }
            };
            let int = || -> R<u32> {
                let i = v
                    .as_int()
                    .map_err(|t| format!("route: {k} must be an int, not {t}"))?;
                u32::try_from(i).map_err(|_| format!("route: {k} = {i} out of range").into())
            };
            match k.as_str() {
                "dst" => route.dst = text()?,
                "via" => route.via = Some(text()?),
                "dev" => route.dev = Some(text()?),
                "table" => route.table = Some(int()?),
                "metric" => route.metric = Some(int()?),
                other => {
                    return err(format!(
                        "route: unknown key {other:?}; known: dst, via, dev, table, metric"
                    ))
                }
            }
        }
        if route.dst.is_empty() {
            return err("route: dst is required (\"10.0.0.0/24\", \"default\", ..)");
        }
        let netns = opt_netns(self);
        self.request(if add {
            Request::RouteAdd { netns, route }
        } else {
            Request::RouteDel { netns, route }
        })?;
        Ok(())
    }

    /// `ip neigh replace|del DST [lladdr MAC] dev DEV`.
    fn neigh(&mut self, m: Map, add: bool) -> R<()> {
        let what = if add { "neigh_add" } else { "neigh_del" };
        let mut n = NeighSpec {
            dst: String::new(),
            lladdr: None,
            dev: String::new(),
        };
        for (k, v) in m {
            let text = if let Some(d) = v.clone().try_cast::<Device>() {
                d.0.dref_name()
            } else if v.is_string() {
                v.to_string()
            } else {
                return err(format!(
                    "{what}: {k} must be a string{}, not {}",
                    if k == "dev" { " or a device" } else { "" },
                    v.type_name()
                ));
            };
            match k.as_str() {
                "dst" => n.dst = text,
                "lladdr" => n.lladdr = Some(text),
                "dev" => n.dev = text,
                other => {
                    return err(format!(
                        "{what}: unknown key {other:?}; known: dst, lladdr, dev"
                    ))
                }
            }
        }
        if n.dst.is_empty() || n.dev.is_empty() || (add && n.lladdr.is_none()) {
            return err(format!(
                "{what}: {} required (#{{ dst: \"192.0.2.1\", {}dev: \"eth0\" }})",
                if add {
                    "dst, lladdr and dev are"
                } else {
                    "dst and dev are"
                },
                if add {
                    "lladdr: \"02:00:00:00:00:01\", "
                } else {
                    ""
                }
            ));
        }
        let netns = opt_netns(self);
        self.request(if add {
            Request::NeighAdd { netns, neigh: n }
        } else {
            Request::NeighDel { netns, neigh: n }
        })?;
        Ok(())
    }

    /// `ip neigh show [dev DEV]`: `[#{ dst, lladdr, dev, state }, ..]`.
    fn neighs(&mut self, dev: Option<String>) -> R<Array> {
        match self.request(Request::Neighs {
            netns: opt_netns(self),
            dev,
        })? {
            Response::Neighs(list) => Ok(list
                .into_iter()
                .map(|e| {
                    let mut m = Map::new();
                    m.insert("dst".into(), e.dst.into());
                    m.insert(
                        "lladdr".into(),
                        e.lladdr.map_or(Dynamic::UNIT, Dynamic::from),
                    );
                    m.insert("dev".into(), e.dev.into());
                    m.insert("state".into(), e.state.into());
                    Dynamic::from(m)
                })
                .collect()),
            r => err(format!(
                "agent {}: unexpected reply {r:?} to Neighs",
                self.0.name
            )),
        }
    }

    /// `systemctl start|stop|restart NAME`; returns `systemctl is-active`
    /// after it.
    fn service(&mut self, name: &str, action: &str) -> R<String> {
        if !matches!(action, "start" | "stop" | "restart") {
            return err(format!(
                "service {name}: unknown action {action:?}; actions: \"start\", \"stop\", \"restart\""
            ));
        }
        match self.request(Request::Service {
            name: name.to_string(),
            action: action.to_string(),
        })? {
            Response::Text(t) => Ok(t),
            r => err(format!(
                "agent {}: unexpected reply {r:?} to Service",
                self.0.name
            )),
        }
    }

    fn send_file(&mut self, local: &str, remote: &str) -> R<()> {
        let data =
            std::fs::read(local).map_err(|e| format!("send_file: cannot read {local}: {e}"))?;
        let mut offset = 0usize;
        loop {
            let end = (offset + FILE_CHUNK).min(data.len());
            let last = end == data.len();
            self.request(Request::FilePut {
                path: remote.to_string(),
                offset: offset as u64,
                data: data[offset..end].to_vec(),
                last,
            })?;
            if last {
                return Ok(());
            }
            offset = end;
        }
    }

    /// `h.defer(COMMAND)`: the agent runs `sh -c COMMAND` (in this
    /// host's namespace) when the run's changes are undone, in reverse
    /// order with them, also after a crash of either side.
    fn defer(&mut self, command: &str) -> R<()> {
        self.request(Request::Defer {
            netns: opt_netns(self),
            command: command.to_string(),
        })?;
        Ok(())
    }

    fn recv_file(&mut self, remote: &str, local: &str) -> R<()> {
        let mut out = Vec::new();
        loop {
            let r = self.request(Request::FileGet {
                path: remote.to_string(),
                offset: out.len() as u64,
                len: FILE_CHUNK as u32,
            })?;
            let Response::FileChunk { data, eof } = r else {
                return err(format!(
                    "agent {}: unexpected reply {r:?} to FileGet",
                    self.0.name
                ));
            };
            out.extend_from_slice(&data);
            if eof || data.is_empty() {
                break;
            }
        }
        std::fs::write(local, out)
            .map_err(|e| format!("recv_file: cannot write {local}: {e}").into())
    }
}

/// Registers `Host`'s surface.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Host>("Host");
    engine.register_get("name", |h: &mut Host| h.0.name.clone());
    engine.register_get("machine", |h: &mut Host| h.0.machine.clone());
    engine.register_get("params", |h: &mut Host| h.0.params.clone());
    engine.register_get("devices", Host::devices);
    engine.register_indexer_get(Host::member);
    engine.register_indexer_set(|h: &mut Host, name: &str, spec: DevSpec| {
        h.create(name, spec).map(|_| ())
    });
    // `h.ns1 = h.netns("ns1")` (LNST's habit): keeps the namespace object
    // as a member, so `h.ns1` returns it.
    engine.register_indexer_set(|h: &mut Host, name: &str, ns: Host| -> R<()> {
        if ns.0.netns.is_none() {
            return err(format!(
                "h.{name} = ..: {} is a host, not a namespace; assign h.netns(\"{name}\") or a device spec",
                ns.0.name
            ));
        }
        if h.0.nics.borrow().contains_key(name) {
            return err(format!("host {} already has a device named {name:?}", h.0.name));
        }
        h.0.members.borrow_mut().insert(name.to_string(), ns);
        Ok(())
    });
    // Rhai writes a handle back after a mutating call through a member
    // (`h.v0.move_to(..)`): keep the device under that name.
    engine.register_indexer_set(|h: &mut Host, name: &str, d: Device| {
        h.0.nics.borrow_mut().insert(name.to_string(), d);
    });
    // Same agent and same namespace: `dev.host == m.h1`.
    engine.register_fn("==", |a: &mut Host, b: Host| {
        a.0.client.host() == b.0.client.host() && a.0.netns == b.0.netns
    });
    engine.register_fn("!=", |a: &mut Host, b: Host| {
        a.0.client.host() != b.0.client.host() || a.0.netns != b.0.netns
    });
    engine.register_get("netns_name", |h: &mut Host| -> Dynamic {
        match &h.0.netns {
            Some(n) => Dynamic::from(n.clone()),
            None => Dynamic::UNIT,
        }
    });
    engine.register_fn("create", Host::create);
    engine.register_fn("netns", Host::netns);
    engine.register_fn("sysctl", Host::sysctl_get);
    engine.register_fn("sysctl", Host::sysctl_set);
    engine.register_fn("read", Host::read);
    engine.register_fn("write", Host::write);
    engine.register_fn("route_add", |h: &mut Host, m: Map| h.route(m, true));
    engine.register_fn("route_del", |h: &mut Host, m: Map| h.route(m, false));
    engine.register_fn("neigh_add", |h: &mut Host, m: Map| h.neigh(m, true));
    engine.register_fn("neigh_del", |h: &mut Host, m: Map| h.neigh(m, false));
    engine.register_fn("neighs", |h: &mut Host| h.neighs(None));
    engine.register_fn("neighs", |h: &mut Host, dev: Dynamic| -> R<Array> {
        let name = if let Some(d) = dev.clone().try_cast::<Device>() {
            d.0.dref_name()
        } else if dev.is_string() {
            dev.to_string()
        } else {
            return err(format!(
                "neighs: dev must be a device or its name, not {}",
                dev.type_name()
            ));
        };
        h.neighs(Some(name))
    });
    engine.register_fn("service", Host::service);
    engine.register_fn("send_file", Host::send_file);
    engine.register_fn("recv_file", Host::recv_file);
    engine.register_fn("defer", Host::defer);
    engine.register_fn("run", |h: &mut Host, cmd: &str| {
        job::run_shell(h, cmd, Map::new())
    });
    engine.register_fn("run", |h: &mut Host, cmd: &str, opts: Map| {
        job::run_shell(h, cmd, opts)
    });
    engine.register_fn("to_string", |h: &mut Host| h.to_string());
}
