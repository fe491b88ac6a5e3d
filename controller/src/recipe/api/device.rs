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

/// A device handle. Cheap to clone; clones share the cached state.
#[derive(Clone)]
pub struct Device(pub Rc<DevInner>);

pub struct DevInner {
    client: AgentClient,
    core: Rc<Core>,
    /// Where the device is; `move_to` changes the namespace.
    dref: RefCell<DevRef>,
    info: RefCell<Option<DeviceInfo>>,
}

impl Device {
    pub fn new(client: AgentClient, core: Rc<Core>, netns: Option<String>, name: String) -> Device {
        Device(Rc::new(DevInner {
            client,
            core,
            dref: RefCell::new(DevRef { netns, name }),
            info: RefCell::new(None),
        }))
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
        // The master as a device (same namespace), so `dev.master.name`,
        // `dev.master == h.br0` and `dev.master == "br0"` all read naturally.
        Ok(match d.info()?.master {
            Some(name) => Dynamic::from(Device::new(
                d.0.client.clone(),
                Rc::clone(&d.0.core),
                d.dev().netns,
                name,
            )),
            None => Dynamic::UNIT,
        })
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
    engine.register_get("features", |d: &mut Device| -> R<Map> {
        match d
            .0
            .core
            .request(&d.0.client, Request::Features { dev: d.dev() })?
        {
            Response::Features(f) => Ok(f
                .into_iter()
                .map(|(k, v)| (k.into(), Dynamic::from(v)))
                .collect()),
            other => err(format!(
                "agent {}: unexpected reply {other:?} to Features",
                d.host()
            )),
        }
    });
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
    engine.register_fn("move_to", |d: &mut Device, ns: &str| {
        d.move_to(Some(ns.to_string()))
    });
    engine.register_fn("move_to", |d: &mut Device, ns: Host| -> R<()> {
        d.move_to(ns.0.netns.clone())?;
        ns.0.nics.borrow_mut().insert(d.0.dref_name(), d.clone());
        Ok(())
    });
    engine.register_fn("destroy", |d: &mut Device| {
        d.change(Request::Destroy { dev: d.dev() })
    });
    engine.register_fn("to_string", |d: &mut Device| {
        format!("Device({} on {})", d.0.dref_name(), d.host())
    });
}
