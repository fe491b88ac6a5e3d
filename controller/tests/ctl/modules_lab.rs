//! Test modules through the whole system: each test writes a recipe into
//! its scratch directory, runs it with the real `lnst-ctl run` on the netns
//! lab (real agents, real namespaces) and checks the exit status, the
//! module results in `summary.json` (`data`) and the key figures in the
//! human summary on stdout — both from the same run.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{assert_no_leftovers, ctl, lab_ready, Tmp};

/// Runs `recipe` on the lab without `--json`; returns (exit code, human
/// summary on stdout, `summary.json` of the run directory, stderr).
fn run_text(t: &Tmp, agent: &Path, recipe: &str) -> (i32, String, Value, String) {
    let r = t.write("r.rhai", recipe);
    let out = t.0.join("runs");
    let o = Command::new(ctl())
        .arg("run")
        .arg(&r)
        .arg("--out")
        .arg(&out)
        .arg("--agent-bin")
        .arg(agent)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let dir = stdout
        .lines()
        .filter_map(|l| l.split_once("; run dir "))
        .map(|(_, d)| PathBuf::from(d.trim()))
        .next_back()
        .unwrap_or_else(|| panic!("no run dir in the summary:\n{stdout}\n{stderr}"));
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_no_leftovers(&v);
    (o.status.code().unwrap_or(-1), stdout, v, stderr)
}

/// Every result line of the first match.
fn lines(v: &Value) -> &Vec<Value> {
    v["matches"][0]["results"].as_array().unwrap()
}

/// The one result whose description is `desc`.
fn line<'a>(v: &'a Value, desc: &str) -> &'a Value {
    let found: Vec<&Value> = lines(v).iter().filter(|r| r["desc"] == desc).collect();
    assert_eq!(found.len(), 1, "one result {desc:?} expected in {v:#}");
    found[0]
}

/// The human summary line of the result `desc`.
fn text_line<'a>(text: &'a str, desc: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(desc))
        .unwrap_or_else(|| panic!("no summary line for {desc:?}:\n{text}"))
}

const TWO_HOSTS: &str = r#"
let h1 = host("h1");
h1.nic("eth0", #{ net: "net1" });
let h2 = host("h2");
h2.nic("eth0", #{ net: "net1" });
"#;

#[test]
fn ping_loss_when_a_link_goes_down_mid_run_fails_with_exit_1() {
    let Some(agent) = lab_ready("ping_loss_when_a_link_goes_down_mid_run_fails_with_exit_1") else {
        return;
    };
    let t = Tmp::new();
    let recipe = format!(
        r#"{TWO_HOSTS}
fn test(m) {{
    m.h1.eth0.up();
    m.h2.eth0.up();
    m.h1.eth0.ip_add("192.168.130.1/24");
    m.h2.eth0.ip_add("192.168.130.2/24");
    let p = m.h1.run(ping(#{{ dst: "192.168.130.2", count: 20, interval: 0.05, timeout: 0.5 }}),
                     #{{ bg: true, desc: "ping across a failing link" }});
    m.sleep(0.4);
    m.h2.eth0.down();
    p.wait(10);
    m.check(p.finished && !p.passed, "the ping job failed");
}}
"#
    );
    let (code, text, v, err) = run_text(&t, &agent, &recipe);
    assert_eq!(code, 1, "{text}\n{err}");
    assert_eq!(v["result"], "FAIL", "{v:#}");
    let p = line(&v, "ping across a failing link");
    assert_eq!(p["result"], "FAIL", "{p}");
    assert_eq!(p["host"], "h1");
    assert!(p["job"].is_u64(), "{p}");
    let d = &p["data"];
    let (sent, received) = (d["sent"].as_u64().unwrap(), d["received"].as_u64().unwrap());
    let loss = d["loss"].as_f64().unwrap();
    assert_eq!(sent, 20, "{d}");
    assert!(received > 0 && received < sent, "{d}");
    assert!((loss - 100.0 * (sent - received) as f64 / sent as f64).abs() < 1e-9);
    assert!(d["rtt_avg"].as_f64().unwrap() > 0.0, "{d}");
    assert_eq!(line(&v, "the ping job failed")["result"], "PASS");
    // The human summary shows loss and rtt avg.
    let l = text_line(&text, "ping across a failing link");
    assert!(l.trim_start().starts_with("FAIL"), "{l}");
    assert!(
        l.contains(&format!("loss {loss:.1}% ({received}/{sent} received)"))
            && l.contains("rtt avg"),
        "{l}"
    );
}

#[test]
fn iperf_tcp_and_udp_results_travel_as_data() {
    let Some(agent) = lab_ready("iperf_tcp_and_udp_results_travel_as_data") else {
        return;
    };
    let t = Tmp::new();
    let recipe = format!(
        r#"{TWO_HOSTS}
fn test(m) {{
    m.h1.eth0.up();
    m.h2.eth0.up();
    m.h1.eth0.ip_add("192.168.131.1/24");
    m.h2.eth0.ip_add("192.168.131.2/24");
    let s = m.h2.run(iperf_server(#{{ bind: "192.168.131.2", port: 5301 }}));
    m.h1.run(iperf_client(#{{ server: "192.168.131.2", port: 5301, duration: 1 }}),
             #{{ desc: "tcp" }});
    m.h1.run(iperf_client(#{{ server: "192.168.131.2", port: 5301, duration: 1,
                              proto: "udp", bitrate: "50M" }}), #{{ desc: "udp" }});
    s.kill();
    m.check(s.result.connections == 2, `server counted ${{s.result.connections}} connections`);
}}
"#
    );
    let (code, text, v, err) = run_text(&t, &agent, &recipe);
    assert_eq!(code, 0, "{text}\n{err}");
    for proto in ["tcp", "udp"] {
        let r = line(&v, proto);
        assert_eq!(r["result"], "PASS", "{r}");
        let d = &r["data"];
        let bps = d["bps"].as_f64().unwrap();
        assert!(bps > 0.0, "{d}");
        for k in ["bps", "retransmits", "cpu_local", "cpu_remote", "intervals"] {
            assert!(d.get(k).is_some(), "{proto}: no {k} in {d}");
        }
        assert!(d["cpu_local"].is_number() && d["cpu_remote"].is_number());
        let iv = d["intervals"].as_array().unwrap();
        assert!(!iv.is_empty() && iv.iter().all(|x| x.is_number()), "{d}");
        assert_eq!(d["proto"], proto);
        if proto == "tcp" {
            assert!(d["retransmits"].is_u64(), "{d}");
        } else {
            // UDP has no retransmits; the rate is the one asked for.
            assert!(d["retransmits"].is_null(), "{d}");
            assert!(bps > 25e6 && bps < 75e6, "50M asked: {bps}");
            assert!(d["lost_percent"].is_number(), "{d}");
        }
        // The human summary shows the throughput.
        let l = text_line(&text, &format!("job {}   {proto}", r["job"]));
        assert!(l.contains("bit/s"), "{l}");
    }
    assert_eq!(line(&v, "server counted 2 connections")["result"], "PASS");
}

#[test]
fn packet_assert_counts_exactly_the_echo_requests_sent() {
    let Some(agent) = lab_ready("packet_assert_counts_exactly_the_echo_requests_sent") else {
        return;
    };
    let t = Tmp::new();
    let recipe = format!(
        r#"{TWO_HOSTS}
fn test(m) {{
    m.h1.eth0.up();
    m.h2.eth0.up();
    m.h1.eth0.ip_add("192.168.132.1/24");
    m.h2.eth0.ip_add("192.168.132.2/24");
    // A device stands for its name on the machine.
    let c = m.h2.run(packet_assert(#{{ iface: m.h2.eth0, filter: "icmp[icmptype] == icmp-echo",
                                       min: 7, max: 7 }}), #{{ desc: "echo requests" }});
    let w = m.h2.run(packet_assert(#{{ iface: "eth0", filter: "icmp[icmptype] == icmp-echo",
                                       min: 8 }}), #{{ desc: "at least 8" }});
    m.h1.run("ping -n -c 7 -i 0.05 -W 2 192.168.132.2", #{{ desc: "ping -c 7" }});
    c.kill();
    w.kill();
    m.h1.run(ping(#{{ dst: "192.168.132.2", count: 1, iface: m.h1.eth0 }}));
    m.result(true, "seen", #{{ packets: c.result.packets }});
}}
"#
    );
    let (code, text, v, err) = run_text(&t, &agent, &recipe);
    // "at least 8" must fail: the count is exact, not just >= min.
    assert_eq!(code, 1, "{text}\n{err}");
    let c = line(&v, "echo requests");
    assert_eq!(c["result"], "PASS", "{c}");
    assert_eq!(c["data"]["packets"], 7, "{c}");
    assert_eq!(line(&v, "seen")["data"]["packets"], 7);
    let w = line(&v, "at least 8");
    assert_eq!(
        (&w["result"], &w["data"]["packets"]),
        (&"FAIL".into(), &7.into())
    );
    assert_eq!(line(&v, "ping -c 7")["result"], "PASS");
    // The ping through `iface: m.h1.eth0` ran after the captures stopped.
    assert_eq!(line(&v, "ping 192.168.132.2")["result"], "PASS");
    let jobs = std::fs::read_dir(
        v["run_dir"]
            .as_str()
            .map(PathBuf::from)
            .unwrap()
            .join("jobs"),
    )
    .unwrap()
    .count();
    assert!(jobs >= 8, "stdout and stderr of every job: {jobs}");
    assert!(
        text_line(&text, "echo requests").contains("7 packets"),
        "{text}"
    );
}

#[test]
fn mistyped_module_option_fails_before_any_job_naming_it() {
    let Some(agent) = lab_ready("mistyped_module_option_fails_before_any_job_naming_it") else {
        return;
    };
    let t = Tmp::new();
    let recipe = format!(
        r#"{TWO_HOSTS}
fn test(m) {{
    let p = ping(#{{ dst: "192.168.133.2", cuont: 3 }});
    m.h1.run(p);
    m.check(true, "after the module");
}}
"#
    );
    let (code, text, v, err) = run_text(&t, &agent, &recipe);
    assert_eq!(code, 1, "{text}\n{err}");
    assert_eq!(v["result"], "ERROR");
    let all = lines(&v);
    assert!(
        all.iter()
            .all(|r| r["job"].is_null() && r["host"].is_null()),
        "a job ran: {all:?}"
    );
    assert_eq!(all.len(), 1, "{all:?}");
    let e = &all[0];
    assert_eq!(e["result"], "ERROR");
    let msg = e["desc"].as_str().unwrap();
    assert!(
        msg.contains("\"cuont\"") && msg.contains("ping") && msg.contains("r.rhai:8:"),
        "{msg}"
    );
    assert!(text.contains("cuont") && !text.contains(" job "), "{text}");
}

#[test]
fn perf_returns_statistics_and_records_every_sample() {
    let Some(agent) = lab_ready("perf_returns_statistics_and_records_every_sample") else {
        return;
    };
    let t = Tmp::new();
    let recipe = format!(
        r#"{TWO_HOSTS}
fn test(m) {{
    m.h1.eth0.up();
    m.h2.eth0.up();
    m.h1.eth0.ip_add("192.168.134.1/24");
    m.h2.eth0.ip_add("192.168.134.2/24");
    let r = perf(#{{ client: m.h1, server: m.h2, dst: "192.168.134.2", duration: 1, runs: 3,
                     len: 1400, cpu: 0 }});
    m.result(true, "returned", #{{ samples: r.samples, mean: r.mean, stddev: r.stddev,
                                   unit: r.unit, keys: r.keys() }});
    perf(#{{ client: m.h1, server: m.h2, dst: "192.168.134.2", duration: 1, runs: 1,
            proto: "udp", desc: "udp at the default rate" }});
}}
"#
    );
    let (code, text, v, err) = run_text(&t, &agent, &recipe);
    assert_eq!(code, 0, "{text}\n{err}");
    // Each run is a job line of its own, with its bps.
    let runs: Vec<f64> = (1..=3)
        .map(|i| {
            let r = line(
                &v,
                &format!("perf tcp 192.168.134.2 (h1 -> h2) len 1400 cpu 0: run {i}/3"),
            );
            assert_eq!((&r["host"], &r["result"]), (&"h1".into(), &"PASS".into()));
            r["data"]["bps"].as_f64().unwrap()
        })
        .collect();
    assert!(runs.iter().all(|b| *b > 0.0), "{runs:?}");
    // One recorded result with every sample, the mean and stddev.
    let rec = line(&v, "perf tcp 192.168.134.2 (h1 -> h2) len 1400 cpu 0");
    assert_eq!(rec["result"], "PASS");
    assert!(rec["job"].is_null());
    let d = &rec["data"];
    let samples: Vec<f64> = d["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(samples, runs, "{d}");
    let mean = runs.iter().sum::<f64>() / 3.0;
    let sd = (runs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
    assert!((d["mean"].as_f64().unwrap() - mean).abs() < 1e-3 * mean);
    assert!((d["stddev"].as_f64().unwrap() - sd).abs() < 1e-3 * mean + 1e-6);
    assert_eq!(d["unit"], "bps");
    // What perf() returned to the recipe is the same.
    let ret = &line(&v, "returned")["data"];
    assert_eq!(ret["samples"], d["samples"]);
    assert_eq!((&ret["mean"], &ret["stddev"]), (&d["mean"], &d["stddev"]));
    assert_eq!(ret["unit"], "bps");
    let mut keys: Vec<&str> = ret["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, ["evaluation", "mean", "samples", "stddev", "unit"]);
    // Judged against the results store's history (RECIPES.md §8).
    assert!(
        ["NO_BASELINE", "PASS", "IMPROVED", "NOISY"]
            .contains(&d["evaluation"]["verdict"].as_str().unwrap()),
        "{d}"
    );
    // The iperf server ran once for all three runs and was stopped.
    let srv = lines(&v)
        .iter()
        .find(|r| r["desc"] == "perf: iperf server on h2")
        .unwrap();
    assert_eq!(srv["data"]["connections"], 3, "{srv}");
    let l = text_line(&text, "perf tcp 192.168.134.2 (h1 -> h2) len 1400 cpu 0  [");
    assert!(l.contains("bit/s ±") && l.contains("over 3 runs"), "{l}");
    // `desc` names the line; the client was pinned and sized as asked.
    assert_eq!(line(&v, "udp at the default rate")["result"], "PASS");
    assert_eq!(
        line(&v, "udp at the default rate: run 1/1")["data"]["proto"],
        "udp"
    );
}

#[test]
fn a_background_module_that_cannot_start_says_why_at_once() {
    let Some(agent) = lab_ready("a_background_module_that_cannot_start_says_why_at_once") else {
        return;
    };
    let t = Tmp::new();
    let recipe = format!(
        r#"{TWO_HOSTS}
fn test(m) {{
    m.h1.run(iperf_server(#{{ port: 5302 }}), #{{ desc: "first server" }});
    try {{
        m.h1.run(iperf_server(#{{ port: 5302 }}), #{{ desc: "same port" }});
    }} catch (e) {{
        m.result(false, "second server", #{{ why: e }});
    }}
    m.h2.run(packet_assert(#{{ iface: "nosuch0" }}), #{{ desc: "no such iface" }});
}}
"#
    );
    let t0 = std::time::Instant::now();
    let (code, text, v, err) = run_text(&t, &agent, &recipe);
    assert_eq!(code, 1, "{text}\n{err}");
    // Both failures are known as soon as the job exits, not after the
    // 10 s readiness timeout.
    assert!(t0.elapsed().as_secs_f64() < 8.0, "{:?}", t0.elapsed());
    let why = line(&v, "second server")["data"]["why"].as_str().unwrap();
    assert!(
        why.contains("exited 1 before it was ready") && why.contains("Address already in use"),
        "{why}"
    );
    assert_eq!(line(&v, "same port")["result"], "FAIL");
    let last = lines(&v).last().unwrap();
    assert_eq!(last["result"], "ERROR");
    let msg = last["desc"].as_str().unwrap();
    assert!(
        msg.contains("before it was ready") && msg.contains("nosuch0"),
        "{msg}"
    );
}
