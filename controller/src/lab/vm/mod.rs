//! The VM lab (`run --lab vm`, RECIPES.md §9): one qemu guest per host
//! requirement booting a full distribution kernel, each running
//! `lnst-agent` on a virtio-serial port, NICs named as the recipe names
//! them, one bridge per `net` label inside a lab namespace.

pub mod kernel;

use std::collections::BTreeMap;
use std::time::Duration;

use super::Lab;
use crate::client::AgentAddr;

/// A running VM lab.
pub struct VmLab {
    pub runid: String,
    pub addrs: BTreeMap<String, AgentAddr>,
    pub build_time: Duration,
}

impl Lab for VmLab {
    fn kind(&self) -> &'static str {
        "vm"
    }
    fn runid(&self) -> &str {
        &self.runid
    }
    fn addrs(&self) -> &BTreeMap<String, AgentAddr> {
        &self.addrs
    }
    fn build_time(&self) -> Duration {
        self.build_time
    }
    fn describe(&self) -> String {
        String::new()
    }
    fn teardown(&mut self) -> Vec<String> {
        Vec::new()
    }
}

impl VmLab {
    pub fn build(_req: &crate::mapper::Requirements, _opts: &super::LabOptions) -> Result<VmLab, super::LabError> {
        Err(super::LabError::Vm("not yet".into()))
    }
}
