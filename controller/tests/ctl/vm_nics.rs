//! The VM lab's NIC models (`h.nic("eth0", #{ driver: "e1000e" })`): each
//! model boots with its Linux driver (read by `ethtool -i` in the guest), a
//! driver no lab can give is refused before anything starts (exit 2,
//! naming the ones there are), and on e1000e `dev.coalesce`, `dev.rings`
//! and `dev.pause` are set, read back, held through traffic and undone —
//! each checked by parsing `ethtool -c/-g/-a` in the guest, independently
//! of the agent's ioctls — while what e1000e lacks is an error naming it.
//!
//! A killed controller takes its guests with it (qemu has
//! `PR_SET_PDEATHSIG`, `vm_lab_killed_controller_takes_its_guests_..`):
//! there is no guest state left to undo after a kill -9, so the undo is
//! checked after a normal run only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::vm_lab::{checked, lock, run_fixture_in, run_vm, vm_command, vm_ready};
use crate::{lab_command, results, Tmp};

/// `ethtool -c|-g|-a` text as `section/key` → value, the section being
/// the last header line (`Pause parameters for eth0`, `Pre-set maximums`,
/// `Current hardware settings`); fields `n/a` are left out.
fn ethtool_fields(text: &str) -> BTreeMap<String, String> {
    let mut section = String::new();
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if v.is_empty() {
            section = k.trim().to_string();
        } else if !v.starts_with("n/a") {
            out.insert(format!("{section}/{}", k.trim()), v.to_string());
        }
    }
    out
}

/// The stdout of the job whose result line is `desc`.
pub(crate) fn job_stdout(v: &Value, desc: &str) -> String {
    let r = v["matches"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["desc"] == desc)
        .unwrap_or_else(|| panic!("no result {desc:?}"));
    let dir = PathBuf::from(v["run_dir"].as_str().unwrap());
    let f = dir.join("jobs").join(format!(
        "{}-{}.stdout",
        r["host"].as_str().unwrap(),
        r["job"]
    ));
    std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
}

/// What the fixture's deferred command wrote on the guest's console after
/// the run's undo (its lines carry a prefix; the console adds `\r`).
pub(crate) fn undo_dump(console: &Path) -> String {
    let log = std::fs::read_to_string(console).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("LNST-UNDO-DUMP "))
        .collect();
    assert!(
        lines.first() == Some(&"LNST-UNDO-DUMP-BEGIN")
            && lines.last() == Some(&"LNST-UNDO-DUMP-END"),
        "no whole undo dump in {}:\n{log}",
        console.display()
    );
    lines.join("\n")
}

#[test]
fn ethtool_text_is_parsed_by_section() {
    let f = ethtool_fields(
        "Ring parameters for eth0:\nPre-set maximums:\nRX:\t\t4096\nRX Mini:\tn/a\nTX:\t\t4096\n\
         Current hardware settings:\nRX:\t\t256\nTX:\t\t256\n\
         Coalesce parameters for eth0:\nAdaptive RX: n/a  TX: n/a\nrx-usecs: 3\ntx-usecs: n/a\n\
         Pause parameters for eth0:\nAutonegotiate:\ton\nRX:\t\ton\nTX:\t\toff\n",
    );
    assert_eq!(f["Pre-set maximums/RX"], "4096");
    assert_eq!(f["Current hardware settings/TX"], "256");
    assert_eq!(f["Coalesce parameters for eth0/rx-usecs"], "3");
    assert_eq!(f["Pause parameters for eth0/TX"], "off");
    assert!(!f
        .keys()
        .any(|k| k.contains("tx-usecs") || k.contains("Mini") || k.contains("Adaptive")));
    assert_eq!(f.len(), 8, "{f:?}");
}

#[test]
fn vm_lab_e1000e_coalesce_rings_pause_are_set_checked_by_ethtool_and_undone() {
    let test = "vm_lab_e1000e_coalesce_rings_pause_are_set_checked_by_ethtool_and_undone";
    let Some(agent) = vm_ready(test) else {
        return;
    };
    // Every result PASSed (the recipe's own read-backs, the errors naming
    // what e1000e lacks, traffic), exit 0, no cleanup error.
    let t = Tmp::new();
    let (res, v) = run_fixture_in(&t, &agent, "vm_ethtool.rhai");
    let dir = PathBuf::from(v["run_dir"].as_str().unwrap());
    let c = "Coalesce parameters for eth0/rx-usecs";
    let (rx, tx) = (
        "Current hardware settings/RX",
        "Current hardware settings/TX",
    );
    let pause = |k: &str| format!("Pause parameters for eth0/{k}");
    for h in ["h1", "h2"] {
        let before = ethtool_fields(&job_stdout(&v, &format!("{h} ethtool before")));
        let after = ethtool_fields(&job_stdout(&v, &format!("{h} ethtool after")));
        let undone = ethtool_fields(&undo_dump(&dir.join(format!("console-{h}.log"))));
        // What ethtool in the guest reads after the settings and traffic.
        let want = [
            (c.to_string(), "50"),
            (rx.to_string(), "512"),
            (tx.to_string(), "1024"),
            (pause("Autonegotiate"), "off"),
            (pause("RX"), "off"),
            (pause("TX"), "off"),
        ];
        for (k, w) in &want {
            assert_eq!(
                after.get(k).map(String::as_str),
                Some(*w),
                "{h} {k}: {after:?}"
            );
            // e1000e's defaults differ (so each check could fail).
            assert_ne!(
                before.get(k).map(String::as_str),
                Some(*w),
                "{h} {k}: {before:?}"
            );
        }
        // The undo gave every field back, the read-only maxima included.
        assert!(before.len() >= 8, "{h}: {before:?}");
        assert_eq!(undone, before, "{h}: after the run vs before the settings");
    }
    for what in [
        "channels read",
        "channels set",
        "coalesce tx_usecs",
        "coalesce adaptive_rx",
        "rings above the maximum",
        "coalesce unknown key",
    ] {
        for h in ["h1", "h2"] {
            assert!(
                res.iter()
                    .any(|(d, r)| d.starts_with(&format!("{h} {what}: ")) && r == "PASS"),
                "{h} {what}: {res:?}"
            );
        }
    }
}

#[test]
fn vm_lab_nic_driver_chooses_the_model_and_others_are_refused() {
    let test = "vm_lab_nic_driver_chooses_the_model_and_others_are_refused";
    let Some(agent) = vm_ready(test) else {
        return;
    };
    let t = Tmp::new();
    // A driver no lab model has: exit 2 before any guest, naming the NIC,
    // the driver and the models; no lab record left (checked()).
    let bad = t.write(
        "bad.rhai",
        "let h1 = host(\"h1\");\nh1.nic(\"eth0\", #{ driver: \"ixgbe\" });\nfn test(m) {}\n",
    );
    let (code, err) = checked(&mut vm_command(&t, &agent, &bad, &[]));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("host h1 nic eth0")
            && err.contains("\"ixgbe\"")
            && err.contains("virtio_net, e1000e, e1000, vmxnet3, 8139cp"),
        "{err}"
    );
    assert!(!err.contains("waiting for"), "a guest was started: {err}");
    // The netns lab's NICs are veths: e1000e there is refused too.
    let e1000e = t.write(
        "e.rhai",
        "let h1 = host(\"h1\");\nh1.nic(\"eth0\", #{ driver: \"e1000e\" });\nfn test(m) {}\n",
    );
    let (code, err) = checked(&mut lab_command(&t, &agent, &e1000e, &[]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("veth") && err.contains("--lab vm"), "{err}");
    // validate shows the model per NIC.
    let (code, out, err) = crate::run(&["validate", e1000e.to_str().unwrap(), "--lab", "vm"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("eth0 (52:54:00:4c:00:01, e1000e)"), "{out}");

    // One guest with a NIC of each model: each comes up with its driver,
    // as ethtool -i in the guest and dev.driver say.
    let _g = lock();
    let models = ["virtio_net", "e1000e", "e1000", "vmxnet3", "8139cp"];
    let mut r = String::from("let h1 = host(\"h1\");\n");
    for (i, d) in models.iter().enumerate() {
        r.push_str(&format!("h1.nic(\"n{i}\", #{{ driver: \"{d}\" }});\n"));
    }
    r.push_str(
        "fn test(m) {\n  for d in m.h1.devices { if d.name.starts_with(\"n\") {\n    \
         m.h1.run(`ethtool -i ${d.name}`, #{ desc: `ethtool -i ${d.name}` });\n    \
         m.check(true, `${d.name} dev.driver ${d.driver}`);\n  } }\n}\n",
    );
    let all = t.write("all.rhai", &r);
    let (code, v, err) = run_vm(&t, &agent, &all, &[]);
    assert_eq!(code, 0, "{:?}\n{err}", results(&v));
    for (i, d) in models.iter().enumerate() {
        let out = job_stdout(&v, &format!("ethtool -i n{i}"));
        assert!(
            out.lines().any(|l| l.trim() == format!("driver: {d}")),
            "n{i} wanted {d}: {out}"
        );
        assert!(
            results(&v)
                .iter()
                .any(|(x, _)| x == &format!("n{i} dev.driver {d}")),
            "{:?}",
            results(&v)
        );
    }
}
