//! `h.service` against a real systemd: a VM lab guest whose host
//! requirement says `init: "systemd"` boots the host's systemd as PID 1,
//! which starts the agent as a unit. The fixture starts an inactive unit,
//! stops an active one and restarts; the test parses `systemctl
//! is-active` run in the guest before and after, and the same written on
//! the console by a deferred command that runs last in the undo: both
//! units are as before. A unit with default dependencies starts too, and
//! the /tmp its sysinit.target finds is kept (the host's, over 9p). A
//! guest without systemd gets an error saying so, and an unknown `init` is
//! refused before any guest starts.

use std::path::PathBuf;

use super::vm_lab::{checked, run_fixture_in, vm_command, vm_ready};
use super::vm_nics::{job_stdout, undo_dump};
use crate::Tmp;

/// `systemctl is-active A B` output as its lines.
fn states(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with("LNST-UNDO-DUMP"))
        .collect()
}

#[test]
fn vm_lab_systemd_guest_service_is_acted_on_and_restored() {
    let test = "vm_lab_systemd_guest_service_is_acted_on_and_restored";
    let Some(agent) = vm_ready(test) else {
        return;
    };
    if !std::path::Path::new("/lib/systemd/systemd").is_file() {
        if std::env::var("LNST_REQUIRE_VM").as_deref() == Ok("1") {
            panic!("{test}: /lib/systemd/systemd is missing and LNST_REQUIRE_VM=1");
        }
        println!("SKIP {test}: no /lib/systemd/systemd to boot (apt-get install systemd)");
        return;
    }
    let t = Tmp::new();
    // An init the lab does not have: exit 2, before any guest.
    let bad = t.write(
        "bad.rhai",
        "let h1 = host(\"h1\", #{ init: \"openrc\" });\nfn test(m) {}\n",
    );
    let (code, err) = checked(&mut vm_command(&t, &agent, &bad, &[]));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("host h1") && err.contains("\"openrc\"") && err.contains("systemd"),
        "{err}"
    );
    assert!(!err.contains("waiting for"), "a guest was started: {err}");

    let (res, v) = run_fixture_in(&t, &agent, "vm_systemd.rhai");
    let dir = PathBuf::from(v["run_dir"].as_str().unwrap());
    assert_eq!(
        states(&job_stdout(&v, "h1 states before")),
        ["inactive", "active"]
    );
    assert_eq!(
        states(&job_stdout(&v, "h1 states after")),
        ["active", "inactive"]
    );
    assert_eq!(
        states(&undo_dump(&dir.join("console-h1.log"))),
        ["inactive", "active"],
        "after the run's undo"
    );
    // h1 ran systemd as PID 1, h2 its own /init.
    assert_eq!(job_stdout(&v, "h1 pid 1").trim(), "systemd");
    assert_ne!(job_stdout(&v, "h2 pid 1").trim(), "systemd");
    for want in [
        "h2 without systemd: ",
        "h1 unknown unit: ",
        "h1 unknown action: ",
    ] {
        assert!(
            res.iter().any(|(d, r)| d.starts_with(want) && r == "PASS"),
            "{want}: {res:?}"
        );
    }
}
