//! Issue 13: the shared pool on a real PostgreSQL (`support/postgres.rs`)
//! with real agents in namespaces. Several `lnst-ctl` processes reserve
//! machines through the database; the agents' own logs show that no
//! machine ever served two sessions at once; the database shows the
//! grant order; a controller killed with SIGKILL loses its lease and its
//! machines come back once their agents are clean.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::ctl::suites::{pool_of_agents, sessions_never_overlap};
use crate::pg_support::TestPostgres;
use crate::{ctl, lab_ready, Tmp};

fn ctl_db(t: &Tmp, url: &str) -> Command {
    let mut c = Command::new(ctl());
    c.env("LNST_DB", url)
        .env("LNST_LOCK_DIR", t.0.join("locks"))
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn db_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

fn sync(t: &Tmp, url: &str, pool: &Path) {
    let o = ctl_db(t, url)
        .args(["pool", "sync", "--pool"])
        .arg(pool)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const TWO_HOSTS: &str = "host(\"h1\", #{ role: \"any\" });\nhost(\"h2\", #{ role: \"any\" });\nfn test(m) {\n    m.h1.run(\"sleep 0.6\");\n    m.h2.run(\"true\");\n}\n";

/// 6 controllers, 2-host recipes, a 4-machine pool. A person holds all 4
/// machines while the 6 queue with different priorities; once released,
/// every run completes, the grants follow priority, and the agents' logs
/// show one session at a time.
#[test]
fn six_controllers_share_four_machines_in_priority_order() {
    let Some(agent) = lab_ready("six_controllers_share_four_machines_in_priority_order") else {
        return;
    };
    let Some(pg) = TestPostgres::get() else {
        return;
    };
    let url = pg.new_db();
    let t = Tmp::new();
    let (pool, machines) = pool_of_agents(&t, &agent, 4);
    sync(&t, &url, &pool);
    let r = t.write("two.rhai", TWO_HOSTS);
    // A person holds everything, so all 6 runs queue first.
    let o = ctl_db(&t, &url)
        .args(["reserve", "m1", "m2", "m3", "m4", "--for", "5m", "--pool"])
        .arg(&pool)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("reserved m1, m2, m3, m4 as #1"), "{out}");
    let prios = [0, 5, 1, 4, 2, 3];
    let mut kids: Vec<(i32, Child)> = Vec::new();
    for (i, p) in prios.iter().enumerate() {
        let c = ctl_db(&t, &url)
            .arg("run")
            .arg(&r)
            .arg("--pool")
            .arg(&pool)
            .args(["--json", "--priority", &p.to_string(), "--out"])
            .arg(t.0.join(format!("runs{i}")))
            .spawn()
            .unwrap();
        kids.push((*p, c));
    }
    let db = db_name(&url);
    wait_until("6 waiting requests", Duration::from_secs(30), || {
        pg.psql(
            &db,
            "SELECT count(*) FROM lnst_pool.reservation WHERE state = 'waiting'",
        ) == "6"
    });
    let st = ctl_db(&t, &url).arg("status").output().unwrap();
    let st = text(&st);
    assert!(
        st.contains("queue: 6 waiting") && st.contains("#1 person"),
        "{st}"
    );
    let o = ctl_db(&t, &url).args(["release", "1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for (p, c) in kids {
        let o = c.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "priority {p}: {}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["result"], "PASS");
    }
    // Grant order: a higher priority was never granted after a lower one.
    let order = pg.psql(
        &db,
        "SELECT string_agg(priority::text, ',' ORDER BY granted, id) FROM lnst_pool.reservation WHERE kind = 'run'",
    );
    let got: Vec<i32> = order.split(',').map(|x| x.parse().unwrap()).collect();
    let mut want = got.clone();
    want.sort_by(|a, b| b.cmp(a));
    assert_eq!(got, want, "grants in order of priority");
    assert_eq!(
        pg.psql(
            &db,
            "SELECT count(*) FROM lnst_pool.reservation WHERE state = 'released'"
        ),
        "7"
    );
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM lnst_pool.hold"), "0");
    let mut sessions = 0;
    for m in &machines {
        sessions += sessions_never_overlap(m);
    }
    assert_eq!(sessions, 12, "6 runs x 2 machines");
}

/// kill -9 of a controller that holds 2 machines: its lease (1.5 s here)
/// expires, the machines are dirty until their agents have undone the
/// dead session and report an empty journal, then the next run gets them.
/// The dead controller's reservation is older than the one the agents
/// served since, so they would refuse it.
#[test]
fn killed_controller_lease_expires_and_machines_come_back() {
    let Some(agent) = lab_ready("killed_controller_lease_expires_and_machines_come_back") else {
        return;
    };
    let Some(pg) = TestPostgres::get() else {
        return;
    };
    let url = pg.new_db();
    let t = Tmp::new();
    let (pool, machines) = pool_of_agents(&t, &agent, 2);
    sync(&t, &url, &pool);
    let db = db_name(&url);
    let long = t.write(
        "long.rhai",
        "host(\"h1\", #{ role: \"any\" });\nhost(\"h2\", #{ role: \"any\" });\nfn test(m) {\n    m.h1.run(\"sleep 60\", #{ bg: true });\n    m.sleep(60);\n}\n",
    );
    let short = t.write("two.rhai", TWO_HOSTS);
    let mut a = ctl_db(&t, &url)
        .env("LNST_POOL_LEASE_SECS", "1.5")
        .arg("run")
        .arg(&long)
        .arg("--pool")
        .arg(&pool)
        .arg("--out")
        .arg(t.0.join("runsA"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("A's sleep job", Duration::from_secs(20), || {
        machines.iter().any(|m| {
            std::fs::read_to_string(&m.log)
                .unwrap_or_default()
                .contains("controller connected")
        }) && pg.psql(
            &db,
            "SELECT count(*) FROM lnst_pool.reservation WHERE state = 'granted'",
        ) == "1"
    });
    std::thread::sleep(Duration::from_millis(500));
    unsafe { libc::kill(a.id() as i32, libc::SIGKILL) };
    let _ = a.wait();
    let t0 = Instant::now();
    let b = ctl_db(&t, &url)
        .arg("run")
        .arg(&short)
        .arg("--pool")
        .arg(&pool)
        .args(["--json", "--out"])
        .arg(t.0.join("runsB"))
        .output()
        .unwrap();
    let took = t0.elapsed().as_secs_f64();
    assert_eq!(b.status.code(), Some(0), "{}", text(&b));
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(err.contains("waiting (reservation #2"), "{err}");
    assert!(took < 15.0, "B waited {took:.1} s");
    assert_eq!(
        pg.psql(&db, "SELECT state FROM lnst_pool.reservation WHERE id = 1"),
        "expired"
    );
    assert_eq!(
        pg.psql(
            &db,
            "SELECT string_agg(state, ',' ORDER BY id) FROM lnst_pool.machine"
        ),
        "healthy,healthy"
    );
    // The agents killed A's sleep and served B: one session at a time, and
    // B's grant (token 2; A's was 1) is the newest they have seen.
    for m in &machines {
        sessions_never_overlap(m);
        let fence = std::fs::read_to_string(t.0.join(format!("{}.state/fence", m.id))).unwrap();
        assert_eq!(fence.trim(), "2", "{}", m.id);
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
        !ps.lines().any(|l| l.trim() == "sleep 60"),
        "A's job survived:\n{ps}"
    );
    // A controller coming back with A's grant (token 1) is refused.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr: lnst_ctl::client::AgentAddr = format!("unix:{}", machines[0].sock.display())
        .parse()
        .unwrap();
    let e = rt
        .block_on(lnst_ctl::client::AgentClient::connect_fenced(
            "m1",
            &addr,
            None,
            Some(1),
        ))
        .err()
        .expect("an older fence is refused");
    assert!(
        e.to_string().contains("token 1 is older than token 2"),
        "{e}"
    );
}

/// Bad input: a database that is down (exit 3, nothing reserved), a pool
/// file that disagrees with the registered machine (exit 2), a
/// reservation of machines that do not exist (exit 2).
#[test]
fn shared_pool_bad_input() {
    let Some(agent) = lab_ready("shared_pool_bad_input") else {
        return;
    };
    let Some(pg) = TestPostgres::get() else {
        return;
    };
    let url = pg.new_db();
    let t = Tmp::new();
    let (pool, _machines) = pool_of_agents(&t, &agent, 2);
    let r = t.write("two.rhai", TWO_HOSTS);
    let run = |url: &str| {
        ctl_db(&t, url)
            .arg("run")
            .arg(&r)
            .arg("--pool")
            .arg(&pool)
            .arg("--out")
            .arg(t.0.join("runs"))
            .output()
            .unwrap()
    };
    let o = run(&TestPostgres::down_url());
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let e = text(&o);
    assert!(
        e.contains("cannot reach PostgreSQL") && e.contains("nothing was reserved"),
        "{e}"
    );
    assert!(!t.0.join("runs").exists(), "a run directory was made: {e}");
    // Not registered yet.
    let o = run(&url);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is not registered"), "{}", text(&o));
    sync(&t, &url, &pool);
    let m1 = pool.join("m1.toml");
    let orig = std::fs::read_to_string(&m1).unwrap();
    std::fs::write(
        &m1,
        orig.replace("role = \"any\"", "role = \"any\"\nrack = 7"),
    )
    .unwrap();
    let o = run(&url);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let e = text(&o);
    assert!(
        e.contains("m1.toml: disagrees with machine m1") && e.contains("[params] differ"),
        "{e}"
    );
    std::fs::write(&m1, &orig).unwrap();
    let o = ctl_db(&t, &url)
        .args(["reserve", "m1", "m9", "--pool"])
        .arg(&pool)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("no such machine registered: m9"),
        "{}",
        text(&o)
    );
    let db = db_name(&url);
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM lnst_pool.reservation"),
        "0"
    );
    // And with everything right, the run passes.
    let o = run(&url);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // A person holds the machines a recipe needs, renews, and gives them
    // back by naming one of them.
    let o = ctl_db(&t, &url)
        .arg("reserve")
        .arg(&r)
        .args(["--for", "30s", "--note", "debugging", "--pool"])
        .arg(&pool)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let got = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(got.contains("reserved m1, m2 as #2"), "{got}");
    let o = ctl_db(&t, &url)
        .args(["reserve", "--renew", "2", "--for", "2h"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("reservation #2 renewed until"),
        "{}",
        text(&o)
    );
    let st = text(&ctl_db(&t, &url).arg("status").output().unwrap());
    assert!(
        st.contains("m1") && st.contains("#2 person") && st.contains("(debugging)"),
        "{st}"
    );
    let o = ctl_db(&t, &url).args(["release", "m2"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("released #2"), "{}", text(&o));
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM lnst_pool.hold"), "0");
}
