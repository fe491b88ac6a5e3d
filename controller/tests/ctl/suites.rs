//! Issue 13: suites (`lnst-ctl run A B dir/ --jobs N`) and pool machines
//! shared by several runs. The pool machines are real agents, each in a
//! network namespace of the test's own, on unix sockets; their own logs
//! (`controller connected` / `session ended`) show which sessions they
//! served and when. Lock files go to the test's directory
//! (`LNST_LOCK_DIR`), so nothing is left on the host.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::Value;

use crate::{ctl, lab_ready, Tmp};

/// A namespace of the test's own, deleted on drop.
pub struct Ns(pub String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// One pool machine: an agent in its own namespace, logging to a file.
pub struct Machine {
    pub id: String,
    pub sock: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    _ns: Ns,
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

static NS_N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Starts `n` agents (`m1`..`mN`) in namespaces and writes a pool
/// directory `T/pool` for them (no NICs; `role = "any"`).
pub fn pool_of_agents(t: &Tmp, agent: &Path, n: usize) -> (PathBuf, Vec<Machine>) {
    let mut machines = Vec::new();
    for i in 1..=n {
        let id = format!("m{i}");
        let ns = format!(
            "lnsttest-{}-s{}",
            std::process::id(),
            NS_N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {ns}");
        let ns = Ns(ns);
        let sock = t.0.join(format!("{id}.sock"));
        let log = t.0.join(format!("{id}.log"));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(agent)
            .arg("--unix")
            .arg(&sock)
            .arg("--state-dir")
            .arg(t.0.join(format!("{id}.state")))
            .arg("-v")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("READY"), "agent {id}: {line}");
        t.write(
            &format!("pool/{id}.toml"),
            &format!(
                "address = \"unix:{}\"\n[params]\nrole = \"any\"\n",
                sock.display()
            ),
        );
        machines.push(Machine {
            id,
            sock,
            log,
            child: Some(child),
            _ns: ns,
        });
    }
    (t.0.join("pool"), machines)
}

/// `(session start, session end)` in the agent's log order: each
/// `controller connected` must be followed by its `session ended` before
/// the next one starts. Returns the number of sessions served.
pub fn sessions_never_overlap(m: &Machine) -> usize {
    let log = std::fs::read_to_string(&m.log).unwrap();
    let mut open = false;
    let mut n = 0;
    for l in log.lines() {
        if l.contains("controller connected") {
            assert!(!open, "{}: two sessions at once:\n{log}", m.id);
            open = true;
            n += 1;
        } else if l.contains("session ended") {
            assert!(open, "{}: a session ended that never started:\n{log}", m.id);
            open = false;
        }
    }
    assert!(!open, "{}: a session never ended:\n{log}", m.id);
    n
}

fn ctl_cmd(t: &Tmp) -> Command {
    let mut c = Command::new(ctl());
    c.env("LNST_LOCK_DIR", t.0.join("locks"))
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[test]
fn suite_of_every_recipe_with_two_jobs() {
    let Some(agent) = lab_ready("suite_of_every_recipe_with_two_jobs") else {
        return;
    };
    let t = Tmp::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rhai"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    let runs = t.0.join("runs");
    let t0 = Instant::now();
    let out = ctl_cmd(&t)
        .arg("run")
        .args(&names)
        .args(["--jobs", "2", "--json", "--agent-bin"])
        .arg(&agent)
        .arg("--out")
        .arg(&runs)
        .output()
        .unwrap();
    let wall = t0.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}\nstderr: {stderr}"));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(v["suite"], true);
    assert_eq!(v["result"], "PASS");
    let recipes = v["recipes"].as_array().unwrap();
    assert_eq!(recipes.len(), names.len());
    // One suite directory holding everything: one JUnit file with one
    // testsuite per recipe, each recipe's own run directory inside.
    let suite_dirs: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(suite_dirs.len(), 1, "{suite_dirs:?}");
    let sd = &suite_dirs[0];
    assert_eq!(v["run_dir"], sd.to_str().unwrap());
    let junit = std::fs::read_to_string(sd.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testsuite ").count(), names.len(), "{junit}");
    assert!(junit.contains("failures=\"0\" errors=\"0\""), "{junit}");
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(sd.join("summary.json")).unwrap()).unwrap();
    assert_eq!(on_disk["recipes"].as_array().unwrap().len(), names.len());
    let mut labs = std::collections::BTreeSet::new();
    let mut sum = 0.0;
    for (r, name) in recipes.iter().zip(&names) {
        let file = name.file_name().unwrap().to_str().unwrap();
        assert_eq!(r["recipe"], file);
        assert_eq!(r["result"], "PASS", "{r}");
        let rd = PathBuf::from(r["report"]["run_dir"].as_str().unwrap());
        assert_eq!(rd.parent(), Some(sd.as_path()), "{rd:?}");
        assert!(rd.join("summary.json").is_file() && rd.join("junit.xml").is_file());
        let lab = r["report"]["lab"].as_str().unwrap().to_string();
        assert!(labs.insert(lab.clone()), "lab id {lab} used twice");
        sum += r["duration"].as_f64().unwrap();
    }
    // Two at a time: the suite took clearly less than the recipes one
    // after the other.
    assert!(
        wall < 0.85 * sum,
        "--jobs 2 ran serially? wall {wall:.1} s, recipes {sum:.1} s"
    );
    // Nothing left: no namespace and no record of any of the labs, no agent.
    let ns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    for lab in &labs {
        assert!(!ns.contains(&format!("lnst-{lab}-")), "{lab} left: {ns}");
        assert!(
            !Path::new("/run/lnst/labs").join(lab).exists(),
            "{lab} record left"
        );
    }
    let ps = String::from_utf8_lossy(
        &Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        !ps.lines()
            .any(|l| l.contains(agent.to_str().unwrap()) && l.contains(sd.to_str().unwrap())),
        "agents left:\n{ps}"
    );
    // Plain progress lines on stderr (not a terminal): what runs, what waits.
    assert!(stderr.contains("suite [0/"), "{stderr}");
    assert!(stderr.contains("waiting: "), "{stderr}");
    println!(
        "suite of {} recipes, --jobs 2: {wall:.1} s wall, {sum:.1} s of recipes",
        names.len()
    );
}

#[test]
fn suite_params_go_to_the_recipes_that_declare_them() {
    let Some(agent) = lab_ready("suite_params_go_to_the_recipes_that_declare_them") else {
        return;
    };
    let t = Tmp::new();
    let a = t.write(
        "s/a.rhai",
        "let mtu = param(\"mtu\", 1500);\nhost(\"h1\");\nfn test(m) { m.check(m.params.mtu == 1400, `mtu ${m.params.mtu}`); }\n",
    );
    t.write(
        "s/b.rhai",
        "param(\"count\", 5);\nhost(\"h1\");\nfn test(m) { m.check(m.params.count == 2, `count ${m.params.count}`); }\n",
    );
    let bad = t.write("bad.rhai", "host(\"h1\");\nlet x = (1 + ;\nfn test(m) {}\n");
    let runs = t.0.join("runs");
    let run = |args: &[&str], extra: &[&Path]| {
        let out = ctl_cmd(&t)
            .arg("run")
            .args(extra)
            .arg("--agent-bin")
            .arg(&agent)
            .arg("--out")
            .arg(&runs)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let sdir = t.0.join("s");
    // A directory is a suite; each recipe gets its own params.
    let (code, out, err) = run(&["--", "mtu=1400", "count=2"], &[&sdir]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("PASS  a.rhai") && out.contains("PASS  b.rhai"),
        "{out}"
    );
    assert!(out.contains("suite: PASS (exit 0): 2 PASS"), "{out}");
    // A param no recipe declares: exit 2 before anything runs.
    let (code, out, err) = run(&["--", "mtu=1400", "size=3"], &[&sdir]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("\"size\" is declared by no recipe") && err.contains("count, mtu"),
        "{err}"
    );
    // The worst exit status wins: a FAIL (1) and a syntax error (2) → 2;
    // the others still ran and are in the summary.
    let (code, out, err) = run(&["--json", "--", "mtu=9000"], &[&a, &bad]);
    assert_eq!(code, 2, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["recipes"][0]["result"], "FAIL");
    assert_eq!(v["recipes"][0]["exit"], 1);
    assert_eq!(v["recipes"][1]["result"], "ERROR");
    assert_eq!(v["recipes"][1]["exit"], 2);
    assert!(
        v["recipes"][1]["error"]
            .as_str()
            .unwrap()
            .contains("bad.rhai:2"),
        "{v}"
    );
    assert_eq!(v["exit"], 2);
}

/// Two `lnst-ctl` at once, each needing both machines of a 2-machine
/// pool: the second waits (and says for what) instead of failing on a
/// busy agent, both pass, and no agent ever served two sessions at once.
#[test]
fn two_controllers_never_share_a_pool_machine() {
    let Some(agent) = lab_ready("two_controllers_never_share_a_pool_machine") else {
        return;
    };
    let t = Tmp::new();
    let (pool, machines) = pool_of_agents(&t, &agent, 2);
    let r = t.write(
        "two.rhai",
        "host(\"h1\", #{ role: \"any\" });\nhost(\"h2\", #{ role: \"any\" });\nfn test(m) {\n    m.h1.run(\"sleep 1\");\n    m.h2.run(\"true\");\n}\n",
    );
    let spawn = |n: usize| {
        ctl_cmd(&t)
            .arg("run")
            .arg(&r)
            .arg("--pool")
            .arg(&pool)
            .arg("--json")
            .arg("--out")
            .arg(t.0.join(format!("runs{n}")))
            .spawn()
            .unwrap()
    };
    let a = spawn(1);
    let b = spawn(2);
    let oa = a.wait_with_output().unwrap();
    let ob = b.wait_with_output().unwrap();
    let err = format!(
        "{}\n{}",
        String::from_utf8_lossy(&oa.stderr),
        String::from_utf8_lossy(&ob.stderr)
    );
    assert_eq!(oa.status.code(), Some(0), "{err}");
    assert_eq!(ob.status.code(), Some(0), "{err}");
    assert!(
        err.contains("two.rhai: waiting for pool machines m1, m2")
            && err.contains("is held by pid"),
        "{err}"
    );
    for m in &machines {
        assert_eq!(sessions_never_overlap(m), 2, "{}", m.id);
    }
}

/// A suite with `--jobs 2` of two 1-host recipes on a 2-machine pool:
/// each takes a different machine (the mapper picks the free one) and
/// they run at the same time.
#[test]
fn suite_jobs_on_a_pool_take_different_free_machines() {
    let Some(agent) = lab_ready("suite_jobs_on_a_pool_take_different_free_machines") else {
        return;
    };
    let t = Tmp::new();
    let (pool, machines) = pool_of_agents(&t, &agent, 2);
    let one = "host(\"h\", #{ role: \"any\" });\nfn test(m) { m.h.run(\"sleep 1.5\"); }\n";
    let a = t.write("s/a.rhai", one);
    let b = t.write("s/b.rhai", one);
    let t0 = Instant::now();
    let out = ctl_cmd(&t)
        .arg("run")
        .arg(&a)
        .arg(&b)
        .args(["--jobs", "2", "--json", "--pool"])
        .arg(&pool)
        .arg("--out")
        .arg(t.0.join("runs"))
        .output()
        .unwrap();
    let wall = t0.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let machine = |i: usize| {
        v["recipes"][i]["report"]["matches"][0]["mapping"]["h"]["machine"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_ne!(machine(0), machine(1), "{v}");
    assert!(
        wall < 3.0,
        "the two 1.5 s recipes did not run at once: {wall:.1} s"
    );
    assert!(!stderr.contains("waiting for pool"), "{stderr}");
    for m in &machines {
        assert_eq!(sessions_never_overlap(m), 1, "{}", m.id);
    }
}
