//! team devices through teamd, with a stand-in teamd (this kernel has no
//! team driver; the VM lab test `vm_lab_bond_team_modes_macsec` runs the
//! real one): the agent writes the config, runs `teamd -d -f CONF -t NAME
//! -p PID` in the namespace, and the journal's StopTeamd stops the daemon
//! and removes the device — also when a restarted agent replays the
//! journal of one killed with -9.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use lnst_common::device::DeviceSpec;
use lnst_common::{Request, Response};

use super::harness::*;

/// A directory with a `teamd` script that creates NAME as a bridge (the
/// kernel here has bridges) and leaves a daemon whose comm is `teamd`
/// (a copy of sleep), its pid in the pid file; it logs its arguments.
fn fake_teamd(dir: &std::path::Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(bin.join("daemon")).unwrap();
    std::fs::copy("/bin/sleep", bin.join("daemon/teamd")).unwrap();
    let script = format!(
        r#"#!/bin/sh
echo "$@" >> {log}
while [ $# -gt 0 ]; do
  case "$1" in -t) N="$2"; shift;; -p) P="$2"; shift;; -f) F="$2"; shift;; esac; shift
done
cp "$F" {log}.conf
ip link add name "$N" type bridge || exit 1
{bin}/daemon/teamd 3600 </dev/null >/dev/null 2>&1 &
echo $! > "$P"
"#,
        log = dir.join("teamd.log").display(),
        bin = bin.display()
    );
    std::fs::write(bin.join("teamd"), script).unwrap();
    std::fs::set_permissions(bin.join("teamd"), std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn link_exists(ns: &str, name: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "link", "show", name])
        .output()
        .unwrap()
        .status
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teamd_is_started_and_stopped_also_after_kill_9_of_the_agent() {
    if !root() {
        return;
    }
    let ns = Netns::new().unwrap();
    let dir = TempDir::new();
    let bin = fake_teamd(&dir.0);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [("PATH", path)];
    let a = Agent::start_env(dir, None, &env);
    let c = a.client().await;
    let r = c
        .request(Request::Create {
            netns: Some(ns.0.clone()),
            name: "tm0".into(),
            spec: DeviceSpec::Team {
                runner: Some("lacp".into()),
                link_watch: None,
            },
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", a.log_text()));
    let Response::Device(info) = r else {
        panic!("{r:?}")
    };
    assert_eq!(info.name, "tm0");
    let log = std::fs::read_to_string(a.dir.0.join("teamd.log")).unwrap();
    assert!(
        log.starts_with("-d -f /run/lnst/teamd/") && log.contains(" -t tm0 -p /run/lnst/teamd/"),
        "{log}"
    );
    let conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.dir.0.join("teamd.log.conf")).unwrap())
            .unwrap();
    assert_eq!(conf["device"], "tm0");
    assert_eq!(conf["runner"]["name"], "lacp");
    let pid_file = log.split_whitespace().last().unwrap().to_string();
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid) && link_exists(&ns.0, "tm0"));

    // kill -9 of the agent: teamd and the device stay until a new agent
    // replays the journal
    drop(c);
    let dir = a.kill9();
    assert!(alive(pid) && link_exists(&ns.0, "tm0"));
    let b = Agent::start_env(dir, None, &env);
    assert!(
        wait_until(Duration::from_secs(10), || !alive(pid)
            && !link_exists(&ns.0, "tm0")),
        "teamd {pid} alive={} tm0={}\n{}",
        alive(pid),
        link_exists(&ns.0, "tm0"),
        b.log_text()
    );
    assert!(!std::path::Path::new(&pid_file).exists(), "pid file left");
    assert!(
        !std::path::Path::new(&pid_file.replace(".pid", ".conf")).exists(),
        "config left"
    );
}
