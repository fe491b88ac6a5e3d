//! The store's tests, each run against the embedded SQLite file and the
//! real throwaway PostgreSQL (`tests/support/postgres.rs`; SKIP without
//! it unless `LNST_REQUIRE_PG=1`).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;
use crate::db::test_pg::TestPostgres;

/// A scratch directory removed at drop.
pub struct Tmp(pub PathBuf);
impl Tmp {
    pub fn new(tag: &str) -> Tmp {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "lnst-store-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A run directory as `run` leaves it: a perf line with `samples`, a
/// ping job, a check; started at `t` (Unix seconds).
pub fn fake_run_dir(base: &Path, t: u64, bps: &[f64], check_ok: bool) -> PathBuf {
    let dir = base.join(format!("{}-perf_demo", crate::report::rundir::stamp(t)));
    std::fs::create_dir_all(&dir).unwrap();
    let mean = bps.iter().sum::<f64>() / bps.len().max(1) as f64;
    let summary = json!({
        "recipe": "perf_demo.rhai", "params": {"runs": bps.len(), "duration": 1},
        "result": if check_ok { "PASS" } else { "FAIL" }, "pool": "netns lab", "duration": 3.5,
        "matches": [{
            "mapping": {"h1": {"machine": "h1", "nics": {"eth0": "eth0"}},
                        "h2": {"machine": "h2", "nics": {"eth0": "eth0"}}},
            "result": "PASS", "duration": 3.0,
            "results": [
                {"host": "h1", "job": 1, "desc": "ping 192.168.102.2", "result": "PASS", "at": 0.1,
                 "data": {"sent": 3, "received": 3, "loss": 0.0, "rtt_avg": 0.05, "rtt_min": 0.04}},
                {"host": "h1", "job": 3, "desc": "perf tcp 192.168.102.2 (h1 -> h2): run 1/2", "result": "PASS", "at": 1.0,
                 "data": {"bps": bps[0], "cpu_local": 20.0}},
                {"host": null, "job": null, "desc": "perf tcp 192.168.102.2 (h1 -> h2)", "result": "PASS", "at": 2.0,
                 "data": {"samples": bps, "mean": mean, "stddev": 0.0, "unit": "bps", "client": "h1", "server": "h2",
                          "evaluation": {"verdict": "NO_BASELINE", "change_pct": null, "baseline_n": 0}}},
                {"host": null, "job": null, "desc": "every run measured", "result": if check_ok { "PASS" } else { "FAIL" }, "at": 2.5}
            ]
        }]
    });
    std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
    std::fs::write(
        dir.join("params.json"),
        json!({"runs": bps.len(), "duration": 1}).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("mapping.json"),
        json!([summary["matches"][0]["mapping"]]).to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("perf_demo.rhai"), "// recipe\n").unwrap();
    let env = json!({
        "h1": {"machine": "h1", "kernel": "6.18.0", "cmdline": "ro", "cpu_model": "X", "cpus": 2,
               "nics": {"eth0": {"ifname": "eth0", "driver": "veth", "driver_version": "1.0", "firmware": "",
                                 "bus": "", "speed_mbps": 10000, "mtu": 1500, "mac": "02:00:00:00:00:01",
                                 "features": {"generic-receive-offload": true}}}},
        "h2": {"machine": "h2", "kernel": "6.18.0", "cmdline": "ro", "cpu_model": "X", "cpus": 2,
               "nics": {"eth0": {"ifname": "eth0", "driver": "veth", "driver_version": "1.0", "firmware": "",
                                 "bus": "", "speed_mbps": 10000, "mtu": 1500, "mac": "02:00:00:00:00:02",
                                 "features": {"generic-receive-offload": false}}}}
    });
    std::fs::write(dir.join("environment.json"), env.to_string()).unwrap();
    dir
}

/// Both backends: the SQLite file in `tmp`, and a fresh PostgreSQL
/// database when the test server is there.
fn targets(tmp: &Tmp) -> Vec<DbTarget> {
    let mut v = vec![DbTarget::Sqlite(tmp.0.join("results.db"))];
    if let Some(pg) = TestPostgres::get() {
        v.push(DbTarget::Postgres(pg.new_db()));
    }
    v
}

#[test]
fn records_a_run_directory_and_reads_it_back() {
    let tmp = Tmp::new("rec");
    for target in targets(&tmp) {
        let mut s = Store::open(&target).unwrap();
        assert_eq!(s.found_version, 0);
        assert_eq!(s.schema_version().unwrap(), migrate::LATEST);
        let dir = fake_run_dir(&tmp.0, 1_700_000_000, &[9.5e9, 9.7e9], true);
        let (id, new) = s.import(&dir).unwrap();
        assert!(new);
        // The same directory again is the same run.
        assert_eq!(s.import(&dir).unwrap(), (id, false));
        assert_eq!(s.count_runs(None).unwrap(), 1, "{target}");
        let r = s.resolve_run(&id.to_string()).unwrap();
        assert_eq!(r.recipe, "perf_demo.rhai");
        assert_eq!(r.started, "2023-11-14T22:13:20Z");
        assert_eq!(r.params, r#"{"duration":1,"runs":2}"#);
        assert_eq!(r.recipe_hash, record::sha256_hex(b"// recipe\n"));
        assert!(r.imported);
        assert_eq!(s.resolve_run(dir.to_str().unwrap()).unwrap().id, id);
        assert!(matches!(
            s.resolve_run("999"),
            Err(StoreError::NoSuchRun { .. })
        ));
        let res = s.results(id).unwrap();
        assert_eq!(res.len(), 4);
        assert_eq!(res[2].desc, "perf tcp 192.168.102.2 (h1 -> h2)");
        assert_eq!(res[0].data["rtt_avg"], 0.05);
        let ms = s.measurements(id).unwrap();
        let metrics: Vec<(&str, &str)> = ms
            .iter()
            .map(|m| (m.key.measurement.as_str(), m.key.metric.as_str()))
            .collect();
        assert_eq!(
            metrics,
            [
                ("ping 192.168.102.2", "loss"),
                ("ping 192.168.102.2", "rtt_avg"),
                ("perf tcp 192.168.102.2 (h1 -> h2)", "bps")
            ],
            "the perf run lines are not measurements of their own"
        );
        let perf = &ms[2];
        assert_eq!(perf.samples, [9.5e9, 9.7e9]);
        assert_eq!(perf.key.role, "h1->h2 [h1: veth@10000; h2: veth@10000]");
        assert!(perf.valid);
        let env = s.environment(id).unwrap();
        assert_eq!(env["h2"].nics["eth0"].mac, "02:00:00:00:00:02");
        // A second run on the same hosts stores no new environment.
        let d2 = fake_run_dir(&tmp.0, 1_700_000_100, &[9.5e9, 9.7e9], true);
        let (id2, _) = s.import(&d2).unwrap();
        assert_eq!(s.environment(id2).unwrap(), env);
        let n = s.db.query("SELECT COUNT(*) FROM host_envs", &[]).unwrap();
        assert_eq!(n[0][0].i64(), Some(2), "{target}");
        let h = s.series_history(&perf.key, 100).unwrap();
        assert_eq!(h.unit, "bps");
        assert_eq!(h.points.len(), 2);
        assert_eq!(h.points[0].run_id, id.to_string());
        assert!(h.baseline.is_none());
    }
}

#[test]
fn series_history_finds_the_step_and_the_baseline_after_it() {
    let tmp = Tmp::new("hist");
    for target in targets(&tmp) {
        let mut s = Store::open(&target).unwrap();
        let mut rng = baseline::tests::Rng::new(11);
        for i in 0..30u64 {
            let level = if i < 20 { 10e9 } else { 8e9 };
            let b = [
                rng.normal(level, level * 0.01),
                rng.normal(level, level * 0.01),
            ];
            let d = fake_run_dir(&tmp.0, 1_700_000_000 + i * 60, &b, true);
            s.import(&d).unwrap();
        }
        // An invalid run (a zero sample) is recorded but never in a baseline.
        let d = fake_run_dir(&tmp.0, 1_700_000_000 + 31 * 60, &[8e9, 0.0], true);
        s.import(&d).unwrap();
        let key = s.measurements(1).unwrap().pop().unwrap().key;
        let h = s.series_history(&key, 1000).unwrap();
        assert_eq!(h.points.len(), 31, "{target}");
        let cps: Vec<usize> = (0..h.points.len())
            .filter(|&i| h.points[i].change_point)
            .collect();
        let means: Vec<f64> = h.points.iter().map(|p| p.mean / 1e9).collect();
        assert_eq!(cps, [20], "{target}: {means:?}");
        let b = h.baseline.unwrap();
        assert_eq!(b.n, 10);
        assert!((b.centre - 8e9).abs() < 0.1e9, "{b:?}");
        assert_eq!(s.valid_means(&key, 1000).unwrap().len(), 30);
        // limit: the newest points.
        let h = s.series_history(&key, 5).unwrap();
        assert_eq!(h.points.len(), 5);
        assert_eq!(h.points[4].run_id, "31");
        // Flaky checks: verdicts per description, oldest first.
        let v = s.result_verdicts("perf_demo.rhai", 3).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[3].1.len(), 3);
    }
}

#[test]
fn a_corrupt_or_foreign_file_is_refused_and_left_alone() {
    let tmp = Tmp::new("bad");
    let p = tmp.0.join("corrupt.db");
    let junk =
        b"this is not an sqlite database, it is a text file with enough bytes to look like one"
            .repeat(100);
    std::fs::write(&p, &junk).unwrap();
    let e = Store::open(&DbTarget::Sqlite(p.clone())).err().unwrap();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    let m = e.to_string();
    assert!(
        m.contains(&p.display().to_string()) && m.contains("Move it aside"),
        "{m}"
    );
    assert_eq!(std::fs::read(&p).unwrap(), junk, "the file is unchanged");

    let f = tmp.0.join("foreign.db");
    {
        let c = rusqlite::Connection::open(&f).unwrap();
        c.execute_batch("CREATE TABLE invoices (id INTEGER); INSERT INTO invoices VALUES (7);")
            .unwrap();
    }
    let e = Store::open(&DbTarget::Sqlite(f.clone())).err().unwrap();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e:?}");
    assert!(e.to_string().contains("invoices"), "{e}");
    let c = rusqlite::Connection::open(&f).unwrap();
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "nothing was added to a foreign database");
}

#[test]
fn a_schema_from_a_newer_lnst_is_refused_and_kept() {
    let tmp = Tmp::new("new");
    for target in targets(&tmp) {
        let mut s = Store::open(&target).unwrap();
        let d = fake_run_dir(&tmp.0, 1_700_000_000, &[1e9, 1e9], true);
        s.import(&d).unwrap();
        s.db.exec(
            "UPDATE lnst_meta SET value = '99' WHERE key = 'schema_version'",
            &[],
        )
        .unwrap();
        drop(s);
        let e = Store::open(&target).err().unwrap();
        assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e:?}");
        assert!(e.to_string().contains("upgrade lnst-ctl"), "{e}");
        let e = Store::open_existing(&target).err().unwrap();
        assert!(matches!(e, StoreError::TooNew { .. }), "{e:?}");
        // Still there, untouched.
        let mut s = match &target {
            DbTarget::Sqlite(p) => Box::new(sqlite::Sqlite::open(p, false).unwrap()) as Box<dyn Db>,
            DbTarget::Postgres(u) => Box::new(postgres::Postgres::connect(u).unwrap()),
        };
        let n = s.query("SELECT COUNT(*) FROM runs", &[]).unwrap();
        assert_eq!(n[0][0].i64(), Some(1));
    }
}

#[test]
fn a_failed_migration_changes_nothing() {
    let tmp = Tmp::new("mig");
    for target in targets(&tmp) {
        let mut db: Box<dyn Db> = match &target {
            DbTarget::Sqlite(p) => Box::new(sqlite::Sqlite::open(p, true).unwrap()),
            DbTarget::Postgres(u) => Box::new(postgres::Postgres::connect(u).unwrap()),
        };
        // A migration whose second statement fails: the first is undone.
        let r = db::in_tx(db.as_mut(), |db| {
            db.batch("CREATE TABLE lnst_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")?;
            db.batch("CREATE TABLE broken (")?;
            Ok(())
        });
        assert!(r.is_err());
        assert!(
            db.tables().unwrap().is_empty(),
            "{target}: {:?}",
            db.tables()
        );
        assert_eq!(migrate::migrate(db.as_mut()).unwrap(), 0);
        assert_eq!(migrate::version(db.as_mut()).unwrap(), migrate::LATEST);
        // Migrating again is a no-op.
        assert_eq!(migrate::migrate(db.as_mut()).unwrap(), migrate::LATEST);
    }
}

/// A store made by schema 1 (one environment per host and run) is brought
/// to schema 2 keeping its rows as match 1's; then a run of two matches,
/// each host on another machine (`--all-matches`), keeps both, and each
/// match's measurements take their hardware from their own match.
#[test]
fn environments_per_match_and_the_migration_to_them() {
    let tmp = Tmp::new("envmatch");
    for target in targets(&tmp) {
        let mut db: Box<dyn Db> = match &target {
            DbTarget::Sqlite(p) => Box::new(sqlite::Sqlite::open(p, true).unwrap()),
            DbTarget::Postgres(u) => Box::new(postgres::Postgres::connect(u).unwrap()),
        };
        migrate::migrate_to(db.as_mut(), 1).unwrap();
        db.batch(
            "INSERT INTO runs (id, uid, recipe, recipe_hash, params, mapping, user_name, controller_host, lnst_version, started, started_unix, duration, result, run_dir, pool, imported) \
             VALUES (7, 'u7', 'old.rhai', '', '{}', '[]', 'me', 'c', '0.1', '2026-01-01T00:00:00Z', 1767225600, 1, 'PASS', '/nowhere', 'netns lab', 1); \
             INSERT INTO host_envs (hash, env) VALUES ('e1', '{\"machine\":\"m9\",\"kernel\":\"6.1.0\",\"cmdline\":\"\",\"cpu_model\":\"\",\"cpus\":1,\"nics\":{}}'); \
             INSERT INTO environments (run_id, host, machine, kernel, env_hash) VALUES (7, 'h1', 'm9', '6.1.0', 'e1');",
        )
        .unwrap();
        drop(db);
        let mut s = Store::open(&target).unwrap();
        assert_eq!(s.found_version, 1, "{target}");
        assert_eq!(s.schema_version().unwrap(), 2, "{target}");
        let old = s.environments(7).unwrap();
        assert_eq!(old.len(), 1, "{target}");
        assert_eq!(old[0]["h1"].machine, "m9");
        assert_eq!(s.environment(7).unwrap(), old[0]);

        // Two matches: h1 on m1 then on m2, whose NIC is slower.
        let dir = fake_run_dir(&tmp.0, 1_700_000_000, &[9.5e9, 9.7e9], true);
        let sp = dir.join("summary.json");
        let mut summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&sp).unwrap()).unwrap();
        let m0 = summary["matches"][0].clone();
        summary["matches"].as_array_mut().unwrap().push(m0);
        std::fs::write(&sp, summary.to_string()).unwrap();
        let one: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("environment.json")).unwrap())
                .unwrap();
        let mut per_match = [one.clone(), one];
        per_match[0]["h1"]["machine"] = "m1".into();
        per_match[1]["h1"]["machine"] = "m2".into();
        per_match[1]["h1"]["nics"]["eth0"]["speed_mbps"] = 1000.into();
        std::fs::write(
            dir.join("environment.json"),
            serde_json::to_string(&per_match).unwrap(),
        )
        .unwrap();
        let (id, _) = s.import(&dir).unwrap();
        let envs = s.environments(id).unwrap();
        let machines: Vec<&str> = envs.iter().map(|e| e["h1"].machine.as_str()).collect();
        assert_eq!(machines, ["m1", "m2"], "{target}");
        let roles: Vec<String> = s
            .measurements(id)
            .unwrap()
            .into_iter()
            .filter(|m| m.key.metric == "bps")
            .map(|m| m.key.role)
            .collect();
        assert_eq!(
            roles,
            [
                "h1->h2 [h1: veth@10000; h2: veth@10000]",
                "h1->h2 [h1: veth@1000; h2: veth@10000]"
            ],
            "{target}"
        );
        // The run directory's file is read back the same way.
        let rec = record::RunRecord::from_run_dir(&dir).unwrap();
        assert_eq!(rec.environments, envs);
    }
}

#[test]
fn not_a_run_directory_is_a_clear_error() {
    let tmp = Tmp::new("notrun");
    let mut s = Store::open(&DbTarget::Sqlite(tmp.0.join("r.db"))).unwrap();
    let e = s.import(&tmp.0).unwrap_err();
    assert!(
        e.to_string().contains("not a run directory") && e.to_string().contains("summary.json"),
        "{e}"
    );
    let e = s.import(&tmp.0.join("missing")).unwrap_err();
    assert!(e.to_string().contains("no such directory"), "{e}");
    std::fs::write(tmp.0.join("summary.json"), "{ not json").unwrap();
    let e = s.import(&tmp.0).unwrap_err();
    assert!(
        e.to_string().contains("summary.json is not valid JSON"),
        "{e}"
    );
    std::fs::write(tmp.0.join("summary.json"), "{\"x\": 1}").unwrap();
    let e = s.import(&tmp.0).unwrap_err();
    assert!(e.to_string().contains("no \"recipe\""), "{e}");
    assert_eq!(s.count_runs(None).unwrap(), 0);
}

#[test]
fn postgres_down_or_refusing_is_a_clear_error() {
    let e = Store::open(&DbTarget::Postgres(TestPostgres::down_url()))
        .err()
        .unwrap();
    assert!(e.to_string().contains("is the server running"), "{e}");
    let Some(pg) = TestPostgres::get() else {
        return;
    };
    let e = Store::open(&DbTarget::Postgres(pg.url("no_such_db")))
        .err()
        .unwrap();
    assert!(e.to_string().contains("refused the login"), "{e}");
}

#[test]
fn many_concurrent_writers_on_postgres() {
    let Some(pg) = TestPostgres::get() else {
        return;
    };
    let tmp = Tmp::new("conc");
    let url = pg.new_db();
    let writers = 8;
    let runs = 6;
    // Every writer opens (and so migrates) at the same time, then records.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(writers));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (url, base, barrier) = (url.clone(), tmp.0.join(format!("w{w}")), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut s = Store::open(&DbTarget::Postgres(url)).unwrap();
                for i in 0..runs {
                    let d = fake_run_dir(
                        &base,
                        1_700_000_000 + (w * 100 + i) as u64,
                        &[1e9, 1.01e9],
                        true,
                    );
                    s.import(&d).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let n = pg.psql(url.rsplit('/').next().unwrap(), "SELECT COUNT(*) FROM runs");
    assert_eq!(n, (writers * runs).to_string());
    let series = pg.psql(
        url.rsplit('/').next().unwrap(),
        "SELECT COUNT(*) FROM series",
    );
    assert_eq!(series, "3", "one row per series however many writers");
    let migrations = pg.psql(
        url.rsplit('/').next().unwrap(),
        "SELECT COUNT(*) FROM lnst_migrations",
    );
    assert_eq!(
        migrations,
        migrate::LATEST.to_string(),
        "each migration applied once however many writers"
    );
}
