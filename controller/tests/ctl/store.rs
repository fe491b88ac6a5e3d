//! The results store end to end: `lnst-ctl run` on the netns lab records
//! into a scratch `--db` (SQLite, checked from outside with rusqlite; and
//! the real test PostgreSQL, checked with psql), `perf()` returns its
//! evaluation, `history`, `compare` and `import` read it back, and a store
//! that cannot be used is a warning that changes nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::pg_support::TestPostgres;
use crate::{ctl, lab_ready, run, Tmp};

fn recipes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes")
}

/// `lnst-ctl run RECIPE --json --db DB` with a baseline config that makes
/// the verdict deterministic on a loaded machine (no spread limit, an
/// unreachable z): the path is exercised, the figures cannot flake.
fn run_db(t: &Tmp, agent: &Path, recipe: &Path, db: &str, params: &[&str]) -> (i32, Value, String) {
    let cfg = t.write(
        "baseline.toml",
        "z = 1000.0\nmin_baseline = 2\n[metric.bps]\nmax_cv = 0.0\n",
    );
    let out = Command::new(ctl())
        .arg("run")
        .arg(recipe)
        .args(["--json", "--db", db, "--out"])
        .arg(t.0.join("runs"))
        .arg("--agent-bin")
        .arg(agent)
        .env("LNST_BASELINE_CONFIG", &cfg)
        .arg("--")
        .args(params)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}\nstderr: {stderr}"));
    (out.status.code().unwrap_or(-1), v, stderr)
}

fn perf_line(v: &Value) -> &Value {
    v["matches"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["data"]["unit"] == "bps")
        .expect("a perf line")
}

#[test]
fn runs_are_recorded_and_history_compare_import_read_them() {
    let Some(agent) = lab_ready("runs_are_recorded_and_history_compare_import_read_them") else {
        return;
    };
    let t = Tmp::new();
    let db = t.0.join("results.db");
    let dbs = db.to_str().unwrap();
    let recipe = recipes().join("perf_demo.rhai");
    let mut dirs = Vec::new();
    for i in 0..3 {
        let (code, v, err) = run_db(&t, &agent, &recipe, dbs, &["duration=1", "runs=2"]);
        assert_eq!(code, 0, "{v}\n{err}");
        assert!(!err.contains("warning"), "{err}");
        let e = &perf_line(&v)["data"]["evaluation"];
        // Baselines need 2 valid runs (the config above).
        let want = if i < 2 { "NO_BASELINE" } else { "PASS" };
        assert_eq!(e["verdict"], want, "run {i}: {e}");
        assert_eq!(e["baseline_n"], i.min(2), "run {i}: {e}");
        let dir = PathBuf::from(v["run_dir"].as_str().unwrap());
        let env: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("environment.json")).unwrap())
                .unwrap();
        let nic = &env["h1"]["nics"]["eth0"];
        assert_eq!(nic["driver"], "veth", "{env}");
        assert_eq!(nic["speed_mbps"], 10000, "{env}");
        assert_eq!(nic["mtu"], 1500, "{env}");
        assert!(nic["features"].as_object().unwrap().len() > 10, "{env}");
        assert!(!env["h2"]["kernel"].as_str().unwrap().is_empty(), "{env}");
        assert!(env["h2"]["cpus"].as_u64().unwrap() >= 1, "{env}");
        dirs.push(dir);
    }
    // From outside: the SQLite file itself.
    let c = rusqlite::Connection::open(&db).unwrap();
    let q = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(q("SELECT COUNT(*) FROM runs"), 3);
    assert_eq!(q("SELECT COUNT(*) FROM runs WHERE recipe = 'perf_demo.rhai' AND result = 'PASS' AND imported = 0"), 3);
    assert_eq!(
        q("SELECT COUNT(*) FROM measurements WHERE n = 2 AND valid = 1"),
        3
    );
    assert_eq!(q("SELECT COUNT(*) FROM series"), 1);
    assert_eq!(q("SELECT COUNT(*) FROM environments WHERE kernel <> ''"), 6);
    let results: i64 = q("SELECT COUNT(*) FROM results");
    assert!(results >= 3 * 4, "{results}");
    let dir0: String = c
        .query_row("SELECT run_dir FROM runs WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(Path::new(&dir0), dirs[0].canonicalize().unwrap());

    // history
    let (code, out, err) = run(&["history", "perf_demo.rhai", "--db", dbs, "--json"]);
    assert_eq!(code, 0, "{err}");
    let h: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(h["total_runs"], 3);
    assert_eq!(h["runs"][0]["id"], 3, "newest first");
    assert_eq!(h["trends"][0]["points"].as_array().unwrap().len(), 3);
    assert_eq!(
        h["trends"][0]["key"]["role"],
        "h1->h2 [h1: veth@10000; h2: veth@10000]"
    );
    let (code, out, _) = run(&["history", "--db", dbs]);
    assert_eq!(code, 0);
    assert!(out.starts_with("3 runs in "), "{out}");
    let (_, out, _) = run(&["history", "recipes/perf_demo.rhai", "--db", dbs]);
    assert!(
        out.contains("trends") && out.contains("perf tcp 192.168.102.2 (h1 -> h2) · bps"),
        "{out}"
    );

    // compare: by id and by directory
    let out = Command::new(ctl())
        .args([
            "compare",
            "1",
            dirs[2].to_str().unwrap(),
            "--db",
            dbs,
            "--json",
        ])
        .env("LNST_BASELINE_CONFIG", t.0.join("baseline.toml"))
        .output()
        .unwrap();
    let code = out.status.code();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let cmp: Value = serde_json::from_str(&out).unwrap();
    // Two live iperf runs may or may not differ beyond noise; the exit
    // status must say which the output says.
    let differ = cmp["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["beyond_noise"] == true)
        || !cmp["results_differ"].as_array().unwrap().is_empty();
    assert_eq!(code, Some(differ as i32), "{cmp}\n{err}");
    let m = &cmp["measurements"][0];
    assert_eq!(m["metric"], "bps");
    assert!(
        m["a"].as_f64().unwrap() > 0.0 && m["b"].as_f64().unwrap() > 0.0,
        "{cmp}"
    );
    assert!(
        m["how"].as_str().unwrap().contains("2-run baseline"),
        "run 3's own baseline: runs 1 and 2: {cmp}"
    );
    assert!(
        cmp["environment"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().unwrap().contains("mac")),
        "the lab's veths get new MACs each run: {cmp}"
    );
    let (code, _, err) = run(&["compare", "1", "77", "--db", dbs]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no run 77"), "{err}");
    // compare's exit status, `diff`'s, on two copies of run 1's directory
    // with set samples (live ones spread too much to be sure of a verdict):
    // the same samples, 0; every sample doubled, 1. Neither copy is
    // recorded, so it is Welch's t on the samples.
    let with_samples = |name: &str, samples: [f64; 2]| -> String {
        let d = t.0.join(name);
        assert!(Command::new("cp")
            .args(["-a", &dir0, d.to_str().unwrap()])
            .status()
            .unwrap()
            .success());
        let p = d.join("summary.json");
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let mut n = 0;
        for r in v["matches"][0]["results"].as_array_mut().unwrap() {
            if r["data"]["samples"].is_array() {
                r["data"]["samples"] = samples.to_vec().into();
                n += 1;
            }
        }
        assert_eq!(n, 1, "one perf() line: {v}");
        std::fs::write(&p, v.to_string()).unwrap();
        d.to_str().unwrap().to_string()
    };
    let base = with_samples("base", [10.0e9, 10.2e9]);
    let same = with_samples("same", [10.0e9, 10.2e9]);
    let doubled = with_samples("doubled", [20.0e9, 20.4e9]);
    let (code, out, err) = run(&["compare", &base, &same, "--db", dbs]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("within noise"), "{out}");
    let (code, out, err) = run(&["compare", &base, &doubled, "--db", dbs]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("+100.0%") && out.contains("BEYOND NOISE"),
        "{out}"
    );

    // report: run 3 by its id, its measurement drawn over the two runs
    // before it (one point each) with the baseline band they make; the
    // recipe's history page from the store.
    let page = t.0.join("r3.html");
    let out = Command::new(ctl())
        .args(["report", "3", "--db", dbs, "-o", page.to_str().unwrap()])
        .env("LNST_BASELINE_CONFIG", t.0.join("baseline.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("class=\"point\"").count(), 2, "{html}");
    assert!(html.contains("class=\"band\""), "{html}");
    let (code, _, err) = run(&["report", "77", "--db", dbs]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("not a run directory") && err.contains("no run 77"),
        "{err}"
    );
    let page = t.0.join("h.html");
    let (code, _, err) = run(&[
        "report",
        "--history",
        "perf_demo",
        "--db",
        dbs,
        "-o",
        page.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("results store"), "{html}");

    // import: an older copy of a run directory is a new run; a directory
    // recorded already is not recorded twice; a non-run directory is an
    // error naming it.
    let copy = t.0.join("old").join(dirs[0].file_name().unwrap());
    std::fs::create_dir_all(&copy).unwrap();
    for f in [
        "summary.json",
        "params.json",
        "mapping.json",
        "perf_demo.rhai",
    ] {
        std::fs::copy(dirs[0].join(f), copy.join(f)).unwrap();
    }
    let (code, out, err) = run(&[
        "import",
        copy.to_str().unwrap(),
        dirs[1].to_str().unwrap(),
        "--db",
        dbs,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("as run 4") && out.contains("already recorded as run 2"),
        "{out}"
    );
    let (code, _, err) = run(&["import", t.0.join("runs").to_str().unwrap(), "--db", dbs]);
    assert_eq!(code, 2);
    assert!(err.contains("not a run directory"), "{err}");
    assert_eq!(q("SELECT COUNT(*) FROM runs"), 4);
    assert_eq!(q("SELECT COUNT(*) FROM runs WHERE imported = 1"), 1);
}

#[test]
fn a_store_that_cannot_be_used_is_a_warning_and_nothing_else() {
    let Some(agent) = lab_ready("a_store_that_cannot_be_used_is_a_warning_and_nothing_else") else {
        return;
    };
    let t = Tmp::new();
    let recipe = t.write(
        "one.rhai",
        "let h1 = host(\"h1\");\nfn test(m) { m.check(true, \"fine\"); }\n",
    );
    let junk = t.write("corrupt.db", &"not a database ".repeat(400));
    for db in [
        junk.to_str().unwrap().to_string(),
        "postgresql://lnst@%2Fnonexistent-lnst-pg/lnst".to_string(),
    ] {
        let (code, v, err) = run_db(&t, &agent, &recipe, &db, &[]);
        assert_eq!(code, 0, "{db}: {v}\n{err}");
        assert_eq!(v["result"], "PASS");
        assert!(
            err.contains("warning") && err.contains("the run goes on without the results store"),
            "{err}"
        );
        let dir = PathBuf::from(v["run_dir"].as_str().unwrap());
        assert!(dir.join("summary.json").is_file() && dir.join("environment.json").is_file());
    }
    assert_eq!(
        std::fs::read_to_string(&junk).unwrap(),
        "not a database ".repeat(400),
        "untouched"
    );
    // Reading commands given a store that is not there (a mistyped --db):
    // exit 2 naming it, and no empty store made at that path.
    let typo = t.0.join("resluts.db");
    for args in [
        vec!["history"],
        vec!["compare", "1", "2"],
        vec!["report", "1"],
    ] {
        let mut a = args.clone();
        a.extend(["--db", typo.to_str().unwrap()]);
        let (code, _, err) = run(&a);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(&typo.display().to_string()) || err.contains("does not exist"),
            "{args:?}: {err}"
        );
        assert!(!typo.exists(), "{args:?} made {}", typo.display());
    }
    // Failing check → exit 1 as ever, recorded store or not.
    let failing = t.write(
        "fail.rhai",
        "let h1 = host(\"h1\");\nfn test(m) { m.check(false, \"no\"); }\n",
    );
    let (code, _, _) = run_db(&t, &agent, &failing, junk.to_str().unwrap(), &[]);
    assert_eq!(code, 1);
}

#[test]
fn runs_record_into_postgresql() {
    let Some(agent) = lab_ready("runs_record_into_postgresql") else {
        return;
    };
    let Some(pg) = TestPostgres::get() else {
        return;
    };
    let t = Tmp::new();
    let url = pg.new_db();
    let name = url.rsplit('/').next().unwrap().to_string();
    let recipe = recipes().join("perf_demo.rhai");
    for _ in 0..2 {
        let (code, v, err) = run_db(&t, &agent, &recipe, &url, &["duration=1", "runs=2"]);
        assert_eq!(code, 0, "{v}\n{err}");
        assert!(!err.contains("warning"), "{err}");
    }
    assert_eq!(pg.psql(&name, "SELECT COUNT(*) FROM runs"), "2");
    assert_eq!(
        pg.psql(&name, "SELECT COUNT(*) FROM measurements WHERE n = 2"),
        "2"
    );
    assert_eq!(
        pg.psql(
            &name,
            "SELECT DISTINCT h.env::json->'nics'->'eth0'->>'driver' FROM environments e JOIN host_envs h ON h.hash = e.env_hash"
        ),
        "veth"
    );
    let (code, out, err) = run(&["history", "perf_demo.rhai", "--db", &url]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("2 runs of perf_demo.rhai"), "{out}");
    let (code, out, err) = run(&["compare", "1", "2", "--db", &url]);
    assert!(code == 0 || code == 1, "{err}");
    assert!(
        out.contains("perf tcp 192.168.102.2 (h1 -> h2) · bps"),
        "{out}"
    );
}

/// `--all-matches` on a pool: each match puts the hosts on other machines,
/// and `environment.json` and the store keep each match's environments
/// (the series keys take each match's hardware from its own).
#[test]
fn every_match_keeps_its_own_environment() {
    let Some(agent) = lab_ready("every_match_keeps_its_own_environment") else {
        return;
    };
    let t = Tmp::new();
    let (pool, _machines) = crate::ctl::suites::pool_of_agents(&t, &agent, 2);
    let r = t.write(
        "two.rhai",
        "host(\"h1\", #{ role: \"any\" });\nhost(\"h2\", #{ role: \"any\" });\nfn test(m) { m.check(m.h1.machine != m.h2.machine, \"two machines\"); }\n",
    );
    let db = t.0.join("results.db");
    let out = Command::new(ctl())
        .arg("run")
        .arg(&r)
        .args(["--all-matches", "--json", "--pool"])
        .arg(&pool)
        .args(["--db", db.to_str().unwrap(), "--out"])
        .arg(t.0.join("runs"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let matches = v["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 2, "{v}");
    let mapped: Vec<&str> = matches
        .iter()
        .map(|m| m["mapping"]["h1"]["machine"].as_str().unwrap())
        .collect();
    assert_ne!(mapped[0], mapped[1], "{v}");
    let dir = PathBuf::from(v["run_dir"].as_str().unwrap());
    let env: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("environment.json")).unwrap())
            .unwrap();
    let per_match = env.as_array().expect("an array, one entry per match");
    let in_file: Vec<&str> = per_match
        .iter()
        .map(|e| e["h1"]["machine"].as_str().unwrap())
        .collect();
    assert_eq!(in_file, mapped, "{env}");
    // From outside: the SQLite file.
    let c = rusqlite::Connection::open(&db).unwrap();
    let mut st = c
        .prepare("SELECT match_idx, machine FROM environments WHERE host = 'h1' ORDER BY match_idx")
        .unwrap();
    let rows: Vec<(i64, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        [(0, mapped[0].to_string()), (1, mapped[1].to_string())]
    );
    // The report's environment table names each match's machine.
    let page = t.0.join("r.html");
    let (code, _, err) = run(&[
        "report",
        dir.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    for (i, m) in mapped.iter().enumerate() {
        let row = format!("<tr><td>h1 (match {})</td><td>{m}</td>", i + 1);
        assert!(html.contains(&row), "{row} not in the page");
    }
}
