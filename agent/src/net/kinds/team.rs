//! `team(#{ runner, link_watch })`: teamd makes and runs the device. The
//! agent writes teamd's JSON config, journals how to stop it, then runs
//! `teamd -d -f CONF -t NAME -p PIDFILE` on a thread inside the target
//! namespace; `teamd -d` returns once the device exists (or with teamd's
//! error). Undo (and crash replay) sends TERM to the pid in the pid file
//! (what `teamd -k` does), which makes teamd remove the device, then
//! deletes the device if it is still there and removes the files.
//!
//! Ports join with `dev.master = team` (`ip link set PORT master NAME`):
//! teamd follows ports added over rtnetlink, and the port is taken down
//! for the change (`super::super::links::apply_master`).
//!
//! teamd's control socket is `/var/run/teamd/NAME.sock` whatever the
//! namespace, so two teams of one name in two namespaces of one machine
//! clash (teamdctl could not tell them apart either).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lnst_common::WireError;
use serde_json::{json, Value};

/// teamd runners (`teamd --help`), as RECIPES.md §7 lists them plus
/// `random`, which teamd also has.
pub const RUNNERS: &[&str] = &[
    "activebackup",
    "roundrobin",
    "loadbalance",
    "broadcast",
    "lacp",
    "random",
];
/// teamd link watchers.
pub const LINK_WATCHES: &[&str] = &["ethtool", "arp_ping", "nsna_ping"];

fn bad(key: &str, value: &str, accepted: &str) -> WireError {
    WireError::invalid(format!(
        "team: bad value {value:?} for {key} (accepted: {accepted})"
    ))
}

/// teamd's JSON config for device `name`. `runner` defaults to
/// activebackup (teamd's own default is roundrobin; activebackup is what
/// LNST's Team recipes use most). `link_watch` is a watcher name or a JSON
/// object with `name` and that watcher's options (`{"name": "arp_ping",
/// "target_host": "192.0.2.1", ..}`); default ethtool.
pub fn config(
    name: &str,
    runner: Option<&str>,
    link_watch: Option<&str>,
) -> Result<String, WireError> {
    let runner = runner.unwrap_or("activebackup");
    if !RUNNERS.contains(&runner) {
        return Err(bad("runner", runner, &RUNNERS.join(", ")));
    }
    let mut r = json!({ "name": runner });
    if runner == "lacp" {
        r["active"] = json!(true);
        r["fast_rate"] = json!(true);
        r["tx_hash"] = json!(["eth", "ipv4", "ipv6"]);
    }
    if runner == "loadbalance" {
        r["tx_hash"] = json!(["eth", "ipv4", "ipv6"]);
    }
    let lw: Value = match link_watch {
        None => json!({ "name": "ethtool" }),
        Some(t) if t.trim_start().starts_with('{') => {
            let v: Value = serde_json::from_str(t).map_err(|e| {
                bad(
                    "link_watch",
                    t,
                    &format!("a watcher name or a JSON object ({e})"),
                )
            })?;
            match v.get("name").and_then(Value::as_str) {
                Some(n) if LINK_WATCHES.contains(&n) => v,
                _ => {
                    return Err(bad(
                        "link_watch",
                        t,
                        &format!("an object whose name is one of {}", LINK_WATCHES.join(", ")),
                    ))
                }
            }
        }
        Some(n) if LINK_WATCHES.contains(&n) => json!({ "name": n }),
        Some(n) => return Err(bad("link_watch", n, &LINK_WATCHES.join(", "))),
    };
    Ok(json!({ "device": name, "runner": r, "link_watch": lw }).to_string())
}

/// Where the agent keeps a team's config and pid file.
pub fn files(netns: Option<&str>, name: &str) -> (PathBuf, PathBuf) {
    let dir = PathBuf::from("/run/lnst/teamd");
    let base = format!(
        "{}-{}-{name}",
        std::process::id(),
        netns.unwrap_or("root").replace('/', "_")
    );
    (
        dir.join(format!("{base}.conf")),
        dir.join(format!("{base}.pid")),
    )
}

/// Writes the config and runs `teamd -d` (blocking; call it on a thread in
/// the target namespace). teamd's stderr becomes the error; "Operation not
/// supported" means a kernel without the team driver.
pub fn start(name: &str, conf_text: &str, conf: &PathBuf, pid: &PathBuf) -> Result<(), WireError> {
    if let Some(d) = conf.parent() {
        std::fs::create_dir_all(d).map_err(|e| {
            WireError::os(format!("team {name}: cannot create {}: {e}", d.display()))
        })?;
    }
    std::fs::write(conf, conf_text)
        .map_err(|e| WireError::os(format!("team {name}: cannot write {}: {e}", conf.display())))?;
    let out = std::process::Command::new("teamd")
        .arg("-d")
        .arg("-f")
        .arg(conf)
        .arg("-t")
        .arg(name)
        .arg("-p")
        .arg(pid)
        .stdin(std::process::Stdio::null())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(WireError::unsupported(format!(
                "team {name}: teamd is not installed (Debian: libteam-utils)"
            )))
        }
        Err(e) => return Err(WireError::os(format!("team {name}: cannot run teamd: {e}"))),
    };
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err
        .lines()
        .filter(|l| !l.contains("not intended to be run as root"))
        .collect::<Vec<_>>()
        .join("; ");
    if err.contains("Operation not supported") {
        return Err(WireError::unsupported(format!(
            "this kernel does not support team devices (teamd: {err})"
        )));
    }
    Err(WireError::os(format!(
        "teamd -d -f {} -t {name} failed ({}): {err}",
        conf.display(),
        out.status
    )))
}

/// Stops the teamd of a pid file: TERM (as `teamd -k` does), then KILL
/// after 5 s; teamd removes its device as it quits. A missing pid file or
/// process counts as stopped. Removes the config and pid file.
pub fn stop(conf: &PathBuf, pid_file: &PathBuf) -> Result<(), WireError> {
    let pid = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let mut r = Ok(());
    if let Some(pid) = pid.filter(|&p| p > 1 && is_teamd(p)) {
        // SAFETY: plain kill(2) on a pid checked to be a teamd just above.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let t = Instant::now();
        while is_teamd(pid) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if is_teamd(pid) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            r = Err(WireError::os(format!(
                "teamd pid {pid} ignored TERM for 5 s; killed"
            )));
        }
    }
    let _ = std::fs::remove_file(conf);
    let _ = std::fs::remove_file(pid_file);
    r
}

/// A live (not zombie) process named teamd.
fn is_teamd(pid: i32) -> bool {
    let named = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim() == "teamd")
        .unwrap_or(false);
    // `/proc/PID/stat`: "pid (comm) S ..."; a zombie has exited already.
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true);
    named && !zombie
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_runner_and_link_watch() {
        let c: Value = serde_json::from_str(&config("tm0", Some("lacp"), None).unwrap()).unwrap();
        assert_eq!(c["device"], "tm0");
        assert_eq!(c["runner"]["name"], "lacp");
        assert_eq!(c["runner"]["active"], true);
        assert_eq!(c["link_watch"]["name"], "ethtool");
        let c: Value =
            serde_json::from_str(&config("tm0", None, Some("nsna_ping")).unwrap()).unwrap();
        assert_eq!(c["runner"]["name"], "activebackup");
        assert_eq!(c["link_watch"]["name"], "nsna_ping");
        let c: Value = serde_json::from_str(
            &config(
                "tm0",
                Some("roundrobin"),
                Some(r#"{"name":"arp_ping","target_host":"192.0.2.1","interval":100}"#),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(c["link_watch"]["target_host"], "192.0.2.1");
    }

    #[test]
    fn wrong_runner_or_watch_names_the_accepted_ones() {
        let e = config("tm0", Some("fastest"), None).unwrap_err();
        assert!(
            e.message.contains("runner") && e.message.contains("activebackup, roundrobin"),
            "{}",
            e.message
        );
        let e = config("tm0", None, Some("ping")).unwrap_err();
        assert!(
            e.message.contains("link_watch") && e.message.contains("arp_ping"),
            "{}",
            e.message
        );
        let e = config("tm0", None, Some(r#"{"name":"x"}"#)).unwrap_err();
        assert!(e.message.contains("link_watch"), "{}", e.message);
    }

    /// stop() TERMs the process of the pid file when it is a teamd (a copy
    /// of `sleep` named teamd stands in for it) and removes both files.
    #[test]
    fn stop_terms_the_teamd_of_the_pid_file() {
        let d = std::env::temp_dir().join(format!("lnst-team-stop-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let fake = d.join("teamd");
        std::fs::copy("/bin/sleep", &fake).unwrap();
        let mut child = std::process::Command::new(&fake).arg("60").spawn().unwrap();
        let (c, p) = (d.join("c"), d.join("p"));
        std::fs::write(&c, "{}").unwrap();
        std::fs::write(&p, format!("{}\n", child.id())).unwrap();
        let t = Instant::now();
        while !is_teamd(child.id() as i32) && t.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop(&c, &p).unwrap();
        let st = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&st),
            Some(libc::SIGTERM)
        );
        assert!(!c.exists() && !p.exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn stop_without_a_daemon_is_fine() {
        let d = std::env::temp_dir().join(format!("lnst-team-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let (c, p) = (d.join("c"), d.join("p"));
        std::fs::write(&c, "{}").unwrap();
        std::fs::write(&p, "999999999\n").unwrap();
        stop(&c, &p).unwrap();
        assert!(!c.exists() && !p.exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
