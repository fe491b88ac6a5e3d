//! `Device`: a network interface on a host (RECIPES.md §6). Every change is
//! one protocol request named like the property (`dev.mtu = N` →
//! `Request::SetMtu`, the agent's `set_mtu`, `ip link set DEV mtu N`); the
//! reply carries the device as it is afterwards, which is cached so reads
//! cost no request. `carrier` and `stats` change on their own and are
//! always fetched.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use lnst_common::device::{DevRef, DeviceInfo};
use lnst_common::{Request, Response};
use rhai::{Array, Dynamic, Engine, Map};

use super::ctx::seconds;
use super::host::Host;
use super::{err, Core, R};
use crate::client::AgentClient;
use crate::report::devices::DeviceRec;

/// A device handle. Cheap to clone; clones share the cached state.
#[derive(Clone)]
pub struct Device(pub Rc<DevInner>);

pub struct DevInner {
    client: AgentClient,
    core: Rc<Core>,
    /// Where the device is; `move_to` changes the namespace.
    dref: RefCell<DevRef>,
    info: RefCell<Option<DeviceInfo>>,
    /// Set when the recipe made this device (`h.NAME = SPEC`, a veth's
    /// peer): what `devices.json` records about how it was made.
    created: RefCell<Option<Created>>,
}

/// How a soft device was made, for `devices.json`.
#[derive(Debug, Clone, Default)]
pub struct Created {
    /// The kind asked for (`veth`, `bridge`), until the kernel's reply says.
    pub kind: String,
    /// A veth's other end.
    pub peer: Option<String>,
    /// The lower device (vlan, macvlan, vxlan, tunnels).
    pub link: Option<String>,
}

/// `Device(NAME on HOST)`: what `print`, `${dev}` and result data show.
impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({} on {})", self.0.dref_name(), self.host())
    }
}

impl Device {
    pub fn new(client: AgentClient, core: Rc<Core>, netns: Option<String>, name: String) -> Device {
        Device(Rc::new(DevInner {
            client,
            core,
            dref: RefCell::new(DevRef { netns, name }),
            info: RefCell::new(None),
            created: RefCell::new(None),
        }))
    }

    /// Marks the device as made by the recipe.
    pub fn mark_created(&self, c: Created) {
        *self.0.created.borrow_mut() = Some(c);
    }

    /// What `devices.json` records of this device as the controller last
    /// saw it (cached state only: no request).
    pub fn record(&self, host: &str, netns: Option<String>, recipe_name: &str) -> DeviceRec {
        let info = self.0.info.borrow().clone();
        let created = self.0.created.borrow().clone();
        DeviceRec {
            host: host.to_string(),
            netns,
            name: self.0.dref_name(),
            recipe_name: recipe_name.to_string(),
            kind: info
                .as_ref()
                .map(|i| i.kind.clone())
                .or_else(|| created.as_ref().map(|c| c.kind.clone())),
            created: created.is_some(),
            master: info.as_ref().and_then(|i| i.master.clone()),
            peer: created.as_ref().and_then(|c| c.peer.clone()),
            link: created.as_ref().and_then(|c| c.link.clone()),
            mtu: info.as_ref().map(|i| i.mtu),
            ips: info.as_ref().map(|i| i.ips.clone()).unwrap_or_default(),
            up: info.as_ref().map(|i| i.up),
        }
    }

    /// The namespace the device is in now (kernel name).
    pub fn netns(&self) -> Option<String> {
        self.0.dref.borrow().netns.clone()
    }

    pub fn set_info(&self, info: DeviceInfo) {
        *self.0.info.borrow_mut() = Some(info);
    }
}

impl DevInner {
    /// The interface name.
    pub fn dref_name(&self) -> String {
        self.dref.borrow().name.clone()
    }
}

impl Device {
    fn host(&self) -> &str {
        self.0.client.host()
    }

    /// `ip -d link show DEV`, refreshing the cache.
    fn fetch(&self) -> R<DeviceInfo> {
        let r = self.0.core.request(
            &self.0.client,
            Request::Devices {
                netns: self.0.dref.borrow().netns.clone(),
            },
        )?;
        let Response::Devices(list) = r else {
            return err(format!(
                "agent {}: unexpected reply to Devices",
                self.host()
            ));
        };
        match list
            .into_iter()
            .find(|d| d.name == self.0.dref.borrow().name)
        {
            Some(info) => {
                self.set_info(info.clone());
                Ok(info)
            }
            None => err(format!(
                "device {} not found on host {}",
                self.0.dref_name(),
                self.host()
            )),
        }
    }

    fn info(&self) -> R<DeviceInfo> {
        if let Some(i) = self.0.info.borrow().as_ref() {
            return Ok(i.clone());
        }
        self.fetch()
    }

    fn dev(&self) -> DevRef {
        self.0.dref.borrow().clone()
    }

    /// `ip link set DEV netns NS`; later requests address the device in
    /// its new namespace.
    fn move_to(&self, netns: Option<String>) -> R<()> {
        self.change(Request::MoveTo {
            dev: self.dev(),
            netns: netns.clone(),
        })?;
        self.0.dref.borrow_mut().netns = netns;
        Ok(())
    }

    /// Sends a change; caches the device from the reply.
    fn change(&self, req: Request) -> R<()> {
        match self.0.core.request(&self.0.client, req)? {
            Response::Device(info) => {
                self.set_info(info);
                Ok(())
            }
            Response::Done => {
                *self.0.info.borrow_mut() = None;
                Ok(())
            }
            other => err(format!("agent {}: unexpected reply {other:?}", self.host())),
        }
    }

    /// The master as a device (same namespace), so `dev.master.name`,
    /// `dev.master == h.br0` and `dev.master == "br0"` all read naturally;
    /// `()` without one.
    fn master_of(&self, i: &DeviceInfo) -> Dynamic {
        match &i.master {
            Some(name) => Dynamic::from(Device::new(
                self.0.client.clone(),
                Rc::clone(&self.0.core),
                self.dev().netns,
                name.clone(),
            )),
            None => Dynamic::UNIT,
        }
    }

    /// `ethtool -k DEV`, by the long and the short names.
    fn features(&self) -> R<Map> {
        match self
            .0
            .core
            .request(&self.0.client, Request::Features { dev: self.dev() })?
        {
            Response::Features(f) => Ok(f
                .into_iter()
                .map(|(k, v)| (k.into(), Dynamic::from(v)))
                .collect()),
            other => err(format!(
                "agent {}: unexpected reply {other:?} to Features",
                self.host()
            )),
        }
    }

    /// `dev.info()`: every attribute of RECIPES.md §6 in one map, the
    /// values as the properties give them, from one fresh read of the
    /// device and one of its features.
    fn info_map(&self) -> R<Map> {
        let i = self.fetch()?;
        let ips: Array = i.ips.iter().cloned().map(Dynamic::from).collect();
        let host = Host::of_device(&self.0.core, &self.0.client, &self.dev().netns)?;
        let entries: [(&str, Dynamic); 13] = [
            ("name", self.0.dref_name().into()),
            ("ifindex", (i.ifindex as i64).into()),
            ("kind", i.kind.clone().into()),
            ("driver", i.driver.clone().into()),
            ("mac", i.mac.clone().into()),
            ("mtu", (i.mtu as i64).into()),
            ("state", if i.up { "up" } else { "down" }.into()),
            ("carrier", i.carrier.into()),
            ("ips", ips.into()),
            ("master", self.master_of(&i)),
            ("stats", stats_map(&i).into()),
            ("features", self.features()?.into()),
            ("host", Dynamic::from(host)),
        ];
        Ok(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

fn stats_map(i: &DeviceInfo) -> Map {
    let s = &i.stats;
    [
        ("rx_bytes", s.rx_bytes),
        ("tx_bytes", s.tx_bytes),
        ("rx_packets", s.rx_packets),
        ("tx_packets", s.tx_packets),
        ("rx_dropped", s.rx_dropped),
        ("tx_dropped", s.tx_dropped),
        ("rx_errors", s.rx_errors),
        ("tx_errors", s.tx_errors),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), Dynamic::from(v as i64)))
    .collect()
}

/// The ethtool settings groups a device has as properties.
const ETHTOOL_GROUPS: [&str; 4] = ["coalesce", "rings", "channels", "pause"];

/// Whether `key` of `group` is on/off (a bool in the recipe, 0/1 on the
/// wire).
fn is_bool_key(group: &str, key: &str) -> bool {
    group == "pause" || key.starts_with("adaptive")
}

impl Device {
    /// `ethtool -c|-g|-l|-a DEV` as a map.
    fn ethtool_get(&self, group: &str) -> R<Map> {
        let r = self.0.core.request(
            &self.0.client,
            Request::EthtoolGet {
                dev: self.dev(),
                group: group.to_string(),
            },
        )?;
        self.settings_map(group, r)
    }

    /// `ethtool -C|-G|-L|-A DEV KEY VALUE ..` from a map of the keys to
    /// change.
    fn ethtool_set(&self, group: &str, m: Map) -> R<()> {
        let mut values = BTreeMap::new();
        for (k, v) in m {
            let n = if let Ok(b) = v.as_bool() {
                i64::from(b)
            } else if let Ok(i) = v.as_int() {
                i
            } else {
                return err(format!(
                    "{group} of {}: {k} must be an int{}, not {}",
                    self.0.dref_name(),
                    if is_bool_key(group, &k) {
                        " or bool"
                    } else {
                        ""
                    },
                    v.type_name()
                ));
            };
            values.insert(k.to_string(), n);
        }
        let r = self.0.core.request(
            &self.0.client,
            Request::EthtoolSet {
                dev: self.dev(),
                group: group.to_string(),
                values,
            },
        )?;
        self.settings_map(group, r).map(|_| ())
    }

    fn settings_map(&self, group: &str, r: Response) -> R<Map> {
        match r {
            Response::Settings(s) => Ok(s
                .into_iter()
                .map(|(k, v)| {
                    let d = if is_bool_key(group, &k) {
                        Dynamic::from(v != 0)
                    } else {
                        Dynamic::from(v)
                    };
                    (k.into(), d)
                })
                .collect()),
            other => err(format!(
                "agent {}: unexpected reply {other:?} to {group}",
                self.host()
            )),
        }
    }
}

/// `dev.netem(#{ delay, jitter, loss, duplicate, reorder, corrupt, rate })`
/// checked into a spec (`()`: remove).
fn netem_spec(dev: &str, v: Dynamic) -> R<Option<lnst_common::host::NetemSpec>> {
    if v.is_unit() {
        return Ok(None);
    }
    let Some(m) = v.clone().try_cast::<Map>() else {
        return err(format!(
            "netem on {dev}: expected a map #{{ delay, jitter, loss, duplicate, reorder, corrupt, rate }} or (), not {}",
            v.type_name()
        ));
    };
    let mut n = lnst_common::host::NetemSpec::default();
    for (k, v) in m {
        let num = || -> R<f64> {
            if let Ok(f) = v.as_float() {
                Ok(f)
            } else if let Ok(i) = v.as_int() {
                Ok(i as f64)
            } else {
                err(format!(
                    "netem on {dev}: {k} must be a number, not {}",
                    v.type_name()
                ))
            }
        };
        match k.as_str() {
            "delay" => n.delay = Some(num()?),
            "jitter" => n.jitter = Some(num()?),
            "loss" => n.loss = Some(num()?),
            "duplicate" => n.duplicate = Some(num()?),
            "reorder" => n.reorder = Some(num()?),
            "corrupt" => n.corrupt = Some(num()?),
            "rate" => {
                let r = v.as_int().map_err(|t| {
                    format!("netem on {dev}: rate must be an int (bits per second), not {t}")
                })?;
                n.rate = Some(
                    u64::try_from(r)
                        .map_err(|_| format!("netem on {dev}: rate = {r} is negative"))?,
                );
            }
            other => {
                return err(format!(
                    "netem on {dev}: unknown key {other:?}; keys: delay, jitter (ms), loss, duplicate, reorder, corrupt (percent), rate (bits per second)"
                ))
            }
        }
    }
    Ok(Some(n))
}

/// Registers `Device`'s surface.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Device>("Device");
    engine.register_get("name", |d: &mut Device| d.0.dref_name());
    engine.register_get("ifindex", |d: &mut Device| -> R<i64> {
        Ok(d.info()?.ifindex as i64)
    });
    engine.register_get("kind", |d: &mut Device| -> R<String> { Ok(d.info()?.kind) });
    engine.register_get("driver", |d: &mut Device| -> R<String> {
        Ok(d.info()?.driver)
    });
    engine.register_get("mac", |d: &mut Device| -> R<String> { Ok(d.info()?.mac) });
    engine.register_set("mac", |d: &mut Device, mac: &str| {
        d.change(Request::SetMac {
            dev: d.dev(),
            mac: mac.to_string(),
        })
    });
    engine.register_get("mtu", |d: &mut Device| -> R<i64> {
        Ok(d.info()?.mtu as i64)
    });
    engine.register_set("mtu", |d: &mut Device, mtu: i64| -> R<()> {
        let mtu = u32::try_from(mtu).map_err(|_| format!("mtu {mtu} out of range"))?;
        d.change(Request::SetMtu { dev: d.dev(), mtu })
    });
    engine.register_get("state", |d: &mut Device| -> R<String> {
        Ok(if d.info()?.up { "up" } else { "down" }.to_string())
    });
    engine.register_get("carrier", |d: &mut Device| -> R<bool> {
        Ok(d.fetch()?.carrier)
    });
    engine.register_get("ips", |d: &mut Device| -> R<Array> {
        Ok(d.info()?.ips.into_iter().map(Dynamic::from).collect())
    });
    engine.register_get("master", |d: &mut Device| -> R<Dynamic> {
        Ok(d.master_of(&d.info()?))
    });
    engine.register_get("host", |d: &mut Device| -> R<Host> {
        Host::of_device(&d.0.core, &d.0.client, &d.dev().netns)
    });
    engine.register_fn("==", |a: &mut Device, b: Device| a.dev() == b.dev());
    engine.register_fn("!=", |a: &mut Device, b: Device| a.dev() != b.dev());
    engine.register_fn("==", |a: &mut Device, b: &str| a.dev().name == b);
    engine.register_fn("!=", |a: &mut Device, b: &str| a.dev().name != b);
    engine.register_set("master", |d: &mut Device, m: Dynamic| -> R<()> {
        let master = if m.is_unit() {
            None
        } else if let Some(md) = m.clone().try_cast::<Device>() {
            Some(md.0.dref_name())
        } else if m.is_string() {
            Some(m.to_string())
        } else {
            return err(format!(
                "master must be a Device or (), not {}",
                m.type_name()
            ));
        };
        d.change(Request::SetMaster {
            dev: d.dev(),
            master,
        })
    });
    engine.register_get("stats", |d: &mut Device| -> R<Map> {
        Ok(stats_map(&d.fetch()?))
    });
    engine.register_get("features", |d: &mut Device| d.features());
    engine.register_fn("info", |d: &mut Device| d.info_map());
    engine.register_fn("up", |d: &mut Device| {
        d.change(Request::SetState {
            dev: d.dev(),
            up: true,
        })
    });
    engine.register_fn("down", |d: &mut Device| {
        d.change(Request::SetState {
            dev: d.dev(),
            up: false,
        })
    });
    engine.register_fn("ip_add", |d: &mut Device, cidr: &str| {
        d.change(Request::IpAdd {
            dev: d.dev(),
            cidr: cidr.to_string(),
        })
    });
    engine.register_fn("ip_add", |d: &mut Device, cidr: &str, opts: Map| -> R<()> {
        let mut nodad = false;
        for (k, v) in opts {
            match k.as_str() {
                "nodad" => {
                    nodad = v
                        .as_bool()
                        .map_err(|t| format!("ip_add: nodad must be a bool, not {t}"))?
                }
                other => return err(format!("ip_add: unknown option {other:?}; options: nodad")),
            }
        }
        d.change(Request::IpAddWith {
            dev: d.dev(),
            cidr: cidr.to_string(),
            nodad,
        })
    });
    engine.register_fn("netem", |d: &mut Device, v: Dynamic| -> R<()> {
        let netem = netem_spec(&d.0.dref_name(), v)?;
        d.0.core.request(
            &d.0.client,
            Request::Netem {
                dev: d.dev(),
                netem,
            },
        )?;
        Ok(())
    });
    for group in ETHTOOL_GROUPS {
        engine.register_get(group, move |d: &mut Device| d.ethtool_get(group));
        engine.register_set(group, move |d: &mut Device, m: Map| d.ethtool_set(group, m));
    }
    engine.register_fn("ip_del", |d: &mut Device, cidr: &str| {
        d.change(Request::IpDel {
            dev: d.dev(),
            cidr: cidr.to_string(),
        })
    });
    engine.register_fn("ip_flush", |d: &mut Device| {
        d.change(Request::IpFlush { dev: d.dev() })
    });
    engine.register_fn("set_features", |d: &mut Device, f: Map| -> R<()> {
        let mut features = BTreeMap::new();
        for (k, v) in f {
            let b = v
                .as_bool()
                .map_err(|t| format!("feature {k}: expected a bool, not {t}"))?;
            features.insert(k.to_string(), b);
        }
        d.0.core.request(
            &d.0.client,
            Request::SetFeatures {
                dev: d.dev(),
                features,
            },
        )?;
        Ok(())
    });
    engine.register_fn("wait_carrier", |d: &mut Device, t: Dynamic| -> R<bool> {
        let t = seconds(t)?;
        match d.0.core.request(
            &d.0.client,
            Request::WaitCarrier {
                dev: d.dev(),
                timeout_ms: t.as_millis() as u64,
            },
        )? {
            Response::Bool(b) => Ok(b),
            other => err(format!(
                "agent {}: unexpected reply {other:?} to WaitCarrier",
                d.host()
            )),
        }
    });
    engine.register_fn("move_to", |d: &mut Device, ns: &str| -> R<()> {
        // A namespace this run made, by the name the recipe gave it; else
        // one `ip netns` lists.
        let here = Host::of_device(&d.0.core, &d.0.client, &d.dev().netns)?;
        match here.netns_named(ns) {
            Some(h) => {
                d.move_to(h.0.netns.clone())?;
                h.0.nics.borrow_mut().insert(d.0.dref_name(), d.clone());
                Ok(())
            }
            None => d.move_to(Some(ns.to_string())),
        }
    });
    engine.register_fn("move_to", |d: &mut Device, ns: Host| -> R<()> {
        d.move_to(ns.0.netns.clone())?;
        ns.0.nics.borrow_mut().insert(d.0.dref_name(), d.clone());
        Ok(())
    });
    engine.register_fn("destroy", |d: &mut Device| {
        d.change(Request::Destroy { dev: d.dev() })
    });
    engine.register_fn("to_string", |d: &mut Device| d.to_string());
}
