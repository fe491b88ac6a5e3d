//! `devices.json` in the run directory: every device the recipe's test
//! phase knew of at its end — the matched NICs and the soft devices it
//! created (`h.br0 = bridge()`, a veth's peer) — with what the controller
//! last saw of each (kind, master, addresses). Written once per match by
//! `recipe::api::job::end_of_test` from cached replies (no request is sent
//! then: an agent may be gone); read by the HTML report's topology.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One device at the end of a match's test phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRec {
    /// The requirement host (`h1`), also for a device in one of its
    /// namespaces.
    pub host: String,
    /// The namespace the device is in, as the recipe named it (`ns1`);
    /// `None`: the host's own.
    pub netns: Option<String>,
    /// The interface name (`ens1f0`, `br0`).
    pub name: String,
    /// The name the recipe used (`h.eth0`), when it differs or is a NIC.
    pub recipe_name: String,
    /// Link kind (`veth`, `bridge`, ...); `""` for a physical NIC; `None`
    /// when the controller never learnt it.
    pub kind: Option<String>,
    /// Made by the recipe (`h.NAME = SPEC` or a veth's peer); `false` for
    /// the matched NICs and devices found by name.
    pub created: bool,
    /// The bridge or bond it is enslaved to, when last seen.
    pub master: Option<String>,
    /// A veth's other end.
    pub peer: Option<String>,
    /// The lower device of a vlan, macvlan, vxlan or tunnel.
    pub link: Option<String>,
    pub mtu: Option<u32>,
    /// `addr/prefix` as last seen.
    #[serde(default)]
    pub ips: Vec<String>,
    pub up: Option<bool>,
}

/// The file: one list per match, in match order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DevicesFile {
    pub matches: Vec<Vec<DeviceRec>>,
}

/// The file's name in the run directory.
pub const FILE: &str = "devices.json";

/// Appends one match's devices to `RUN_DIR/devices.json` (written to a
/// temporary file and renamed, so a reader never sees half a file).
pub fn append(run_dir: &Path, devices: Vec<DeviceRec>) -> std::io::Result<()> {
    let path = run_dir.join(FILE);
    let mut file = read(run_dir).ok().flatten().unwrap_or_default();
    file.matches.push(devices);
    let text = serde_json::to_string_pretty(&file).map_err(std::io::Error::other)?;
    let tmp = run_dir.join(format!(".{FILE}.tmp"));
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, &path)
}

/// Reads `RUN_DIR/devices.json`: `Ok(None)` when the run left none (an
/// older lnst, or no test phase ran).
pub fn read(run_dir: &Path) -> Result<Option<DevicesFile>, String> {
    let path = run_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| format!("{}: not a devices file: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_keeps_one_list_per_match() {
        let d = std::env::temp_dir().join(format!("lnst-devices-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert_eq!(read(&d).unwrap(), None);
        let rec = DeviceRec {
            host: "h1".into(),
            netns: None,
            name: "br0".into(),
            recipe_name: "br0".into(),
            kind: Some("bridge".into()),
            created: true,
            master: None,
            peer: None,
            link: None,
            mtu: Some(1500),
            ips: vec![],
            up: Some(true),
        };
        append(&d, vec![rec.clone()]).unwrap();
        append(&d, vec![]).unwrap();
        let f = read(&d).unwrap().unwrap();
        assert_eq!(f.matches, vec![vec![rec], vec![]]);
        std::fs::write(d.join(FILE), "{").unwrap();
        assert!(read(&d).unwrap_err().contains("devices.json"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
