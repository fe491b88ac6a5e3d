//! `Host`: a matched host (RECIPES.md §5) — its name, machine and params,
//! its NICs by recipe name, its devices, and `run`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use lnst_common::{Request, Response};
use rhai::{Array, Dynamic, Engine, Map};

use super::device::Device;
use super::job::{self, JobWatch};
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
        let devs = nics
            .iter()
            .map(|(k, real)| {
                (
                    k.clone(),
                    Device::new(client.clone(), Rc::clone(&core), None, real.clone()),
                )
            })
            .collect();
        Host(Rc::new(HostInner {
            name,
            machine,
            params,
            client,
            netns: None,
            core,
            watch,
            nics: RefCell::new(devs),
        }))
    }

    fn nic(&mut self, name: &str) -> R<Device> {
        if let Some(d) = self.0.nics.borrow().get(name) {
            return Ok(d.clone());
        }
        err(format!(
            "host {} has no NIC or member {name:?}; NICs: {}; members: name, machine, params, devices, run",
            self.0.name,
            self.0.nics.borrow().keys().cloned().collect::<Vec<_>>().join(", ")
        ))
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

/// Registers `Host`'s surface.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Host>("Host");
    engine.register_get("name", |h: &mut Host| h.0.name.clone());
    engine.register_get("machine", |h: &mut Host| h.0.machine.clone());
    engine.register_get("params", |h: &mut Host| h.0.params.clone());
    engine.register_get("devices", Host::devices);
    engine.register_indexer_get(Host::nic);
    engine.register_fn("run", |h: &mut Host, cmd: &str| {
        job::run_shell(h, cmd, Map::new())
    });
    engine.register_fn("run", |h: &mut Host, cmd: &str, opts: Map| {
        job::run_shell(h, cmd, opts)
    });
    engine.register_fn("to_string", |h: &mut Host| {
        format!("Host({} on {})", h.0.name, h.0.machine)
    });
}
