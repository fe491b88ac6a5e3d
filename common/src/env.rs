//! A host's environment as its agent sees it at session start (`Welcome`):
//! kernel, CPU and each network interface's driver, firmware, bus, speed,
//! MTU, MAC and offload features. The controller records it with the run
//! (`environment.json`, the results store) so that only like is compared
//! with like.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a host runs on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostEnv {
    /// `uname -r`.
    pub kernel: String,
    /// `/proc/cmdline`.
    pub cmdline: String,
    /// `model name` of `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Online CPUs.
    pub cpus: u32,
    /// Every interface but `lo` in the agent's namespace, by kernel name.
    pub nics: Vec<NicEnv>,
}

/// One interface, as `ethtool -i`, `ethtool DEV`, `ip link` and
/// `ethtool -k` show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NicEnv {
    pub ifname: String,
    /// `driver:` of `ethtool -i` (`""` when it has none).
    pub driver: String,
    /// `version:`.
    pub driver_version: String,
    /// `firmware-version:`.
    pub firmware: String,
    /// `bus-info:` (the PCI address `0000:3b:00.0` for a PCI NIC).
    pub bus: String,
    /// `Speed:` in Mb/s; `None` when the driver does not know it.
    pub speed_mbps: Option<u32>,
    pub mtu: u32,
    pub mac: String,
    /// `ethtool -k` names → on.
    pub features: BTreeMap<String, bool>,
}
