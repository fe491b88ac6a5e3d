//! Issue 11 members through `lnst-ctl run` on the netns lab: module jobs
//! inverted by `expect_fail`, feature short names on read, `h.defer` and
//! the `undo` run option (checked from outside after the run and after a
//! killed controller), `dev.host`, a namespace's kernel name, and kinds
//! this kernel lacks (SKIP with the reason).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{lab_command, lab_ready, results, run_lab, Tmp};

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
    assert_eq!(not_passed(&v), vec!["inverted ok FAIL".to_string()], "{err}");
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
