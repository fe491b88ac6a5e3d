//! The NIC models a VM lab guest can have: a NIC requirement's `driver`
//! param (`h.nic("eth0", #{ net: "n", driver: "e1000e" })`, RECIPES.md §3)
//! chooses the qemu device that emulates it, so a recipe gets a NIC whose
//! Linux driver has what virtio-net lacks (interrupt coalescing, ring sizes
//! and pause frames on e1000e). Without `driver` a NIC is virtio-net, the
//! fastest under TCG.
//!
//! The value is the Linux driver's name, as `dev.driver` and `ethtool -i`
//! report it and as a pool file's `driver` says, so the mapper matches it
//! unchanged; an array means "one of" and the lab takes the first it can
//! emulate. A driver the lab cannot emulate is refused before anything
//! starts (a mapping error, exit 2) with the list of those it can.
//!
//! Each model's guest module is put in the lab's initramfs and loaded
//! before the NICs are renamed, only when a NIC of the lab uses it: a lab
//! of virtio NICs boots exactly as before.

use serde_json::Value;

/// One NIC model the VM lab emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NicModel {
    /// The Linux driver's name: the requirement's `driver` value.
    pub driver: &'static str,
    /// qemu's `-device` name.
    pub device: &'static str,
    /// The guest module that drives it (from the lab kernel's modules).
    pub module: &'static str,
    /// What it is, for `validate` and messages.
    pub what: &'static str,
}

/// The models, the default first. Each was booted under qemu 7.2 with
/// Debian's 6.1 kernel and checked to come up with its driver.
pub const MODELS: &[NicModel] = &[
    NicModel {
        driver: "virtio_net",
        device: "virtio-net-pci",
        module: "virtio_net",
        what: "virtio-net (default: fastest; channels only)",
    },
    NicModel {
        driver: "e1000e",
        device: "e1000e",
        module: "e1000e",
        what: "Intel 82574L (coalesce rx_usecs, rings, pause)",
    },
    NicModel {
        driver: "e1000",
        device: "e1000",
        module: "e1000",
        what: "Intel 82540EM",
    },
    NicModel {
        driver: "vmxnet3",
        device: "vmxnet3",
        module: "vmxnet3",
        what: "VMware vmxnet3",
    },
    NicModel {
        driver: "8139cp",
        device: "rtl8139",
        module: "8139cp",
        what: "Realtek RTL8139C+",
    },
];

/// The model of a NIC without a `driver` param.
pub const DEFAULT: NicModel = MODELS[0];

/// The accepted `driver` values, for messages.
pub fn accepted() -> String {
    MODELS
        .iter()
        .map(|m| m.driver)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The model for a NIC requirement's `driver` param (`None`: not given):
/// the value, or the first of an array that the lab emulates. The error
/// says what was asked and what the lab has.
pub fn for_driver(want: Option<&Value>) -> Result<NicModel, String> {
    let Some(want) = want else {
        return Ok(DEFAULT);
    };
    let one = |v: &Value| {
        v.as_str()
            .and_then(|s| MODELS.iter().find(|m| m.driver == s.trim()))
            .copied()
    };
    let found = match want {
        Value::Array(a) => a.iter().find_map(one),
        v => one(v),
    };
    found.ok_or_else(|| {
        format!(
            "driver {want}: the VM lab emulates NICs with driver {} (give one of them, or use --pool for other hardware)",
            accepted()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn driver_chooses_the_model_and_an_unknown_one_names_those_there_are() {
        assert_eq!(for_driver(None).unwrap().device, "virtio-net-pci");
        assert_eq!(for_driver(Some(&json!("e1000e"))).unwrap().device, "e1000e");
        assert_eq!(
            for_driver(Some(&json!("8139cp"))).unwrap().device,
            "rtl8139"
        );
        // "one of": the first the lab has
        let m = for_driver(Some(&json!(["ixgbe", "vmxnet3", "e1000"]))).unwrap();
        assert_eq!(m.driver, "vmxnet3");
        for bad in [json!("ixgbe"), json!(["ixgbe", "mlx5_core"]), json!(1000)] {
            let e = for_driver(Some(&bad)).unwrap_err();
            assert!(
                e.contains(&bad.to_string())
                    && e.contains("virtio_net, e1000e, e1000, vmxnet3, 8139cp"),
                "{e}"
            );
        }
    }

    #[test]
    fn each_driver_is_listed_once() {
        let mut d: Vec<_> = MODELS.iter().map(|m| m.driver).collect();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), MODELS.len());
    }
}
