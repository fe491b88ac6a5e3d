//! `lnst-ctl` end to end: the real binary, the real agent in a real netns
//! lab. Checks the summary JSON, the run directory, the exit code of each
//! error class, and that no namespace or process is left behind.
//!
//! The lab tests need root and the `lnst-agent` binary (beside `lnst-ctl`
//! in the target dir, or `LNST_AGENT_BIN`); without them they print SKIP.
//!
//! This is the controller's one integration-test binary: the test modules
//! live in `ctl/` — `modules_live` (module command lines and parsers in
//! namespaces, without the controller), `modules_lab` (modules through
//! `lnst-ctl run` on the netns lab, checking `data` and the summary) and
//! `vm_lab` (the VM lab: recipes, device kinds and faults in qemu guests),
//! `vm_nics` (the VM lab's emulated NIC models and their ethtool settings),
//! `vm_systemd` (`h.service` on a guest booting systemd),
//! `enrt` (the ENRT suite of `recipes/enrt/`, each on the lab it needs),
//! `imports` (`import` of module files by recipes) and `report_html`
//! (`lnst-ctl report` opened in headless chromium).

mod ctl {
    pub mod chaos;
    pub mod devices_lab;
    pub mod enrt;
    pub mod hostile;
    pub mod imports;
    pub mod interact;
    pub mod modules_lab;
    pub mod modules_live;
    pub mod report_html;
    pub mod shared_pool;
    pub mod store;
    pub mod suites;
    pub mod vm_lab;
    pub mod vm_nics;
    pub mod vm_systemd;
}

#[path = "support/postgres.rs"]
mod pg_support;

#[path = "support/results_store.rs"]
mod results_store;
use results_store::isolate_results_store;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

fn ctl() -> &'static str {
    isolate_results_store();
    env!("CARGO_BIN_EXE_lnst-ctl")
}

static N: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory for one test, removed on drop.
struct Tmp(PathBuf);
impl Tmp {
    fn new() -> Tmp {
        let d = std::env::temp_dir().join(format!(
            "lnst-ctl-it-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn agent_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("LNST_AGENT_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let p = Path::new(ctl()).with_file_name("lnst-agent");
    p.is_file().then_some(p)
}

/// The agent for lab tests, or None after printing why the test skips.
fn lab_ready(test: &str) -> Option<PathBuf> {
    if !nix_is_root() {
        println!("SKIP {test}: the netns lab needs root");
        return None;
    }
    match agent_bin() {
        Some(p) => Some(p),
        None => {
            println!("SKIP {test}: no lnst-agent beside lnst-ctl (cargo build -p lnst-agent) and LNST_AGENT_BIN unset");
            None
        }
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out: Output = Command::new(ctl()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `lnst-ctl run RECIPE --json --out T/runs --agent-bin AGENT [-- PARAMS]`
/// with stdout and stderr piped: run it with `.output()` or `.spawn()`.
fn lab_command(t: &Tmp, agent: &Path, recipe: &Path, params: &[&str]) -> Command {
    let mut c = Command::new(ctl());
    c.arg("run")
        .arg(recipe)
        .arg("--json")
        .arg("--out")
        .arg(t.0.join("runs"))
        .arg("--agent-bin")
        .arg(agent)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !params.is_empty() {
        c.arg("--").args(params);
    }
    c
}

/// Runs a recipe on the lab with `--json`; returns (code, summary, stderr).
fn run_lab(t: &Tmp, agent: &Path, recipe: &Path, params: &[&str]) -> (i32, Value, String) {
    let out = lab_command(t, agent, recipe, params).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}\nstderr: {stderr}"));
    assert_no_leftovers(&v);
    (out.status.code().unwrap_or(-1), v, stderr)
}

/// Nothing of the run's lab is left: no namespace, no record, no agent.
fn assert_no_leftovers(summary: &Value) {
    let Some(id) = summary["lab"].as_str() else {
        return;
    };
    let prefix = format!("lnst-{id}-");
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(!list.contains(&prefix), "namespaces left: {list}");
    assert!(
        !Path::new("/run/lnst/labs").join(id).exists(),
        "lab record left"
    );
    let needle = format!("/run/lnst/labs/{id}/");
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(!cmd.contains(&needle), "process left: {cmd}");
    }
}

fn results(v: &Value) -> Vec<(String, String)> {
    v["matches"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["desc"].as_str().unwrap().to_string(),
                r["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const TWO_HOSTS: &str = r#"//! two hosts
let count = param("count", 2, "how many");
param("peer", (), "a required string");
let h1 = host("h1");
h1.nic("eth0", #{ net: "net1" });
let h2 = host("h2");
h2.nic("eth0", #{ net: "net1" });
fn test(m) { m.check(true, "ok"); }
"#;

#[test]
fn param_errors_exit_2_before_anything_runs() {
    let t = Tmp::new();
    let r = t.write("r.rhai", TWO_HOSTS);
    let r = r.to_str().unwrap();
    // Unknown param: named, with the declared ones listed.
    let (code, _, err) = run(&["run", r, "--", "peer=x", "cuont=3"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("\"cuont\"") && err.contains("count, peer"),
        "{err}"
    );
    // Bad type.
    let (code, _, err) = run(&["run", r, "--", "peer=x", "count=many"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"count\"") && err.contains("int"), "{err}");
    // Missing required.
    let (code, _, err) = run(&["run", r]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("required param \"peer\""), "{err}");
    // Not k=v.
    let (code, _, err) = run(&["run", r, "--", "peer"]);
    assert_eq!(code, 2, "{err}");
    // A recipe that is not there: named once, its cause once (the cause
    // was printed twice, once from the message and once from the chain).
    let gone = t.0.join("gone.rhai");
    let (code, _, err) = run(&["run", gone.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "lnst-ctl: cannot read recipe {}: No such file or directory (os error 2)",
            gone.display()
        )
    );
    // No run directory was made for any of them.
    assert!(!Path::new("lnst-runs").exists() || std::fs::read_dir("lnst-runs").is_ok());
}

#[test]
fn syntax_error_names_file_line_col() {
    let t = Tmp::new();
    let r = t.write(
        "syn.rhai",
        "let h1 = host(\"h1\");\nlet x = (1 + ;\nfn test(m) {}\n",
    );
    let (code, _, err) = run(&["run", r.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("syn.rhai:2:"), "{err}");
    let (code, _, err) = run(&["validate", r.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    // A misspelt function: its file:line, and where the API is listed.
    let r = t.write(
        "typo.rhai",
        "let h1 = host(\"h1\");\nh1.nic_typo(\"eth0\");\nfn test(m) {}\n",
    );
    let (code, _, err) = run(&["validate", r.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("typo.rhai:2:") && err.contains("nic_typo") && err.contains("lnst-ctl api"),
        "{err}"
    );
}

fn pool(t: &Tmp) -> PathBuf {
    t.write(
        "pool/m1.toml",
        "address = \"unix:/nonexistent/lnst-test-agent.sock\"\n[params]\narch = \"x86_64\"\n[[nic]]\nname = \"ens1\"\nnet = \"t1\"\n",
    );
    t.write(
        "pool/m2.toml",
        "address = \"unix:/nonexistent/lnst-test-agent2.sock\"\n[params]\narch = \"x86_64\"\n[[nic]]\nname = \"ens1\"\nnet = \"t2\"\n",
    );
    t.0.join("pool")
}

#[test]
fn mapping_failure_with_a_pool_exits_2_and_explains() {
    let t = Tmp::new();
    let p = pool(&t);
    let r = t.write("r.rhai", TWO_HOSTS);
    let (code, _, err) = run(&[
        "run",
        r.to_str().unwrap(),
        "--pool",
        p.to_str().unwrap(),
        "--",
        "peer=x",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("\"h2\"") && err.contains("must be on network t1"),
        "{err}"
    );
    let (code, out, err) = run(&[
        "validate",
        r.to_str().unwrap(),
        "--pool",
        p.to_str().unwrap(),
        "--",
        "peer=x",
    ]);
    assert_eq!(code, 2, "{out}{err}");
}

#[test]
fn validate_shows_params_requirements_and_mapping() {
    let t = Tmp::new();
    t.write(
        "pool/m1.toml",
        "address = \"unix:/x/a.sock\"\n[[nic]]\nname = \"ens1\"\nnet = \"t1\"\n",
    );
    t.write(
        "pool/m2.toml",
        "address = \"unix:/x/b.sock\"\n[[nic]]\nname = \"ens9\"\nnet = \"t1\"\n",
    );
    let r = t.write("r.rhai", TWO_HOSTS);
    let (code, out, err) = run(&[
        "validate",
        r.to_str().unwrap(),
        "--pool",
        t.0.join("pool").to_str().unwrap(),
        "--",
        "peer=10.0.0.1",
        "count=7",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("two hosts"), "{out}");
    assert!(
        out.contains("count")
            && out.contains("int")
            && out.contains("7")
            && out.contains("how many"),
        "{out}"
    );
    assert!(
        out.contains("peer") && out.contains("(required)") && out.contains("\"10.0.0.1\""),
        "{out}"
    );
    assert!(out.contains("nic eth0 net=net1"), "{out}");
    assert!(out.contains("h2 -> m2 [eth0=ens9]"), "{out}");
}

#[test]
fn unreachable_agent_exits_3() {
    let t = Tmp::new();
    t.write(
        "pool/m1.toml",
        "address = \"unix:/nonexistent/lnst-a.sock\"\n",
    );
    let r = t.write(
        "r.rhai",
        "host(\"h1\");\nfn test(m) { m.check(true, \"x\"); }\n",
    );
    let out = t.0.join("runs");
    let (code, stdout, err) = run(&[
        "run",
        r.to_str().unwrap(),
        "--pool",
        t.0.join("pool").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 3, "{stdout}{err}");
    assert!(
        err.contains("h1") && err.contains("cannot connect"),
        "{err}"
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["result"], "ERROR");
    // The run directory exists with its summary.
    let dir = PathBuf::from(v["run_dir"].as_str().unwrap());
    assert!(dir.join("summary.json").is_file() && dir.join("junit.xml").is_file());
    // pool check says DOWN and exits 3 too.
    let (code, out, _) = run(&[
        "pool",
        "check",
        "--pool",
        t.0.join("pool").to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("DOWN"), "{out}");
}

#[test]
fn api_lists_functions_with_docs() {
    let (code, out, _) = run(&["api"]);
    assert_eq!(code, 0);
    for f in [
        "param(name: string, default)",
        "Host.run(command: string, opts: map) -> Job",
        "Job.wait_output",
        "Device.mtu",
        "Ctx.check",
    ] {
        assert!(out.contains(f), "{f} missing");
    }
}

#[test]
fn help_documents_exit_codes() {
    let (_, out, _) = run(&["run", "--help"]);
    assert!(
        out.contains("130") && out.contains("infrastructure"),
        "{out}"
    );
}

const JOBS: &str = r#"//! jobs on the lab
param("n", 2);
let h1 = host("h1");
h1.nic("eth0", #{ net: "net1" });
let h2 = host("h2");
h2.nic("eth0", #{ net: "net1" });
fn test(m) {
    let j = m.h1.run("ip -br link show eth0; echo out; echo err >&2");
    m.check(j.passed && j.exit_code == 0, "foreground passes");
    m.check(j.stdout.contains("eth0") && j.stdout.contains("out"), "nic named as in the recipe");
    m.check(j.stderr == "err\n", "stderr");
    // The server prints its own ready line: with `echo ready; sleep 30`
    // a SIGINT sent on "ready" can reach dash before it execs sleep; dash
    // catches SIGINT under -c and the exec'd sleep never sees it (39 of
    // 200 on a loaded host; README, Writing recipes).
    let s = m.h2.run("exec perl -e '$|=1; print qq(ready\n); sleep 30'", #{ bg: true, desc: "server" });
    m.check(s.wait_output("^ready", 5), "server ready");
    m.check(!s.finished, "server still running");
    s.kill("SIGINT");
    m.check(s.finished && s.signal == 2, "killed with SIGINT");
    m.h2.run("exit 3", #{ expect_fail: true, desc: "expected failure" });
    let t = m.h1.run("sleep 5", #{ timeout: 0.2, desc: "times out" });
    m.check(!t.passed, "timeout fails");
    let e = m.h1.run("echo $FOO; pwd", #{ env: #{ FOO: "bar" }, cwd: "/tmp", desc: "env and cwd" });
    m.check(e.stdout == "bar\n/tmp\n", "env and cwd applied");
    let js = m.h1.run(`echo '{"a": [1, 2]}'`, #{ json: true });
    m.check(js.result.a[1] == 2, "json result");
    m.h1.run("sleep 30", #{ bg: true, desc: "left running" });
}
"#;

#[test]
fn lab_runs_jobs_and_leaves_nothing() {
    let Some(agent) = lab_ready("lab_runs_jobs_and_leaves_nothing") else {
        return;
    };
    let t = Tmp::new();
    let r = t.write("jobs.rhai", JOBS);
    let (code, v, err) = run_lab(&t, &agent, &r, &[]);
    let res = results(&v);
    assert_eq!(code, 1, "one timeout FAIL expected: {res:?}\n{err}");
    let fails: Vec<_> = res.iter().filter(|(_, r)| r != "PASS").collect();
    assert_eq!(
        fails,
        [&("times out".to_string(), "FAIL".to_string())],
        "{res:?}"
    );
    let m = &v["matches"][0];
    assert_eq!(m["mapping"]["h1"]["nics"]["eth0"], "eth0");
    let left = m["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["desc"] == "left running")
        .unwrap();
    assert!(
        left["note"].as_str().unwrap().contains("still running"),
        "{left}"
    );
    assert_eq!(left["host"], "h2".replace('2', "1"));
    // The run directory.
    let dir = PathBuf::from(v["run_dir"].as_str().unwrap());
    for f in [
        "summary.json",
        "junit.xml",
        "params.json",
        "mapping.json",
        "controller.log",
        "jobs.rhai",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    let out = std::fs::read_to_string(dir.join("jobs/h1-1.stdout")).unwrap();
    assert!(out.contains("out"), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.join("jobs/h1-1.stderr")).unwrap(),
        "err\n"
    );
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<testsuites") && junit.contains("<failure") && junit.contains("times out")
    );
    let params: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("params.json")).unwrap()).unwrap();
    assert_eq!(params["n"], 2);
    assert!(v["rpcs"]["h1"].as_u64().unwrap() > 0);
}

#[test]
fn throw_is_an_error_result_exit_1_and_cleanup_runs() {
    let Some(agent) = lab_ready("throw_is_an_error_result_exit_1_and_cleanup_runs") else {
        return;
    };
    let t = Tmp::new();
    let r = t.write(
        "throw.rhai",
        "let h1 = host(\"h1\");\nfn test(m) {\n    m.h1.run(\"sleep 30\", #{ bg: true });\n    m.check(true, \"before\");\n    throw \"giving up\";\n}\n",
    );
    let (code, v, err) = run_lab(&t, &agent, &r, &[]);
    assert_eq!(code, 1, "{err}");
    let res = results(&v);
    let last = res.last().unwrap();
    assert_eq!(last.1, "ERROR");
    assert!(
        last.0.contains("throw.rhai:5:") && last.0.contains("giving up"),
        "{last:?}"
    );
    assert_eq!(v["result"], "ERROR");
}

#[test]
fn params_demo_recipe_passes() {
    let Some(agent) = lab_ready("params_demo_recipe_passes") else {
        return;
    };
    let t = Tmp::new();
    let r = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes/params_demo.rhai");
    let (code, v, err) = run_lab(
        &t,
        &agent,
        &r,
        &["count=3", "sizes=[1,2,3]", "opts={\"k\":2}", "verbose=true"],
    );
    assert_eq!(code, 0, "{:?}\n{err}", results(&v));
    assert_eq!(v["params"]["sizes"], serde_json::json!([1, 2, 3]));
}

/// Recipes that need device configuration (the agent's netlink layer):
/// until it is there the agent answers "not implemented" and this skips.
#[test]
fn recipes_pass_on_the_lab() {
    let Some(agent) = lab_ready("recipes_pass_on_the_lab") else {
        return;
    };
    // Every recipe in recipes/ runs here with its defaults.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rhai"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    for name in &names {
        let t = Tmp::new();
        let r = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../recipes")
            .join(name);
        let t0 = Instant::now();
        let (code, v, err) = run_lab(&t, &agent, &r, &[]);
        let res = results(&v);
        if res.iter().any(|(d, _)| d.contains("not implemented")) {
            println!("SKIP {name}: this agent build has no device support yet: {res:?}");
            continue;
        }
        assert_eq!(code, 0, "{name}: {res:?}\n{err}");
        println!(
            "{name}: {:.2} s wall, lab {:.1} ms, rpcs {}",
            t0.elapsed().as_secs_f64(),
            v["lab_ms"].as_f64().unwrap_or(0.0),
            v["rpcs"]
        );
    }
}

#[test]
fn ctrl_c_cleans_up_and_exits_130() {
    let Some(agent) = lab_ready("ctrl_c_cleans_up_and_exits_130") else {
        return;
    };
    let t = Tmp::new();
    let r = t.write(
        "long.rhai",
        "let h1 = host(\"h1\");\nh1.nic(\"eth0\");\nfn test(m) {\n    m.h1.run(\"sleep 60\", #{ bg: true });\n    m.h1.run(\"sleep 60\");\n}\n",
    );
    let child = lab_command(&t, &agent, &r, &[]).spawn().unwrap();
    // Wait until the foreground job runs (a sleep process in a lab namespace).
    let deadline = Instant::now() + Duration::from_secs(10);
    let t0 = Instant::now();
    loop {
        let n = Command::new("pgrep")
            .args(["-f", "-P", "0", "sleep 60"])
            .output()
            .map(|o| o.stdout.len())
            .unwrap_or(0);
        let _ = n;
        if t0.elapsed() > Duration::from_millis(800) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe_kill(child.id(), 2);
    let started = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_no_leftovers(&v);
}

fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

#[test]
fn killed_controller_lab_is_cleaned() {
    let Some(agent) = lab_ready("killed_controller_lab_is_cleaned") else {
        return;
    };
    let t = Tmp::new();
    let r = t.write(
        "long.rhai",
        "let h1 = host(\"h1\");\nh1.nic(\"eth0\");\nfn test(m) { m.sleep(60); }\n",
    );
    let out = t.0.join("runs");
    let mut child = Command::new(ctl())
        .args([
            "run",
            r.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--agent-bin",
            agent.to_str().unwrap(),
            "-v",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Find its lab record.
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let found = std::fs::read_dir("/run/lnst/labs").ok().and_then(|rd| {
            rd.flatten().find_map(|e| {
                let owner = std::fs::read_to_string(e.path().join("owner")).ok()?;
                (owner.split_whitespace().next()? == child.id().to_string()
                    && e.path().join("agents").exists())
                .then(|| e.file_name().to_string_lossy().into_owned())
            })
        });
        if let Some(id) = found {
            break id;
        }
        assert!(Instant::now() < deadline, "no lab record appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL: no cleanup by the controller
    child.wait().unwrap();
    // Another test's `run` may clean it first (every run removes labs of
    // dead controllers); otherwise `lab clean` must.
    let left = Path::new("/run/lnst/labs").join(&id).exists();
    let (code, out, err) = run(&["lab", "clean"]);
    assert_eq!(code, 0, "{err}");
    if left && Path::new("/run/lnst/labs").join(&id).exists() {
        panic!("lab clean left {id}: {out}");
    }
    assert_no_leftovers(&serde_json::json!({ "lab": id }));
}

/// Waits for the lab record of controller `pid`; returns (runid, agent pids).
fn lab_of(pid: u32) -> (String, Vec<i32>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = std::fs::read_dir("/run/lnst/labs").ok().and_then(|rd| {
            rd.flatten().find_map(|e| {
                let owner = std::fs::read_to_string(e.path().join("owner")).ok()?;
                if owner.split_whitespace().next()? != pid.to_string() {
                    return None;
                }
                let agents = std::fs::read_to_string(e.path().join("agents")).ok()?;
                let pids: Vec<i32> = agents.lines().filter_map(|l| l.parse().ok()).collect();
                (!pids.is_empty()).then(|| (e.file_name().to_string_lossy().into_owned(), pids))
            })
        });
        if let Some(f) = found {
            return f;
        }
        assert!(Instant::now() < deadline, "no lab record appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn lost_agent_exits_3_naming_the_host_and_others_are_cleaned() {
    let Some(agent) = lab_ready("lost_agent_exits_3_naming_the_host_and_others_are_cleaned") else {
        return;
    };
    let t = Tmp::new();
    let r = t.write(
        "lost.rhai",
        "let h1 = host(\"h1\");\nlet h2 = host(\"h2\");\nfn test(m) {\n    m.h2.run(\"sleep 30\", #{ bg: true });\n    m.h1.run(\"sleep 30\");\n}\n",
    );
    let child = lab_command(&t, &agent, &r, &[]).spawn().unwrap();
    let (_, pids) = lab_of(child.id());
    std::thread::sleep(Duration::from_millis(500));
    unsafe_kill(pids[0] as u32, 9); // h1's agent (hosts in declaration order)
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("lost agent h1"), "{err}");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["result"], "ERROR");
    assert_no_leftovers(&v);
}

/// Losing one agent stops the recipe at once even while it waits on
/// something else (a local `m.sleep`, or a job on another host).
#[test]
fn lost_agent_interrupts_a_sleep_and_a_wait_on_another_host() {
    let Some(agent) = lab_ready("lost_agent_interrupts_a_sleep_and_a_wait_on_another_host") else {
        return;
    };
    for body in [
        "m.h1.run(\"true\");\n    m.sleep(60);",
        "m.h1.run(\"sleep 60\");",
    ] {
        let t = Tmp::new();
        let r = t.write(
            "lost.rhai",
            &format!("host(\"h1\");\nhost(\"h2\");\nfn test(m) {{\n    {body}\n}}\n"),
        );
        let t0 = Instant::now();
        let child = lab_command(&t, &agent, &r, &[]).spawn().unwrap();
        let (_, pids) = lab_of(child.id());
        std::thread::sleep(Duration::from_millis(500));
        unsafe_kill(pids[1] as u32, 9); // h2's agent, idle
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{body}: {err}");
        assert!(err.contains("lost agent h2"), "{body}: {err}");
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{body}: took {:?}",
            t0.elapsed()
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_no_leftovers(&v);
    }
}

/// Pool mode against a real agent on a unix socket in this namespace
/// (jobs only: nothing on the host is changed).
#[test]
fn pool_mode_with_a_real_agent() {
    let Some(agent) = lab_ready("pool_mode_with_a_real_agent") else {
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
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
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
        &format!(
            "address = \"unix:{}\"\n[params]\nrole = \"any\"\n[[nic]]\nname = \"lo\"\n",
            sock.display()
        ),
    );
    let pool = t.0.join("pool");
    let (code, out, err) = run(&["pool", "check", "--pool", pool.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("box") && out.contains("OK"), "{out}");
    let r = t.write(
        "p.rhai",
        "let h = host(\"h\", #{ role: \"any\" });\nh.nic(\"x\");\nfn test(m) {\n    m.check(m.h.machine == \"box\" && m.h.x.name == \"lo\", \"mapped\");\n    m.check(m.h.params.role == \"any\", \"params\");\n    m.h.run(\"echo hi\");\n}\n",
    );
    let runs = t.0.join("runs");
    let (code, out, err) = run(&[
        "run",
        r.to_str().unwrap(),
        "--pool",
        pool.to_str().unwrap(),
        "--json",
        "--out",
        runs.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["matches"][0]["mapping"]["h"]["nics"]["x"], "lo");
    assert_eq!(v["pool"], pool.to_str().unwrap());
}

/// Every member of RECIPES.md §4–§8 used once by one recipe
/// (`fixtures/conformance.rhai`), each followed by an `m.check` of its
/// effect. Only the two lines that are meant to FAIL (a job killed by its
/// timeout, a ping to a downed NIC) may fail; the file the recipe sends
/// to the host is removed again after the run.
#[test]
fn spec_conformance_recipe() {
    let Some(agent) = lab_ready("spec_conformance_recipe") else {
        return;
    };
    let t = Tmp::new();
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conformance.rhai");
    let (code, v, err) = run_lab(&t, &agent, &recipe, &["req=x", "req_n=7"]);
    let results = v["matches"][0]["results"].as_array().unwrap();
    let not_passed: Vec<String> = results
        .iter()
        .filter(|r| r["result"] != "PASS")
        .map(|r| format!("{} {}", r["result"], r["desc"]))
        .collect();
    assert_eq!(
        not_passed,
        vec![
            "\"FAIL\" \"timeout (expected FAIL line)\"".to_string(),
            "\"FAIL\" \"ping 10.9.0.1\"".to_string()
        ],
        "{err}"
    );
    assert!(results.len() >= 50, "{} results", results.len());
    // A device or host in result data is the text print shows.
    let data = &results
        .iter()
        .find(|r| r["desc"] == "objects as result data")
        .expect("objects as result data")["data"];
    assert_eq!(data["dev"], "Device(eth0 on h1)", "{data}");
    assert_eq!(data["host"], "Host(h1 on h1)", "{data}");
    assert_eq!(data["master"], Value::Null, "{data}");
    assert_eq!(code, 1);
    assert!(!Path::new("/tmp/lnst-conformance-copy").exists());
    assert!(
        !Path::new("/tmp/lnst-conformance-undo").exists(),
        "run undo left the file"
    );
    assert!(
        !Path::new("/tmp/lnst-conformance-defer").exists(),
        "h.defer left the file"
    );
    let _ = std::fs::remove_file("/tmp/lnst-conformance-back");
}
