//! Issue 11 members through `lnst-ctl run` on the netns lab: module jobs
//! inverted by `expect_fail`, feature short names on read, `h.defer` and
//! the `undo` run option (checked from outside after the run and after a
//! killed controller), `dev.host`, a namespace's kernel name, and kinds
//! this kernel lacks (SKIP with the reason).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{lab_ready, results, run_lab, Tmp};

const TWO_HOSTS: &str = r#"
let h1 = host("h1");
h1.nic("eth0", #{ net: "net1" });
let h2 = host("h2");
h2.nic("eth0", #{ net: "net1" });
"#;

/// The results that did not PASS, as `desc RESULT` lines.
fn not_passed(v: &Value) -> Vec<String> {
    results(v)
        .into_iter()
        .filter(|(_, r)| r != "PASS")
        .map(|(d, r)| format!("{d} {r}"))
        .collect()
}

#[test]
fn module_job_is_inverted_by_expect_fail() {
    let Some(agent) = lab_ready("module_job_is_inverted_by_expect_fail") else {
        return;
    };
    let t = Tmp::new();
    let r = t.write(
        "r.rhai",
        &format!(
            r#"{TWO_HOSTS}
fn test(m) {{
    m.h1.eth0.up();
    m.h1.eth0.ip_add("192.168.50.1/24");
    // no path to .3: the ping fails, expect_fail makes the line PASS
    let p = m.h1.run(ping(#{{ dst: "192.168.50.3", count: 2, interval: 0.2 }}), #{{ expect_fail: true, desc: "no path" }});
    m.check(p.passed, "module with expect_fail passes when the ping fails");
    // a ping that works, with expect_fail: FAIL
    let q = m.h1.run(ping(#{{ dst: "192.168.50.1", count: 1 }}), #{{ expect_fail: true, desc: "inverted ok" }});
    m.check(!q.passed, "module with expect_fail fails when the ping passes");
}}
"#
        ),
    );
    let (code, v, err) = run_lab(&t, &agent, &r, &[]);
    assert_eq!(
        not_passed(&v),
        vec!["inverted ok FAIL".to_string()],
        "{err}"
    );
    assert_eq!(code, 1);
}

#[test]
fn features_read_by_short_names() {
    let Some(agent) = lab_ready("features_read_by_short_names") else {
        return;
    };
    let t = Tmp::new();
    let r = t.write(
        "r.rhai",
        &format!(
            r#"{TWO_HOSTS}
fn test(m) {{
    let d = m.h1.eth0;
    d.set_features(#{{ gro: false }});
    m.check(d.features.gro == false, `gro reads false: ${{d.features.gro}}`);
    m.check(d.features["generic-receive-offload"] == false, "long name too");
    d.set_features(#{{ gro: true, tso: false }});
    m.check(d.features.gro == true && d.features.tso == false, "gro on, tso off");
    let out = m.h1.run("ethtool -k eth0").stdout;
    m.check(out.contains("generic-receive-offload: on") && out.contains("tcp-segmentation-offload: off"), "ethtool -k agrees");
}}
"#
        ),
    );
    let (code, v, err) = run_lab(&t, &agent, &r, &[]);
    assert_eq!(not_passed(&v), Vec::<String>::new(), "{err}");
    assert_eq!(code, 0);
}

/// A recipe whose job makes a file with `undo` removing it, and an
/// `h.defer` in a namespace object that appends to a log: both outside
/// the lab, so the effect is checked from here.
fn defer_recipe(dir: &Path, then: &str) -> String {
    let made = dir.join("made");
    let log = dir.join("log");
    format!(
        r#"
let h1 = host("h1");
fn test(m) {{
    let h = m.h1;
    h.defer("echo first >> {log}");
    let j = h.run("touch {made}", #{{ undo: "rm {made}" }});
    m.check(j.passed, "job made the file");
    let ns = h.netns("dns");
    ns.defer("ip link show lo >/dev/null && echo second >> {log}");
    h.run("echo third >> {log}", #{{ undo: "true", netns: ns, desc: "undo in a netns" }});
    {then}
}}
"#,
        made = made.display(),
        log = log.display()
    )
}

#[test]
fn defer_and_undo_run_after_the_test_in_reverse_order() {
    let Some(agent) = lab_ready("defer_and_undo_run_after_the_test_in_reverse_order") else {
        return;
    };
    let t = Tmp::new();
    let r = t.write("r.rhai", &defer_recipe(&t.0, "m.check(true, \"done\");"));
    let (code, v, err) = run_lab(&t, &agent, &r, &[]);
    assert_eq!(not_passed(&v), Vec::<String>::new(), "{err}");
    assert_eq!(code, 0);
    assert!(!t.0.join("made").exists(), "undo rm did not run");
    assert!(
        v["cleanup_errors"].as_array().is_none_or(|a| a.is_empty()),
        "{}",
        v["cleanup_errors"]
    );
    assert_eq!(
        std::fs::read_to_string(t.0.join("log")).unwrap(),
        "third\nsecond\nfirst\n"
    );
    // a wrong type is an error naming the option
    let r = t.write(
        "bad.rhai",
        "let h1 = host(\"h1\");\nfn test(m) { m.h1.run(\"true\", #{ undo: 5 }); }\n",
    );
    let (code, v, _) = run_lab(&t, &agent, &r, &[]);
    assert_eq!(code, 1);
    let text = v.to_string();
    assert!(text.contains("undo must be a shell command"), "{text}");
}

/// kill -9 of `lnst-ctl run --pool` with a pool agent (not the lab: a
/// concurrent `run` may remove a dead controller's lab, agents and all,
/// before they finish their undo; see the report on `lab::clean_stale`).
#[test]
fn defer_runs_after_kill_9_of_the_controller() {
    let Some(agent) = lab_ready("defer_runs_after_kill_9_of_the_controller") else {
        return;
    };
    let t = Tmp::new();
    let sock = t.0.join("a.sock");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut a = Kill(
        Command::new(&agent)
            .arg("--unix")
            .arg(&sock)
            .arg("--state-dir")
            .arg(t.0.join("state"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(a.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("READY"), "{line}");
    t.write(
        "pool/box.toml",
        &format!("address = \"unix:{}\"\n", sock.display()),
    );
    let ready = t.0.join("ready");
    let r = t.write(
        "r.rhai",
        &defer_recipe(
            &t.0,
            &format!("h.run(\"touch {}\"); m.sleep(60);", ready.display()),
        ),
    );
    let mut child = Command::new(crate::ctl())
        .arg("run")
        .arg(&r)
        .arg("--pool")
        .arg(t.0.join("pool"))
        .arg("--out")
        .arg(t.0.join("runs"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "recipe never got ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(t.0.join("made").exists());
    child.kill().unwrap(); // SIGKILL: the controller undoes nothing
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.0.join("made").exists()
        || std::fs::read_to_string(t.0.join("log")).unwrap_or_default() != "third\nsecond\nfirst\n"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "undo did not run after kill -9: made={} log={:?}",
            t.0.join("made").exists(),
            std::fs::read_to_string(t.0.join("log"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dev_host_netns_name_and_namespace_members() {
    let Some(agent) = lab_ready("dev_host_netns_name_and_namespace_members") else {
        return;
    };
    let t = Tmp::new();
    let r = t.write(
        "r.rhai",
        &format!(
            r#"{TWO_HOSTS}
fn test(m) {{
    let h = m.h1;
    m.check(h.eth0.host.name == "h1" && h.netns_name == (), "dev.host of a NIC; a host has no netns_name");
    h.ns1 = h.netns("ns1");
    let ns = h.ns1;
    m.check(ns.name == "h1/ns1", `h.ns1 is the namespace: ${{ns.name}}`);
    let kn = ns.netns_name;
    m.check(kn.ends_with("-ns1") && kn != "ns1", `kernel name ${{kn}}`);
    // a shell job names the namespace by its kernel name
    let j = h.run(`ip netns exec ${{kn}} ip link add name jv0 type veth peer name jv1`);
    m.check(j.passed, "job made a veth in the namespace");
    // a device made by a job is reachable as ns.NAME, and knows its host
    let d = ns.jv0;
    m.check(d.kind == "veth" && d.host.name == "h1/ns1" && d.host.netns_name == kn, `job-made device ${{d.kind}} on ${{d.host.name}}`);
    h.v0 = veth(#{{ peer: "v1" }});
    h.v0.move_to(kn);
    m.check(h.v0.host.netns_name == kn, "moved by name: dev.host is the namespace");
    m.check(h.devices.len() >= 3, "h.devices.len() (a read-only member) still works");
    try {{ h.y = m.h2; m.check(false, "host accepted"); }}
    catch (e) {{ m.check(`${{e}}`.contains("not a namespace"), `host as member: ${{e}}`); }}
    try {{ let q = h.nosuch; m.check(false, "no error"); }}
    catch (e) {{ m.check(`${{e}}`.contains("ns1") && `${{e}}`.contains("eth0"), `unknown member lists: ${{e}}`); }}
}}
"#
        ),
    );
    let (code, v, err) = run_lab(&t, &agent, &r, &[]);
    assert_eq!(not_passed(&v), Vec::<String>::new(), "{err}");
    assert_eq!(code, 0);
}

/// `h.NAME = SPEC` after `h.NAME.destroy()` creates the device again (LNST
/// recipes re-create devices per sub-configuration); while the device is
/// there the name is still refused.
#[test]
fn a_destroyed_device_name_can_be_created_again() {
    let Some(agent) = lab_ready("a_destroyed_device_name_can_be_created_again") else {
        return;
    };
    let t = Tmp::new();
    let r = t.write(
        "r.rhai",
        &format!(
            r#"{TWO_HOSTS}
fn test(m) {{
    let h = m.h1;
    h.br7 = bridge();
    let again = "";
    try {{ h.br7 = bridge(); }} catch (e) {{ again = `${{e}}`; }}
    m.check(again.contains("already has a device named"), `a second br7 is refused: ${{again}}`);
    h.br7.destroy();
    h.br7 = bridge(#{{ stp: false }});
    m.check(h.br7.kind == "bridge", "br7 created again after destroy()");
    let l = h.run("ip -j link show type bridge", #{{ json: true }});
    m.check(l.result.len() == 1 && l.result[0].ifname == "br7", "ip shows the one br7");
}}
"#
        ),
    );
    let (code, v, err) = run_lab(&t, &agent, &r, &[]);
    assert_eq!(not_passed(&v), Vec::<String>::new(), "{err}");
    assert_eq!(code, 0, "{err}");
}
