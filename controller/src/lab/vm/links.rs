//! The VM lab's wiring: the lab namespace `lnst-<runid>-lab` holds one
//! bridge per `net` label and one tap per guest NIC, created before qemu
//! starts (qemu, running in that namespace, attaches to its tap by name).
//! Taps on a bridge carry 2.5 Gbit/s between TCG guests here, three times
//! qemu's socket netdevs (VMLAB.md); nothing of it is visible outside the
//! namespace, and deleting the namespace removes it all.

use std::collections::BTreeMap;

use super::nic;
use super::qemu::GuestNic;
use crate::mapper::Requirements;

/// The lab's plan: per host its NICs (tap, MAC), and the `ip -batch`
/// lines that build bridges and taps in the lab namespace.
#[derive(Debug, Clone, Default)]
pub struct Wiring {
    pub nics: BTreeMap<String, Vec<GuestNic>>,
    /// Segment label → the bridge that carries it.
    pub bridges: BTreeMap<String, String>,
    pub batch: Vec<String>,
}

/// The MTU of taps and bridges: the largest a tap takes.
pub const WIRE_MTU: u32 = 65521;

/// A locally administered unicast MAC for NIC `nic` of host `host`
/// (indices), unique within a lab.
pub fn mac(host: usize, nic: usize) -> String {
    format!("52:54:00:4c:{:02x}:{:02x}", host & 0xff, (nic + 1) & 0xff)
}

/// Plans the wiring of `req`: a bridge per label (an unlabelled NIC gets
/// one of its own), a tap per NIC, each NIC's model from its `driver`
/// (an error names a driver the lab cannot emulate).
pub fn plan(req: &Requirements) -> Result<Wiring, String> {
    let mut w = Wiring::default();
    let mut tails: Vec<String> = Vec::new();
    for (hi, h) in req.hosts.iter().enumerate() {
        let mut nics = Vec::new();
        for (ni, n) in h.nics.iter().enumerate() {
            let label = n
                .net
                .clone()
                .unwrap_or_else(|| format!("{}.{}", h.name, n.name));
            let next = w.bridges.len();
            let br = w
                .bridges
                .entry(label)
                .or_insert_with(|| format!("br{next}"))
                .clone();
            let tap = format!("t{hi}n{ni}");
            w.batch.push(format!("tuntap add dev {tap} mode tap"));
            // The largest MTU, so that the lab's wire never limits what a
            // recipe sets on the guest NICs (a bridge takes its ports' minimum).
            tails.push(format!("link set {tap} mtu {WIRE_MTU} master {br} up"));
            let model = nic::for_driver(n.attrs.get("driver"))
                .map_err(|e| format!("host {} nic {}: {e}", h.name, n.name))?;
            nics.push(GuestNic {
                name: n.name.clone(),
                tap,
                mac: mac(hi, ni),
                model,
            });
        }
        w.nics.insert(h.name.clone(), nics);
    }
    let mut head: Vec<String> = vec!["link set lo up".into()];
    for br in w.bridges.values() {
        // A plain wire: no STP and no forward delay (a port forwards the
        // moment it is up), no multicast snooping (IPv6 neighbour
        // discovery and a recipe's multicast reach every port, as on the
        // netns lab's veth wires).
        head.push(format!(
            "link add {br} type bridge forward_delay 0 mcast_snooping 0"
        ));
        head.push(format!("link set {br} up"));
    }
    head.append(&mut w.batch);
    head.extend(tails);
    w.batch = head;
    Ok(w)
}

/// The guest modules the lab's NIC models need (virtio_net is among the
/// early modules anyway), each once.
pub fn nic_modules(w: &Wiring) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for m in w.nics.values().flatten().map(|n| n.model.module) {
        if !v.contains(&m) {
            v.push(m);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapper::{HostReq, NicReq};

    fn nic(name: &str, net: Option<&str>) -> NicReq {
        NicReq {
            name: name.into(),
            net: net.map(str::to_string),
            attrs: Default::default(),
        }
    }

    #[test]
    fn one_bridge_per_label_one_tap_per_nic() {
        let req = Requirements {
            hosts: vec![
                HostReq {
                    name: "h1".into(),
                    params: Default::default(),
                    nics: vec![nic("eth0", Some("n1")), nic("eth1", Some("n2"))],
                },
                HostReq {
                    name: "h2".into(),
                    params: Default::default(),
                    nics: vec![nic("eth0", Some("n1")), nic("lone", None)],
                },
            ],
        };
        let w = plan(&req).unwrap();
        assert_eq!(w.bridges.len(), 3, "{:?}", w.bridges);
        assert_eq!(w.nics["h1"][0].tap, "t0n0");
        assert_eq!(w.nics["h2"][1].mac, "52:54:00:4c:01:02");
        assert!(
            w.batch
                .contains(&"link set t1n0 mtu 65521 master br0 up".to_string()),
            "{:?}",
            w.batch
        );
        let taps: Vec<_> = w
            .batch
            .iter()
            .filter(|l| l.starts_with("tuntap add"))
            .collect();
        assert_eq!(taps.len(), 4);
        // Bridges exist before the taps join them.
        let first_master = w.batch.iter().position(|l| l.contains(" master ")).unwrap();
        let last_bridge = w
            .batch
            .iter()
            .rposition(|l| l.contains("type bridge"))
            .unwrap();
        assert!(last_bridge < first_master);
    }
}
