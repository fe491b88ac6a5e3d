//! The host's environment for `Welcome` (`lnst_common::env::HostEnv`):
//! `uname -r`, `/proc/cmdline`, the CPU model and count, and per interface
//! of the agent's own namespace what `ethtool -i DEV` (driver, version,
//! firmware, bus), `ethtool DEV` (speed), `ip link` (MTU, MAC) and
//! `ethtool -k DEV` (features) show. Nothing here fails: what cannot be
//! read is left empty, so a host with odd NICs still gets a session.

use std::os::fd::OwnedFd;

use lnst_common::env::{HostEnv, NicEnv};

use super::driver::{drvinfo, feature_bits, link_speed};
use super::features::readable;
use super::Nets;

/// Collects the environment; ≈ 1 ms on a host with a few NICs.
pub async fn host_env(nets: &Nets) -> HostEnv {
    let mut env = HostEnv {
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        cmdline: read_trim("/proc/cmdline"),
        cpu_model: cpu_model(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get() as u32),
        nics: Vec::new(),
    };
    let Ok(conn) = nets.conn(None).await else {
        return env;
    };
    let Ok(devs) = conn.monitor.devices().await else {
        return env;
    };
    for d in devs.into_iter().filter(|d| d.name != "lo") {
        env.nics.push(nic_env(&conn.inet, &d.name, d.mtu, d.mac));
    }
    env
}

fn nic_env(sock: &OwnedFd, dev: &str, mtu: u32, mac: String) -> NicEnv {
    let info = drvinfo(sock, dev).unwrap_or_default();
    NicEnv {
        ifname: dev.to_string(),
        driver: info.driver,
        driver_version: info.version,
        firmware: info.firmware,
        bus: info.bus,
        speed_mbps: link_speed(sock, dev).ok().flatten(),
        mtu,
        mac,
        features: feature_bits(sock, dev)
            .map(|b| readable(&b))
            .unwrap_or_default(),
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The first `model name` of `/proc/cpuinfo` (`Processor` on some ARM).
fn cpu_model(cpuinfo: &str) -> String {
    cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| matches!(k.trim(), "model name" | "Processor" | "cpu model"))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_of_cpuinfo() {
        let x = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nflags\t: fpu\n";
        assert_eq!(cpu_model(x), "Intel(R) Xeon(R) CPU @ 2.20GHz");
        assert_eq!(cpu_model(""), "");
    }
}
